//! The `intelmesh` binary as users run it: the demo to convergence, a kept federation driven by
//! the client commands, and clear errors with exit code 2 for bad input. Every node here is a
//! real `intelmesh run` process with mutual TLS on 127.0.0.1 and a store in a temp dir.

// Each test binary uses part of the helpers.
#[allow(dead_code)]
mod support;

use std::path::Path;

use serde_json::Value;
use support::{deploy_config, intelmesh, one_error_line, wait_until, Kept, Nodes};

#[path = "cli/bad_input.rs"]
mod bad_input;

#[test]
fn demo_runs_to_convergence_and_leaves_no_process_behind() {
    let out = intelmesh(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("converged: the 4 active nodes hold"),
        "no convergence line:\n{stdout}"
    );
    // The control plane, live: a fifth member joined, a key rotated, a member cut off by all.
    assert!(
        stdout.contains("DE-BKA joined while everything ran"),
        "{stdout}"
    );
    assert!(
        stdout.contains("none of their") && stdout.contains("files changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("AU-AFP rotated its signing key without a restart"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FR-OCLCTIC was suspended: 4 nodes ran the new roster"),
        "{stdout}"
    );
    // Each active node's own Status in the convergence table: one vector and digest, 4 times.
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("6. convergence"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(table.len(), 4, "{stdout}");
    let rest = |l: &str| {
        l.trim_start()
            .split_once(' ')
            .map(|(_, r)| r.trim().to_string())
    };
    assert!(
        table.windows(2).all(|w| rest(w[0]) == rest(w[1])),
        "{table:#?}"
    );
    assert!(stdout.contains("was SIGKILLed"), "{stdout}");
    for pid in support::started_pids(&stdout) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "node process {pid} outlived the demo"
        );
    }
}

