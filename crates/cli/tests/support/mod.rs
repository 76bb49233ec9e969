//! Helpers for the CLI tests: running the binary, waiting with a deadline, stopping the
//! processes a test started, and a federation made only with `intelmesh pki`/`keygen` and the
//! configs in `deploy/`, as deploy/README.md describes.

pub mod enrol;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use intelmesh_node::config::NodeConfig;

const PATIENCE: Duration = Duration::from_secs(30);

pub fn intelmesh(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_intelmesh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("intelmesh runs")
}

pub fn intelmesh_owned(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    intelmesh(&args)
}

/// The error of a failed command, checked to be exactly one `error: …` line on stderr.
pub fn one_error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

/// Calls `f` until it gives a value, or panics naming `what` after [`PATIENCE`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PIDs in the demo's "started … pid N" and "restarted … (pid N)" lines.
pub fn started_pids(stdout: &str) -> Vec<u32> {
    let pids: Vec<u32> = stdout
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("started") || l.trim_start().starts_with("restarted")
        })
        .filter_map(|l| {
            let rest = &l[l.find("pid ")? + 4..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    assert!(pids.len() >= 6, "5 starts and a restart: {stdout}");
    pids
}

/// Whether a process is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn signal(pid: u32, sig: i32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) with a PID this test started.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The processes `demo --keep` left running, from DIR/pids; killed on drop.
pub struct Kept {
    pub pids: Vec<u32>,
}

impl Kept {
    pub fn from_dir(dir: &Path) -> Kept {
        let pids = std::fs::read_to_string(dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        Kept { pids }
    }

    /// SIGTERM, then waits until every process is gone.
    pub fn stop(self) {
        for pid in &self.pids {
            signal(*pid, libc::SIGTERM);
        }
        for pid in &self.pids {
            wait_until(&format!("kept node {pid} stops"), || {
                gone(*pid).then_some(())
            });
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        for pid in &self.pids {
            if !gone(*pid) {
                signal(*pid, libc::SIGKILL);
            }
        }
    }
}

struct NodeFiles {
    org: String,
    config: PathBuf,
    federation: SocketAddr,
    api: SocketAddr,
    service_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    log: PathBuf,
    data: PathBuf,
}

/// Nodes provisioned with the pki commands; the first is the hub. Killed on drop.
pub struct Nodes {
    nodes: Vec<NodeFiles>,
    children: Vec<Child>,
}

fn run_ok(args: &[&str]) -> Output {
    let out = intelmesh(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A config of `deploy/`, as the node reads it (a key the node does not know fails here).
pub fn deploy_config(name: &str) -> NodeConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Nodes {
    pub fn provision(dir: &Path, orgs: &[&str]) -> Nodes {
        let fed_ca = dir.join("federation-ca");
        run_ok(&["pki", "init-ca", "--out", s(&fed_ca), "--federation"]);
        let keys = dir.join("keys");
        let mut nodes = Vec::new();
        for org in orgs {
            let nd = dir.join(org);
            let service_ca = nd.join("service-ca");
            run_ok(&["keygen", "--org", org, "--out", s(&keys)]);
            run_ok(&["pki", "init-ca", "--out", s(&service_ca), "--service", org]);
            // The federation certificate as deploy/README.md says: the member makes its key
            // and a request, the hub operator signs the request; the key stays with the member.
            run_ok(&["pki", "request-node", "--org", org, "--out", s(&nd)]);
            run_ok(&[
                "pki",
                "sign-node",
                "--ca-dir",
                s(&fed_ca),
                "--org",
                org,
                "--csr",
                s(&nd.join("node.csr")),
                "--out",
                s(&nd),
            ]);
            run_ok(&[
                "pki",
                "issue-node",
                "--ca-dir",
                s(&service_ca),
                "--org",
                org,
                "--out",
                s(&nd),
                "--file",
                "api",
            ]);
            run_ok(&[
                "pki",
                "issue-service",
                "--ca-dir",
                s(&service_ca),
                "--org",
                org,
                "--name",
                "soc",
                "--out",
                s(&nd),
            ]);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(nd.join("soc.key")).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o600, "private keys are 0600");
            nodes.push(NodeFiles {
                org: org.to_string(),
                config: nd.join("node.toml"),
                federation: intelmesh_node::provision::free_loopback_addr().unwrap(),
                api: intelmesh_node::provision::free_loopback_addr().unwrap(),
                service_ca: service_ca.join("ca.pem"),
                client_cert: nd.join("soc.pem"),
                client_key: nd.join("soc.key"),
                log: nd.join("node.log"),
                data: nd.join("data"),
            });
        }
        let pubs: Vec<String> = orgs
            .iter()
            .map(|o| s(&keys.join(format!("{o}.pub"))).to_string())
            .collect();
        let registry =
            intelmesh_owned(&[&["pki".to_string(), "registry".into()], &pubs[..]].concat());
        assert!(registry.status.success());
        std::fs::write(dir.join("registry.toml"), &registry.stdout).unwrap();

        let hub = &nodes[0];
        for (i, n) in nodes.iter().enumerate() {
            let nd = dir.join(&n.org);
            let mut cfg = deploy_config(if i == 0 { "hub.toml" } else { "agency.toml" });
            cfg.org = n.org.clone();
            cfg.data_dir = n.data.clone();
            cfg.signing_key = keys.join(format!("{}.key", n.org));
            cfg.keys = Some(dir.join("registry.toml"));
            cfg.federation.listen = n.federation;
            cfg.federation.client_ca = fed_ca.join("ca.pem");
            cfg.federation.cert = nd.join("node.pem");
            cfg.federation.key = nd.join("node.key");
            cfg.api.listen = n.api;
            cfg.api.client_ca = n.service_ca.clone();
            cfg.api.cert = nd.join("api.pem");
            cfg.api.key = nd.join("api.key");
            if i == 0 {
                cfg.peer.retain(|p| orgs.contains(&p.org.as_str()));
                assert_eq!(
                    cfg.peer.len(),
                    orgs.len() - 1,
                    "hub.toml lists the agencies"
                );
            } else {
                assert_eq!(cfg.peer[0].org, hub.org, "agency.toml dials the hub");
                // One hub here: agency.toml's second hub is not part of this federation.
                cfg.peer.retain(|p| orgs.contains(&p.org.as_str()));
                cfg.peer[0].dial = Some(hub.federation);
            }
            std::fs::write(&n.config, toml::to_string(&cfg).unwrap()).unwrap();
        }
        Nodes {
            nodes,
            children: Vec::new(),
        }
    }

    fn node(&self, org: &str) -> &NodeFiles {
        self.nodes
            .iter()
            .find(|n| n.org == org)
            .expect("provisioned org")
    }

    pub fn config(&self, org: &str) -> String {
        s(&self.node(org).config).to_string()
    }

    /// What the node wrote to its standard error and output.
    pub fn log(&self, org: &str) -> String {
        std::fs::read_to_string(&self.node(org).log).unwrap_or_default()
    }

    pub fn data_dir(&self, org: &str) -> PathBuf {
        self.node(org).data.clone()
    }

    /// The process of a started node.
    pub fn pid(&self, org: &str) -> u32 {
        let i = self
            .nodes
            .iter()
            .position(|n| n.org == org)
            .expect("provisioned org");
        self.children[i].id()
    }

    /// Connection options for a node's API with the `soc` service certificate.
    pub fn api_args(&self, org: &str) -> Vec<String> {
        let n = self.node(org);
        vec![
            "--api".into(),
            n.api.to_string(),
            "--node-org".into(),
            n.org.clone(),
            "--ca".into(),
            s(&n.service_ca).into(),
            "--cert".into(),
            s(&n.client_cert).into(),
            "--key".into(),
            s(&n.client_key).into(),
        ]
    }

    /// Runs `intelmesh CMD … --json` against `org`'s node; returns exit code, JSON and stderr.
    pub fn run_json(&self, org: &str, cmd: &[&str]) -> (Option<i32>, serde_json::Value, String) {
        let mut args: Vec<String> = cmd.iter().map(|a| a.to_string()).collect();
        args.push("--json".into());
        args.extend(self.api_args(org));
        let out = intelmesh_owned(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{cmd:?}: stdout is not JSON ({e}); stderr: {stderr}"));
        (out.status.code(), json, stderr)
    }

    /// `org`'s own assertion of `value` as its node holds it, or None when there is none.
    pub fn assertion(&self, org: &str, value: &str) -> Option<serde_json::Value> {
        let (code, got, stderr) = self.run_json(org, &["get", value]);
        assert_eq!(code, Some(0), "get {value}: {stderr}");
        if got["found"] != true {
            return None;
        }
        got["state"]["assertions"]
            .as_array()?
            .iter()
            .find(|a| a["origin"] == org)
            .cloned()
    }

    /// How many entries `org` has signed, from its node's Status.
    pub fn own_entries(&self, org: &str) -> u64 {
        let (code, status, stderr) = self.run_json(org, &["status"]);
        assert_eq!(code, Some(0), "{stderr}");
        status["vector"][org].as_u64().unwrap_or(0)
    }

    /// An endpoints.json naming these nodes, as `demo --keep` writes it; returns its path.
    pub fn endpoints_file(&self, dir: &Path) -> String {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                serde_json::json!({
                    "org": n.org, "role": if i == 0 { "hub" } else { "agency" },
                    "federation": n.federation, "api": n.api,
                    "client_cert": n.client_cert, "client_key": n.client_key,
                    "api_ca": n.service_ca, "config": n.config, "log": n.log,
                })
            })
            .collect();
        let path = dir.join("endpoints.json");
        let text = serde_json::json!({"dir": dir, "nodes": nodes}).to_string();
        std::fs::write(&path, text).unwrap();
        s(&path).to_string()
    }

    /// Starts every node (hub first) and waits until each answers Status. The nodes run under
    /// umask 022, as from an operator's shell, so tests see whether they rely on a stricter one.
    pub fn start_all(&mut self) {
        for n in &self.nodes {
            let log = std::fs::File::create(&n.log).unwrap();
            let mut command = Command::new(env!("CARGO_BIN_EXE_intelmesh"));
            command
                .args(["run", "--config", s(&n.config)])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            // SAFETY: between fork and exec the child only calls umask(2), which is
            // async-signal-safe and touches no memory.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    libc::umask(0o022);
                    Ok(())
                });
            }
            let child = command.spawn().unwrap();
            self.children.push(child);
        }
        for i in 0..self.nodes.len() {
            let mut args = vec!["status".to_string()];
            args.extend(self.api_args(&self.nodes[i].org));
            let log = self.nodes[i].log.clone();
            wait_until(&format!("{} answers Status", self.nodes[i].org), || {
                if let Ok(Some(status)) = self.children[i].try_wait() {
                    panic!(
                        "node exited {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                intelmesh_owned(&args).status.success().then_some(())
            });
        }
    }

    /// SIGTERM to every node; each must exit 0 (a clean shutdown).
    pub fn stop_all(mut self) {
        for c in &self.children {
            signal(c.id(), libc::SIGTERM);
        }
        for c in &mut self.children {
            let status = c.wait().unwrap();
            assert!(status.success(), "node stopped with {status}");
        }
        self.children.clear();
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
