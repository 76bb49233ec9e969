//! The TAXII 2.1 gateway as third-party software uses it, over real TLS on loopback: the
//! OASIS client library (taxii2-client), stix2 and stix2-validator run the whole contract
//! (`tests/taxii/client_check.py`); raw HTTP (`tests/taxii/tool.py`) checks that TLP holds
//! exactly as on the gRPC API, that a service certificate authenticates, and that an
//! identical re-POST signs nothing. The Python tools come from `scripts/python-deps.sh`,
//! which `scripts/test.sh` runs and exports as `INTELMESH_PYTHON`.

use std::time::Duration;

use intelmesh_node::config::Limits;
use intelmesh_node::provision::{free_loopback_addr, loopback_specs, star_links};
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_store::Store;
use intelmesh_tests::api::{dist, submit, upsert};
use intelmesh_tests::console;
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::raw_peer::PATIENCE;
use intelmesh_tests::taxii::{gateway, patterns, run_python, run_tool, script};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

#[path = "taxii/objects.rs"]
mod objects;

/// A hub and two agencies, each serving TAXII.
async fn net() -> TestNet {
    net_with(fast_limits()).await
}

async fn net_with(limits: Limits) -> TestNet {
    let mut specs = loopback_specs("SG-IGCI", &["AU-AFP", "BR-PF"]).expect("ports");
    for s in &mut specs {
        s.taxii = Some(free_loopback_addr().expect("port"));
    }
    let links = star_links(&specs);
    TestNet::new(specs, links, limits).await
}

