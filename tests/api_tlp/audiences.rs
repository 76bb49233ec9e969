//! Audiences judged at submit: one past what every index keeps is refused (also for two publications judged at once), and a sighting no wider than its value is known here.

use super::*;

/// Every audience of [`MEMBERS`]: AMBER+STRICT and RED to each non-empty set of them, and
/// the three open levels (17).
fn every_audience() -> Vec<(Tlp, Vec<&'static str>)> {
    let mut audiences: Vec<(Tlp, Vec<&str>)> = Vec::new();
    for tlp in [Tlp::AmberStrict, Tlp::Red] {
        for set in 1..8usize {
            let names = (0..3).filter(|b| set & (1 << b) != 0).map(|b| MEMBERS[b]);
            audiences.push((tlp, names.collect()));
        }
    }
    audiences.extend([Tlp::Clear, Tlp::Green, Tlp::Amber].map(|t| (t, Vec::new())));
    audiences
}

/// Every node's index keeps an origin's first 16 audiences (TLP level and recipients) of one
/// value; the node refuses to sign a 17th, which no reader would ever see, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audience_past_what_every_index_keeps_is_refused_at_submit() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let mut at_au = net.client(&org("AU-AFP")).await;
    let audiences = every_audience();
    let to = |(tlp, recipients): &(Tlp, Vec<&str>)| {
        let mut s = upsert(Ty::Domain, "crowded.example", *tlp, &["c2"]);
        s.distribution = dist(*tlp, recipients);
        s
    };
    let (first_16, last) = audiences.split_at(16);
    assert_eq!(last.len(), 1);

    let all: Vec<_> = audiences.iter().map(to).collect();
    let refused = submit_refused(&mut at_au, all).await;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("crowded.example")
            && refused.message().contains("more than 16 audiences"),
        "{}",
        refused.message()
    );
    assert_eq!(
        submit(&mut at_au, first_16.iter().map(to).collect())
            .await
            .len(),
        16
    );
    let refused = submit_refused(&mut at_au, vec![to(&last[0])]).await;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    // An audience already held is updated as ever.
    assert_eq!(submit(&mut at_au, vec![to(&first_16[3])]).await.len(), 1);
    let held = get(&mut at_au, Ty::Domain, "crowded.example").await;
    let state = held.state.expect("the value is held");
    // Sixteen audiences and the update signed; nothing for the refused calls.
    let seqs: Vec<u64> = state.assertions.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, [17], "the origin's latest assertion: {state:?}");
}

/// Two publications judged against the same signed state, each under the cap alone, cannot
/// pass it together: the second is judged again under the publish lock and refused. A
/// publication judged at the head it is signed on is not judged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_publications_judged_at_once_cannot_pass_the_audience_cap_together() {
    use intelmesh_node::api::audience_rejudge;
    use intelmesh_node::api::submission::{submissions, Publisher};
    use intelmesh_node::own_entries::Rejudge;
    use intelmesh_node::state::NodeError;

    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let state = std::sync::Arc::clone(net.node(&org("AU-AFP")).state());
    let audiences = every_audience();
    let to = |(tlp, recipients): &(Tlp, Vec<&str>)| {
        let mut s = upsert(Ty::Domain, "raced.example", *tlp, &["c2"]);
        s.distribution = dist(*tlp, recipients);
        s
    };
    let member_ids = MEMBERS.iter().map(|m| org(m)).collect();
    let publisher = Publisher {
        org: &state.org,
        members: &member_ids,
        now: now_unix_ms(),
    };
    let prepared = |a: &(Tlp, Vec<&str>)| submissions(&[to(a)], &publisher).expect("valid");
    let pairs = |p: Vec<intelmesh_node::api::submission::Prepared>| {
        p.into_iter()
            .map(|p| (p.distribution, p.payload))
            .collect::<Vec<_>>()
    };
    let (first_15, rest) = audiences.split_at(15);
    let held: Vec<_> = first_15.iter().flat_map(prepared).collect();
    state.publish(pairs(held)).await.expect("15 audiences");

    // Both judged now, against 15 audiences held: each alone would be the 16th.
    let judged_at = state.own_head_seq();
    assert_eq!(judged_at, 15);
    let (a, b) = (prepared(&rest[0]), prepared(&rest[1]));
    let (judge_a, judge_b) = (
        audience_rejudge(judged_at, &a),
        audience_rejudge(judged_at, &b),
    );
    let seqs = state
        .publish_rejudged(pairs(a), Some(judge_a))
        .await
        .expect("judged at the head it is signed on");
    assert_eq!(seqs, [16]);
    let refused = state.publish_rejudged(pairs(b), Some(judge_b)).await;
    match refused {
        Err(NodeError::Rejudged(why)) => {
            assert!(
                why.contains("raced.example") && why.contains("more than 16 audiences"),
                "{why}"
            )
        }
        other => panic!("the 17th audience was not refused under the lock: {other:?}"),
    }
    assert_eq!(
        state.own_head_seq(),
        16,
        "nothing signed for the refused one"
    );

    // A check that would refuse is not made again when nothing was signed since.
    let never = |judged_at| Rejudge {
        judged_at,
        check: Box::new(|_| Err("judged again".to_string())),
    };
    let again = prepared(&rest[0]);
    let seqs = state
        .publish_rejudged(pairs(again.clone()), Some(never(16)))
        .await
        .expect("not judged again");
    assert_eq!(seqs, [17]);
    let refused = state.publish_rejudged(pairs(again), Some(never(16))).await;
    assert!(
        matches!(&refused, Err(NodeError::Rejudged(why)) if why == "judged again"),
        "{refused:?}"
    );
}

