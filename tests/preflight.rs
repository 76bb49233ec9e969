//! `intelmesh run --check` (node `preflight`): a provisioned node has nothing to fix, and each
//! mistake an operator can make with a node's files is found, all of them in one pass, each
//! naming the setting and the file. Real certificates, keys, stores and sockets.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use intelmesh_node::config::{Limits, NodeConfig};
use intelmesh_node::preflight::{check, Finding};
use intelmesh_node::provision::{loopback_specs, provision, star_links, Federation};
use intelmesh_store::{DiskStore, StoreConfig, StoreError};
use intelmesh_tests::net::org;

const HUB: &str = "SG-IGCI";
const AU: &str = "AU-AFP";

fn federation(dir: &Path) -> Federation {
    let specs = loopback_specs(HUB, &[AU]).unwrap();
    let links = star_links(&specs);
    provision(dir, &specs, &links, &Limits::default()).unwrap()
}

/// AU-AFP's config with `change` applied, written next to the original.
fn au_config(fed: &Federation, change: impl FnOnce(&mut NodeConfig)) -> PathBuf {
    let node = &fed.nodes[&org(AU)];
    let mut cfg = node.config.clone();
    change(&mut cfg);
    let path = node.dir.join("changed.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    path
}

/// Asserts that `found` holds exactly one finding for each (setting, text) and nothing else.
fn assert_findings(found: &[Finding], expected: &[(&str, String)]) {
    for (setting, text) in expected {
        let hits = found
            .iter()
            .filter(|f| f.setting == *setting && f.problem.contains(text.as_str()))
            .count();
        assert_eq!(hits, 1, "{setting}: {text:?} once in:\n{}", listing(found));
    }
    assert_eq!(
        found.len(),
        expected.len(),
        "nothing else:\n{}",
        listing(found)
    );
}

fn listing(found: &[Finding]) -> String {
    found.iter().map(|f| format!("  {f}\n")).collect()
}

#[test]
fn provisioned_nodes_have_nothing_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    for node in fed.nodes.values() {
        let report = check(&node.config_path);
        assert!(report.config.is_some());
        assert_findings(&report.findings, &[]);
    }
}

