//! Members' encryption keys with the real binary: `federation init` and `node init` write
//! `encryption.key` (0600) and put its public half in the genesis and the enrolment request;
//! `node join` names it in `node.toml`; `node rotate-encryption-key` then `admin members
//! set-encryption-key` against a running hub make the new key current in the next version.

// Each test binary uses part of the helpers.
#[allow(dead_code)]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use intelmesh_node::config::NodeConfig;
use intelmesh_node::encryption_keys::{current_public, load, old_path};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{verify_encryption_key, verify_enrolment};
use prost::Message;
use support::enrol::{addr, args, run, run_ok, s, Federation, HUB};

const AGENCY: &str = "NZ-POL";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The member line of `admin roster show` for `org`.
fn roster_line(fed: &Federation, org: &str) -> String {
    let shown = run_ok(&fed.admin("alice", &["roster", "show"]));
    shown
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{org}\t")))
        .unwrap_or_else(|| panic!("{org} not in: {shown}"))
        .to_string()
}

fn roster_version(fed: &Federation) -> u64 {
    let shown = run_ok(&fed.admin("alice", &["roster", "show"]));
    shown
        .split(" version ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in: {shown}"))
}

/// Rotates the key named by `config` and proposes the request with alice's key (threshold
/// 1, so published at once); returns the new key's id.
fn rotate_and_publish(fed: &Federation, config: &Path, signing_pub: &Path) -> String {
    let cfg = NodeConfig::load(config).unwrap();
    let key_file = cfg
        .encryption_key
        .clone()
        .expect("the config names its key");
    let old = current_public(&key_file).unwrap();
    let rotated = run_ok(&args(&[
        "node",
        "rotate-encryption-key",
        "--config",
        &s(config),
    ]));
    let new = current_public(&key_file).unwrap();
    assert_ne!(old, new);
    assert_eq!(mode(&key_file), 0o600);
    let kept = old_path(&key_file, &old.id());
    assert_eq!(current_public(&kept).unwrap(), old, "the old key is kept");
    assert_eq!(mode(&kept), 0o600);
    let ids: Vec<_> = load(&key_file).unwrap().ids().copied().collect();
    assert!(ids.contains(&old.id()) && ids.contains(&new.id()));

    let request_file = format!("{}.request.pb", s(&key_file));
    assert!(rotated.contains(&request_file), "{rotated}");
    assert!(rotated.contains("set-encryption-key"), "{rotated}");
    // The request names the new key and is signed by the member's signing key.
    let signed =
        pb::SignedEncryptionKeyRequest::decode(std::fs::read(&request_file).unwrap().as_slice())
            .unwrap();
    let signing =
        intelmesh_node::keys::parse_public_key(&std::fs::read_to_string(signing_pub).unwrap())
            .unwrap();
    let verified = verify_encryption_key(&signed, &signing).unwrap();
    assert_eq!(verified.new_key, new);
    assert_eq!(verified.org.as_str(), cfg.org);

    let before = roster_version(fed);
    let set = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "set-encryption-key",
            "--request",
            &request_file,
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(set.contains("published"), "{set}");
    assert_eq!(roster_version(fed), before + 1);
    let line = roster_line(fed, &cfg.org);
    assert!(
        line.contains(&format!(
            "encryption key {} (since version {})",
            new.id(),
            before + 1
        )),
        "the new key is current: {line}"
    );
    let diff = run_ok(&fed.admin(
        "alice",
        &[
            "roster",
            "diff",
            &before.to_string(),
            &(before + 1).to_string(),
        ],
    ));
    assert!(
        diff.contains(&format!(
            "member {}: current encryption key {} -> {}",
            cfg.org,
            old.id(),
            new.id()
        )),
        "{diff}"
    );
    // The same request again: the key is listed already.
    let again = run(&fed.admin(
        "alice",
        &[
            "members",
            "set-encryption-key",
            "--request",
            &request_file,
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("is already listed for"), "{err}");
    new.id().to_string()
}

#[test]
fn encryption_keys_from_init_to_rotation_against_a_running_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fed = Federation::init(dir, &["alice"], 1);

    // The first hub's key: written 0600, named by its config, listed in the genesis.
    let hub_dir = dir.join("fed/hub");
    let hub_key = hub_dir.join("encryption.key");
    assert_eq!(mode(&hub_key), 0o600);
    let hub_config = NodeConfig::load(&hub_dir.join("node.toml")).unwrap();
    assert_eq!(
        hub_config.encryption_key.as_deref(),
        Some(hub_key.as_path())
    );
    let hub_public = current_public(&hub_key).unwrap();
    let line = roster_line(&fed, HUB);
    assert!(
        line.contains(&format!(
            "encryption key {} (since version 1)",
            hub_public.id()
        )),
        "{line}"
    );

    // An agency's key: 0600, carried by its signed enrolment request, listed on admission.
    let nz = dir.join("nz");
    run_ok(&args(&[
        "node",
        "init",
        "--org",
        AGENCY,
        "--name",
        "NZ Police",
        "--country",
        "NZ",
        "--dir",
        &s(&nz),
    ]));
    let nz_key = nz.join("encryption.key");
    assert_eq!(mode(&nz_key), 0o600);
    let request = std::fs::read(nz.join("enrolment.request")).unwrap();
    let verified =
        verify_enrolment(&pb::SignedEnrolmentRequest::decode(request.as_slice()).unwrap()).unwrap();
    let nz_public = current_public(&nz_key).unwrap();
    assert_eq!(verified.encryption_key, Some(nz_public));
    let added = run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "add",
            "--request",
            &s(&nz.join("enrolment.request")),
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(added.contains("published"), "{added}");
    let line = roster_line(&fed, AGENCY);
    assert!(
        line.contains(&format!(
            "encryption key {} (since version 2)",
            nz_public.id()
        )),
        "{line}"
    );

    // `node join` names the key in node.toml.
    let bundle = s(&dir.join("nz.bundle"));
    run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "bundle",
            AGENCY,
            "--out",
            &bundle,
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    run_ok(&args(&[
        "node",
        "join",
        "--dir",
        &s(&nz),
        "--bundle",
        &bundle,
        "--federation-listen",
        &addr(),
        "--api-listen",
        &addr(),
    ]));
    let nz_config = nz.join("node.toml");
    let toml = std::fs::read_to_string(&nz_config).unwrap();
    assert!(toml.contains("encryption_key = "), "{toml}");
    assert_eq!(
        NodeConfig::load(&nz_config)
            .unwrap()
            .encryption_key
            .as_deref(),
        Some(nz_key.as_path())
    );

    // Rotations: the running hub's own key, and the agency's (its node not running).
    let hub_new = rotate_and_publish(
        &fed,
        &hub_dir.join("node.toml"),
        &hub_dir.join("signing.pub"),
    );
    let nz_new = rotate_and_publish(&fed, &nz_config, &nz.join("signing.pub"));
    assert!(roster_line(&fed, HUB).contains(&hub_new));
    assert!(roster_line(&fed, AGENCY).contains(&nz_new));
    // The hub kept running through its rotation.
    assert!(run(&fed.admin("alice", &["members", "list"]))
        .status
        .success());
}

#[test]
fn a_request_signed_with_another_members_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let fed = Federation::init(dir, &["alice"], 1);
    let nz = dir.join("nz");
    run_ok(&args(&[
        "node",
        "init",
        "--org",
        AGENCY,
        "--name",
        "NZ Police",
        "--dir",
        &s(&nz),
    ]));
    run_ok(&fed.admin(
        "alice",
        &[
            "members",
            "add",
            "--request",
            &s(&nz.join("enrolment.request")),
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    // A request for the agency signed with the hub's signing key.
    let hub_signing =
        intelmesh_node::keys::load_signing_key(&dir.join("fed/hub/signing.key")).unwrap();
    let forged = intelmesh_roster::enrolment::sign_encryption_key(
        &intelmesh_core::OrgId::parse(AGENCY).unwrap(),
        &hub_signing,
        &intelmesh_core::sealed::EncryptionSecret::generate().public(),
        intelmesh_core::now_unix_ms(),
    );
    let file = dir.join("forged.pb");
    std::fs::write(&file, forged.encode_to_vec()).unwrap();
    let before = roster_version(&fed);
    let out = run(&fed.admin(
        "alice",
        &[
            "members",
            "set-encryption-key",
            "--request",
            &s(&file),
            "--sign-with",
            &fed.key("alice"),
        ],
    ));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("encryption key request refused"), "{err}");
    assert!(err.contains("does not verify"), "{err}");
    assert_eq!(roster_version(&fed), before, "nothing published");
}

#[test]
fn in_static_mode_the_rotation_names_the_key_for_the_key_lists() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = intelmesh_node::provision::loopback_specs("SG-IGCI", &[AGENCY]).unwrap();
    let links = intelmesh_node::provision::star_links(&specs);
    let fed = intelmesh_node::provision::provision(
        tmp.path(),
        &specs,
        &links,
        &intelmesh_node::config::Limits::default(),
    )
    .unwrap();
    let node = &fed.nodes[&intelmesh_core::OrgId::parse(AGENCY).unwrap()];
    let key_file = node.config.encryption_key.clone().expect("provisioned");
    let old = current_public(&key_file).unwrap();
    let out = run_ok(&args(&[
        "node",
        "rotate-encryption-key",
        "--config",
        &s(&node.config_path),
    ]));
    let new = current_public(&key_file).unwrap();
    assert_ne!(old, new);
    assert!(
        out.contains(&format!(
            "set for org {AGENCY}: encryption_key = \"{}\"",
            hex::encode(new.as_bytes())
        )),
        "{out}"
    );
    assert_eq!(
        current_public(&old_path(&key_file, &old.id())).unwrap(),
        old
    );
    assert!(
        !Path::new(&format!("{}.request.pb", s(&key_file))).exists(),
        "no roster request in static mode"
    );
}
