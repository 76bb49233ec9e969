//! What a compromise report does to the credentials a thief took with a member's key, on real
//! nodes over mutual TLS: every certificate naming the member that was issued before the
//! report is refused (recorded in the roster or not) on the federation and API listeners, its
//! link is cut, and a certificate issued after the report is admitted.

use std::time::Duration;

use intelmesh_core::now_unix_ms;
use intelmesh_node::pki::Validity;
use intelmesh_proto::v1 as pb;
use intelmesh_tests::api::{client_with, service_cert};
use intelmesh_tests::net::org;
use intelmesh_tests::pki::{issue_for_period, Leaf};
use intelmesh_tests::raw_peer::{connect, Credentials, Target};
use intelmesh_tests::roster_net::{peer, RosterNet};

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificates_issued_before_a_compromise_report_are_refused_and_later_ones_admitted() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    for o in [&sg, &au] {
        net.wait_status(&hub, PATIENCE, |s| peer(s, o).is_some_and(|p| p.connected))
            .await
            .unwrap();
    }
    // A service of SG certified by the hub's service CA reads as SG.
    let service = service_cert(&net.fed.nodes[&hub], &sg, "soc", Validity::default());
    let mut client = client_with(net.node(&hub), &net.fed.nodes[&hub], service.path(), "soc").await;
    let get = pb::GetRequest {
        r#type: pb::IndicatorType::Domain as i32,
        value: "x.example".into(),
    };
    client.get(get.clone()).await.expect("SG's service reads");

    // The cut-off a report a minute ago set (none of SG's keys ended: the certificates alone
    // are judged). Nobody recorded SG's node certificate in the roster.
    let from = now_unix_ms() - 60_000;
    assert!(net
        .roster(&hub)
        .member(&sg)
        .unwrap()
        .certificates
        .is_empty());
    let version = net
        .publish(|d| {
            let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
            m.certificates_from_unix_ms = from;
        })
        .await
        .version();
    let needle = format!(
        "SG-IGCI's certificate was issued before its key was reported compromised (roster version {version})"
    );
    net.wait_status(&hub, PATIENCE, |s| {
        peer(s, &sg).is_some_and(|p| !p.connected && p.last_error.contains(&needle))
    })
    .await
    .unwrap();
    let err = client
        .get(get)
        .await
        .expect_err("a service certified before the report");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(
        err.message()
            .contains("SG-IGCI's key was reported compromised after this certificate was issued"),
        "{err}"
    );

    // Node certificates of SG from the federation CA: one issued before the report is refused
    // at the handshake's stream, one issued after it is admitted.
    let target = Target {
        addr: net.node(&hub).federation_addr,
        org: &hub,
        server_ca: &net.fed.federation_ca,
    };
    let ca_key = net.fed.dir.join("federation-ca.key");
    let node_cert = |not_before_ms: i64| {
        issue_for_period(
            &net.fed.federation_ca,
            &ca_key,
            Leaf::Node(&sg),
            not_before_ms / 1000,
            now_unix_ms() / 1000 + 3_600,
        )
    };
    let open = |issued: intelmesh_node::pki::Issued| {
        let target = &target;
        async move {
            let channel = connect(target, &Credentials::from_issued(&issued))
                .await
                .expect("handshake");
            intelmesh_tests::raw_peer::RawPeer::open_on(channel).await
        }
    };
    let refused = open(node_cert(from - 1_000))
        .await
        .err()
        .expect("a certificate issued before the report");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains(&needle), "{refused:?}");
    assert!(
        open(node_cert(from + 1_000)).await.is_ok(),
        "a certificate issued after the report"
    );
    // Other members keep their links.
    assert!(peer(&net.status(&hub), &au).is_some_and(|p| p.connected));
    for o in [hub, sg, au] {
        net.stop(&o).await;
    }
}
