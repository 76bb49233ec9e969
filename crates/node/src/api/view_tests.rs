//! Unit tests of the API rules in `view.rs`, on plain values.

use super::*;
use intelmesh_core::indicator::detect;
use intelmesh_proto::v1::{IndicatorType as Ty, Verdict};

use crate::api::lookup;
use crate::api::test_values::{dist, org, NOW};

fn assertion(origin: &str, tlp: pb::Tlp, recipients: &[&str]) -> pb::OriginAssertion {
    pb::OriginAssertion {
        origin: origin.into(),
        seq: 1,
        confidence: 60,
        distribution: dist(tlp, recipients),
        issued_at_unix_ms: NOW - 1000,
        tags: vec!["Botnet".into()],
        ..Default::default()
    }
}

fn sightings(origin: &str, tlp: pb::Tlp) -> pb::OriginSightings {
    pb::OriginSightings {
        origin: origin.into(),
        count: 2,
        first_seen_unix_ms: NOW - 5000,
        last_seen_unix_ms: NOW - 4000,
        last_seq: 3,
        distribution: dist(tlp, &[]),
    }
}

fn state(
    ty: Ty,
    value: &str,
    a: Vec<pb::OriginAssertion>,
    s: Vec<pb::OriginSightings>,
) -> pb::IndicatorState {
    pb::IndicatorState {
        indicator: Some(pb::IndicatorRef {
            r#type: ty as i32,
            value: value.into(),
        }),
        assertions: a,
        sightings: s,
    }
}

/// The `Lookup` answer for a value whose exact state is `state` and that nothing contains.
fn lookup_known(
    input: &str,
    indicator: &Indicator,
    state: Option<&pb::IndicatorState>,
    reader: &OrgId,
    now: i64,
) -> pb::LookupResult {
    let exact = state.and_then(|s| {
        lookup::matched(
            indicator,
            pb::MatchKind::Exact,
            s,
            &BTreeSet::new(),
            reader,
            now,
        )
    });
    lookup::result(input.into(), indicator.clone(), exact.into_iter().collect())
}

fn origins_of(s: &pb::IndicatorState) -> Vec<&str> {
    s.assertions.iter().map(|a| a.origin.as_str()).collect()
}

/// One origin's entries in several audiences, read by recipients and others.
#[path = "view_audience_tests.rs"]
mod audience;

#[test]
fn restricted_records_are_visible_only_to_origin_and_recipients() {
    let s = state(
        Ty::Domain,
        "evil.example",
        vec![
            assertion("AU-AFP", pb::Tlp::Red, &["BR-PF"]),
            assertion("FR-OCLCTIC", pb::Tlp::Amber, &[]),
            assertion("SG-IGCI", pb::Tlp::AmberStrict, &[]),
        ],
        vec![sightings("AU-AFP", pb::Tlp::Red)],
    );
    let br = visible(&s, &org("BR-PF")).unwrap();
    assert_eq!(origins_of(&br), ["AU-AFP", "FR-OCLCTIC"]);
    assert!(br.sightings.is_empty(), "RED sighting without BR-PF listed");
    let au = visible(&s, &org("AU-AFP")).unwrap();
    assert_eq!(origins_of(&au), ["AU-AFP", "FR-OCLCTIC"]);
    assert_eq!(au.sightings.len(), 1);
    let de = visible(&s, &org("DE-BKA")).unwrap();
    assert_eq!(origins_of(&de), ["FR-OCLCTIC"]);

    let red_only = state(
        Ty::Domain,
        "evil.example",
        vec![assertion("AU-AFP", pb::Tlp::Red, &["BR-PF"])],
        vec![],
    );
    assert_eq!(visible(&red_only, &org("DE-BKA")), None);
    // A record without a readable distribution is withheld rather than shown.
    let mut broken = red_only.clone();
    broken.assertions[0].distribution = None;
    assert_eq!(visible(&broken, &org("AU-AFP")), None);
    // So is one naming an unknown TLP, a recipient or an origin that is not an org id, even
    // for the origin itself or a GREEN record.
    let green = state(
        Ty::Domain,
        "evil.example",
        vec![assertion("AU-AFP", pb::Tlp::Green, &[])],
        vec![],
    );
    assert!(visible(&green, &org("DE-BKA")).is_some());
    let mut unknown_tlp = green.clone();
    if let Some(d) = unknown_tlp.assertions[0].distribution.as_mut() {
        d.tlp = 99;
    }
    let mut bad_recipient = red_only.clone();
    if let Some(d) = bad_recipient.assertions[0].distribution.as_mut() {
        d.recipients.push("br_pf".into());
    }
    let mut bad_origin = green.clone();
    bad_origin.assertions[0].origin = "au-afp".into();
    for (what, s) in [
        ("unknown TLP", &unknown_tlp),
        ("bad recipient", &bad_recipient),
        ("bad origin", &bad_origin),
    ] {
        for reader in ["AU-AFP", "BR-PF", "DE-BKA"] {
            assert_eq!(visible(s, &org(reader)), None, "{what} shown to {reader}");
        }
    }
}

