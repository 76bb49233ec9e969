//! A suspension that races the member's own publishing, on real nodes over mutual TLS. The
//! operators propose a suspension when the hub holds the member up to some seq, and the
//! version ends its key there; the member goes on publishing until the version reaches the
//! hub. Every node then holds the member's log up to that seq and no further (the member's own
//! node keeps what it signed), so the federation's vectors agree again; a reinstatement brings
//! the rest back, the same entries.

use std::time::Duration;

use intelmesh_store::Store;
use intelmesh_tests::net::org;
use intelmesh_tests::roster_net::RosterNet;

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_a_member_published_past_its_suspension_leave_every_other_node() {
    let (hub, sg, au) = (org("HUB"), org("SG-IGCI"), org("AU-AFP"));
    let mut net = RosterNet::with_agencies(&["SG-IGCI", "AU-AFP"]).await;
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
        net.assert_cut_at(o, &sg, end, ("race", 2, 5)).await;
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
