//! Which audience a posted object is signed for: an unmarked object keeps what this node asserts, a marked revocation revokes at its level, and changes no wider than a value is known here or than an earlier object's.

use super::*;

#[test]
fn an_unmarked_object_keeps_the_distribution_of_what_this_node_asserts() {
    // This node asserts red.example as RED to BR-PF, and gone.example to BR-PF and to GREEN
    // readers; a sync tool re-posts one and revokes the other without markings: neither may
    // go out AMBER to every member, and the revocation reaches every audience. A value new
    // here goes out AMBER, and so does one held GREEN (an unmarked upsert is never wider).
    let (me, br) = (org("SG-IGCI"), org("BR-PF"));
    let members = [me.clone(), br.clone()].into();
    let publisher = publisher_of(&me, &members);
    let red = pb::Distribution {
        tlp: pb::Tlp::Red as i32,
        recipients: vec!["BR-PF".into()],
    };
    let green = pb::Distribution {
        tlp: pb::Tlp::Green as i32,
        recipients: Vec::new(),
    };
    let amber = pb::Distribution {
        tlp: pb::Tlp::Amber as i32,
        recipients: Vec::new(),
    };
    let held = |i: &intelmesh_core::Indicator| {
        let assertion =
            |seq: u64, distribution: &pb::Distribution, revoked: bool| pb::OriginAssertion {
                origin: "SG-IGCI".into(),
                seq,
                confidence: 10,
                distribution: Some(distribution.clone()),
                revoked,
                ..Default::default()
            };
        match i.value() {
            "red.example" => vec![assertion(7, &red, false)],
            // Asserted to BR-PF (RED) and to GREEN readers, and revoked for AMBER ones.
            "gone.example" => vec![
                assertion(5, &green, false),
                assertion(6, &amber, true),
                assertion(7, &red, false),
            ],
            "green.example" | "gone-green.example" => vec![assertion(7, &green, false)],
            _ => Vec::new(),
        }
    };
    let mut revoked = indicator(2, "[domain-name:value = 'gone.example']");
    revoked["revoked"] = json!(true);
    let mut gone_green = indicator(5, "[domain-name:value = 'gone-green.example']");
    gone_green["revoked"] = json!(true);
    let objects = vec![
        indicator(1, "[domain-name:value = 'red.example']"),
        revoked,
        indicator(3, "[domain-name:value = 'new.example']"),
        indicator(4, "[domain-name:value = 'green.example']"),
        gone_green,
    ];
    let body = json!({ "objects": objects });
    let plan = plan(
        &body,
        &publisher,
        &Warninglists::new(),
        (asserting(held), no_containers),
    )
    .unwrap();
    let signed: Vec<(&str, intelmesh_core::Tlp, Vec<String>)> = plan
        .to_sign
        .iter()
        .map(|p| {
            let d = &p.distribution;
            let to = d.recipients.iter().map(ToString::to_string).collect();
            (p.indicator.value(), d.tlp, to)
        })
        .collect();
    use intelmesh_core::Tlp;
    assert_eq!(
        signed,
        [
            ("red.example", Tlp::Red, vec!["BR-PF".to_string()]),
            ("gone.example", Tlp::Green, vec![]),
            ("gone.example", Tlp::Red, vec!["BR-PF".to_string()]),
            ("new.example", Tlp::Amber, vec![]),
            ("green.example", Tlp::Amber, vec![]),
            ("gone-green.example", Tlp::Green, vec![]),
        ],
        "held GREEN: an unmarked upsert goes out AMBER, never wider than the default; a \
         revocation reaches the GREEN readers"
    );
    // gone.example: a revocation for each audience it is still in force for (not the AMBER
    // one, revoked already).
    for i in [1, 2, 5] {
        assert!(matches!(
            plan.to_sign[i].payload.body,
            Some(pb::payload::Body::Revoke(_))
        ));
    }
    assert_eq!(plan.failures.len(), 0, "{:?}", plan.failures);
}

/// A marked revocation revokes what is in force at its TLP level (every audience there: a
/// marking names no recipients), whatever other audiences hold; one naming a level the value
/// is not in force at fails, naming those it is.
#[test]
fn a_marked_revocation_revokes_the_audiences_at_its_level_or_fails() {
    use intelmesh_interop::marking::{TLP2_AMBER, TLP2_CLEAR, TLP2_RED};
    let (me, br) = (org("SG-IGCI"), org("BR-PF"));
    let members = [me.clone(), br.clone()].into();
    let publisher = publisher_of(&me, &members);
    let dist = |tlp: pb::Tlp, to: &[&str]| pb::Distribution {
        tlp: tlp as i32,
        recipients: to.iter().map(|s| s.to_string()).collect(),
    };
    // In force to CLEAR readers (seq 10); to BR-PF under RED, revoked since (seq 14).
    let held = |_: &intelmesh_core::Indicator| {
        let assertion = |seq: u64, d: pb::Distribution, revoked: bool| pb::OriginAssertion {
            origin: "SG-IGCI".into(),
            seq,
            distribution: Some(d),
            revoked,
            ..Default::default()
        };
        vec![
            assertion(10, dist(pb::Tlp::Clear, &[]), false),
            assertion(14, dist(pb::Tlp::Red, &["BR-PF"]), true),
        ]
    };
    let revoked = |n: usize, marking: &str| {
        let mut o = indicator(n, "[domain-name:value = 'evil.example']");
        o["revoked"] = json!(true);
        o["object_marking_refs"] = json!([marking]);
        o
    };
    let plan_one = |o: Value| {
        plan(
            &json!({ "objects": [o] }),
            &publisher,
            &Warninglists::new(),
            (asserting(held), no_containers),
        )
        .unwrap()
    };

    let clear = plan_one(revoked(1, TLP2_CLEAR));
    assert_eq!(clear.successes.len(), 1, "{:?}", clear.failures);
    let signed: Vec<_> = clear.to_sign.iter().map(|p| p.distribution.tlp).collect();
    assert_eq!(signed, [intelmesh_core::Tlp::Clear]);
    assert!(matches!(
        clear.to_sign[0].payload.body,
        Some(pb::payload::Body::Revoke(_))
    ));
    // Revoked at RED already: nothing to sign, and said so as a success.
    let red = plan_one(revoked(2, TLP2_RED));
    assert!(
        red.to_sign.is_empty() && red.successes.len() == 1,
        "{:?}",
        red.failures
    );
    // Never in force at AMBER: a failure naming where it is.
    let amber = plan_one(revoked(3, TLP2_AMBER));
    assert!(amber.to_sign.is_empty() && amber.successes.is_empty());
    let why = amber.failures[0].message.as_deref().unwrap_or_default();
    assert!(
        why.contains("TLP:AMBER") && why.contains("only under TLP:CLEAR"),
        "{why}"
    );
}

