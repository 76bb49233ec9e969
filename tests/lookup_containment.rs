//! Containment lookups through the real API: an address answered by every listed block that
//! contains it (IPv4 and IPv6, /0 to /32 and /128), a block by the shorter blocks around it, a
//! domain by its listed parents, a URL or e-mail by its host; revoked blocks as revoked
//! matches; and a RED block that only its recipient sees, and that changes nothing for anyone
//! else, including the hub that holds it.

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp, Verdict};
use intelmesh_tests::api::*;
use intelmesh_tests::net::{org, TestNet};

fn listed(ty: Ty, value: &str, confidence: u32) -> pb::Submission {
    let mut s = upsert(ty, value, Tlp::Green, &["block"]);
    if let Some(pb::submission::Body::Upsert(u)) = &mut s.body {
        u.confidence = confidence;
    }
    s
}

fn red_to_br(value: &str) -> pb::Submission {
    pb::Submission {
        distribution: dist(Tlp::Red, &["BR-PF"]),
        ..listed(Ty::Cidr, value, 95)
    }
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

/// "value Kind Verdict confidence [origins]" for each match of a result.
fn matches(r: &pb::LookupResult) -> Vec<String> {
    r.matches
        .iter()
        .map(|m| {
            let value = m.indicator.as_ref().map_or("-", |i| i.value.as_str());
            format!(
                "{value} {:?} {:?} {} [{}]",
                m.kind(),
                m.verdict(),
                m.max_confidence,
                m.origins.join(",")
            )
        })
        .collect()
}

/// The overall answer of a result: "Verdict confidence [origins]".
fn overall(r: &pb::LookupResult) -> String {
    format!(
        "{:?} {} [{}]",
        r.verdict(),
        r.max_confidence,
        r.origins.join(",")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn addresses_blocks_and_domains_are_answered_by_what_contains_them() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (sg, au, br, fr) = (
        org("SG-IGCI"),
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
    );
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            listed(Ty::Cidr, "10.0.0.0/8", 80),
            listed(Ty::Cidr, "10.1.2.0/24", 60),
            listed(Ty::Ipv4, "10.1.2.3", 99),
            listed(Ty::Cidr, "192.0.2.77/32", 70),
            listed(Ty::Cidr, "172.16.0.0/12", 85),
            listed(Ty::Cidr, "2001:db8::/32", 70),
            listed(Ty::Cidr, "2001:db8:1::/48", 50),
            listed(Ty::Cidr, "2001:db8:1::7/128", 90),
            listed(Ty::Domain, "evil.example", 80),
            listed(Ty::Domain, "sub.evil.example", 65),
            red_to_br("0.0.0.0/0"),
            red_to_br("::/0"),
        ],
    )
    .await;
    submit(
        &mut at_au,
        vec![
            revoke(Ty::Ipv4, "10.1.2.3"),
            revoke(Ty::Cidr, "172.16.0.0/12"),
        ],
    )
    .await;
    net.wait_for(&au, 14, PATIENCE).await.unwrap();

    let values = [
        "10.1.2[.]3",
        "10.9.9.9",
        "8.8.8.8",
        "192.0.2.77",
        "172.16.5.5",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "2001:DB8:1:0:0:0:0:7",
        "2001:db8:2::1",
        "2001:db9::1",
        "a.sub.evil[.]example",
        "notevil.example",
        "hxxp://10.1.2.3/gate.php",
        "ceo@Sub.Evil.Example",
    ];
    // The hub holds the RED blocks (it relays them) and FR only their stubs: for both, every
    // answer is as if they did not exist.
    for who in [sg.clone(), fr.clone()] {
        let r = lookup(&mut net.client(&who).await, &values).await;
        let got: Vec<(&str, String, Vec<String>)> = r
            .iter()
            .map(|r| (r.input.as_str(), overall(r), matches(r)))
            .collect();
        let m = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let expected = vec![
            (
                "10.1.2[.]3",
                "Malicious 80 [AU-AFP]".to_string(),
                m(&[
                    "10.1.2.3 Exact Revoked 0 [AU-AFP]",
                    "10.1.2.0/24 Cidr Malicious 60 [AU-AFP]",
                    "10.0.0.0/8 Cidr Malicious 80 [AU-AFP]",
                ]),
            ),
            (
                "10.9.9.9",
                "Malicious 80 [AU-AFP]".into(),
                m(&["10.0.0.0/8 Cidr Malicious 80 [AU-AFP]"]),
            ),
            ("8.8.8.8", "Unknown 0 []".into(), vec![]),
            (
                "192.0.2.77",
                "Malicious 70 [AU-AFP]".into(),
                m(&["192.0.2.77/32 Cidr Malicious 70 [AU-AFP]"]),
            ),
            (
                "172.16.5.5",
                "Revoked 0 [AU-AFP]".into(),
                m(&["172.16.0.0/12 Cidr Revoked 0 [AU-AFP]"]),
            ),
            (
                "10.1.0.0/16",
                "Malicious 80 [AU-AFP]".into(),
                m(&["10.0.0.0/8 Cidr Malicious 80 [AU-AFP]"]),
            ),
            (
                "10.1.2.0/24",
                "Malicious 80 [AU-AFP]".into(),
                m(&[
                    "10.1.2.0/24 Exact Malicious 60 [AU-AFP]",
                    "10.0.0.0/8 Cidr Malicious 80 [AU-AFP]",
                ]),
            ),
            (
                "2001:DB8:1:0:0:0:0:7",
                "Malicious 90 [AU-AFP]".into(),
                m(&[
                    "2001:db8:1::7/128 Cidr Malicious 90 [AU-AFP]",
                    "2001:db8:1::/48 Cidr Malicious 50 [AU-AFP]",
                    "2001:db8::/32 Cidr Malicious 70 [AU-AFP]",
                ]),
            ),
            (
                "2001:db8:2::1",
                "Malicious 70 [AU-AFP]".into(),
                m(&["2001:db8::/32 Cidr Malicious 70 [AU-AFP]"]),
            ),
            ("2001:db9::1", "Unknown 0 []".into(), vec![]),
            (
                "a.sub.evil[.]example",
                "Malicious 80 [AU-AFP]".into(),
                m(&[
                    "sub.evil.example ParentDomain Malicious 65 [AU-AFP]",
                    "evil.example ParentDomain Malicious 80 [AU-AFP]",
                ]),
            ),
            ("notevil.example", "Unknown 0 []".into(), vec![]),
            (
                "hxxp://10.1.2.3/gate.php",
                "Malicious 80 [AU-AFP]".into(),
                m(&[
                    "10.1.2.3 Host Revoked 0 [AU-AFP]",
                    "10.1.2.0/24 Cidr Malicious 60 [AU-AFP]",
                    "10.0.0.0/8 Cidr Malicious 80 [AU-AFP]",
                ]),
            ),
            (
                "ceo@Sub.Evil.Example",
                "Malicious 80 [AU-AFP]".into(),
                m(&[
                    "sub.evil.example Host Malicious 65 [AU-AFP]",
                    "evil.example ParentDomain Malicious 80 [AU-AFP]",
                ]),
            ),
        ];
        assert_eq!(got, expected, "{who}");
        let canonical: Vec<&str> = r
            .iter()
            .map(|r| r.indicator.as_ref().map_or("-", |i| i.value.as_str()))
            .collect();
        assert_eq!(
            canonical[0], "10.1.2.3",
            "the value looked up stays the indicator"
        );
        assert_eq!(canonical[7], "2001:db8:1::7");
    }

    // The recipient: the RED /0 blocks answer every address of their family, last (least
    // specific), and being in force they lift a revoked-only answer to malicious.
    let r = lookup(
        &mut net.client(&br).await,
        &[
            "10.1.2.3",
            "8.8.8.8",
            "172.16.5.5",
            "2001:db9::1",
            "evil.example",
        ],
    )
    .await;
    assert_eq!(
        matches(&r[0]),
        [
            "10.1.2.3 Exact Revoked 0 [AU-AFP]",
            "10.1.2.0/24 Cidr Malicious 60 [AU-AFP]",
            "10.0.0.0/8 Cidr Malicious 80 [AU-AFP]",
            "0.0.0.0/0 Cidr Malicious 95 [AU-AFP]",
        ]
    );
    assert_eq!(overall(&r[0]), "Malicious 95 [AU-AFP]");
    assert_eq!(matches(&r[1]), ["0.0.0.0/0 Cidr Malicious 95 [AU-AFP]"]);
    assert_eq!(overall(&r[2]), "Malicious 95 [AU-AFP]");
    assert_eq!(
        matches(&r[2]),
        [
            "172.16.0.0/12 Cidr Revoked 0 [AU-AFP]",
            "0.0.0.0/0 Cidr Malicious 95 [AU-AFP]",
        ]
    );
    assert_eq!(matches(&r[3]), ["::/0 Cidr Malicious 95 [AU-AFP]"]);
    assert_eq!(
        matches(&r[4]),
        ["evil.example Exact Malicious 80 [AU-AFP]"],
        "a domain with no listed parent has only its exact match"
    );

    // Get stays exact: the address inside a block is not itself listed.
    let g = get(&mut net.client(&fr).await, Ty::Ipv4, "10.9.9.9").await;
    assert!(!g.found);
    assert_eq!(g.verdict(), Verdict::Unknown);
}

