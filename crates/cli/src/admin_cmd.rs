//! `intelmesh admin …`: the hub operators' commands, over the hub's `Admin` service with an
//! admin certificate. Every command that changes the roster proposes a version; with
//! `--sign-with KEYFILE` it also signs it there and then (a threshold of 1 publishes it at once).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use intelmesh_interop::text::printable;
use intelmesh_node::keys::parse_public_key;
use intelmesh_proto::v1 as pb;
use pb::action::Action as A;
use prost::Message;

use crate::admin_hub::{print_standing, Hub, ProposeOpts};
use crate::conn::{request, ConnectArgs};
use crate::enrol_cmd::{admin_keygen, AdminKeygen};
use crate::usage;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(subcommand)]
    which: AdminCmd,
}

#[derive(Subcommand, Debug)]
enum AdminCmd {
    /// Generate an operator's authority key (FILE 0600, FILE.pub).
    Keygen(AdminKeygen),
    /// Members: list, add, suspend, reinstate, remove, keys, certificates, bundles.
    Members {
        #[command(flatten)]
        conn: ConnectArgs,
        #[command(subcommand)]
        which: MembersCmd,
    },
    /// The roster: show a version, diff two, pending proposals, sign, publish.
    Roster {
        #[command(flatten)]
        conn: ConnectArgs,
        #[command(subcommand)]
        which: RosterCmd,
    },
    /// The federation table: per member link, lag, roster version, recent entries, forks,
    /// certificate expiry, stale checkpoints.
    Status {
        #[command(flatten)]
        conn: ConnectArgs,
    },
    /// Who proposed and who signed each roster version.
    Audit {
        #[command(flatten)]
        conn: ConnectArgs,
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        #[arg(long, value_name = "NAME")]
        operator: Option<String>,
        #[arg(long, value_name = "VERSION", default_value_t = 1)]
        since: u64,
    },
}