#[test]
fn a_kept_federation_answers_the_client_commands() {
    let dir = tempfile::tempdir().unwrap();
    let fed = dir.path().join("fed");
    let fed_arg = fed.to_str().unwrap();
    let out = intelmesh(&["demo", "--keep", "--dir", fed_arg, "--builtin-sample"]);
    // Stops the kept nodes however this test ends.
    let kept = Kept::from_dir(&fed);
    assert!(
        out.status.success(),
        "demo --keep failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let endpoints: Value =
        serde_json::from_str(&std::fs::read_to_string(fed.join("endpoints.json")).unwrap())
            .unwrap();
    let nodes = endpoints["nodes"].as_array().unwrap();
    let orgs: Vec<&str> = nodes.iter().map(|n| n["org"].as_str().unwrap()).collect();
    assert_eq!(orgs, ["SG-IGCI", "AU-AFP", "BR-PF", "FR-OCLCTIC", "DE-BKA"]);
    assert_eq!(nodes[0]["role"], "hub");
    // The hub console, with the operator's admin certificate that opens it; hub only.
    assert!(
        nodes[0]["console_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://127.0.0.1:")),
        "{}",
        nodes[0]
    );
    for f in ["console_cert", "console_key"] {
        assert!(Path::new(nodes[0][f].as_str().unwrap()).is_file(), "{f}");
    }
    assert!(nodes[1..].iter().all(|n| n.get("console_url").is_none()));
    for n in nodes {
        for f in ["client_cert", "client_key", "api_ca", "config", "log"] {
            assert!(Path::new(n[f].as_str().unwrap()).is_file(), "{f} of {n}");
        }
        assert!(kept.pids.contains(&(n["pid"].as_u64().unwrap() as u32)));
    }
    assert_eq!(kept.pids.len(), 5);

    let e = fed.join("endpoints.json");
    // It holds the TAXII passwords: owner-only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&e).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "endpoints.json mode {mode:o}");
    let e = e.to_str().unwrap();
    let json = |args: &[&str]| -> Value {
        let out = intelmesh(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let hub = json(&["status", "--endpoints", e, "--node", "SG-IGCI", "--json"]);
    assert_eq!(hub["org_id"], "SG-IGCI");
    let au_before = hub["vector"]["AU-AFP"].as_u64().unwrap();
    assert!(au_before > 0, "the demo published at AU-AFP: {hub}");
    // Every member is linked to the hub but the one the demo suspended.
    for p in hub["peers"].as_array().unwrap() {
        let suspended = p["org_id"] == "FR-OCLCTIC";
        assert_eq!(p["connected"] == true, !suspended, "{p}");
    }

    let submitted = json(&[
        "submit",
        "--endpoints",
        e,
        "--node",
        "AU-AFP",
        "--tlp",
        "green",
        "--tag",
        "cli-test",
        "--json",
        "cli-test-c2[.]example",
        "hxxp://198.51.100.99/gate.php",
    ]);
    let assigned = submitted["assigned"].as_array().unwrap();
    assert_eq!(assigned.len(), 2);
    assert_eq!(assigned[0]["origin"], "AU-AFP");
    // Next in AU-AFP's log (a roster checkpoint of its own may have come in between).
    let au_seq = assigned[0]["seq"].as_u64().unwrap();
    assert!(au_seq > au_before, "{au_seq} after {au_before}");
    assert_eq!(assigned[0]["indicator"]["value"], "cli-test-c2.example");
    assert_eq!(
        assigned[1]["indicator"]["value"],
        "http://198.51.100.99/gate.php"
    );

    // It reaches BR-PF through the hub; Get there shows AU-AFP's assertion.
    let got = wait_until("the submission reaches BR-PF", || {
        let v = json(&[
            "get",
            "--endpoints",
            e,
            "--node",
            "BR-PF",
            "domain",
            "CLI-TEST-C2.example",
            "--json",
        ]);
        (v["found"] == true).then_some(v)
    });
    assert_eq!(got["verdict"], "malicious");
    let assertion = &got["state"]["assertions"][0];
    assert_eq!(assertion["origin"], "AU-AFP");
    assert_eq!(assertion["distribution"]["tlp"], "GREEN");
    assert_eq!(assertion["tags"][0], "cli-test");
    assert_eq!(got["provenance"][0]["seq"], au_seq);

    let looked = json(&[
        "lookup",
        "--endpoints",
        e,
        "--node",
        "BR-PF",
        "--json",
        "cli-test-c2[.]example",
        "never-seen.example",
        "not a value",
    ]);
    let results = looked["results"].as_array().unwrap();
    assert_eq!(results[0]["verdict"], "malicious");
    assert_eq!(results[0]["origins"][0], "AU-AFP");
    assert_eq!(results[1]["verdict"], "unknown");
    assert_ne!(results[2]["error"], "");
    assert_eq!(results[0]["matches"][0]["kind"], "exact");
    // A subdomain is listed through its listed parent, and the text says via what.
    let parent = &["lookup", "--endpoints", e, "--node", "BR-PF"];
    let sub = json(&[&parent[..], &["--json", "www.cli-test-c2.example"]].concat());
    let m = &sub["results"][0]["matches"][0];
    assert_eq!(sub["results"][0]["verdict"], "malicious");
    assert_eq!(m["kind"], "parent domain");
    assert_eq!(m["indicator"]["value"], "cli-test-c2.example");
    let text = intelmesh(&[&parent[..], &["www.cli-test-c2.example"]].concat());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(
            "www.cli-test-c2.example listed via cli-test-c2.example (parent domain) confidence"
        ),
        "{text}"
    );

    let tagged = json(&[
        "query",
        "--endpoints",
        e,
        "--node",
        "SG-IGCI",
        "--tag",
        "cli-test",
        "--all",
        "--json",
    ]);
    assert_eq!(tagged["states"].as_array().unwrap().len(), 2);

    // Watch from the start prints cursors; resuming after the first event continues after it.
    let watch = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "watch",
            "--endpoints",
            e,
            "--node",
            "BR-PF",
            "--origin",
            "AU-AFP",
            "--count",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = intelmesh(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let first = watch(&["--from-start"]);
    assert_eq!(first.len(), 2);
    // AU-AFP's first indicator entry, after the checkpoints it signed as it joined.
    let demo_out = String::from_utf8_lossy(&out.stdout);
    let first_batch = demo_out
        .lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix("batch  1: AU-AFP#")?;
            rest.split("..").next()?.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no first batch at AU-AFP: {demo_out}"));
    assert_eq!(
        (first[0]["origin"].as_str(), first[0]["seq"].as_u64()),
        (Some("AU-AFP"), Some(first_batch))
    );
    let cursor = first[0]["cursor"].as_str().unwrap();
    let resumed = watch(&["--cursor", cursor]);
    assert_eq!(resumed[0]["seq"], first[1]["seq"]);

    let status_text = intelmesh(&["status", "--endpoints", e, "--node", "BR-PF"]);
    let text = String::from_utf8_lossy(&status_text.stdout);
    assert!(text.contains("peer SG-IGCI connected"), "{text}");
    // The roster it runs: the demo's last change was the suspension.
    let suspension = demo_out
        .lines()
        .rev()
        .find_map(|l| {
            let rest = l.split_once("bob signed: v")?.1;
            rest.split(' ').next()?.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no suspension version: {demo_out}"));
    assert!(
        text.contains(&format!("roster version {suspension} (hash ")),
        "{text}"
    );
    assert_eq!(hub["roster_version"], suspension, "{hub}");

    // The operators' command the hand-over prints works as printed.
    let admin_line = demo_out
        .lines()
        .find_map(|l| l.trim().strip_prefix("intelmesh admin status "))
        .unwrap_or_else(|| panic!("no admin command: {demo_out}"));
    let mut admin = vec!["admin", "status"];
    admin.extend(admin_line.split_whitespace());
    let table = intelmesh(&admin);
    let table_text = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    assert!(
        table_text.contains(&format!("roster version {suspension}")),
        "{table_text}"
    );
    assert!(
        table_text
            .lines()
            .any(|l| l.starts_with("FR-OCLCTIC\tSuspended\tfalse")),
        "{table_text}"
    );

    kept.stop();
}

#[test]
fn the_deploy_configs_show_two_hubs_linked_with_each_other_and_every_agency() {
    let hubs = [deploy_config("hub.toml"), deploy_config("hub2.toml")];
    let agency = deploy_config("agency.toml");
    for hub in &hubs {
        let other = hubs.iter().find(|h| h.org != hub.org).unwrap();
        let to_other = hub.peer.iter().find(|p| p.org == other.org);
        assert!(
            to_other.is_some_and(|p| p.relay),
            "{} relays with {}",
            hub.org,
            other.org
        );
        let dials = to_other.is_some_and(|p| p.dial.is_some());
        assert_eq!(dials, hub.org < other.org, "the hub sorting first dials");
        assert!(hub
            .peer
            .iter()
            .any(|p| p.org == agency.org && p.dial.is_none()));
        let to_hub = agency.peer.iter().find(|p| p.org == hub.org);
        assert!(
            to_hub.is_some_and(|p| p.relay && p.dial.is_some()),
            "the agency dials {} as a relay",
            hub.org
        );
    }
}

#[test]
fn a_federation_made_with_pki_runs_from_the_deploy_configs() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &["SG-IGCI", "AU-AFP"]);
    for org in ["SG-IGCI", "AU-AFP"] {
        let out = intelmesh(&["run", "--config", &nodes.config(org), "--check"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    nodes.start_all();
    let hub = nodes.api_args("SG-IGCI");
    let au = nodes.api_args("AU-AFP");
    let status = |api: &[String]| -> Value {
        let mut args = vec!["status".to_string(), "--json".to_string()];
        args.extend_from_slice(api);
        let out = support::intelmesh_owned(&args);
        if !out.status.success() {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    };
    wait_until("AU-AFP links to the hub", || {
        let s = status(&au);
        (s["peers"][0]["connected"] == true).then_some(())
    });
    let mut submit = vec!["submit".to_string(), "--tlp".into(), "green".into()];
    submit.extend_from_slice(&au);
    submit.push("203.0.113.200".into());
    let out = support::intelmesh_owned(&submit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("AU-AFP#1"));
    let s = wait_until("the hub holds AU-AFP#1", || {
        let s = status(&hub);
        (s["vector"]["AU-AFP"] == 1).then_some(s)
    });
    assert_eq!(s["state_digest"], status(&au)["state_digest"]);

    // A client profile instead of the five TLS flags: the default one of the client config,
    // a named one, and a profile file.
    let flag = |a: &[String], name: &str| {
        let i = a.iter().position(|x| x == name).unwrap();
        a[i + 1].clone()
    };
    let profile = |a: &[String]| {
        format!(
            "api = {:?}\nnode_org = {:?}\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            flag(a, "--api"),
            flag(a, "--node-org"),
            flag(a, "--ca"),
            flag(a, "--cert"),
            flag(a, "--key")
        )
    };
    let client_toml = dir.path().join("client.toml");
    let text = format!(
        "default = \"au\"\n[profile.au]\n{}[profile.hub]\n{}",
        profile(&au),
        profile(&hub)
    );
    std::fs::write(&client_toml, text).unwrap();
    let single = dir.path().join("hub.profile.toml");
    std::fs::write(&single, profile(&hub)).unwrap();
    let with_config = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_intelmesh"))
            .args(args)
            .env("INTELMESH_CLIENT_CONFIG", &client_toml)
            .output()
            .unwrap()
    };
    let org_of = |out: std::process::Output| -> String {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["org_id"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(org_of(with_config(&["status", "--json"])), "AU-AFP");
    assert_eq!(
        org_of(with_config(&["status", "--json", "--profile", "hub"])),
        "SG-IGCI"
    );
    let file = single.to_str().unwrap();
    assert_eq!(
        org_of(with_config(&["status", "--json", "--profile", file])),
        "SG-IGCI"
    );
    let out = with_config(&["status", "--profile", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("profiles: au, hub"));
    // A client config named but missing is said, not passed over.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intelmesh"))
        .args(["status"])
        .env("INTELMESH_CLIENT_CONFIG", dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("missing.toml: no such file"));
    // A key that is not the certificate's is the caller's mistake, not an unreachable node.
    let mut mismatched = hub.clone();
    let key = mismatched.iter().position(|x| x == "--key").unwrap();
    mismatched[key + 1] = flag(&au, "--key");
    let mut args = vec!["status".to_string()];
    args.extend(mismatched);
    let out = support::intelmesh_owned(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        one_error_line(&out).contains("does not belong to the certificate"),
        "{}",
        one_error_line(&out)
    );
    nodes.stop_all();
}
