//! Unit tests of what readers see of one origin's entries in several distributions: a
//! non-recipient sees what it would see had the restricted ones never been published; a
//! recipient sees every audience's sightings apart and the origin's latest assertion.

use super::*;
use intelmesh_core::indicator::detect;

/// One origin's entries about one indicator in two audiences, as the index keeps them: a GREEN
/// upsert (seq 1), a RED upsert to BR-PF (seq 2), and sightings in each (the RED ones earlier,
/// later and more).
fn mixed_from_one_origin() -> pb::IndicatorState {
    let mut green = assertion("AU-AFP", pb::Tlp::Green, &[]);
    green.confidence = 40;
    green.description = "public".into();
    let mut red = assertion("AU-AFP", pb::Tlp::Red, &["BR-PF"]);
    red.seq = 2;
    red.confidence = 95;
    red.tags = vec!["secret-op".into()];
    red.description = "source: informant".into();
    red.issued_at_unix_ms = NOW - 10;
    let green_seen = sightings("AU-AFP", pb::Tlp::Green);
    let red_seen = pb::OriginSightings {
        count: 7,
        first_seen_unix_ms: NOW - 90_000,
        last_seen_unix_ms: NOW - 10,
        last_seq: 4,
        distribution: dist(pb::Tlp::Red, &["BR-PF"]),
        ..green_seen.clone()
    };
    state(
        Ty::Domain,
        "evil.example",
        vec![green, red],
        vec![green_seen, red_seen],
    )
}

/// `state` without the records `reader` may not read: what it would hold had they never been
/// published.
fn without_unreadable(state: &pb::IndicatorState, reader: &OrgId) -> pb::IndicatorState {
    // The core's rule, on the records parsed: the oracle the view's in-place reading must match.
    let ok = |d: &Option<pb::Distribution>, origin: &str| {
        let Some(d) = d else { return false };
        let recipients = d.recipients.iter().map(|r| OrgId::parse(r).unwrap());
        Tlp::from_proto(d.tlp).is_some_and(|tlp| {
            intelmesh_core::Distribution {
                tlp,
                recipients: recipients.collect(),
            }
            .allows(&OrgId::parse(origin).unwrap(), reader)
        })
    };
    let mut s = state.clone();
    s.assertions.retain(|a| ok(&a.distribution, &a.origin));
    s.sightings.retain(|x| ok(&x.distribution, &x.origin));
    s
}

#[test]
fn a_non_recipient_sees_an_origin_as_if_its_restricted_entries_did_not_exist() {
    let s = mixed_from_one_origin();
    let fr = org("FR-OCLCTIC");
    let seen = visible(&s, &fr).unwrap();
    assert_eq!(
        Some(seen.clone()),
        visible(&without_unreadable(&s, &fr), &fr)
    );
    assert_eq!(seen.assertions.len(), 1);
    let a = &seen.assertions[0];
    assert_eq!(
        (a.seq, a.confidence, a.description.as_str()),
        (1, 40, "public")
    );
    assert_eq!(a.tags, ["Botnet"]);
    assert_eq!(
        seen.sightings,
        [sightings("AU-AFP", pb::Tlp::Green)],
        "the GREEN count and times only"
    );
    assert_eq!(max_confidence(&seen, NOW), 40);
    let l = lookup_known(
        "evil.example",
        &detect("evil.example").unwrap(),
        Some(&s),
        &fr,
        NOW,
    );
    assert_eq!(
        (l.max_confidence, l.origins.clone()),
        (40, vec!["AU-AFP".into()])
    );

    // No filter matches on what only the RED records hold.
    let f = |f: pb::Filter| Filter::parse(Some(&f)).unwrap().view(&s, &fr);
    let tag = |t: &str| pb::Filter {
        tags: vec![t.into()],
        ..Default::default()
    };
    assert_eq!(f(tag("secret-op")), None);
    assert_eq!(f(tag("botnet")), Some(seen.clone()));
    let since = |t: i64| pb::Filter {
        updated_since_unix_ms: t,
        ..Default::default()
    };
    assert_eq!(
        f(since(NOW - 500)),
        None,
        "the RED sighting and upsert are later"
    );
    assert_eq!(f(since(NOW - 1000)), Some(seen.clone()));
    let from_au = pb::Filter {
        origins: vec!["AU-AFP".into()],
        ..Default::default()
    };
    assert_eq!(f(from_au), Some(seen));
    assert_eq!(
        visible(&s, &org("SG-IGCI")),
        visible(&s, &fr),
        "a hub is a reader too"
    );
}

#[test]
fn a_recipient_sees_both_audiences_sightings_and_the_origins_latest_assertion() {
    let s = mixed_from_one_origin();
    let br = org("BR-PF");
    let seen = visible(&s, &br).unwrap();
    let kept: Vec<(u64, u32)> = seen
        .assertions
        .iter()
        .map(|a| (a.seq, a.confidence))
        .collect();
    assert_eq!(
        kept,
        [(2, 95)],
        "AU-AFP's RED upsert replaces its GREEN one"
    );
    assert_eq!(
        seen.sightings, s.sightings,
        "GREEN and RED aggregates, apart"
    );
    assert_eq!(max_confidence(&seen, NOW), 95);
    let f = |f: pb::Filter| Filter::parse(Some(&f)).unwrap().view(&s, &br);
    assert!(
        f(pb::Filter {
            tags: vec!["botnet".into()],
            ..Default::default()
        })
        .is_none(),
        "the superseded GREEN upsert's tag does not match"
    );
    assert!(f(pb::Filter {
        tags: vec!["SECRET-OP".into()],
        ..Default::default()
    })
    .is_some());

    // Asking for GREEN at most, the recipient sees what a GREEN reader sees.
    let green = f(pb::Filter {
        tlp_ceiling: pb::Tlp::Green as i32,
        ..Default::default()
    });
    assert_eq!(green, visible(&s, &org("FR-OCLCTIC")));

    // A revocation sent only to BR-PF withdraws the assertion for BR-PF alone.
    let mut revoked = s.clone();
    revoked.assertions[1].revoked = true;
    revoked.assertions[1].revoke_reason = "informant burned".into();
    assert_eq!(
        verdict(visible(&revoked, &br).as_ref(), NOW),
        Verdict::Revoked
    );
    let fr_view = visible(&revoked, &org("FR-OCLCTIC")).unwrap();
    assert_eq!(verdict(Some(&fr_view), NOW), Verdict::Malicious);
    assert!(fr_view
        .assertions
        .iter()
        .all(|a| a.revoke_reason.is_empty()));
}

#[test]
fn an_origins_later_green_assertion_replaces_its_earlier_red_one_for_recipients() {
    let mut s = mixed_from_one_origin();
    // Seq 5: AU-AFP downgrades its assertion to GREEN with a new confidence.
    s.assertions[0].seq = 5;
    s.assertions[0].confidence = 30;
    let br = visible(&s, &org("BR-PF")).unwrap();
    let kept: Vec<(u64, u32)> = br
        .assertions
        .iter()
        .map(|a| (a.seq, a.confidence))
        .collect();
    assert_eq!(kept, [(5, 30)]);
    // Other origins' assertions stay, one each.
    s.assertions.push(assertion("SG-IGCI", pb::Tlp::Green, &[]));
    let both = visible(&s, &org("BR-PF")).unwrap();
    assert_eq!(origins_of(&both), ["AU-AFP", "SG-IGCI"]);
}
