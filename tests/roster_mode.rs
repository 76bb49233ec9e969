//! Roster mode on real nodes over mutual TLS: membership, suspension, revocation, key ranges,
//! checkpoints and refused versions, all driven by roster versions published on the hub while
//! every node runs (no restart, no file change at other nodes).

use std::time::Duration;

use intelmesh_core::{now_unix_ms, Signer};
use intelmesh_node::pki::Validity;
use intelmesh_node::state::NodeError;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::model::new_member;
use intelmesh_store::Store;
use intelmesh_tests::api::{client_with, service_cert, watch_end};
use intelmesh_tests::net::{domain_upsert, green, org};
use intelmesh_tests::raw_peer::{connect, Credentials, Target};
use intelmesh_tests::roster_net::{cert_serial, peer, signing_key, RosterNet, FEDERATION};

const PATIENCE: Duration = Duration::from_secs(20);

/// A link cut, or refused, shows why in the peer's last error.
fn refused_for(s: &pb::StatusResponse, who: &intelmesh_core::OrgId, needle: &str) -> bool {
    peer(s, who).is_some_and(|p| !p.connected && p.last_error.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_join_by_roster_version_and_suspension_cuts_them_off() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::new("HUB", &["SG-IGCI", "AU-AFP"]).await;
    net.start(&sg).await;

    // SG is not in the genesis: the hub refuses its stream, and SG cannot publish.
    net.wait_status(&sg, PATIENCE, |s| {
        refused_for(s, &hub, "SG-IGCI is not a member of roster version 1")
    })
    .await
    .unwrap();
    let err = net
        .node(&sg)
        .state()
        .publish(vec![(green(), domain_upsert("early.sg.example"))])
        .await
        .expect_err("not admitted yet");
    assert!(
        matches!(err, NodeError::NotAdmitted { version: 1, .. }),
        "{err}"
    );

    // Version 2 admits SG: it links, follows the roster and its entries reach the hub.
    net.admit(&sg).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .unwrap();
    let seqs = net
        .node(&sg)
        .state()
        .publish(vec![(green(), domain_upsert("one.sg.example"))])
        .await
        .expect("admitted now");
    net.wait_holds(&hub, &sg, *seqs.last().unwrap())
        .await
        .unwrap();

    // AU joins later, with no change at SG or the hub: SG receives AU's entries via the hub.
    net.start(&au).await;
    net.admit(&au).await;
    net.wait_status(&au, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    let au_seqs = net
        .node(&au)
        .state()
        .publish(vec![(green(), domain_upsert("one.au.example"))])
        .await
        .expect("AU admitted");
    net.wait_holds(&sg, &au, *au_seqs.last().unwrap())
        .await
        .unwrap();
    // Every member's current encryption key is the one in its provisioned key file.
    for o in [&hub, &sg, &au] {
        let file = net.fed.nodes[o]
            .config
            .encryption_key
            .clone()
            .expect("provisioned");
        let public = intelmesh_node::encryption_keys::current_public(&file).unwrap();
        assert_eq!(net.roster(&sg).encryption_key(o), Some(public), "{o}");
    }
    // The hub shows which version SG runs (its hello, then its checkpoints).
    net.wait_status(&hub, PATIENCE, |s| {
        peer(s, &sg).is_some_and(|p| p.roster_version == 3)
    })
    .await
    .unwrap();

    // Suspension (version 4): the hub cuts SG's live link at once, and refuses its new streams.
    net.suspend(&sg).await;
    let needle = "SG-IGCI is suspended in roster version 4";
    net.wait_status(&hub, PATIENCE, |s| refused_for(s, &sg, needle))
        .await
        .unwrap();
    net.wait_status(&sg, PATIENCE, |s| refused_for(s, &hub, needle))
        .await
        .unwrap();
    // It stays out: a while later its redials are still refused.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let s = net.status(&hub);
    assert!(refused_for(&s, &sg, needle), "{s:#?}");

    // Reinstatement (version 5) lets it back.
    net.reinstate(&sg).await;
    net.wait_status(&hub, PATIENCE, |s| {
        peer(s, &sg).is_some_and(|p| p.connected)
    })
    .await
    .unwrap();
    for o in [hub, sg, au] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_whose_key_the_roster_ended_signs_no_checkpoints_until_reinstated() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let seqs = net.publish_domains(&sg, "before", 1).await;
    net.wait_holds(&hub, &sg, seqs[0]).await.unwrap();

    // Suspended (version 3): its key ends at the head the hub holds.
    let cut = net.node(&hub).state().store.head(&sg).unwrap().unwrap().seq;
    net.suspend(&sg).await;
    net.deliver_version(&sg, 3).await;
    let err = net
        .node(&sg)
        .state()
        .publish(vec![(green(), domain_upsert("late.sg.example"))])
        .await
        .expect_err("the key is ended");
    assert!(
        matches!(
            err,
            NodeError::OwnKeyEnded { last_seq, version: 3, ended_by: "suspension", .. }
                if last_seq == cut
        ),
        "{err}"
    );
    // Its periodic checkpoints (every second) stop: its own log stays where it is.
    let own_head = || {
        net.node(&sg)
            .state()
            .store
            .head(&sg)
            .unwrap()
            .map(|h| h.seq)
    };
    let stopped_at = own_head();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(own_head(), stopped_at, "no entry signed past the key's end");

    // Reinstated (version 4, the key reopened): checkpoints resume and reach the hub.
    net.reinstate(&sg).await;
    net.deliver_version(&sg, 4).await;
    net.wait_status(&sg, PATIENCE, |s| {
        s.vector.get("SG-IGCI").copied() > stopped_at
    })
    .await
    .unwrap();
    let resumed = own_head().unwrap();
    net.wait_holds(&hub, &sg, resumed).await.unwrap();
    // A restart of the hub keeps them: version 3's end was reopened by version 4.
    net.stop(&hub).await;
    net.start(&hub).await;
    let kept = net
        .node(&hub)
        .state()
        .store
        .head(&sg)
        .unwrap()
        .map(|h| h.seq);
    assert!(kept >= Some(resumed), "{kept:?} < {resumed}");
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keys_verify_by_seq_and_a_compromise_cut_off_refuses_later_entries() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let old_seqs = net.publish_domains(&sg, "old", 3).await;
    let last_old = *old_seqs.last().unwrap();
    net.wait_holds(&hub, &sg, last_old).await.unwrap();

    // Rotation: the old key ends at SG's head, the new one starts after it; SG restarts with
    // the new key.
    net.stop(&sg).await;
    let dir = net.fed.nodes[&sg].dir.clone();
    let old_key = signing_key(&dir);
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    std::fs::remove_file(dir.join("signing.key")).unwrap();
    intelmesh_node::keys::write_private(&dir.join("signing.key"), &new_key).unwrap();
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(last_old);
        m.signing_keys[0].ended_by = pb::KeyEnd::Rotation as i32;
        m.signing_keys.push(pb::MemberKey {
            public_key: new_key.verifying_key().to_bytes().to_vec(),
            first_seq: last_old + 1,
            last_seq: None,
            ended_by: 0,
        });
    })
    .await;
    net.start(&sg).await;
    // It signs with the new key once the version that lists it reaches it.
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    let new_seqs = net.publish_domains(&sg, "new", 2).await;
    net.wait_holds(&hub, &sg, *new_seqs.last().unwrap())
        .await
        .unwrap();
    let keys = net.node(&hub).state().keys();
    let check = intelmesh_store::verify_store(&net.node(&hub).state().store, Some(keys.as_ref()))
        .expect("verify-store runs");
    assert!(
        check.is_ok(),
        "old entries verify with the old key, new with the new: {check:?}"
    );

    // Compromise of the new key reported at its first seq: later entries signed with it are
    // refused (the thief's), earlier ones stay.
    let cut_off = last_old + 1;
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[1].last_seq = Some(cut_off);
        m.signing_keys[1].ended_by = pb::KeyEnd::Compromise as i32;
    })
    .await;
    let thief = Signer::new(sg.clone(), new_key);
    let head = net.node(&hub).state().store.head(&sg).unwrap();
    let (stolen, _) = thief.sign_next(
        head,
        now_unix_ms(),
        &green(),
        &domain_upsert("thief.example"),
    );
    let report = net.node(&hub).state().ingest(vec![stolen]).await.unwrap();
    assert_eq!(report.appended, 0);
    assert!(
        report.refused.iter().any(|e| e.is_origin_fault()),
        "past the cut-off: {:?}",
        report.refused
    );
    // What the new key signed past the cut-off, held before the report, left the log with it.
    let store = &net.node(&hub).state().store;
    assert!(*new_seqs.last().unwrap() > cut_off);
    assert_eq!(store.head(&sg).unwrap().unwrap().seq, cut_off);
    assert_eq!(store.range(&sg, 1, 100).unwrap().len() as u64, cut_off);
    drop(old_key);
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compromise_report_removes_entries_already_held_past_the_cut_off() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    // Five entries in a row (the rest of SG's log is checkpoints), held by the hub and AU:
    // what a thief with SG's key would publish before the report.
    let seqs = net.publish_domains(&sg, "cut", 5).await;
    assert_eq!(seqs, (seqs[0]..seqs[0] + 5).collect::<Vec<_>>());
    for o in [&hub, &au] {
        net.wait_holds(o, &sg, seqs[4]).await.unwrap();
        for i in 0..5 {
            assert!(net.finds_domain(o, &sg, "cut", i).await, "{o} has item {i}");
        }
    }
    let cut_off = seqs[1];
    let removed = net
        .node(&hub)
        .state()
        .store
        .range(&sg, cut_off + 1, 1000)
        .unwrap();
    assert!(removed.len() >= 3);

    assert!(
        net.roster(&au).encryption_key(&sg).is_some(),
        "SG is sealed to"
    );
    // The operators report SG's key compromised: SG vouches for its log up to the second.
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(cut_off);
        m.signing_keys[0].ended_by = pb::KeyEnd::Compromise as i32;
    })
    .await;
    // SG holds no open key now: its link is cut as the version is followed, which may be before
    // the version reaches it (its operators see why in their status), so it is handed over.
    net.deliver_version(&sg, 3).await;
    for o in [&hub, &au, &sg] {
        net.wait_status(o, PATIENCE, |s| {
            s.roster_version == 3 && s.vector.get("SG-IGCI") == Some(&cut_off)
        })
        .await
        .unwrap_or_else(|e| panic!("{o} cuts SG's log back to #{cut_off}: {e}"));
    }
    for o in [&hub, &au] {
        net.assert_cut_at(o, &sg, cut_off, ("cut", 2, 5)).await;
    }

    // A peer that has not seen the report yet sends the removed entries again: refused as
    // signed past the cut-off (the origin's fault, not the relay's), nothing comes back.
    let report = net.node(&au).state().ingest(removed.clone()).await.unwrap();
    assert_eq!(report.appended + report.held + report.duplicates, 0);
    assert_eq!(report.refused.len(), removed.len());
    assert!(
        report.refused.iter().all(|e| e.is_origin_fault()),
        "{:?}",
        report.refused
    );
    assert_eq!(net.node(&au).state().vector().unwrap()[&sg], cut_off);
    // SG cannot sign past the cut-off with that key.
    let err = net
        .node(&sg)
        .state()
        .publish(vec![(green(), domain_upsert("after.example"))])
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::OwnKeyEnded { .. }), "{err}");

    // AU's link stays up (a refusal for an ended key never cuts one) and quiet; SG's is
    // refused: whoever stole its key may hold its certificate too.
    let compromised = "SG-IGCI's signing key is reported compromised in roster version 3";
    net.wait_status(&hub, PATIENCE, |s| refused_for(s, &sg, compromised))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = net.status(&hub);
    assert!(
        peer(&s, &au).is_some_and(|p| p.connected),
        "{:?}",
        peer(&s, &au)
    );
    assert!(refused_for(&s, &sg, compromised), "{:?}", peer(&s, &sg));
    for o in [&sg, &au] {
        assert_eq!(net.status(o).vector.get("SG-IGCI"), Some(&cut_off), "{o}");
    }
    assert_eq!(s.vector.get("SG-IGCI"), Some(&cut_off));
    // Nothing new is sealed to it.
    assert!(net.roster(&au).encryption_key(&sg).is_none());
    for o in [hub, sg, au] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_naming_another_roster_is_a_conflict() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    assert!(net.status(&hub).roster_conflicts.is_empty());
    // SG's node claims another roster at version 2 (as if the hub had shown it one).
    let forged = pb::Payload {
        body: Some(pb::payload::Body::Checkpoint(pb::RosterCheckpoint {
            version: 2,
            roster_hash: vec![7; 32],
        })),
        ..pb::Payload::default()
    };
    let clear = intelmesh_core::Distribution {
        tlp: intelmesh_core::Tlp::Clear,
        recipients: vec![],
    };
    let seqs = net
        .node(&sg)
        .state()
        .publish(vec![(clear, forged)])
        .await
        .unwrap();
    let s = net
        .wait_status(&hub, PATIENCE, |s| !s.roster_conflicts.is_empty())
        .await
        .unwrap();
    let c = &s.roster_conflicts[0];
    assert_eq!(
        (c.member.as_str(), c.version, c.seq),
        ("SG-IGCI", 2, seqs[0])
    );
    assert_eq!(c.theirs, hex::encode([7u8; 32]));
    assert_eq!(c.ours, hex::encode(net.roster(&hub).hash()));
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_under_signed_version_is_refused_and_the_node_stays_on_the_last_good_one() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let mut unsigned = net.next_version(|d| {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        d.members.push(new_member(
            &org("XX-EVIL"),
            "evil",
            "",
            intelmesh_roster::MemberRole::Agency,
            &key.verifying_key(),
        ));
    });
    unsigned.signatures.clear();
    // The hub refuses to publish it...
    let err = net
        .node(&hub)
        .state()
        .publish_roster(unsigned.clone())
        .await
        .expect_err("under-signed");
    assert!(err.to_string().contains("under-signed"), "{err}");
    // ...and a follower refuses it before storing it when a hub's key did sign its log entry
    // (its header is a hub's, so only the roster's rules can tell).
    let state = net.node(&sg).state();
    let head = state.store.head(&org(FEDERATION)).unwrap();
    assert_eq!(head.map(|h| h.seq), Some(2));
    let entry = net.log_entry(&sg, signing_key(&net.fed.nodes[&hub].dir), unsigned);
    let report = state.ingest(vec![entry]).await.unwrap();
    assert_eq!(report.appended, 0, "{report:?}");
    let reason = report
        .refused
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        reason.contains("#3") && reason.contains("under-signed"),
        "{report:?}"
    );
    let head = state.store.head(&org(FEDERATION)).unwrap();
    assert_eq!(head.map(|h| h.seq), Some(2), "not stored");
    // Status names it, as it would a refused stored version.
    let s = net
        .wait_status(&sg, PATIENCE, |s| !s.roster_refused.is_empty())
        .await
        .unwrap();
    assert!(
        s.roster_refused.contains("version 3") && s.roster_refused.contains("under-signed"),
        "{}",
        s.roster_refused
    );
    assert_eq!(s.roster_version, 2);
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_audit_names_only_the_authority_holders_whose_signatures_verify() {
    let (net, hub, _sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let mut signed = net.next_version(|_| {});
    // A signature appended by whoever relays the version, under the authority's key id: the
    // version still follows (one valid signature meets the threshold), but the trail must not
    // name the holder twice, nor for a signature that does not verify.
    let mut junk = signed.signatures[0].clone();
    junk.signature = vec![7; 64];
    junk.signed_at_unix_ms += 1;
    signed.signatures.push(junk);
    let state = net.node(&hub).state();
    let roster = state.publish_roster(signed).await.expect("published");
    let events = intelmesh_node::admin::audit::audit(
        state,
        &pb::AuditRequest {
            since_version: roster.version(),
            ..Default::default()
        },
    )
    .expect("audit");
    let event = events.events.last().expect("the new version's event");
    assert_eq!(event.version, roster.version());
    assert_eq!(event.signed_by.len(), 1, "{:?}", event.signed_by);
    assert_eq!(event.signed_at_unix_ms.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_held_for_a_gap_are_dropped_when_the_roster_ends_their_key_below_them() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    let seqs = net.publish_domains(&sg, "before", 2).await;
    net.wait_holds(&au, &sg, seqs[1]).await.unwrap();
    // SG's node stops (it would sign checkpoints at the seqs the thief uses); a thief with its
    // key signs six entries after SG's head and gives AU all but the first.
    net.stop(&sg).await;
    let head = net.node(&au).state().store.head(&sg).unwrap();
    let thief = Signer::new(sg.clone(), signing_key(&net.fed.nodes[&sg].dir));
    let (mut stolen, mut at) = (Vec::new(), head);
    for i in 0..6 {
        let (entry, next) = thief.sign_next(
            at,
            now_unix_ms(),
            &green(),
            &domain_upsert(&format!("thief-{i}.example")),
        );
        stolen.push(entry);
        at = Some(next);
    }
    let first = head.map_or(1, |h| h.seq + 1);
    let report = net
        .node(&au)
        .state()
        .ingest(stolen[1..].to_vec())
        .await
        .unwrap();
    assert_eq!(report.held, 5, "{report:?}");

    // The key is reported compromised: SG vouches for its log up to the thief's third entry.
    let cut_off = first + 2;
    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(cut_off);
        m.signing_keys[0].ended_by = pb::KeyEnd::Compromise as i32;
    })
    .await;
    net.wait_status(&au, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    // The gap closes: what the key signed up to the cut-off is appended, what it signed past
    // it (held when the report came) is not.
    let report = net
        .node(&au)
        .state()
        .ingest(stolen[..1].to_vec())
        .await
        .unwrap();
    assert_eq!(report.appended as u64, cut_off - first + 1, "{report:?}");
    let store = &net.node(&au).state().store;
    assert_eq!(store.head(&sg).unwrap().map(|h| h.seq), Some(cut_off));
    assert!(store.range(&sg, cut_off + 1, 10).unwrap().is_empty());
    // The thief's entries past the cut-off, sent again: refused for their key's range once
    // verified; sent again after that, refused the same way without a signature check.
    let past = stolen[3..].to_vec();
    let state = net.node(&au).state();
    let first = state.ingest(past.clone()).await.unwrap();
    let key_range = |e: &intelmesh_core::VerifyError| {
        matches!(e, intelmesh_core::VerifyError::KeyNotValidAtSeq { .. })
    };
    assert_eq!(
        first.refused.iter().filter(|e| key_range(e)).count(),
        3,
        "{first:?}"
    );
    assert!(first.refused_again.is_empty(), "{first:?}");
    let again = state.ingest(past).await.unwrap();
    assert!(again.refused.is_empty(), "{again:?}");
    assert_eq!(
        again.refused_again.iter().filter(|e| key_range(e)).count(),
        3,
        "{again:?}"
    );
    assert_eq!(again.appended, 0);
    let keys = net.node(&au).state().keys();
    let check = intelmesh_store::verify_store(store, Some(keys.as_ref())).expect("verify-store");
    assert!(check.is_ok(), "{:?}", check.problems);
    for o in [hub, au] {
        net.stop(&o).await;
    }
}

/// A rotation's new entries wait for their key (unknown until the version lists it); a thief
/// of the old key chains an entry onto them, held for the gap. When the version comes, the
/// recheck appends the new key's entries and closes the gap: the thief's entry, past the old
/// key's end, must not follow them in, nor make the member's next real entry a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_held_for_a_gap_is_not_appended_past_its_keys_end_when_a_rotation_closes_the_gap()
{
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    let seqs = net.publish_domains(&sg, "before", 2).await;
    net.wait_holds(&au, &sg, seqs[1]).await.unwrap();
    net.stop(&sg).await;
    let head = net.node(&au).state().store.head(&sg).unwrap();
    let last_old = head.map_or(0, |h| h.seq);
    let old_key = signing_key(&net.fed.nodes[&sg].dir);
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    // The member's two entries under its new key, and the thief's third, chained on them.
    let member = Signer::new(sg.clone(), new_key.clone());
    let (mut rotated, mut at) = (Vec::new(), head);
    for i in 0..2 {
        let (entry, next) = member.sign_next(
            at,
            now_unix_ms(),
            &green(),
            &domain_upsert(&format!("rotated-{i}.example")),
        );
        rotated.push(entry);
        at = Some(next);
    }
    let thief = Signer::new(sg.clone(), old_key);
    let (stolen, _) = thief.sign_next(at, now_unix_ms(), &green(), &domain_upsert("thief.example"));
    let state = net.node(&au).state();
    let report = state.ingest(rotated.clone()).await.unwrap();
    assert_eq!(
        report.unverifiable, 2,
        "the new key is not listed yet: {report:?}"
    );
    let report = state.ingest(vec![stolen]).await.unwrap();
    assert_eq!(report.held, 1, "the old key still signs there: {report:?}");

    net.publish(|d| {
        let m = d.members.iter_mut().find(|m| m.org == "SG-IGCI").unwrap();
        m.signing_keys[0].last_seq = Some(last_old);
        m.signing_keys[0].ended_by = pb::KeyEnd::Rotation as i32;
        m.signing_keys.push(pb::MemberKey {
            public_key: new_key.verifying_key().to_bytes().to_vec(),
            first_seq: last_old + 1,
            last_seq: None,
            ended_by: 0,
        });
    })
    .await;
    net.wait_status(&au, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    let store = &net.node(&au).state().store;
    let deadline = std::time::Instant::now() + PATIENCE;
    while store.head(&sg).unwrap().map_or(0, |h| h.seq) < last_old + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new key's entries were not appended: head {:?}",
            store.head(&sg).unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Settled: nothing past the member's own entries, and its next real entry is taken.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        store.range(&sg, last_old + 3, 10).unwrap().is_empty(),
        "the old key's entry past its end was appended"
    );
    let (next, _) = member.sign_next(
        Some(store.head(&sg).unwrap().expect("a head")),
        now_unix_ms(),
        &green(),
        &domain_upsert("rotated-2.example"),
    );
    let report = net.node(&au).state().ingest(vec![next]).await.unwrap();
    assert_eq!(report.appended, 1, "{report:?}");
    let keys = net.node(&au).state().keys();
    let check = intelmesh_store::verify_store(store, Some(keys.as_ref())).expect("verify-store");
    assert!(check.is_ok(), "{:?}", check.problems);
    for o in [hub, au] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspended_members_services_are_refused_by_other_nodes_api_and_their_watches_end() {
    let (hub, au) = (org("HUB"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
    // The hub's service CA certifies a service of AU (a deployment where the hub serves
    // members' tools): it reads as AU.
    let certs = service_cert(&net.fed.nodes[&hub], &au, "soc", Validity::default());
    let mut client = client_with(net.node(&hub), &net.fed.nodes[&hub], certs.path(), "soc").await;
    let req = pb::GetRequest {
        r#type: pb::IndicatorType::Domain as i32,
        value: "x.example".into(),
    };
    client.get(req.clone()).await.expect("AU's service reads");
    let mut watch = client
        .watch(pb::WatchRequest::default())
        .await
        .expect("watch opens")
        .into_inner();

    let version = net.suspend(&au).await.version();
    net.wait_status(&hub, PATIENCE, |s| s.roster_version == version)
        .await
        .unwrap();
    let suspended = format!("AU-AFP is suspended in roster version {version}");
    let err = client
        .get(req)
        .await
        .expect_err("a suspended member's service");
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains(&suspended), "{err}");
    let err = watch_end(&mut watch).await;
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    assert!(err.message().contains(&suspended), "{err}");
    for o in [hub, org("SG-IGCI"), au] {
        net.stop(&o).await;
    }
}

/// A `grpc.health.v1` check of the whole node over `channel`.
async fn health_check(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    use tonic_health::pb::health_client::HealthClient;
    let request = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    HealthClient::new(channel).check(request).await.map(drop)
}
