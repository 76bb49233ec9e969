//! Which node a client command talks to: the connection options, the `endpoints.json` file that
//! `intelmesh demo --keep` writes, and opening the mutual-TLS channel to a node's API.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use intelmesh_core::OrgId;
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::failure::Failure;
use crate::profile::Profile;
use crate::usage;

/// How to reach a node's API: an endpoints file and an org, the address and files directly,
/// or a client profile (`crate::profile`; the default one when nothing is given).
#[derive(Args, Clone, Debug)]
#[command(group = clap::ArgGroup::new("target").args(["endpoints", "api", "profile"]))]
pub struct ConnectArgs {
    /// A profile of ~/.config/intelmesh/client.toml (or $INTELMESH_CLIENT_CONFIG) by name, or a
    /// file holding one: api, node_org, ca, cert, key (or endpoints and node). Without any
    /// connection option, the config's default profile is used.
    #[arg(long, value_name = "NAME|FILE", conflicts_with_all = ["node", "node_org", "ca", "cert", "key"])]
    pub profile: Option<String>,
    /// endpoints.json written by `intelmesh demo --keep` (use with --node).
    #[arg(long, value_name = "FILE", requires = "node", conflicts_with_all = ["api", "node_org", "ca", "cert", "key"])]
    pub endpoints: Option<PathBuf>,
    /// Org id of the node to call, as listed in --endpoints (e.g. AU-AFP).
    #[arg(long, value_name = "ORG")]
    pub node: Option<String>,
    /// Address of the node's API listener (api.listen in its config).
    #[arg(long, value_name = "HOST:PORT", requires_all = ["node_org", "ca", "cert", "key"])]
    pub api: Option<String>,
    /// Org id of the node at --api (its certificate must name it).
    #[arg(long, value_name = "ORG")]
    pub node_org: Option<String>,
    /// CA certificate that signed the node's API certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This service's client certificate (issued by the node's service CA).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Seconds to wait for the node: to connect, and for each answer (not for watch events).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_S, value_parser = clap::value_parser!(u64).range(TIMEOUT_SECS))]
    pub timeout: u64,
}

/// How long a client command waits for the node by default, in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 30;

/// A resolved node API to connect to.
#[derive(Clone, Debug)]
pub struct Target {
    pub org: OrgId,
    pub addr: SocketAddr,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// How long to wait to connect, and for each answer.
    pub timeout: Duration,
}

/// `endpoints.json`: how to reach every node of a federation started by `intelmesh demo --keep`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EndpointsFile {
    /// The federation's directory (configs, certificates, data, logs).
    pub dir: PathBuf,
    pub nodes: Vec<NodeEndpoint>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeEndpoint {
    pub org: String,
    /// "hub" or "agency".
    pub role: String,
    pub federation: SocketAddr,
    pub api: SocketAddr,
    /// A service client certificate and key accepted by this node's API.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The CA of this node's API server certificate.
    pub api_ca: PathBuf,
    /// The TAXII 2.1 discovery URL, a user who may add objects, and the CA that signed the
    /// gateway's certificate (the API's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii_ca: Option<PathBuf>,
    /// A user who may only read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii_reader_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taxii_reader_password: Option<String>,
    /// The Prometheus endpoint (`/metrics`; `/livez` and `/readyz` beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_url: Option<String>,
    /// The hub console's URL and an operator's admin certificate and key that open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_key: Option<PathBuf>,
    pub config: PathBuf,
    pub log: PathBuf,
    /// The node's process, while it runs detached.
    #[serde(default)]
    pub pid: Option<u32>,
}

