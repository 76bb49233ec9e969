//! A member's comeback after its node was seized, with the real binary, as its operators and
//! the hub's would do it: `node replacement-key` on the stopped node, `admin members
//! report-compromise --replacement`, a new node certificate (`pki request-node`, `pki
//! sign-node`), a new encryption key (`node rotate-encryption-key`, `admin members
//! set-encryption-key`), and the member federating again under its new key.

// Each test binary uses part of the helpers.
#[allow(dead_code)]
mod support;

use intelmesh_node::config::NodeConfig;
use support::enrol::{addr, args, run, run_ok, s, signing_key_id, Federation, Procs};
use support::wait_until;

const AGENCY: &str = "AU-AFP";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_member_whose_node_was_seized_federates_again_under_a_replacement_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut fed = Federation::init(dir, &["alice"], 1);
    let au = dir.join("au");
    fed.admit(AGENCY, "AFP", &au);
    let publish = |what: &[&str]| {
        let mut a = args(what);
        a.extend(args(&["--sign-with", &fed.key("alice")]));
        let out = run_ok(&fed.admin("alice", &a.iter().map(String::as_str).collect::<Vec<_>>()));
        assert!(out.contains("published"), "{out}");
        out
    };
    let bundle = s(&dir.join("au.bundle"));
    publish(&["members", "bundle", AGENCY, "--out", &bundle]);
    let au_api = addr();
    run_ok(&args(&[
        "node",
        "join",
        "--dir",
        &s(&au),
        "--bundle",
        &bundle,
        "--federation-listen",
        &addr(),
        "--api-listen",
        &au_api,
        "--genesis-pin",
        &fed.genesis_pin,
    ]));
    let config = au.join("node.toml");
    let mut node = Procs(Vec::new());
    node.start(&config, &dir.join("au.log"));
    let submit_as = |service: &[String], value: &str| {
        let mut a = args(&["submit"]);
        a.extend(service.to_vec());
        a.extend(args(&["--tlp", "green", value]));
        run(&a)
    };
    let at_agency = Federation::service_args(&au, AGENCY, &au_api);
    let submit = |value: &str| submit_as(&at_agency, value).status.success().then_some(());
    let at_hub = Federation::service_args(&dir.join("fed/hub"), support::enrol::HUB, &fed.hub_api);
    let hub_holds = |value: &str| {
        let mut get = args(&["get"]);
        get.extend(at_hub.clone());
        get.push(value.into());
        let out = run(&get);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains(AGENCY))
            .then_some(())
    };
    wait_until("the agency publishes", || submit("before.example"));
    wait_until("the hub holds it", || hub_holds("before.example"));

    // The node is seized and given back; its operators make a replacement key on it, stopped.
    let replace = |n: &str| {
        run(&args(&[
            "node",
            "replacement-key",
            "--config",
            &s(&config),
            "--last-good-seq",
            n,
        ]))
    };
    let running = replace("1");
    assert_eq!(running.status.code(), Some(2));
    assert!(
        stderr(&running).contains("is running: stop it first"),
        "{}",
        stderr(&running)
    );
    node.stop_all();
    let beyond = replace("1000000");
    assert_eq!(beyond.status.code(), Some(2));
    let err = stderr(&beyond);
    let head: u64 = err
        .split("own log ends at seq ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    // A key staged for a rotation on the seized node may be the thief's too.
    let staged = au.join("signing.key.next");
    std::fs::write(&staged, "00\n").unwrap();
    let refused = replace(&head.to_string());
    assert!(
        stderr(&refused).contains("is a key staged for a rotation"),
        "{}",
        stderr(&refused)
    );
    std::fs::remove_file(&staged).unwrap();
    let stolen = std::fs::read_to_string(au.join("signing.pub")).unwrap();
    let made = run_ok(&args(&[
        "node",
        "replacement-key",
        "--config",
        &s(&config),
        "--last-good-seq",
        &head.to_string(),
    ]));
    let report = format!("{}.replacement.pb", s(&au.join("signing.key")));
    assert!(made.contains(&report), "{made}");
    let new_pub = std::fs::read_to_string(au.join("signing.pub")).unwrap();
    assert_ne!(stolen, new_pub, "the node signs with a new key now");
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&au.join("signing.key")), 0o600);
    // Made again, it writes the report again for the same new key: the file was not lost.
    let report_bytes = std::fs::read(&report).unwrap();
    let again = replace(&head.to_string());
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(std::fs::read(&report).unwrap(), report_bytes);
    assert_eq!(
        std::fs::read_to_string(au.join("signing.pub")).unwrap(),
        new_pub
    );

    // The hub's operators report the compromise with it: a file for another org is refused.
    let wrong = run(&fed.admin(
        "alice",
        &[
            "members",
            "report-compromise",
            "NZ-POL",
            "--replacement",
            &report,
        ],
    ));
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr(&wrong).contains("--replacement is AU-AFP's, not NZ-POL's"));
    // Proposed, awaiting its signature: no bundle certifies the member's request meanwhile (its
    // certificate would start after the cut-off the report sets).
    let proposed = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "report-compromise",
            AGENCY,
            "--replacement",
            &report,
            "--reason",
            "node seized",
        ],
    ));
    let id = support::enrol::proposal_id(&proposed);
    let meanwhile = run(&fed.admin("alice", &["members", "renew", AGENCY, "--out", &bundle]));
    assert!(
        stderr(&meanwhile).contains(&format!(
            "a compromise report of {AGENCY} is proposed (proposal {id}"
        )),
        "{}",
        stderr(&meanwhile)
    );
    let signed = run_ok(&fed.admin(
        "alice",
        &[
            "roster",
            "sign",
            "--proposal",
            &id,
            "--key",
            &fed.key("alice"),
        ],
    ));
    assert!(signed.contains("published"), "{signed}");
    let reported = proposed + &signed;
    let new_id = signing_key_id(&au);
    assert!(
        reported.contains(&format!("key {new_id} added, seqs {}..", head + 1)),
        "{reported}"
    );
    assert!(
        reported.contains(&format!(
            "member {AGENCY}: certificates whose validity starts before"
        )),
        "{reported}"
    );
    assert!(
        reported.contains("reported compromised, nothing new sealed to it"),
        "{reported}"
    );
    // Its enrolment request's key sat beside the stolen one: no bundle certifies it again.
    let bundle_again = run(&fed.admin("alice", &["members", "renew", AGENCY, "--out", &bundle]));
    assert!(
        stderr(&bundle_again).contains(
            "was reported compromised, so the key of its enrolment request is not certified again"
        ),
        "{}",
        stderr(&bundle_again)
    );

    // A new node certificate from the federation CA's holder, and a new encryption key signed
    // by the replacement key, listed by the operators.
    let fresh = dir.join("au-fresh");
    run_ok(&args(&[
        "pki",
        "request-node",
        "--org",
        AGENCY,
        "--out",
        &s(&fresh),
    ]));
    run_ok(&args(&[
        "pki",
        "sign-node",
        "--ca-dir",
        &s(&dir.join("fed/federation-ca")),
        "--csr",
        &s(&fresh.join("node.csr")),
        "--org",
        AGENCY,
        "--out",
        &s(&fresh),
    ]));
    let cfg = NodeConfig::load(&config).unwrap();
    std::fs::copy(fresh.join("node.pem"), &cfg.federation.cert).unwrap();
    std::fs::copy(fresh.join("node.key"), &cfg.federation.key).unwrap();
    run_ok(&args(&[
        "node",
        "rotate-encryption-key",
        "--config",
        &s(&config),
    ]));
    let key_file = cfg.encryption_key.clone().expect("an encryption key");
    publish(&[
        "members",
        "set-encryption-key",
        "--request",
        &format!("{}.request.pb", s(&key_file)),
    ]);

    // Started again, it federates: what it signs under the new key reaches the hub, and what
    // it signed before the seizure stays. Its own services' certificates were on the seized
    // node too: those issued before the report are refused by the node itself.
    node.start(&config, &dir.join("au-again.log"));
    wait_until("the node refuses its old service certificate", || {
        stderr(&submit_as(&at_agency, "after.example"))
            .contains("AU-AFP's key was reported compromised after this certificate was issued")
            .then_some(())
    });
    run_ok(&args(&[
        "pki",
        "issue-service",
        "--ca-dir",
        &s(&au.join("service-ca")),
        "--org",
        AGENCY,
        "--name",
        "cli-new",
        "--out",
        &s(&fresh),
    ]));
    let renewed = support::enrol::api_flags(
        &au_api,
        AGENCY,
        &au.join("service-ca/ca.pem"),
        &fresh.join("cli-new.pem"),
        &fresh.join("cli-new.key"),
    );
    wait_until("the agency publishes under its new key", || {
        submit_as(&renewed, "after.example")
            .status
            .success()
            .then_some(())
    });
    wait_until("the hub holds it", || hub_holds("after.example"));
    assert!(hub_holds("before.example").is_some());

    // The hub's audit trail says what each operator call was about and what it made.
    node.stop_all();
    fed.procs.stop_all();
    let hub = NodeConfig::load(&dir.join("fed/hub/node.toml")).unwrap();
    let mut admin = Vec::new();
    intelmesh_node::audit::trail::read(&intelmesh_node::audit::dir_of(&hub.data_dir), |r| {
        if r.method.starts_with("Admin/") && r.method != "Admin/GetRoster" {
            admin.push(format!("{} {}", r.method, r.result));
        }
    })
    .unwrap();
    let has = |needle: &str| admin.iter().any(|line| line.contains(needle));
    assert!(
        has(&format!(
            "Admin/IssueBundle OK: bundle of {AGENCY} for 365 days: certificate "
        )),
        "{admin:#?}"
    );
    assert!(
        has(&format!(
            "Admin/IssueBundle FailedPrecondition: bundle of {AGENCY}"
        )),
        "{admin:#?}"
    );
    assert!(
        has("Admin/Propose OK: actions: report compromise: proposal "),
        "{admin:#?}"
    );
    assert!(has(", published"), "{admin:#?}");
}