#[derive(Subcommand, Debug)]
enum MembersCmd {
    /// The roster's members: org, role, status, country, name and number of signing keys.
    List,
    /// Admit a member from its enrolment request (`intelmesh node init`).
    Add {
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        #[arg(long, value_enum, default_value_t = RoleArg::Agency)]
        role: RoleArg,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Suspend a member until it is reinstated: its node's links are refused, its open signing
    /// keys end at its head at the hub, and nothing new is sealed to it.
    Suspend {
        org: String,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Reinstate a suspended member: the keys its suspension ended open again.
    Reinstate {
        org: String,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Remove a member for good: as a suspension, with no reinstatement.
    Remove {
        org: String,
        /// Also withdraw its assertions from every view.
        #[arg(long)]
        withdraw: bool,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Apply a member's rotation request (`intelmesh node rotate-key`).
    RotateKey {
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Make a member's new encryption key current, from its request
    /// (`intelmesh node rotate-encryption-key`).
    SetEncryptionKey {
        #[arg(long, value_name = "FILE")]
        request: PathBuf,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// End a stolen key at the last seq the member vouches for. Every certificate of the
    /// member issued before the report is refused and nothing new is sealed to its encryption
    /// keys. With --replacement (the member's `intelmesh node replacement-key` file, which
    /// names the key and seq) the member signs on with a new key.
    ReportCompromise {
        org: String,
        /// The compromised public key (hex, a .pub file, or its key id).
        #[arg(long, value_name = "PUB", required_unless_present = "replacement")]
        key: Option<String>,
        #[arg(long, value_name = "N", required_unless_present = "replacement")]
        last_good_seq: Option<u64>,
        /// The member's replacement key and its proof (`intelmesh node replacement-key`).
        #[arg(long, value_name = "FILE")]
        replacement: Option<PathBuf>,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Revoke a certificate by serial (hex); --reason is required and recorded with it.
    RevokeCert {
        serial: String,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Write ORG's enrolment bundle (a new node certificate valid --days) and propose
    /// recording the certificate in the roster.
    Bundle(BundleArgs),
    /// The same as `bundle`: a new certificate from the member's request, before expiry.
    Renew(BundleArgs),
}

#[derive(Args, Debug)]
struct BundleArgs {
    org: String,
    #[arg(long, default_value_t = intelmesh_node::pki::DEFAULT_LEAF_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(intelmesh_node::pki::MAX_BUNDLE_DAYS)))]
    days: u32,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    propose: ProposeOpts,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum RoleArg {
    Hub,
    Agency,
}

#[derive(Subcommand, Debug)]
enum RosterCmd {
    /// Print a version (the current one by default).
    Show {
        #[arg(long)]
        version: Option<u64>,
    },
    /// What changed from version A to version B.
    Diff { a: u64, b: u64 },
    /// Pending and recent proposals.
    Proposals,
    /// Propose a change of federation-wide settings: the authority keys and threshold, the
    /// hub addresses, the policy.
    Propose {
        #[command(flatten)]
        settings: crate::admin_settings::SettingsArgs,
        #[command(flatten)]
        propose: ProposeOpts,
    },
    /// Sign a proposal with an authority key (prints what it changes first).
    Sign {
        #[arg(long, value_name = "ID")]
        proposal: String,
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
    },
    /// Publish a proposal that carries the signatures it needs.
    Publish {
        #[arg(long, value_name = "ID")]
        proposal: String,
    },
    /// Forget a pending proposal that is not wanted (published ones are kept).
    Withdraw {
        #[arg(long, value_name = "ID")]
        proposal: String,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    match args.which {
        AdminCmd::Keygen(k) => admin_keygen(k),
        AdminCmd::Members { conn, which } => members(&Hub::open(&conn).await?, which).await,
        AdminCmd::Roster { conn, which } => roster(&Hub::open(&conn).await?, which).await,
        AdminCmd::Status { conn } => status(&Hub::open(&conn).await?).await,
        AdminCmd::Audit {
            conn,
            org,
            operator,
            since,
        } => {
            let hub = Hub::open(&conn).await?;
            let mut ask = pb::AuditRequest {
                since_version: since,
                org: org.unwrap_or_default(),
                operator: operator.unwrap_or_default(),
            };
            let mut events = Vec::new();
            loop {
                let answer = hub
                    .client()
                    .audit(request(&hub.target, ask.clone()))
                    .await
                    .map_err(|s| hub.error("Audit", s))?
                    .into_inner();
                events.extend(answer.events);
                // Each answer moves forward, so this ends.
                if answer.next_since_version <= ask.since_version {
                    break;
                }
                ask.since_version = answer.next_since_version;
            }
            for e in events {
                let signed: Vec<String> = e
                    .signed_by
                    .iter()
                    .zip(&e.signed_at_unix_ms)
                    .map(|(name, at)| format!("{name} at {at}"))
                    .collect();
                // Operators' and members' words: escaped, so no line can hide or fake another.
                out!(
                    "v{} proposed by {} ({}): {}; signed by {}",
                    e.version,
                    printable(&e.proposed_by),
                    if e.reason.is_empty() {
                        "no reason given".into()
                    } else {
                        printable(&e.reason)
                    },
                    printable(&e.actions.join("; ")),
                    printable(&signed.join(", "))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn action(a: A) -> pb::Action {
    pb::Action { action: Some(a) }
}

fn read_message<M: Message + Default>(flag: &str, path: &std::path::Path) -> anyhow::Result<M> {
    let bytes =
        std::fs::read(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))?;
    M::decode(bytes.as_slice())
        .map_err(|e| usage(format!("{flag} {}: does not decode: {e}", path.display())))
}

async fn members(hub: &Hub, which: MembersCmd) -> anyhow::Result<ExitCode> {
    let (actions, opts) = match which {
        MembersCmd::List => {
            let r = hub
                .client()
                .list_members(request(&hub.target, pb::ListMembersRequest {}))
                .await
                .map_err(|s| hub.error("ListMembers", s))?
                .into_inner();
            out!("roster version {}", r.roster_version);
            for m in r.members {
                out!(
                    "{}\t{:?}\t{:?}\t{}\t{}\t{} key(s)",
                    m.org,
                    m.role(),
                    m.status(),
                    printable(&m.country),
                    printable(&m.display_name),
                    m.signing_keys.len()
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        MembersCmd::Add {
            request: file,
            role,
            propose,
        } => {
            let request = read_message::<pb::SignedEnrolmentRequest>("--request", &file)?;
            let role = match role {
                RoleArg::Hub => pb::MemberRole::Hub,
                RoleArg::Agency => pb::MemberRole::Agency,
            };
            (
                vec![action(A::AddMember(pb::AddMember {
                    request: Some(request),
                    role: role as i32,
                }))],
                propose,
            )
        }
        MembersCmd::Suspend { org, propose } => {
            (vec![action(A::Suspend(pb::Suspend { org }))], propose)
        }
        MembersCmd::Reinstate { org, propose } => {
            (vec![action(A::Reinstate(pb::Reinstate { org }))], propose)
        }
        MembersCmd::Remove {
            org,
            withdraw,
            propose,
        } => (
            vec![action(A::Remove(pb::Remove { org, withdraw }))],
            propose,
        ),
        MembersCmd::RotateKey {
            request: file,
            propose,
        } => {
            let request = read_message::<pb::SignedRotationRequest>("--request", &file)?;
            (
                vec![action(A::RotateKey(pb::RotateKey {
                    request: Some(request),
                }))],
                propose,
            )
        }
        MembersCmd::SetEncryptionKey {
            request: file,
            propose,
        } => {
            let request = read_message::<pb::SignedEncryptionKeyRequest>("--request", &file)?;
            (
                vec![action(A::SetEncryptionKey(pb::SetEncryptionKey {
                    request: Some(request),
                }))],
                propose,
            )
        }
        MembersCmd::ReportCompromise {
            org,
            key,
            last_good_seq,
            replacement,
            propose,
        } => {
            let report = match replacement {
                Some(file) => {
                    let report = read_message::<pb::ReportCompromise>("--replacement", &file)?;
                    let given = match &key {
                        Some(key) => Some(compromised_key(hub, &org, key).await?),
                        None => None,
                    };
                    replacement_report(report, &org, given, last_good_seq)?
                }
                None => {
                    let (Some(key), Some(last_good_seq)) = (key, last_good_seq) else {
                        return Err(usage(
                            "report-compromise needs --key and --last-good-seq, or --replacement",
                        ));
                    };
                    pb::ReportCompromise {
                        public_key: compromised_key(hub, &org, &key).await?,
                        org,
                        last_good_seq,
                        ..Default::default()
                    }
                }
            };
            (vec![action(A::ReportCompromise(report))], propose)
        }
        MembersCmd::RevokeCert { serial, propose } => {
            if propose.reason.trim().is_empty() {
                return Err(usage(
                    "revoke-cert needs --reason (it is recorded with the serial)",
                ));
            }
            let reason = propose.reason.clone();
            (
                vec![action(A::RevokeCert(pb::RevokeCert { serial, reason }))],
                propose,
            )
        }
        MembersCmd::Bundle(b) | MembersCmd::Renew(b) => return bundle(hub, b).await,
    };
    hub.propose(actions, &opts).await?;
    Ok(ExitCode::SUCCESS)
}

/// The member's report with its replacement key, checked against what the operator typed:
/// the org, and the key and seq when given too (the file names them).
fn replacement_report(
    report: pb::ReportCompromise,
    org: &str,
    key: Option<Vec<u8>>,
    last_good_seq: Option<u64>,
) -> anyhow::Result<pb::ReportCompromise> {
    if report.org != org {
        return Err(usage(format!(
            "--replacement is {}'s, not {org}'s",
            report.org
        )));
    }
    if report.replacement_key.is_empty() {
        return Err(usage("--replacement holds no replacement key"));
    }
    if key.is_some_and(|k| k != report.public_key) {
        return Err(usage("--key is not the key the --replacement file reports"));
    }
    if last_good_seq.is_some_and(|n| n != report.last_good_seq) {
        return Err(usage(format!(
            "--last-good-seq differs from the --replacement file's ({})",
            report.last_good_seq
        )));
    }
    Ok(report)
}

/// The public key `--key` names: a .pub file, the key in hex, or its key id as `roster show`
/// and `status` print it (looked up among ORG's keys in the current roster).
async fn compromised_key(hub: &Hub, org: &str, given: &str) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(given).unwrap_or_else(|_| given.to_string());
    let text = text.trim();
    let is_key_id = text.len() == 16 && text.chars().all(|c| c.is_ascii_hexdigit());
    if !is_key_id {
        let key = parse_public_key(text).map_err(|e| usage(format!("--key: {e:#}")))?;
        return Ok(key.to_bytes().to_vec());
    }
    let roster = hub.roster(0).await?;
    let member = roster
        .members
        .iter()
        .find(|m| m.org == org)
        .ok_or_else(|| {
            usage(format!(
                "{org} is not a member in roster version {}",
                roster.version
            ))
        })?;
    member
        .signing_keys
        .iter()
        .find(|k| {
            ed25519_dalek::VerifyingKey::try_from(k.public_key.as_slice())
                .is_ok_and(|v| intelmesh_core::KeyId::of(&v).to_string() == text.to_lowercase())
        })
        .map(|k| k.public_key.clone())
        .ok_or_else(|| {
            usage(format!(
                "--key {text}: no signing key of {org} in roster version {} has that id",
                roster.version
            ))
        })
}

async fn bundle(hub: &Hub, b: BundleArgs) -> anyhow::Result<ExitCode> {
    // Judged before the hub issues a certificate, which is recorded only once it is written.
    let parent = b.out.parent().filter(|p| !p.as_os_str().is_empty());
    if b.out.is_dir() {
        return Err(usage(format!(
            "--out {} is a directory: give the bundle's file",
            b.out.display()
        )));
    }
    if parent.is_some_and(|p| !p.is_dir()) {
        return Err(usage(format!(
            "--out {}: its directory does not exist",
            b.out.display()
        )));
    }
    let bundle = hub
        .client()
        .issue_bundle(request(
            &hub.target,
            pb::IssueBundleRequest {
                org: b.org.clone(),
                days: b.days,
            },
        ))
        .await
        .map_err(|s| hub.error("IssueBundle", s))?
        .into_inner();
    crate::export_cmd::write_export(&b.out, &bundle.encode_to_vec(), false)
        .map_err(|e| usage(format!("--out {}: {e:#}", b.out.display())))?;
    let facts = intelmesh_node::cert_facts::cert_facts_pem(&bundle.node_cert_pem)?;
    out!(
        "wrote {}: the bundle of {} (certificate {} valid until {} ms since epoch); send it to the member",
        b.out.display(),
        b.org,
        facts.serial_hex,
        facts.not_after_unix_ms
    );
    let record = action(A::RecordCert(pb::RecordCert {
        org: b.org,
        cert: Some(pb::IssuedCert {
            serial: facts.serial_hex,
            not_after_unix_ms: facts.not_after_unix_ms,
        }),
    }));
    hub.propose(vec![record], &b.propose).await?;
    Ok(ExitCode::SUCCESS)
}

async fn roster(hub: &Hub, which: RosterCmd) -> anyhow::Result<ExitCode> {
    match which {
        RosterCmd::Show { version } => {
            let doc = hub.roster(version.unwrap_or(0)).await?;
            out!(
                "federation {} version {} (threshold {} of {})",
                doc.federation_id,
                doc.version,
                doc.authority.as_ref().map_or(0, |a| a.threshold),
                doc.authority.as_ref().map_or(0, |a| a.keys.len())
            );
            for m in &doc.members {
                out!(
                    "  {}\t{:?}\t{:?}\t{}\t{}",
                    m.org,
                    m.role(),
                    m.status(),
                    printable(&m.display_name),
                    crate::render::current_encryption_key(m)
                );
            }
            for h in &doc.hubs {
                out!("  hub {} at {}", h.org, printable(&h.address));
            }
        }
        RosterCmd::Diff { a, b } => {
            let (a, b) = (hub.roster(a).await?, hub.roster(b).await?);
            for line in intelmesh_roster::diff(&a, &b) {
                out!("{}", printable(&line));
            }
        }
        RosterCmd::Proposals => {
            let list = hub
                .client()
                .list_proposals(request(&hub.target, pb::ListProposalsRequest {}))
                .await
                .map_err(|s| hub.error("ListProposals", s))?
                .into_inner()
                .proposals;
            for p in &list {
                print_standing(p);
            }
        }
        RosterCmd::Sign { proposal, key } => {
            let p = hub
                .client()
                .get_proposal(request(&hub.target, pb::ProposalRef { id: proposal }))
                .await
                .map_err(|s| hub.error("GetProposal", s))?
                .into_inner();
            hub.print_changes(&p).await?;
            print_standing(&hub.sign(&p, &key).await?);
        }
        RosterCmd::Propose { settings, propose } => {
            let current = hub.roster(0).await?;
            let actions = crate::admin_settings::actions(&settings, &current)?;
            hub.propose(actions, &propose).await?;
        }
        RosterCmd::Publish { proposal } => {
            let p = hub
                .client()
                .publish(request(&hub.target, pb::ProposalRef { id: proposal }))
                .await
                .map_err(|s| hub.error("Publish", s))?
                .into_inner();
            print_standing(&p);
        }
        RosterCmd::Withdraw { proposal } => {
            hub.client()
                .withdraw_proposal(request(
                    &hub.target,
                    pb::ProposalRef {
                        id: proposal.clone(),
                    },
                ))
                .await
                .map_err(|s| hub.error("WithdrawProposal", s))?;
            out!("proposal {proposal} withdrawn");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(hub: &Hub) -> anyhow::Result<ExitCode> {
    let r = hub
        .client()
        .federation_status(request(&hub.target, pb::FederationStatusRequest {}))
        .await
        .map_err(|s| hub.error("FederationStatus", s))?
        .into_inner();
    for line in crate::render::federation_table(&r, intelmesh_core::now_unix_ms()) {
        out!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
