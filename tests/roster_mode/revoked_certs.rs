//! Roster mode: a certificate the roster revoked is refused on every port that could take it (federation, API, admin) and by the agencies that dial a revoked hub.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_certificate_is_refused_on_federation_and_api_ports() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    net.wait_status(&hub, PATIENCE, |s| {
        peer(s, &sg).is_some_and(|p| p.connected)
    })
    .await
    .unwrap();
    // Before: the hub's API answers its service client.
    let mut client = net.client(&hub).await;
    let req = pb::GetRequest {
        r#type: pb::IndicatorType::Domain as i32,
        value: "x.example".into(),
    };
    client.get(req.clone()).await.expect("API answers");
    // A Watch opened before the revocation.
    let mut watch = client
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch opens")
        .into_inner();

    // Health on the hub's federation listener, with SG's node certificate, and on its API.
    let health_at_federation = || async {
        let target = Target {
            addr: net.node(&hub).federation_addr,
            org: &hub,
            server_ca: &net.fed.federation_ca,
        };
        let channel = connect(&target, &Credentials::of_node(&net.fed.nodes[&sg]))
            .await
            .expect("handshake");
        health_check(channel).await
    };
    let health_at_api = || async { health_check(net.channel(&hub).await).await };
    assert_eq!(health_at_federation().await.map_err(|s| s.code()), Ok(()));
    assert_eq!(health_at_api().await.map_err(|s| s.code()), Ok(()));

    let node_serial = cert_serial(&net.fed.nodes[&sg].dir.join("node.pem"));
    let api_serial = cert_serial(&net.fed.nodes[&hub].client_cert);
    let revoked = |serial: &str, org: &str| pb::RevokedCert {
        serial: serial.to_string(),
        org: org.to_string(),
        reason: "test".into(),
        revoked_at_unix_ms: now_unix_ms(),
    };
    net.publish(|d| {
        d.revoked.push(revoked(&node_serial, "SG-IGCI"));
        d.revoked.push(revoked(&api_serial, "HUB"));
    })
    .await;
    let needle = format!("certificate {node_serial} of SG-IGCI is revoked in roster version 3");
    net.wait_status(&hub, PATIENCE, |s| refused_for(s, &sg, &needle))
        .await
        .unwrap();
    let err = client.get(req).await.expect_err("revoked API caller");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let revoked_here = format!("certificate {api_serial} is revoked in roster version 3");
    assert!(err.message().contains(&revoked_here), "{err}");
    // Health and reflection check no caller themselves: the listeners refuse them too.
    let err = health_at_federation()
        .await
        .expect_err("revoked node certificate");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let revoked_node = format!("certificate {node_serial} is revoked in roster version 3");
    assert!(err.message().contains(&revoked_node), "{err}");
    let err = health_at_api().await.expect_err("revoked API certificate");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains(&revoked_here), "{err}");
    // The open Watch is ended by the version, not left feeding the revoked certificate.
    let err = watch_end(&mut watch).await;
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains(&revoked_here), "{err}");
    // Its calls are recorded as refused, naming none of the values it sent.
    let err = client
        .lookup(pb::LookupRequest {
            values: vec!["1.2.3.4".into(), "evil.example".into()],
        })
        .await
        .expect_err("revoked API caller");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    for o in [hub.clone(), sg] {
        net.stop(&o).await;
    }
    let trail = intelmesh_node::audit::dir_of(&net.fed.nodes[&hub].config.data_dir);
    let mut lookups = Vec::new();
    intelmesh_node::audit::trail::read(&trail, |r| {
        if r.method == "Indicators/Lookup" {
            lookups.push(r.clone());
        }
    })
    .expect("the trail checks out");
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    let r = &lookups[0];
    assert_eq!((r.values, r.digests.len(), r.code), (0, 0, 7), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_admin_certificate_is_refused_by_the_admin_service() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let dir = net.fed.nodes[&hub].dir.clone();
    let ca =
        intelmesh_node::pki::Ca::load(&dir.join("service-ca.pem"), &dir.join("service-ca.key"))
            .expect("hub service CA");
    let certs = tempfile::tempdir().unwrap();
    ca.issue_admin(&hub, "departed", intelmesh_node::pki::Validity::default())
        .unwrap()
        .write(certs.path(), "departed")
        .unwrap();
    let (cert, key) = (
        certs.path().join("departed.pem"),
        certs.path().join("departed.key"),
    );
    let admin = || async {
        let channel = intelmesh_node::client::api_channel(
            net.node(&hub).api_addr,
            &hub,
            &net.fed.nodes[&hub].api_ca,
            &cert,
            &key,
        )
        .await
        .expect("API channel");
        pb::admin_client::AdminClient::new(channel)
    };
    admin()
        .await
        .federation_status(pb::FederationStatusRequest::default())
        .await
        .expect("Admin answers its operator");

    let serial = cert_serial(&cert);
    net.publish(|d| {
        d.revoked.push(pb::RevokedCert {
            serial: serial.clone(),
            org: hub.to_string(),
            reason: "operator left".into(),
            revoked_at_unix_ms: now_unix_ms(),
        })
    })
    .await;
    net.wait_status(&hub, PATIENCE, |s| s.roster_version >= 3)
        .await
        .unwrap();
    let err = admin()
        .await
        .federation_status(pb::FederationStatusRequest::default())
        .await
        .expect_err("a revoked operator");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(
        err.message()
            .contains(&format!("certificate {serial} is revoked")),
        "{err}"
    );
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

/// The dialling side holds the certificate it reached against the roster too: once the hub's
/// own certificate is revoked (stolen, say), an agency cuts its link and dials into it no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_hub_certificate_is_refused_by_the_agencies_that_dial_it() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    net.wait_status(&sg, PATIENCE, |s| {
        peer(s, &hub).is_some_and(|p| p.connected)
    })
    .await
    .unwrap();
    let hub_serial = cert_serial(&net.fed.nodes[&hub].dir.join("node.pem"));
    net.publish(|d| {
        d.revoked.push(pb::RevokedCert {
            serial: hub_serial.clone(),
            org: "HUB".into(),
            reason: "test".into(),
            revoked_at_unix_ms: now_unix_ms(),
        });
    })
    .await;
    let needle = format!("certificate {hub_serial} of HUB is revoked in roster version 3");
    net.wait_status(&sg, PATIENCE, |s| {
        s.roster_version == 3 && refused_for(s, &hub, &needle)
    })
    .await
    .unwrap();
    // It stays refused: every redial reaches the same certificate.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let s = net.status(&sg);
    assert!(refused_for(&s, &hub, &needle), "{:?}", peer(&s, &hub));
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}
