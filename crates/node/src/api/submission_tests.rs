//! Unit tests of the submission rules in `submission.rs`, on plain values.

use super::*;
use intelmesh_proto::v1::IndicatorType as Ty;

use crate::api::test_values::{dist, org, NOW};

/// [`wider_than_known`] of an item's own value.
fn wider(p: &Prepared, held: &pb::IndicatorState, me: &OrgId) -> Option<String> {
    wider_than_known(p, &p.indicator, held, me)
}

fn members() -> BTreeSet<OrgId> {
    ["AU-AFP", "BR-PF", "SG-IGCI"]
        .into_iter()
        .map(org)
        .collect()
}

fn upsert(ty: Ty, value: &str, tlp: pb::Tlp, r: &[&str]) -> pb::Submission {
    pb::Submission {
        r#type: ty as i32,
        value: value.into(),
        distribution: dist(tlp, r),
        body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
            confidence: 80,
            tags: vec![" c2 ".into(), "c2".into(), "".into(), "apt".into()],
            ..Default::default()
        })),
    }
}

#[test]
fn submissions_are_made_canonical() {
    let (me, m) = (org("AU-AFP"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let s = upsert(
        Ty::Unspecified,
        " Evil[.]EXAMPLE ",
        pb::Tlp::Red,
        &["BR-PF", "BR-PF"],
    );
    let got = submission(&s, &p).unwrap();
    assert_eq!(got.indicator.value(), "evil.example");
    assert_eq!(got.distribution.recipients, [org("BR-PF")]);
    let Some(pb::payload::Body::Upsert(u)) = &got.payload.body else {
        panic!("an upsert: {:?}", got.payload);
    };
    assert_eq!(u.indicator.as_ref().unwrap().value, "evil.example");
    assert_eq!(u.indicator.as_ref().unwrap().r#type, Ty::Domain as i32);
    assert_eq!(u.tags, ["c2", "apt"]);
    assert_eq!(u.confidence, 80);
    // What we sign (sealed: nonce, padding) passes the receivers' payload checks.
    let bytes = intelmesh_core::payload::seal(&got.payload, true);
    assert_eq!(
        intelmesh_core::verify::decode_payload(&bytes)
            .unwrap()
            .expect("an indicator payload")
            .indicator,
        got.indicator
    );

    let revoke = pb::Submission {
        body: Some(pb::submission::Body::Revoke(pb::IndicatorRevoke {
            indicator: Some(pb::IndicatorRef {
                r#type: Ty::Ipv4 as i32,
                value: "192.0.2.1".into(),
            }),
            reason: "false positive".into(),
        })),
        ..upsert(Ty::Ipv4, "192[.]0.2.1", pb::Tlp::Green, &[])
    };
    let got = submission(&revoke, &p).unwrap();
    assert!(
        matches!(got.payload.body, Some(pb::payload::Body::Revoke(ref r)) if r.reason == "false positive")
    );
}

#[test]
fn bad_submissions_say_what_is_wrong() {
    let (me, m) = (org("AU-AFP"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let ok = || upsert(Ty::Domain, "evil.example", pb::Tlp::Green, &[]);
    let err = |s: pb::Submission| submission(&s, &p).unwrap_err().0;
    assert!(err(pb::Submission {
        value: "not a domain!".into(),
        ..ok()
    })
    .starts_with("value:"));
    assert!(err(pb::Submission { r#type: 77, ..ok() }).contains("unknown indicator type 77"));
    // A hundred thousand distinct tags (what a hostile caller fits in one message) are refused
    // by size, before any of them is compared with another.
    let many = pb::Submission {
        body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
            tags: (0..100_000).map(|i| format!("t{i}")).collect(),
            ..Default::default()
        })),
        ..ok()
    };
    assert!(err(many).contains("over the 65536-byte payload limit"));
    // Each tag is indexed on every node: 64 distinct tags of 256 bytes at most.
    let tagged = |tags: Vec<String>| pb::Submission {
        body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
            tags,
            ..Default::default()
        })),
        ..ok()
    };
    let distinct: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    assert!(submission(&tagged(distinct[..64].to_vec()), &p).is_ok());
    assert!(submission(&tagged(vec!["a".into(); 500]), &p).is_ok());
    assert_eq!(
        err(tagged(distinct)),
        "upsert has 65 distinct tags; at most 64"
    );
    assert!(submission(&tagged(vec!["x".repeat(256)]), &p).is_ok());
    assert!(err(tagged(vec!["x".repeat(257)])).contains("is 257 bytes; at most 256"));
    assert!(err(pb::Submission {
        distribution: None,
        ..ok()
    })
    .contains("distribution is required"));
    assert!(err(pb::Submission {
        distribution: dist(pb::Tlp::Unspecified, &[]),
        ..ok()
    })
    .contains("tlp is required"));
    assert!(
        err(upsert(Ty::Domain, "a.example", pb::Tlp::Red, &["bad org"])).contains("recipients[0]")
    );
    assert!(
        err(upsert(Ty::Domain, "a.example", pb::Tlp::Red, &["XX-NOPE"])).contains("not a member")
    );
    assert!(
        err(upsert(Ty::Domain, "a.example", pb::Tlp::Green, &["BR-PF"]))
            .contains("only to AMBER+STRICT and RED")
    );
    assert!(err(pb::Submission { body: None, ..ok() }).contains("body is required"));
    let with = |u: pb::IndicatorUpsert| pb::Submission {
        body: Some(pb::submission::Body::Upsert(u)),
        ..ok()
    };
    assert!(err(with(pb::IndicatorUpsert {
        confidence: 101,
        ..Default::default()
    }))
    .contains("confidence 101"));
    assert!(err(with(pb::IndicatorUpsert {
        valid_from_unix_ms: 5,
        valid_until_unix_ms: Some(5),
        ..Default::default()
    }))
    .contains("valid_until"));
    assert!(err(with(pb::IndicatorUpsert {
        description: "x".repeat(MAX_PAYLOAD_BYTES),
        ..Default::default()
    }))
    .contains("byte limit"));
    let other = pb::IndicatorRef {
        r#type: Ty::Domain as i32,
        value: "other.example".into(),
    };
    assert!(err(with(pb::IndicatorUpsert {
        indicator: Some(other),
        ..Default::default()
    }))
    .contains("differs"));
    let same = pb::IndicatorRef {
        r#type: Ty::Domain as i32,
        value: "EVIL.example".into(),
    };
    assert!(submission(
        &with(pb::IndicatorUpsert {
            indicator: Some(same),
            ..Default::default()
        }),
        &p
    )
    .is_ok());
}

#[test]
fn a_batch_is_refused_whole_naming_each_bad_index() {
    let (me, m) = (org("AU-AFP"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let good = upsert(Ty::Domain, "evil.example", pb::Tlp::Green, &[]);
    let bad = upsert(Ty::Ipv4, "999.1.1.1", pb::Tlp::Green, &[]);
    assert_eq!(
        submissions(&[good.clone(), good.clone()], &p)
            .unwrap()
            .len(),
        2
    );
    let e = submissions(&[good.clone(), bad.clone(), good.clone(), bad.clone()], &p)
        .unwrap_err()
        .0;
    assert!(
        e.starts_with("2 of 4 submissions are invalid; nothing was published"),
        "{e}"
    );
    assert!(
        e.contains("submissions[1]: value:") && e.contains("submissions[3]"),
        "{e}"
    );
    assert!(!e.contains("submissions[0]"));
    let many = vec![bad; 15];
    assert!(submissions(&many, &p)
        .unwrap_err()
        .0
        .ends_with("and 5 more"));
    assert!(submissions(&[], &p)
        .unwrap_err()
        .0
        .contains("no submissions"));
    let too_many = vec![good; MAX_SUBMISSIONS + 1];
    assert!(submissions(&too_many, &p)
        .unwrap_err()
        .0
        .contains("split the batch"));
}

#[test]
fn sightings_default_their_time_and_need_a_count() {
    let (me, m) = (org("AU-AFP"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let req = pb::ReportSightingRequest {
        r#type: Ty::Unspecified as i32,
        value: "198.51.100[.]7".into(),
        count: 3,
        distribution: dist(pb::Tlp::Amber, &[]),
        ..Default::default()
    };
    let got = sighting(&req, &p).unwrap();
    assert_eq!(got.indicator.value(), "198.51.100.7");
    assert_eq!(got.indicator.ty(), IndicatorType::Ipv4);
    let Some(pb::payload::Body::Sighting(s)) = &got.payload.body else {
        panic!("a sighting: {:?}", got.payload);
    };
    assert_eq!((s.seen_at_unix_ms, s.count), (NOW, 3));
    let at = sighting(
        &pb::ReportSightingRequest {
            seen_at_unix_ms: NOW - 10,
            ..req.clone()
        },
        &p,
    )
    .unwrap();
    assert!(
        matches!(at.payload.body, Some(pb::payload::Body::Sighting(ref s)) if s.seen_at_unix_ms == NOW - 10)
    );
    let err = |r: pb::ReportSightingRequest| sighting(&r, &p).unwrap_err().0;
    assert!(err(pb::ReportSightingRequest {
        count: 0,
        ..req.clone()
    })
    .contains("count must be at least 1"));
    assert!(err(pb::ReportSightingRequest {
        seen_at_unix_ms: NOW + 3_600_000,
        ..req.clone()
    })
    .contains("future"));
    assert!(err(pb::ReportSightingRequest {
        seen_at_unix_ms: i64::MIN,
        ..req.clone()
    })
    .contains("before 1970"));
    assert!(err(pb::ReportSightingRequest {
        distribution: None,
        ..req
    })
    .contains("distribution"));
}

#[test]
fn a_revocation_of_what_this_node_never_asserted_is_refused() {
    let (me, m) = (org("AU-AFP"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let revoke = |value: &str| pb::Submission {
        body: Some(pb::submission::Body::Revoke(pb::IndicatorRevoke::default())),
        ..upsert(Ty::Domain, value, pb::Tlp::Green, &[])
    };
    let items = submissions(
        &[
            revoke("held.example"),
            upsert(Ty::Domain, "new.example", pb::Tlp::Green, &[]),
            revoke("new.example"),
        ],
        &p,
    )
    .unwrap();
    let asserted = |i: &Indicator| i.value() == "held.example";
    assert!(
        refuse_unasserted(&items, asserted).is_ok(),
        "held, or upserted before in the call"
    );
    let items = submissions(&[revoke("never.example"), revoke("held.example")], &p).unwrap();
    let err = refuse_unasserted(&items, asserted).unwrap_err().0;
    assert!(
        err.contains("submissions[0]: never.example") && !err.contains("held.example"),
        "{err}"
    );
}

#[test]
fn an_audience_past_what_every_index_keeps_is_refused() {
    let (me, m) = (org("AU-AFP"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let red_for = |who: &str| audience_of(&dist(pb::Tlp::Red, &[who]).unwrap());
    // Audiences this node already holds for the value: all but one slot used, or all of them.
    let held_but_one: Vec<Audience> = (1..MAX_SLOTS_PER_ORIGIN)
        .map(|n| red_for(&format!("XX-{n:02}")))
        .collect();
    let full: Vec<Audience> = held_but_one
        .iter()
        .cloned()
        .chain([audience_of(&dist(pb::Tlp::Green, &[]).unwrap())])
        .collect();
    let green = upsert(Ty::Domain, "evil.example", pb::Tlp::Green, &[]);
    let red_br = upsert(Ty::Domain, "evil.example", pb::Tlp::Red, &["BR-PF"]);
    let red_sg = upsert(Ty::Domain, "evil.example", pb::Tlp::Red, &["SG-IGCI"]);
    let held = |h: &Vec<Audience>| {
        let h = h.clone();
        move |_: &Indicator, kind: SlotKind| match kind {
            SlotKind::Assertion => h.clone(),
            SlotKind::Sighting => Vec::new(),
        }
    };
    let items = |subs: &[pb::Submission]| submissions(subs, &p).unwrap();

    // A held audience, or one new audience into the last slot (twice: still one slot).
    assert!(refuse_past_audience_cap(&items(std::slice::from_ref(&green)), held(&full)).is_ok());
    let one_new = items(&[red_br.clone(), red_br.clone()]);
    assert!(refuse_past_audience_cap(&one_new, held(&held_but_one)).is_ok());
    // A new audience past the cap, held or opened earlier in the same call.
    let err = refuse_past_audience_cap(&items(std::slice::from_ref(&red_br)), held(&full))
        .unwrap_err()
        .0;
    assert!(
        err.contains("evil.example") && err.contains("nothing was published"),
        "{err}"
    );
    assert!(refuse_past_audience_cap(&items(&[red_br, red_sg]), held(&held_but_one)).is_err());
    // Sightings have slots of their own.
    let sighting = sighting(
        &pb::ReportSightingRequest {
            r#type: Ty::Domain as i32,
            value: "evil.example".into(),
            distribution: dist(pb::Tlp::Red, &["BR-PF"]),
            count: 1,
            ..Default::default()
        },
        &p,
    )
    .unwrap();
    assert!(refuse_past_audience_cap(&[sighting], held(&full)).is_ok());
}

/// A value known here only as another origin's RED (read here as its recipient) may be
/// published again to its readers only: unrestricted, or to another recipient, it would show
/// the value to members who may not read it. Once any record of it is unrestricted, or the
/// node knows nothing of it, nothing is refused.
#[test]
fn an_entry_shared_wider_than_its_value_is_known_here_is_refused() {
    let (me, m) = (org("BR-PF"), members());
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let prepared = |tlp: pb::Tlp, r: &[&str]| {
        submissions(&[upsert(Ty::Domain, "secret.example", tlp, r)], &p)
            .unwrap()
            .remove(0)
    };
    let record = |origin: &str, tlp: pb::Tlp, r: &[&str]| pb::OriginAssertion {
        origin: origin.into(),
        distribution: Some(pb::Distribution {
            tlp: tlp as i32,
            recipients: r.iter().map(|s| s.to_string()).collect(),
        }),
        ..Default::default()
    };
    let red_from_au = pb::IndicatorState {
        assertions: vec![record("AU-AFP", pb::Tlp::Red, &["BR-PF"])],
        ..Default::default()
    };
    for (tlp, r) in [(pb::Tlp::Amber, &[][..]), (pb::Tlp::Green, &[])] {
        let why = wider(&prepared(tlp, r), &red_from_au, &me).expect("refused");
        assert!(
            why.contains("every member") && why.contains("AU-AFP, BR-PF"),
            "{why}"
        );
    }
    let why = wider(&prepared(pb::Tlp::Red, &["SG-IGCI"]), &red_from_au, &me)
        .expect("a recipient the origin did not name");
    assert!(why.contains("SG-IGCI may not read it"), "{why}");
    assert_eq!(
        wider(&prepared(pb::Tlp::Red, &["AU-AFP"]), &red_from_au, &me),
        None
    );
    assert_eq!(wider(&prepared(pb::Tlp::Red, &[]), &red_from_au, &me), None);
    // Someone's GREEN sighting of it: every member reads the value already.
    let mut seen_green = red_from_au.clone();
    seen_green.sightings.push(pb::OriginSightings {
        origin: "SG-IGCI".into(),
        distribution: Some(pb::Distribution {
            tlp: pb::Tlp::Green as i32,
            recipients: Vec::new(),
        }),
        ..Default::default()
    });
    assert_eq!(
        wider(&prepared(pb::Tlp::Amber, &[]), &seen_green, &me),
        None
    );
    // Told first, then asserted RED for itself alone: that assertion lifts nothing (it
    // would launder what BR was told). Asserted before being told: it lifts.
    let mut laundered = red_from_au.clone();
    laundered.assertions[0].first_issued_at_unix_ms = NOW - 2000;
    let mut own_red = record("BR-PF", pb::Tlp::Red, &[]);
    own_red.first_issued_at_unix_ms = NOW - 1000;
    laundered.assertions.push(own_red.clone());
    assert!(wider(&prepared(pb::Tlp::Green, &[]), &laundered, &me).is_some());
    let mut first_here = laundered.clone();
    first_here.assertions[1].first_issued_at_unix_ms = NOW - 3000;
    assert_eq!(
        wider(&prepared(pb::Tlp::Green, &[]), &first_here, &me),
        None
    );
    // Its own RED record tells the origin nothing: it may re-share what it published.
    let au = org("AU-AFP");
    let as_au = Publisher {
        org: &au,
        members: &m,
        now: NOW,
    };
    let own = submissions(
        &[upsert(Ty::Domain, "secret.example", pb::Tlp::Green, &[])],
        &as_au,
    )
    .unwrap()
    .remove(0);
    assert_eq!(wider(&own, &red_from_au, &au), None);
    // A relay holding the record but not among its readers is told nothing by it (nor does
    // a refusal say the value exists there).
    let sg = org("SG-IGCI");
    assert_eq!(
        wider(&prepared(pb::Tlp::Amber, &[]), &red_from_au, &sg),
        None
    );
    // The whole request, naming the value; nothing known here: nothing refused.
    let items = vec![prepared(pb::Tlp::Amber, &[])];
    let err = refuse_wider_than_known(&items, &me, |_| Ok(Some(red_from_au.clone())), &|_| vec![])
        .unwrap_err();
    assert!(
        err.0.contains("secret.example") && err.0.contains("share_wider"),
        "{err}"
    );
    assert!(refuse_wider_than_known(&items, &me, |_| Ok(None), &|_| vec![]).is_ok());
    // A state that cannot be read is not taken for one known wide: refused, saying why.
    let err =
        refuse_wider_than_known(&items, &me, |_| Err("disk gone".into()), &|_| vec![]).unwrap_err();
    assert!(
        err.0.contains("could not read") && err.0.contains("disk gone"),
        "{err}"
    );
    // Told as an address, asked as its /32: refused all the same.
    let told_ip = |i: &Indicator| Ok((i.ty() == IndicatorType::Ipv4).then(|| red_from_au.clone()));
    let block = submissions(
        &[upsert(Ty::Cidr, "203.0.113.7/32", pb::Tlp::Green, &[])],
        &p,
    )
    .unwrap();
    let err = refuse_wider_than_known(&block, &me, told_ip, &|_| vec![]).unwrap_err();
    assert!(err.0.contains("203.0.113.7/32"), "{err}");
}

/// An address, its whole-length block and its IPv4-mapped form name one value, as a block and
/// its IPv4-mapped block do, and a URL or e-mail address names its host too, with the host's
/// own forms.
#[test]
fn the_same_value_written_otherwise_is_found() {
    let ind = |ty: IndicatorType, v: &str| normalize(ty, v).unwrap();
    let twins = |i: Indicator| -> Vec<String> {
        let mut t: Vec<String> = same_value(&i)
            .iter()
            .map(|t| t.value().to_string())
            .collect();
        t.sort();
        t
    };
    let v4_forms = [
        "203.0.113.7/32",
        "::ffff:203.0.113.7",
        "::ffff:203.0.113.7/128",
    ];
    assert_eq!(twins(ind(IndicatorType::Ipv4, "203.0.113.7")), v4_forms);
    assert_eq!(
        twins(ind(IndicatorType::Cidr, "203.0.113.7/32")),
        [
            "203.0.113.7",
            "::ffff:203.0.113.7",
            "::ffff:203.0.113.7/128"
        ]
    );
    assert!(twins(ind(IndicatorType::Ipv6, "::ffff:203.0.113.7")).contains(&"203.0.113.7".into()));
    assert_eq!(
        twins(ind(IndicatorType::Cidr, "2001:db8::1/128")),
        ["2001:db8::1"]
    );
    assert_eq!(
        twins(ind(IndicatorType::Cidr, "203.0.113.0/24")),
        ["::ffff:203.0.113.0/120"]
    );
    assert_eq!(
        twins(ind(IndicatorType::Cidr, "::ffff:203.0.113.0/120")),
        ["203.0.113.0/24"]
    );
    assert!(twins(ind(IndicatorType::Cidr, "2001:db8::/32")).is_empty());
    assert_eq!(
        twins(ind(IndicatorType::Url, "http://evil.example/gate.php")),
        ["evil.example"]
    );
    assert_eq!(
        twins(ind(IndicatorType::Email, "boss@evil.example")),
        ["evil.example"]
    );
    let by_address = twins(ind(IndicatorType::Url, "http://203.0.113.7/x"));
    assert!(
        by_address.contains(&"203.0.113.7".into()) && by_address.contains(&"203.0.113.7/32".into())
    );
    assert!(twins(ind(IndicatorType::Domain, "evil.example")).is_empty());
}

#[test]
fn a_restricted_entry_names_at_most_the_recipients_every_node_indexes() {
    use intelmesh_core::entry::MAX_RECIPIENTS;
    let me = org("AU-AFP");
    let names: Vec<String> = (0..=MAX_RECIPIENTS).map(|i| format!("M-{i}")).collect();
    let m: BTreeSet<OrgId> = names.iter().map(|n| org(n)).chain([me.clone()]).collect();
    let p = Publisher {
        org: &me,
        members: &m,
        now: NOW,
    };
    let to = |n: usize| {
        let r: Vec<&str> = names[..n].iter().map(String::as_str).collect();
        upsert(Ty::Domain, "a.example", pb::Tlp::Red, &r)
    };
    assert!(submission(&to(MAX_RECIPIENTS), &p).is_ok());
    assert_eq!(
        submission(&to(MAX_RECIPIENTS + 1), &p).unwrap_err().0,
        format!("distribution.recipients: 65 orgs named; at most {MAX_RECIPIENTS}")
    );
}
