//! `intelmesh pki …`: the certificate authorities and certificates of a real federation, and
//! the key registry built from the members' public keys. Private keys are created 0600 and
//! never overwritten.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use intelmesh_core::OrgId;
use intelmesh_node::pki::{Ca, CaRole, Validity, DEFAULT_LEAF_DAYS};

use crate::enrol_cmd::create_dir;
use crate::input::parse_org;
use crate::usage;

#[derive(Subcommand, Debug)]
pub enum Pki {
    /// Create a certificate authority: DIR/ca.pem and DIR/ca.key (0600). One for the
    /// federation (held by the hub operator, `--federation`), and one service CA per member
    /// (`--service ORG`). The certificate records which (when given), so `intelmesh run --check` catches
    /// one given in the other's place.
    InitCa {
        /// Directory to create the CA in.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The federation's CA: it certifies every member's node for the federation listeners.
        #[arg(long, conflicts_with = "service")]
        federation: bool,
        /// ORG's service CA: it certifies ORG's API listener and the services that call it.
        #[arg(long, value_name = "ORG", value_parser = parse_org)]
        service: Option<OrgId>,
        /// The CA's common name [default: "intelmesh federation CA" or "ORG service CA"].
        #[arg(long)]
        name: Option<String>,
    },
    /// Issue a node certificate for ORG (server and client auth; writes FILE.pem and FILE.key,
    /// 0600): with the federation CA for the federation listener, with the agency's service CA
    /// for its API listener.
    IssueNode {
        /// Directory holding ca.pem and ca.key.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        #[command(flatten)]
        node: NodeFiles,
        #[command(flatten)]
        validity: ValidityArgs,
    },
    /// Member side: make this node's federation key (FILE.key, 0600, stays here) and a request
    /// (FILE.csr) to send to the federation CA's holder, who answers with `sign-node`.
    RequestNode {
        #[command(flatten)]
        node: NodeFiles,
    },
    /// CA side: certify a member's `request-node` request as the node of ORG (writes FILE.pem).
    /// Only the request's public key is used; a request made for another org is refused.
    SignNode {
        /// Directory holding ca.pem and ca.key.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The member's request (PEM).
        #[arg(long, value_name = "FILE.csr")]
        csr: PathBuf,
        #[command(flatten)]
        node: NodeFiles,
        #[command(flatten)]
        validity: ValidityArgs,
    },
    /// Issue a client certificate for a local service NAME of ORG (e.g. `soc-firewall`), to
    /// call its node's API.
    IssueService(ClientCertArgs),
    /// Issue an admin certificate for hub operator NAME of the hub ORG (e.g. `alice`), to call
    /// the hub's Admin service (`intelmesh admin …`); it can call nothing else.
    IssueAdmin(ClientCertArgs),
    /// Print the key registry (TOML, the `keys` file of every node) for the members' public
    /// keys, given as ORG.pub files written by `intelmesh keygen`.
    Registry {
        /// ORG.pub files; the org id is the file name without `.pub`.
        #[arg(value_name = "ORG.pub", required = true)]
        public_keys: Vec<PathBuf>,
    },
}

/// A node of ORG, and where its files go: DIR/FILE.pem, FILE.key or FILE.csr.
#[derive(Args, Debug)]
pub struct NodeFiles {
    #[arg(long, value_name = "ORG", value_parser = parse_org)]
    org: OrgId,
    /// Directory to write the node's files into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Base name of the files written.
    #[arg(long, value_name = "FILE", default_value = "node")]
    file: String,
}

/// A client certificate NAME of ORG, issued by ORG's service CA.
#[derive(Args, Debug)]
pub struct ClientCertArgs {
    /// Directory holding ORG's service CA (ca.pem and ca.key).
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    #[arg(long, value_name = "ORG", value_parser = parse_org)]
    org: OrgId,
    /// The service's or operator's name (letters, digits, `-`, `_`, `.`).
    #[arg(long)]
    name: String,
    /// Directory to write NAME.pem and NAME.key (0600) into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    validity: ValidityArgs,
}

/// How long an issued certificate is valid.
#[derive(Args, Debug)]
pub struct ValidityArgs {
    /// Days the certificate is valid from now.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LEAF_DAYS)]
    days: u32,
}

impl ValidityArgs {
    fn validity(&self) -> anyhow::Result<Validity> {
        if self.days == 0 {
            return Err(usage(
                "--days 0: a certificate must be valid for at least one day",
            ));
        }
        Ok(Validity::days(self.days))
    }
}

impl NodeFiles {
    fn path(&self, ext: &str) -> PathBuf {
        self.out.join(format!("{}.{ext}", self.file))
    }
}

