//! Setting up a federation and joining it without moving private keys: `federation init`
//! (federation CA, the first hub's files, the signed genesis), `admin keygen` (an operator's
//! authority key), `node init` (an agency's keys, encryption key included, and its enrolment
//! request) and `node join`
//! (the agency's node.toml in roster mode from the bundle the hub operators hand back).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ed25519_dalek::SigningKey;
use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::OrgId;
use intelmesh_node::config::{AdminConfig, ListenerConfig, NodeConfig, Role, RosterConfig};
use intelmesh_node::keys::{load_signing_key, parse_public_key, write_private};
use intelmesh_node::pki::{request_node, write_pem, Ca, CaRole, Validity, DEFAULT_LEAF_DAYS};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{sign_enrolment, verify_enrolment, EnrolmentDetails};
use intelmesh_roster::{build_genesis, genesis_thresholds, roster_hash, sign_document};
use intelmesh_roster::{AuthorityKey, GenesisSpec, HubMember};
use prost::Message;

use crate::input::parse_org;
use crate::usage;

/// The enrolment request file `node init` writes in its directory.
pub const REQUEST_FILE: &str = "enrolment.request";
/// The encryption key file `node init` and `federation init` write beside the signing key.
pub const ENCRYPTION_KEY_FILE: &str = "encryption.key";

#[derive(Subcommand, Debug)]
pub enum Federation {
    /// Create a federation: its CA, the first hub's keys and certificates, and the genesis
    /// roster signed by the initial authority keys (`--sign-with`, at least the threshold).
    /// Prints the genesis pin every member checks.
    Init(FederationInit),
}

#[derive(Args, Debug)]
pub struct FederationInit {
    /// The federation id (also the roster log's origin; no member may take it).
    #[arg(long, value_parser = parse_org)]
    id: OrgId,
    /// An authority key: the holder's name and the public key file `admin keygen` wrote.
    #[arg(long = "authority", value_name = "NAME=PUBKEYFILE", required = true)]
    authorities: Vec<String>,
    /// How many authority signatures each roster version needs.
    #[arg(long, value_name = "K")]
    threshold: u32,
    /// Private authority key files to sign the genesis with (at least K).
    #[arg(long = "sign-with", value_name = "KEYFILE", required = true)]
    sign_with: Vec<PathBuf>,
    /// The first hub's org id.
    #[arg(long, value_name = "ORG", value_parser = parse_org)]
    hub: OrgId,
    #[arg(long, value_name = "NAME")]
    hub_name: Option<String>,
    #[arg(long, value_name = "CC", default_value = "")]
    hub_country: String,
    /// Where agencies reach the hub's federation listener (written into the roster).
    #[arg(long, value_name = "HOST:PORT")]
    hub_address: String,
    /// The hub's federation listen address [default: --hub-address].
    #[arg(long, value_name = "ADDR")]
    federation_listen: Option<std::net::SocketAddr>,
    /// The hub's API listen address (Admin and the local API).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7701")]
    api_listen: std::net::SocketAddr,
    /// An existing federation CA (DIR/ca.pem, DIR/ca.key) instead of a new one.
    #[arg(long, value_name = "DIR")]
    federation_ca: Option<PathBuf>,
    /// Directory to write everything into (must not hold a federation already).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Agency side: create this node's TLS key and certificate request, signing and encryption
    /// keys, service CA and API certificate, and the enrolment request to send to the hub operators.
    /// Private keys stay in DIR (0600).
    Init(NodeInit),
    /// Agency side: install the enrolment bundle the hub operators sent back and write
    /// DIR/node.toml (roster mode); then `intelmesh run --config DIR/node.toml`.
    Join(crate::join_cmd::NodeJoin),
    /// Member side: a new signing key, taken by the running node without a restart (or
    /// switched in the stopped node's store), and the rotation request signed by the old and
    /// the new key, to send to the hub operators.
    RotateKey(crate::rotate_cmd::RotateKeyArgs),
    /// Member side: a new encryption key (the old one kept beside it to open what was sealed
    /// to it) and the request, signed with the current signing key, that asks the hub
    /// operators to list it (`admin members set-encryption-key`).
    RotateEncryptionKey(crate::enc_key_cmd::RotateEncryptionKeyArgs),
    /// Member side, after its signing key was taken: a new key (the stopped node switched to
    /// it) and its proof, for the hub operators to send with the compromise report
    /// (`admin members report-compromise ORG --replacement FILE`).
    ReplacementKey(crate::replacement_cmd::ReplacementKeyArgs),
}

