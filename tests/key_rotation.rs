//! A member rotates its signing key while it runs, on real nodes over mutual TLS: it keeps
//! publishing across the rotation (and across a restart before the roster lists the key), the
//! hub holds the new entries as unverified until the roster version from the member's own
//! request arrives, then takes them and passes them on; every store verifies.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use intelmesh_core::{now_unix_ms, KeyId, OrgId};
use intelmesh_node::rotate_key::{rotate_offline, OfflineError};
use intelmesh_node::rotation::{stage_next_key, RotationError, RotationFiles};
use intelmesh_node::state::NodeError;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::verify_rotation;
use intelmesh_roster::{propose, sign_document, ProposeContext};
use intelmesh_store::Store;
use intelmesh_tests::net::org;
use intelmesh_tests::roster_net::{peer, signing_key, RosterNet};
use prost::Message;

const PATIENCE: Duration = Duration::from_secs(20);

/// The key id each of `origin`'s entries in `at`'s store was signed with, by seq.
fn key_ids(net: &RosterNet, at: &OrgId, origin: &OrgId) -> Vec<(u64, KeyId)> {
    net.node(at)
        .state()
        .store
        .range(origin, 1, 10_000)
        .expect("range")
        .iter()
        .map(|e| {
            let h = pb::EntryHeader::decode(e.header.as_ref()).expect("stored header");
            let id = <[u8; 8]>::try_from(h.key_id.as_slice()).expect("8-byte key id");
            (h.seq, KeyId(id))
        })
        .collect()
}

fn assert_store_verifies(net: &RosterNet, at: &OrgId) {
    let state = net.node(at).state();
    let keys = state.keys();
    let check = intelmesh_store::verify_store(&state.store, Some(keys.as_ref()))
        .expect("verify-store runs");
    assert!(check.is_ok(), "{at}'s store verifies: {check:?}");
}

/// The rotation request the node wrote beside its key.
fn written_request(files: &RotationFiles) -> pb::SignedRotationRequest {
    let bytes = std::fs::read(files.request()).expect("rotation request written");
    pb::SignedRotationRequest::decode(bytes.as_slice()).expect("a rotation request")
}