/// Whether the other end closed `stream` (EOF or an error) within [`PATIENCE`].
async fn closed_by_peer(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Connections are a shared, scarce resource: one that asks nothing (or never finishes its
/// headers) is closed when its first request is due, long before the idle deadline, and one
/// client address cannot hold more than its share of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_that_ask_nothing_and_an_address_past_its_share_are_closed() {
    let first_request = Duration::from_millis(4_000);
    let limits = Limits {
        connect_timeout_ms: 4_000,
        // Past the test's patience: only the first-request deadline can close them.
        http_idle_ms: 600_000,
        ..fast_limits()
    };
    let net = net_with(limits).await;
    let au = org("AU-AFP");
    let addr = net.node(&au).taxii_addr.expect("the gateway listens");
    let ca = net.fed.nodes[&au].api_ca.clone();
    let opened = std::time::Instant::now();
    let mut silent = console::tls_stream(addr, &ca, None).await.unwrap();
    let mut partial = console::tls_stream(addr, &ca, None).await.unwrap();
    partial
        .write_all(b"GET /taxii2/ HTTP/1.1\r\nHost: gateway\r\n")
        .await
        .unwrap();
    partial.flush().await.unwrap();
    // Meanwhile a whole request is answered (no credentials: 401).
    let answer = console::get(addr, &ca, None, "/taxii2/").await.unwrap();
    assert_eq!(answer.status, 401, "{}", answer.text());
    // A path that does not decode is refused in TAXII's error format, like every refusal.
    let bad = "/intelmesh/collections/%ff%fe/objects/";
    let answer = console::get(addr, &ca, None, bad).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/taxii+json")),
        "{:?}",
        answer.headers
    );
    // One address holds at most 64 connections: past that, new ones are refused while they
    // are open (the answered requests' may not be given back yet).
    let mut held = Vec::new();
    while let Ok(c) = console::tls_stream(addr, &ca, None).await {
        held.push(c);
        assert!(
            held.len() <= 64,
            "more than 64 connections from one address"
        );
    }
    assert!(
        opened.elapsed() < first_request,
        "the connections took {:?}: the deadline may have closed some",
        opened.elapsed()
    );
    assert!((60..=62).contains(&held.len()), "{} held", held.len());

    assert!(
        closed_by_peer(&mut silent).await,
        "a silent connection is held"
    );
    assert!(
        closed_by_peer(&mut partial).await,
        "a connection whose headers never end is held"
    );
    assert!(
        opened.elapsed() >= first_request - Duration::from_millis(100),
        "closed after {:?}, before its first request was due",
        opened.elapsed()
    );
    drop(held);
    // The listener serves again once they are gone (the slots come back as each closes).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match console::get(addr, &ca, None, "/taxii2/").await {
            Ok(again) => {
                assert_eq!(again.status, 401);
                break;
            }
            Err(e) if tokio::time::Instant::now() > deadline => panic!("not served again: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn taxii2_client_stix2_and_the_validator_accept_the_gateway() {
    let net = net().await;
    let au = org("AU-AFP");
    let g = gateway(&net, &au).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("taxii.json");
    let cfg = json!({
        "taxii_url": format!("{}/taxii2/", g.base),
        "taxii_user": g.writer.0, "taxii_password": g.writer.1,
        "taxii_ca": g.ca,
        "reader_user": g.reader.0, "reader_password": g.reader.1,
    });
    std::fs::write(&config, cfg.to_string()).unwrap();
    let report = run_python(vec![
        script("client_check.py").display().to_string(),
        config.display().to_string(),
    ])
    .await;
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["objects_read"].as_u64().unwrap_or(0) >= 10,
        "{report}"
    );
    assert!(report["pages"].as_u64().unwrap_or(0) >= 5, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn what_a_caller_reads_honours_tlp_as_the_grpc_api_does() {
    let net = net().await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let mut client = net.client(&au).await;
    let mut red_to_br = upsert(Ty::Domain, "for-br.example", Tlp::Red, &["op"]);
    red_to_br.distribution = dist(Tlp::Red, &["BR-PF"]);
    let mut red_alone = upsert(Ty::Domain, "au-only.example", Tlp::Red, &["op"]);
    red_alone.distribution = dist(Tlp::Red, &[]);
    submit(
        &mut client,
        vec![
            upsert(Ty::Domain, "shared.example", Tlp::Green, &["c2"]),
            red_to_br,
            red_alone,
        ],
    )
    .await;
    net.wait_converged(Duration::from_secs(20))
        .await
        .expect("converged");

    let at_br = gateway(&net, &br).await;
    let read = run_tool(
        &at_br,
        &["read", &at_br.collection, "--limit", "1"],
        &at_br.reader,
    )
    .await;
    let seen = patterns(&read);
    // Each indicator's `created_by_ref` resolves, by id, to its origin's identity.
    let creator = read["objects"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["type"] == "indicator"))
        .and_then(|o| o["created_by_ref"].as_str())
        .expect("an indicator with created_by_ref")
        .to_string();
    let got = run_tool(
        &at_br,
        &["get", &format!("{}objects/{creator}/", at_br.collection)],
        &at_br.reader,
    )
    .await;
    assert_eq!(got["status"], 200, "{got}");
    let envelope: Value = serde_json::from_str(got["body"].as_str().unwrap()).unwrap();
    let identity = &envelope["objects"][0];
    assert_eq!(identity["type"], "identity", "{envelope}");
    assert_eq!(identity["id"], creator.as_str());
    assert_eq!(identity["name"], "AU-AFP");
    assert!(
        seen.contains(&"[domain-name:value = 'shared.example']".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"[domain-name:value = 'for-br.example']".to_string()),
        "a recipient reads RED: {seen:?}"
    );
    assert!(!seen.iter().any(|p| p.contains("au-only")), "{seen:?}");

    let at_hub = gateway(&net, &org("SG-IGCI")).await;
    let seen = patterns(&run_tool(&at_hub, &["read", &at_hub.collection], &at_hub.reader).await);
    assert!(
        seen.contains(&"[domain-name:value = 'shared.example']".to_string()),
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|p| p.contains("for-br") || p.contains("au-only")),
        "the hub relays RED, it does not read it: {seen:?}"
    );
    // An origin is named (its identity object) only to a reader who sees one of its records.
    let mut at_br_api = net.client(&br).await;
    let mut br_alone = upsert(Ty::Domain, "br-only.example", Tlp::Red, &[]);
    br_alone.distribution = dist(Tlp::Red, &[]);
    submit(&mut at_br_api, vec![br_alone]).await;
    net.wait_converged(Duration::from_secs(20))
        .await
        .expect("converged");
    let identity_at_hub = |origin: &str| {
        let id = intelmesh_interop::stix_export::identity_id(origin);
        format!("{}objects/{id}/", at_hub.collection)
    };
    let named = run_tool(
        &at_hub,
        &["get", &identity_at_hub("AU-AFP")],
        &at_hub.reader,
    )
    .await;
    assert_eq!(named["status"], 200, "{named}");
    let unnamed = run_tool(&at_hub, &["get", &identity_at_hub("BR-PF")], &at_hub.reader).await;
    assert_eq!(unnamed["status"], 404, "{unnamed}");
    // Once one of BR's records is shown, its identity is named, but not dated from BR's
    // first entry, a RED one the hub may not read: from the epoch, and so it stays.
    let br_green = upsert(Ty::Domain, "br-green.example", Tlp::Green, &[]);
    submit(&mut at_br_api, vec![br_green]).await;
    net.wait_converged(Duration::from_secs(20))
        .await
        .expect("converged");
    let named = run_tool(&at_hub, &["get", &identity_at_hub("BR-PF")], &at_hub.reader).await;
    assert_eq!(named["status"], 200, "{named}");
    let envelope: Value = serde_json::from_str(named["body"].as_str().unwrap()).unwrap();
    let created = envelope["objects"][0]["created"].clone();
    assert!(
        created
            .as_str()
            .is_some_and(|c| c.starts_with("1970-01-01")),
        "{envelope}"
    );
    let earlier_value = upsert(Ty::Domain, "aaa.example", Tlp::Green, &[]);
    submit(&mut at_br_api, vec![earlier_value]).await;
    net.wait_converged(Duration::from_secs(20))
        .await
        .expect("converged");
    let again = run_tool(&at_hub, &["get", &identity_at_hub("BR-PF")], &at_hub.reader).await;
    let again: Value = serde_json::from_str(again["body"].as_str().unwrap()).unwrap();
    assert_eq!(again["objects"][0]["created"], created, "{again}");
    // AU's first entry is GREEN: its identity dates from it.
    let au_identity = run_tool(
        &at_hub,
        &["get", &identity_at_hub("AU-AFP")],
        &at_hub.reader,
    )
    .await;
    let au_identity: Value = serde_json::from_str(au_identity["body"].as_str().unwrap()).unwrap();
    assert!(
        (au_identity["objects"][0]["created"].as_str()).is_some_and(|c| !c.starts_with("1970")),
        "{au_identity}"
    );

    // A service certificate authenticates instead of a password, and reads as its org.
    let at_au = gateway(&net, &au).await;
    let by_cert = run_tool(
        &at_au,
        &[
            "read",
            &at_au.collection,
            "--cert",
            &at_au.client_cert.display().to_string(),
            "--key",
            &at_au.client_key.display().to_string(),
        ],
        &(String::new(), String::new()),
    )
    .await;
    assert!(
        patterns(&by_cert).iter().any(|p| p.contains("au-only")),
        "{by_cert}"
    );

    // Without credentials: 401 with a TAXII error body; a wrong password too.
    let anonymous = run_tool(
        &at_au,
        &["get", &at_au.collection],
        &(String::new(), String::new()),
    )
    .await;
    assert_eq!(anonymous["status"], 401, "{anonymous}");
    let body: Value = serde_json::from_str(anonymous["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["http_status"], "401");
    let wrong = run_tool(
        &at_au,
        &["get", &at_au.collection],
        &(at_au.reader.0.clone(), "guess".into()),
    )
    .await;
    assert_eq!(wrong["status"], 401, "{wrong}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identical_repost_succeeds_and_signs_nothing() {
    let net = net().await;
    let au = org("AU-AFP");
    let g = gateway(&net, &au).await;
    let dir = tempfile::tempdir().unwrap();
    let envelope = dir.path().join("envelope.json");
    let indicator = |id: &str, pattern: &str| {
        json!({
            "type": "indicator", "spec_version": "2.1", "id": id,
            "created": "2026-11-30T10:00:00.000Z", "modified": "2026-11-30T10:00:00.000Z",
            "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-11-30T10:00:00Z",
            "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
        })
    };
    let body = json!({"objects": [
        indicator("indicator--6b8f5c2e-1111-4f4e-9c3a-000000000001", "[domain-name:value = 'one.example'] OR [ipv4-addr:value = '198.51.100.0/24']"),
        indicator("indicator--6b8f5c2e-1111-4f4e-9c3a-000000000002", "[process:name = 'evil.exe']"),
        {"type": "malware", "spec_version": "2.1", "id": "malware--6b8f5c2e-1111-4f4e-9c3a-000000000003",
         "created": "2026-11-30T10:00:00.000Z", "modified": "2026-11-30T10:00:00.000Z", "name": "x", "is_family": false},
    ]});
    std::fs::write(&envelope, body.to_string()).unwrap();
    let path = envelope.display().to_string();
    let head = || {
        net.node(&au)
            .state()
            .store
            .head(&au)
            .unwrap()
            .map_or(0, |h| h.seq)
    };
    let before = head();
    let first = run_tool(&g, &["post", &g.collection, &path], &g.writer).await;
    assert_eq!(first["status"], 202, "{first}");
    let status = &first["body"];
    assert_eq!(status["success_count"], 1, "{status}");
    assert_eq!(status["failure_count"], 2, "{status}");
    assert_eq!(status["total_count"], 3, "{status}");
    assert_eq!(head(), before + 2, "one entry per value of the OR");
    let again = run_tool(&g, &["post", &g.collection, &path], &g.writer).await;
    assert_eq!(again["body"]["success_count"], 1, "{again}");
    assert_eq!(head(), before + 2, "a re-POST signs nothing");
    // The reader may not add.
    let refused = run_tool(&g, &["post", &g.collection, &path], &g.reader).await;
    assert_eq!(refused["status"], 403, "{refused}");
}

/// A client polling a node's collection with `added_after` set to the last
/// `X-TAXII-Date-Added-Last` it saw gets an entry that reached the node late (signed before
/// what it already read, delayed by a hub outage), and nothing it already has.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_that_arrives_late_is_added_late() {
    let mut net = net().await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    net.stop(&hub).await;
    let mut c = net.client(&br).await;
    submit(
        &mut c,
        vec![upsert(Ty::Domain, "late.example", Tlp::Green, &["x"])],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut c = net.client(&au).await;
    submit(
        &mut c,
        vec![upsert(Ty::Domain, "early.example", Tlp::Green, &["x"])],
    )
    .await;
    let g = gateway(&net, &au).await;
    let first = run_tool(&g, &["read", &g.collection], &g.reader).await;
    assert_eq!(patterns(&first), ["[domain-name:value = 'early.example']"]);
    let last = first["date_added_last"]
        .as_str()
        .expect("a date-added header")
        .to_string();
    net.start(&hub).await;
    net.wait_converged(PATIENCE).await.expect("converged");
    let next = run_tool(
        &g,
        &["read", &g.collection, "--added-after", &last],
        &g.reader,
    )
    .await;
    assert_eq!(
        patterns(&next),
        ["[domain-name:value = 'late.example']"],
        "after {last}: {next}"
    );
    let late = &next["objects"][0];
    assert!(
        late["modified"].as_str().unwrap() < last.as_str(),
        "signed before the last object read: {late}"
    );
    let after_all = next["date_added_last"].as_str().unwrap().to_string();
    assert!(after_all > last, "{after_all} after {last}");
    let none = run_tool(
        &g,
        &["read", &g.collection, "--added-after", &after_all],
        &g.reader,
    )
    .await;
    assert_eq!(patterns(&none), Vec::<String>::new(), "{none}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_cut_inside_an_indicator_lose_and_repeat_nothing() {
    let net = net().await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    // Each value: an assertion by each agency and a sighting by one: three objects per
    // indicator, so pages of 1, 2 and 4 cut inside indicators.
    let values: Vec<String> = (0..5).map(|i| format!("shared-{i}.example")).collect();
    for at in [&au, &br] {
        let mut c = net.client(at).await;
        let subs = values
            .iter()
            .map(|v| upsert(Ty::Domain, v, Tlp::Green, &["x"]))
            .collect();
        submit(&mut c, subs).await;
    }
    let mut c = net.client(&br).await;
    for v in &values {
        c.report_sighting(intelmesh_tests::api::sighting(v, 2))
            .await
            .expect("sighting");
    }
    net.wait_converged(Duration::from_secs(20))
        .await
        .expect("converged");
    let g = gateway(&net, &org("SG-IGCI")).await;
    let ids = |read: &Value| -> Vec<String> {
        read["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_string())
            .collect()
    };
    let all = ids(&run_tool(&g, &["read", &g.collection, "--limit", "1000"], &g.reader).await);
    let mine: Vec<&String> = all.iter().collect();
    assert_eq!(
        mine.len(),
        15,
        "5 values x (2 indicators + 1 sighting): {all:?}"
    );
    // By `next`, and by `added_after` alone (each page after the last date added seen).
    for (limit, how) in [
        ("1", None),
        ("2", None),
        ("4", None),
        ("2", Some("--page-by-date")),
    ] {
        let mut args = vec!["read", &g.collection, "--limit", limit];
        args.extend(how);
        let mut paged = ids(&run_tool(&g, &args, &g.reader).await);
        let n = paged.len();
        paged.sort();
        paged.dedup();
        assert_eq!(paged.len(), n, "limit {limit} {how:?}: an object repeated");
        let mut expected = all.clone();
        expected.sort();
        assert_eq!(paged, expected, "limit {limit} {how:?}: objects lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_over_http2_names_the_authority_the_caller_used() {
    // HTTP/2 requests carry `:authority`, not `Host`: the API root must be where the caller
    // reached the gateway, not its listen address.
    let net = net().await;
    let au = org("AU-AFP");
    let addr = net.node(&au).taxii_addr.expect("the gateway listens");
    let stream = net.service_tls(&au, addr).await;
    let (send, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let authority = format!("gateway.example:{}", addr.port());
    let request = http::Request::get(format!("https://{authority}/taxii2/"))
        .header("accept", "application/taxii+json;version=2.1")
        .body(())
        .unwrap();
    let (answer, _) = send.send_request(request, true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let discovery: Value = serde_json::from_slice(&bytes).unwrap();
    let root = format!("https://{authority}/intelmesh/");
    assert_eq!(discovery["api_roots"], json!([root]), "{discovery}");
    assert_eq!(discovery["default"], json!(root));
}

/// A service that signed in keeps its connection when the gateway is full: 511 connections
/// from as many networks, each holding one, fill it behind the service's (the oldest of
/// all); a newcomer closes the oldest of the flood, not the service's, which is answered
/// again on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_that_signed_in_keeps_its_connection_when_the_gateway_is_full() {
    let net = net().await;
    let au = org("AU-AFP");
    let addr = net.node(&au).taxii_addr.expect("the gateway listens");
    let p = &net.fed.nodes[&au];
    let service = console::Pem {
        cert: p.client_cert.clone(),
        key: p.client_key.clone(),
    };
    let from = |source: String| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
        socket.bind(source).expect("a loopback source address");
        socket.connect(addr).await.expect("connected")
    };
    let mut signed_in = console::tls_over(
        from("127.1.0.1".into()).await,
        addr,
        &p.api_ca,
        Some(&service),
    )
    .await
    .expect("TLS");
    let (host, accept) = (
        addr.to_string(),
        "Accept: application/taxii+json;version=2.1\r\n",
    );
    let ask = intelmesh_tests::http1::get_kept;
    let discovery = ask(&mut signed_in, &host, "/taxii2/", accept).await;
    assert_eq!(discovery.expect("answered").status, 200);
    let mut flood = Vec::new();
    for i in 0..511u32 {
        flood.push(from(format!("127.{}.{}.1", 2 + i / 256, i % 256)).await);
    }
    // The flood's last connection is accepted, so all are: the gateway is full.
    let mut last = flood.pop().expect("the flood");
    let mut byte = [0u8; 1];
    let kept = tokio::time::timeout(Duration::from_millis(700), last.read(&mut byte)).await;
    assert!(kept.is_err(), "the 512th connection is kept: {kept:?}");
    let _newcomer = from("127.9.0.1".into()).await;
    assert!(
        closed_by_peer(&mut flood[0]).await,
        "the flood's oldest is closed for the newcomer"
    );
    let again = ask(&mut signed_in, &host, "/taxii2/", accept).await;
    assert_eq!(again.expect("answered again").status, 200);
}
