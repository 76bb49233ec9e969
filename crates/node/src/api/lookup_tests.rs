//! Unit tests of `lookup.rs` on plain values: which candidates a value has, and how visible
//! matches combine into one answer.

use super::*;
use intelmesh_core::indicator::{detect, normalize};
use intelmesh_proto::lookup_response::encode_result;
use intelmesh_proto::v1::{IndicatorType as Ty, Verdict};

use crate::api::test_values::{dist, org, NOW};

fn lengths(cidrs: &[&str]) -> PrefixLengths {
    let mut l = PrefixLengths::default();
    for c in cidrs {
        l.record(&normalize(IndicatorType::Cidr, c).unwrap());
    }
    l
}

fn named(found: Vec<(Indicator, pb::MatchKind)>) -> Vec<String> {
    found
        .into_iter()
        .map(|(i, k)| format!("{} {}", i.value(), k.as_str_name()))
        .collect()
}

#[test]
fn a_url_or_email_is_answered_by_its_host_and_what_contains_the_host() {
    let l = lengths(&["192.0.2.0/24", "2001:db8::/32"]);
    let c = |v: &str| {
        let value = detect(v).unwrap();
        let host = value.host();
        named(candidates(&value, host, &l, &|_: &BlockBits| true))
    };
    assert_eq!(
        c("hxxps://user:p%40ss@Login.Evil[.]Example:8443/x?q=1"),
        [
            "login.evil.example MATCH_KIND_HOST",
            "evil.example MATCH_KIND_PARENT_DOMAIN"
        ]
    );
    // An address host is also answered by its other forms, as a looked-up address is.
    assert_eq!(
        c("http://192.0.2.7/a"),
        [
            "192.0.2.7 MATCH_KIND_HOST",
            "::ffff:192.0.2.7 MATCH_KIND_EXACT",
            "192.0.2.0/24 MATCH_KIND_CIDR"
        ]
    );
    assert_eq!(
        c("http://[2001:db8::1]:8080/"),
        [
            "2001:db8::1 MATCH_KIND_HOST",
            "2001:db8::/32 MATCH_KIND_CIDR"
        ]
    );
    assert_eq!(
        c("Phish@Mail.Evil.Example"),
        [
            "mail.evil.example MATCH_KIND_HOST",
            "evil.example MATCH_KIND_PARENT_DOMAIN"
        ]
    );
    // Hashes have nothing around them; a domain's parents stop before the top level.
    assert!(c(&"ab".repeat(32)).is_empty());
    assert_eq!(
        c("a.evil.example"),
        ["evil.example MATCH_KIND_PARENT_DOMAIN"]
    );
    // A store's filter of held blocks rules out blocks, never the host.
    let url = detect("http://192.0.2.7/a").unwrap();
    let none_held = named(candidates(&url, url.host(), &l, &|_: &BlockBits| false));
    assert_eq!(
        none_held,
        [
            "192.0.2.7 MATCH_KIND_HOST",
            "::ffff:192.0.2.7 MATCH_KIND_EXACT"
        ]
    );
}

#[test]
fn blocks_of_both_families_come_most_specific_first() {
    let l = lengths(&["10.0.0.0/8", "::ffff:10.1.2.0/120", "::ffff:10.1.2.3/128"]);
    let c = |v: &str| {
        named(candidates(
            &detect(v).unwrap(),
            None,
            &l,
            &|_: &BlockBits| true,
        ))
    };
    assert_eq!(
        c("10.1.2.3"),
        [
            "::ffff:10.1.2.3 MATCH_KIND_EXACT",
            "::ffff:10.1.2.3/128 MATCH_KIND_CIDR",
            "::ffff:10.1.2.0/120 MATCH_KIND_CIDR",
            "10.0.0.0/8 MATCH_KIND_CIDR"
        ]
    );
    assert_eq!(
        c("10.1.2.3/32"),
        [
            "10.1.2.3 MATCH_KIND_EXACT",
            "::ffff:10.1.2.3 MATCH_KIND_EXACT",
            "::ffff:10.1.2.3/128 MATCH_KIND_CIDR",
            "::ffff:10.1.2.0/120 MATCH_KIND_CIDR",
            "10.0.0.0/8 MATCH_KIND_CIDR"
        ]
    );
}

fn assertion(origin: &str, confidence: u32, revoked: bool) -> pb::OriginAssertion {
    pb::OriginAssertion {
        origin: origin.into(),
        seq: 1,
        confidence,
        revoked,
        distribution: dist(pb::Tlp::Green, &[]),
        issued_at_unix_ms: NOW - 1000,
        ..Default::default()
    }
}

fn listed(ty: Ty, value: &str, assertions: Vec<pb::OriginAssertion>) -> pb::IndicatorState {
    pb::IndicatorState {
        indicator: Some(pb::IndicatorRef {
            r#type: ty as i32,
            value: value.into(),
        }),
        assertions,
        sightings: Vec::new(),
    }
}

fn matched_as(
    value: &str,
    kind: pb::MatchKind,
    state: &pb::IndicatorState,
    hidden: &BTreeSet<String>,
    reader: &str,
) -> Option<pb::LookupMatch> {
    matched(
        &detect(value).unwrap(),
        kind,
        state,
        hidden,
        &org(reader),
        NOW,
    )
}

