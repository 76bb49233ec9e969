//! Enrolment and administration with the real binary, as hub operators and an agency would
//! do it: `federation init`, `node init`, `admin members add`, `admin members bundle`,
//! `node join`, `run`; thresholds of one and two authority signatures; which certificate may
//! call what; the audit trail.

// Each test binary uses part of the helpers.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::enrol::{
    addr, api_flags, args, proposal_id, run, run_ok, s, signing_key_id, Federation, FED, HUB,
};
use support::wait_until;

#[path = "enrolment/authority.rs"]
mod authority;

const AGENCY: &str = "AU-AFP";

/// Every file under `dir` but the data directory, with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "data") {
            continue;
        }
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
    out
}

#[test]
fn an_agency_enrols_from_its_own_request_and_federates_without_a_file_changed_on_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut fed = Federation::init(dir, &["alice"], 1);
    let hub_files = files(&dir.join("fed"));

    let au = dir.join("au");
    let init = run_ok(&args(&[
        "node",
        "init",
        "--org",
        AGENCY,
        "--name",
        "Australian Federal Police",
        "--country",
        "AU",
        "--dir",
        &s(&au),
    ]));
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(au.join("signing.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600, "private keys stay private");

    let request = s(&au.join("enrolment.request"));
    let added = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "add",
            "--request",
            &request,
            "--reason",
            "MoU signed",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(added.contains("published"), "{added}");
    assert!(added.contains(AGENCY), "the diff names the member: {added}");
    // The key ids `node init` told the agency to read out are the ones the proposal names.
    let key_id = signing_key_id(&au);
    assert!(init.contains(&format!("signing key {key_id}")), "{init}");
    assert!(added.contains(&format!("keys {key_id}")), "{added}");

    let bundle = s(&dir.join("au.bundle"));
    // One admin issues bundles: a certificate outliving a year of renewals is refused.
    let long = run(&fed.admin(
        "alice",
        &[
            "members", "bundle", AGENCY, "--days", "398", "--out", &bundle,
        ],
    ));
    assert_eq!(long.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&long.stderr).contains("398 is not in 1..=397"));
    let bundled = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "bundle",
            AGENCY,
            "--days",
            "30",
            "--out",
            &bundle,
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(
        bundled.contains("published"),
        "the certificate is recorded: {bundled}"
    );

    let au_api = addr();
    let join = |pin: &str| {
        args(&[
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
            pin,
        ])
    };
    // A bundle is checked against the pin the operators gave through another channel.
    let other = "00".repeat(32);
    let refused = run(&join(&other));
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("genesis pin {}, not {other}", fed.genesis_pin)),
        "{err}"
    );
    assert!(
        !au.join("node.toml").exists(),
        "a refused join writes no config"
    );
    let joined = run(&join(&fed.genesis_pin.to_uppercase()));
    assert!(joined.status.success());
    // The roster log as the hub held it when it issued the bundle (the genesis and the version
    // that admitted the agency): the node takes no other entries at those seqs, and follows
    // the hub's below (it publishes once admitted).
    let roster = intelmesh_node::NodeConfig::load(&au.join("node.toml"))
        .unwrap()
        .roster
        .expect("roster mode");
    assert_eq!(roster.log_pins().unwrap().len(), 2, "{:?}", roster.log_pins);
    // Joining again (how a renewal's bundle is installed) keeps the config the operator
    // edited, and checks the bundle against the federation that config pins.
    let config = au.join("node.toml");
    let edited = format!(
        "{}\n# the operator's edit\n",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, &edited).unwrap();
    let again = run_ok(&args(&[
        "node",
        "join",
        "--dir",
        &s(&au),
        "--bundle",
        &bundle,
    ]));
    assert!(again.contains("is kept as it was"), "{again}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    let swapped = run(&join(&other));
    assert_eq!(swapped.status.code(), Some(2));
    let err = String::from_utf8_lossy(&swapped.stderr);
    assert!(
        err.contains(&format!(
            "follows the federation with pin {}",
            fed.genesis_pin
        )),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&joined.stderr).contains("warning"),
        "a checked pin is not warned about"
    );
    fed.procs.start(&au.join("node.toml"), &dir.join("au.log"));

    let at_agency = Federation::service_args(&au, AGENCY, &au_api);
    wait_until(
        "the agency publishes once the roster it received admits it",
        || {
            let mut submit = args(&["submit"]);
            submit.extend(at_agency.clone());
            submit.extend(args(&["--tlp", "green", "enrolled.example"]));
            run(&submit).status.success().then_some(())
        },
    );
    let hub_dir = dir.join("fed/hub");
    let at_hub = Federation::service_args(&hub_dir, HUB, &fed.hub_api);
    wait_until("the hub holds the agency's indicator", || {
        let mut get = args(&["get"]);
        get.extend(at_hub.clone());
        get.push("enrolled.example".into());
        let out = run(&get);
        (out.status.success() && String::from_utf8_lossy(&out.stdout).contains(AGENCY))
            .then_some(())
    });
    assert_eq!(
        files(&dir.join("fed")),
        hub_files,
        "no file of the hub changed"
    );

    let status = run_ok(&fed.admin("alice", &["status"]));
    let row = status
        .lines()
        .find(|l| l.starts_with(AGENCY))
        .unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains("\ttrue\t"), "connected: {row}");

    let audit = run_ok(&fed.admin("alice", &["audit", "--org", AGENCY]));
    assert!(
        audit.contains(&format!("v2 proposed by {HUB}/alice (MoU signed)")),
        "{audit}"
    );
    assert!(audit.contains("signed by alice at"), "{audit}");
    assert!(
        !audit.contains("v1 "),
        "the genesis does not touch {AGENCY}: {audit}"
    );

    // Which certificate may call what.
    let svc = fed.admin_with(
        &hub_dir.join("cli.pem"),
        &hub_dir.join("cli.key"),
        &["members", "list"],
    );
    let out = run(&svc);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Admin needs a certificate of role admin"),
        "{err}"
    );
    assert!(err.contains("PermissionDenied"), "{err}");

    let node = fed.admin_with(
        &hub_dir.join("node.pem"),
        &hub_dir.join("node.key"),
        &["members", "list"],
    );
    let out = run(&node);
    assert!(
        !out.status.success(),
        "a node certificate is refused by the API listener"
    );

    let ops = dir.join("ops");
    let mut get = args(&["get"]);
    get.extend(api_flags(
        &fed.hub_api,
        HUB,
        &hub_dir.join("service-ca/ca.pem"),
        &ops.join("alice.pem"),
        &ops.join("alice.key"),
    ));
    get.push("enrolled.example".to_string());
    let out = run(&get);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("Indicators needs a certificate of role service"),
        "{err}"
    );
    let mut status = args(&["status"]);
    status.extend(get[1..get.len() - 1].to_vec());
    let out = run(&status);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("NodeStatus needs a certificate of role service"),
        "{err}"
    );

    // A renewal whose record is still unsigned, revoked at once (its bundle went astray): the
    // roster ties the serial to no member, yet the hub knows it issued it to AGENCY.
    let astray = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "renew",
            AGENCY,
            "--out",
            &s(&dir.join("astray.bundle")),
        ],
    ));
    let astray_serial = serial_in(&astray);
    let unrecorded = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "revoke-cert",
            astray_serial,
            "--reason",
            "bundle lost in transit",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(unrecorded.contains("(no member) revoked"), "{unrecorded}");
    // The member's bundled certificate certifies the same key, and stays admitted: the hub
    // says so, naming it.
    assert!(
        unrecorded.contains(&format!(
            "note: {AGENCY} keeps certificates this version does not revoke: serial {}",
            intelmesh_roster::model::normalize_serial(serial_in(&bundled))
        )),
        "{unrecorded}"
    );
    let again = run(&fed.admin(
        "alice",
        &[
            "members",
            "renew",
            AGENCY,
            "--out",
            &s(&dir.join("again.bundle")),
        ],
    ));
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not certified again"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Revoking a certificate needs a reason, recorded with the serial.
    let serial = serial_in(&bundled);
    let bare = run(&fed.admin("alice", &["members", "revoke-cert", serial]));
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("needs --reason"));
    // A compromise report names the key by the id operators see; an id the member does not
    // hold is refused before anything is proposed.
    let id = signing_key_id(&au);
    let unknown = run(&fed.admin(
        "alice",
        &[
            "members",
            "report-compromise",
            AGENCY,
            "--key",
            "0123456789abcdef",
            "--last-good-seq",
            "1",
        ],
    ));
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no signing key of AU-AFP"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let reported = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "report-compromise",
            AGENCY,
            "--key",
            &id,
            "--last-good-seq",
            "1",
            "--reason",
            "laptop stolen",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(reported.contains("published"), "{reported}");
    // The thief took the node's certificates with the key: those issued until now are refused.
    assert!(
        reported.contains(&format!(
            "member {AGENCY}: certificates whose validity starts before"
        )),
        "{reported}"
    );
    let audit = run_ok(&fed.admin("alice", &["audit", "--org", AGENCY]));
    assert!(audit.contains("(laptop stolen)"), "{audit}");

    let revoked = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "revoke-cert",
            serial,
            "--reason",
            "key compromise",
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(revoked.contains("published"), "{revoked}");
    assert!(
        revoked.contains(serial),
        "the diff names the serial: {revoked}"
    );

    // Its enrolment key may be in other hands now: a renewal does not certify it again.
    let renewed = run(&fed.admin(
        "alice",
        &[
            "members",
            "renew",
            AGENCY,
            "--out",
            &s(&dir.join("renewed.bundle")),
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(!renewed.status.success());
    let err = String::from_utf8_lossy(&renewed.stderr);
    assert!(
        err.contains("was revoked, so the key of its enrolment request is not certified again"),
        "{err}"
    );

    // The hub's store re-verifies offline, its roster log named as such.
    fed.procs.stop_all();
    let data = s(&hub_dir.join("data"));
    let plain = run(&args(&["verify-store", "--data", &data]));
    let said = String::from_utf8_lossy(&plain.stdout);
    assert_eq!(plain.status.code(), Some(2), "{said}");
    assert!(said.contains(&format!("--federation {FED}")), "{said}");
    let checked = run_ok(&args(&[
        "verify-store",
        "--data",
        &data,
        "--federation",
        FED,
    ]));
    assert!(checked.contains("store verifies"), "{checked}");
}

/// `federation init`, `node init` and `node join` run from a working directory with a
/// relative `--dir` write configs that `run --check` accepts from anywhere.
#[test]
fn relative_directories_give_configs_that_start_from_anywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let in_dir = |list: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_intelmesh"))
            .args(list)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{list:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    in_dir(&["admin", "keygen", "--name", "alice", "--out", "alice.key"]);
    in_dir(&[
        "federation",
        "init",
        "--id",
        FED,
        "--hub",
        HUB,
        "--authority",
        "alice=alice.key.pub",
        "--sign-with",
        "alice.key",
        "--threshold",
        "1",
        "--hub-address",
        &addr(),
        "--api-listen",
        &addr(),
        "--dir",
        "fed",
    ]);
    let checked = run(&args(&[
        "run",
        "--check",
        "--config",
        &s(&dir.join("fed/hub/node.toml")),
    ]));
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let config = std::fs::read_to_string(dir.join("fed/hub/node.toml")).unwrap();
    assert!(
        config.contains(&s(&dir.join("fed/hub/data"))),
        "absolute paths: {config}"
    );
}

/// `federation init` judges some inputs only once it has made keys (the genesis is built from
/// them): a failure takes back what it wrote, so the corrected command is not refused.
#[test]
fn a_failed_federation_init_leaves_nothing_behind_and_the_corrected_one_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = dir.join("alice.key");
    run_ok(&args(&[
        "admin",
        "keygen",
        "--name",
        "alice",
        "--out",
        &s(&key),
    ]));
    let fed = dir.join("fed");
    let init = |threshold: &str| {
        args(&[
            "federation",
            "init",
            "--id",
            FED,
            "--hub",
            HUB,
            "--authority",
            &format!("alice={}.pub", s(&key)),
            "--sign-with",
            &s(&key),
            "--threshold",
            threshold,
            "--hub-address",
            "127.0.0.1:17999",
            "--dir",
            &s(&fed),
        ])
    };
    let mut one_port = init("1");
    one_port.extend(args(&["--api-listen", "127.0.0.1:17999"]));
    let refused = run(&one_port);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is also the federation listener"));
    assert!(
        !fed.exists(),
        "nothing is written for a config run would refuse"
    );
    let refused = run(&init("2"));
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("threshold 2 with 1 authority keys"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&fed)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // An authority key others may read is used with a warning (removable media often have no
    // modes to set).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let done = run(&init("1"));
    assert!(done.status.success());
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(err.contains(&format!("chmod 600 {}", s(&key))), "{err}");
    let out = String::from_utf8_lossy(&done.stdout);
    assert!(out.contains("genesis pin: "), "{out}");
    // A run stopped after the CA was made, run again: refused before a second CA replaces the
    // first.
    let ca_key = fed.join("federation-ca").join("ca.key");
    let kept = std::fs::read(&ca_key).unwrap();
    std::fs::remove_file(fed.join("genesis.roster")).unwrap();
    std::fs::remove_dir_all(fed.join("hub")).unwrap();
    let again = run(&init("1"));
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("ca.key already exists"), "{err}");
    assert_eq!(std::fs::read(&ca_key).unwrap(), kept);
}

/// The serial a `members bundle|renew` output names ("certificate SERIAL valid until …").
fn serial_in(out: &str) -> &str {
    out.split("certificate ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no serial in: {out}"))
}
