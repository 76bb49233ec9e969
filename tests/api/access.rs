//! Who may call the API and with what: node certificates may not, a read-only service may not publish, and a request of many empty elements is refused before it is decoded.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_certificates_cannot_use_the_api() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let p = &net.fed.nodes[&au];
    let addr = net.node(&au).api_addr;

    // The federation certificate is from another CA: the API refuses it in the handshake.
    let fed_cert = intelmesh_node::client::api_channel(
        addr,
        &au,
        &p.api_ca,
        &p.dir.join("node.pem"),
        &p.dir.join("node.key"),
    )
    .await;
    // Depending on who notices first, the connect or the first call fails; either way it is
    // the transport (TLS alert, or the connection closed on it), never an answer of the API.
    let transport_failure = match fed_cert {
        Err(e) => e.downcast_ref::<tonic::transport::Error>().is_some(),
        Ok(ch) => {
            let status = IndicatorsClient::new(ch)
                .lookup(pb::LookupRequest::default())
                .await
                .expect_err("a federation certificate must not reach the API");
            std::error::Error::source(&status)
                .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some())
        }
    };
    assert!(transport_failure);

    // A node identity signed by the service CA gets through TLS but not the service.
    let ch = intelmesh_node::client::api_channel(
        addr,
        &au,
        &p.api_ca,
        &p.dir.join("api.pem"),
        &p.dir.join("api.key"),
    )
    .await
    .expect("the service CA signed this one");
    let e = IndicatorsClient::new(ch)
        .lookup(pb::LookupRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains(
            "needs a certificate of role service; the node of AU-AFP presented one of role node"
        ),
        "{}",
        e.message()
    );

    // A service certificate of another org may read (as that org) but never publish as AU.
    let ca = intelmesh_node::pki::Ca::load(&p.api_ca, &p.dir.join("service-ca.key")).unwrap();
    let other = tempfile::tempdir().unwrap();
    ca.issue_service(&org("BR-PF"), "soc")
        .unwrap()
        .write(other.path(), "soc")
        .unwrap();
    let (cert, key) = (other.path().join("soc.pem"), other.path().join("soc.key"));
    let ch = intelmesh_node::client::api_channel(addr, &au, &p.api_ca, &cert, &key)
        .await
        .unwrap();
    // Its status leaves out the state digest, which sums states it may not read.
    let s = intelmesh_proto::v1::node_status_client::NodeStatusClient::new(ch.clone())
        .status(pb::StatusRequest::default())
        .await
        .expect("status")
        .into_inner();
    assert_eq!((s.org_id.as_str(), s.state_digest.as_str()), ("AU-AFP", ""));
    let mut c = IndicatorsClient::new(ch);
    assert!(c.lookup(pb::LookupRequest::default()).await.is_ok());
    let e = c
        .submit(pb::SubmitRequest {
            submissions: vec![upsert(Ty::Domain, "a.example", Tlp::Green, &[])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(
        e.message().contains("BR-PF cannot publish as AU-AFP"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_of_many_empty_elements_is_refused_before_it_is_decoded() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let mut c = net.client(&au).await;
    // Two bytes each on the wire, a few hundred decoded: refused from the wire, by estimate.
    let e = c
        .submit(pb::SubmitRequest {
            submissions: vec![pb::Submission::default(); 500_000],
            ..Default::default()
        })
        .await
        .unwrap_err();
    check_status(&e, Code::InvalidArgument, "decode to more than").unwrap();
    let e = c
        .lookup(pb::LookupRequest {
            values: vec![String::new(); 3_000_000],
        })
        .await
        .unwrap_err();
    check_status(&e, Code::InvalidArgument, "decode to more than").unwrap();
    // The connection and the node serve on.
    let good = upsert(Ty::Domain, "a.example", Tlp::Green, &[]);
    assert_eq!(submit(&mut c, vec![good]).await[0].seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_service_reads_and_may_not_publish() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    // The provisioned service publishes; a firewall's certificate is named read-only.
    submit(
        &mut net.client(&au).await,
        vec![upsert(Ty::Domain, "blocked.example", Tlp::Green, &[])],
    )
    .await;
    net.stop(&au).await;
    if let Some(p) = net.fed.nodes.get_mut(&au) {
        p.config.read_only_services = vec!["firewall".into()];
    }
    net.start(&au).await;
    let p = &net.fed.nodes[&au];
    let ca = intelmesh_node::pki::Ca::load(&p.api_ca, &p.dir.join("service-ca.key")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    ca.issue_service(&au, "firewall")
        .unwrap()
        .write(dir.path(), "firewall")
        .unwrap();
    let channel = intelmesh_node::client::api_channel(
        net.node(&au).api_addr,
        &au,
        &p.api_ca,
        &dir.path().join("firewall.pem"),
        &dir.path().join("firewall.key"),
    )
    .await
    .unwrap();
    let mut firewall = IndicatorsClient::new(channel);
    let looked = firewall
        .lookup(pb::LookupRequest {
            values: vec!["blocked.example".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(looked.results[0].verdict(), Verdict::Malicious);
    let before = net.vector(&au);
    let e = firewall
        .submit(pb::SubmitRequest {
            submissions: vec![upsert(Ty::Domain, "8.8.8.8.example", Tlp::Green, &[])],
            ..Default::default()
        })
        .await
        .unwrap_err();
    check_status(&e, Code::PermissionDenied, "may read, not publish").unwrap();
    let e = firewall
        .report_sighting(pb::ReportSightingRequest {
            r#type: Ty::Domain as i32,
            value: "blocked.example".into(),
            count: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(net.vector(&au), before, "nothing was published");
    // The node's other services still publish.
    let mut c = net.client(&au).await;
    submit(
        &mut c,
        vec![upsert(Ty::Domain, "next.example", Tlp::Green, &[])],
    )
    .await;
}
