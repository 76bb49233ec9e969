//! Peers that flood, stop reading, fall silent or overrun the hold queue: cut, or their link restarted, while honest updates keep flowing.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn floods_are_cut_while_honest_updates_still_flow() {
    let net = star_without_au().await;
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    let limits = net.node(&hub).state().cfg.limits.clone();
    let before = net.digest(&hub);

    // BR keeps publishing while the hub is flooded.
    let br_state = net.node(&br).state().clone();
    let honest = tokio::spawn(async move {
        let mut last = 0;
        for round in 0..10 {
            let items = (0..5)
                .map(|i| {
                    (
                        green(),
                        intelmesh_tests::net::domain_upsert(&format!(
                            "flood-{round}-{i}.br-pf.example"
                        )),
                    )
                })
                .collect();
            last = *br_state.publish(items).await.unwrap().last().unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last
    });

    // One message over the size cap: tonic refuses to decode it.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    let huge = pb::SignedEntry {
        header: vec![0; 16].into(),
        signature: vec![0; 64].into(),
        payload: Some(vec![7; limits.max_message_bytes + 1].into()),
    };
    assert!(peer.entries(vec![huge]).await);
    let end = peer.end_status(PATIENCE).await;
    assert!(
        matches!(end.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{:?}: {}",
        end.code(),
        end.message()
    );
    assert!(end.message().contains("too large"), "{}", end.message());

    // One entry over the batch cap: refused before anything is verified.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    // Entries of a valid size (an empty one is refused by its shape first).
    let shaped = pb::SignedEntry {
        header: vec![0; 16].into(),
        signature: vec![0; 64].into(),
        payload: None,
    };
    let many = vec![shaped; limits.max_batch_entries + 1];
    assert!(peer.entries(many).await);
    let end = peer.end_status(PATIENCE).await;
    let needle = format!(
        "peer sent {} entries in one batch, more than the {} allowed",
        limits.max_batch_entries + 1,
        limits.max_batch_entries
    );
    check_status(&end, Code::ResourceExhausted, &needle).unwrap();

    let last = honest.await.unwrap();
    net.wait_for(&br, last, PATIENCE).await.unwrap();
    assert_eq!(net.vector(&hub).get(&au), None);
    assert_eq!(net.vector(&hub).get(&br), Some(&last));
    assert_ne!(net.digest(&hub), before, "BR's updates arrived");
    assert_eq!(
        net.digest(&hub),
        net.digest(&br),
        "hub holds exactly BR's log"
    );
}

