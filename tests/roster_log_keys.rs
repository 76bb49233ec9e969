//! Who may sign the roster log's next entry: the keys of the roster publisher (the first
//! listed active hub), not reported compromised, and only for a version the roster's rules
//! take (the authority's signatures, the chain of hashes), judged before it is stored.
//! Otherwise a key putting an unsigned version at the next seq (a hub's in other hands, a
//! suspended one's, the publisher's own) would be stored by every node and followed by none:
//! the real next version could never be stored after it, the roster would freeze, and the
//! holder could no longer be suspended or removed by anyone.

use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_core::{now_unix_ms, VerifyError};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use intelmesh_tests::net::{fast_limits, org};
use intelmesh_tests::roster_net::{peer, signing_key, suspension, RosterNet, FEDERATION};
use prost::Message;

const PATIENCE: Duration = Duration::from_secs(20);

/// A change of a version that follows: the certificate warning window.
fn a_policy_change(d: &mut pb::RosterDocument) {
    if let Some(p) = d.policy.as_mut() {
        p.cert_warn_days = 17;
    }
}

/// Publishes the real next version (`version`) on the hub and waits for `at` to follow it.
async fn next_version_follows(
    net: &RosterNet,
    at: &intelmesh_core::OrgId,
    version: u64,
    why: &str,
) {
    net.publish(a_policy_change).await;
    net.wait_status(at, PATIENCE, |s| s.roster_version == version)
        .await
        .expect(why);
}

/// `entry` handed to `at`; nothing of it is stored, and it is refused once, as `refusal`
/// says.
async fn refused_whole(
    net: &RosterNet,
    at: &OrgId,
    entry: pb::SignedEntry,
    refusal: impl Fn(&VerifyError) -> bool,
) {
    let report = net
        .node(at)
        .state()
        .ingest(vec![entry])
        .await
        .expect("ingest");
    assert_eq!(report.appended + report.held, 0, "{report:?}");
    assert!(
        matches!(report.refused.as_slice(), [e] if refusal(e)),
        "{report:?}"
    );
}

/// An unsigned next version, its log entry signed by `hub`'s key, handed to `at`: refused for
/// a key not valid past `last_seq`.
async fn refused_when_signed_by(net: &RosterNet, hub: &OrgId, at: &OrgId, last_seq: u64) {
    let mut unsigned = net.next_version(|_| {});
    unsigned.signatures.clear();
    let entry = net.log_entry(at, signing_key(&net.fed.nodes[hub].dir), unsigned);
    refused_whole(net, at, entry, |e| {
        matches!(e, VerifyError::KeyNotValidAtSeq { seq, last_seq: Some(last), .. }
            if *seq == last_seq + 1 && *last == last_seq)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspended_hubs_key_cannot_sign_the_next_roster_version_and_the_roster_moves_on() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&hub).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| {
        s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
    })
    .await
    .expect("the agency follows its admission");

    net.apply(&[suspension(&hub_b)]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .expect("the agency follows the suspension");

    // The suspended hub's key signs version 4 (no authority signature at all).
    refused_when_signed_by(&net, &hub_b, &sg, 3).await;

    // The real version 4 still reaches the agency and is followed.
    next_version_follows(&net, &sg, 4, "the next version follows").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_active_hub_that_is_not_the_publisher_cannot_sign_the_next_roster_version() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&hub).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows its admission");
    assert_eq!(net.roster(&sg).roster_publisher(), Some(hub.clone()));
    // HUB-B is active, listed second: its key signs nothing past version 2, at the agency or
    // at the hub.
    refused_when_signed_by(&net, &hub_b, &sg, 2).await;
    refused_when_signed_by(&net, &hub_b, &hub, 2).await;
    next_version_follows(&net, &sg, 3, "the next version follows").await;
    // Listed first, HUB-B is the publisher: its key signs the next version, HUB's no more.
    net.publish(|d| d.hubs.reverse()).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 4)
        .await
        .expect("the agency follows the new order");
    assert_eq!(net.roster(&sg).roster_publisher(), Some(hub_b.clone()));
    refused_when_signed_by(&net, &hub, &sg, 4).await;
    let version_5 = net.next_version(a_policy_change);
    net.append_as(&hub_b, version_5).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 5)
        .await
        .expect("the agency follows the publisher's version");
}

