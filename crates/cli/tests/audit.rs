//! `intelmesh audit` against a real node process: the search finds a lookup by the value
//! looked up (in another spelling) and by caller and method while the node runs, `audit
//! verify` says OK with the count while it runs, and names the file and line of an edit after.

#[allow(dead_code)]
mod support;

use support::{intelmesh, intelmesh_owned, wait_until, Nodes};

const ORG: &str = "SG-IGCI";

/// The standard output of `intelmesh args`, which must succeed.
fn succeeds(args: &[&str]) -> String {
    let out = intelmesh(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}: {stdout}{stderr}");
    stdout
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn audit_finds_who_asked_about_a_value_and_verify_names_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    nodes.start_all();
    let config = nodes.config(ORG);
    let mut lookup = vec!["lookup".to_string(), "203.0.113[.]7".into()];
    lookup.extend(nodes.api_args(ORG));
    let out = intelmesh_owned(&lookup);
    assert!(out.status.success(), "{:?}", text(&out));

    // The record reaches the files within a batch of the writer, while the node runs.
    let by_value = [
        "audit",
        "--config",
        &config,
        "--value",
        "203.0.113.7",
        "--json",
    ];
    let line = wait_until("the lookup is in the trail", || {
        let out = intelmesh(&by_value);
        assert!(out.status.success(), "{:?}", text(&out));
        text(&out).0.lines().next().map(str::to_string)
    });
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["method"], "Indicators/Lookup", "{record}");
    assert_eq!(record["org"], ORG);
    assert_eq!(record["name"], "soc");
    assert_eq!(record["values"], 1);
    assert_eq!(record["result"], "OK");
    assert!(
        !line.contains("203.0.113"),
        "the value is in the clear: {line}"
    );

    let out = intelmesh(&["audit", "--config", &config, "--value", "198.51.100.1"]);
    assert_eq!(text(&out).0, "", "nobody asked about this one");
    let out = intelmesh(&[
        "audit",
        "--config",
        &config,
        "--caller",
        &format!("{ORG}/soc"),
        "--method",
        "Indicators/Lookup",
        "--since",
        "1h",
    ]);
    let (stdout, _) = text(&out);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.contains("Indicators/Lookup") && stdout.contains(&format!("{ORG}/soc (service)")),
        "{stdout}"
    );

    let stdout = succeeds(&["audit", "verify", "--config", &config]);
    assert!(stdout.starts_with("audit trail OK: "), "{stdout}");

    let trail = intelmesh_node::audit::dir_of(&nodes.data_dir(ORG)).join("trail-000001.jsonl");
    nodes.stop_all();
    let edited =
        std::fs::read_to_string(&trail)
            .unwrap()
            .replacen("\"values\":1", "\"values\":0", 1);
    std::fs::write(&trail, edited).unwrap();
    let out = intelmesh(&["audit", "verify", "--config", &config]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("trail-000001.jsonl line ") && stderr.contains("it was edited"),
        "{stderr}"
    );
}

