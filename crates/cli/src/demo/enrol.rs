//! The demo's federation, made the way operators and agencies make a real one: each step is
//! an `intelmesh` command run as a child process (`admin keygen`, `federation init`, `pki
//! issue-admin`, `node init`, `admin members add`, `admin roster sign`, `admin members
//! bundle`, `node join`), and the output of one gives the next what it needs. Two operators
//! hold the authority keys with a threshold of two: every roster change is proposed by one
//! and published by the other's signature.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use intelmesh_core::OrgId;
use intelmesh_node::config::{Limits, MetricsConfig, NodeConfig, Role};
use intelmesh_node::console::ConsoleConfig;
use intelmesh_node::provision::{free_loopback_addr, TaxiiCredentials};
use intelmesh_node::taxii::{Permission, TaxiiConfig};

use crate::conn::Target;
use crate::taxii_cmd;

/// The federation id: the roster log's origin.
pub const FEDERATION_ID: &str = "IGCI-MESH";
/// The hub operators, each holding one authority key and one admin certificate.
pub const PROPOSER: &str = "alice";
pub const COSIGNER: &str = "bob";

/// A node's files once it can run: its config and the `cli` service certificate its own API
/// accepts.
#[derive(Clone, Debug)]
pub struct NodeFiles {
    pub org: OrgId,
    pub role: Role,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub federation: SocketAddr,
    pub api: SocketAddr,
    /// The TAXII gateway and its users, once the config turns it on.
    pub taxii: Option<TaxiiAccess>,
    /// The metrics and probes listener, once the config turns it on.
    pub metrics: Option<SocketAddr>,
    /// The hub console's address, once the hub's config turns it on.
    pub console: Option<SocketAddr>,
}

/// Where a node's TAXII gateway listens and who may call it.
#[derive(Clone, Debug)]
pub struct TaxiiAccess {
    pub listen: SocketAddr,
    pub credentials: TaxiiCredentials,
}

impl NodeFiles {
    pub fn client_cert(&self) -> PathBuf {
        self.dir.join("cli.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.join("cli.key")
    }

    pub fn api_ca(&self) -> PathBuf {
        self.dir.join("service-ca/ca.pem")
    }

    pub fn target(&self) -> Target {
        Target {
            org: self.org.clone(),
            addr: self.api,
            ca: self.api_ca(),
            cert: self.client_cert(),
            key: self.client_key(),
            timeout: Duration::from_secs(crate::conn::DEFAULT_TIMEOUT_S),
        }
    }
}

/// A roster version the two operators published, and how long the publishing signature's
/// command took (it returns once the hub has the version durably in its log).
pub struct Published {
    pub version: u64,
    pub took: Duration,
}

/// The hub operators' side of the federation: where the keys and certificates are, how to
/// reach the hub's Admin service.
pub struct Operators {
    exe: PathBuf,
    dir: PathBuf,
    hub: NodeFiles,
    limits: Limits,
    /// The federation's genesis pin, as `federation init` printed it.
    genesis_pin: String,
}

impl Operators {
    /// Generates the two operators' authority keys, creates the federation (genesis signed
    /// by both, threshold 2) with its hub, and the operators' admin certificates.
    pub async fn init(dir: &Path, hub: &OrgId, limits: Limits) -> anyhow::Result<Operators> {
        let exe = std::env::current_exe().context("finding the intelmesh executable")?;
        let ops_dir = dir.join("operators");
        std::fs::create_dir_all(&ops_dir)
            .with_context(|| format!("creating {}", ops_dir.display()))?;
        let (federation, api) = (free_loopback_addr()?, free_loopback_addr()?);
        let hub_files = NodeFiles {
            org: hub.clone(),
            role: Role::Hub,
            dir: dir.join("federation/hub"),
            config: dir.join("federation/hub/node.toml"),
            federation,
            api,
            taxii: None,
            metrics: None,
            console: None,
        };
        let mut ops = Operators {
            exe,
            dir: ops_dir,
            hub: hub_files,
            limits,
            genesis_pin: String::new(),
        };
        let mut init: Vec<OsString> = args(&["federation", "init", "--id", FEDERATION_ID]);
        for op in [PROPOSER, COSIGNER] {
            let key = ops.key(op);
            ops.cli(&[
                "admin".into(),
                "keygen".into(),
                "--name".into(),
                op.into(),
                "--out".into(),
                key.clone().into(),
            ])
            .await?;
            let mut public = key.clone().into_os_string();
            public.push(".pub");
            let mut authority = OsString::from(format!("{op}="));
            authority.push(public);
            init.extend(["--authority".into(), authority]);
            init.extend(["--sign-with".into(), key.into()]);
        }
        init.extend(args(&[
            "--threshold",
            "2",
            "--hub",
            hub.as_str(),
            "--hub-name",
            "INTERPOL Global Complex for Innovation",
            "--hub-country",
            "SG",
            "--hub-address",
            &federation.to_string(),
            "--api-listen",
            &api.to_string(),
        ]));
        init.extend(["--dir".into(), dir.join("federation").into()]);
        let out = ops.cli(&init).await?;
        let pin = out
            .lines()
            .find_map(|l| l.strip_prefix("genesis pin: "))
            .context("federation init printed no genesis pin")?;
        // What the operators would tell each agency through another channel than its bundle.
        ops.genesis_pin = pin.to_string();
        println!(
            "  {PROPOSER} and {COSIGNER} each made an authority key (admin keygen); federation init signed the genesis with both: threshold 2 of 2, pin {}…",
            &pin[..pin.len().min(16)]
        );
        for op in [PROPOSER, COSIGNER] {
            let mut issue: Vec<OsString> = args(&["pki", "issue-admin", "--ca-dir"]);
            issue.push(ops.hub.dir.join("service-ca").into());
            issue.extend(args(&["--org", hub.as_str(), "--name", op, "--out"]));
            issue.push(ops.dir.clone().into());
            ops.cli(&issue).await?;
        }
        let (taxii, metrics) = tune(&ops.hub.config, &ops.limits)?;
        (ops.hub.taxii, ops.hub.metrics) = (Some(taxii), Some(metrics));
        ops.hub.console = Some(console_on(&ops.hub.config)?);
        Ok(ops)
    }