/// The publisher's own key (in a thief's hands, say) signs the log's next entry, but the
/// version in it lacks the authority's signatures: the agency refuses it before storing it, so
/// the real next version is not a fork there and is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_publishers_key_alone_cannot_put_a_version_in_the_log() {
    let mut net = RosterNet::provisioned_hubs(&["HUB"], &["SG-IGCI"], &fast_limits());
    let (hub, sg, log) = (org("HUB"), org("SG-IGCI"), org(FEDERATION));
    net.start(&hub).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows its admission");
    assert_eq!(net.roster(&sg).roster_publisher(), Some(hub.clone()));
    let mut unsigned = net.next_version(a_policy_change);
    unsigned.signatures.clear();
    let entry = net.log_entry(&sg, signing_key(&net.fed.nodes[&hub].dir), unsigned);
    // The entry at the next seq, then one past it: refused too, since what it follows was
    // (not "ahead", which would restart the link to send it again, to be refused again).
    let past = {
        let mut again = net.next_version(|_| {});
        again.signatures.clear();
        let signer =
            intelmesh_core::Signer::new(log.clone(), signing_key(&net.fed.nodes[&hub].dir));
        let header = pb::EntryHeader::decode(entry.header.as_ref()).expect("header");
        let head = intelmesh_core::Head {
            seq: header.seq,
            hash: intelmesh_core::entry::header_hash(&entry.header),
        };
        let clear = intelmesh_core::Distribution {
            tlp: intelmesh_core::Tlp::Clear,
            recipients: vec![],
        };
        let payload = pb::Payload {
            body: Some(pb::payload::Body::Roster(again)),
            ..pb::Payload::default()
        };
        signer
            .sign_next(Some(head), now_unix_ms(), &clear, &payload)
            .0
    };
    let report = net
        .node(&sg)
        .state()
        .ingest(vec![entry, past])
        .await
        .expect("ingest");
    assert_eq!(report.appended + report.held, 0, "{report:?}");
    assert!(
        matches!(
            report.refused.as_slice(),
            [
                VerifyError::RosterVersionRefused { seq: 3, .. },
                VerifyError::RosterVersionRefused { seq: 4, .. }
            ]
        ),
        "{report:?}"
    );
    let head = net.node(&sg).state().store.head(&log).expect("head");
    assert_eq!(
        head.map(|h| h.seq),
        Some(2),
        "nothing stored past version 2"
    );
    next_version_follows(&net, &sg, 3, "the real version 3 follows").await;
}

/// Makes HUB-B the roster publisher (listed first) at version 3, the agency following it.
async fn hub_b_publishes(net: &RosterNet, sg: &OrgId) {
    net.admit_all(&[sg]).await;
    net.publish(|d| d.hubs.reverse()).await;
    net.wait_status(sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .expect("the agency follows HUB-B becoming the publisher");
}

/// A node that took in such a version before it followed the one retiring the key (it was
/// offline, and both reached it together) lets it go once it follows that version, so the
/// real next one can be stored and followed. The publisher's key is the one that can do this:
/// suspended in the version it appends itself, it signed the log's next entry under the keys
/// the node knew.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_a_retired_key_signed_before_the_node_knew_is_cut_once_it_knows() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    let log = org(FEDERATION);
    net.start(&hub).await;
    net.start(&sg).await;
    hub_b_publishes(&net, &sg).await;
    let keys_at_version_3 = net.roster(&sg).key_set();
    net.stop(&sg).await;

    // Version 4 suspends HUB-B, appended by HUB-B (the publisher at version 3); its key then
    // signs an unsigned version 5.

    net.append_as(&hub_b, net.next_with(&[suspension(&hub_b)]))
        .await;
    let version_4 = net
        .node(&hub)
        .state()
        .store
        .range(&log, 4, 1)
        .expect("the hub's log");
    let mut unsigned = net.next_version(|_| {});
    unsigned.signatures.clear();
    let junk = net.log_entry(&hub, signing_key(&net.fed.nodes[&hub_b].dir), unsigned);

    // Both reach the stopped agency's store together, checked under the keys it knew.
    let cfg = net.fed.nodes[&sg].config.clone();
    {
        let store = intelmesh_store::DiskStore::open(
            intelmesh_store::StoreConfig::new(&cfg.data_dir).owned_by(sg.clone()),
        )
        .expect("the agency's store opens");
        let verified = intelmesh_core::verify::verify_batch(
            version_4.into_iter().chain([junk]).collect(),
            &keys_at_version_3,
            &intelmesh_core::verify::VerifyConfig::at(now_unix_ms()),
        )
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("under version 3's keys, both verify");
        store.apply(verified).expect("applied");
        assert_eq!(store.head(&log).unwrap().map(|h| h.seq), Some(5));
    }

    net.start(&sg).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 4)
        .await
        .expect("the agency follows the suspension");
    next_version_follows(
        &net,
        &sg,
        5,
        "the real version 5 replaces the one the retired key signed",
    )
    .await;
    let state = net.node(&sg).state();
    assert_eq!(
        state.store.range(&log, 5, 1).unwrap(),
        net.node(&hub).state().store.range(&log, 5, 1).unwrap(),
        "the agency's log holds the hub's version 5"
    );
}