impl EndpointsFile {
    pub fn load(path: &Path) -> anyhow::Result<EndpointsFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "--endpoints {}: {e} (run `intelmesh demo --keep --dir DIR` to write DIR/endpoints.json)",
                path.display()
            ))
        })?;
        let mut file: EndpointsFile = serde_json::from_str(&text).map_err(|e| {
            usage(format!(
                "--endpoints {}: not an endpoints file: {e}",
                path.display()
            ))
        })?;
        // Relative paths are relative to the file, so a federation directory can be moved.
        let base = path.parent().unwrap_or(Path::new("."));
        for n in &mut file.nodes {
            for p in [
                &mut n.client_cert,
                &mut n.client_key,
                &mut n.api_ca,
                &mut n.config,
                &mut n.log,
            ] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(file)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        // Owner-only: it holds the TAXII gateways' passwords.
        intelmesh_node::durable::replace(path, format!("{text}\n").as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn node(&self, org: &str) -> anyhow::Result<&NodeEndpoint> {
        self.nodes.iter().find(|n| n.org == org).ok_or_else(|| {
            let known: Vec<&str> = self.nodes.iter().map(|n| n.org.as_str()).collect();
            usage(format!(
                "--node {org}: no such node in the endpoints file; known: {}",
                known.join(", ")
            ))
        })
    }
}

impl NodeEndpoint {
    pub fn target(&self) -> anyhow::Result<Target> {
        Ok(Target {
            org: OrgId::parse(&self.org).map_err(|e| usage(e.to_string()))?,
            addr: self.api,
            ca: self.api_ca.clone(),
            cert: self.client_cert.clone(),
            key: self.client_key.clone(),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_S),
        })
    }
}

impl ConnectArgs {
    /// Resolves the options to one node, checking what can be checked without the network.
    pub fn target(&self) -> anyhow::Result<Target> {
        let target = match (&self.endpoints, &self.api) {
            (Some(file), _) => {
                let node = self
                    .node
                    .as_deref()
                    .ok_or_else(|| usage("--endpoints needs --node ORG"))?;
                Target {
                    timeout: Duration::from_secs(self.timeout),
                    ..EndpointsFile::load(file)?.node(node)?.target()?
                }
            }
            (None, Some(api)) => {
                if self.node.is_some() {
                    return Err(usage(
                        "--node goes with --endpoints; with --api name the node's org with --node-org",
                    ));
                }
                let parts = Profile {
                    api: Some(api.clone()),
                    node_org: self.node_org.clone(),
                    ca: self.ca.clone(),
                    cert: self.cert.clone(),
                    key: self.key.clone(),
                    ..Profile::default()
                };
                direct(&parts, "--api needs", self.timeout)?
            }
            (None, None) => match crate::profile::find(self.profile.as_deref())? {
                Some(p) => from_profile(&p, self.timeout)?,
                None => {
                    return Err(usage(
                        "say which node to call: --endpoints FILE --node ORG, --api HOST:PORT --node-org ORG --ca FILE --cert FILE --key FILE, or --profile (a default profile in ~/.config/intelmesh/client.toml needs none)",
                    ))
                }
            },
        };
        for (what, path) in [
            ("CA certificate", &target.ca),
            ("client certificate", &target.cert),
            ("client key", &target.key),
        ] {
            if !path.is_file() {
                return Err(usage(format!("{what} {}: no such file", path.display())));
            }
        }
        Ok(target)
    }
}

/// Seconds a call may take, on the command line or in a profile.
const TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=3600;

/// A target from an address and files given directly (`--api …` or a profile's `api`);
/// `needs` starts the message naming what is missing.
fn direct(p: &Profile, needs: &str, timeout: u64) -> anyhow::Result<Target> {
    // Flags as the command line spells them, settings as the profile does.
    let missing = |name: &str, what: &str| match needs.starts_with("--") {
        true => usage(format!("{needs} --{} {what}", name.replace('_', "-"))),
        false => usage(format!("{needs} {name} ({what})")),
    };
    let file = |f: &Option<PathBuf>, name: &str| f.clone().ok_or_else(|| missing(name, "FILE"));
    let org = p
        .node_org
        .as_deref()
        .ok_or_else(|| missing("node_org", "ORG"))?;
    let api = p
        .api
        .as_deref()
        .ok_or_else(|| missing("api", "HOST:PORT"))?;
    Ok(Target {
        org: OrgId::parse(org).map_err(|e| usage(format!("node org: {e}")))?,
        addr: resolve(api)?,
        ca: file(&p.ca, "ca")?,
        cert: file(&p.cert, "cert")?,
        key: file(&p.key, "key")?,
        timeout: Duration::from_secs(timeout),
    })
}

