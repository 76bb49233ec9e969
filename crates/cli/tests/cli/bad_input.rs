//! Bad input to the command line: one clear line and exit code 2.

use super::*;

#[test]
fn bad_input_is_one_clear_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let out = intelmesh(&["run", "--config", d.join("none.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("cannot read config"));

    let bad = d.join("bad.toml");
    std::fs::write(&bad, "org = \"AU-AFP\"\nlisten = \"x\"\n").unwrap();
    let out = intelmesh(&["run", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("bad.toml"));

    let out = intelmesh(&[
        "status",
        "--endpoints",
        d.join("no.json").to_str().unwrap(),
        "--node",
        "X",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("demo --keep"));

    // A service certificate made with the pki commands, for a node that is not running.
    let nodes = Nodes::provision(d, &["SG-IGCI"]);
    let endpoints = nodes.endpoints_file(d);
    let out = intelmesh(&["status", "--endpoints", &endpoints, "--node", "XX-NONE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("known: SG-IGCI"));
    let out = intelmesh(&["status", "--endpoints", &endpoints, "--node", "SG-IGCI"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "unreachable is not a usage error"
    );
    let line = one_error_line(&out);
    assert!(
        line.contains("cannot reach the API of node SG-IGCI"),
        "{line}"
    );

    let conn = ["--endpoints", endpoints.as_str(), "--node", "SG-IGCI"];
    let out = intelmesh(&[&["submit"], &conn[..], &["evil.example", "not a value"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("argument 2"));
    let out = intelmesh(&[&["submit"], &conn[..], &["--type", "ipv4", "evil.example"]].concat());
    assert_eq!(out.status.code(), Some(2));
    let out = intelmesh(
        &[
            &["submit"],
            &conn[..],
            &["--tlp", "green", "--recipient", "BR-PF", "a.example"],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--recipient"));
    let out = intelmesh(&[&["submit"], &conn[..], &["--file", "/no/such/file"]].concat());
    assert_eq!(out.status.code(), Some(2));
    let out = intelmesh(&[&["get"], &conn[..], &["hash", "abc"]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("sha256"));

    for agencies in ["1", "8"] {
        let out = intelmesh(&["demo", "--agencies", agencies]);
        assert_eq!(out.status.code(), Some(2), "--agencies {agencies}");
    }
    let out = intelmesh(&["demo", "--dir", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("not empty"));
    let out = intelmesh(&["status"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a connection option is required"
    );

    // `taxii enable` judges the edit as the node will read the file, and leaves it alone
    // when it refuses.
    let config = nodes.config("SG-IGCI");
    let before = std::fs::read(&config).unwrap();
    let api = intelmesh_node::config::NodeConfig::read(std::path::Path::new(&config))
        .unwrap()
        .api
        .listen
        .to_string();
    let out = intelmesh(&["taxii", "enable", "--config", &config, "--listen", &api]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("taxii.listen"));
    assert_eq!(std::fs::read(&config).unwrap(), before);
    // A config that holds password hashes is not left readable by others.
    let copy = d.join("taxii-node.toml");
    std::fs::write(&copy, &before).unwrap();
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&copy, perms).unwrap();
    let free = intelmesh_node::provision::free_loopback_addr().unwrap();
    let copy_s = copy.to_str().unwrap();
    for args in [
        &[
            "taxii",
            "enable",
            "--config",
            copy_s,
            "--listen",
            &free.to_string(),
        ][..],
        &[
            "taxii",
            "user",
            "--config",
            copy_s,
            "--name",
            "opencti",
            "--permission",
            "read",
        ],
    ] {
        let out = intelmesh(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    let mode = std::fs::metadata(&copy).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
    let empty = d.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let out = intelmesh(&[
        "taxii",
        "enable",
        "--config",
        empty.to_str().unwrap(),
        "--listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("not a node config"));
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
    // An agency's name and country are judged before any key is made, as the hub will.
    let ag = d.join("ag3");
    let ag_s = ag.to_str().unwrap();
    let out = intelmesh(&[
        "node",
        "init",
        "--org",
        "AG3",
        "--name",
        "x",
        "--country",
        "ZZZ",
        "--dir",
        ag_s,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("ISO 3166-1"));
    assert!(!ag.exists());
    let ag = d.join("ag4");
    let ag_s = ag.to_str().unwrap();
    let out = intelmesh(&[
        "node",
        "init",
        "--org",
        "AG4",
        "--name",
        "Agency 4",
        "--country",
        "AU",
        "--dir",
        ag_s,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let empty_bundle = d.join("empty.bundle");
    std::fs::write(&empty_bundle, b"").unwrap();
    let out = intelmesh(&[
        "node",
        "join",
        "--dir",
        ag_s,
        "--bundle",
        empty_bundle.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("names no org"));
    let out = intelmesh(&[
        "admin",
        "keygen",
        "--name",
        "a",
        "--out",
        d.join("no/dir/a.key").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(one_error_line(&out).contains("its directory does not exist"));
    let out = intelmesh(&[
        "node",
        "rotate-key",
        "--config",
        "x.toml",
        "--timeout-secs",
        "18446744073709551615",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A file where a directory is wanted is named as such.
    let a_file = d.join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let out = intelmesh(&[
        "keygen",
        "--org",
        "AU-AFP",
        "--out",
        a_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("is a file: give a directory"));
    // A profile's timeout is bounded as --timeout is.
    let profile = d.join("slow.toml");
    std::fs::write(
        &profile,
        "api = \"127.0.0.1:1\"\nnode_org = \"SG-IGCI\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"c.key\"\ntimeout = 1000000000000\n",
    )
    .unwrap();
    let out = intelmesh(&["status", "--profile", profile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("timeout 1000000000000 is not in 1..=3600"));
    let out = intelmesh(&[
        "bench",
        "propagate",
        "--nodes",
        "2",
        "--rate",
        "99999999999",
    ]);
    assert_eq!(out.status.code(), Some(2));

    // Keys are never overwritten.
    let ca = d.join("SG-IGCI/service-ca");
    let key_before = std::fs::read(ca.join("ca.key")).unwrap();
    let out = intelmesh(&[
        "pki",
        "init-ca",
        "--out",
        ca.to_str().unwrap(),
        "--service",
        "SG-IGCI",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(ca.join("ca.key")).unwrap(), key_before);
}