#[derive(Args, Debug)]
pub struct NodeInit {
    #[arg(long, value_name = "ORG", value_parser = parse_org)]
    org: OrgId,
    /// Display name, e.g. "Australian Federal Police".
    #[arg(long)]
    name: String,
    /// ISO 3166-1 alpha-2 country code ("" for international bodies).
    #[arg(long, value_name = "CC", default_value = "")]
    country: String,
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// `intelmesh admin keygen`: an operator's authority key.
#[derive(Args, Debug)]
pub struct AdminKeygen {
    /// The holder's name (recorded in the roster for the audit trail).
    #[arg(long)]
    pub name: String,
    /// Private key file to write (0600); the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn admin_keygen(args: AdminKeygen) -> anyhow::Result<ExitCode> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_private(&args.out, &key)?;
    let public = pub_path(&args.out);
    let hex_key = format!("{}\n", hex::encode(key.verifying_key().as_bytes()));
    write_file(&public, hex_key.as_bytes())
        .with_context(|| format!("writing {}", public.display()))?;
    out!(
        "wrote {} (private, 0600: keep it offline) and {} (give it to `federation init --authority {}={}`)",
        args.out.display(),
        public.display(),
        args.name,
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

pub fn federation(which: Federation) -> anyhow::Result<ExitCode> {
    let Federation::Init(a) = which;
    let dir = absolute("--dir", &a.dir)?;
    // Some inputs are only judged once keys exist (the genesis is built from them): a failure
    // then takes back what this run wrote, so a corrected run is not refused over it.
    let fresh = match std::fs::read_dir(&dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    let result = federation_init(a);
    if result.is_err() && fresh {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = match path.is_dir() {
                    true => std::fs::remove_dir_all(&path),
                    false => std::fs::remove_file(&path),
                };
            }
        }
    }
    result
}

fn federation_init(mut a: FederationInit) -> anyhow::Result<ExitCode> {
    let federation_listen = match a.federation_listen {
        Some(addr) => addr,
        None => crate::conn::resolve_addr("--hub-address", &a.hub_address)?,
    };
    distinct_listeners(federation_listen, a.api_listen)?;
    // The config names files by path and a node resolves relative paths against the
    // config's own directory: write absolute ones.
    a.dir = absolute("--dir", &a.dir)?;
    if let Some(ca) = &a.federation_ca {
        a.federation_ca = Some(absolute("--federation-ca", ca)?);
    }
    if a.dir.join("genesis.roster").exists() {
        return Err(usage(format!(
            "{} already holds a federation (genesis.roster); choose another --dir",
            a.dir.display()
        )));
    }
    let authority = a
        .authorities
        .iter()
        .map(|spec| parse_authority(spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let signers = a
        .sign_with
        .iter()
        .map(|p| load_authority_key(p).map_err(|e| usage(format!("--sign-with: {e:#}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Before anything is made: a run interrupted after the CA was written, run again, would
    // otherwise make a second CA and stop only at the hub's keys.
    let hub_dir = a.dir.join("hub");
    refuse_existing_keys(&hub_dir)?;
    if a.federation_ca.is_none() {
        refuse_existing_keys_named(&a.dir.join("federation-ca"), &["ca.key"])?;
    }
    create_dir(&a.dir)?;
    let ca = match &a.federation_ca {
        Some(dir) => Ca::load(&dir.join("ca.pem"), &dir.join("ca.key"))?,
        None => {
            let ca = Ca::generate(&CaRole::Federation)?;
            let ca_dir = a.dir.join("federation-ca");
            create_dir(&ca_dir)?;
            ca.write(&ca_dir, "ca")?;
            ca
        }
    };
    write_pem(&a.dir.join("federation-ca.pem"), ca.cert_pem(), false)?;
    let hub = node_files(&hub_dir, &a.hub)?;
    let cert = ca.sign_node_request(&a.hub, &hub.csr_pem, Validity::days(DEFAULT_LEAF_DAYS))?;
    write_pem(&hub_dir.join("node.pem"), &cert, false)?;
    let document = build_genesis(
        &GenesisSpec {
            federation_id: a.id.clone(),
            authority,
            threshold: a.threshold,
            hub_members: vec![HubMember {
                org: a.hub.clone(),
                display_name: a.hub_name.clone().unwrap_or_else(|| a.hub.to_string()),
                country: a.hub_country.clone(),
                signing_key: hub.signing_key.verifying_key(),
                encryption_key: Some(hub.encryption_key),
            }],
            ca_certs_pem: vec![ca.cert_pem().to_string()],
            hubs: vec![pb::HubAddress {
                org: a.hub.to_string(),
                address: a.hub_address.clone(),
            }],
            policy: pb::Policy::default(),
            proposed_by: "federation init".into(),
        },
        intelmesh_core::now_unix_ms(),
    )
    .map_err(|e| usage(format!("the genesis would be malformed: {e}")))?;
    let genesis = pb::SignedRoster {
        signatures: signers
            .iter()
            .map(|k| sign_document(&document, k, intelmesh_core::now_unix_ms()))
            .collect(),
        document,
    };
    let t = genesis_thresholds(&genesis).map_err(|e| usage(e.to_string()))?;
    if !t.is_complete() {
        return Err(usage(format!(
            "the genesis carries {} valid signatures of its authority keys, {} needed: give --sign-with the private keys of at least {} of the --authority keys",
            t.signed_current, t.needed_current, t.needed_current
        )));
    }
    let pin = hex::encode(roster_hash(&genesis.document));
    write_file(&a.dir.join("genesis.roster"), &genesis.encode_to_vec())?;
    let config = NodeConfig {
        org: a.hub.to_string(),
        role: Role::Hub,
        data_dir: hub_dir.join("data"),
        signing_key: hub_dir.join("signing.key"),
        encryption_key: Some(hub_dir.join(ENCRYPTION_KEY_FILE)),
        keys: None,
        roster: Some(RosterConfig {
            genesis: a.dir.join("genesis.roster"),
            genesis_hash: pin.clone(),
            log_pins: Vec::new(),
        }),
        admin: Some(AdminConfig {
            federation_ca_cert: a
                .federation_ca
                .as_ref()
                .map_or_else(|| a.dir.join("federation-ca/ca.pem"), |d| d.join("ca.pem")),
            federation_ca_key: a
                .federation_ca
                .as_ref()
                .map_or_else(|| a.dir.join("federation-ca/ca.key"), |d| d.join("ca.key")),
        }),
        roster_version: 0,
        federation: ListenerConfig {
            listen: federation_listen,
            client_ca: a.dir.join("federation-ca.pem"),
            cert: hub_dir.join("node.pem"),
            key: hub_dir.join("node.key"),
        },
        api: ListenerConfig {
            listen: a.api_listen,
            client_ca: hub_dir.join("service-ca/ca.pem"),
            cert: hub_dir.join("api.pem"),
            key: hub_dir.join("api.key"),
        },
        read_only_services: Vec::new(),
        revoked_serials: Vec::new(),
        peer: Vec::new(),
        warninglists: Vec::new(),
        taxii: None,
        metrics: None,
        log_format: None,
        console: None,
        limits: Default::default(),
        audit: Default::default(),
        store: Default::default(),
    };
    write_config(&hub_dir.join("node.toml"), &config)?;
    out!("federation {} created in {}", a.id, a.dir.display());
    out!("genesis pin: {pin}");
    out!(
        "hub {}: intelmesh run --config {}",
        a.hub,
        hub_dir.join("node.toml").display()
    );
    out!(
        "operators' certificates: intelmesh pki issue-admin --ca-dir {} --org {} --name NAME --out DIR",
        hub_dir.join("service-ca").display(),
        a.hub
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parse_authority(spec: &str) -> anyhow::Result<AuthorityKey> {
    let (name, file) = spec
        .split_once('=')
        .ok_or_else(|| usage(format!("--authority {spec}: expected NAME=PUBKEYFILE")))?;
    let text =
        std::fs::read_to_string(file).map_err(|e| usage(format!("--authority {spec}: {e}")))?;
    let key = parse_public_key(&text).map_err(|e| usage(format!("--authority {spec}: {e:#}")))?;
    Ok(AuthorityKey {
        name: name.to_string(),
        key,
    })
}

/// An authority's signing key from its file: a roster authority key signs who is a member. A
/// file others may read or write is used with a warning, not refused: such keys are often kept
/// on removable media whose file system has no modes (vfat, exFAT and NTFS mounts show 0644 to
/// 0777), where `chmod 600` cannot help.
pub(crate) fn load_authority_key(path: &Path) -> anyhow::Result<SigningKey> {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            eprintln!(
                "warning: {} may be written by others (mode {mode:04o}): they could choose the key it signs with; run `chmod 600 {}` where the file system keeps modes",
                path.display(),
                path.display()
            );
        } else if let Err(e) = intelmesh_node::private_files::check_key_file(path) {
            eprintln!("warning: {e}: an authority key signs who is a member");
        }
    }
    load_signing_key(path)
}

/// Refuses a node directory that already holds one of a node's private keys.
fn refuse_existing_keys(dir: &Path) -> anyhow::Result<()> {
    refuse_existing_keys_named(dir, &["node.key", "signing.key", ENCRYPTION_KEY_FILE])
}

fn refuse_existing_keys_named(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    match names.iter().map(|n| dir.join(n)).find(|p| p.exists()) {
        Some(existing) => Err(usage(format!(
            "{} already exists; refusing to overwrite a key (choose another --dir)",
            existing.display()
        ))),
        None => Ok(()),
    }
}

/// What every node's directory holds before it has a federation certificate.
struct NodeFiles {
    csr_pem: String,
    signing_key: SigningKey,
    encryption_key: EncryptionPublic,
}

/// Writes a node's private keys (TLS key, signing key, encryption key), its CSR, its service CA and API
/// certificate, and a `cli` service certificate, into `dir`.
fn node_files(dir: &Path, org: &OrgId) -> anyhow::Result<NodeFiles> {
    refuse_existing_keys(dir)?;
    create_dir(dir)?;
    let request = request_node(org)?;
    write_pem(&dir.join("node.key"), &request.key_pem, true)?;
    write_pem(&dir.join("node.csr"), &request.csr_pem, false)?;
    let signing_key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_private(&dir.join("signing.key"), &signing_key)?;
    let hex_key = format!("{}\n", hex::encode(signing_key.verifying_key().as_bytes()));
    write_file(&dir.join("signing.pub"), hex_key.as_bytes())?;
    let encryption_key = intelmesh_node::encryption_keys::generate(&dir.join(ENCRYPTION_KEY_FILE))?;
    let service_ca = Ca::generate(&CaRole::Service(org.clone()))?;
    let ca_dir = dir.join("service-ca");
    create_dir(&ca_dir)?;
    service_ca.write(&ca_dir, "ca")?;
    service_ca.issue_node(org)?.write(dir, "api")?;
    service_ca.issue_service(org, "cli")?.write(dir, "cli")?;
    Ok(NodeFiles {
        csr_pem: request.csr_pem,
        signing_key,
        encryption_key,
    })
}

pub fn node(which: NodeCmd) -> anyhow::Result<ExitCode> {
    match which {
        NodeCmd::Init(a) => node_init(a),
        NodeCmd::Join(a) => crate::join_cmd::node_join(a),
        NodeCmd::RotateKey(a) => {
            crate::current_thread()?.block_on(crate::rotate_cmd::rotate_key(a))
        }
        NodeCmd::RotateEncryptionKey(a) => crate::enc_key_cmd::rotate_encryption_key(a),
        NodeCmd::ReplacementKey(a) => crate::replacement_cmd::replacement_key(a),
    }
}

fn node_init(a: NodeInit) -> anyhow::Result<ExitCode> {
    // Judged here as the hub will judge them, before any key is made.
    if let Some(problem) = intelmesh_roster::enrolment::naming_problem(&a.name, &a.country) {
        return Err(usage(format!("--name/--country: {problem}")));
    }
    let files = node_files(&a.dir, &a.org)?;
    let request = sign_enrolment(
        &EnrolmentDetails {
            org: a.org.clone(),
            display_name: a.name,
            country: a.country,
            csr_pem: files.csr_pem,
            encryption_key: Some(files.encryption_key),
        },
        &files.signing_key,
        intelmesh_core::now_unix_ms(),
    );
    let path = a.dir.join(REQUEST_FILE);
    write_file(&path, &request.encode_to_vec())?;
    let key_id = intelmesh_core::KeyId::of(&files.signing_key.verifying_key());
    out!(
        "wrote the keys of {} into {} (private, 0600: they stay here)",
        a.org,
        a.dir.display()
    );
    out!(
        "send {} to the hub operators (`intelmesh admin members add --request FILE`); they send back a bundle for `intelmesh node join --dir {} --bundle FILE`",
        path.display(),
        a.dir.display()
    );
    // What the operators' proposal names ("with key …"): compared by phone, it shows a request
    // swapped in transit for one of someone else's keys.
    out!(
        "read these to the hub operators through another channel than the file: signing key {key_id}, encryption key {}",
        files.encryption_key.id()
    );
    Ok(ExitCode::SUCCESS)
}

/// The org of the directory `node init` wrote, from its own enrolment request.
pub(crate) fn dir_org(dir: &Path) -> anyhow::Result<OrgId> {
    let path = dir.join(REQUEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        usage(format!(
            "--dir {}: {e} (run `intelmesh node init` first)",
            path.display()
        ))
    })?;
    let signed = pb::SignedEnrolmentRequest::decode(bytes.as_slice())
        .map_err(|e| usage(format!("{}: not an enrolment request: {e}", path.display())))?;
    let verified =
        verify_enrolment(&signed).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok(verified.org)
}

pub(crate) fn absolute(flag: &str, path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

/// The node's two listeners on one port would make a config `run` refuses.
pub(crate) fn distinct_listeners(
    federation: std::net::SocketAddr,
    api: std::net::SocketAddr,
) -> anyhow::Result<()> {
    if intelmesh_node::config::clashes(federation, api) {
        return Err(usage(format!(
            "--api-listen {api} is also the federation listener: give each its own port (peers and services never share a listener)"
        )));
    }
    Ok(())
}

pub(crate) fn write_config(path: &Path, config: &NodeConfig) -> anyhow::Result<()> {
    let text = toml::to_string_pretty(config).context("encoding the node config")?;
    // One holding TAXII users' password hashes (guessed offline from a copy) is never
    // readable by others: its owner and group (the node's user) only.
    if config.taxii.as_ref().is_some_and(|t| !t.user.is_empty()) {
        return Ok(intelmesh_node::durable::replace_exact(
            path,
            text.as_bytes(),
            0o640,
        )?);
    }
    write_file(path, text.as_bytes())
}

/// Writes a file others may read (a config, a genesis, a request to send), whole and durably:
/// a crash leaves the old file or the new one, never a truncated one a re-run then refuses.
/// 0644 whatever the umask: the node's own user reads what root wrote.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(intelmesh_node::durable::replace_public(path, bytes)?)
}

/// Creates `dir` (and its parents) for files a command writes; a file in its place is a
/// usage error.
pub(crate) fn create_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(usage(format!(
            "{} is a file: give a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
