//! The metrics endpoint and health, on a roster-mode hub and agency on loopback: scraped and
//! parsed by prometheus-client's OpenMetrics parser (`tests/metrics/scrape.py`), values checked
//! against what the test did; readiness and gRPC health turn NOT_SERVING when the hub stops
//! and back when it returns.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_node::config::MetricsConfig;
use intelmesh_proto::v1 as pb;
use intelmesh_tests::net::fast_limits;
use intelmesh_tests::roster_net::{peer, RosterNet};
use intelmesh_tests::taxii::run_python;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A sample: its name with its labels.
type Key = (String, BTreeMap<String, String>);

/// Every sample of `addr`'s `/metrics`, as the third-party parser read them.
async fn scrape(addr: SocketAddr) -> (BTreeMap<Key, f64>, BTreeMap<String, String>) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("metrics/scrape.py");
    let out = run_python(vec![
        script.display().to_string(),
        format!("http://{addr}/metrics"),
    ])
    .await;
    let mut samples = BTreeMap::new();
    for s in out["samples"].as_array().expect("samples") {
        let labels = s[1]
            .as_object()
            .expect("labels")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string()))
            .collect();
        let name = s[0].as_str().expect("name").to_string();
        samples.insert((name, labels), s[2].as_f64().expect("value"));
    }
    let types = out["types"]
        .as_object()
        .expect("types")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    (samples, types)
}

fn value(samples: &BTreeMap<Key, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}; have {:?}", samples.keys()))
}

/// The status code and body of a plain HTTP GET.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_as(addr, path, "probe").await
}

/// `GET path` naming `host` in the `Host` header.
async fn get_as(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.expect("answer");
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (code, body.to_string())
}

async fn health(net: &RosterNet, org: &OrgId, service: &str) -> ServingStatus {
    let mut client = HealthClient::new(net.channel(org).await);
    let answer = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .expect("health check");
    ServingStatus::try_from(answer.into_inner().status).expect("a known status")
}

