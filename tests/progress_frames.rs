//! Progress frames on a real node's link: whole vectors to a peer that did not ask for
//! changes only, the changed heads to one that did (less those it was just sent as entries,
//! if it asked for that too), and one after every batch applied, even a batch that changed
//! nothing (a peer may pace its batches on them).

use std::collections::BTreeMap;
use std::time::Duration;

use intelmesh_proto::v1 as pb;
use intelmesh_tests::net::{org, TestNet};
use intelmesh_tests::raw_peer::{provisioned_signer, signed_chain, Next, PATIENCE};

/// What a raw peer read from the node: the heads named by each progress frame, and the
/// highest seq of each origin it was sent as entries.
#[derive(Default)]
struct Seen {
    frames: Vec<BTreeMap<String, u64>>,
    sent: BTreeMap<String, u64>,
}

/// The heads named by each progress frame the peer reads within `wait`.
async fn progress_frames(
    peer: &mut intelmesh_tests::raw_peer::RawPeer,
    wait: Duration,
) -> Vec<BTreeMap<String, u64>> {
    read_for(peer, wait).await.frames
}

/// The frames the peer reads within `wait`.
async fn read_for(peer: &mut intelmesh_tests::raw_peer::RawPeer, wait: Duration) -> Seen {
    let deadline = tokio::time::Instant::now() + wait;
    let mut seen = Seen::default();
    while tokio::time::Instant::now() < deadline {
        match peer.next(Duration::from_millis(200)).await {
            Next::Frame(pb::sync_frame::Frame::Progress(p)) => seen.frames.push(
                p.vector
                    .map(|v| v.heads.into_iter().collect())
                    .unwrap_or_default(),
            ),
            Next::Frame(pb::sync_frame::Frame::Entries(batch)) => {
                for e in batch.entries {
                    let h = <pb::EntryHeader as prost::Message>::decode(e.header.as_ref())
                        .expect("a header the node signed or relayed");
                    let top = seen.sent.entry(h.origin).or_insert(0);
                    *top = (*top).max(h.seq);
                }
            }
            Next::End(s) => panic!("link ended: {s:?}"),
            _ => {}
        }
    }
    seen
}

/// What the raw peer's hello asks of progress frames.
#[derive(Clone, Copy)]
struct Asks {
    changes_only: bool,
    omits_sent: bool,
}

const WHOLE: Asks = Asks {
    changes_only: false,
    omits_sent: false,
};
const CHANGES: Asks = Asks {
    changes_only: true,
    omits_sent: false,
};

/// Opens a raw link into the hub as AU, sends AU's three entries, then has BR publish five
/// domains; what the hub sent meanwhile.
async fn frames_seen(asks: Asks) -> Seen {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    net.wait_for_link(&hub, &br).await;
    net.stop(&au).await;
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (log, _) = signed_chain(&signer, None, 3, "progress");
    let mut peer = net.open_as(&hub, &au).await;
    assert!(
        peer.hello_with(
            "AU-AFP",
            BTreeMap::new(),
            asks.changes_only,
            asks.omits_sent
        )
        .await
    );
    assert!(peer.entries(log.clone()).await);
    peer.until_progress("AU-AFP", 3, PATIENCE).await.unwrap();
    net.publish_domains(&br, "progress", 5).await;
    net.wait_for(&br, 5, PATIENCE).await.unwrap();
    let mut seen = read_for(&mut peer, Duration::from_secs(1)).await;
    // The same entries again: nothing changes, and the batch is acknowledged all the same.
    assert!(peer.entries(log).await);
    let after = read_for(&mut peer, Duration::from_secs(1)).await;
    seen.frames.extend(after.frames);
    seen.sent.extend(after.sent);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_asked_for_changes_is_sent_only_the_heads_that_moved() {
    let frames = frames_seen(CHANGES).await.frames;
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
    let frames = frames_seen(WHOLE).await.frames;
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
async fn a_peer_that_asked_to_omit_what_it_was_sent_is_not_told_those_heads() {
    let seen = frames_seen(Asks {
        changes_only: true,
        omits_sent: true,
    })
    .await;
    assert_eq!(
        seen.sent.get("BR-PF"),
        Some(&5),
        "BR's entries reach the peer as entries"
    );
    for f in &seen.frames {
        assert!(
            !f.contains_key("BR-PF"),
            "BR's head went as its entries, not in a progress frame: {:?}",
            seen.frames
        );
    }
    assert_eq!(
        seen.frames.last(),
        Some(&BTreeMap::new()),
        "the batch of duplicates is still acknowledged, with an empty frame: {:?}",
        seen.frames
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
