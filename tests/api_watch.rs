//! `Indicators.Watch`: replay from a cursor, then live, never missing or repeating an event.

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_tests::api::*;
use intelmesh_tests::net::{org, TestNet};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_from_a_cursor_without_missing_or_repeating() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let mut at_au = net.client(&au).await;
    let mut at_br = net.client(&br).await;
    let only_domains = pb::Filter {
        types: vec![Ty::Domain as i32],
        ..Default::default()
    };
    // AU seq 1..=6: five domains with an IP (filtered out) in the middle.
    let mut first = domains(0, 5, Tlp::Green);
    first.insert(2, upsert(Ty::Ipv4, "192.0.2.1", Tlp::Green, &[]));
    submit(&mut at_au, first).await;
    net.wait_for(&au, 6, PATIENCE).await.unwrap();

    // Live only: a watch from now on sees nothing of the past.
    let mut live = watch(&mut at_br, only_domains.clone(), "", false).await;
    let mut replay = watch(&mut at_br, only_domains.clone(), "", true).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let ev = next_event(&mut replay).await;
        got.push((
            ev.origin.clone(),
            ev.seq,
            value_of(ev.state.as_ref().unwrap()),
            ev.cursor,
        ));
    }
    let seqs: Vec<_> = got.iter().map(|g| g.1).collect();
    assert_eq!(seqs, [1, 2, 4, 5, 6], "the IP at seq 3 is filtered out");
    assert_eq!(got[2].2, "w2.example");
    let cursor = got[1].3.clone();
    drop(replay);

    // More changes from two origins while nobody follows: AU's domains, BR's own sighting.
    submit(&mut at_au, domains(5, 8, Tlp::Green)).await;
    at_br
        .report_sighting(sighting("w0.example", 1))
        .await
        .expect("sighting");
    net.wait_for(&au, 9, PATIENCE).await.unwrap();

    let first_live = next_event(&mut live).await;
    assert!(
        (first_live.origin.as_str(), first_live.seq) > ("AU-AFP", 6),
        "a live watch starts after what existed: {first_live:?}"
    );

    // Resuming after the second event gives everything after it, exactly once, in log order.
    let mut resumed = watch(&mut at_br, only_domains, &cursor, false).await;
    let mut after = Vec::new();
    for _ in 0..7 {
        let ev = next_event(&mut resumed).await;
        after.push((ev.origin, ev.seq));
    }
    let expected: Vec<(String, u64)> = [4, 5, 6, 7, 8, 9]
        .into_iter()
        .map(|s| ("AU-AFP".to_string(), s))
        .chain([("BR-PF".to_string(), 1)])
        .collect();
    assert_eq!(after, expected);
    // Then live: the next change shows up on the same stream.
    submit(&mut at_au, domains(8, 9, Tlp::Green)).await;
    let ev = next_event(&mut resumed).await;
    assert_eq!((ev.origin.as_str(), ev.seq), ("AU-AFP", 10));
    assert_eq!(value_of(ev.state.as_ref().unwrap()), "w8.example");

    let e = at_br
        .watch(pb::WatchRequest {
            cursor: "zz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // Open watches do not keep a stopping node alive: their streams end, and the store opens
    // again (the store's lock goes only once nothing holds the node's state).
    let mut net = net;
    net.stop(&br).await;
    let end = tokio::time::timeout(PATIENCE, resumed.message()).await;
    assert!(matches!(end, Ok(Err(_)) | Ok(Ok(None))), "{end:?}");
    net.start(&br).await;
    drop(live);
}