#[test]
fn the_result_takes_the_strongest_verdict_and_every_visible_origin() {
    let none = BTreeSet::new();
    let ip = detect("10.1.2.3").unwrap();
    let exact_revoked = listed(Ty::Ipv4, "10.1.2.3", vec![assertion("AU-AFP", 90, true)]);
    let block = listed(Ty::Cidr, "10.0.0.0/8", vec![assertion("BR-PF", 70, false)]);
    let matches: Vec<pb::LookupMatch> = [
        matched_as(
            "10.1.2.3",
            pb::MatchKind::Exact,
            &exact_revoked,
            &none,
            "FR-OCLCTIC",
        ),
        matched_as(
            "10.0.0.0/8",
            pb::MatchKind::Cidr,
            &block,
            &none,
            "FR-OCLCTIC",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let r = result("10.1.2.3".into(), ip.clone(), matches);
    assert_eq!(
        (r.verdict(), r.max_confidence, r.origins.clone()),
        (
            Verdict::Malicious,
            70,
            vec!["AU-AFP".to_string(), "BR-PF".into()]
        ),
        "an exact revocation does not hide the block in force"
    );
    let kinds: Vec<(Verdict, pb::MatchKind)> =
        r.matches.iter().map(|m| (m.verdict(), m.kind())).collect();
    assert_eq!(
        kinds,
        [
            (Verdict::Revoked, pb::MatchKind::Exact),
            (Verdict::Malicious, pb::MatchKind::Cidr)
        ]
    );

    // A revoked block alone: a revoked match, and the value is not listed.
    let revoked_block = listed(Ty::Cidr, "10.0.0.0/8", vec![assertion("BR-PF", 70, true)]);
    let m = matched_as(
        "10.0.0.0/8",
        pb::MatchKind::Cidr,
        &revoked_block,
        &none,
        "FR-OCLCTIC",
    );
    let r = result("10.1.2.3".into(), ip.clone(), m.into_iter().collect());
    assert_eq!((r.verdict(), r.max_confidence), (Verdict::Revoked, 0));

    let r = result("10.1.2.3".into(), ip, Vec::new());
    assert_eq!(r.verdict(), Verdict::Unknown);
    assert!(r.origins.is_empty() && r.matches.is_empty());
}

#[test]
fn a_match_the_reader_may_not_see_is_no_match() {
    let mut red = assertion("AU-AFP", 95, false);
    red.distribution = dist(pb::Tlp::Red, &["BR-PF"]);
    let block = listed(Ty::Cidr, "10.0.0.0/8", vec![red]);
    let none = BTreeSet::new();
    let cidr = pb::MatchKind::Cidr;
    assert!(matched_as("10.0.0.0/8", cidr, &block, &none, "FR-OCLCTIC").is_none());
    let seen = matched_as("10.0.0.0/8", cidr, &block, &none, "BR-PF").expect("recipient");
    assert_eq!(
        (seen.verdict(), seen.max_confidence),
        (Verdict::Malicious, 95)
    );
    let withdrawn = BTreeSet::from(["AU-AFP".to_string()]);
    assert!(matched_as("10.0.0.0/8", cidr, &block, &withdrawn, "BR-PF").is_none());
}

#[test]
fn answers_stop_where_the_message_limit_would_be_passed() {
    let answer = pb::LookupResult {
        input: "x".repeat(100),
        ..Default::default()
    };
    let mut encoded = Vec::new();
    encode_result(&answer, &mut encoded);
    // A field's tag and length, then the input's.
    assert_eq!(encoded.len(), 104);
    // Past the 1024 bytes kept for the envelope, three answers of 104 bytes fit 350; the
    // fourth does not.
    let budget = AnswerBudget::new(1024 + 350);
    for _ in 0..3 {
        budget.take(encoded.len()).expect("room left");
    }
    let err = budget.take(encoded.len()).unwrap_err();
    assert!(matches!(err, LookupError::TooLarge(1374)), "{err}");
    assert!(err.to_string().contains("send fewer values per call"));
}

#[test]
fn a_call_gone_stops_its_chunks_at_the_next_value() {
    let budget = std::sync::Arc::new(AnswerBudget::new(1 << 20));
    let call = CancelOnDrop(std::sync::Arc::clone(&budget));
    budget.take(2).expect("the call is on");
    drop(call);
    assert!(matches!(budget.take(2), Err(LookupError::Cancelled)));
}

/// A value sent many times in one call is read once: its copies cost the filters nothing more,
/// so their time cannot tell whether the node holds it under an audience the caller may not see.
#[test]
fn probes_are_read_once_each_in_first_seen_order() {
    let v = |s: &str| detect(s).expect("a value");
    let (a, b) = (v("198.51.100.7"), v("evil.example"));
    let probes = [&a, &b, &a, &a, &b];
    let (unique, slots) = distinct(&probes);
    assert_eq!(unique, vec![&a, &b]);
    assert_eq!(slots, vec![0, 1, 0, 0, 1]);
    assert_eq!(distinct(&[]), (Vec::new(), Vec::new()));
}
