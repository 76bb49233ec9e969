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

#[path = "roster_mode/key_ends.rs"]
mod key_ends;

#[path = "roster_mode/revoked_certs.rs"]
mod revoked_certs;

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
    let before = net.node(&sg).state().store.head(&sg).unwrap();
    let seqs = net
        .node(&sg)
        .state()
        .publish(vec![(clear.clone(), forged)])
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
    // Another version of that entry, naming yet another roster, signed with SG's key: the
    // store refuses it (an equivocation), and what it claims is not taken as a checkpoint, so
    // a member cannot raise an alarm per copy it replays.
    let other = pb::Payload {
        body: Some(pb::payload::Body::Checkpoint(pb::RosterCheckpoint {
            version: 2,
            roster_hash: vec![8; 32],
        })),
        ..pb::Payload::default()
    };
    let copy = Signer::new(sg.clone(), signing_key(&net.fed.nodes[&sg].dir))
        .sign_next(before, now_unix_ms(), &clear, &other)
        .0;
    let report = net.node(&hub).state().ingest(vec![copy]).await.unwrap();
    assert_eq!(report.appended, 0, "{report:?}");
    let conflicts = net.status(&hub).roster_conflicts;
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
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
