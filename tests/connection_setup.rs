//! Setting up a federation link against real nodes: deadlines on the TCP connect and TLS
//! handshake on both sides, the dialer checking exactly whom it reached, and the cause of a
//! failed link kept in one line in `last_error` until the link is up again.

use std::collections::BTreeMap;
use std::path::Path;

use intelmesh_core::{Distribution, OrgId, Tlp};
use intelmesh_node::client::api_channel;
use intelmesh_node::config::{Limits, PeerConfig};
use intelmesh_node::provision::{loopback_specs, star_links};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use intelmesh_store::Store;
use intelmesh_tests::net::{domain_upsert, fast_limits, org, TestNet};
use intelmesh_tests::pki::node_cert_named_as;
use intelmesh_tests::raw_peer::{wait_until, PATIENCE};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, timeout_at, Instant};

const HUB: &str = "SG-IGCI";
const AU: &str = "AU-AFP";
const BR: &str = "BR-PF";

/// Whether the other end closed `stream` (EOF or an error) within [`PATIENCE`]; whatever it
/// sent before is read and dropped.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// What `at` holds of `origin`'s log.
fn stored(net: &TestNet, at: &OrgId, origin: &OrgId) -> Vec<pb::SignedEntry> {
    net.node(at).state().store.range(origin, 1, 100).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_never_answers_the_tls_handshake_is_given_up_on_and_redialed() {
    let (hub, au) = (org(HUB), org(AU));
    let limits = Limits {
        connect_timeout_ms: 500,
        ..fast_limits()
    };
    let specs = loopback_specs(HUB, &[AU]).unwrap();
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &limits);
    // Where AU dials the hub: a listener that takes connections and never answers (a stopped
    // process whose socket still accepts, a wedged proxy).
    let hub_addr = net.fed.nodes[&hub].spec.federation;
    let mute = TcpListener::bind(hub_addr).await.unwrap();
    net.start(&au).await;

    let (mut first, _) = timeout(PATIENCE, mute.accept())
        .await
        .expect("AU dials the hub's address")
        .unwrap();
    wait_until(
        || !net.peer_state(&au, &hub).last_error.is_empty(),
        "AU records why the dial failed",
    )
    .await;
    assert_eq!(
        net.peer_state(&au, &hub).last_error,
        format!("TLS handshake with {hub_addr} timed out after 500ms")
    );
    assert!(
        closed_by_peer(&mut first).await,
        "AU still holds the connection it gave up on"
    );
    timeout(PATIENCE, mute.accept())
        .await
        .expect("AU dials again")
        .unwrap();
    assert!(!net.peer_state(&au, &hub).connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_never_starts_tls_is_dropped_while_others_are_served() {
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    let limits = Limits {
        connect_timeout_ms: 2_000,
        ..fast_limits()
    };
    let specs = loopback_specs(HUB, &[AU, BR]).unwrap();
    let links = star_links(&specs);
    let mut net = TestNet::new(specs, links, limits).await;
    net.wait_for_link(&hub, &br).await;
    // AU's node stops so its certificate is free for a new link opened by hand below.
    net.stop(&au).await;
    net.wait_link_down(&hub, &au).await;

    let addr = net.node(&hub).federation_addr;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    // While those wait for a ClientHello, a new peer gets through TLS and into a link, and an
    // existing link carries entries.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, BTreeMap::new()).await);
    assert_eq!(peer.expect_hello(PATIENCE).await.org_id, HUB);
    let seqs = net.publish_domains(&br, "meanwhile", 1).await;
    net.wait_for(&br, seqs[0], PATIENCE).await.unwrap();

    for stream in &mut silent {
        assert!(
            closed_by_peer(stream).await,
            "the hub still holds a connection that never started TLS"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_holding_a_certificate_with_the_hubs_name_is_not_taken_for_the_hub() {
    let (hub, au, evil) = (org(HUB), org(AU), org("EVIL"));
    let specs = loopback_specs(HUB, &[AU, "EVIL"]).unwrap();
    let mut net = TestNet::provisioned(&specs, &[(au.clone(), hub.clone())], &fast_limits());
    // EVIL is a member whose node certificate, from the federation CA, carries the hub's DNS
    // name: what an org id colliding with the hub's under the lowercasing DNS mapping got
    // before ids were strict, or any certificate issued by mistake.
    let posing = node_cert_named_as(&net.fed, &hub, &evil);
    let evil_dir = net.fed.nodes[&evil].dir.clone();
    posing.write(&evil_dir, "posing").unwrap();
    let evil_addr = net.fed.nodes[&evil].spec.federation;
    {
        let cfg = &mut net.fed.nodes.get_mut(&evil).unwrap().config;
        cfg.federation.cert = evil_dir.join("posing.pem");
        cfg.federation.key = evil_dir.join("posing.key");
        cfg.peer.push(PeerConfig {
            org: AU.into(),
            dial: None,
            relay: false,
        });
    }
    // EVIL sits at the address AU dials for the hub.
    for p in &mut net.fed.nodes.get_mut(&au).unwrap().config.peer {
        if p.org == HUB {
            p.dial = Some(evil_addr);
        }
    }
    net.start(&evil).await;
    net.start(&au).await;
    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![hub.clone()],
    };
    net.node(&au)
        .state()
        .publish(vec![(red, domain_upsert("red.au-afp.example"))])
        .await
        .unwrap();

    // A link once up leaves its time in EVIL's peer table, also after it is cut; and EVIL
    // sends its hello (which AU would refuse, setting its last_error) only after that.
    let heard_by_evil = |net: &TestNet| {
        let s = net.peer_state(&evil, &au);
        s.connected
            || s.last_heard_unix_ms > 0
            || s.bytes_received > 0
            || !stored(net, &evil, &au).is_empty()
    };
    wait_until(
        || heard_by_evil(&net) || !net.peer_state(&au, &hub).last_error.is_empty(),
        "AU refuses EVIL, or EVIL hears from AU",
    )
    .await;
    assert!(
        !heard_by_evil(&net),
        "AU opened a link to EVIL as if it were the hub: {:?}, {} entries of AU stored",
        net.peer_state(&evil, &au),
        stored(&net, &evil, &au).len()
    );
    assert_eq!(
        net.peer_state(&au, &hub).last_error,
        format!(
            "certificate of {evil_addr} refused: reached a node certifying EVIL, expected SG-IGCI"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_that_is_up_again_has_no_last_error() {
    let (hub, au) = (org(HUB), org(AU));
    let mut net = TestNet::star(HUB, &[AU]).await;
    net.wait_for_link(&au, &hub).await;
    let hub_addr = net.node(&hub).federation_addr;

    net.stop(&hub).await;
    wait_until(
        || {
            net.peer_state(&au, &hub)
                .last_error
                .contains("connection refused")
        },
        "AU records that the hub refuses connections",
    )
    .await;
    assert_eq!(
        net.peer_state(&au, &hub).last_error,
        format!("cannot connect to {hub_addr}: connection refused")
    );

    net.start(&hub).await;
    net.wait_for_link(&au, &hub).await;
    let state = net.peer_state(&au, &hub);
    assert_eq!(state.last_error, "", "{state:?}");
}

/// A Status call on a new connection to `node`'s API made with `cert` and `key`: whether the
/// node served it (a connection past the certificate's share is closed after its handshake,
/// so either the channel or the call fails).
async fn status_served(net: &TestNet, node: &OrgId, cert: &Path, key: &Path) -> bool {
    let p = &net.fed.nodes[node];
    let addr = net.node(node).api_addr;
    let Ok(channel) = api_channel(addr, node, &p.api_ca, cert, key).await else {
        return false;
    };
    let mut client = NodeStatusClient::new(channel);
    let call = client.status(pb::StatusRequest {});
    matches!(timeout(PATIENCE, call).await, Ok(Ok(_)))
}

/// The hub alone, with `limits`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_holds_at_most_its_share_of_api_connections() {
    let hub = org(HUB);
    let net = TestNet::alone(
        HUB,
        Limits {
            connections_per_client: 2,
            ..fast_limits()
        },
    )
    .await;
    let p = &net.fed.nodes[&hub];
    let (cert, key) = (p.client_cert.clone(), p.client_key.clone());

    // Two connections of the service certificate are open and served.
    let held = [net.channel(&hub).await, net.channel(&hub).await];
    for channel in &held {
        NodeStatusClient::new(channel.clone())
            .status(pb::StatusRequest {})
            .await
            .expect("a connection within the share is served");
    }
    assert!(
        !status_served(&net, &hub, &cert, &key).await,
        "a third connection of the same certificate was served"
    );
    // Another certificate is another client, with a share of its own.
    let ca = intelmesh_node::pki::Ca::load(&p.api_ca, &p.dir.join("service-ca.key")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let issued = ca.issue_service(&hub, "firewall").unwrap();
    issued.write(other.path(), "firewall").unwrap();
    let (fw_cert, fw_key) = (
        other.path().join("firewall.pem"),
        other.path().join("firewall.key"),
    );
    assert!(status_served(&net, &hub, &fw_cert, &fw_key).await);

    // A connection closed gives its slot back.
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    while !status_served(&net, &hub, &cert, &key).await {
        assert!(
            Instant::now() < deadline,
            "the certificate's closed connections were never given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = intelmesh_node::metrics::render(net.node(&hub).state()).unwrap();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("intelmesh_connections_refused_total{listener=\"api\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 1), "{metrics}");
}

/// An HTTP/2 connection over TLS with the node's API that says its preface and then never
/// reads again, as a client that vanished (a crashed host, a NAT that forgot the flow) looks.
async fn silent_h2_connection(
    net: &TestNet,
    node: &OrgId,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = net.service_tls(node, net.node(node).api_addr).await;
    // The client preface, then an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_of_a_vanished_client_give_their_slots_back() {
    let hub = org(HUB);
    let net = TestNet::alone(
        HUB,
        Limits {
            connections_per_client: 2,
            ..fast_limits()
        },
    )
    .await;
    let p = &net.fed.nodes[&hub];
    let silent = [
        silent_h2_connection(&net, &hub).await,
        silent_h2_connection(&net, &hub).await,
    ];
    assert!(
        !status_served(&net, &hub, &p.client_cert, &p.client_key).await,
        "the silent connections do not hold the certificate's share"
    );
    // The node pings an idle connection every 10 s and closes one whose ping goes unanswered
    // for 20 s; the slots then serve the certificate again, while the silent streams are
    // still open on this side.
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while !status_served(&net, &hub, &p.client_cert, &p.client_key).await {
        assert!(
            Instant::now() < deadline,
            "connections that stopped answering kept their slots"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_no_admin_is_refused_admin_calls_before_its_request_is_read() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let hub = org("SG-IGCI");
    let channel = net.channel(&hub).await;
    // A megabyte of empty actions: over the admin size limit, and had it been read, decoded
    // to some fifty times its size before the handler looked at the caller.
    let junk: Vec<u8> = [0x0a, 0x00].repeat(512 << 10);
    for (path, request) in [
        ("/intelmesh.v1.Admin/Propose", junk),
        ("/intelmesh.v1.Admin/ListMembers", Vec::new()),
    ] {
        let e = intelmesh_tests::raw_call::raw_unary(&channel, path, request)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{path}: {e}");
        assert!(
            e.message()
                .contains("Admin needs a certificate of role admin; service SG-IGCI/"),
            "{path}: {e}"
        );
    }
    // The service certificate's other calls are served on the same connection.
    let mut status = NodeStatusClient::new(channel);
    let answer = status.status(pb::StatusRequest::default()).await.unwrap();
    assert_eq!(answer.into_inner().org_id, "SG-IGCI");
}

/// A federation connection carries its link's `Sync` and a few calls beside it: a peer's
/// streams that never end (health checks without a body) cannot pile up past the bound, and
/// a call past it is served only once one of them ends.
/// An HTTP/2 connection to `hub`'s federation listener with `member`'s node certificate, its
/// connection task not yet running.
async fn member_h2(
    net: &TestNet,
    member: &OrgId,
    hub: &OrgId,
) -> (
    h2::client::SendRequest<prost::bytes::Bytes>,
    h2::client::Connection<tokio_rustls::client::TlsStream<TcpStream>, prost::bytes::Bytes>,
) {
    let p = &net.fed.nodes[member];
    let tls = intelmesh_node::tls::client_for(
        hub,
        &net.fed.federation_ca,
        &p.dir.join("node.pem"),
        &p.dir.join("node.key"),
    )
    .expect("client TLS config");
    let tcp = TcpStream::connect(net.node(hub).federation_addr)
        .await
        .expect("connect");
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(tls.server_name.clone(), tcp)
        .await
        .expect("TLS handshake");
    h2::client::handshake(stream).await.expect("HTTP/2")
}

/// A `grpc.health.v1.Health/Check` stream opened on `send` (a handle of its own: one handle
/// refuses a second stream while its first still waits to be opened), its body not begun.
fn health_check(
    send: &h2::client::SendRequest<prost::bytes::Bytes>,
    addr: std::net::SocketAddr,
) -> (
    h2::client::ResponseFuture,
    h2::SendStream<prost::bytes::Bytes>,
) {
    let request = http::Request::post(format!("https://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    send.clone()
        .send_request(request, false)
        .expect("stream asked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_federation_connection_holds_a_bounded_number_of_streams() {
    let net = TestNet::star(HUB, &["AU-AFP"]).await;
    let (hub, au) = (org(HUB), org("AU-AFP"));
    let (send, mut connection) = member_h2(&net, &au, &hub).await;
    // The node's settings come with its first frames; until they are read, h2 would send
    // streams past the bound, which the node refuses.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while connection.max_concurrent_send_streams() > 1000 && std::time::Instant::now() < deadline {
        tokio::select! {
            end = &mut connection => panic!("connection ended: {end:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    }
    assert_eq!(
        connection.max_concurrent_send_streams(),
        8,
        "the node's bound on one connection's streams (none sent: usize::MAX)"
    );
    tokio::spawn(connection);
    let send = send.ready().await.expect("connection up");
    // Each stream is asked on a handle of its own (`health_check`): one handle refuses a
    // second stream while its first still waits for the connection task to open it (h2's
    // `Rejected`), which is a race with that task, not the node's bound.
    let check = |end: bool| {
        let (answer, mut body) = health_check(&send, net.node(&hub).federation_addr);
        if end {
            // An empty HealthCheckRequest, gRPC-framed.
            let empty = prost::bytes::Bytes::from_static(&[0, 0, 0, 0, 0]);
            body.send_data(empty, true).expect("body sent");
        }
        (answer, body)
    };
    let mut unfinished: Vec<_> = (0..8).map(|_| check(false)).collect();
    let (ninth, _body) = check(true);
    let mut ninth = Box::pin(ninth);
    let wait = std::time::Duration::from_secs(1);
    let early = tokio::time::timeout(wait, &mut ninth).await;
    assert!(
        early.is_err(),
        "a ninth call was served beside eight that never end: {early:?}"
    );
    // One of the eight ends: the ninth is served.
    let (_, mut body) = unfinished.remove(0);
    body.send_data(prost::bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("body sent");
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), ninth)
        .await
        .expect("served once a stream ended")
        .expect("an answer");
    assert_eq!(answer.status(), http::StatusCode::OK);
    // Served, not refused: a gRPC refusal is an HTTP 200 too, with its status in the headers
    // (trailers-only), and an answer has none there.
    let status = answer.headers().get("grpc-status");
    assert!(
        status.is_none_or(|s| s == "0"),
        "the ninth call was refused: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_holds_only_its_share_of_handshakes() {
    let hub = org(HUB);
    let net = TestNet::alone(
        HUB,
        Limits {
            handshakes_per_address: 2,
            ..fast_limits()
        },
    )
    .await;
    let api = net.node(&hub).api_addr;
    // Two connections that never say a word hold this address's two handshakes.
    let silent = [
        TcpStream::connect(api).await.unwrap(),
        TcpStream::connect(api).await.unwrap(),
    ];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A third is closed at once, not left waiting for the handshake deadline.
    let mut third = TcpStream::connect(api).await.unwrap();
    let mut byte = [0u8; 1];
    let read = timeout(std::time::Duration::from_secs(5), third.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a connection past the address's handshakes is closed at once: {read:?}"
    );
    // Once they go, the address is served again.
    drop(silent);
    let p = &net.fed.nodes[&hub];
    let deadline = Instant::now() + PATIENCE;
    while !status_served(&net, &hub, &p.client_cert, &p.client_key).await {
        assert!(
            Instant::now() < deadline,
            "closed connections kept their handshake slots"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_holds_a_few_federation_calls_in_flight_and_probes_stay_small() {
    let net = TestNet::star(HUB, &[AU]).await;
    let (hub, au) = (org(HUB), org(AU));
    let addr = net.node(&hub).federation_addr;
    let connect = || async {
        let (send, connection) = member_h2(&net, &au, &hub).await;
        tokio::spawn(connection);
        send.ready().await.expect("connection up")
    };
    let health = |send: &h2::client::SendRequest<prost::bytes::Bytes>, prefix: [u8; 5]| {
        let (answer, mut body) = health_check(send, addr);
        // A gRPC length prefix, then nothing: the body never ends.
        body.send_data(prost::bytes::Bytes::copy_from_slice(&prefix), false)
            .expect("prefix sent");
        (answer, body)
    };
    // A health request claiming 1 MiB is refused for its size, not held while it trickles in.
    let send = connect().await;
    let (answer, _body) = health(&send, [0, 0, 0x10, 0, 0]);
    let answer = timeout(PATIENCE, answer)
        .await
        .expect("answered")
        .expect("an answer");
    let header = |name: &str| {
        let value = answer.headers().get(name).and_then(|v| v.to_str().ok());
        value.map(str::to_owned)
    };
    assert_eq!(
        header("grpc-status").as_deref(),
        Some("11"),
        "OUT_OF_RANGE: {answer:?}"
    );
    assert!(
        header("grpc-message").is_some_and(|m| m.contains("too%20large")),
        "{answer:?}"
    );
    // Calls that never end hold the member's share, over several connections.
    let (mut held, mut connections) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let send = connect().await;
        held.push(health(&send, [0, 0, 0, 0, 8]));
        held.push(health(&send, [0, 0, 0, 0, 8]));
        connections.push(send);
    }
    // Room for the node to take every held call in, however busy the machine.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let send = connect().await;
    let (answer, _body) = health(&send, [0, 0, 0, 0, 8]);
    let answer = timeout(PATIENCE, answer)
        .await
        .expect("answered")
        .expect("an answer");
    let status = answer
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        status,
        Some("8"),
        "a ninth call in flight is refused: {answer:?}"
    );
    let message = answer
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok());
    assert!(
        message.is_some_and(|m| m.contains("calls%20in%20flight%20(a%20member's")),
        "{message:?}"
    );
    // The link itself is unaffected: the member's node still exchanges with the hub.
    let at = net.publish_domains(&au, "calls", 1).await;
    net.wait_for(&au, at[0], PATIENCE)
        .await
        .expect("the link carries on");
}
