//! Per-distribution views through every read path of the real gRPC API: one origin publishes
//! GREEN and RED (to one recipient) assertions and sightings of the same indicators; Get,
//! Lookup, Query and Watch show a non-recipient exactly what it would see had the RED entries
//! never been published, and show the recipient both audiences' sightings and the origin's
//! latest assertion.

use std::collections::BTreeMap;

use intelmesh_core::{now_unix_ms, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp, Verdict};
use intelmesh_tests::api::*;
use intelmesh_tests::net::{org, TestNet};

const MINUTE: i64 = 60_000;

fn red_upsert(value: &str, confidence: u32, tag: &str, description: &str) -> pb::Submission {
    let mut s = upsert(Ty::Domain, value, Tlp::Red, &[tag]);
    s.distribution = dist(Tlp::Red, &["BR-PF"]);
    if let Some(pb::submission::Body::Upsert(u)) = &mut s.body {
        u.confidence = confidence;
        u.description = description.into();
    }
    s
}

fn green_upsert(value: &str, confidence: u32, tag: &str, description: &str) -> pb::Submission {
    let mut s = upsert(Ty::Domain, value, Tlp::Green, &[tag]);
    if let Some(pb::submission::Body::Upsert(u)) = &mut s.body {
        u.confidence = confidence;
        u.description = description.into();
    }
    s
}

fn seen(value: &str, count: u64, at: i64, red: bool) -> pb::ReportSightingRequest {
    pb::ReportSightingRequest {
        seen_at_unix_ms: at,
        distribution: if red {
            dist(Tlp::Red, &["BR-PF"])
        } else {
            dist(Tlp::Green, &[])
        },
        ..sighting(value, count)
    }
}

/// What AU-AFP published, by seq. GREEN: 1, 4, 5, 7; RED to BR-PF: 2, 3, 6, 8.
struct Published {
    now: i64,
}

async fn publish(c: &mut Client) -> Published {
    let now = now_unix_ms();
    let seqs = |a: Vec<pb::Assigned>| a.iter().map(|a| a.seq).collect::<Vec<_>>();
    let s = submit(
        c,
        vec![
            green_upsert("evil.example", 40, "public", "seen in a campaign"),
            red_upsert("evil.example", 95, "secret-op", "source: informant"),
        ],
    )
    .await;
    assert_eq!(seqs(s), [1, 2]);
    // The RED sighting first: the old merge let a later GREEN one carry it to everyone.
    for (r, seq) in [
        (seen("evil.example", 7, now - 2 * MINUTE, true), 3),
        (seen("evil.example", 2, now - 10 * MINUTE, false), 4),
    ] {
        let a = c.report_sighting(r).await.unwrap().into_inner().assigned;
        assert_eq!(seqs(a), [seq]);
    }
    let mut revoke_red = revoke(Ty::Domain, "revoked.example");
    revoke_red.distribution = dist(Tlp::Red, &["BR-PF"]);
    let s = submit(
        c,
        vec![
            green_upsert("revoked.example", 60, "public", "still live"),
            revoke_red,
        ],
    )
    .await;
    assert_eq!(seqs(s), [5, 6]);
    for (r, seq) in [
        (seen("sighted.example", 1, now - 120 * MINUTE, false), 7),
        (seen("sighted.example", 4, now - MINUTE, true), 8),
    ] {
        let a = c.report_sighting(r).await.unwrap().into_inner().assigned;
        assert_eq!(seqs(a), [seq]);
    }
    Published { now }
}

fn green_dist() -> Option<pb::Distribution> {
    dist(Tlp::Green, &[])
}

fn red_dist() -> Option<pb::Distribution> {
    dist(Tlp::Red, &["BR-PF"])
}

/// Get's state of each indicator, by value; with verdicts and provenance seqs.
async fn get_all(c: &mut Client) -> BTreeMap<String, (pb::GetResponse, Vec<u64>)> {
    let mut out = BTreeMap::new();
    for v in ["evil.example", "revoked.example", "sighted.example"] {
        let r = get(c, Ty::Domain, v).await;
        let seqs = r.provenance.iter().map(|p| p.seq).collect();
        out.insert(v.to_string(), (r, seqs));
    }
    out
}

fn state_of(views: &BTreeMap<String, (pb::GetResponse, Vec<u64>)>, v: &str) -> pb::IndicatorState {
    views[v].0.state.clone().expect("found")
}

async fn query(c: &mut Client, filter: pb::Filter) -> Vec<pb::IndicatorState> {
    c.query(pb::QueryRequest {
        filter: Some(filter),
        page_size: 100,
        page_token: String::new(),
    })
    .await
    .expect("query")
    .into_inner()
    .states
}

async fn lookup(c: &mut Client, values: &[&str]) -> Vec<pb::LookupResult> {
    c.lookup(pb::LookupRequest {
        values: values.iter().map(|v| v.to_string()).collect(),
    })
    .await
    .expect("lookup")
    .into_inner()
    .results
}

