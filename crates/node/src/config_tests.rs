//! Tests of the config rules: limits and the listeners' settings.

use super::*;

fn settings(limits: &Limits) -> Vec<String> {
    limits.problems().into_iter().map(|f| f.setting).collect()
}

#[test]
fn limits_that_would_stop_a_node_are_each_named() {
    assert!(Limits::default().problems().is_empty());
    let zero = Limits {
        max_message_bytes: 0,
        max_batch_entries: 0,
        peer_queue_frames: 0,
        heartbeat_ms: 0,
        dead_after_ms: 0,
        stall_after_ms: 0,
        backoff_min_ms: 0,
        backoff_max_ms: 0,
        connect_timeout_ms: 0,
        unverified_per_origin: 0,
        unverified_total_bytes: 0,
        http_idle_ms: 0,
        connections_per_client: 0,
        calls_per_client: 0,
        handshakes_per_address: 0,
    };
    let mut named = settings(&zero);
    named.sort();
    assert_eq!(
        named,
        [
            "backoff_max_ms",
            "backoff_min_ms",
            "calls_per_client",
            "connect_timeout_ms",
            "connections_per_client",
            "dead_after_ms",
            "handshakes_per_address",
            "heartbeat_ms",
            "http_idle_ms",
            "max_batch_entries",
            "max_message_bytes",
            "peer_queue_frames",
            "stall_after_ms",
            "unverified_per_origin",
            "unverified_total_bytes",
        ]
        .map(|s| format!("limits.{s}"))
    );
    let huge_batch = Limits {
        max_batch_entries: MAX_BATCH_ENTRIES + 1,
        ..Limits::default()
    };
    assert_eq!(settings(&huge_batch), ["limits.max_batch_entries"]);
    let related = Limits {
        heartbeat_ms: 5_000,
        dead_after_ms: 5_000,
        backoff_min_ms: 2_000,
        backoff_max_ms: 1_000,
        stall_after_ms: MAX_DURATION_MS + 1,
        max_message_bytes: MIN_MESSAGE_BYTES - 1,
        ..Limits::default()
    };
    assert_eq!(
        settings(&related),
        [
            "limits.stall_after_ms",
            "limits.max_message_bytes",
            "limits.dead_after_ms",
            "limits.backoff_max_ms"
        ]
    );
    let tiny = Limits {
        connect_timeout_ms: 1,
        http_idle_ms: 99,
        ..Limits::default()
    };
    assert_eq!(
        settings(&tiny),
        ["limits.connect_timeout_ms", "limits.http_idle_ms"]
    );
    let smallest = Limits {
        max_message_bytes: MIN_MESSAGE_BYTES,
        ..Limits::default()
    };
    assert!(smallest.problems().is_empty());
}

#[test]
fn metrics_and_log_format_read_from_the_file_and_a_shared_port_is_named() {
    let base = include_str!("../../../deploy/agency.toml");
    let text = format!("log_format = \"json\"\n{base}\n[metrics]\nlisten = \"127.0.0.1:9464\"\n");
    let cfg = NodeConfig::from_text(&text, Path::new("/etc/intelmesh/node.toml")).expect("parses");
    assert_eq!(cfg.log_format, Some(LogFormat::Json));
    assert_eq!(cfg.metrics.as_ref().map(|m| m.listen.port()), Some(9464));
    assert!(cfg.problems().iter().all(|f| f.setting != "metrics.listen"));
    let api = cfg.api.listen;
    let shared = format!("{base}\n[metrics]\nlisten = \"{api}\"\n");
    let cfg = NodeConfig::from_text(&shared, Path::new("/n.toml")).expect("parses");
    assert!(
        cfg.problems().iter().any(|f| f.setting == "metrics.listen"),
        "{:?}",
        cfg.problems()
    );
    let tiny = base.replace("max_file_bytes = 67108864", "max_file_bytes = 1");
    assert_ne!(tiny, base);
    let cfg = NodeConfig::from_text(&tiny, Path::new("/n.toml")).expect("parses");
    assert!(
        cfg.problems()
            .iter()
            .any(|f| f.setting == "audit.max_file_bytes"),
        "{:?}",
        cfg.problems()
    );
    let bad = format!("log_format = \"yaml\"\n{base}");
    assert!(NodeConfig::from_text(&bad, Path::new("/n.toml")).is_err());
    assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
    assert!("yaml"
        .parse::<LogFormat>()
        .unwrap_err()
        .contains("text or json"));
}