/// A value listed in one form answers its other forms: an address and its whole-length block,
/// an IPv4 address and its IPv4-mapped IPv6 form (and the blocks around each, the mapped
/// blocks only from /96 on: `::/0` lists no IPv4 address).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_value_listed_in_one_form_answers_its_other_forms() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            listed(Ty::Cidr, "10.20.0.0/16", 80),
            listed(Ty::Cidr, "::ffff:203.0.113.0/120", 70),
            listed(Ty::Ipv4, "198.51.100.9", 60),
            listed(Ty::Ipv6, "2001:db8::99", 50),
            listed(Ty::Cidr, "2001:db8:ffff::/48", 40),
        ],
    )
    .await;
    let values = [
        "::ffff:10.20.1.1",
        "203.0.113.7",
        "198.51.100.9/32",
        "::ffff:198.51.100.9",
        "2001:db8::99/128",
        "10.20.1.1",
        "10.21.0.1",
    ];
    let r = lookup(&mut at_au, &values).await;
    let got: Vec<(&str, Vec<String>)> = r.iter().map(|r| (r.input.as_str(), matches(r))).collect();
    let m = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let listed_as = |value: &str| {
        r.iter()
            .flat_map(|x| &x.matches)
            .filter_map(|x| x.indicator.as_ref())
            .find(|i| i.value.contains(value))
            .map(|i| i.value.clone())
            .unwrap_or_default()
    };
    let mapped_block = listed_as("203.0.113.0");
    assert_eq!(
        got,
        vec![
            (
                "::ffff:10.20.1.1",
                m(&["10.20.0.0/16 Cidr Malicious 80 [AU-AFP]"])
            ),
            (
                "203.0.113.7",
                m(&[&format!("{mapped_block} Cidr Malicious 70 [AU-AFP]")])
            ),
            (
                "198.51.100.9/32",
                m(&["198.51.100.9 Exact Malicious 60 [AU-AFP]"])
            ),
            (
                "::ffff:198.51.100.9",
                m(&["198.51.100.9 Exact Malicious 60 [AU-AFP]"])
            ),
            (
                "2001:db8::99/128",
                m(&["2001:db8::99 Exact Malicious 50 [AU-AFP]"])
            ),
            ("10.20.1.1", m(&["10.20.0.0/16 Cidr Malicious 80 [AU-AFP]"])),
            ("10.21.0.1", vec![]),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_lookup_answers_every_value_in_request_order() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let mut c = net.client(&au).await;
    submit(
        &mut c,
        vec![
            listed(Ty::Cidr, "10.0.0.0/8", 80),
            listed(Ty::Domain, "evil.example", 80),
        ],
    )
    .await;
    // Spans several of the node's chunks, with a different answer at each position mod 4.
    let values: Vec<String> = (0..9_999)
        .map(|i| match i % 4 {
            0 => format!("10.0.{}.{}", i / 256 % 256, i % 256),
            1 => format!("h{i}.evil.example"),
            2 => format!("192.0.{}.{}", i / 256 % 256, i % 256),
            _ => format!("not a value {i}"),
        })
        .collect();
    let r = c
        .lookup(pb::LookupRequest {
            values: values.clone(),
        })
        .await
        .expect("lookup")
        .into_inner()
        .results;
    assert_eq!(r.len(), values.len());
    for (i, (r, v)) in r.iter().zip(&values).enumerate() {
        assert_eq!(&r.input, v, "result {i} is of its own value");
        let (verdict, kind) = match i % 4 {
            0 => (Verdict::Malicious, Some(pb::MatchKind::Cidr)),
            1 => (Verdict::Malicious, Some(pb::MatchKind::ParentDomain)),
            _ => (Verdict::Unknown, None),
        };
        assert_eq!(r.verdict(), verdict, "{v}");
        assert_eq!(r.matches.first().map(|m| m.kind()), kind, "{v}");
        assert_eq!(r.error.is_empty(), i % 4 != 3, "{v}");
    }
}

/// An answer that would pass the message limit ends the call with RESOURCE_EXHAUSTED and a
/// message that says what to do, rather than a response no client could read; the same values
/// in smaller calls are answered, every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_past_the_message_limit_is_refused_and_smaller_calls_are_answered() {
    let limits = intelmesh_node::config::Limits {
        max_message_bytes: 262_144,
        ..intelmesh_tests::net::fast_limits()
    };
    let net = TestNet::alone("AU-AFP", limits).await;
    let mut c = net.client(&org("AU-AFP")).await;
    submit(&mut c, vec![listed(Ty::Domain, "evil.example", 80)]).await;
    // About 200 KiB asked; each answer repeats its value twice and names its match.
    let values: Vec<String> = (0..9_000)
        .map(|i| format!("host{i:05}.evil.example"))
        .collect();
    let refused = c
        .lookup(pb::LookupRequest {
            values: values.clone(),
        })
        .await
        .expect_err("past the message limit");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("send fewer values per call"),
        "{refused:?}"
    );
    let mut answered = Vec::new();
    for part in values.chunks(1_000) {
        answered.extend(lookup(&mut c, &part.iter().map(String::as_str).collect::<Vec<_>>()).await);
    }
    assert_eq!(answered.len(), values.len());
    for (r, v) in answered.iter().zip(&values) {
        assert_eq!(&r.input, v);
        assert_eq!(r.verdict(), Verdict::Malicious, "{v}");
        assert_eq!(
            r.matches.first().map(|m| m.kind()),
            Some(pb::MatchKind::ParentDomain)
        );
    }
}
