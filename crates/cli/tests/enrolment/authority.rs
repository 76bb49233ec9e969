//! Enrolment under the hub's authority rules: a threshold of signatures across a restart, authority changes, and the bundles a member may not get.

use super::*;

#[test]
fn with_a_threshold_of_two_one_signature_leaves_the_proposal_pending_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut fed = Federation::init(dir, &["alice", "bob"], 2);
    let au = dir.join("au");
    run_ok(&args(&[
        "node",
        "init",
        "--org",
        AGENCY,
        "--name",
        "AFP",
        "--dir",
        &s(&au),
    ]));

    let out = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "add",
            "--request",
            &s(&au.join("enrolment.request")),
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(
        out.contains("pending, 1 of 2 current authority signatures"),
        "{out}"
    );
    let id = proposal_id(&out);

    let refused = run(&fed.admin("alice", &["roster", "publish", "--proposal", &id]));
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("FailedPrecondition"), "{err}");
    assert!(
        err.contains("needs 1 more signature of the current authority keys (has 1 of 2)"),
        "{err}"
    );

    // Signing twice with one key does not count twice.
    let twice = run(&fed.admin(
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
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already carries a signature"));

    // Two competing proposals for the same version: one withdrawn by hand, the other
    // forgotten once the first is published (it can never be published after it).
    let competing = |days: &str| {
        proposal_id(&run_ok(
            &fed.admin("alice", &["roster", "propose", "--cert-warn-days", days]),
        ))
    };
    let (withdrawn, stale) = (competing("20"), competing("21"));
    // One operator's share of the pending proposals: alice has 3, fills it; bob still proposes.
    for days in 22..27 {
        competing(&days.to_string());
    }
    let over = run(&fed.admin("alice", &["roster", "propose", "--cert-warn-days", "27"]));
    assert!(
        String::from_utf8_lossy(&over.stderr).contains("has 8 proposals pending"),
        "{}",
        String::from_utf8_lossy(&over.stderr)
    );
    run_ok(&fed.admin("bob", &["roster", "propose", "--cert-warn-days", "29"]));
    // Only its proposer withdraws a proposal: another operator cannot veto it.
    let vetoed = run(&fed.admin("bob", &["roster", "withdraw", "--proposal", &stale]));
    assert!(!vetoed.status.success());
    assert!(
        String::from_utf8_lossy(&vetoed.stderr).contains("only its proposer may withdraw it"),
        "{}",
        String::from_utf8_lossy(&vetoed.stderr)
    );
    let out = run_ok(&fed.admin("alice", &["roster", "withdraw", "--proposal", &withdrawn]));
    assert!(
        out.contains(&format!("proposal {withdrawn} withdrawn")),
        "{out}"
    );
    let again = run(&fed.admin("alice", &["roster", "withdraw", "--proposal", &withdrawn]));
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("no proposal"));

    fed.procs.stop_all();
    fed.start_hub();
    let listed = run_ok(&fed.admin("bob", &["roster", "proposals"]));
    assert!(
        listed.contains(&format!("proposal {id}: pending, 1 of 2")),
        "kept across a restart: {listed}"
    );
    assert!(
        listed.contains(&stale) && !listed.contains(&withdrawn),
        "{listed}"
    );

    let signed = run_ok(&fed.admin(
        "bob",
        &[
            "roster",
            "sign",
            "--proposal",
            &id,
            "--key",
            &fed.key("bob"),
        ],
    ));
    assert!(
        signed.contains(AGENCY),
        "sign shows the change it signs: {signed}"
    );
    assert!(
        signed.contains(&format!("proposal {id}: published")),
        "{signed}"
    );
    let listed = run_ok(&fed.admin("bob", &["roster", "proposals"]));
    assert!(
        listed.contains(&id) && !listed.contains(&stale),
        "the proposal the publication made stale is forgotten: {listed}"
    );
    let published = run(&fed.admin("bob", &["roster", "withdraw", "--proposal", &id]));
    assert_eq!(published.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&published.stderr).contains("is published: it is kept"),
        "{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let members = run_ok(&fed.admin("bob", &["members", "list"]));
    assert!(members.starts_with("roster version 2"), "{members}");
    assert!(members.contains(AGENCY), "{members}");

    let audit = run_ok(&fed.admin("bob", &["audit", "--operator", "bob"]));
    assert!(
        audit.contains(&format!("v2 proposed by {HUB}/alice")),
        "{audit}"
    );
    assert!(
        audit.contains("signed by alice at") && audit.contains(", bob at"),
        "{audit}"
    );
}