#[test]
fn an_empty_data_dir_and_a_signing_key_doubling_as_encryption_key_are_named() {
    let base = include_str!("../../../deploy/agency.toml");
    let path = Path::new("/etc/intelmesh/node.toml");
    let cfg = NodeConfig::from_text(base, path).expect("parses");
    assert!(cfg.problems().iter().all(|f| f.setting != "encryption_key"));
    let signing = cfg.signing_key.display().to_string();
    let doubled = format!("encryption_key = \"{signing}\"\n{base}");
    let cfg = NodeConfig::from_text(&doubled, path).expect("parses");
    assert!(
        cfg.problems().iter().any(|f| f.setting == "encryption_key"),
        "{:?}",
        cfg.problems()
    );
    let empty = base.replacen(
        "data_dir = \"/var/lib/intelmesh/data\"",
        "data_dir = \"\"",
        1,
    );
    let err = NodeConfig::from_text(&empty, path).expect_err("an empty data_dir");
    assert!(err.to_string().contains("data_dir is empty"), "{err}");
}

#[test]
fn a_revoked_serial_that_is_no_serial_is_named() {
    let base = include_str!("../../../deploy/agency.toml");
    let path = Path::new("/etc/intelmesh/node.toml");
    let revoked = |serials: &str| {
        let text = format!("revoked_serials = [{serials}]\n{base}");
        let cfg = NodeConfig::from_text(&text, path).expect("parses");
        (cfg.problems().into_iter())
            .filter(|f| f.setting == "revoked_serials")
            .count()
    };
    assert_eq!(revoked("\"4F:3A:00:19\", \"0x\", \"\", \"4f3a 19\""), 3);
    assert_eq!(
        revoked("\"4F:3A:00:19\", \"4f3a0019\", \"serial=4F3A0019\""),
        0
    );
}

#[test]
fn listeners_on_one_port_clash_when_one_listens_on_every_address() {
    let base = include_str!("../../../deploy/agency.toml");
    let path = Path::new("/etc/intelmesh/node.toml");
    let api_clashes = |api: &str| {
        let text = base.replacen(
            "listen = \"10.20.0.5:7701\"",
            &format!("listen = \"{api}\""),
            1,
        );
        let cfg = NodeConfig::from_text(&text, path).expect("parses");
        cfg.problems().iter().any(|f| f.setting == "api.listen")
    };
    assert!(
        api_clashes("10.20.0.5:7700"),
        "the federation listens on 0.0.0.0:7700"
    );
    assert!(api_clashes("0.0.0.0:7700"));
    assert!(!api_clashes("10.20.0.5:7701"));
    let at = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(!clashes(at("0.0.0.0:7700"), at("[2001:db8::5]:7700")));
    assert!(clashes(at("[::]:7700"), at("10.20.0.5:7700")));
    assert!(!clashes(at("10.20.0.5:0"), at("0.0.0.0:0")));
    let text = format!(
        "{base}\n[metrics]\nlisten = \"0.0.0.0:9464\"\n\n[console]\nlisten = \"127.0.0.1:9464\"\n"
    );
    let cfg = NodeConfig::from_text(&text, path).expect("parses");
    assert!(
        cfg.problems().iter().any(|f| f.setting == "metrics.listen"),
        "{:?}",
        cfg.problems()
    );
}