/// Limits for the stall test: small frames and a short queue, so the bound on what the node
/// buffers for one peer is far below the backlog it has for it.
fn stall_limits() -> Limits {
    Limits {
        max_batch_entries: 64,
        peer_queue_frames: 4,
        ..fast_limits()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_stops_reading_is_cut_and_others_keep_flowing() {
    let specs = intelmesh_node::provision::loopback_specs(HUB, &[AU, BR]).unwrap();
    let links = intelmesh_node::provision::star_links(&specs);
    let mut net = TestNet::new(specs, links, stall_limits()).await;
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    net.stop(&au).await;
    net.wait_link_down(&hub, &au).await;

    // A backlog of ~9 MB for AU: 4000 entries of ~2.2 KB.
    const BACKLOG: usize = 4000;
    for chunk in 0..(BACKLOG / 500) {
        let items = (0..500)
            .map(|i| {
                let mut p = intelmesh_tests::net::domain_upsert(&format!(
                    "bulk-{chunk}-{i}.sg-igci.example"
                ));
                if let Some(pb::payload::Body::Upsert(u)) = &mut p.body {
                    u.description = "x".repeat(2048);
                }
                (green(), p)
            })
            .collect();
        net.node(&hub).state().publish(items).await.unwrap();
    }

    // AU completes the hello and keeps heartbeating, but never reads a frame.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    let beats = peer.keep_alive(Duration::from_millis(200));
    net.wait_for_link(&hub, &au).await;

    // During the stall BR's updates reach the hub, and the hub's reach BR.
    let seqs = net.publish_domains(&br, "during-stall", 5).await;
    net.wait_for(&br, seqs[4], PATIENCE).await.unwrap();
    net.wait_for(&hub, BACKLOG as u64, PATIENCE).await.unwrap();

    let error = net.wait_link_down(&hub, &au).await;
    assert!(
        error.contains("peer did not take queued frames for 3s"),
        "{error}"
    );
    let sent = net.peer_state(&hub, &au).entries_sent as usize;
    // What the hub took from its store for AU is bounded by the queue (4 frames of 64), a few
    // frames in hand (the one being queued, the one tonic is encoding, the one hyper holds) and
    // the client's HTTP/2 stream window (2 MiB; each entry is over 2 KiB, so under 1024 of
    // them): far below the backlog. Observed: 1280.
    let limits = stall_limits();
    let window_entries = (2 << 20) / 2048;
    let bound = (limits.peer_queue_frames + 3) * limits.max_batch_entries + window_entries;
    assert!(
        sent <= bound,
        "hub buffered {sent} entries for a stalled peer (bound {bound})"
    );
    assert!(
        net.peer_state(&hub, &br).connected,
        "BR's link must survive AU's stall"
    );
    let seqs = net.publish_domains(&br, "after-stall", 5).await;
    net.wait_for(&br, seqs[4], PATIENCE).await.unwrap();
    beats.abort();

    // Should AU read on, it gets what was queued and then the reason it was cut (not a clean
    // close).
    let end = peer.end_status(PATIENCE).await;
    check_status(
        &end,
        Code::DeadlineExceeded,
        "peer did not take queued frames for 3s",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_peers_are_cut_after_dead_after() {
    let net = star_without_au().await;
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    let dead_after = net.node(&hub).state().cfg.limits.dead_after();
    assert_eq!(dead_after, Duration::from_secs(3));

    // Sends nothing at all.
    let mut peer = net.open_as(&hub, &au).await;
    let end = peer.end_status(PATIENCE).await;
    check_status(&end, Code::DeadlineExceeded, "peer sent no hello within 3s").unwrap();

    // Says hello, reads everything, then falls silent.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    let hello = match peer.next(PATIENCE).await {
        Next::Frame(pb::sync_frame::Frame::Hello(h)) => h,
        other => panic!("expected the hub's hello, got {other:?}"),
    };
    assert_eq!(hello.org_id, HUB);
    let end = peer.end_status(PATIENCE).await;
    check_status(
        &end,
        Code::DeadlineExceeded,
        "nothing heard from the peer for 3s",
    )
    .unwrap();
    let error = net.wait_link_down(&hub, &au).await;
    assert!(error.contains("nothing heard from the peer"), "{error}");
    assert!(net.peer_state(&hub, &br).connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_past_a_full_hold_queue_restart_the_link_to_be_sent_again() {
    // Entries behind a gap wait in a bounded queue; one past its room is not taken. The sender
    // counts it delivered, so a link kept up would never send it again: it restarts instead.
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (log, _) = signed_chain(&signer, None, 4_200, "gap");
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    // Seq 1 withheld: 4,199 entries wait behind it, more than the 4,096 held per origin.
    for part in log[1..].chunks(1_000) {
        assert!(peer.entries(part.to_vec()).await);
    }
    let status = peer.end_status(PATIENCE).await;
    check_status(
        &status,
        Code::Unavailable,
        "the link restarts so they come again",
    )
    .unwrap();

    // The next link, as a peer resending from the hub's heads would: everything is taken.
    let mut again = net.open_as(&hub, &au).await;
    assert!(again.hello(AU, empty_vector()).await);
    for part in log.chunks(1_000) {
        assert!(again.entries(part.to_vec()).await);
    }
    again.until_progress(AU, 4_200, PATIENCE).await.unwrap();
    assert_eq!(stored(&net, &hub, &au), log);
}
