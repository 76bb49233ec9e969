//! deploy/enrol.sh, the compose file's enrolment job, run outside containers against temp
//! directories with this build's binary: it makes a federation of a hub and three agencies
//! with the project's own flow, every config it writes passes `run --check`, a second run
//! changes nothing, the hub and an agency started from its output link, and the hub tells
//! systemd it is ready and feeds its watchdog. And the Kubernetes hub config
//! (deploy/k8s/hub-config.yaml), given the files the Secret is made of, passes `run --check`.

#[allow(dead_code)]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::enrol::{addr, api_flags, args, run, run_ok, s, Procs};
use support::wait_until;

const HUB: &str = "SG-IGCI";
const AGENCIES: [(&str, &str, &str, &str); 3] = [
    ("agency-1", "AU-AFP", "AU", "Australian Federal Police"),
    ("agency-2", "BR-PF", "BR", "Policia Federal"),
    ("agency-3", "FR-OCLCTIC", "FR", "OCLCTIC"),
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/enrol.sh")
}

/// Where one enrolment's nodes listen: each its own loopback ports, so all can run here.
struct Layout {
    root: PathBuf,
    hub_federation: String,
    hub_api: String,
    agencies: Vec<(String, String)>,
}

impl Layout {
    fn new(root: &Path, agencies: usize) -> Layout {
        Layout {
            root: root.to_path_buf(),
            hub_federation: addr(),
            hub_api: addr(),
            agencies: (0..agencies).map(|_| (addr(), addr())).collect(),
        }
    }

    fn enrol(&self, metrics: Option<&str>) -> Output {
        let specs: Vec<String> = AGENCIES
            .iter()
            .zip(&self.agencies)
            .map(|((dir, org, cc, name), (fed, api))| {
                format!("{dir},{org},{cc},{name},{fed},{api}")
            })
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg(script())
            .args(&specs)
            .env("INTELMESH", env!("CARGO_BIN_EXE_intelmesh"))
            .env("INTELMESH_ROOT", &self.root)
            .env("HUB_ORG", HUB)
            .env("HUB_ADDRESS", &self.hub_federation)
            .env("HUB_FEDERATION_LISTEN", &self.hub_federation)
            .env("HUB_API_LISTEN", &self.hub_api)
            .env("RUST_LOG", "warn")
            .env_remove("METRICS_LISTEN")
            .stdin(Stdio::null());
        if let Some(listen) = metrics {
            cmd.env("METRICS_LISTEN", listen);
        }
        cmd.output().expect("sh runs deploy/enrol.sh")
    }

    fn hub_config(&self) -> PathBuf {
        self.root.join("hub/hub/node.toml")
    }

    fn agency_dir(&self, i: usize) -> PathBuf {
        self.root.join(AGENCIES[i].0)
    }