    /// Operator `op`'s admin certificate and key (for the Admin service and the console).
    pub fn admin_cert(dir: &Path, op: &str) -> (PathBuf, PathBuf) {
        let ops = dir.join("operators");
        (ops.join(format!("{op}.pem")), ops.join(format!("{op}.key")))
    }

    pub fn hub(&self) -> &NodeFiles {
        &self.hub
    }

    fn key(&self, op: &str) -> PathBuf {
        self.dir.join(format!("{op}.authority.key"))
    }

    /// An agency's own set-up and admission: `node init` at the agency, the request admitted
    /// by the two operators, the bundle recorded by them, `node join` at the agency.
    pub async fn enrol(
        &self,
        org: &OrgId,
        name: &str,
        country: &str,
        dir: &Path,
    ) -> anyhow::Result<(NodeFiles, Vec<Published>)> {
        let node_dir = dir.join(org.as_str());
        let mut init: Vec<OsString> =
            args(&["node", "init", "--org", org.as_str(), "--name", name]);
        init.extend(args(&["--country", country, "--dir"]));
        init.push(node_dir.clone().into());
        self.cli(&init).await?;
        let request = node_dir.join(crate::enrol_cmd::REQUEST_FILE);
        let mut add: Vec<OsString> = args(&["members", "add", "--request"]);
        add.push(request.into());
        add.extend(args(&["--reason", &format!("{org} joins the mesh")]));
        let admitted = self.propose_and_cosign(add).await?;
        let bundle = dir.join(format!("{org}.bundle"));
        let mut issue: Vec<OsString> = args(&["members", "bundle", org.as_str(), "--days", "30"]);
        issue.push("--out".into());
        issue.push(bundle.clone().into());
        let recorded = self.propose_and_cosign(issue).await?;
        let files = NodeFiles {
            org: org.clone(),
            role: Role::Agency,
            config: node_dir.join("node.toml"),
            dir: node_dir,
            federation: free_loopback_addr()?,
            api: free_loopback_addr()?,
            taxii: None,
            metrics: None,
            console: None,
        };
        let mut join: Vec<OsString> = args(&["node", "join", "--dir"]);
        join.push(files.dir.clone().into());
        join.push("--bundle".into());
        join.push(bundle.into());
        join.extend(args(&[
            "--federation-listen",
            &files.federation.to_string(),
            "--api-listen",
            &files.api.to_string(),
            "--genesis-pin",
            &self.genesis_pin,
        ]));
        self.cli(&join).await?;
        let (taxii, metrics) = tune(&files.config, &self.limits)?;
        let files = NodeFiles {
            taxii: Some(taxii),
            metrics: Some(metrics),
            ..files
        };
        Ok((files, vec![admitted, recorded]))
    }

    /// `intelmesh admin WHAT…` proposed and signed by the first operator, then signed by the
    /// second, which publishes it.
    pub async fn propose_and_cosign(&self, what: Vec<OsString>) -> anyhow::Result<Published> {
        let (id, version) = self.propose(what).await?;
        self.cosign(&id, version).await
    }

    /// `intelmesh admin WHAT… --sign-with` the first operator's key: a pending proposal, its
    /// id and roster version.
    pub async fn propose(&self, what: Vec<OsString>) -> anyhow::Result<(String, u64)> {
        let mut proposing = what;
        proposing.push("--sign-with".into());
        proposing.push(self.key(PROPOSER).into());
        let proposed = self.admin(PROPOSER, proposing).await?;
        if !proposed.contains("pending, 1 of 2") {
            anyhow::bail!("one signature was expected to leave the proposal pending: {proposed}");
        }
        proposal_of(&proposed)
    }

