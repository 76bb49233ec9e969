//! The analyst's commands against a real node (mutual TLS on 127.0.0.1, started from configs
//! made with the pki commands): `sighting`; `submit --valid-until` and its refusals; `submit
//! --revoke` refusing what this org never asserted and keeping the revoked assertion's TLP;
//! `export --format rpz` and `--format misp-feed`, the feed read back by the interop importer
//! and by `intelmesh import`.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;

use intelmesh_core::Tlp;
use intelmesh_interop::{import_misp_str, MispOptions};
use serde_json::Value;
use support::{intelmesh_owned, one_error_line, Nodes};

const ORG: &str = "SG-IGCI";

/// A started node of `ORG`; stopped when the test's `Nodes` is dropped.
fn node(dir: &std::path::Path) -> Nodes {
    let mut nodes = Nodes::provision(dir, &[ORG]);
    nodes.start_all();
    nodes
}

/// Runs `cmd` (with `--json`) and expects success; its JSON.
fn ok(nodes: &Nodes, cmd: &[&str]) -> Value {
    let (code, got, stderr) = nodes.run_json(ORG, cmd);
    assert_eq!(code, Some(0), "{cmd:?}: {stderr}");
    got
}

/// Runs `cmd` against the node without `--json`; its output.
fn plain(nodes: &Nodes, cmd: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = cmd.iter().map(|a| a.to_string()).collect();
    args.extend(nodes.api_args(ORG));
    intelmesh_owned(&args)
}

fn assertion(nodes: &Nodes, value: &str) -> Option<Value> {
    nodes.assertion(ORG, value)
}

fn own_entries(nodes: &Nodes) -> u64 {
    nodes.own_entries(ORG)
}

#[test]
fn a_sighting_is_signed_with_its_count_time_and_tlp() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = node(dir.path());
    let sighting = [
        "sighting",
        "evil[.]example",
        "--count",
        "3",
        "--seen-at",
        "2024-05-01T12:00:00Z",
        "--tlp",
        "green",
    ];
    let got = ok(&nodes, &sighting);
    assert_eq!(got["assigned"].as_array().map(Vec::len), Some(1), "{got:#}");
    assert_eq!(got["assigned"][0]["indicator"]["value"], "evil.example");
    let state = ok(&nodes, &["get", "evil.example"]);
    let seen = &state["state"]["sightings"][0];
    assert_eq!(seen["origin"], ORG);
    assert_eq!(seen["count"], 3);
    assert_eq!(seen["last_seen_unix_ms"], 1_714_564_800_000i64);
    assert_eq!(seen["distribution"]["tlp"], Tlp::Green.as_str());
    assert_eq!(state["verdict"], "seen", "{state:#}");

    // The same request with the same key again signs nothing; the line says so.
    let key = got["idempotency_key"].as_str().unwrap().to_string();
    let again = plain(
        &nodes,
        &[&sighting[..], &["--idempotency-key", &key]].concat(),
    );
    let text = String::from_utf8_lossy(&again.stdout);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{text}{stderr}");
    assert!(
        text.contains("1 sighting signed by") && text.contains("nothing signed again"),
        "{text}"
    );
    assert_eq!(own_entries(&nodes), 1);

    // A time to come is refused before anything is sent.
    let out = plain(
        &nodes,
        &[
            "sighting",
            "evil.example",
            "--seen-at",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("is in the future"));
}

