//! A node's files and the operator's checks, with the real binary: the data directory stays
//! private under umask 022, key files others may read are refused at start and by
//! `run --check`, which lists every problem, and `verify-store` and `run --check` on a running
//! node's files say to stop it.

// Each test binary uses part of the helpers.
#[allow(dead_code)]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use intelmesh_node::config::NodeConfig;
use support::{intelmesh, intelmesh_owned, one_error_line, Nodes};

const ORG: &str = "SG-IGCI";

/// The umask of a running process (Linux shows it since 4.7).
fn umask_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("/proc/PID/status shows the umask");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Asserts every directory under `dir` (and it) is 0700 and every file 0600; returns the
/// files seen.
fn assert_private(dir: &Path) -> Vec<String> {
    assert_eq!(mode(dir), 0o700, "{} is {:o}", dir.display(), mode(dir));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(assert_private(&path));
        } else {
            assert_eq!(
                mode(&path),
                0o600,
                "{} is {:o}",
                path.display(),
                mode(&path)
            );
            files.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    files
}

#[test]
fn a_node_keeps_its_files_private_under_umask_022_and_checks_say_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    nodes.start_all(); // under umask 022
    assert_eq!(
        umask_of(nodes.pid(ORG)),
        0o077,
        "files the node creates while it runs are private"
    );
    // Large entries: the store's engine writes new files (tables, journals) while the node runs,
    // after the store made the directory private at open; they are private by the umask checked
    // above.
    let mut submit = vec!["submit".to_string(), "--tlp".into(), "green".into()];
    submit.extend(nodes.api_args(ORG));
    submit.extend(["--description".into(), "x".repeat(60_000)]);
    submit.extend((1..=12).map(|i| format!("198.51.100.{i}")));
    let out = intelmesh_owned(&submit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A directory holding no store is named as such, and no store is made there to "verify".
    let empty = tempfile::tempdir().unwrap();
    let out = intelmesh(&["verify-store", "--data", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("holds no store"));
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);

    let data = nodes.data_dir(ORG);
    let out = intelmesh(&["verify-store", "--data", data.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(line.contains("stop the node first"), "{line}");
    assert!(line.contains(&data.display().to_string()), "{line}");

    let config = nodes.config(ORG);
    let out = intelmesh(&["run", "--config", &config, "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "3 problems to fix",
        "  federation.listen: ",
        "  api.listen: ",
        "is already in use",
        "  data_dir: the store at",
        "stop the node first",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }

    nodes.stop_all();
    let files = assert_private(&data);
    // The store's own files were among those checked: its version marker and its journal.
    assert!(files.iter().any(|f| f == "version"), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with(".jnl")), "{files:?}");
}

/// `intelmesh run --config CONFIG`, which must exit by itself: a node that starts instead is
/// killed and the test fails.
fn run_must_refuse(config: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_intelmesh"))
        .args(["run", "--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the node started instead of refusing: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_files_others_may_read_are_refused_and_check_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = Nodes::provision(dir.path(), &[ORG]);
    let config = nodes.config(ORG);
    let mut cfg = NodeConfig::load(Path::new(&config)).unwrap();

    for key in [&cfg.signing_key, &cfg.federation.key, &cfg.api.key] {
        chmod(key, 0o644);
        let out = run_must_refuse(&config);
        assert_eq!(out.status.code(), Some(2));
        let k = key.display();
        assert_eq!(
            one_error_line(&out),
            format!("error: {k} is readable by others (mode 0644): run `chmod 600 {k}`")
        );
        chmod(key, 0o600);
    }
    assert!(!cfg.data_dir.exists(), "refused before opening the store");

    // Several mistakes at once: --check names each, the node names the config file.
    chmod(&cfg.signing_key, 0o640);
    cfg.api.client_ca = cfg.federation.client_ca.clone();
    cfg.limits.peer_queue_frames = 0;
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let out = intelmesh(&["run", "--config", &config, "--check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let k = cfg.signing_key.display();
    let ca = cfg.api.client_ca.display();
    assert_eq!(
        lines,
        [
            format!("config {config}: 4 problems to fix before the node can start:"),
            "  limits.peer_queue_frames: is 0: it must be at least 1 (leave it out for the default)".into(),
            format!("  signing_key: {k} is readable by others (mode 0640): run `chmod 600 {k}`"),
            format!("  api.client_ca: {ca} is the federation CA, not the service CA of SG-IGCI: any member's node could call this API; give this node's service CA's ca.pem (`intelmesh pki init-ca --service ORG`)"),
            format!("  api.cert: {} is not signed by api.client_ca {ca}: services that trust that CA would refuse it; give the certificate that CA issued for this node", cfg.api.cert.display()),
        ],
        "{stderr}"
    );

    let out = run_must_refuse(&config);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_error_line(&out),
        format!("error: config {config}: limits.peer_queue_frames: is 0: it must be at least 1 (leave it out for the default)")
    );
}

#[test]
fn a_node_configured_for_json_logs_writes_one_json_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    let config = nodes.config(ORG);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("log_format = \"json\"\n{text}")).unwrap();
    nodes.start_all();
    let log = nodes.log(ORG);
    nodes.stop_all();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let started = lines
        .iter()
        .find(|l| l["fields"]["message"] == "node started")
        .unwrap_or_else(|| panic!("no start line in {log}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["fields"]["org"], ORG);
    assert!(started["timestamp"].is_string(), "{started}");

    // A format that does not exist is refused before anything runs.
    let out = intelmesh(&["run", "--config", &config, "--log-format", "yaml"]);
    assert_eq!(out.status.code(), Some(2), "a bad format is a usage error");
}