/// The (seq, value, state) of each event of a watch from the start, up to the GREEN marker
/// entry published last, so "no more events" is a fact, not a timeout.
async fn watched(c: &mut Client, marker_seq: u64) -> Vec<(u64, pb::IndicatorState)> {
    let mut w = watch(c, pb::Filter::default(), "", true).await;
    let mut out = Vec::new();
    loop {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.origin, "AU-AFP");
        if ev.seq == marker_seq {
            return out;
        }
        out.push((ev.seq, ev.state.expect("an event has a state")));
    }
}

/// What a reader that may not read the RED entries sees: checked field by field.
fn assert_green_view(who: &OrgId, views: &BTreeMap<String, (pb::GetResponse, Vec<u64>)>, now: i64) {
    let evil = state_of(views, "evil.example");
    assert_eq!(evil.assertions.len(), 1, "{who}: {evil:?}");
    let a = &evil.assertions[0];
    assert_eq!(
        (a.seq, a.confidence, a.revoked, a.distribution.clone()),
        (1, 40, false, green_dist()),
        "{who}"
    );
    assert_eq!(
        (a.tags.as_slice(), a.description.as_str()),
        (&["public".to_string()][..], "seen in a campaign"),
        "{who}"
    );
    assert_eq!(
        evil.sightings,
        [pb::OriginSightings {
            origin: "AU-AFP".into(),
            count: 2,
            first_seen_unix_ms: now - 10 * MINUTE,
            last_seen_unix_ms: now - 10 * MINUTE,
            last_seq: 4,
            distribution: green_dist(),
        }],
        "{who}: the GREEN sightings alone"
    );
    assert_eq!(views["evil.example"].1, [1], "{who}: provenance");
    assert_eq!(views["evil.example"].0.verdict, Verdict::Malicious as i32);

    let revoked = state_of(views, "revoked.example");
    let a = &revoked.assertions[..];
    assert_eq!(a.len(), 1, "{who}");
    assert_eq!(
        (a[0].seq, a[0].revoked, a[0].revoke_reason.as_str()),
        (5, false, ""),
        "{who}: the RED revocation is not shown"
    );
    assert_eq!(
        views["revoked.example"].0.verdict,
        Verdict::Malicious as i32,
        "{who}"
    );
    let sighted = state_of(views, "sighted.example");
    let s: Vec<(u64, i64)> = sighted
        .sightings
        .iter()
        .map(|s| (s.count, s.last_seen_unix_ms))
        .collect();
    assert_eq!(s, [(1, now - 120 * MINUTE)], "{who}");
    assert_eq!(views["sighted.example"].0.verdict, Verdict::Seen as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_read_path_shows_each_reader_only_its_distributions() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (sg, au, br, fr) = (
        org("SG-IGCI"),
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
    );
    let mut at_au = net.client(&au).await;
    let Published { now } = publish(&mut at_au).await;
    net.wait_for(&au, 8, PATIENCE).await.unwrap();

    // The hub relays the RED payloads and holds them; FR holds stubs. Neither may read them.
    let mut recipient = net.client(&br).await;
    let br_views = get_all(&mut recipient).await;
    let mut others = Vec::new();
    for who in [sg.clone(), fr.clone()] {
        let mut c = net.client(&who).await;
        let views = get_all(&mut c).await;
        assert_green_view(&who, &views, now);
        others.push((who, c, views));
    }
    assert_eq!(
        others[0].2, others[1].2,
        "the hub's services see what FR sees"
    );

    // The recipient: AU-AFP's latest assertion (RED), and both audiences' sightings apart.
    let evil = state_of(&br_views, "evil.example");
    let a: Vec<(u64, u32, Vec<String>)> = evil
        .assertions
        .iter()
        .map(|a| (a.seq, a.confidence, a.tags.clone()))
        .collect();
    assert_eq!(a, [(2, 95, vec!["secret-op".to_string()])]);
    let s: Vec<(u64, i64, Option<pb::Distribution>)> = evil
        .sightings
        .iter()
        .map(|s| (s.count, s.first_seen_unix_ms, s.distribution.clone()))
        .collect();
    assert_eq!(
        s,
        [
            (2, now - 10 * MINUTE, green_dist()),
            (7, now - 2 * MINUTE, red_dist())
        ]
    );
    assert_eq!(br_views["evil.example"].1, [2]);
    let revoked = &br_views["revoked.example"];
    assert_eq!(revoked.0.verdict, Verdict::Revoked as i32);
    assert_eq!(revoked.1, [6]);
    assert_eq!(state_of(&br_views, "sighted.example").sightings.len(), 2);

    // Lookup: confidence and origins from the visible view only.
    let values = ["evil[.]example", "revoked.example", "sighted.example"];
    for (who, c, _) in &mut others {
        let r = lookup(c, &values).await;
        let got: Vec<(i32, u32, Vec<String>)> = r
            .iter()
            .map(|r| (r.verdict, r.max_confidence, r.origins.clone()))
            .collect();
        let au_only = vec!["AU-AFP".to_string()];
        assert_eq!(
            got,
            [
                (Verdict::Malicious as i32, 40, au_only.clone()),
                (Verdict::Malicious as i32, 60, au_only.clone()),
                (Verdict::Seen as i32, 0, au_only),
            ],
            "{who}"
        );
    }
    let r = lookup(&mut recipient, &values).await;
    let got: Vec<(i32, u32)> = r.iter().map(|r| (r.verdict, r.max_confidence)).collect();
    assert_eq!(
        got,
        [
            (Verdict::Malicious as i32, 95),
            (Verdict::Revoked as i32, 0),
            (Verdict::Seen as i32, 0)
        ]
    );

    // Query: the same states as Get, and no filter matches on what only RED entries hold.
    let tag = |t: &str| pb::Filter {
        tags: vec![t.into()],
        ..Default::default()
    };
    let since = pb::Filter {
        updated_since_unix_ms: now - 5 * MINUTE,
        ..Default::default()
    };
    let from_au = pb::Filter {
        origins: vec!["AU-AFP".into()],
        ..Default::default()
    };
    for (who, c, views) in &mut others {
        let all: Vec<pb::IndicatorState> =
            views.values().filter_map(|v| v.0.state.clone()).collect();
        assert_eq!(query(c, pb::Filter::default()).await, all, "{who}");
        assert_eq!(query(c, from_au.clone()).await, all, "{who}");
        assert_eq!(query(c, tag("secret-op")).await, [], "{who}");
        let values: Vec<String> = query(c, since.clone()).await.iter().map(value_of).collect();
        assert_eq!(
            values,
            ["evil.example", "revoked.example"],
            "{who}: only the RED sighting of sighted.example is recent"
        );
    }
    let mut values: Vec<String> = query(&mut recipient, since.clone())
        .await
        .iter()
        .map(value_of)
        .collect();
    // A time filter pages by latest change, not by value.
    values.sort();
    assert_eq!(
        values,
        ["evil.example", "revoked.example", "sighted.example"]
    );
    let secret: Vec<String> = query(&mut recipient, tag("secret-op"))
        .await
        .iter()
        .map(value_of)
        .collect();
    assert_eq!(secret, ["evil.example"]);
    // Asking for GREEN at most, the recipient sees what the others see.
    let green_only = query(
        &mut recipient,
        pb::Filter {
            tlp_ceiling: Tlp::Green as i32,
            ..Default::default()
        },
    )
    .await;
    let others_all: Vec<pb::IndicatorState> = others[0]
        .2
        .values()
        .filter_map(|v| v.0.state.clone())
        .collect();
    assert_eq!(green_only, others_all);

    // Watch: GREEN entries make events showing the GREEN view; RED ones make none.
    submit(&mut at_au, vec![green_upsert("marker.example", 1, "m", "")]).await;
    net.wait_for(&au, 9, PATIENCE).await.unwrap();
    for (who, c, views) in &mut others {
        let events = watched(c, 9).await;
        let seqs: Vec<u64> = events.iter().map(|e| e.0).collect();
        assert_eq!(seqs, [1, 4, 5, 7], "{who}: no event for a RED entry");
        for (seq, state) in events {
            let value = value_of(&state);
            assert_eq!(Some(state), views[&value].0.state, "{who}: event {seq}");
        }
    }
    let events = watched(&mut recipient, 9).await;
    let seqs: Vec<u64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7, 8]);
    for (seq, state) in events {
        let value = value_of(&state);
        assert_eq!(Some(state), br_views[&value].0.state, "BR-PF: event {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_page_says_nothing_of_hidden_records_after_it() {
    // The hub holds AU's RED entry in clear and indexes its tag; its services must not learn,
    // from whether a page has a token, that a record they cannot see carries a tag.
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (sg, au) = (org("SG-IGCI"), org("AU-AFP"));
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            green_upsert("a-public.example", 50, "anchor", ""),
            red_upsert("z-secret.example", 90, "op-nightfall", ""),
        ],
    )
    .await;
    net.wait_for(&au, 2, PATIENCE).await.unwrap();
    let mut c = net.client(&sg).await;
    let anchor = pages_of_one(&mut c, &["anchor"]).await;
    let with_hidden = pages_of_one(&mut c, &["anchor", "op-nightfall"]).await;
    assert_eq!(
        anchor,
        [
            (vec!["a-public.example".to_string()], true),
            (vec![], false)
        ]
    );
    assert_eq!(
        with_hidden, anchor,
        "the hidden tagged record shows in nothing"
    );
}

/// Every page of a query by `tags` one state at a time: each page's values and whether it had
/// a token.
async fn pages_of_one(c: &mut Client, tags: &[&str]) -> Vec<(Vec<String>, bool)> {
    let filter = pb::Filter {
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .query(pb::QueryRequest {
                filter: Some(filter.clone()),
                page_size: 1,
                page_token: token,
            })
            .await
            .expect("query")
            .into_inner();
        let values: Vec<String> = r.states.iter().map(value_of).collect();
        out.push((values, !r.next_page_token.is_empty()));
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

/// The members of the audience tests' federation.
const MEMBERS: [&str; 3] = ["AU-AFP", "BR-PF", "SG-IGCI"];

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