/// Waits until `/readyz` of `addr` answers `code` (and gRPC health agrees), or fails.
async fn wait_ready(net: &RosterNet, org: &OrgId, code: u16) -> String {
    let addr = net.node(org).metrics_addr.expect("metrics listener");
    let want = if code == 200 {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, body) = get(addr, "/readyz").await;
        if got == code && health(net, org, "").await == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz of {org} still answers {got} ({body}), wanted {code}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_follow_what_the_node_did_and_readiness_follows_the_hub() {
    let mut net = RosterNet::provisioned("HUB", &["AG-A"], &fast_limits());
    let (hub, agency) = (net.hub.clone(), OrgId::parse("AG-A").unwrap());
    for org in [&hub, &agency] {
        net.fed.nodes.get_mut(org).unwrap().config.metrics = Some(MetricsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            hosts: vec!["probe".into()],
        });
    }
    net.start(&hub).await;
    net.start(&agency).await;
    net.admit(&agency).await;
    net.wait_status(&agency, Duration::from_secs(20), |s| {
        s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
    })
    .await
    .expect("the agency links to the hub");
    assert_eq!(
        get(net.node(&agency).metrics_addr.unwrap(), "/livez")
            .await
            .0,
        200
    );
    wait_ready(&net, &agency, 200).await;
    // Asked under a name it was not given (a page that rebound its own name to the address,
    // read by a browser that reaches the port): refused; under its address, answered.
    let at = net.node(&agency).metrics_addr.unwrap();
    for path in ["/metrics", "/readyz", "/livez"] {
        assert_eq!(get_as(at, path, "evil.example:9464").await.0, 421, "{path}");
    }
    assert_eq!(get_as(at, "/livez", &at.to_string()).await.0, 200);
    assert_eq!(get_as(at, "/livez", "[::1]:9464").await.0, 200);
    assert_eq!(get_as(at, "/livez", "localhost").await.0, 200);

    // What the test does: 7 entries published, 2 lookups, 1 call refused.
    let seqs = net.publish_domains(&agency, "metrics", 7).await;
    let head = *seqs.last().expect("seqs");
    let mut client = net.client(&agency).await;
    for _ in 0..2 {
        client
            .lookup(pb::LookupRequest {
                values: vec!["metrics-0.ag-a.example".into()],
            })
            .await
            .expect("lookup");
    }
    let refused = pb::admin_client::AdminClient::new(net.channel(&agency).await)
        .federation_status(pb::FederationStatusRequest::default())
        .await
        .expect_err("a service certificate may not call Admin");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    net.wait_status(&hub, Duration::from_secs(20), |s| {
        s.vector.get("AG-A").copied().unwrap_or(0) >= head
    })
    .await
    .expect("the hub holds the agency's entries");
    // Not a TLS client: refused at the handshake, and counted.
    let mut junk = tokio::net::TcpStream::connect(net.node(&hub).federation_addr)
        .await
        .expect("connect");
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("send");
    let _ = junk.read(&mut [0u8; 64]).await;

    let (a, types) = scrape(net.node(&agency).metrics_addr.unwrap()).await;
    let calls = |m: &str, code: &str| {
        value(
            &a,
            "intelmesh_api_calls_total",
            &[("method", m), ("code", code)],
        )
    };
    assert_eq!(calls("intelmesh.v1.Indicators/Lookup", "OK"), 2.0);
    assert_eq!(
        calls("intelmesh.v1.Admin/FederationStatus", "PERMISSION_DENIED"),
        1.0
    );
    assert_eq!(types["intelmesh_api_calls"], "counter");
    assert_eq!(value(&a, "intelmesh_peer_up", &[("peer", "HUB")]), 1.0);
    // Roster checkpoints may follow the 7 entries in the agency's log.
    assert!(value(&a, "intelmesh_origin_head_seq", &[("origin", "AG-A")]) >= head as f64);
    assert!(value(&a, "intelmesh_peer_entries_sent_total", &[("peer", "HUB")]) >= 7.0);
    assert!(value(&a, "intelmesh_peer_sent_bytes_total", &[("peer", "HUB")]) > 0.0);
    let indicators = value(&a, "intelmesh_indicators", &[]);
    assert!(indicators >= 7.0, "{indicators}");
    assert_eq!(
        indicators,
        net.node(&agency).state().store.indicator_count() as f64
    );
    assert_eq!(value(&a, "intelmesh_roster_version", &[]), 2.0);
    assert_eq!(value(&a, "intelmesh_ready", &[]), 1.0);
    // A store of a few entries is filled long before the first scrape.
    assert_eq!(value(&a, "intelmesh_index_presence_filled", &[]), 1.0);
    // Below the default size for a lookup table: lookups read the index.
    assert_eq!(value(&a, "intelmesh_lookup_table_indicators", &[]), 0.0);
    assert!(value(&a, "intelmesh_store_size_bytes", &[]) > 0.0);
    // Certificates are issued for 365 days (one hour backdated).
    let days = value(
        &a,
        "intelmesh_certificate_expiry_days",
        &[("certificate", "federation"), ("org", "AG-A")],
    );
    assert!((363.0..=365.0).contains(&days), "{days}");
    let api_cert = value(
        &a,
        "intelmesh_certificate_expiry_days",
        &[("certificate", "api"), ("org", "AG-A")],
    );
    assert!((363.0..=365.0).contains(&api_cert), "{api_cert}");

    let (h, _) = scrape(net.node(&hub).metrics_addr.unwrap()).await;
    assert!(
        value(
            &h,
            "intelmesh_peer_entries_received_total",
            &[("peer", "AG-A")]
        ) >= 7.0
    );
    assert!(
        value(
            &h,
            "intelmesh_peer_received_bytes_total",
            &[("peer", "AG-A")]
        ) > 0.0
    );
    assert!(value(&h, "intelmesh_peer_lag_entries", &[("peer", "AG-A")]) >= 0.0);
    assert!(value(&h, "intelmesh_apply_duration_seconds_count", &[]) >= 1.0);
    assert!(value(&h, "intelmesh_verify_duration_seconds_count", &[]) >= 1.0);
    // The hub wrote what it received: each phase is a series, and a durable commit takes time.
    for phase in ["lock_wait", "placing", "index_read", "index_write"] {
        assert!(
            value(
                &h,
                "intelmesh_store_write_seconds_total",
                &[("phase", phase)]
            ) >= 0.0
        );
    }
    assert!(
        value(
            &h,
            "intelmesh_store_write_seconds_total",
            &[("phase", "commit")]
        ) > 0.0
    );
    // The agency's writes (its own submissions, what it received) are counted too.
    assert!(
        value(
            &a,
            "intelmesh_store_write_seconds_total",
            &[("phase", "commit")]
        ) > 0.0
    );
    assert_eq!(
        value(
            &h,
            "intelmesh_tls_handshakes_refused_total",
            &[("listener", "federation")]
        ),
        1.0
    );
    assert_eq!(value(&h, "intelmesh_fork_proofs", &[]), 0.0);
    monitoring_names_exist(
        a.keys()
            .chain(h.keys())
            .map(|(name, _)| name.as_str())
            .chain(types.keys().map(String::as_str)),
    );
    // No indicator value is ever a label.
    for ((_, labels), _) in a.iter().chain(h.iter()) {
        assert!(
            labels.values().all(|v| !v.contains("example")),
            "an indicator value as a label: {labels:?}"
        );
    }

    // The hub stops: the agency is alive but not ready, and says why; back when it returns.
    net.stop(&hub).await;
    let why = wait_ready(&net, &agency, 503).await;
    assert!(why.contains("no link to any hub (hubs: HUB)"), "{why}");
    assert_eq!(
        get(net.node(&agency).metrics_addr.unwrap(), "/livez")
            .await
            .0,
        200
    );
    assert_eq!(
        health(&net, &agency, "intelmesh.v1.Indicators").await,
        ServingStatus::Serving,
        "the API itself still serves"
    );
    let status = net.status(&agency);
    assert!(!status.ready);
    assert!(
        status.readiness.contains("no link to any hub"),
        "{}",
        status.readiness
    );
    net.start(&hub).await;
    wait_ready(&net, &agency, 200).await;
    assert!(net.status(&agency).ready);
}