/// A node that was offline while the publisher hub was suspended and reinstated receives the
/// reinstatement and a version the reinstated publisher's key signed together. The second is
/// judged under the keys of the version before the first and refused there; once the node
/// follows the reinstatement the link restarts and the peer sends it again, so the node does
/// not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_a_reinstated_hub_signed_arriving_with_its_reinstatement_is_followed() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&hub).await;
    net.start(&sg).await;
    hub_b_publishes(&net, &sg).await;

    net.append_as(&hub_b, net.next_with(&[suspension(&hub_b)]))
        .await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 4)
        .await
        .expect("the agency follows the suspension");
    net.stop(&sg).await;

    // HUB publishes the reinstatement (HUB-B is suspended); HUB-B, first again, the next.
    net.reinstate(&hub_b).await;
    let version_6 = net.next_version(a_policy_change);
    net.append_as(&hub_b, version_6).await;
    assert_eq!(net.roster(&hub).roster_publisher(), Some(hub_b.clone()));

    net.start(&sg).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 6)
        .await
        .expect("the agency follows the reinstatement and the version after it");
}

/// A node that was offline while a hub rotated its key and then became the roster publisher
/// receives both versions and the first the new publisher signed with its new key together.
/// The last waits for its key; the key becomes known with the rotation, one version before
/// its hub is the publisher, so its recheck then refuses it for its range: the links restart,
/// and once the node follows the version that moves the role, the peer's resend is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_a_new_publisher_signed_with_a_key_unknown_to_a_node_is_followed() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&hub).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows its admission");
    net.stop(&sg).await;

    // Version 3 rotates HUB-B's key, version 4 makes HUB-B the publisher (both by HUB), and
    // HUB-B signs version 5 with its new key.
    let new_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let old_key = signing_key(&net.fed.nodes[&hub_b].dir);
    let request =
        intelmesh_roster::enrolment::sign_rotation(&hub_b, &old_key, &new_key, 0, now_unix_ms());
    net.apply(&[pb::Action {
        action: Some(pb::action::Action::RotateKey(pb::RotateKey {
            request: Some(request),
        })),
    }])
    .await;
    net.publish(|d| d.hubs.reverse()).await;
    let version_5 = net.next_version(a_policy_change);
    let entry = net.log_entry(&hub, new_key, version_5);
    let report = net
        .node(&hub)
        .state()
        .ingest(vec![entry])
        .await
        .expect("ingest");
    assert_eq!(report.appended, 1, "{report:?}");
    net.wait_status(&hub, PATIENCE, |s| s.roster_version == 5)
        .await
        .expect("the hub follows version 5");

    net.start(&sg).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 5)
        .await
        .expect("the agency follows the new publisher's version");
}

