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

#[path = "api_tlp/audiences.rs"]
mod audiences;

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

/// The state digest sums every state the node holds, restricted ones it opened included: a
/// service of the node's own org gets it, one of another org gets none (and the node does not
/// read it for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_nodes_own_org_is_given_its_state_digest() {
    use intelmesh_proto::v1::node_status_client::NodeStatusClient;
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let own = (NodeStatusClient::new(net.channel(&au).await))
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(own.state_digest.len(), 64, "{own:?}");
    let p = &net.fed.nodes[&au];
    let certs = service_cert(
        p,
        &org("SG-IGCI"),
        "soc",
        intelmesh_node::pki::Validity::default(),
    );
    let channel = intelmesh_node::client::api_channel(
        net.node(&au).api_addr,
        net.node(&au).org(),
        &p.api_ca,
        &certs.path().join("soc.pem"),
        &certs.path().join("soc.key"),
    )
    .await
    .expect("API channel");
    let other = (NodeStatusClient::new(channel))
        .status(pb::StatusRequest {})
        .await
        .expect("status for another org's service")
        .into_inner();
    assert_eq!(other.state_digest, "");
    assert_eq!(other.org_id, own.org_id);
}
