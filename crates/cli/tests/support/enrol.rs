//! A federation made with the real binary, as its operators and members would make it:
//! `federation init` with operators' authority keys and admin certificates, the hub and other
//! nodes as child processes (killed on drop), and the command lines to call them with.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::{intelmesh, wait_until};

pub const FED: &str = "MESH";
pub const HUB: &str = "HUB-X";

pub fn s(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_string()
}

pub fn run(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    intelmesh(&args)
}

pub fn run_ok(args: &[String]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The id in the "proposal ID …" line an admin command printed.
pub fn proposal_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("proposal ")?.split(' ').next())
        .unwrap_or_else(|| panic!("no proposal in: {out}"))
        .to_string()
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// The options that reach a node's API: its address and org, the CA of its API certificate,
/// and the caller's certificate and key.
pub fn api_flags(api: &str, org: &str, ca: &Path, cert: &Path, key: &Path) -> Vec<String> {
    args(&[
        "--api",
        api,
        "--node-org",
        org,
        "--ca",
        &s(ca),
        "--cert",
        &s(cert),
        "--key",
        &s(key),
    ])
}

/// The id of the signing key a node directory's `signing.pub` holds, as operators see it.
pub fn signing_key_id(node_dir: &Path) -> String {
    let public = std::fs::read_to_string(node_dir.join("signing.pub")).unwrap();
    let key = intelmesh_node::keys::parse_public_key(&public).unwrap();
    intelmesh_core::KeyId::of(&key).to_string()
}

pub fn addr() -> String {
    intelmesh_node::provision::free_loopback_addr()
        .unwrap()
        .to_string()
}

/// Node processes this test started; killed on drop.
pub struct Procs(pub Vec<Child>);

impl Procs {
    pub fn start(&mut self, config: &Path, log: &Path) {
        let log = std::fs::File::create(log).unwrap();
        self.0.push(
            Command::new(env!("CARGO_BIN_EXE_intelmesh"))
                .args(["run", "--config", &s(config)])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    pub fn stop_all(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.0.clear();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// A federation made by `federation init` with the given operators (each an authority key
/// and an admin certificate of the hub), and its hub running.
pub struct Federation {
    pub dir: PathBuf,
    pub hub_api: String,
    /// The hub's federation address, as the genesis lists it.
    pub hub_address: String,
    /// The genesis pin `federation init` printed.
    pub genesis_pin: String,
    pub procs: Procs,
}

impl Federation {
    pub fn init(dir: &Path, operators: &[&str], threshold: u32) -> Federation {
        let mut init = args(&["federation", "init", "--id", FED, "--hub", HUB]);
        for op in operators {
            let key = dir.join(format!("{op}.key"));
            run_ok(&args(&["admin", "keygen", "--name", op, "--out", &s(&key)]));
            init.extend(args(&["--authority", &format!("{op}={}.pub", s(&key))]));
            init.extend(args(&["--sign-with", &s(&key)]));
        }
        let hub_api = addr();
        let hub_address = addr();
        init.extend(args(&[
            "--threshold",
            &threshold.to_string(),
            "--hub-address",
            &hub_address,
            "--api-listen",
            &hub_api,
            "--dir",
            &s(&dir.join("fed")),
        ]));
        let out = run_ok(&init);
        let genesis_pin = out
            .lines()
            .find_map(|l| l.strip_prefix("genesis pin: "))
            .unwrap_or_else(|| panic!("no genesis pin: {out}"))
            .to_string();
        for op in operators {
            run_ok(&args(&[
                "pki",
                "issue-admin",
                "--ca-dir",
                &s(&dir.join("fed/hub/service-ca")),
                "--org",
                HUB,
                "--name",
                op,
                "--out",
                &s(&dir.join("ops")),
            ]));
        }
        let mut fed = Federation {
            dir: dir.to_path_buf(),
            hub_api,
            hub_address,
            genesis_pin,
            procs: Procs(Vec::new()),
        };
        fed.start_hub();
        fed
    }

    pub fn start_hub(&mut self) {
        self.procs.start(
            &self.dir.join("fed/hub/node.toml"),
            &self.dir.join("hub.log"),
        );
        wait_until("the hub serves Admin", || {
            run(&self.admin("alice", &["members", "list"]))
                .status
                .success()
                .then_some(())
        });
    }

    /// `intelmesh admin WHAT…` as operator `op`, connection options placed where clap wants
    /// them (after the subcommand group).
    pub fn admin(&self, op: &str, what: &[&str]) -> Vec<String> {
        let ops = self.dir.join("ops");
        self.admin_with(
            &ops.join(format!("{op}.pem")),
            &ops.join(format!("{op}.key")),
            what,
        )
    }

    pub fn admin_with(&self, cert: &Path, key: &Path, what: &[&str]) -> Vec<String> {
        let mut a = args(&["admin", what[0]]);
        a.extend(api_flags(
            &self.hub_api,
            HUB,
            &self.dir.join("fed/hub/service-ca/ca.pem"),
            cert,
            key,
        ));
        a.extend(args(&what[1..]));
        a
    }

    pub fn key(&self, op: &str) -> String {
        s(&self.dir.join(format!("{op}.key")))
    }

    /// A node made by `node init` for `org` in `dir`, admitted by alice's signature alone (a
    /// threshold of one).
    pub fn admit(&self, org: &str, name: &str, dir: &Path) {
        run_ok(&args(&[
            "node",
            "init",
            "--org",
            org,
            "--name",
            name,
            "--dir",
            &s(dir),
        ]));
        let added = run_ok(&self.admin(
            "alice",
            &[
                "members",
                "add",
                "--request",
                &s(&dir.join("enrolment.request")),
                "--sign-with",
                &self.key("alice"),
            ],
        ));
        assert!(added.contains("published"), "{added}");
    }

    /// Connection options for a node's API with its `cli` service certificate.
    pub fn service_args(node_dir: &Path, org: &str, api: &str) -> Vec<String> {
        api_flags(
            api,
            org,
            &node_dir.join("service-ca/ca.pem"),
            &node_dir.join("cli.pem"),
            &node_dir.join("cli.key"),
        )
    }
}