#[test]
fn verdicts_follow_revocation_validity_and_sightings() {
    let ty = Ty::Ipv4;
    let live = assertion("AU-AFP", pb::Tlp::Green, &[]);
    let mut revoked = assertion("BR-PF", pb::Tlp::Green, &[]);
    revoked.revoked = true;
    let mut expired = assertion("FR-OCLCTIC", pb::Tlp::Green, &[]);
    expired.valid_until_unix_ms = Some(NOW);
    let mut future = assertion("SG-IGCI", pb::Tlp::Green, &[]);
    future.valid_from_unix_ms = NOW + 1;

    let v = |a: Vec<pb::OriginAssertion>, s: Vec<pb::OriginSightings>| {
        verdict(Some(&state(ty, "192.0.2.1", a, s)), NOW)
    };
    assert_eq!(verdict(None, NOW), Verdict::Unknown);
    assert_eq!(v(vec![], vec![]), Verdict::Unknown);
    assert_eq!(
        v(vec![live.clone(), revoked.clone()], vec![]),
        Verdict::Malicious
    );
    assert_eq!(v(vec![revoked.clone()], vec![]), Verdict::Revoked);
    assert_eq!(
        v(
            vec![revoked.clone()],
            vec![sightings("AU-AFP", pb::Tlp::Green)]
        ),
        Verdict::Revoked
    );
    assert_eq!(
        v(vec![], vec![sightings("AU-AFP", pb::Tlp::Green)]),
        Verdict::Seen
    );
    assert_eq!(v(vec![expired.clone()], vec![]), Verdict::Seen);
    assert_eq!(v(vec![future.clone()], vec![]), Verdict::Seen);
    assert_eq!(v(vec![expired, revoked], vec![]), Verdict::Seen);
}

#[test]
fn lookup_reports_confidence_in_force_and_visible_origins() {
    let i = detect("hxxp://Evil[.]Example/x").unwrap();
    let mut strong = assertion("AU-AFP", pb::Tlp::Red, &[]);
    strong.confidence = 95;
    let mut expired = assertion("BR-PF", pb::Tlp::Green, &[]);
    expired.confidence = 99;
    expired.valid_until_unix_ms = Some(NOW - 1);
    let s = state(
        Ty::Url,
        i.value(),
        vec![strong, expired, assertion("SG-IGCI", pb::Tlp::Clear, &[])],
        vec![sightings("DE-BKA", pb::Tlp::Green)],
    );
    let r = lookup_known(
        "hxxp://Evil[.]Example/x",
        &i,
        Some(&s),
        &org("FR-OCLCTIC"),
        NOW,
    );
    assert_eq!(r.indicator.as_ref().unwrap().value, "http://evil.example/x");
    assert_eq!(r.verdict, Verdict::Malicious as i32);
    assert_eq!(
        r.max_confidence, 60,
        "the RED 95 is not visible, the 99 expired"
    );
    assert_eq!(r.origins, ["BR-PF", "DE-BKA", "SG-IGCI"]);
    assert!(r.error.is_empty());

    let unknown = lookup_known(
        "x.example",
        &detect("x.example").unwrap(),
        None,
        &org("AU-AFP"),
        NOW,
    );
    assert_eq!(unknown.verdict, Verdict::Unknown as i32);
    assert!(unknown.origins.is_empty());

    let e = detect("300.1.2.3").unwrap_err();
    let r = lookup::error("300.1.2.3".into(), &e);
    assert!(r.indicator.is_none());
    assert!(
        r.error.contains("IPv4") && r.error.contains("invalid_ipv4"),
        "{}",
        r.error
    );
}

