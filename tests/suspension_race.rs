//! A suspension that races the member's own publishing, on real nodes over mutual TLS. The
//! operators propose a suspension when the hub holds the member up to some seq, and the
//! version ends its key there; the member goes on publishing until the version reaches the
//! hub. Every node then holds the member's log up to that seq and no further (the member's own
//! node keeps what it signed), so the federation's vectors agree again; a reinstatement brings
//! the rest back, the same entries.

use std::time::Duration;

use intelmesh_store::Store;
use intelmesh_tests::net::org;
use intelmesh_tests::roster_net::{peer, RosterNet};

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_a_member_published_past_its_suspension_leave_every_other_node() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::new("HUB", &["SG-IGCI", "AU-AFP"]).await;
    net.start(&sg).await;
    net.start(&au).await;
    net.admit_all(&[&sg, &au]).await;
    for o in [&sg, &au] {
        net.wait_status(o, PATIENCE, |s| {
            s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
        })
        .await
        .unwrap();
    }
    let seqs = net.publish_domains(&sg, "race", 5).await;
    for o in [&hub, &au] {
        net.wait_holds(o, &sg, seqs[4]).await.unwrap();
    }

    // Proposed when the hub held SG up to the second item; published after the other three
    // (and SG's checkpoints) reached the hub and AU.
    let end = seqs[1];
    let roster = net.suspend_at(&sg, end).await;
    assert_eq!(roster.version(), 3);
    for o in [&hub, &au] {
        net.wait_status(o, PATIENCE, |s| {
            s.roster_version == 3 && s.vector.get("SG-IGCI") == Some(&end)
        })
        .await
        .unwrap_or_else(|e| panic!("{o} holds SG up to its key's end, #{end}: {e}"));
        let state = net.node(o).state();
        assert_eq!(state.store.head(&sg).unwrap().map(|h| h.seq), Some(end));
        for i in 0..2 {
            assert!(
                net.finds_domain(o, &sg, "race", i).await,
                "{o} keeps item {i}"
            );
        }
        for i in 2..5 {
            assert!(
                !net.finds_domain(o, &sg, "race", i).await,
                "{o} no longer shows item {i}, signed past the key's end"
            );
        }
        let keys = state.keys();
        let check = intelmesh_store::verify_store(&state.store, Some(keys.as_ref()))
            .expect("verify-store runs");
        assert!(check.is_ok(), "{o}: {:?}", check.problems);
    }
    // The member's own node follows the version and keeps what it signed.
    net.deliver_version(&sg, 3).await;
    let own = net.node(&sg).state();
    assert!(own
        .store
        .head(&sg)
        .unwrap()
        .is_some_and(|h| h.seq >= seqs[4]));
    for i in 0..5 {
        assert!(
            net.finds_domain(&sg, &sg, "race", i).await,
            "SG keeps item {i}"
        );
    }

    // Reinstated: the hub and AU take the same entries in again.
    net.reinstate(&sg).await;
    net.deliver_version(&sg, 4).await;
    for o in [&hub, &au] {
        net.wait_holds(o, &sg, seqs[4])
            .await
            .unwrap_or_else(|e| panic!("{o} takes SG's entries in again: {e}"));
        for i in 0..5 {
            assert!(
                net.finds_domain(o, &sg, "race", i).await,
                "{o} shows item {i}"
            );
        }
        assert_eq!(net.status(o).fork_proofs, 0, "{o}: no fork seen");
    }
    for o in [hub, sg, au] {
        net.stop(&o).await;
    }
}