#[test]
fn audit_archive_moves_the_earliest_files_and_both_parts_verify_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    let config = nodes.config(ORG);
    // Small trail files, so a few calls fill several.
    let provisioned = std::fs::read_to_string(&config).unwrap();
    let small = provisioned.replace("max_file_bytes = 67108864", "max_file_bytes = 1024");
    assert_ne!(
        small, provisioned,
        "the provisioned config names the audit file size"
    );
    std::fs::write(&config, small).unwrap();
    nodes.start_all();
    let trail = intelmesh_node::audit::dir_of(&nodes.data_dir(ORG));
    let look_up = |value: &str| {
        let mut args = vec!["lookup".to_string(), value.to_string()];
        args.extend(nodes.api_args(ORG));
        let out = intelmesh_owned(&args);
        assert!(out.status.success(), "{:?}", text(&out));
    };
    for i in 1..=8 {
        look_up(&format!("198.51.100.{i}"));
    }
    let files = || intelmesh_node::audit::trail::trail_files(&trail).unwrap();
    wait_until("the lookups fill several trail files", || {
        (files().len() >= 3).then_some(())
    });

    // While the node runs. A file moves once the next one's first record is durable (the
    // node syncs its trail within a second): until then there is nothing to archive.
    let archive = dir.path().join("archive");
    let archive_arg = archive.display().to_string();
    let run_archive = [
        "audit",
        "archive",
        "--config",
        &config,
        "--to",
        &archive_arg,
    ];
    wait_until("a file can be archived", || {
        let out = intelmesh(&run_archive);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        match stdout.starts_with("archived ") {
            true => Some(()),
            false => {
                assert!(stdout.starts_with("nothing to archive"), "{stdout}");
                None
            }
        }
    });
    assert!(!files().contains(&1), "the first file moved: {:?}", files());
    assert!(archive.join("trail-000001.jsonl").exists());

    let stdout = succeeds(&["audit", "verify", "--config", &config]);
    assert!(stdout.contains("were archived"), "{stdout}");
    let stdout = succeeds(&["audit", "verify", "--dir", &archive_arg]);
    assert!(stdout.starts_with("audit trail OK: "), "{stdout}");
    // Together: the archive ends where the trail kept begins.
    let both = [
        "audit",
        "verify",
        "--config",
        &config,
        "--archive",
        &archive_arg,
    ];
    let stdout = succeeds(&both);
    assert!(
        stdout.contains("1 archive(s) check out from seq 1"),
        "{stdout}"
    );

    // The first lookup is found in the archive (by the archived key), not in the trail kept.
    let first = "198.51.100.1";
    let stdout = succeeds(&["audit", "--dir", &archive_arg, "--value", first, "--json"]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let out = intelmesh(&["audit", "--config", &config, "--value", first]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(text(&out).0, "", "archived, so not in the trail kept");

    // The node chains on after the archive.
    look_up("198.51.100.9");
    wait_until("the last lookup is in the trail kept", || {
        let out = intelmesh(&["audit", "--config", &config, "--value", "198.51.100.9"]);
        (!text(&out).0.is_empty()).then_some(())
    });
    // A later run into another directory, as deploy/'s systemd unit runs it: both archives,
    // oldest first, then the trail join.
    let second = dir.path().join("archive-2");
    let second_arg = second.display().to_string();
    let run_second = unit_command(&config, &second_arg);
    let mut i = 10;
    wait_until("a later file can be archived", || {
        let out = intelmesh_owned(&run_second);
        assert!(out.status.success(), "{:?}", text(&out));
        // More calls until there is a file to move past the ones the unit keeps.
        look_up(&format!("198.51.100.{i}"));
        i += 1;
        text(&out).0.starts_with("archived ").then_some(())
    });
    nodes.stop_all();
    let out = intelmesh(&["audit", "verify", "--config", &config]);
    assert!(out.status.success(), "{:?}", text(&out));
    let both = [
        "audit",
        "verify",
        "--config",
        &config,
        "--archive",
        &archive_arg,
        "--archive",
        &second_arg,
    ];
    let stdout = succeeds(&both);
    assert!(
        stdout.contains("2 archive(s) check out from seq 1"),
        "{stdout}"
    );
    let only_second = [
        "audit",
        "verify",
        "--config",
        &config,
        "--archive",
        &second_arg,
    ];
    let stdout = succeeds(&only_second);
    assert!(stdout.contains("an earlier archive not given"), "{stdout}");
    let reversed = [
        "audit",
        "verify",
        "--config",
        &config,
        "--archive",
        &second_arg,
        "--archive",
        &archive_arg,
    ];
    let out = intelmesh(&reversed);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("but the archive before it ends"),
        "{stderr}"
    );

    // Bad arguments are refused with a usage error, moving nothing.
    let kept = files();
    let out = intelmesh(&["audit", "archive", "--config", &config]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let out = intelmesh(&[
        "audit",
        "archive",
        "--config",
        &config,
        "--to",
        &archive_arg,
        "--keep-files",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let out = intelmesh(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let empty_arg = empty.display().to_string();
    let out = intelmesh(&["audit", "verify", "--dir", &empty_arg]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no trail there: {:?}",
        text(&out)
    );
    let out = intelmesh(&[
        "audit",
        "verify",
        "--config",
        &config,
        "--archive",
        &empty_arg,
    ]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    // A trail that is not where this one's earliest files went: the join does not hold.
    let trail_arg = trail.display().to_string();
    let out = intelmesh(&[
        "audit",
        "verify",
        "--config",
        &config,
        "--archive",
        &trail_arg,
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("the last archive ends at seq"), "{stderr}");
    assert_eq!(files(), kept);
}

/// The command deploy/intelmesh-audit-archive.service runs (a oneshot, started by its timer),
/// with the node's config and the archive directory of this test in place of the unit's.
fn unit_command(config: &str, archive: &str) -> Vec<String> {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let unit = std::fs::read_to_string(deploy.join("intelmesh-audit-archive.service")).unwrap();
    let timer = std::fs::read_to_string(deploy.join("intelmesh-audit-archive.timer")).unwrap();
    assert!(unit.lines().any(|l| l == "Type=oneshot"), "{unit}");
    assert!(
        timer.lines().any(|l| l.starts_with("OnCalendar=")),
        "{timer}"
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/intelmesh"), "{exec}");
    let args: Vec<String> = words
        .map(|w| match w {
            "/etc/intelmesh/node.toml" => config.to_string(),
            "/var/lib/intelmesh/audit-archive" => archive.to_string(),
            w => w.to_string(),
        })
        .collect();
    assert_eq!(args[..2], ["audit", "archive"], "{exec}");
    assert!(
        args.iter().any(|a| a == config) && args.iter().any(|a| a == archive),
        "{exec}"
    );
    args
}