#[test]
fn filters_match_type_tag_origin_time_and_cut_at_the_ceiling() {
    let reader = org("SG-IGCI");
    let s = state(
        Ty::Domain,
        "evil.example",
        vec![
            assertion("AU-AFP", pb::Tlp::Amber, &[]),
            assertion("BR-PF", pb::Tlp::Green, &[]),
        ],
        vec![sightings("FR-OCLCTIC", pb::Tlp::Clear)],
    );
    let f = |f: pb::Filter| Filter::parse(Some(&f)).unwrap();
    assert_eq!(
        Filter::parse(None).unwrap().view(&s, &reader),
        visible(&s, &reader)
    );
    let by_type = |t: Ty| pb::Filter {
        types: vec![t as i32, Ty::Url as i32],
        ..Default::default()
    };
    assert!(f(by_type(Ty::Domain)).view(&s, &reader).is_some());
    assert!(f(by_type(Ty::Ipv4)).view(&s, &reader).is_none());
    let tags = |t: &str| pb::Filter {
        tags: vec![t.into()],
        ..Default::default()
    };
    assert!(
        f(tags("botnet")).view(&s, &reader).is_some(),
        "tags in any case"
    );
    assert!(f(tags("phishing")).view(&s, &reader).is_none());
    let from = |o: &str| pb::Filter {
        origins: vec![o.into()],
        ..Default::default()
    };
    assert!(
        f(from("FR-OCLCTIC")).view(&s, &reader).is_some(),
        "sightings count"
    );
    assert!(f(from("DE-BKA")).view(&s, &reader).is_none());
    let since = |t: i64| pb::Filter {
        updated_since_unix_ms: t,
        ..Default::default()
    };
    assert!(f(since(NOW - 1000)).view(&s, &reader).is_some());
    assert!(f(since(NOW - 999)).view(&s, &reader).is_none());

    let ceiling = |t: pb::Tlp| pb::Filter {
        tlp_ceiling: t as i32,
        ..Default::default()
    };
    let green = f(ceiling(pb::Tlp::Green)).view(&s, &reader).unwrap();
    assert_eq!(origins_of(&green), ["BR-PF"], "the AMBER assertion is cut");
    assert_eq!(green.sightings.len(), 1);
    let clear = f(ceiling(pb::Tlp::Clear)).view(&s, &reader).unwrap();
    assert!(clear.assertions.is_empty());
    let amber_only = state(
        Ty::Domain,
        "a.example",
        vec![assertion("AU-AFP", pb::Tlp::Amber, &[])],
        vec![],
    );
    assert!(f(ceiling(pb::Tlp::Green))
        .view(&amber_only, &reader)
        .is_none());
    // Tag matching looks only at what survives the ceiling.
    assert!(f(pb::Filter {
        tags: vec!["botnet".into()],
        tlp_ceiling: pb::Tlp::Clear as i32,
        ..Default::default()
    })
    .view(&s, &reader)
    .is_none());
}

#[test]
fn bad_filters_say_which_field_is_wrong() {
    let err = |f: pb::Filter| Filter::parse(Some(&f)).unwrap_err().0;
    assert!(err(pb::Filter {
        types: vec![4, 42],
        ..Default::default()
    })
    .contains("filter.types[1]"));
    assert!(err(pb::Filter {
        origins: vec!["bad org".into()],
        ..Default::default()
    })
    .contains("filter.origins[0]"));
    assert!(err(pb::Filter {
        tlp_ceiling: 9,
        ..Default::default()
    })
    .contains("tlp_ceiling"));
    // Each tag or origin is a range a page reads: their number is bounded, and a tag's length.
    let many: Vec<String> = (0..=MAX_FILTER_VALUES).map(|i| format!("t{i}")).collect();
    assert_eq!(
        err(pb::Filter {
            tags: many.clone(),
            ..Default::default()
        }),
        format!(
            "filter.tags: {} values, at most {MAX_FILTER_VALUES}",
            MAX_FILTER_VALUES + 1
        )
    );
    assert!(err(pb::Filter {
        origins: many.iter().map(|t| t.to_uppercase()).collect(),
        ..Default::default()
    })
    .starts_with("filter.origins:"));
    assert!(err(pb::Filter {
        tags: vec!["ok".into(), "x".repeat(MAX_TAG_BYTES + 1)],
        ..Default::default()
    })
    .starts_with("filter.tags[1]:"));
    assert!(Filter::parse(Some(&pb::Filter {
        tags: many[..MAX_FILTER_VALUES].to_vec(),
        ..Default::default()
    }))
    .is_ok());
}