pub fn run(which: Pki) -> anyhow::Result<ExitCode> {
    match which {
        Pki::InitCa {
            out,
            federation,
            service,
            name,
        } => {
            let role = match (federation, service) {
                (true, _) => Some(CaRole::Federation),
                (false, Some(org)) => Some(CaRole::Service(org)),
                (false, None) => None,
            };
            refuse_existing(&out, "ca")?;
            create_dir(&out)?;
            match (&role, &name) {
                (Some(role), Some(name)) => Ca::generate_named(role, name)?,
                (Some(role), None) => Ca::generate(role)?,
                (None, name) => {
                    Ca::generate_unmarked(name.as_deref().unwrap_or("intelmesh federation CA"))?
                }
            }
            .write(&out, "ca")?;
            let what = role.map_or_else(
                || "no role recorded: pass --federation or --service ORG next time, so `intelmesh run --check` can tell the two CAs apart".to_string(),
                |r| r.to_string(),
            );
            out!(
                "wrote {} and {} (private, 0600): {what}",
                out.join("ca.pem").display(),
                out.join("ca.key").display()
            );
        }
        Pki::IssueNode {
            ca_dir,
            node,
            validity,
        } => {
            check_name("--file", &node.file)?;
            let validity = validity.validity()?;
            let ca = load_ca(&ca_dir)?;
            refuse_existing(&node.out, &node.file)?;
            create_dir(&node.out)?;
            ca.issue_node_for(&node.org, validity)?
                .write(&node.out, &node.file)?;
            out!(
                "wrote {} and {} (private, 0600): node {}, DNS name {}",
                node.path("pem").display(),
                node.path("key").display(),
                node.org,
                intelmesh_node::pki::node_dns_name(&node.org)
            );
        }
        Pki::RequestNode { node } => {
            check_name("--file", &node.file)?;
            refuse_existing(&node.out, &node.file)?;
            refuse_file(&node.path("csr"))?;
            create_dir(&node.out)?;
            let request = intelmesh_node::pki::request_node(&node.org)?;
            intelmesh_node::pki::write_pem(&node.path("key"), &request.key_pem, true)?;
            intelmesh_node::pki::write_pem(&node.path("csr"), &request.csr_pem, false)?;
            out!(
                "wrote {} (private, 0600: keep it here) and {} (send it to the federation CA's holder)",
                node.path("key").display(),
                node.path("csr").display()
            );
        }
        Pki::SignNode {
            ca_dir,
            csr,
            node,
            validity,
        } => {
            check_name("--file", &node.file)?;
            let validity = validity.validity()?;
            let ca = load_ca(&ca_dir)?;
            refuse_file(&node.path("pem"))?;
            let request = std::fs::read_to_string(&csr)
                .map_err(|e| usage(format!("--csr {}: {e}", csr.display())))?;
            let cert = ca
                .sign_node_request(&node.org, &request, validity)
                .map_err(|e| usage(format!("--csr {}: {e:#}", csr.display())))?;
            create_dir(&node.out)?;
            intelmesh_node::pki::write_pem(&node.path("pem"), &cert, false)?;
            out!(
                "wrote {}: node {}, DNS name {} (send it back to the member)",
                node.path("pem").display(),
                node.org,
                intelmesh_node::pki::node_dns_name(&node.org)
            );
        }
        Pki::IssueService(a) => issue_client(a, Role::Service)?,
        Pki::IssueAdmin(a) => issue_client(a, Role::Admin)?,
        Pki::Registry { public_keys } => print!("{}", registry(&public_keys)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// Which client certificate `issue_client` makes.
enum Role {
    Service,
    Admin,
}

fn issue_client(a: ClientCertArgs, role: Role) -> anyhow::Result<()> {
    let ClientCertArgs {
        ca_dir,
        org,
        name,
        out,
        validity,
    } = a;
    check_name("--name", &name)?;
    let validity = validity.validity()?;
    let ca = load_ca(&ca_dir)?;
    refuse_existing(&out, &name)?;
    create_dir(&out)?;
    let (issued, identity) = match role {
        Role::Service => (
            ca.issue_service_for(&org, &name, validity)?,
            intelmesh_node::pki::service_uri(&org, &name),
        ),
        Role::Admin => (
            ca.issue_admin(&org, &name, validity)?,
            format!(
                "{} (calls the hub's Admin service only)",
                intelmesh_node::pki::admin_uri(&org, &name)
            ),
        ),
    };
    issued.write(&out, &name)?;
    out!(
        "wrote {} and {} (private, 0600): {identity}",
        out.join(format!("{name}.pem")).display(),
        out.join(format!("{name}.key")).display(),
    );
    Ok(())
}

fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    for f in [&cert, &key] {
        if !f.is_file() {
            return Err(usage(format!(
                "--ca-dir {}: no {} (create the CA with `intelmesh pki init-ca --out {} --federation` or `--service ORG`)",
                dir.display(),
                f.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
                dir.display()
            )));
        }
    }
    Ca::load(&cert, &key)
}

/// Keys are never overwritten: an existing one may be the only copy in use.
fn refuse_existing(dir: &Path, name: &str) -> anyhow::Result<()> {
    for ext in ["key", "pem"] {
        refuse_file(&dir.join(format!("{name}.{ext}")))?;
    }
    Ok(())
}

fn refuse_file(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Err(usage(format!(
            "{} already exists; refusing to overwrite (move it away or choose another --out)",
            path.display()
        )));
    }
    Ok(())
}

fn check_name(flag: &str, name: &str) -> anyhow::Result<()> {
    // The names a certificate may carry (`identity::valid_leaf_name`), and no file name
    // starting with a dot.
    if !intelmesh_node::identity::valid_leaf_name(name) || name.starts_with('.') {
        return Err(usage(format!(
            "{flag} {name:?}: use 1 to 63 letters, digits, '-', '_' or '.' (not starting with '.')"
        )));
    }
    Ok(())
}

fn registry(files: &[PathBuf]) -> anyhow::Result<String> {
    let mut entries = Vec::new();
    for f in files {
        let stem = f
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pub"))
            .ok_or_else(|| usage(format!("{}: expected a file named ORG.pub", f.display())))?;
        let org = OrgId::parse(stem).map_err(|e| usage(format!("{}: {e}", f.display())))?;
        let text =
            std::fs::read_to_string(f).map_err(|e| usage(format!("{}: {e}", f.display())))?;
        let key = intelmesh_node::keys::parse_public_key(&text)
            .map_err(|e| usage(format!("{}: {e:#}", f.display())))?;
        entries.push((org, key));
    }
    Ok(intelmesh_node::keys::registry_toml(
        entries.iter().map(|(o, k)| (o, k)),
    ))
}