    /// The second operator's `admin roster sign`, which publishes proposal `id`.
    pub async fn cosign(&self, id: &str, version: u64) -> anyhow::Result<Published> {
        let mut sign: Vec<OsString> = args(&["roster", "sign", "--proposal", id, "--key"]);
        sign.push(self.key(COSIGNER).into());
        let start = Instant::now();
        let signed = self.admin(COSIGNER, sign).await?;
        let took = start.elapsed();
        if !signed.contains(&format!("proposal {id}: published")) {
            anyhow::bail!("{COSIGNER}'s signature did not publish proposal {id}: {signed}");
        }
        Ok(Published { version, took })
    }

    /// `intelmesh admin GROUP [connection] REST…` as operator `op`.
    pub async fn admin(&self, op: &str, what: Vec<OsString>) -> anyhow::Result<String> {
        let mut what = what.into_iter();
        let mut cmd: Vec<OsString> = vec!["admin".into()];
        cmd.extend(what.next());
        cmd.extend(args(&[
            "--api",
            &self.hub.api.to_string(),
            "--node-org",
            self.hub.org.as_str(),
        ]));
        cmd.push("--ca".into());
        cmd.push(self.hub.api_ca().into());
        cmd.push("--cert".into());
        cmd.push(self.dir.join(format!("{op}.pem")).into());
        cmd.push("--key".into());
        cmd.push(self.dir.join(format!("{op}.key")).into());
        cmd.extend(what);
        self.cli(&cmd).await
    }

    /// Runs `intelmesh ARGS…`; its standard output, or an error with what it said.
    pub async fn cli(&self, a: &[OsString]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(&self.exe)
            .args(a)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running intelmesh")?;
        let shown = || {
            a.iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        if !out.status.success() {
            anyhow::bail!(
                "`intelmesh {}` failed ({}): {}{}",
                shown(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

/// The proposal id and roster version from "proposal ID (roster version N):".
fn proposal_of(out: &str) -> anyhow::Result<(String, u64)> {
    out.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("proposal ")?;
            let (id, rest) = rest.split_once(" (roster version ")?;
            let version = rest.strip_suffix("):")?.parse().ok()?;
            Some((id.to_string(), version))
        })
        .with_context(|| format!("no proposal in: {out}"))
}

/// Short timers, so links come up and a restarted node reconnects within the demo's patience;
/// and the TAXII gateway on, with a writer and a reader, as an operator would with
/// `intelmesh taxii enable` and `intelmesh taxii user`.
fn tune(config: &Path, limits: &Limits) -> anyhow::Result<(TaxiiAccess, SocketAddr)> {
    let mut cfg =
        NodeConfig::load(config).with_context(|| format!("reading {}", config.display()))?;
    cfg.limits = limits.clone();
    let metrics = free_loopback_addr()?;
    cfg.metrics = Some(MetricsConfig {
        listen: metrics,
        hosts: Vec::new(),
    });
    crate::enrol_cmd::write_config(config, &cfg)?;
    let listen = free_loopback_addr()?;
    taxii_cmd::edit(config, |t| {
        *t = Some(TaxiiConfig::new(listen));
        Ok(())
    })?;
    let user = |name: &str, permission| -> anyhow::Result<(String, String)> {
        let password =
            taxii_cmd::add_user(config, name, permission, None)?.context("a generated password")?;
        Ok((name.to_string(), password))
    };
    let credentials = TaxiiCredentials {
        writer: user("analyst", Permission::Submit)?,
        reader: user("reader", Permission::Read)?,
    };
    Ok((
        TaxiiAccess {
            listen,
            credentials,
        },
        metrics,
    ))
}

/// Turns the hub console on in the hub's config, on a free loopback port.
fn console_on(config: &Path) -> anyhow::Result<SocketAddr> {
    let mut cfg =
        NodeConfig::load(config).with_context(|| format!("reading {}", config.display()))?;
    let listen = free_loopback_addr()?;
    cfg.console = Some(ConsoleConfig { listen });
    crate::enrol_cmd::write_config(config, &cfg)?;
    Ok(listen)
}

#[cfg(test)]
mod tests {
    use super::proposal_of;

    #[test]
    fn proposals_are_read_from_the_admin_output() {
        let out = "proposal 7f3a (roster version 4):\n  + member AU-AFP\nproposal 7f3a: pending, 1 of 2 current authority signatures\n";
        assert_eq!(proposal_of(out).unwrap(), ("7f3a".to_string(), 4));
        assert!(proposal_of("proposal 7f3a: published\n").is_err());
    }
}