    fn configs(&self) -> Vec<PathBuf> {
        let mut all = vec![self.hub_config()];
        all.extend((0..self.agencies.len()).map(|i| self.agency_dir(i).join("node.toml")));
        all
    }
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "enrol.sh failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The agency's `intelmesh status --json` with its own `cli` service certificate.
fn agency_status(dir: &Path, org: &str, api: &str) -> Option<serde_json::Value> {
    let mut a = args(&["status"]);
    a.extend(api_flags(
        api,
        org,
        &dir.join("service-ca/ca.pem"),
        &dir.join("cli.pem"),
        &dir.join("cli.key"),
    ));
    a.push("--json".into());
    let out = run(&a);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Reads the next notification (one datagram) the node sent to the socket.
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification from the node before the socket's deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn enrol_script_makes_a_federation_that_checks_runs_and_links() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("fed"), AGENCIES.len());
    let out = ok(&layout.enrol(None));
    // Genesis, then per agency its admission and its certificate record.
    assert!(out.contains("roster version 7"), "{out}");
    for (_, org, _, _) in AGENCIES {
        assert!(out.contains(&format!("{org} admitted and joined")), "{out}");
    }
    assert!(layout.root.join("operators/enrolled").is_file());

    // Every config passes the node's own preflight: files, keys private, CAs, ports.
    for config in layout.configs() {
        run_ok(&args(&["run", "--config", &s(&config), "--check"]));
    }
    for key in [
        "hub/hub/node.key",
        "hub/hub/signing.key",
        "agency-2/signing.key",
    ] {
        let mode = std::fs::metadata(layout.root.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is private: {mode:o}");
    }
    let roster_before = std::fs::read(layout.root.join("hub/genesis.roster")).unwrap();
    let config_before = std::fs::read(layout.hub_config()).unwrap();

    // A second run (compose restarts the job) leaves everything as it is.
    let again = ok(&layout.enrol(None));
    assert!(again.contains("already enrolled"), "{again}");
    assert_eq!(
        std::fs::read(layout.root.join("hub/genesis.roster")).unwrap(),
        roster_before
    );
    assert_eq!(std::fs::read(layout.hub_config()).unwrap(), config_before);

    // The hub as systemd would run it with Type=notify and WatchdogSec=.
    let notify_path = tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut procs = Procs(Vec::new());
    let hub_log = std::fs::File::create(tmp.path().join("hub.log")).unwrap();
    procs.0.push(
        Command::new(env!("CARGO_BIN_EXE_intelmesh"))
            .args(["run", "--config", &s(&layout.hub_config())])
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(hub_log.try_clone().unwrap())
            .stderr(hub_log)
            .spawn()
            .unwrap(),
    );
    assert_eq!(next_notification(&notify), "READY=1\n");
    for _ in 0..3 {
        assert_eq!(next_notification(&notify), "WATCHDOG=1\n");
    }

    let (dir, org) = (layout.agency_dir(0), AGENCIES[0].1);
    procs.start(&dir.join("node.toml"), &tmp.path().join("agency.log"));
    let api = &layout.agencies[0].1;
    let status = wait_until("the agency links with the hub at roster version 7", || {
        let s = agency_status(&dir, org, api)?;
        let linked = s["peers"]
            .as_array()?
            .iter()
            .any(|p| p["org_id"] == HUB && p["connected"] == true);
        (linked && s["roster_version"] == 7).then_some(s)
    });
    assert!(
        status["flagged_origins"].as_array().unwrap().is_empty(),
        "{status}"
    );

    // SIGTERM: the hub says it is stopping before it goes.
    let hub_pid = i32::try_from(procs.0[0].id()).unwrap();
    // SAFETY: kill(2) on the hub this test spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(hub_pid, libc::SIGTERM) }, 0);
    wait_until("the hub sends STOPPING=1", || {
        (next_notification(&notify) == "STOPPING=1\n").then_some(())
    });
    let hub_exit = procs.0[0].wait().unwrap();
    assert!(hub_exit.success(), "the hub stops cleanly: {hub_exit}");
    procs.stop_all();
}

#[test]
fn enrol_script_adds_the_metrics_section_to_every_config_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("fed"), 1);
    ok(&layout.enrol(Some("0.0.0.0:9464")));
    for config in layout.configs() {
        let text = std::fs::read_to_string(&config).unwrap();
        let doc: toml::Table = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not TOML: {e}", config.display()));
        assert_eq!(
            doc["metrics"]["listen"].as_str(),
            Some("0.0.0.0:9464"),
            "{}",
            config.display()
        );
        // What node join and federation init wrote is still there, untouched, and the node's
        // own loader takes the whole file.
        assert!(doc.contains_key("roster") && doc.contains_key("federation"));
        let cfg = intelmesh_node::NodeConfig::load(&config)
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        assert_eq!(cfg.metrics.map(|m| m.listen.port()), Some(9464));
    }
}

