//! Idempotent publishing through the real gRPC API: a `Submit` or `ReportSighting` repeated
//! with the same idempotency key signs nothing and gets the first answer, also after the node
//! restarts; a key reused for another request is refused; keys are the calling service's own.

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_store::Store;
use intelmesh_tests::api::*;
use intelmesh_tests::net::{org, TestNet};
use tonic::Code;

fn keyed(key: &str, submissions: Vec<pb::Submission>) -> pb::SubmitRequest {
    pb::SubmitRequest {
        submissions,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn send(c: &mut Client, r: pb::SubmitRequest) -> Result<pb::SubmitResponse, tonic::Status> {
    c.submit(r).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_repeated_submit_signs_nothing_and_gets_the_first_answer_across_a_restart() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let mut c = net.client(&au).await;
    let request = keyed(
        "retry-1",
        vec![
            upsert(Ty::Domain, "evil[.]example", Tlp::Green, &["c2"]),
            upsert(Ty::Ipv4, "192.0.2.7", Tlp::Amber, &[]),
        ],
    );
    let first = send(&mut c, request.clone()).await.unwrap();
    assert!(!first.replayed);
    let seqs: Vec<u64> = first.assigned.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, [1, 2]);
    let vector = net.vector(&au);
    let digest = net.digest(&au);

    let again = send(&mut c, request.clone()).await.unwrap();
    assert!(again.replayed, "the repeat says it is one");
    assert_eq!(again.assigned, first.assigned, "the first call's entries");
    assert_eq!(net.vector(&au), vector, "nothing signed by the repeat");
    assert_eq!(net.digest(&au), digest);

    // The receipt is as durable as the entries: a restarted node still knows the key.
    net.stop(&au).await;
    net.start(&au).await;
    let mut c = net.client(&au).await;
    let after_restart = send(&mut c, request.clone()).await.unwrap();
    assert!(after_restart.replayed);
    assert_eq!(after_restart.assigned, first.assigned);
    assert_eq!(net.vector(&au), vector);
    let logged = net.node(&au).state().store.range(&au, 1, 10).unwrap();
    assert_eq!(logged.len(), 2, "one set of entries in the log");

    // The same key for another request is refused, and signs nothing either.
    let other = keyed(
        "retry-1",
        vec![upsert(Ty::Domain, "other.example", Tlp::Green, &[])],
    );
    let e = send(&mut c, other.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message()
            .contains("idempotency key reused for a different request"),
        "{}",
        e.message()
    );
    assert_eq!(net.vector(&au), vector);
    // A new key publishes it; no key at all publishes every time.
    let fresh = send(&mut c, keyed("retry-2", other.submissions.clone()))
        .await
        .unwrap();
    assert_eq!((fresh.replayed, fresh.assigned[0].seq), (false, 3));
    for seq in [4, 5] {
        let plain = send(&mut c, keyed("", other.submissions.clone()))
            .await
            .unwrap();
        assert_eq!((plain.replayed, plain.assigned[0].seq), (false, seq));
    }

    let e = send(&mut c, keyed(&"k".repeat(257), other.submissions.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("over the 256 allowed"),
        "{}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeats_sent_together_publish_once_and_sightings_are_keyed_too() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let request = keyed("burst", domains(0, 50, Tlp::Green));
    // Five clients send the same request at once: one signs, the others wait for its receipt.
    let mut calls = Vec::new();
    for _ in 0..5 {
        let mut c = net.client(&au).await;
        let r = request.clone();
        calls.push(tokio::spawn(async move { send(&mut c, r).await }));
    }
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap().unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert!(answers.windows(2).all(|w| w[0].assigned == w[1].assigned));
    assert_eq!(net.vector(&au)[&au], 50);

    let mut c = net.client(&au).await;
    let seen = pb::ReportSightingRequest {
        idempotency_key: "sighting-1".into(),
        ..sighting("w1.example", 3)
    };
    let first = c.report_sighting(seen.clone()).await.unwrap().into_inner();
    let again = c.report_sighting(seen.clone()).await.unwrap().into_inner();
    assert_eq!((first.replayed, again.replayed), (false, true));
    assert_eq!(first.assigned, again.assigned);
    assert_eq!(net.vector(&au)[&au], 51);
    let state = get(&mut c, Ty::Domain, "w1.example").await.state.unwrap();
    assert_eq!(state.sightings[0].count, 3, "counted once");
    // A key is per call: the sighting's key on a Submit is another request.
    let e = send(&mut c, keyed("sighting-1", domains(0, 1, Tlp::Green)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_service_has_its_own_keys() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let p = &net.fed.nodes[&au];
    let ca = intelmesh_node::pki::Ca::load(&p.api_ca, &p.dir.join("service-ca.key")).unwrap();
    let other = tempfile::tempdir().unwrap();
    ca.issue_service(&au, "firewall")
        .unwrap()
        .write(other.path(), "firewall")
        .unwrap();
    let ch = intelmesh_node::client::api_channel(
        net.node(&au).api_addr,
        &au,
        &p.api_ca,
        &other.path().join("firewall.pem"),
        &other.path().join("firewall.key"),
    )
    .await
    .unwrap();
    let mut firewall = IndicatorsClient::new(ch);
    let mut soc = net.client(&au).await;

    let a = send(&mut soc, keyed("k", domains(0, 1, Tlp::Green)))
        .await
        .unwrap();
    // The same key from another service is that service's own: its request is published.
    let b = send(&mut firewall, keyed("k", domains(1, 2, Tlp::Green)))
        .await
        .unwrap();
    let c = send(&mut firewall, keyed("k", domains(0, 1, Tlp::Green)))
        .await
        .unwrap_err();
    assert_eq!((a.assigned[0].seq, b.assigned[0].seq), (1, 2));
    assert!(!a.replayed && !b.replayed);
    assert_eq!(c.code(), Code::FailedPrecondition, "firewall's k is taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publication_whose_caller_went_away_keeps_the_lock_until_it_is_written() {
    // A reset HTTP/2 stream or a cancelled call drops the caller's wait, not the work: were the
    // publish lock dropped with it while the signing thread ran on, the next publication would
    // read the same head and sign a second entry at the same seq (a fork of this node's log).
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let state = net.node(&au).state().clone();
    let (rounds, big) = (10u64, 2_000u64);
    for round in 0..rounds {
        let items = (0..big)
            .map(|i| {
                let value = format!("r{round}-{i}.au-afp.example");
                (
                    intelmesh_tests::net::green(),
                    intelmesh_tests::net::domain_upsert(&value),
                )
            })
            .collect();
        let gone =
            tokio::time::timeout(std::time::Duration::from_micros(300), state.publish(items)).await;
        assert!(
            gone.is_err(),
            "round {round}: the caller left before the end"
        );
        let value = format!("after-{round}.au-afp.example");
        let items = vec![(
            intelmesh_tests::net::green(),
            intelmesh_tests::net::domain_upsert(&value),
        )];
        // Before or after the dropped one, never beside it: each publication reads the head
        // the other left.
        let seqs = state.publish(items).await.expect("signed beside no other");
        assert_eq!(seqs.len(), 1, "round {round}");
    }
    // Every entry signed once, at its own seq: the head counts them all, and no fork of this
    // node's own log was recorded.
    let done = rounds * (big + 1);
    intelmesh_tests::raw_peer::wait_until(
        || state.store.head(&au).ok().flatten().map(|h| h.seq) == Some(done),
        "every publication written",
    )
    .await;
    assert!(state.store.fork_proofs().unwrap().is_empty());
}
