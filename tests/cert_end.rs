//! Certificates that end while their connections are open: only handshakes check a
//! certificate's period, so a federation link, or an API connection, opened before the end must
//! be cut at it, not kept for as long as the peer keeps it busy.

use std::time::{Duration, Instant};

use intelmesh_node::pki::{Ca, Validity};
use intelmesh_node::provision::{loopback_specs, star_links};
use intelmesh_tests::api::{client_with, service_cert, watch_end};
use intelmesh_tests::net::{fast_limits, org, TestNet};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_federation_link_is_cut_when_the_peers_certificate_ends() {
    let specs = loopback_specs("SG-IGCI", &["AU-AFP"]).expect("ports");
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &fast_limits());
    let (hub, au) = (org("SG-IGCI"), org("AU-AFP"));
    // AU's federation certificate ends a few seconds after it is issued.
    let ca = Ca::load(
        &net.fed.dir.join("federation-ca.pem"),
        &net.fed.dir.join("federation-ca.key"),
    )
    .expect("the federation CA");
    let short = net.fed.dir.join("au-short");
    std::fs::create_dir(&short).unwrap();
    // Before the certificate is made: its end is a whole second, at least 5 s after this.
    let issued = Instant::now();
    ca.issue_node_for(&au, Validity::seconds(6))
        .unwrap()
        .write(&short, "node")
        .unwrap();
    {
        let cfg = &mut net.fed.nodes.get_mut(&au).unwrap().config;
        cfg.federation.cert = short.join("node.pem");
        cfg.federation.key = short.join("node.key");
    }
    net.start(&hub).await;
    net.start(&au).await;
    let link = |net: &TestNet| {
        net.node(&hub)
            .state()
            .peers
            .snapshot()
            .into_iter()
            .find(|(o, _)| *o == au)
            .map(|(_, p)| p)
            .expect("AU is a peer of the hub")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !link(&net).connected {
        assert!(Instant::now() < deadline, "AU links up: {:?}", link(&net));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(issued.elapsed() < Duration::from_secs(5), "linked in time");
    // Cut at the end, and not before: the hub says why.
    loop {
        let p = link(&net);
        if !p.connected {
            assert!(
                issued.elapsed() >= Duration::from_secs(5),
                "cut before the end: {p:?}"
            );
            assert!(
                p.last_error.contains("the peer's certificate ended at"),
                "{p:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "still linked: {p:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for o in [au, hub] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_connection_and_its_watch_end_with_the_callers_certificate() {
    use intelmesh_proto::v1 as pb;
    let specs = loopback_specs("SG-IGCI", &[]).expect("ports");
    let mut net = TestNet::provisioned(&specs, &[], &fast_limits());
    let sg = org("SG-IGCI");
    net.start(&sg).await;
    let issued = Instant::now();
    let certs = service_cert(&net.fed.nodes[&sg], &sg, "soc", Validity::seconds(6));
    let mut client = client_with(net.node(&sg), &net.fed.nodes[&sg], certs.path(), "soc").await;
    let get = pb::GetRequest {
        r#type: pb::IndicatorType::Domain as i32,
        value: "x.example".into(),
    };
    client.get(get.clone()).await.expect("answered while valid");
    let mut watch = client
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch opens")
        .into_inner();
    let err = watch_end(&mut watch).await;
    assert!(issued.elapsed() >= Duration::from_secs(5), "ended early");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("the certificate ended at"), "{err}");
    // The same connection, still open: its calls are refused now.
    let err = client.get(get).await.expect_err("an ended certificate");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains("the certificate ended at"), "{err}");
    net.stop(&sg).await;
}