#[test]
fn every_mistake_is_found_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let hub = &fed.nodes[&org(HUB)];
    let au = &fed.nodes[&org(AU)];

    // The hub's store, recorded for the hub.
    drop(DiskStore::open(StoreConfig::new(&hub.config.data_dir).owned_by(org(HUB))).unwrap());
    // An address some other program listens on.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_too = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std::fs::set_permissions(&au.config.api.key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let path = au_config(&fed, |cfg| {
        // The hub's node certificate with AU's key: another org, and not the key's.
        cfg.federation.cert = hub.config.federation.cert.clone();
        // The two client CAs swapped.
        cfg.federation.client_ca = au.config.api.client_ca.clone();
        cfg.api.client_ca = fed.federation_ca.clone();
        // The hub's signing key, listed for the hub only.
        cfg.signing_key = hub.config.signing_key.clone();
        cfg.data_dir = hub.config.data_dir.clone();
        cfg.federation.listen = taken.local_addr().unwrap();
        cfg.limits.heartbeat_ms = 0;
        cfg.limits.max_message_bytes = 1000;
        // A gateway on a port in use, with a user whose hash is not one; a missing list.
        let mut taxii = intelmesh_node::taxii::TaxiiConfig::new(taken_too.local_addr().unwrap());
        taxii.user.push(intelmesh_node::taxii::TaxiiUser {
            name: "soc".into(),
            password_hash: "hunter2".into(),
            permission: intelmesh_node::taxii::Permission::Read,
        });
        cfg.taxii = Some(taxii);
        cfg.warninglists = vec![dir.path().join("no-such-lists")];
        // The hub console on an agency, on its API's port.
        cfg.console = Some(intelmesh_node::console::ConsoleConfig {
            listen: cfg.api.listen,
        });
    });
    let report = check(&path);
    let d = |p: &Path| p.display().to_string();
    let api_key = d(&au.config.api.key);
    assert_findings(
        &report.findings,
        &[
            ("limits.heartbeat_ms", "is 0: it must be at least 1".into()),
            ("limits.max_message_bytes", "is 1000: give 262144 to".into()),
            (
                "api.key",
                format!("{api_key} is readable by others (mode 0644): run `chmod 600 {api_key}`"),
            ),
            (
                "federation.key",
                format!(
                    "{} is not the key of federation.cert {}",
                    d(&au.config.federation.key),
                    d(&hub.config.federation.cert)
                ),
            ),
            (
                "federation.cert",
                format!(
                    "{} is the certificate of SG-IGCI's node, not AU-AFP's",
                    d(&hub.config.federation.cert)
                ),
            ),
            (
                "federation.client_ca",
                format!(
                    "{} is the service CA of AU-AFP, not the federation CA: no peer could connect",
                    d(&au.config.api.client_ca)
                ),
            ),
            (
                "federation.cert",
                "is not signed by federation.client_ca".into(),
            ),
            (
                "api.client_ca",
                format!(
                    "{} is the federation CA, not the service CA of AU-AFP: any member's node could call this API",
                    d(&fed.federation_ca)
                ),
            ),
            ("api.cert", "is not signed by api.client_ca".into()),
            (
                "signing_key",
                format!(
                    "the key in {} (key id",
                    d(&hub.config.signing_key)
                ),
            ),
            (
                "data_dir",
                format!(
                    "the store at {} belongs to SG-IGCI, not AU-AFP",
                    d(&hub.config.data_dir)
                ),
            ),
            ("federation.listen", "is already in use".into()),
            ("taxii.listen", "is already in use".into()),
            (
                "[[taxii.user]] password_hash",
                "of soc is not a PHC hash".into(),
            ),
            ("warninglists", "no such file or directory".into()),
            ("[console]", "the console is served by hubs only".into()),
            (
                "console.listen",
                format!("{} is also api.listen", au.config.api.listen),
            ),
        ],
    );
    let signing = report
        .findings
        .iter()
        .find(|f| f.setting == "signing_key")
        .unwrap();
    assert!(
        signing.problem.contains("is not in the key list")
            && signing.problem.contains("for AU-AFP"),
        "{signing}"
    );
}

#[test]
fn missing_and_unreadable_files_are_named_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let au = &fed.nodes[&org(AU)];
    let garbage = au.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let missing = au.dir.join("missing.pem");
    let path = au_config(&fed, |cfg| {
        cfg.federation.cert = missing.clone();
        cfg.api.cert = garbage.clone();
        cfg.api.key = garbage.clone();
    });
    let report = check(&path);
    assert_findings(
        &report.findings,
        &[
            (
                "federation.cert",
                format!("{}: no such file", missing.display()),
            ),
            (
                "api.cert",
                format!("{} is not a PEM certificate", garbage.display()),
            ),
            (
                "api.key",
                format!("{} is not a usable PEM private key", garbage.display()),
            ),
        ],
    );

    let unparsable = au.dir.join("unparsable.toml");
    std::fs::write(&unparsable, "org = \"AU-AFP\"\n").unwrap();
    let report = check(&unparsable);
    assert!(report.config.is_none());
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].setting, "config");
    assert!(
        report.findings[0].problem.contains("unparsable.toml"),
        "{}",
        report.findings[0]
    );
}

#[test]
fn a_store_held_by_a_running_node_says_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let au = &fed.nodes[&org(AU)];
    let running = DiskStore::open(StoreConfig::new(&au.config.data_dir).owned_by(org(AU))).unwrap();
    let second = DiskStore::open(StoreConfig::new(&au.config.data_dir)).err();
    assert!(
        matches!(&second, Some(StoreError::InUse(path)) if path == &au.config.data_dir),
        "{second:?}"
    );
    let report = check(&au.config_path);
    assert_findings(
        &report.findings,
        &[(
            "data_dir",
            format!(
                "the store at {} is in use by another process (a running node?): stop the node first",
                au.config.data_dir.display()
            ),
        )],
    );
    drop(running);
    assert_findings(&check(&au.config_path).findings, &[]);
}