#[test]
fn watch_entries_are_admitted_by_visibility_ceiling_and_origin() {
    let header = |origin: &str, tlp: pb::Tlp, r: &[&str]| pb::EntryHeader {
        origin: origin.into(),
        seq: 1,
        distribution: dist(tlp, r),
        ..Default::default()
    };
    let all = Filter::default();
    let reader = org("BR-PF");
    assert!(all.admits_entry(&header("AU-AFP", pb::Tlp::Red, &["BR-PF"]), &reader));
    assert!(!all.admits_entry(&header("AU-AFP", pb::Tlp::Red, &["FR-OCLCTIC"]), &reader));
    let green = Filter::parse(Some(&pb::Filter {
        tlp_ceiling: pb::Tlp::Green as i32,
        origins: vec!["AU-AFP".into()],
        ..Default::default()
    }))
    .unwrap();
    assert!(green.admits_entry(&header("AU-AFP", pb::Tlp::Green, &[]), &reader));
    assert!(!green.admits_entry(&header("AU-AFP", pb::Tlp::Amber, &[]), &reader));
    assert!(!green.admits_entry(&header("SG-IGCI", pb::Tlp::Green, &[]), &reader));
}

#[test]
fn page_sizes_default_and_cap() {
    assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
    assert_eq!(page_size(7), 7);
    assert_eq!(page_size(5000), MAX_PAGE_SIZE);
}

#[test]
fn cursors_round_trip_and_refuse_garbage() {
    let key = crate::token::TokenKey::random();
    let au = org("AU-AFP");
    let cursors = Cursors {
        key: &key,
        reader: &au,
    };
    let c = WatchCursor {
        log: [(org("AU-AFP"), 7), (org("BR-PF"), 0)]
            .into_iter()
            .collect(),
        fills: 3,
    };
    assert_eq!(cursors.decode(&cursors.encode(&c)), Ok(Some(c.clone())));
    assert_eq!(cursors.decode(""), Ok(None));
    assert!(cursors.decode("not hex").unwrap_err().0.contains("cursor"));
    assert!(cursors.decode("ffff").is_err());
    let bad_org = pb::WatchPosition {
        heads: [("bad org".to_string(), 1)].into_iter().collect(),
        ..Default::default()
    };
    assert!(cursors
        .decode(&hex::encode(bad_org.encode_to_vec()))
        .is_err());
    let long = "0".repeat(MAX_CURSOR_CHARS + 2);
    assert!(cursors.decode(&long).unwrap_err().0.contains("too long"));

    // A cursor issued before fill counts were sealed resumes at its heads; its count in the
    // clear (the client's to choose, and so to probe with) is not taken.
    let before = pb::WatchPosition {
        heads: [("AU-AFP".to_string(), 7), ("BR-PF".to_string(), 0)]
            .into_iter()
            .collect(),
        fills: 3,
        sealed_fills: String::new(),
    };
    let resumed = WatchCursor {
        fills: FILLS_UNKNOWN,
        ..c.clone()
    };
    assert_eq!(
        cursors.decode(&hex::encode(before.encode_to_vec())),
        Ok(Some(resumed))
    );
}

/// The fill count counts fills of payloads the watcher may not read: sealed for its org, it
/// shows nothing of them, and no other org's cursor or other token of the key opens as one.
#[test]
fn a_cursors_fill_count_is_sealed_for_its_reader() {
    let key = crate::token::TokenKey::random();
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let for_au = Cursors {
        key: &key,
        reader: &au,
    };
    let for_br = Cursors {
        key: &key,
        reader: &br,
    };
    let at = |fills| WatchCursor {
        log: [(org("AU-AFP"), 7)].into_iter().collect(),
        fills,
    };
    let (few, many) = (for_au.encode(&at(1)), for_au.encode(&at(1 << 40)));
    assert_eq!(few.len(), many.len());
    for cursor in [&few, &many] {
        let p = pb::WatchPosition::decode(hex::decode(cursor).unwrap().as_slice()).unwrap();
        assert_eq!(p.fills, 0, "no count in the clear");
    }
    assert_eq!(for_au.decode(&many).unwrap().unwrap().fills, 1 << 40);
    let err = for_br.decode(&few).unwrap_err();
    assert!(err.0.contains("not one this API issued"), "{err}");
    // A page token of the same key, put where a fill count goes.
    let page = pb::WatchPosition {
        sealed_fills: key.seal(&au, &[0u8; 24]),
        ..Default::default()
    };
    let err = for_au
        .decode(&hex::encode(page.encode_to_vec()))
        .unwrap_err();
    assert!(err.0.contains("not a fill count"), "{err}");
}