/// A target from a client profile: its endpoints file and node, or its address and files.
fn from_profile(p: &Profile, timeout: u64) -> anyhow::Result<Target> {
    let timeout = match p.timeout {
        Some(t) if !TIMEOUT_SECS.contains(&t) => {
            return Err(usage(format!(
                "the profile's timeout {t} is not in {}..={} (seconds)",
                TIMEOUT_SECS.start(),
                TIMEOUT_SECS.end()
            )))
        }
        Some(t) => t,
        None => timeout,
    };
    match &p.endpoints {
        Some(file) => {
            let node = p
                .node
                .as_deref()
                .ok_or_else(|| usage("a profile with endpoints needs node"))?;
            Ok(Target {
                timeout: Duration::from_secs(timeout),
                ..EndpointsFile::load(file)?.node(node)?.target()?
            })
        }
        None => direct(p, "the profile needs", timeout),
    }
}

/// A HOST:PORT option resolved to one address.
pub fn resolve_addr(flag: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value
        .to_socket_addrs()
        .map_err(|e| usage(format!("{flag} {value}: {e} (expected HOST:PORT)")))?
        .next()
        .ok_or_else(|| usage(format!("{flag} {value}: resolves to no address")))
}

fn resolve(api: &str) -> anyhow::Result<SocketAddr> {
    let mut addrs = api.to_socket_addrs().map_err(|e| {
        usage(format!(
            "--api {api}: {e} (expected HOST:PORT, e.g. 127.0.0.1:7701)"
        ))
    })?;
    addrs
        .next()
        .ok_or_else(|| usage(format!("--api {api}: resolves to no address")))
}

/// Opens a mutual-TLS channel to the node's API; a failure says why, as far as the errors tell.
pub async fn connect(target: &Target) -> anyhow::Result<Channel> {
    // The caller's own files first: a key that does not belong to its certificate is theirs to
    // fix, not a node that cannot be reached.
    intelmesh_node::tls::install_crypto_provider();
    let tls = intelmesh_node::tls::client_for(&target.org, &target.ca, &target.cert, &target.key)
        .map_err(|e| {
            let mismatch = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<rustls::Error>(),
                    Some(rustls::Error::InconsistentKeys(_))
                )
            });
            usage(if mismatch {
                format!(
                    "the key {} does not belong to the certificate {} (--key and --cert, or the profile's key and cert)",
                    target.key.display(),
                    target.cert.display()
                )
            } else {
                format!("the client's TLS files: {e:#}")
            })
        })?;
    let opened = tokio::time::timeout(
        target.timeout,
        intelmesh_node::client::api_channel_with(target.addr, tls),
    )
    .await;
    let failure = match opened {
        Ok(Ok(channel)) => return Ok(channel),
        Ok(Err(e)) => match Failure::of_connect(e.chain()) {
            Some(failure) => failure,
            None => {
                return Err(e.context(format!(
                    "cannot reach the API of node {} at {}",
                    target.org, target.addr
                )))
            }
        },
        Err(_) => Failure::TimedOut { connecting: true },
    };
    Err(anyhow::anyhow!(
        "cannot reach the API of node {} at {}: {}",
        target.org,
        target.addr,
        hint(target, &failure)
    ))
}

fn hint(target: &Target, failure: &Failure) -> String {
    failure.hint(
        target.org.as_str(),
        &target.addr.to_string(),
        target.timeout.as_secs(),
    )
}

/// A request that gives up after the target's timeout (the node learns the deadline too).
pub fn request<T>(target: &Target, message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(target.timeout);
    r
}

/// A gRPC error as one line, naming the node and, for a transport failure, what broke.
pub fn rpc_error(target: &Target, what: &str, status: tonic::Status) -> anyhow::Error {
    let head = format!("{what} at {} ({}) failed", target.org, target.addr);
    if let Some(failure) = Failure::of_call(&status) {
        return anyhow::anyhow!("{head}: {} ({})", hint(target, &failure), status.message());
    }
    let hint = match status.code() {
        tonic::Code::Unimplemented => " (this node's version does not offer it)",
        tonic::Code::Unavailable => " (the node is not serving: is it shutting down?)",
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            " (the client certificate must be a service certificate issued by this node's service CA)"
        }
        _ => "",
    };
    let line = format!("{head}: {:?}: {}{hint}", status.code(), status.message());
    // The node refused the input itself (a bad value, an idempotency key of another request):
    // that is the caller's to fix, like a bad argument.
    if matches!(
        status.code(),
        tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition
    ) {
        usage(line)
    } else {
        anyhow::anyhow!(line)
    }
}