/// A recipient's sighting of a value it was told under RED names the value (so does one of a
/// value within it: a subdomain, a URL on one): at the tools' default AMBER it would publish
/// it in the clear to every member and the hub. The node refuses it, naming who may read the value; a RED sighting to those readers goes out, and
/// none of the others can read the value; `share_wider` (what the agency knows on its own)
/// lets a wider one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sighting_wider_than_its_value_is_known_here_is_refused() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (au, br, fr) = (org("AU-AFP"), org("BR-PF"), org("FR-OCLCTIC"));
    let mut at_au = net.client(&au).await;
    let mut s = upsert(Ty::Domain, "told.example", Tlp::Red, &["c2"]);
    s.distribution = dist(Tlp::Red, &["BR-PF"]);
    let seq = submit(&mut at_au, vec![s]).await[0].seq;
    let patience = std::time::Duration::from_secs(20);
    net.wait_for(&au, seq, patience).await.unwrap();
    let mut at_br = net.client(&br).await;
    // The node has opened it: the value is known here, as AU's RED to BR.
    assert!(get(&mut at_br, Ty::Domain, "told.example")
        .await
        .state
        .is_some());

    let amber = pb::ReportSightingRequest {
        distribution: dist(Tlp::Amber, &[]),
        ..sighting("told.example", 1)
    };
    let refused = at_br
        .report_sighting(amber.clone())
        .await
        .expect_err("an AMBER sighting of a value told under RED");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let why = refused.message();
    assert!(
        why.contains("told.example")
            && why.contains("AU-AFP, BR-PF")
            && why.contains("share_wider"),
        "{why}"
    );
    // Nor of a value within it, which shows it: a subdomain, a URL on one.
    let within = pb::ReportSightingRequest {
        distribution: dist(Tlp::Amber, &[]),
        ..sighting("c2.told.example", 1)
    };
    let refused = (at_br.report_sighting(within).await)
        .expect_err("an AMBER sighting of a subdomain of a value told under RED");
    let why = refused.message();
    assert!(
        why.contains("told.example (named by c2.told.example)") && why.contains("AU-AFP, BR-PF"),
        "{why}"
    );
    let url = upsert(Ty::Url, "http://c2.told.example/gate", Tlp::Green, &[]);
    let refused = submit_refused(&mut at_br, vec![url]).await;
    assert!(
        refused.message().contains("told.example (named by"),
        "{refused:?}"
    );
    // Nor an upsert of it to every member.
    let refused = submit_refused(
        &mut at_br,
        vec![upsert(Ty::Domain, "told.example", Tlp::Green, &[])],
    )
    .await;
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    // RED to the origin: published, and read by the origin only.
    let red = pb::ReportSightingRequest {
        distribution: dist(Tlp::Red, &["AU-AFP"]),
        ..sighting("told.example", 2)
    };
    let seq = at_br
        .report_sighting(red)
        .await
        .unwrap()
        .into_inner()
        .assigned[0]
        .seq;
    net.wait_for(&br, seq, patience).await.unwrap();
    let seen_at_au = get(&mut at_au, Ty::Domain, "told.example").await;
    let sightings = seen_at_au.state.expect("AU reads it").sightings;
    assert!(
        sightings
            .iter()
            .any(|x| x.origin == "BR-PF" && x.count == 2),
        "{sightings:?}"
    );
    let mut at_fr = net.client(&fr).await;
    assert_eq!(
        get(&mut at_fr, Ty::Domain, "told.example").await.state,
        None
    );

    // What BR knows on its own: shared wider when it says so.
    let own = pb::ReportSightingRequest {
        share_wider: true,
        ..amber
    };
    at_br
        .report_sighting(own)
        .await
        .expect("shared wider on purpose");
    // The origin may declassify what it published itself.
    let declassified = submit(
        &mut at_au,
        vec![upsert(Ty::Domain, "told.example", Tlp::Green, &[])],
    );
    assert_eq!(declassified.await.len(), 1);
}
