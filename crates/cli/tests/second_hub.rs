//! A second hub added with the real binary as deploy/README.md (section 6) says: `node init`,
//! `admin members add --role hub`, `admin roster propose --hub … --hub …`, `members bundle`,
//! `node join --hub`. It follows the roster log the first hub publishes and will not publish
//! one itself; an agency dials both hubs and its entries reach the second hub after the first
//! is killed.

// Each test binary uses part of the helpers.
#[allow(dead_code)]
mod support;

use std::path::Path;

use serde_json::Value;
use support::enrol::{addr, api_flags, args, run, run_ok, s, Federation, HUB};
use support::wait_until;

const SECOND: &str = "NL-EC3";
const AGENCY: &str = "AU-AFP";

#[test]
fn a_second_hub_joins_through_the_roster_and_carries_on_when_the_first_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut fed = Federation::init(dir, &["alice"], 1);
    let (nl, au) = (dir.join("nl"), dir.join("au"));
    node_init(SECOND, &nl);
    node_init(AGENCY, &au);

    add(&fed, &nl, "hub");
    let (nl_fed, nl_api) = (addr(), addr());
    let listed = run_ok(&fed.admin(
        "alice",
        &[
            "roster",
            "propose",
            "--hub",
            &format!("{HUB}={}", fed.hub_address),
            "--hub",
            &format!("{SECOND}={nl_fed}"),
            "--reason",
            "second hub",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(listed.contains("published"), "{listed}");
    join(&fed, SECOND, &nl, &nl_fed, &nl_api, true);
    let config = std::fs::read_to_string(nl.join("node.toml")).unwrap();
    assert!(config.contains("role = \"hub\""), "{config}");
    add(&fed, &au, "agency");
    let au_api = addr();
    join(&fed, AGENCY, &au, &addr(), &au_api, false);
    fed.procs.start(&nl.join("node.toml"), &dir.join("nl.log"));
    fed.procs.start(&au.join("node.toml"), &dir.join("au.log"));

    let at_agency = Federation::service_args(&au, AGENCY, &au_api);
    let at_second = Federation::service_args(&nl, SECOND, &nl_api);
    let version = status(&fed.dir.join("fed/hub"), &fed)["roster_version"].clone();
    wait_until("the agency links with both hubs", || {
        let s = status_at(&at_agency)?;
        let up = |hub: &str| {
            s["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["org_id"] == hub && p["connected"] == true)
            })
        };
        (up(HUB) && up(SECOND)).then_some(())
    });
    wait_until(
        "the second hub follows the roster the first publishes",
        || {
            let s = status_at(&at_second)?;
            (s["roster_version"] == version && s["flagged_origins"].as_array()?.is_empty())
                .then_some(())
        },
    );

    // Operators' proposals go to the first hub: the second refuses to publish a version.
    run_ok(&args(&[
        "pki",
        "issue-admin",
        "--ca-dir",
        &s(&nl.join("service-ca")),
        "--org",
        SECOND,
        "--name",
        "alice",
        "--out",
        &s(&dir.join("nl-ops")),
    ]));
    let mut at_second_admin = args(&["admin", "roster"]);
    at_second_admin.extend(api_flags(
        &nl_api,
        SECOND,
        &nl.join("service-ca/ca.pem"),
        &dir.join("nl-ops/alice.pem"),
        &dir.join("nl-ops/alice.key"),
    ));
    at_second_admin.extend(args(&[
        "propose",
        "--checkpoint-interval-ms",
        "30000",
        "--sign-with",
        &fed.key("alice"),
    ]));
    let refused = run(&at_second_admin);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("does not publish the roster log"),
        "the second hub names the publisher: {err}"
    );

    // The first hub is lost: the agency's next entry still reaches the second.
    fed.procs.0[0].kill().unwrap();
    let mut submit = args(&["submit"]);
    submit.extend(at_agency.clone());
    submit.extend(args(&["--tlp", "green", "after-the-hub.example"]));
    run_ok(&submit);
    wait_until("the agency's entry reaches the second hub", || {
        let s = status_at(&at_second)?;
        (s["vector"][AGENCY].as_u64()? >= 1).then_some(())
    });
}

fn node_init(org: &str, dir: &Path) {
    run_ok(&args(&[
        "node",
        "init",
        "--org",
        org,
        "--name",
        org,
        "--country",
        "NL",
        "--dir",
        &s(dir),
    ]));
}

/// `admin members add` of the request `node init` wrote in `dir`, as `role`.
fn add(fed: &Federation, dir: &Path, role: &str) {
    let out = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "add",
            "--request",
            &s(&dir.join("enrolment.request")),
            "--role",
            role,
            "--reason",
            "test",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(out.contains("published"), "{out}");
}

/// The member's bundle from the first hub, and `node join` with it (`--hub` if `hub`).
fn join(fed: &Federation, org: &str, dir: &Path, federation: &str, api: &str, hub: bool) {
    let bundle = s(&dir.join("member.bundle"));
    run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "bundle",
            org,
            "--days",
            "30",
            "--out",
            &bundle,
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    let mut join = args(&[
        "node",
        "join",
        "--dir",
        &s(dir),
        "--bundle",
        &bundle,
        "--federation-listen",
        federation,
        "--api-listen",
        api,
    ]);
    if hub {
        join.push("--hub".into());
    }
    run_ok(&join);
}

/// `intelmesh status --json` with `connection` options; `None` while the node does not answer.
fn status_at(connection: &[String]) -> Option<Value> {
    let mut a = args(&["status", "--json"]);
    a.extend_from_slice(connection);
    let out = run(&a);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// The first hub's status, through its `cli` service certificate.
fn status(hub_dir: &Path, fed: &Federation) -> Value {
    let connection = Federation::service_args(hub_dir, HUB, &fed.hub_api);
    wait_until("the first hub answers", || status_at(&connection))
}
