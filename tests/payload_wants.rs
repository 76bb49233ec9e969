//! A stub that arrives before its payload: the node asks its peers for the payload (`Want`), and
//! gets it from one that holds it and may send it, whatever order the mesh delivered things in.

use std::time::{Duration, Instant};

use intelmesh_core::indicator::normalize;
use intelmesh_core::{Distribution, IndicatorType, OrgId, Tlp};
use intelmesh_node::provision::loopback_specs;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use intelmesh_tests::api::{next_event, value_of, watch};
use intelmesh_tests::net::{domain_upsert, fast_limits, org, TestNet};

const PATIENCE: Duration = Duration::from_secs(20);
const SECRET: &str = "stub-first-c2.example";

fn holds_secret(net: &TestNet, at: &OrgId) -> bool {
    let indicator = normalize(IndicatorType::Domain, SECRET).unwrap();
    let store = &net.node(at).state().store;
    store.indicator(&indicator).unwrap().is_some()
}

fn stored_is_stub(net: &TestNet, at: &OrgId, origin: &OrgId) -> bool {
    let entries = net.node(at).state().store.range(origin, 1, 1).unwrap();
    assert_eq!(entries.len(), 1, "{at} holds {origin}#1");
    entries[0].payload.is_none()
}

fn wants(net: &TestNet, at: &OrgId) -> Vec<(String, u64)> {
    let owed = net.node(at).state().wants.snapshot();
    owed.into_iter()
        .map(|(o, seq)| (o.to_string(), seq))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recipient_that_got_the_stub_first_is_sent_the_payload_later() {
    let specs = loopback_specs("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).unwrap();
    let (hub, au, br, fr) = (
        org("SG-IGCI"),
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
    );
    // A ring AU - FR - BR - SG - AU. FR is no recipient: it can pass on only the stub.
    let links = vec![
        (au.clone(), fr.clone()),
        (fr.clone(), br.clone()),
        (br.clone(), hub.clone()),
        (au.clone(), hub.clone()),
    ];
    let mut net = TestNet::new(specs, links, fast_limits()).await;
    net.stop(&hub).await;
    net.stop(&br).await;

    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![br.clone()],
    };
    let seqs = net
        .node(&au)
        .state()
        .publish(vec![(red, domain_upsert(SECRET))])
        .await
        .unwrap();
    assert_eq!(seqs, vec![1]);
    net.wait_for(&au, 1, PATIENCE).await.unwrap();
    assert!(stored_is_stub(&net, &fr, &au));
    assert!(wants(&net, &fr).is_empty(), "FR is owed nothing");

    // BR comes up beside FR only: it gets the stub, and FR may not give it the payload.
    net.stop(&au).await;
    net.start(&br).await;
    net.wait_for(&au, 1, PATIENCE).await.unwrap();
    assert!(stored_is_stub(&net, &br, &au));
    let owed = vec![(au.to_string(), 1)];
    assert_eq!(wants(&net, &br), owed);
    // An operator sees it: in the status and the metrics.
    let status = intelmesh_node::api::status::status(net.node(&br).state()).unwrap();
    assert_eq!(status.payloads_owed, 1);
    let metrics = intelmesh_node::metrics::render(net.node(&br).state()).unwrap();
    assert!(
        metrics.lines().any(|l| l == "intelmesh_payloads_owed 1"),
        "{metrics}"
    );
    // Wants live in memory: a restart finds them again in the store (in the background).
    net.stop(&br).await;
    net.start(&br).await;
    let start = Instant::now();
    while wants(&net, &br) != owed {
        assert!(
            start.elapsed() < PATIENCE,
            "the restarted BR forgot its want"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A service at BR watches for changes from now on.
    let mut client = net.client(&br).await;
    let mut watching = watch(&mut client, pb::Filter::default(), "", false).await;

    // The hub comes back (it relays, so it is owed the payload too, sealed, and BR can give it
    // only the stub), then the origin: the hub gets the envelope from AU and passes it to BR,
    // which opens it.
    net.start(&hub).await;
    net.start(&au).await;
    let start = Instant::now();
    while !holds_secret(&net, &br) {
        assert!(
            start.elapsed() < PATIENCE,
            "BR never got the payload; it wants {:?}",
            wants(&net, &br)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!stored_is_stub(&net, &br, &au));
    // The watcher learns of the payload when it is filled in, once.
    let ev = next_event(&mut watching).await;
    assert_eq!((ev.origin.as_str(), ev.seq), ("AU-AFP", 1));
    assert_eq!(value_of(ev.state.as_ref().unwrap()), SECRET);
    let mut resumed = watch(&mut client, pb::Filter::default(), &ev.cursor, false).await;
    let again = tokio::time::timeout(Duration::from_millis(300), resumed.message()).await;
    assert!(
        again.is_err(),
        "resuming after the fill repeats it: {again:?}"
    );
    assert!(
        wants(&net, &br).is_empty(),
        "a filled stub is no longer wanted"
    );
    assert!(
        !stored_is_stub(&net, &hub, &au),
        "the relay holds the payload, sealed"
    );
    assert!(
        !holds_secret(&net, &hub),
        "the relay cannot read what it holds"
    );
    assert!(
        !holds_secret(&net, &fr),
        "FR still has no trace of the payload"
    );
    assert!(stored_is_stub(&net, &fr, &au));
    let check = intelmesh_store::verify_store(&net.node(&br).state().store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.stubs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn asking_for_a_payload_one_may_not_see_gets_nothing() {
    use intelmesh_tests::raw_peer::Next;
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (hub, au, br, fr) = (
        org("SG-IGCI"),
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
    );
    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![br.clone()],
    };
    let open = intelmesh_tests::net::green();
    net.node(&au)
        .state()
        .publish(vec![
            (red, domain_upsert(SECRET)),
            (open, domain_upsert("open-c2.example")),
        ])
        .await
        .unwrap();
    net.wait_for(&au, 2, PATIENCE).await.unwrap();
    assert!(
        !stored_is_stub(&net, &hub, &au),
        "the hub holds AU#1 sealed"
    );
    assert!(!holds_secret(&net, &hub), "and cannot read it");

    // FR, which holds AU#1 as a stub, asks the hub for both payloads over a link of its own.
    net.stop(&fr).await;
    let mut peer = net.open_as(&hub, &fr).await;
    let holds_all = [(au.to_string(), 2)].into_iter().collect();
    assert!(peer.hello(fr.as_str(), holds_all).await);
    let _beat = peer.keep_alive(Duration::from_millis(200));
    let ask = |seq| pb::EntryRef {
        origin: au.to_string(),
        seq,
    };
    // Malformed asks ride along: they are ignored, the link stays up.
    let malformed = pb::EntryRef {
        origin: "no such org!".repeat(1000),
        seq: 1,
    };
    let want = pb::Want {
        entries: vec![malformed, ask(0), ask(1), ask(2)],
    };
    assert!(peer.send(pb::sync_frame::Frame::Want(want)).await);

    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while got.is_empty() {
        assert!(Instant::now() < deadline, "the GREEN payload never came");
        match peer.next(Duration::from_millis(200)).await {
            Next::Frame(pb::sync_frame::Frame::Entries(b)) => got.extend(b.entries),
            Next::End(s) => panic!("link ended: {s:?}"),
            _ => {}
        }
    }
    // Anything else the hub would send comes right behind; give it a moment to show.
    let behind_until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < behind_until {
        if let Next::Frame(pb::sync_frame::Frame::Entries(b)) =
            peer.next(Duration::from_millis(200)).await
        {
            got.extend(b.entries);
        }
    }
    let seqs: Vec<(u64, bool)> = got
        .iter()
        .map(|e| {
            let h = intelmesh_node::state::header_of(e).unwrap();
            (h.seq, e.payload.is_some())
        })
        .collect();
    assert_eq!(seqs, vec![(2, true)], "only the GREEN payload is sent");

    // An ask settled on this link is not served again: a 15 KB frame repeated must not buy
    // megabytes of reads and sends each time.
    let again = pb::Want {
        entries: vec![ask(2), ask(1)],
    };
    assert!(peer.send(pb::sync_frame::Frame::Want(again)).await);
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet_until {
        match peer.next(Duration::from_millis(200)).await {
            Next::Frame(pb::sync_frame::Frame::Entries(b)) => {
                panic!("served again: {} entries", b.entries.len())
            }
            Next::End(s) => panic!("link ended: {s:?}"),
            Next::Frame(_) | Next::Quiet => {}
        }
    }
    // An honest node asks for at most a batch's worth in one frame, and no batch is larger
    // than this; more ends the link.
    let max = intelmesh_node::config::MAX_BATCH_ENTRIES as u64;
    let huge = pb::Want {
        entries: (1..=max + 1).map(ask).collect(),
    };
    assert!(peer.send(pb::sync_frame::Frame::Want(huge)).await);
    let status = peer.end_status(PATIENCE).await;
    intelmesh_tests::raw_peer::check_status(
        &status,
        tonic::Code::ResourceExhausted,
        "more than any node puts in one frame",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_owed_stub_held_for_a_gap_is_wanted_once_it_is_logged() {
    use intelmesh_core::entry::withheld_stub;
    use intelmesh_tests::raw_peer::provisioned_signer;
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    net.stop(&hub).await;
    // Two RED entries of AU for BR, signed outside AU's node.
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![br.clone()],
    };
    let now = intelmesh_core::now_unix_ms();
    let (first, head) = signer.sign_next(None, now, &red, &domain_upsert("held-1.example"));
    let (second, _) = signer.sign_next(Some(head), now, &red, &domain_upsert("held-2.example"));

    // Posing as the hub, a link hands BR the stubs out of order: #2 waits for #1.
    let peer = net.open_as(&br, &hub).await;
    assert!(peer.hello(hub.as_str(), Default::default()).await);
    assert!(peer.entries(vec![withheld_stub(&second)]).await);
    let start = Instant::now();
    while net.node(&br).state().store.held_count() == 0 {
        assert!(start.elapsed() < PATIENCE, "BR never held #2");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(wants(&net, &br).is_empty(), "a held stub is not logged yet");
    assert!(peer.entries(vec![withheld_stub(&first)]).await);
    let owed: Vec<(String, u64)> = vec![(au.to_string(), 1), (au.to_string(), 2)];
    let start = Instant::now();
    while wants(&net, &br) != owed {
        assert!(
            start.elapsed() < PATIENCE,
            "BR wants {:?}",
            wants(&net, &br)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
