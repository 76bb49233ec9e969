//! Evidence of equivocation spreads: an origin that shows one history to some members and
//! another to the rest is flagged by every node, which each holds a proof it checked itself.

use std::collections::BTreeMap;
use std::time::Duration;

use intelmesh_core::evidence::{check, ForkKind};
use intelmesh_core::OrgId;
use intelmesh_node::provision::{loopback_specs, star_links};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::raw_peer::{provisioned_signer, signed_chain, wait_until, RawPeer};

const HUB: &str = "SG-IGCI";
const AU: &str = "AU-AFP";
const BR: &str = "BR-PF";
const FR: &str = "FR-OCLCTIC";

/// A hub and three agencies, AU also linked to BR directly; AU's own node stopped, so a raw
/// peer holding AU's key can show the hub and BR different histories.
async fn split_view_net() -> TestNet {
    let specs = loopback_specs(HUB, &[AU, BR, FR]).unwrap();
    let mut links = star_links(&specs);
    links.push((org(AU), org(BR)));
    let mut net = TestNet::new(specs, links, fast_limits()).await;
    for o in [BR, FR] {
        net.wait_for_link(&org(HUB), &org(o)).await;
    }
    net.stop(&org(AU)).await;
    net.wait_link_down(&org(HUB), &org(AU)).await;
    net.wait_link_down(&org(BR), &org(AU)).await;
    net
}

/// Opens a raw link into `at` as AU and sends `entries`; returns once `at` holds AU#1 (its own
/// version or one relayed to it first: either way it holds a history).
async fn show(net: &TestNet, at: &str, entries: Vec<pb::SignedEntry>) -> RawPeer {
    let mut peer = net.open_as(&org(at), &org(AU)).await;
    assert!(peer.hello(AU, BTreeMap::new()).await);
    assert!(peer.entries(entries).await);
    peer.until_progress(AU, 1, Duration::from_secs(20))
        .await
        .unwrap();
    peer
}

/// Waits until every node flags AU and holds a proof of `kind`; every proof it holds checks out
/// against its own key list and carries no payload.
async fn every_node_proves(net: &TestNet, kind: ForkKind) {
    let au = org(AU);
    for at in net.running.keys() {
        let store = &net.node(at).state().store;
        wait_until(
            || store.flagged_origins().unwrap().contains(&au),
            &format!("{at} flags {AU}"),
        )
        .await;
        let keys = net.node(at).state().keys();
        let kinds = || -> Vec<ForkKind> {
            store
                .fork_proofs()
                .unwrap()
                .into_iter()
                .map(|p| {
                    assert!(
                        p.kept.as_ref().unwrap().payload.is_none(),
                        "{at}: a payload"
                    );
                    assert!(p.conflicting.as_ref().unwrap().payload.is_none());
                    let checked = check(p, keys.as_ref()).expect("the proof holds up");
                    assert_eq!(checked.fork().origin, au);
                    checked.fork().kind
                })
                .collect()
        };
        wait_until(
            || kinds().contains(&kind),
            &format!("{at} holds a {kind:?} proof"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocation_shown_to_two_nodes_is_proven_everywhere() {
    let net = split_view_net().await;
    let signer = provisioned_signer(&net.fed.nodes[&org(AU)]);
    let (to_hub, _) = signed_chain(&signer, None, 1, "to-hub");
    let (to_br, _) = signed_chain(&signer, None, 1, "to-br");
    assert_ne!(to_hub[0].header, to_br[0].header);

    // Both nodes hold AU at seq 1: by seqs alone they are in sync.
    let _hub = show(&net, HUB, to_hub.clone()).await;
    let _br = show(&net, BR, to_br).await;
    every_node_proves(&net, ForkKind::Equivocation).await;
    let fr: OrgId = org(FR);
    assert_eq!(
        net.vector(&fr).get(&org(AU)),
        Some(&1),
        "FR still took one version"
    );

    // A proof of a third version, sent to FR 256 times in one frame and then again, costs FR
    // one check: a peer cannot make a node check one proof over and over.
    let (third, _) = signed_chain(&signer, None, 1, "third");
    let proof = pb::ForkProof {
        origin: AU.into(),
        seq: 1,
        kept: Some(to_hub[0].clone()),
        conflicting: Some(third[0].clone()),
        detected_at_unix_ms: 0,
    };
    let state = net.node(&fr).state();
    let first_proof = proof.clone();
    let first = (state.receive_evidence(vec![proof.clone(); 256]).await).expect("evidence taken");
    assert_eq!((first.checked, first.added), (1, 1), "{first:?}");
    let again = (state.receive_evidence(vec![proof; 256]).await).expect("evidence taken");
    assert_eq!((again.checked, again.added), (0, 0), "{again:?}");

    // AU's key signs new forks of AU without end: once FR keeps all it keeps of AU, more are
    // not checked at all (they would only be dropped), in the frame that fills it or after.
    let fork_of = |i: usize| {
        let (other, _) = signed_chain(&signer, None, 1, &format!("fork-{i}"));
        pb::ForkProof {
            conflicting: Some(other[0].clone()),
            ..first_proof.clone()
        }
    };
    let kept = state.store.fork_proof_count(&org(AU)).unwrap();
    let room = intelmesh_store::MAX_FORK_PROOFS_PER_ORIGIN - kept;
    let filling = (state.receive_evidence((0..20).map(fork_of).collect()).await).unwrap();
    assert_eq!(
        (filling.checked, filling.added as usize, filling.capped),
        (room, room, 20 - room),
        "{filling:?}"
    );
    let past = (state
        .receive_evidence((20..40).map(fork_of).collect())
        .await)
        .unwrap();
    assert_eq!(
        (past.checked, past.added, past.capped),
        (0, 0, 20),
        "{past:?}"
    );
    // Nor is another version of AU#1 verified, to be refused as an equivocation once more: it
    // is set aside with the entries FR holds.
    let (yet_another, _) = signed_chain(&signer, None, 1, "fork-again");
    let report = state.ingest(yet_another).await.expect("ingested");
    assert_eq!(
        (
            report.duplicates,
            report.chain_rejected.len(),
            report.appended
        ),
        (1, 0, 0),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_chain_break_is_proven_everywhere() {
    let net = split_view_net().await;
    let signer = provisioned_signer(&net.fed.nodes[&org(AU)]);
    let (to_hub, _) = signed_chain(&signer, None, 1, "to-hub");
    let (to_br, _) = signed_chain(&signer, None, 2, "to-br");

    // Wherever the hub's AU#1 meets BR's AU#2 (at the hub, through BR's link; or at BR, when the
    // hub relayed its AU#1 there first), AU#2 does not follow it: a signed chain break.
    let _hub = show(&net, HUB, to_hub.clone()).await;
    let _br = show(&net, BR, to_br).await;
    every_node_proves(&net, ForkKind::ChainBreak).await;
}