#[test]
fn the_same_unmarked_ca_on_both_listeners_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let au = &fed.nodes[&org(AU)];
    // A CA made before roles were marked: the role checks cannot tell, the comparison can.
    let legacy = au.dir.join("legacy-ca.pem");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(&legacy, params.self_signed(&key).unwrap().pem()).unwrap();
    let path = au_config(&fed, |cfg| {
        cfg.federation.client_ca = legacy.clone();
        cfg.api.client_ca = legacy.clone();
    });
    let report = check(&path);
    assert_findings(
        &report.findings,
        &[
            (
                "api.client_ca",
                format!(
                    "{} is the same CA as federation.client_ca: any member's node could call this API",
                    legacy.display()
                ),
            ),
            (
                "federation.cert",
                "is not signed by federation.client_ca".into(),
            ),
            ("api.cert", "is not signed by api.client_ca".into()),
        ],
    );
}

/// What `--check` finds, a node refuses at start too, with the same words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_another_orgs_store_an_unlisted_key_and_open_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let hub = &fed.nodes[&org(HUB)];
    let au = &fed.nodes[&org(AU)];
    drop(DiskStore::open(StoreConfig::new(&hub.config.data_dir).owned_by(org(HUB))).unwrap());
    let refusal = |change: &dyn Fn(&mut NodeConfig)| {
        let mut cfg = au.config.clone();
        change(&mut cfg);
        async move {
            match intelmesh_node::start(cfg).await {
                Ok(_) => panic!("the node started"),
                Err(e) => format!("{e:#}"),
            }
        }
    };

    let err = refusal(&|cfg| cfg.data_dir = hub.config.data_dir.clone()).await;
    assert!(err.contains("belongs to SG-IGCI, not AU-AFP"), "{err}");

    let err = refusal(&|cfg| cfg.signing_key = hub.config.signing_key.clone()).await;
    assert!(err.contains("is not in its key list for AU-AFP"), "{err}");

    let key = &au.config.federation.key;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let err = refusal(&|_| {}).await;
    let k = key.display();
    assert_eq!(
        err,
        format!("{k} is readable by others (mode 0604): run `chmod 600 {k}`")
    );
}

#[test]
fn encryption_key_files_are_checked_like_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let au = &fed.nodes[&org(AU)];
    let key = au.config.encryption_key.clone().expect("provisioned");

    // Missing.
    let missing = au.dir.join("missing.key");
    let path = au_config(&fed, |cfg| cfg.encryption_key = Some(missing.clone()));
    let found = check(&path).findings;
    assert_eq!(found.len(), 1, "{}", listing(&found));
    assert_eq!(found[0].setting, "encryption_key");
    assert!(
        found[0].problem.contains(&missing.display().to_string()),
        "{}",
        listing(&found)
    );

    // Not a key (but private).
    let garbage = au.dir.join("garbage.key");
    std::fs::write(&garbage, "not hex\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = au_config(&fed, |cfg| cfg.encryption_key = Some(garbage.clone()));
    assert_findings(
        &check(&path).findings,
        &[(
            "encryption_key",
            format!("encryption key {}", garbage.display()),
        )],
    );

    // An old key kept beside it that others may read.
    let old =
        intelmesh_node::encryption_keys::old_path(&key, &intelmesh_core::sealed::EncKeyId([7; 8]));
    std::fs::copy(&key, &old).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_findings(
        &check(&au.config_path).findings,
        &[(
            "encryption_key",
            format!("{} is readable by others", old.display()),
        )],
    );
    // The current one open to others: named once, as the other key files are.
    std::fs::remove_file(&old).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_findings(
        &check(&au.config_path).findings,
        &[("encryption_key", format!("chmod 600 {}", key.display()))],
    );
}
