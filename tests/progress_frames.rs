//! Progress frames on a real node's link: whole vectors to a peer that did not ask for
//! changes only, the changed heads to one that did, and one after every batch applied, even
//! a batch that changed nothing (a peer may pace its batches on them).

use std::collections::BTreeMap;
use std::time::Duration;

use intelmesh_proto::v1 as pb;
use intelmesh_tests::net::{org, TestNet};
use intelmesh_tests::raw_peer::{provisioned_signer, signed_chain, Next, PATIENCE};

/// The heads named by each progress frame the peer reads within `wait`.
async fn progress_frames(
    peer: &mut intelmesh_tests::raw_peer::RawPeer,
    wait: Duration,
) -> Vec<BTreeMap<String, u64>> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut out = Vec::new();
    while tokio::time::Instant::now() < deadline {
        match peer.next(Duration::from_millis(200)).await {
            Next::Frame(pb::sync_frame::Frame::Progress(p)) => out.push(
                p.vector
                    .map(|v| v.heads.into_iter().collect())
                    .unwrap_or_default(),
            ),
            Next::End(s) => panic!("link ended: {s:?}"),
            _ => {}
        }
    }
    out
}

/// Opens a raw link into the hub as AU, sends AU's three entries, then has BR publish five
/// domains; the progress frames the hub sent meanwhile, and the entries.
async fn frames_seen(changes_only: bool) -> (Vec<BTreeMap<String, u64>>, Vec<pb::SignedEntry>) {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    net.wait_for_link(&hub, &br).await;
    net.stop(&au).await;
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (log, _) = signed_chain(&signer, None, 3, "progress");
    let mut peer = net.open_as(&hub, &au).await;
    assert!(
        peer.hello_asking("AU-AFP", BTreeMap::new(), changes_only)
            .await
    );
    assert!(peer.entries(log.clone()).await);
    peer.until_progress("AU-AFP", 3, PATIENCE).await.unwrap();
    net.publish_domains(&br, "progress", 5).await;
    net.wait_for(&br, 5, PATIENCE).await.unwrap();
    let mut frames = progress_frames(&mut peer, Duration::from_secs(1)).await;
    // The same entries again: nothing changes, and the batch is acknowledged all the same.
    assert!(peer.entries(log.clone()).await);
    frames.extend(progress_frames(&mut peer, Duration::from_secs(1)).await);
    (frames, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_asked_for_changes_is_sent_only_the_heads_that_moved() {
    let (frames, _) = frames_seen(true).await;
    assert!(
        frames.iter().any(|f| f.get("BR-PF") == Some(&5)),
        "BR's head reaches the peer: {frames:?}"
    );
    for f in &frames {
        assert!(
            f.keys().all(|o| o == "BR-PF"),
            "after AU's own head was reported, only BR's moved: {f:?}"
        );
    }
    assert_eq!(
        frames.last(),
        Some(&BTreeMap::new()),
        "the batch of duplicates is acknowledged with an empty frame: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_did_not_ask_is_sent_whole_vectors() {
    let (frames, _) = frames_seen(false).await;
    assert!(!frames.is_empty());
    for f in &frames {
        assert_eq!(
            f.get("AU-AFP"),
            Some(&3),
            "every frame names AU, unmoved: {f:?}"
        );
    }
    assert_eq!(
        frames.last(),
        Some(&BTreeMap::from([
            ("AU-AFP".to_string(), 3),
            ("BR-PF".to_string(), 5)
        ])),
        "the batch of duplicates is acknowledged with the whole vector"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn empty_batches_earn_no_progress_frames_and_keep_the_link() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let (hub, au) = (org("SG-IGCI"), org("AU-AFP"));
    net.wait_for_link(&hub, &au).await;
    net.stop(&au).await;
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello_asking("AU-AFP", BTreeMap::new(), false).await);
    // Whatever the hub says first (its own progress), then only empty batches from the peer.
    progress_frames(&mut peer, Duration::from_millis(500)).await;
    for _ in 0..200 {
        assert!(peer.entries(Vec::new()).await, "the link took the frame");
    }
    let answered = progress_frames(&mut peer, Duration::from_secs(1)).await;
    assert!(
        answered.is_empty(),
        "{} progress frames for empty batches",
        answered.len()
    );
    // A real batch is still acknowledged on the same link.
    let (log, _) = signed_chain(&provisioned_signer(&net.fed.nodes[&au]), None, 1, "empty");
    assert!(peer.entries(log).await);
    peer.until_progress("AU-AFP", 1, PATIENCE).await.unwrap();
}