/// A new authority (a key added, threshold raised) needs the current threshold and the new
/// one; after it, one operator alone no longer publishes. Policy changes keep other fields.
#[test]
fn an_authority_change_needs_both_thresholds_and_binds_later_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fed = Federation::init(dir, &["alice"], 1);
    let carol = dir.join("carol.key");
    run_ok(&args(&[
        "admin",
        "keygen",
        "--name",
        "carol",
        "--out",
        &s(&carol),
    ]));

    let proposed = run_ok(&fed.admin(
        "alice",
        &[
            "roster",
            "propose",
            "--authority",
            &format!("alice={}.pub", fed.key("alice")),
            "--authority",
            &format!("carol={}.pub", s(&carol)),
            "--threshold",
            "2",
            "--reason",
            "second operator",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(
        proposed.contains("1 of 1 current authority signatures, 1 of 2 new"),
        "{proposed}"
    );
    let id = proposal_id(&proposed);
    let signed = run_ok(&fed.admin(
        "alice",
        &["roster", "sign", "--proposal", &id, "--key", &s(&carol)],
    ));
    assert!(
        signed.contains(&format!("proposal {id}: published")),
        "{signed}"
    );
    let shown = run_ok(&fed.admin("alice", &["roster", "show"]));
    assert!(shown.contains("threshold 2 of 2"), "{shown}");

    let policy = run_ok(&fed.admin(
        "alice",
        &[
            "roster",
            "propose",
            "--cert-warn-days",
            "14",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(
        policy.contains("pending, 1 of 2 current authority signatures"),
        "{policy}"
    );
    assert!(
        policy.contains("14"),
        "the diff shows the new value: {policy}"
    );
    let empty = run(&fed.admin("alice", &["roster", "propose"]));
    assert_eq!(empty.status.code(), Some(2));
}

/// Each bundle signs a certificate and writes a ledger file on the hub: past the bound of
/// certificates issued to one member and neither recorded in the roster nor revoked, the hub
/// issues no more (a stolen admin certificate calling `IssueBundle` in a loop fills no disk).
#[test]
fn a_member_gets_no_more_bundles_while_too_many_issued_are_unrecorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fed = Federation::init(dir, &["alice"], 1);
    let au = dir.join("au");
    fed.admit(AGENCY, "AFP", &au);
    let bundle = s(&dir.join("au.bundle"));
    let max = intelmesh_node::admin::issued::MAX_UNRECORDED;
    for n in 0..max {
        // Unsigned: each record stays a pending proposal.
        let out = run_ok(&fed.admin(
            "alice",
            &[
                "members", "bundle", AGENCY, "--days", "30", "--out", &bundle,
            ],
        ));
        assert!(out.contains("pending"), "bundle {n}: {out}");
    }
    let refused = run(&fed.admin(
        "alice",
        &[
            "members", "bundle", AGENCY, "--days", "30", "--out", &bundle,
        ],
    ));
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!(
            "{max} certificates issued to {AGENCY} are neither recorded"
        )),
        "{err}"
    );
    let hub = intelmesh_node::NodeConfig::load(&dir.join("fed/hub/node.toml")).unwrap();
    let ledger = intelmesh_node::admin::issued::dir(&hub.data_dir);
    assert_eq!(std::fs::read_dir(ledger).unwrap().count(), max);
}

#[test]
fn a_member_whose_key_was_reported_compromised_gets_no_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fed = Federation::init(dir, &["alice"], 1);
    let au = dir.join("au");
    fed.admit(AGENCY, "AFP", &au);
    let bundle = s(&dir.join("au.bundle"));
    // Once its key is reported compromised, its enrolment request (whose certificate key sat
    // beside the stolen one) is not certified again, though no certificate was recorded.
    let id = signing_key_id(&au);
    run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "report-compromise",
            AGENCY,
            "--key",
            &id,
            "--last-good-seq",
            "0",
            "--reason",
            "node seized",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    let refused = run(&fed.admin(
        "alice",
        &[
            "members", "bundle", AGENCY, "--days", "30", "--out", &bundle,
        ],
    ));
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("a signing key of {AGENCY} was reported compromised, so the key of its enrolment request is not certified again")),
        "{err}"
    );
}
