//! A client certificate the node's own config revokes (`revoked_serials`): refused on every
//! call, whatever mode the node runs in, while the org's other certificates are served.

use intelmesh_node::admission::PeerCert;
use intelmesh_node::pki::Validity;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use intelmesh_tests::api::{client_with, service_cert};
use intelmesh_tests::net::{org, TestNet};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_the_node_revokes_is_refused_on_every_call() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let stolen = {
        let p = &net.fed.nodes[&au];
        let der = CertificateDer::from_pem_file(&p.client_cert).expect("the client's PEM");
        PeerCert::of_leaf(der.as_ref()).serial.expect("a serial")
    };
    // Written as openssl prints it: upper case, in pairs with colons.
    let printed: Vec<String> = stolen
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    net.stop(&au).await;
    if let Some(p) = net.fed.nodes.get_mut(&au) {
        p.config.revoked_serials = vec![printed.join(":")];
    }
    net.start(&au).await;

    let channel = net.channel(&au).await;
    let e = NodeStatusClient::new(channel.clone())
        .status(pb::StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(e.message().contains("revoked_serials"), "{}", e.message());
    let e = IndicatorsClient::new(channel)
        .lookup(pb::LookupRequest {
            values: vec!["evil.example".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");

    // Another certificate of the org is served.
    let p = &net.fed.nodes[&au];
    let certs = service_cert(p, &au, "soc", Validity::default());
    let mut soc = client_with(net.node(&au), p, certs.path(), "soc").await;
    let status = soc
        .lookup(pb::LookupRequest {
            values: vec!["evil.example".into()],
        })
        .await
        .expect("another certificate is served");
    assert_eq!(status.into_inner().results.len(), 1);
}