/// Two objects of one POST naming one value: asking the same, it is signed once and both
/// succeed; asking something else (a revocation after an upsert, both judged against the
/// state before the POST), the later one fails rather than vanish as a success.
#[test]
fn a_later_object_changing_a_value_an_earlier_one_changed_fails() {
    let lists = Warninglists::new();
    let pattern = "[domain-name:value = 'twice.example']";
    let same = plan_of(vec![indicator(1, pattern), indicator(2, pattern)], &lists).unwrap();
    assert_eq!((same.to_sign.len(), same.successes.len()), (1, 2));

    let mut revoked = indicator(4, pattern);
    revoked["revoked"] = json!(true);
    let me = org("SG-IGCI");
    let members = [me.clone()].into();
    let publisher = publisher_of(&me, &members);
    let held = |_: &intelmesh_core::Indicator| {
        vec![pb::OriginAssertion {
            origin: "SG-IGCI".into(),
            seq: 3,
            confidence: 50,
            distribution: Some(pb::Distribution {
                tlp: pb::Tlp::Amber as i32,
                recipients: Vec::new(),
            }),
            ..Default::default()
        }]
    };
    let mut upsert = indicator(3, pattern);
    upsert["confidence"] = json!(80);
    let body = json!({ "objects": [upsert, revoked] });
    let p = plan(&body, &publisher, &lists, (asserting(held), no_containers)).unwrap();
    assert_eq!(p.to_sign.len(), 1);
    assert!(matches!(
        p.to_sign[0].payload.body,
        Some(pb::payload::Body::Upsert(_))
    ));
    assert_eq!(p.successes.len(), 1);
    let why = p.failures[0].message.as_deref().unwrap_or_default();
    assert!(
        why.contains("an earlier object of this POST changed it"),
        "{why}"
    );

    // Revoked before the POST: an upsert then a revocation. The revocation asks what held
    // before, but the upsert changed it: it fails rather than leave the value in force as a
    // success.
    let held_revoked = |_: &intelmesh_core::Indicator| {
        vec![pb::OriginAssertion {
            origin: "SG-IGCI".into(),
            seq: 3,
            revoked: true,
            distribution: Some(pb::Distribution {
                tlp: pb::Tlp::Amber as i32,
                recipients: Vec::new(),
            }),
            ..Default::default()
        }]
    };
    let mut revoked = indicator(6, pattern);
    revoked["revoked"] = json!(true);
    let body = json!({ "objects": [indicator(5, pattern), revoked] });
    let p = plan(
        &body,
        &publisher,
        &lists,
        (asserting(held_revoked), no_containers),
    )
    .unwrap();
    let counts = (p.to_sign.len(), p.successes.len(), p.failures.len());
    assert_eq!(counts, (1, 1, 1), "{:?}", p.failures);
    let why = p.failures[0].message.as_deref().unwrap_or_default();
    assert!(
        why.contains("an earlier object of this POST changed it"),
        "{why}"
    );
}

/// A value this node reads only as another origin's RED: an object shared wider (unmarked,
/// so AMBER, or marked GREEN) fails, naming who may read it; one marked RED is signed.
#[test]
fn an_object_shared_wider_than_its_value_is_known_here_fails() {
    let (me, au) = (org("SG-IGCI"), org("AU-AFP"));
    let members = [me.clone(), au.clone()].into();
    let publisher = publisher_of(&me, &members);
    let told = |_: &intelmesh_core::Indicator| pb::IndicatorState {
        assertions: vec![pb::OriginAssertion {
            origin: "AU-AFP".into(),
            seq: 4,
            distribution: Some(pb::Distribution {
                tlp: pb::Tlp::Red as i32,
                recipients: vec!["SG-IGCI".into()],
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let pattern = "[domain-name:value = 'told.example']";
    let mut green = indicator(2, pattern);
    green["object_marking_refs"] = json!([intelmesh_interop::marking::TLP2_GREEN]);
    let mut red = indicator(3, pattern);
    red["object_marking_refs"] = json!([intelmesh_interop::marking::TLP2_RED]);
    for (object, signed) in [(indicator(1, pattern), false), (green, false), (red, true)] {
        let p = plan(
            &json!({ "objects": [object] }),
            &publisher,
            &Warninglists::new(),
            (told, no_containers),
        )
        .unwrap();
        assert_eq!(p.to_sign.len(), usize::from(signed), "{:?}", p.failures);
        if !signed {
            let why = p.failures[0].message.as_deref().unwrap_or_default();
            assert!(
                why.contains("known here only") && why.contains("AU-AFP, SG-IGCI"),
                "{why}"
            );
        }
    }
}