/// Every `intelmesh_…` series the shipped alert rules and Grafana dashboard query is one a
/// node exposes (`names`: the sample and family names of real scrapes).
fn monitoring_names_exist<'a>(names: impl Iterator<Item = &'a str>) {
    let exposed: std::collections::BTreeSet<&str> = names.collect();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring");
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("monitoring file");
        let mut queried = 0;
        for (at, _) in text.match_indices("intelmesh_") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            queried += 1;
            // A family without samples yet (no entry refused) is still announced by its
            // `# TYPE` line: its name without the counter or histogram suffix.
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exposed.contains(name.as_str()) || exposed.contains(family),
                "{file} queries {name}, which no node exposes"
            );
        }
        assert!(queried > 10, "{file} queries {queried} series");
    }
}

/// A client that asked once and then only sends HTTP/2 pings (which the node answers) holds
/// its connection no longer than the idle deadline: bytes alone are not work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_that_only_pings_is_closed_when_idle() {
    let idle = Duration::from_millis(1_500);
    let limits = intelmesh_node::config::Limits {
        http_idle_ms: idle.as_millis() as u64,
        ..fast_limits()
    };
    let (_net, addr) = hub_with_metrics(&limits).await;
    // Asked once and read to the end: the answer is done, the pings alone keep nothing.
    let (answer, pinged) = asked_then_pinging(addr, "/livez", h2::client::Builder::new()).await;
    let mut body = answer.into_body();
    while body.data().await.is_some() {}
    pinged
        .closed_at_idle(idle, "a connection kept alive by pings alone was held")
        .await;

    // Nor does a client that never opens its window for the answer it asked, pinging all the
    // while: the node writes its acknowledgements, but the answer waits untaken, which is not
    // work; the connection and the answer go at the idle deadline.
    let mut unread = h2::client::Builder::new();
    unread.initial_window_size(0);
    let (answer, pinged) = asked_then_pinging(addr, "/metrics", unread).await;
    pinged
        .closed_at_idle(
            idle,
            "a connection holding an unread answer was kept alive by pings",
        )
        .await;
    drop(answer);
}