/// The publisher hub loses its store (moved aside): it does not sign the genesis again (a
/// second entry at seq 1, with another time, would fork the authority log), takes the log back
/// from the other hub (a genesis member, which it admits before it follows anything more),
/// and publishes the next version on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_that_lost_its_store_takes_the_roster_log_back_before_signing_in_it() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg, log) = (org("HUB"), org("HUB-B"), org("SG-IGCI"), org(FEDERATION));
    let cfg = &mut net.fed.nodes.get_mut(&hub).unwrap().config;
    cfg.store.marks_dir = Some(cfg.data_dir.with_file_name("marks"));
    net.start(&hub).await;
    net.start(&hub_b).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows its admission");
    // The other hub too: a hub that lost its store follows the genesis, which does not list the
    // agency, so it takes the log back from the other hub only.
    net.wait_status(&hub_b, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the other hub follows the agency's admission");
    net.stop(&hub).await;
    let data = net.fed.nodes[&hub].config.data_dir.clone();
    std::fs::rename(&data, data.with_extension("aside")).unwrap();
    net.start(&hub).await;
    net.wait_status(&hub, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the hub takes the roster log back from the other hub");
    next_version_follows(&net, &sg, 3, "the hub publishes on the log it took back").await;
    for at in [&hub, &hub_b, &sg] {
        let proofs = net.node(at).state().store.fork_proofs().unwrap();
        assert!(proofs.is_empty(), "{at} holds a fork: {proofs:?}");
        let head = net.node(at).state().store.head(&log).unwrap();
        assert_eq!(head.map(|h| h.seq), Some(3));
    }
}

/// A roster version sent ahead of its predecessor is not judged: the link that sent it (and
/// only it) restarts, so the peer sends it again after its predecessor. A member can relay
/// genuine versions out of order; that must not cut anyone else's link.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_roster_version_sent_ahead_restarts_only_the_link_that_sent_it() {
    use intelmesh_tests::raw_peer::{Credentials, RawPeer, Target};
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&hub).await;
    net.start(&hub_b).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&hub_b, PATIENCE, |s| {
        s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
    })
    .await
    .expect("the second hub follows the admission over its link with the hub");
    // Version 4, ahead of the next (3), signed by the publisher's key, sent by SG-IGCI (not
    // running: the test speaks for it).
    let v3 = net.next_version(a_policy_change);
    let signer =
        intelmesh_core::Signer::new(org(FEDERATION), signing_key(&net.fed.nodes[&hub].dir));
    let head = net.node(&hub).state().store.head(&org(FEDERATION)).unwrap();
    let clear = intelmesh_core::Distribution {
        tlp: intelmesh_core::Tlp::Clear,
        recipients: vec![],
    };
    let roster = |signed| pb::Payload {
        body: Some(pb::payload::Body::Roster(signed)),
        ..pb::Payload::default()
    };
    let (_, head3) = signer.sign_next(head, now_unix_ms(), &clear, &roster(v3.clone()));
    let mut v4 = v3;
    v4.signatures.clear();
    let (fourth, _) = signer.sign_next(Some(head3), now_unix_ms(), &clear, &roster(v4));
    let target = Target {
        addr: net.node(&hub).federation_addr,
        org: &net.fed.nodes[&hub].spec.org,
        server_ca: &net.fed.federation_ca,
    };
    let creds = Credentials::of_node(&net.fed.nodes[&sg]);
    let mut raw = RawPeer::open(&target, &creds)
        .await
        .expect("a member's link");
    let vector = net.node(&hub).state().store.vector().unwrap();
    raw.hello(
        "SG-IGCI",
        vector.iter().map(|(o, s)| (o.to_string(), *s)).collect(),
    )
    .await;
    raw.entries(vec![fourth]).await;
    let status = raw.end_status(PATIENCE).await;
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("arrived before version 3"),
        "{}",
        status.message()
    );
    // The other link stays up, and nothing past version 2 was stored.
    let s = net.status(&hub);
    assert!(peer(&s, &hub_b).is_some_and(|p| p.connected), "{s:?}");
    let stored = net.node(&hub).state().store.head(&org(FEDERATION)).unwrap();
    assert_eq!(stored.map(|h| h.seq), Some(2));
}

