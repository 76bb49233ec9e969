//! Who may sign the roster log's next entry: the keys of active hubs not reported compromised.
//! A suspended hub's key (in the hands of whoever holds it now) putting an unsigned version at
//! the next seq would be stored by every node and followed by none, so the real next version
//! could never be stored after it: the roster would freeze, and the holder could no longer be
//! suspended or removed by anyone.

use std::time::Duration;

use intelmesh_core::{now_unix_ms, VerifyError};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use intelmesh_tests::net::{fast_limits, org};
use intelmesh_tests::roster_net::{peer, signing_key, RosterNet, FEDERATION};

const PATIENCE: Duration = Duration::from_secs(20);

/// Publishes a real version 4 on the hub and waits for `at` to follow it.
async fn version_4_follows(net: &RosterNet, at: &intelmesh_core::OrgId, why: &str) {
    net.publish(|d| {
        if let Some(p) = d.policy.as_mut() {
            p.cert_warn_days = 17;
        }
    })
    .await;
    net.wait_status(at, PATIENCE, |s| s.roster_version == 4)
        .await
        .expect(why);
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

    let suspend = pb::Action {
        action: Some(pb::action::Action::Suspend(pb::Suspend {
            org: hub_b.to_string(),
        })),
    };
    net.apply(&[suspend]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .expect("the agency follows the suspension");

    // The suspended hub's key signs version 4 (no authority signature at all).
    let mut unsigned = net.next_version(|_| {});
    unsigned.signatures.clear();
    let entry = net.log_entry(&sg, signing_key(&net.fed.nodes[&hub_b].dir), unsigned);
    let report = net
        .node(&sg)
        .state()
        .ingest(vec![entry])
        .await
        .expect("ingest");
    assert_eq!(report.appended + report.held, 0, "{report:?}");
    assert!(
        matches!(
            report.refused.as_slice(),
            [VerifyError::KeyNotValidAtSeq {
                seq: 4,
                last_seq: Some(3),
                ..
            }]
        ),
        "{report:?}"
    );

    // The real version 4 still reaches the agency and is followed.
    version_4_follows(&net, &sg, "the next version follows").await;
}

/// A node that took in such a version before it followed the one retiring the key (it was
/// offline, and both reached it together) lets it go once it follows that version, so the
/// real next one can be stored and followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_a_retired_key_signed_before_the_node_knew_is_cut_once_it_knows() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    let log = org(FEDERATION);
    net.start(&hub).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the agency follows its admission");
    let keys_at_version_2 = net.roster(&sg).key_set();
    net.stop(&sg).await;

    let suspend = pb::Action {
        action: Some(pb::action::Action::Suspend(pb::Suspend {
            org: hub_b.to_string(),
        })),
    };
    net.apply(&[suspend]).await;
    let version_3 = net
        .node(&hub)
        .state()
        .store
        .range(&log, 3, 1)
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
            version_3.into_iter().chain([junk]).collect(),
            &keys_at_version_2,
            &intelmesh_core::verify::VerifyConfig::at(now_unix_ms()),
        )
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .expect("under version 2's keys, both verify");
        store.apply(verified).expect("applied");
        assert_eq!(store.head(&log).unwrap().map(|h| h.seq), Some(4));
    }

    net.start(&sg).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .expect("the agency follows the suspension");
    version_4_follows(
        &net,
        &sg,
        "the real version 4 replaces the one the retired key signed",
    )
    .await;
    let state = net.node(&sg).state();
    assert_eq!(
        state.store.range(&log, 4, 1).unwrap(),
        net.node(&hub).state().store.range(&log, 4, 1).unwrap(),
        "the agency's log holds the hub's version 4"
    );
}

/// A node that was offline while a hub was suspended and reinstated receives the reinstatement
/// and a version the reinstated hub's key signed together. The second is judged under the keys
/// of the version before the first and refused there; once the node follows the reinstatement
/// the link restarts and the peer sends it again, so the node does not stay behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_a_reinstated_hub_signed_arriving_with_its_reinstatement_is_followed() {
    let mut net = RosterNet::provisioned_hubs(&["HUB", "HUB-B"], &["SG-IGCI"], &fast_limits());
    let (hub, hub_b, sg) = (org("HUB"), org("HUB-B"), org("SG-IGCI"));
    net.start(&hub).await;
    net.start(&sg).await;
    net.admit_all(&[&sg]).await;
    net.suspend(&hub_b).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 3)
        .await
        .expect("the agency follows the suspension");
    net.stop(&sg).await;

    net.reinstate(&hub_b).await;
    let version_5 = net.next_version(|d| {
        if let Some(p) = d.policy.as_mut() {
            p.cert_warn_days = 17;
        }
    });
    let entry = net.log_entry(&hub, signing_key(&net.fed.nodes[&hub_b].dir), version_5);
    let report = net
        .node(&hub)
        .state()
        .ingest(vec![entry])
        .await
        .expect("ingest");
    assert_eq!(
        report.appended, 1,
        "the hub takes the reinstated hub's version: {report:?}"
    );
    net.wait_status(&hub, PATIENCE, |s| s.roster_version == 5)
        .await
        .expect("the hub follows version 5");

    net.start(&sg).await;
    net.wait_status(&sg, PATIENCE, |s| s.roster_version == 5)
        .await
        .expect("the agency follows the reinstatement and the version after it");
}