/// A plain HTTP/2 connection to `addr` (built by `builder`) that asks `path` and, once the
/// answer's headers came, pings every 200 ms: the answer, and the pinging connection.
async fn asked_then_pinging(
    addr: std::net::SocketAddr,
    path: &str,
    builder: h2::client::Builder,
) -> (http::Response<h2::RecvStream>, Pinged) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, mut connection) = builder
        .handshake::<_, prost::bytes::Bytes>(tcp)
        .await
        .unwrap();
    let mut pings = connection.ping_pong().expect("a ping handle");
    let ended = tokio::spawn(async move {
        let _ = connection.await;
        Instant::now()
    });
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    let (answer, _) = send.send_request(request, true).unwrap();
    let answer = answer.await.expect("the answer's headers");
    assert_eq!(answer.status(), http::StatusCode::OK);
    let pinging = tokio::spawn(async move {
        while pings.ping(h2::Ping::opaque()).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let pinged = Pinged {
        asked: Instant::now(),
        ended,
        pinging,
    };
    (answer, pinged)
}

/// A connection pinging since its answer's headers came (`asked`).
struct Pinged {
    asked: Instant,
    ended: tokio::task::JoinHandle<Instant>,
    pinging: tokio::task::JoinHandle<()>,
}

impl Pinged {
    /// Asserts the node closes the connection at its idle deadline, not before and not much
    /// after (`held` says what a connection never closed means).
    async fn closed_at_idle(self, idle: Duration, held: &str) {
        let ended = tokio::time::timeout(idle * 6, self.ended)
            .await
            .expect(held)
            .unwrap();
        let after = ended.duration_since(self.asked);
        assert!(
            after >= idle - Duration::from_millis(100),
            "closed {after:?} after the answer's headers, before the idle deadline"
        );
        self.pinging.abort();
    }
}

/// One network (an IPv4 /24) holds at most 128 of a web listener's 512 connections, whichever
/// of its addresses they come from (each holding at most 64): a connection from a third
/// address of the full network is closed at once, one from another network is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_network_holds_at_most_its_share_of_a_listeners_connections() {
    let (_net, addr) = hub_with_metrics(&fast_limits()).await;
    let from = |source: &'static str| connect_from(addr, source);
    let mut held = Vec::new();
    for source in ["127.0.0.2", "127.0.0.3"] {
        for _ in 0..64 {
            held.push(from(source).await);
        }
    }
    assert!(
        stays_open(&mut from("127.0.1.4").await).await,
        "another network is served"
    );
    assert!(
        !stays_open(&mut from("127.0.0.4").await).await,
        "a third address of a network holding 128 connections is closed at once"
    );
    drop(held);
    // The network's connections gone, its addresses are served again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stays_open(&mut from("127.0.0.4").await).await {
        assert!(Instant::now() < deadline, "the network's share came back");
    }
}

/// A web listener full of connections that never ask anything (4 networks × 128, the
/// listener's 512) still serves a newcomer from another network: the oldest of the flood is
/// closed to make room, and the newcomer's request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_listener_closes_the_floods_oldest_connection_for_a_newcomer() {
    let (_net, addr) = hub_with_metrics(&fast_limits()).await;
    let mut flood = Vec::new();
    for network in 1..=4 {
        for host in [1, 2] {
            let source = format!("127.0.{network}.{host}");
            for _ in 0..64 {
                flood.push(connect_from(addr, &source).await);
            }
        }
    }
    // Every flood connection is accepted (and kept) before the newcomer comes.
    let last = flood.last_mut().expect("the flood");
    assert!(stays_open(last).await, "the 512th connection is kept");
    let mut newcomer = connect_from(addr, "127.0.9.1").await;
    newcomer
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("asked");
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), newcomer.read_exact(&mut answer))
        .await
        .expect("answered in time")
        .expect("an answer, not a closed connection");
    assert_eq!(&answer, b"HTTP/1.1 200");
    // The four networks hold 128 each: the oldest connection of all went.
    let mut oldest = flood.swap_remove(0);
    let closed = tokio::time::timeout(Duration::from_secs(5), oldest.read(&mut [0u8; 1])).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the flood's oldest connection is closed: {closed:?}"
    );
}

/// A TCP connection to `addr` from the loopback address `source`.
async fn connect_from(addr: SocketAddr, source: &str) -> tokio::net::TcpStream {
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(source).expect("a loopback source address");
    socket.connect(addr).await.expect("connected")
}

/// Whether `tcp` stays open, unanswered, for 700 ms (each connection is taken in turn by the
/// accept loop; an open one is not answered at all).
async fn stays_open(tcp: &mut tokio::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    tokio::time::timeout(Duration::from_millis(700), tcp.read(&mut byte))
        .await
        .is_err()
}

/// A roster federation's hub alone, started under `limits` with a metrics listener: the net
/// (which stops it when dropped) and the listener's address.
async fn hub_with_metrics(
    limits: &intelmesh_node::config::Limits,
) -> (RosterNet, std::net::SocketAddr) {
    let mut net = RosterNet::provisioned("HUB", &["AG-A"], limits);
    let hub = net.hub.clone();
    net.fed.nodes.get_mut(&hub).unwrap().config.metrics = Some(MetricsConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        hosts: Vec::new(),
    });
    net.start(&hub).await;
    let addr = net.node(&hub).metrics_addr.expect("metrics listener");
    (net, addr)
}
