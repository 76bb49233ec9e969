//! The `Indicators` API end to end: real nodes, real gRPC clients over mutual TLS, submissions
//! at one agency read through another's API after federation.

use std::collections::BTreeSet;

use intelmesh_core::entry::header_hash;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp, Verdict};
use intelmesh_store::Store;
use intelmesh_tests::api::*;
use intelmesh_tests::net::{org, TestNet};
use intelmesh_tests::raw_peer::check_status;
use tonic::Code;

#[path = "api/access.rs"]
mod access;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submission_is_read_canonical_with_provenance_at_another_agency() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let mut at_au = net.client(&au).await;
    let url = " hxxps://Login.EVIL[.]Example/Reset ";
    let subs = vec![
        upsert(Ty::Unspecified, url, Tlp::Green, &["x"]),
        upsert(Ty::Domain, "'Evil[.]EXAMPLE'", Tlp::Amber, &["c2"]),
    ];
    let got: Vec<String> = submit(&mut at_au, subs)
        .await
        .iter()
        .map(|a| {
            let i = a.indicator.as_ref().unwrap();
            let ty = Ty::try_from(i.r#type).unwrap();
            format!("{}#{} {ty:?} {}", a.origin, a.seq, i.value)
        })
        .collect();
    assert_eq!(
        got,
        [
            "AU-AFP#1 Url https://login.evil.example/Reset",
            "AU-AFP#2 Domain evil.example"
        ]
    );
    net.wait_for(&au, 2, PATIENCE).await.unwrap();

    let mut at_br = net.client(&br).await;
    let r = get(&mut at_br, Ty::Domain, "EVIL[.]example").await;
    assert!(r.found);
    assert_eq!(r.verdict, Verdict::Malicious as i32);
    let state = r.state.expect("state");
    assert_eq!(value_of(&state), "evil.example");
    assert_eq!(state.assertions.len(), 1);
    let a = &state.assertions[0];
    assert_eq!((a.origin.as_str(), a.seq, a.confidence), ("AU-AFP", 2, 80));
    assert_eq!(a.tags, ["c2"]);
    let logged = net.node(&au).state().store.range(&au, 2, 1).unwrap();
    assert_eq!(
        r.provenance,
        [pb::Provenance {
            origin: "AU-AFP".into(),
            seq: 2,
            header_hash: hex::encode(header_hash(&logged[0].header)),
        }]
    );
    // The type may be left to detection on reads too.
    let url = get(
        &mut at_br,
        Ty::Unspecified,
        "https://LOGIN.evil.example/Reset",
    )
    .await;
    assert_eq!(url.provenance[0].seq, 1);

    let none = get(&mut at_br, Ty::Domain, "benign.example").await;
    assert!(!none.found && none.state.is_none() && none.provenance.is_empty());
    assert_eq!(none.verdict, Verdict::Unknown as i32);

    let bad = at_br
        .get(pb::GetRequest {
            r#type: Ty::Ipv4 as i32,
            value: "300.1.2.3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("IPv4"), "{}", bad.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_bad_submission_refuses_the_batch_and_publishes_nothing() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let mut c = net.client(&au).await;
    let good = upsert(Ty::Domain, "a.example", Tlp::Green, &[]);
    let before = net.vector(&au);
    let e = c
        .submit(pb::SubmitRequest {
            submissions: vec![
                good.clone(),
                upsert(Ty::Ipv4, "999.1.1.1", Tlp::Green, &[]),
                good.clone(),
            ],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("submissions[1]") && e.message().contains("999.1.1.1"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("submissions[0]"));
    assert_eq!(net.vector(&au), before, "nothing was published");

    let red_to_stranger = pb::Submission {
        distribution: dist(Tlp::Red, &["XX-UNKNOWN"]),
        ..good.clone()
    };
    let e = c
        .submit(pb::SubmitRequest {
            submissions: vec![red_to_stranger],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("not a member"), "{}", e.message());
    assert_eq!(net.vector(&au), before);

    // The refused calls consumed no seqs.
    assert_eq!(submit(&mut c, vec![good]).await[0].seq, 1);
}

/// Every state of a query, page by page; panics on a repeated indicator.
async fn query_all(c: &mut Client, filter: pb::Filter, page_size: u32) -> (Vec<String>, usize) {
    let (mut seen, mut pages, mut token) = (Vec::new(), 0, String::new());
    loop {
        let r = c
            .query(pb::QueryRequest {
                filter: Some(filter.clone()),
                page_size,
                page_token: token,
            })
            .await
            .expect("query")
            .into_inner();
        pages += 1;
        assert!(r.states.len() <= page_size as usize);
        seen.extend(r.states.iter().map(value_of));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an indicator came twice: {seen:?}"
    );
    (seen, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_pages_through_every_match_once_and_filters() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (sg, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    let au_subs = [
        each(
            Ty::Domain,
            (0..300).map(|i| format!("d{i}.au.example")),
            Tlp::Green,
            "alpha",
        ),
        each(
            Ty::Ipv4,
            (1..=5).map(|i| format!("192.0.2.{i}")),
            Tlp::Amber,
            "Beta",
        ),
    ];
    submit(&mut net.client(&au).await, au_subs.concat()).await;
    let br_subs = each(
        Ty::Domain,
        (0..3).map(|i| format!("zz{i}.br.example")),
        Tlp::Green,
        "beta",
    );
    submit(&mut net.client(&br).await, br_subs).await;
    net.wait_for(&au, 305, PATIENCE).await.unwrap();
    net.wait_for(&br, 3, PATIENCE).await.unwrap();

    let mut c = net.client(&sg).await;
    let types = |t: Ty| pb::Filter {
        types: vec![t as i32],
        ..Default::default()
    };
    // 308 states: more than one store chunk, and exactly 44 full pages. A full page always
    // has a token (what follows it may be hidden from the reader), so a 45th page comes, empty.
    let (all, pages) = query_all(&mut c, pb::Filter::default(), 7).await;
    assert_eq!((all.len(), pages), (308, 45));
    let (d, _) = query_all(&mut c, types(Ty::Domain), 7).await;
    let expected: BTreeSet<String> = (0..300)
        .map(|i| format!("d{i}.au.example"))
        .chain((0..3).map(|i| format!("zz{i}.br.example")))
        .collect();
    assert_eq!(d.into_iter().collect::<BTreeSet<_>>(), expected);

    let tagged = pb::Filter {
        tags: vec!["BETA".into()],
        ..Default::default()
    };
    assert_eq!(query_all(&mut c, tagged, 100).await.0.len(), 8);
    let from_br = pb::Filter {
        origins: vec!["BR-PF".into()],
        ..Default::default()
    };
    // Read from BR-PF's postings: three indicators, two pages of two.
    let (b, _) = query_all(&mut c, from_br, 2).await;
    assert_eq!(b, ["zz0.br.example", "zz1.br.example", "zz2.br.example"]);
    let ips_at = |tlp: Tlp| pb::Filter {
        tlp_ceiling: tlp as i32,
        ..types(Ty::Ipv4)
    };
    assert_eq!(query_all(&mut c, ips_at(Tlp::Amber), 3).await.0.len(), 5);
    assert!(query_all(&mut c, ips_at(Tlp::Green), 3).await.0.is_empty());
    let later = pb::Filter {
        updated_since_unix_ms: intelmesh_core::now_unix_ms() + 60_000,
        ..Default::default()
    };
    assert!(query_all(&mut c, later, 10).await.0.is_empty());

    // A page token stays good across a restart of the node: the rest comes once, nothing lost.
    let first = c
        .query(pb::QueryRequest {
            filter: Some(types(Ty::Domain)),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .expect("query")
        .into_inner();
    let mut net = net;
    net.stop(&sg).await;
    net.start(&sg).await;
    let mut c = net.client(&sg).await;
    let mut seen: Vec<String> = first.states.iter().map(value_of).collect();
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let r = c
            .query(pb::QueryRequest {
                filter: Some(types(Ty::Domain)),
                page_size: 100,
                page_token: token,
            })
            .await
            .expect("query after the restart")
            .into_inner();
        seen.extend(r.states.iter().map(value_of));
        token = r.next_page_token;
    }
    assert_eq!(seen.len(), expected.len(), "nothing repeated");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);

    for token in ["not-a-token", "ff00"] {
        let e = c
            .query(pb::QueryRequest {
                page_token: token.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("page_token"), "{}", e.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookup_gives_verdicts_for_known_unknown_revoked_and_invalid_values() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            upsert(Ty::Domain, "bad.example", Tlp::Green, &[]),
            upsert(Ty::Ipv4, "192.0.2.9", Tlp::Green, &[]),
        ],
    )
    .await;
    submit(&mut at_au, vec![revoke(Ty::Unspecified, "192.0.2[.]9")]).await;
    let mut at_br = net.client(&br).await;
    let sighted = at_br
        .report_sighting(sighting("Seen[.]Example", 4))
        .await
        .expect("sighting")
        .into_inner();
    let assigned = &sighted.assigned[0];
    assert_eq!(assigned.seq, 1);
    assert_eq!(assigned.indicator.as_ref().unwrap().value, "seen.example");
    net.wait_for(&au, 3, PATIENCE).await.unwrap();
    net.wait_for(&br, 1, PATIENCE).await.unwrap();

    let inputs = [
        "BAD[.]example",
        "hxxp://nothing[.]example/",
        "192.0.2[.]9",
        "300.1.1.1",
        "seen.EXAMPLE",
    ];
    let r = at_br
        .lookup(pb::LookupRequest {
            values: inputs.iter().map(|v| v.to_string()).collect(),
        })
        .await
        .expect("lookup")
        .into_inner()
        .results;
    let summary: Vec<String> = r
        .iter()
        .map(|x| {
            let value = x.indicator.as_ref().map_or("-", |i| i.value.as_str());
            let verdict = Verdict::try_from(x.verdict).unwrap();
            let (conf, origins) = (x.max_confidence, x.origins.join(","));
            format!("{} -> {value} {verdict:?} {conf} [{origins}]", x.input)
        })
        .collect();
    assert_eq!(
        summary,
        [
            "BAD[.]example -> bad.example Malicious 80 [AU-AFP]",
            "hxxp://nothing[.]example/ -> http://nothing.example/ Unknown 0 []",
            "192.0.2[.]9 -> 192.0.2.9 Revoked 0 [AU-AFP]",
            "300.1.1.1 -> - Unknown 0 []",
            "seen.EXAMPLE -> seen.example Seen 0 [BR-PF]",
        ]
    );
    assert!(r[3].error.contains("IPv4"), "{}", r[3].error);
    assert!(r
        .iter()
        .enumerate()
        .all(|(i, x)| x.error.is_empty() == (i != 3)));

    let e = at_br
        .lookup(pb::LookupRequest {
            values: vec!["x.example".into(); 10_001],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn red_is_visible_through_the_recipients_api_only() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (sg, au, br, fr) = (
        org("SG-IGCI"),
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
    );
    let red = pb::Submission {
        distribution: dist(Tlp::Red, &["BR-PF"]),
        ..upsert(Ty::Domain, "red.example", Tlp::Red, &["op"])
    };
    let green = upsert(Ty::Domain, "green.example", Tlp::Green, &[]);
    submit(&mut net.client(&au).await, vec![red, green]).await;
    net.wait_for(&au, 2, PATIENCE).await.unwrap();

    let sees = |o: OrgId| {
        let net = &net;
        async move {
            let mut c = net.client(&o).await;
            let r = get(&mut c, Ty::Domain, "red.example").await;
            let q = c
                .lookup(pb::LookupRequest {
                    values: vec!["red[.]example".into()],
                })
                .await
                .unwrap()
                .into_inner()
                .results;
            let (all, _) = query_all(&mut c, pb::Filter::default(), 10).await;
            let mut w = watch(&mut c, pb::Filter::default(), "", true).await;
            let first = next_event(&mut w).await;
            (
                r.found,
                Verdict::try_from(q[0].verdict).unwrap(),
                all,
                value_of(first.state.as_ref().unwrap()),
            )
        }
    };
    let (found, verdict, all, first) = sees(br.clone()).await;
    assert!(found);
    assert_eq!(verdict, Verdict::Malicious);
    assert_eq!(all, ["green.example", "red.example"]);
    assert_eq!(first, "red.example");
    let br_view = get(&mut net.client(&br).await, Ty::Domain, "red.example").await;
    let a = &br_view.state.unwrap().assertions[0];
    assert_eq!(a.distribution, dist(Tlp::Red, &["BR-PF"]));
    assert_eq!(a.tags, ["op"]);
    assert!(sees(au.clone()).await.0, "the origin sees its own");

    // FR never received the payload; the hub relays it but its own services may not read it.
    for other in [fr.clone(), sg.clone()] {
        let (found, verdict, all, first) = sees(other.clone()).await;
        assert!(!found, "{other} sees the RED indicator");
        assert_eq!(verdict, Verdict::Unknown, "{other}");
        assert_eq!(all, ["green.example"], "{other}");
        assert_eq!(
            first, "green.example",
            "{other}: the RED entry makes no event"
        );
    }
    let fr_store = &net.node(&fr).state().store;
    assert!(
        fr_store.range(&au, 1, 1).unwrap()[0].payload.is_none(),
        "FR holds a stub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pages_of_large_states_end_before_the_message_limit() {
    // 100 indicators with 60 KB descriptions: 6 MB of states. A page of 1,000 would not fit a
    // message, so pages end by size (with a token) and the reader still gets every one.
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let mut c = net.client(&au).await;
    for part in 0..4 {
        let subs = (0..25)
            .map(|i| {
                let mut s = upsert(
                    Ty::Domain,
                    &format!("big{part}-{i}.example"),
                    Tlp::Green,
                    &[],
                );
                if let Some(pb::submission::Body::Upsert(u)) = &mut s.body {
                    u.description = "x".repeat(60_000);
                }
                s
            })
            .collect();
        submit(&mut c, subs).await;
    }
    let (all, pages) = query_all(&mut c, pb::Filter::default(), 1000).await;
    assert_eq!(all.len(), 100);
    assert!(pages >= 3, "{pages} pages");
}