/// The first hub's config from deploy/k8s/hub-config.yaml, read with PyYAML
/// (tests/deploy/yaml_json.py, the Python of scripts/python-deps.sh).
fn k8s_hub_config() -> String {
    let python = std::env::var_os("INTELMESH_PYTHON").expect(
        "INTELMESH_PYTHON is not set: run scripts/test.sh, or export \
         INTELMESH_PYTHON=$(scripts/python-deps.sh | tail -n 1) before cargo test",
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let manifest = repo.join("deploy/k8s/hub-config.yaml");
    let out = Command::new(python)
        .arg(repo.join("tests/deploy/yaml_json.py"))
        .arg(&manifest)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    docs[manifest.display().to_string()][0]["data"]["intelmesh-hub-0.toml"]
        .as_str()
        .expect("a config for intelmesh-hub-0")
        .to_string()
}

#[test]
fn the_kubernetes_hub_config_checks_with_the_files_its_secret_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("fed"), 1);
    ok(&layout.enrol(None));
    // The Secret's files (hub-statefulset.yaml lists them), from what `federation init`
    // wrote, as the init container leaves them: 0600, under /etc/intelmesh/keys.
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let fed = layout.root.join("hub");
    for (name, from) in [
        ("node.pem", "hub/node.pem"),
        ("node.key", "hub/node.key"),
        ("api.pem", "hub/api.pem"),
        ("api.key", "hub/api.key"),
        ("signing.key", "hub/signing.key"),
        ("service-ca.pem", "hub/service-ca/ca.pem"),
        ("federation-ca.pem", "federation-ca.pem"),
        ("federation-ca.key", "federation-ca/ca.key"),
        ("genesis.roster", "genesis.roster"),
    ] {
        std::fs::copy(fed.join(from), keys.join(name)).unwrap();
        std::fs::set_permissions(keys.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let written: toml::Table =
        toml::from_str(&std::fs::read_to_string(layout.hub_config()).unwrap()).unwrap();
    let pin = written["roster"]["genesis_hash"].as_str().unwrap();

    // The pod's paths mapped into the temp dir, the pin filled in, the ports made free
    // (--check refuses a listen address in use).
    let text = k8s_hub_config()
        .replace("/etc/intelmesh/keys/", &format!("{}/", keys.display()))
        .replace("/var/lib/intelmesh/", &format!("{}/", tmp.path().display()))
        .replace("REPLACE-WITH-THE-GENESIS-PIN", pin)
        .replace("0.0.0.0:7700", &addr())
        .replace("127.0.0.1:7701", &addr())
        .replace("0.0.0.0:9464", &addr());
    let config = tmp.path().join("pod.toml");
    std::fs::write(&config, text).unwrap();
    let checked = run_ok(&args(&["run", "--config", &s(&config), "--check"]));
    assert!(checked.contains(&format!("org {HUB}")), "{checked}");
}

/// The unit's `LoadCredential=` keys: systemd hands them over as 0440 files (an ACL for the
/// service's user) in `$CREDENTIALS_DIRECTORY`, which the node accepts there and only there.
#[test]
fn systemd_credentials_pass_the_key_check_in_their_directory_only() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(&tmp.path().join("fed"), 1);
    ok(&layout.enrol(None));
    let dir = layout.agency_dir(0);
    let creds = tmp.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    let mut cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.join("node.toml")).unwrap()).unwrap();
    for (section, file) in [("federation", "node.key"), ("api", "api.key")] {
        std::fs::copy(dir.join(file), creds.join(file)).unwrap();
        std::fs::set_permissions(creds.join(file), std::fs::Permissions::from_mode(0o440)).unwrap();
        cfg[section]
            .as_table_mut()
            .unwrap()
            .insert("key".into(), s(&creds.join(file)).into());
    }
    let config = tmp.path().join("node.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let check = |credentials: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_intelmesh"));
        cmd.args(["run", "--config", &s(&config), "--check"])
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null());
        if let Some(d) = credentials {
            cmd.env("CREDENTIALS_DIRECTORY", d);
        }
        cmd.output().unwrap()
    };
    let accepted = check(Some(&creds));
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    for elsewhere in [None, Some(dir.as_path())] {
        let refused = check(elsewhere);
        assert_eq!(refused.status.code(), Some(2), "{elsewhere:?}");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            said.contains(&format!(
                "{} is readable by others (mode 0440)",
                s(&creds.join("node.key"))
            )),
            "{said}"
        );
    }
}