#[test]
fn valid_until_is_signed_and_a_closed_window_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = node(dir.path());
    let until = intelmesh_core::now_unix_ms() + 86_400_000;
    let until_text = intelmesh_interop::format_timestamp(until);
    ok(
        &nodes,
        &[
            "submit",
            "temp.example",
            "--valid-until",
            &until_text,
            "--confidence",
            "60",
        ],
    );
    let a = assertion(&nodes, "temp.example").unwrap();
    assert_eq!(a["valid_until_unix_ms"], until);
    assert_eq!(a["confidence"], 60);

    let past = plain(
        &nodes,
        &[
            "submit",
            "late.example",
            "--valid-until",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(past.status.code(), Some(2));
    assert!(one_error_line(&past).contains("is not in the future"));
    let empty = plain(
        &nodes,
        &[
            "submit",
            "late.example",
            "--valid-from",
            "2999-01-02T00:00:00Z",
            "--valid-until",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert_eq!(empty.status.code(), Some(2));
    assert!(one_error_line(&empty).contains("is not after --valid-from"));
    let bad = plain(&nodes, &["submit", "late.example", "--valid-until", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(own_entries(&nodes), 1);
}

#[test]
fn a_revocation_needs_an_assertion_and_keeps_its_tlp() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = node(dir.path());
    let revoke = |values: &[&str]| {
        let mut cmd = vec!["submit", "--revoke", "--reason", "false positive"];
        cmd.extend(values);
        plain(&nodes, &cmd)
    };
    let out = revoke(&["never.example"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(
        line.contains("never.example") && line.contains("never asserted"),
        "{line}"
    );
    assert_eq!(own_entries(&nodes), 0);

    ok(&nodes, &["submit", "--tlp", "amber+strict", "kept.example"]);
    // One value without an assertion refuses the whole run: nothing is signed.
    assert_eq!(
        revoke(&["kept.example", "never.example"]).status.code(),
        Some(2)
    );
    assert_eq!(own_entries(&nodes), 1);

    let out = revoke(&["kept.example"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("(TLP:AMBER+STRICT)"), "{text}");
    let a = assertion(&nodes, "kept.example").unwrap();
    assert_eq!(a["revoked"], true);
    assert_eq!(a["revoke_reason"], "false positive");
    assert_eq!(a["distribution"]["tlp"], Tlp::AmberStrict.as_str());

    let out = revoke(&["kept.example"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("already revoked"));
    assert_eq!(own_entries(&nodes), 2);

    // --recipient alone keeps the assertion's TLP, which must then take recipients; --tlp
    // replaces it.
    ok(&nodes, &["submit", "--tlp", "green", "open.example"]);
    let out = revoke(&["--recipient", "BR-PF", "open.example"]);
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out);
    assert!(
        line.contains("revoking open.example") && line.contains("TLP:GREEN"),
        "{line}"
    );
    let out = revoke(&["--tlp", "amber", "open.example"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = assertion(&nodes, "open.example").unwrap();
    assert_eq!(a["revoked"], true);
    assert_eq!(a["distribution"]["tlp"], Tlp::Amber.as_str());
}

/// Submits the values of the export tests: every type, one revoked.
fn fill(nodes: &Nodes) {
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    ok(
        nodes,
        &[
            "submit",
            "--tlp",
            "green",
            "evil.example",
            "198.51.100.7",
            "2001:db8::1",
            "203.0.113.0/24",
            "http://bad.example/drop",
            sha,
            "gone.example",
        ],
    );
    ok(nodes, &["submit", "--tlp", "red", "phish@evil.example"]);
    ok(
        nodes,
        &[
            "submit",
            "--revoke",
            "--reason",
            "sinkholed",
            "gone.example",
        ],
    );
}

/// A node of `ORG` that loads a warninglist of a public resolver and a shared host.
fn node_with_warninglist(dir: &std::path::Path) -> Nodes {
    let mut nodes = Nodes::provision(dir, &[ORG]);
    let list = dir.join("benign.json");
    std::fs::write(
        &list,
        r#"{"name":"benign","type":"string","list":["8.8.8.8","github.com"]}"#,
    )
    .unwrap();
    let path = nodes.config(ORG);
    let mut cfg: intelmesh_node::config::NodeConfig =
        toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cfg.warninglists = vec![list];
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    nodes.start_all();
    nodes
}

#[test]
fn rpz_export_is_a_zone_of_names_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = node_with_warninglist(dir.path());
    fill(&nodes);
    // Forced past the node's warninglist: kept, but no block list carries them, nor a rule
    // for the shared host of a URL on it.
    ok(
        &nodes,
        &[
            "submit",
            "--force",
            "8.8.8.8",
            "https://github.com/evil/drop.exe",
            "8.8.0.0/16",
            "0.0.0.0/0",
        ],
    );
    let out = plain(
        &nodes,
        &["export", "--format", "rpz", "--rpz-zone", "rpz.test"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 email") && stderr.contains("1 sha256"),
        "{stderr}"
    );
    assert!(
        stderr.contains("left out 3 value(s) on the node's warninglists"),
        "{stderr}"
    );
    assert!(
        stderr.contains("left out 1 IPv4 block(s) wider than /8"),
        "{stderr}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.contains(&"$ORIGIN rpz.test."), "{text}");
    assert!(lines.iter().any(|l| l.starts_with("@ IN SOA ")), "{text}");
    assert!(lines.contains(&"@ IN NS localhost."), "{text}");
    let rules: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.ends_with(" CNAME ."))
        .copied()
        .collect();
    let expected: BTreeSet<&str> = [
        "evil.example CNAME .",
        "*.evil.example CNAME .",
        "bad.example CNAME .",
        "32.7.100.51.198.rpz-ip CNAME .",
        "128.1.zz.db8.2001.rpz-ip CNAME .",
        "24.0.113.0.203.rpz-ip CNAME .",
    ]
    .into_iter()
    .collect();
    assert_eq!(rules, expected, "the revoked gone.example is left out");

    let kept = plain(
        &nodes,
        &["export", "--format", "rpz", "--keep-warninglisted"],
    );
    let text = String::from_utf8_lossy(&kept.stdout);
    for rule in ["github.com CNAME .", "32.8.8.8.8.rpz-ip CNAME ."] {
        assert!(text.lines().any(|l| l == rule), "{rule} kept: {text}");
    }
    // A URL in a plain list blocks that URL only: it stays; the resolver does not.
    let list = plain(&nodes, &["export", "--format", "plain"]);
    let values: BTreeSet<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        values.contains("https://github.com/evil/drop.exe"),
        "{values:?}"
    );
    assert!(!values.contains("8.8.8.8"), "{values:?}");
    // A block holding a listed address is left out with it; a block of every address always.
    assert!(!values.contains("8.8.0.0/16"), "{values:?}");
    assert!(!values.contains("0.0.0.0/0"), "{values:?}");
    assert!(values.contains("evil.example"), "{values:?}");
    // Written to a file, an export holding a RED value is its owner's alone, whatever the
    // umask and even over a file readable by all; one with none keeps the usual mode.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let red = dir.path().join("all.txt");
    std::fs::write(&red, "").unwrap();
    std::fs::set_permissions(&red, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = plain(
        &nodes,
        &[
            "export",
            "--format",
            "plain",
            "--out",
            &red.display().to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read_to_string(&red)
        .unwrap()
        .contains("phish@evil.example"));
    assert_eq!(mode(&red), 0o600);
    let green = dir.path().join("green.txt");
    let green_arg = green.display().to_string();
    let out = plain(
        &nodes,
        &[
            "export",
            "--format",
            "plain",
            "--tlp-ceiling",
            "green",
            "--out",
            &green_arg,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!std::fs::read_to_string(&green)
        .unwrap()
        .contains("phish@evil.example"));
    assert_ne!(mode(&green), 0o600);
}

#[test]
fn misp_feed_export_reads_back_with_each_tlp() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = node(dir.path());
    fill(&nodes);
    let missing_out = plain(&nodes, &["export", "--format", "misp-feed"]);
    assert_eq!(missing_out.status.code(), Some(2));
    assert!(one_error_line(&missing_out).contains("--out DIR"));

    // By default a feed holds only what MISP may pass on: it gives every attribute of a feed
    // the feed's own distribution.
    let green = dir.path().join("green-feed");
    let out = plain(
        &nodes,
        &[
            "export",
            "--format",
            "misp-feed",
            "--out",
            green.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("only CLEAR and GREEN"),
        "{stderr}"
    );
    let all_events: String = std::fs::read_dir(&green)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(
        all_events.contains("203.0.113.0/24"),
        "the GREEN block is in"
    );
    assert!(
        !all_events.contains("phish@evil.example"),
        "the RED address is not"
    );

    let feed = dir.path().join("feed");
    let feed_s = feed.to_str().unwrap();
    let out = plain(
        &nodes,
        &[
            "export",
            "--format",
            "misp-feed",
            "--tlp-ceiling",
            "red",
            "--out",
            feed_s,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A feed holding a RED value is its owner's alone, the directory and every file in it;
    // the GREEN one keeps the usual modes.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&feed), 0o700);
    for file in std::fs::read_dir(&feed).unwrap() {
        assert_eq!(mode(&file.unwrap().path()), 0o600);
    }
    assert_ne!(mode(&green), 0o700);
    assert_ne!(mode(&green.join("manifest.json")), 0o600);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(feed.join("manifest.json")).unwrap())
            .unwrap();
    let uuids: Vec<&String> = manifest.as_object().unwrap().keys().collect();
    assert_eq!(uuids.len(), 1);
    assert_eq!(manifest[uuids[0]]["Orgc"]["name"], ORG);
    let hashes = std::fs::read_to_string(feed.join("hashes.csv")).unwrap();
    assert_eq!(hashes.lines().count(), 7, "{hashes}");

    let event = std::fs::read_to_string(feed.join(format!("{}.json", uuids[0]))).unwrap();
    let events = import_misp_str(&event, &MispOptions::default()).unwrap();
    let read: BTreeSet<(String, Tlp)> = events[0]
        .indicators()
        .map(|i| (i.indicator.value().to_string(), i.tlp))
        .collect();
    assert_eq!(read.len(), 7);
    assert!(read.contains(&("phish@evil.example".to_string(), Tlp::Red)));
    assert!(read.contains(&("203.0.113.0/24".to_string(), Tlp::Green)));
    assert!(!read.iter().any(|(v, _)| v == "gone.example"));
    // The revocation travels as a deleted attribute, so subscribers drop it too.
    let written: Value = serde_json::from_str(&event).unwrap();
    let gone: Vec<&Value> = written["Event"]["Attribute"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["value"] == "gone.example")
        .collect();
    assert_eq!(gone.len(), 1, "{event}");
    assert_eq!(
        (&gone[0]["deleted"], &gone[0]["to_ids"]),
        (&Value::Bool(true), &Value::Bool(false))
    );

    // `intelmesh import` takes the directory as a MISP feed; nothing in it is new.
    let got = ok(&nodes, &["import", feed_s]);
    assert_eq!(got["files"][0]["format"], "misp-feed", "{got:#}");
    assert_eq!(got["rejected"], 0, "{got:#}");
    assert_eq!(
        got["imported"].as_u64().unwrap_or(0) + got["duplicate"].as_u64().unwrap_or(0),
        7,
        "{got:#}"
    );

    // Refreshed in place with nothing of this origin left under the ceiling: its event of the
    // RED export goes too, not only its line in the manifest (its name is predictable).
    let unrelated = feed.join("notes.json");
    std::fs::write(&unrelated, "{}").unwrap();
    // An event file the manifest never listed (another feed's, say) is not this feed's.
    let other_feed = feed.join("0b5c8e7e-2f1a-4c5d-9e8f-0a1b2c3d4e5f.json");
    std::fs::write(&other_feed, "{}").unwrap();
    let out = plain(
        &nodes,
        &[
            "export",
            "--format",
            "misp-feed",
            "--type",
            "email",
            "--out",
            feed_s,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("removed 1 event file"), "{stderr}");
    let left: Vec<String> = std::fs::read_dir(&feed)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!left.contains(&format!("{}.json", uuids[0])), "{left:?}");
    assert!(left.contains(&"notes.json".to_string()), "other files stay");
    assert!(
        other_feed.exists(),
        "an event the manifest did not list stays"
    );
    for file in std::fs::read_dir(&feed).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        assert!(!text.contains("phish@evil.example"), "{text}");
    }
}