fn waits_for(s: &pb::StatusResponse, origin: &OrgId, key: KeyId) -> bool {
    s.unverified
        .iter()
        .any(|u| u.origin == origin.as_str() && u.key_id == key.to_string() && u.entries > 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_rotates_its_key_while_running_and_no_entry_is_lost() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::new("HUB", &["SG-IGCI", "AU-AFP"]).await;
    net.start(&sg).await;
    net.start(&au).await;
    let keys = [sg.clone(), au.clone()].map(|o| signing_key(&net.fed.nodes[&o].dir));
    net.admit_all(&[&sg, &au]).await;
    for o in [&sg, &au] {
        net.wait_status(o, PATIENCE, |s| s.roster_version == 2)
            .await
            .unwrap();
    }
    let before = net.publish_domains(&sg, "before", 3).await;
    net.wait_holds(&au, &sg, *before.last().unwrap())
        .await
        .unwrap();

    // The operator's command puts the new key next to the configured one; the running node
    // takes it within a poll.
    let old_key = keys[0].verifying_key();
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    let files = RotationFiles::of(&net.node(&sg).state().cfg.signing_key);
    stage_next_key(&files, &new).expect("new key staged");
    let start = Instant::now();
    let pending = loop {
        if let Some(p) = net.node(&sg).state().pending_key() {
            break p;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "the node never took the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!files.next().exists(), "the new key moved in place");
    assert_eq!(
        intelmesh_node::keys::load_signing_key(&files.key)
            .unwrap()
            .verifying_key(),
        new.verifying_key()
    );
    let request = written_request(&files);
    let verified = verify_rotation(&request).expect("both keys signed the request");
    assert_eq!(
        (verified.old_key, verified.new_key),
        (old_key, new.verifying_key())
    );
    let last_old = verified.last_seq;
    assert_eq!(pending.last_seq, last_old);
    assert!(last_old >= *before.last().unwrap());

    // It keeps publishing, now with the new key; the hub cannot verify those yet and holds them.
    let after = net.publish_domains(&sg, "after", 2).await;
    assert!(after[0] > last_old);
    let (old_id, new_id) = (KeyId::of(&old_key), KeyId::of(&new.verifying_key()));
    net.wait_status(&hub, PATIENCE, |s| waits_for(s, &sg, new_id))
        .await
        .expect("the hub shows SG's new entries waiting for their key");
    let hub_head = net.node(&hub).state().store.head(&sg).unwrap().unwrap();
    assert_eq!(
        hub_head.seq, last_old,
        "nothing past the rotation is taken yet"
    );
    assert_store_verifies(&net, &sg);

    // A restart before the roster lists the key: the node still signs with it.
    net.stop(&sg).await;
    net.start(&sg).await;
    assert_eq!(net.node(&sg).state().pending_key(), Some(pending.clone()));
    let restarted = net.publish_domains(&sg, "restarted", 1).await;
    assert_store_verifies(&net, &sg);

    // The hub operators publish the request they were sent.
    hub_publishes_rotation(&net, &hub, request).await;

    let last = *restarted.last().unwrap();
    for o in [&hub, &au] {
        net.wait_holds(o, &sg, last).await.unwrap();
    }
    net.wait_status(&hub, PATIENCE, |s| !waits_for(s, &sg, new_id))
        .await
        .expect("nothing waits any more");
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .unwrap();
    assert_eq!(
        net.node(&sg).state().pending_key(),
        None,
        "the roster decides once it lists the key"
    );
    for o in [&hub, &sg, &au] {
        assert_store_verifies(&net, o);
        let ids = key_ids(&net, o, &sg);
        assert!(
            ids.len() as u64 >= last,
            "{o} holds SG's entries 1..={last}"
        );
        for (seq, id) in ids {
            let expected = if seq <= last_old { old_id } else { new_id };
            assert_eq!(id, expected, "{o}: SG#{seq}");
        }
    }
    assert!(peer(&net.status(&hub), &au).is_some_and(|p| p.connected));
    for o in [hub, sg, au] {
        net.stop(&o).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_member_is_switched_on_its_store_and_a_second_rotation_waits_for_the_roster() {
    let (mut net, hub, sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let before = net.publish_domains(&sg, "before", 2).await;
    let cfg = net.fed.nodes[&sg].config.clone();
    let files = RotationFiles::of(&net.node(&sg).state().cfg.signing_key);

    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    net.stop(&sg).await;
    stage_next_key(&files, &new).unwrap();
    let rotated = rotate_offline(cfg.clone())
        .await
        .expect("switched on the stopped node's store");
    // The node's head when it stopped: what it published, and perhaps checkpoints after.
    assert!(rotated.pending.last_seq >= *before.last().unwrap());
    assert!(!files.next().exists());

    net.start(&sg).await;
    assert_eq!(
        net.node(&sg).state().pending_key(),
        Some(rotated.pending.clone())
    );
    net.publish_domains(&sg, "after", 1).await;
    // While the node runs, the store is its own: the command leaves the key to it.
    stage_next_key(&files, &SigningKey::generate(&mut rand::rngs::OsRng)).unwrap();
    assert!(
        matches!(
            rotate_offline(cfg.clone()).await,
            Err(OfflineError::NodeRunning(_))
        ),
        "a running node's store is not switched behind its back"
    );
    let second = net
        .node(&sg)
        .state()
        .rotate_key(SigningKey::generate(&mut rand::rngs::OsRng))
        .await;
    assert!(
        matches!(
            second,
            Err(NodeError::Rotation(RotationError::EarlierPending { first_seq, .. }))
                if first_seq == rotated.pending.last_seq + 1
        ),
        "{second:?}"
    );
    assert!(files.next().exists(), "the waiting key stays for later");
    for o in [hub, sg] {
        net.stop(&o).await;
    }
}

/// Publishes `actions` as the next roster version on `hub`.
/// The hub publishes the rotation `request` a member sent it.
async fn hub_publishes_rotation(net: &RosterNet, hub: &OrgId, request: pb::SignedRotationRequest) {
    let rotate = pb::RotateKey {
        request: Some(request),
    };
    hub_publishes(net, hub, vec![pb::action::Action::RotateKey(rotate)]).await;
}

async fn hub_publishes(net: &RosterNet, hub: &OrgId, actions: Vec<pb::action::Action>) {
    let hub_state = net.node(hub).state();
    let heads = |o: &OrgId| hub_state.store.head(o).ok().flatten().map_or(0, |h| h.seq);
    let actions: Vec<pb::Action> = actions
        .into_iter()
        .map(|a| pb::Action { action: Some(a) })
        .collect();
    let document = propose(
        &net.roster(hub),
        &actions,
        &ProposeContext {
            proposed_by: "test operator",
            reason: "test",
            now_unix_ms: now_unix_ms(),
            member_heads: &heads,
        },
    )
    .expect("proposed");
    let signed = pb::SignedRoster {
        signatures: vec![sign_document(&document, &net.authority, now_unix_ms())],
        document,
    };
    hub_state
        .publish_roster(signed)
        .await
        .expect("hub publishes");
}

/// The roster publisher rotates its own key while it runs; the roster lists the new key, and
/// the old one is then reported stolen (a hub rotates when it fears a leak): the hub signs the
/// roster log with the key the version in force lets sign it, so it goes on publishing, where
/// a key fixed at start would have every later version refused and the roster frozen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_that_rotated_goes_on_signing_the_roster_after_its_old_key_is_reported() {
    let (net, hub, _sg) = RosterNet::with_one_agency("SG-IGCI").await;
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    let files = RotationFiles::of(&net.node(&hub).state().cfg.signing_key);
    stage_next_key(&files, &new).expect("new key staged");
    let start = Instant::now();
    while net.node(&hub).state().pending_key().is_none() {
        assert!(start.elapsed() < PATIENCE, "the hub never took the new key");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let request = written_request(&files);
    let rotation = verify_rotation(&request).expect("a valid request");
    hub_publishes_rotation(&net, &hub, request).await;
    hub_publishes(
        &net,
        &hub,
        vec![pb::action::Action::ReportCompromise(pb::ReportCompromise {
            org: hub.to_string(),
            public_key: rotation.old_key.to_bytes().to_vec(),
            last_good_seq: rotation.last_seq,
            ..Default::default()
        })],
    )
    .await;
    let reported = net.roster(&hub);
    // The next version: signed with the new key, which the roster lets sign it.
    let mut policy = reported.document().policy.expect("a policy");
    policy.cert_warn_days += 1;
    hub_publishes(
        &net,
        &hub,
        vec![pb::action::Action::SetPolicy(pb::SetPolicy {
            policy: Some(policy),
        })],
    )
    .await;
    assert_eq!(net.roster(&hub).version(), reported.version() + 1);
}