/// Every hub's key may sign the roster log's seqs up to the version in force, but only the
/// genesis's publisher puts the genesis in the log: another hub's key (in other hands) signing
/// the real genesis under a header of its own, handed to a new node before the real entry, is
/// refused (taken, the real entry would be a second one at seq 1, and the node stay at the
/// genesis for good), and the real log is followed when it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_genesis_entry_another_hubs_key_signed_is_refused_and_the_real_log_followed() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&sg).await;
    let genesis = net.roster(&sg).signed().clone();
    let forged = net.log_entry(&sg, signing_key(&net.fed.nodes[&hub_b].dir), genesis);
    refused_whole(&net, &sg, forged, |e| {
        matches!(e, VerifyError::RosterVersionRefused { seq: 1, .. })
    })
    .await;
    net.start(&hub).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows the real log");
}

/// The genesis publisher's key may sign the roster log's first seqs on a node that knows only
/// the genesis. In other hands (a hub since removed, a key rotated out), it could hand a new
/// member the real versions under headers of its own, and the real log would never follow
/// them. A member that joined with the log the hub held when it issued its bundle
/// (`roster.log_pins`) takes no other entry at those seqs, and follows the real log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pinned_roster_log_refuses_the_publishers_key_signing_other_entries() {
    let (mut net, hub, sg) = pinned_at_sg().await;
    net.start(&sg).await;
    let genesis = net.roster(&sg).signed().clone();
    let forged = net.log_entry(&sg, signing_key(&net.fed.nodes[&hub].dir), genesis);
    refused_whole(&net, &sg, forged, |e| {
        matches!(e, VerifyError::RosterVersionRefused { seq: 1, reason, .. }
            if reason.contains("roster.log_pins"))
    })
    .await;
    let refused = net.status(&sg).roster_refused;
    assert!(
        refused.contains("seq 1") && refused.contains("log_pins"),
        "{refused}"
    );
    net.start(&hub).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows the real log");
    assert_eq!(net.status(&sg).roster_refused, "", "followed past it");
}

/// HUB admits SG (the roster log: the genesis and version 2), and stops; SG's config pins that
/// log, as `node join` writes it from the bundle.
async fn pinned_at_sg() -> (RosterNet, OrgId, OrgId) {
    let mut net = RosterNet::provisioned_hubs(&["HUB"], &["SG-IGCI"], &fast_limits());
    let (hub, sg) = (org("HUB"), org("SG-IGCI"));
    net.start(&hub).await;
    net.admit_all(&[&sg]).await;
    let fed = org(FEDERATION);
    let pins: Vec<String> = (net.node(&hub).state().store.range(&fed, 1, 8).unwrap())
        .iter()
        .map(|e| hex::encode(intelmesh_core::entry::header_hash(&e.header)))
        .collect();
    assert_eq!(
        pins.len(),
        2,
        "the genesis and the version that admitted SG"
    );
    net.stop(&hub).await;
    let roster = net.fed.nodes.get_mut(&sg).unwrap().config.roster.as_mut();
    roster.expect("roster mode").log_pins = pins;
    (net, hub, sg)
}

/// A store that took another entry at a pinned seq (before the pins were set) is refused at
/// start, saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_holding_another_entry_at_a_pinned_seq_is_refused_at_start() {
    let (mut net, hub, sg) = pinned_at_sg().await;
    let pinned = net.fed.nodes[&sg].config.clone();
    let roster = net.fed.nodes.get_mut(&sg).unwrap().config.roster.as_mut();
    roster.expect("roster mode").log_pins.clear();
    net.start(&sg).await;
    let genesis = net.roster(&sg).signed().clone();
    let forged = net.log_entry(&sg, signing_key(&net.fed.nodes[&hub].dir), genesis);
    let report = net.node(&sg).state().ingest(vec![forged]).await.unwrap();
    assert_eq!(report.appended, 1, "unpinned, the publisher's key is taken");
    net.stop(&sg).await;
    let refused = intelmesh_node::start(pinned).await.err().expect("refused");
    let why = format!("{refused:#}");
    assert!(
        why.contains("another entry at seq 1") && why.contains("move the data directory aside"),
        "{why}"
    );
}
