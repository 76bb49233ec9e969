//! `plan` as data in, data out: an envelope large enough to be judged on several cores, with
//! every kind of outcome, comes back in envelope order with one outcome per object.

use std::collections::BTreeSet;

use intelmesh_interop::{parse_warninglist, Warninglists};
use intelmesh_proto::v1 as pb;
use serde_json::{json, Value};

use super::{plan, PlanError, MAX_ENVELOPE_OBJECTS, MAX_POST_VALUES};
use crate::api::submission::Publisher;
use crate::api::test_values::{org, NOW};

#[path = "write_tests/audiences.rs"]
mod audiences;

fn indicator(n: usize, pattern: &str) -> Value {
    json!({
        "type": "indicator", "spec_version": "2.1", "id": format!("indicator--{n}"),
        "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z",
    })
}

fn publisher_of<'a>(
    me: &'a intelmesh_core::OrgId,
    members: &'a BTreeSet<intelmesh_core::OrgId>,
) -> Publisher<'a> {
    Publisher {
        org: me,
        members,
        now: NOW,
    }
}

fn nothing_held(_: &intelmesh_core::Indicator) -> pb::IndicatorState {
    pb::IndicatorState::default()
}

/// What the index holds of a value: these assertions alone (this node's, as `held` names them).
fn asserting(
    held: impl Fn(&intelmesh_core::Indicator) -> Vec<pb::OriginAssertion> + Sync,
) -> impl Fn(&intelmesh_core::Indicator) -> pb::IndicatorState + Sync {
    move |i| pb::IndicatorState {
        assertions: held(i),
        ..Default::default()
    }
}

/// `plan` of an envelope of `objects` posted to SG-IGCI, which holds nothing yet.
/// No value holds another here (a test naming none).
fn no_containers(_: &intelmesh_core::Indicator) -> Vec<intelmesh_core::Indicator> {
    Vec::new()
}

fn plan_of(objects: Vec<Value>, lists: &Warninglists) -> Result<super::Plan, PlanError> {
    let me = org("SG-IGCI");
    let members = [me.clone()].into();
    let publisher = publisher_of(&me, &members);
    plan(
        &json!({ "objects": objects }),
        &publisher,
        lists,
        (nothing_held, no_containers),
    )
}

#[test]
fn a_large_envelope_is_planned_in_order_with_one_outcome_per_object() {
    let n = 300;
    let mut objects: Vec<Value> = (0..n)
        .map(|i| indicator(i, &format!("[domain-name:value = 'd{i}.example.org']")))
        .collect();
    // Objects far apart (judged on different cores) naming one value: the first is signed.
    objects[10] = indicator(10, "[domain-name:value = 'd5.example.org']");
    objects[200] = indicator(200, "[domain-name:value = 'D5.example.org']");
    objects[20] = indicator(20, "[ipv4-addr:value = '8.8.8.8']");
    objects[30] = indicator(30, "[domain-name:value = 'held.example.org']");
    objects[30]["revoked"] = json!(true);
    // A revocation of a value this node never asserted revokes nothing: a failure.
    objects[60] = indicator(60, "[domain-name:value = 'never.example.org']");
    objects[60]["revoked"] = json!(true);
    objects[40] = json!({"type": "malware", "id": "malware--40", "name": "x", "is_family": false});
    objects[50] = json!({
        "type": "marking-definition", "spec_version": "2.1", "id": "marking-definition--50",
        "created": "2026-11-01T00:00:00.000Z", "name": "TLP:GREEN",
        "definition_type": "statement", "definition": {"statement": "x"},
    });
    let me = org("SG-IGCI");
    let members: BTreeSet<_> = [me.clone()].into();
    let publisher = Publisher {
        org: &me,
        members: &members,
        now: NOW,
    };
    let mut lists = Warninglists::new();
    let list = r#"{"name": "Public DNS", "type": "cidr", "list": ["8.8.8.8/32"]}"#;
    lists.add(&parse_warninglist(list).unwrap());
    // This node already revoked `held.example.org`: revoking it again signs nothing.
    let held = |i: &intelmesh_core::Indicator| {
        let revoked = pb::OriginAssertion {
            origin: "SG-IGCI".into(),
            revoked: true,
            ..Default::default()
        };
        (i.value() == "held.example.org")
            .then_some(revoked)
            .into_iter()
            .collect()
    };

    let plan = plan(
        &json!({ "objects": objects }),
        &publisher,
        &lists,
        (asserting(held), no_containers),
    )
    .unwrap();

    let signed: Vec<&str> = plan.to_sign.iter().map(|p| p.indicator.value()).collect();
    let expected: Vec<String> = (0..n)
        .filter(|i| ![10, 20, 30, 40, 50, 60, 200].contains(i))
        .map(|i| format!("d{i}.example.org"))
        .collect();
    assert_eq!(signed, expected, "each new value once, in envelope order");
    let failed: Vec<&str> = plan.failures.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(failed, ["indicator--20", "malware--40", "indicator--60"]);
    assert!(plan.failures[2]
        .message
        .as_deref()
        .is_some_and(|m| m.contains("never asserted")));
    assert!(plan.failures[0]
        .message
        .as_deref()
        .is_some_and(|m| m.contains("warninglists") && m.contains("Public DNS")));
    let succeeded: BTreeSet<&str> = plan.successes.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(plan.successes.len(), n - 3, "one outcome per object");
    assert_eq!(succeeded.len(), n - 3);
    for id in [
        "indicator--10",
        "indicator--200",
        "indicator--30",
        "marking-definition--50",
    ] {
        assert!(succeeded.contains(id), "{id} succeeds without being signed");
    }
}

#[test]
fn an_envelope_past_the_posts_budget_signs_what_fits_and_fails_the_rest_in_order() {
    let lists = Warninglists::new();
    // Objects of 100 values each: the budget of values ends inside the 101st.
    let per_object = 100;
    let objects: Vec<Value> = (0..MAX_POST_VALUES / per_object + 20)
        .map(|o| {
            let pattern = (0..per_object)
                .map(|v| format!("[domain-name:value = 'v{v}.o{o}.example.org']"))
                .collect::<Vec<_>>()
                .join(" OR ");
            indicator(o, &pattern)
        })
        .collect();
    let mut objects = objects;
    // After the budget is spent, a marking definition still succeeds and a malware object
    // still fails as not kept.
    let n = objects.len();
    objects[n - 2] = json!({
        "type": "marking-definition", "spec_version": "2.1", "id": "marking-definition--late",
        "created": "2026-11-01T00:00:00.000Z", "name": "TLP:GREEN",
        "definition_type": "statement", "definition": {"statement": "x"},
    });
    objects[n - 1] =
        json!({"type": "malware", "id": "malware--late", "name": "x", "is_family": false});

    let plan = plan_of(objects, &lists).unwrap();

    assert_eq!(plan.to_sign.len(), MAX_POST_VALUES);
    let fitting = MAX_POST_VALUES / per_object;
    let succeeded: Vec<&str> = plan.successes.iter().map(|d| d.id.as_str()).collect();
    let mut expected: Vec<String> = (0..fitting).map(|o| format!("indicator--{o}")).collect();
    expected.push("marking-definition--late".into());
    assert_eq!(succeeded, expected);
    assert_eq!(
        plan.failures.len(),
        n - fitting - 1,
        "one outcome per object"
    );
    for d in &plan.failures[..plan.failures.len() - 1] {
        assert!(
            d.message
                .as_deref()
                .is_some_and(|m| m.contains("post it again")),
            "{d:?}"
        );
    }
    assert_eq!(
        plan.failures.last().map(|d| d.id.as_str()),
        Some("malware--late")
    );
}

#[test]
fn an_envelope_of_too_many_objects_is_refused_whole() {
    let objects = vec![json!(1); MAX_ENVELOPE_OBJECTS + 1];
    let refused = plan_of(objects, &Warninglists::new());
    assert!(matches!(
        refused,
        Err(PlanError::TooManyObjects { objects, max }) if objects == MAX_ENVELOPE_OBJECTS + 1 && max == MAX_ENVELOPE_OBJECTS
    ));
    let objects = vec![json!(1); MAX_ENVELOPE_OBJECTS];
    let plan = plan_of(objects, &Warninglists::new()).unwrap();
    assert_eq!(plan.failures.len(), MAX_ENVELOPE_OBJECTS);
}

#[test]
fn a_value_of_a_refused_object_is_still_signed_for_a_later_object() {
    let mut lists = Warninglists::new();
    let list = r#"{"name": "Public DNS", "type": "cidr", "list": ["8.8.8.8/32"]}"#;
    lists.add(&parse_warninglist(list).unwrap());
    let objects = vec![
        indicator(
            1,
            "[domain-name:value = 'x.example.org'] OR [ipv4-addr:value = '8.8.8.8']",
        ),
        indicator(2, "[domain-name:value = 'x.example.org']"),
    ];
    let plan = plan_of(objects, &lists).unwrap();
    let signed: Vec<&str> = plan.to_sign.iter().map(|p| p.indicator.value()).collect();
    assert_eq!(signed, ["x.example.org"]);
    assert_eq!(plan.failures[0].id, "indicator--1");
    assert_eq!(plan.successes[0].id, "indicator--2");
    // The collection reads it back under this node's id for the value, which the success names.
    let value = intelmesh_core::indicator::normalize(
        intelmesh_core::IndicatorType::Domain,
        "x.example.org",
    )
    .unwrap();
    let stored = intelmesh_interop::stix_export::indicator_id("SG-IGCI", &value);
    assert_eq!(
        plan.successes[0].message.as_deref(),
        Some(format!("stored as {stored}").as_str())
    );
}

#[test]
fn objects_whose_tlp_cannot_be_told_are_failures_not_amber() {
    let mut undefined = indicator(1, "[domain-name:value = 'a.example.org']");
    undefined["object_marking_refs"] = json!(["marking-definition--defined-in-an-earlier-post"]);
    let mut granular = indicator(2, "[domain-name:value = 'b.example.org']");
    granular["granular_markings"] = json!([{
        "marking_ref": "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        "selectors": ["pattern"],
    }]);
    // A TLP marking beside a statement defined with it: the TLP is known.
    let green = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";
    let statement = json!({
        "type": "marking-definition", "spec_version": "2.1",
        "id": "marking-definition--copyright-statement",
        "created": "2026-11-01T00:00:00.000Z", "definition_type": "statement",
        "definition": { "statement": "Copyright 2026 AU-AFP" },
    });
    let mut with_tlp = indicator(3, "[domain-name:value = 'c.example.org']");
    with_tlp["object_marking_refs"] = json!([green, "marking-definition--copyright-statement"]);
    // A TLP marking beside one defined nowhere (a RED defined in an earlier POST, say): what
    // that one restricts is unknown, and the GREEN beside it must not decide.
    let mut beside_undefined = indicator(4, "[domain-name:value = 'd.example.org']");
    beside_undefined["object_marking_refs"] =
        json!([green, "marking-definition--defined-in-an-earlier-post"]);
    // Beside RED, nothing can be shared wider: signed RED.
    let mut beside_red = indicator(5, "[domain-name:value = 'e.example.org']");
    beside_red["object_marking_refs"] = json!([
        "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed",
        "marking-definition--defined-in-an-earlier-post"
    ]);
    // The values of the refused objects, unmarked, before and after them: refused too, not
    // shared at the default.
    let repeat_first = indicator(6, "[domain-name:value = 'a.example.org']");
    let repeat_last = indicator(7, "[domain-name:value = 'b.example.org']");
    let objects = vec![
        repeat_first,
        undefined,
        granular,
        with_tlp,
        beside_undefined,
        statement,
        beside_red,
        repeat_last,
    ];
    let plan = plan_of(objects, &Warninglists::new()).unwrap();
    let signed: Vec<&str> = plan.to_sign.iter().map(|p| p.indicator.value()).collect();
    assert_eq!(signed, ["c.example.org", "e.example.org"]);
    assert_eq!(plan.to_sign[1].distribution.tlp, intelmesh_core::Tlp::Red);
    let failed: Vec<(&str, &str)> = plan
        .failures
        .iter()
        .map(|d| (d.id.as_str(), d.message.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(failed.len(), 5, "{failed:?}");
    let failed = &failed[1..4];
    assert_eq!(failed[2].0, "indicator--4");
    assert_eq!(failed[0].0, "indicator--1");
    assert!(
        failed[0]
            .1
            .contains("marking-definition--defined-in-an-earlier-post"),
        "{}",
        failed[0].1
    );
    assert_eq!(failed[1].0, "indicator--2");
    assert!(failed[1].1.contains("granular markings"), "{}", failed[1].1);
    let repeats: Vec<(&str, bool)> = [&plan.failures[0], &plan.failures[4]]
        .iter()
        .map(|d| {
            let why = d.message.as_deref().unwrap_or_default();
            (
                d.id.as_str(),
                why.contains("markings whose TLP cannot be read"),
            )
        })
        .collect();
    assert_eq!(repeats, [("indicator--6", true), ("indicator--7", true)]);
}

#[test]
fn a_status_keeps_a_bounded_id_and_message_whatever_the_object_carries() {
    let long_id = format!("indicator--{}", "é".repeat(50_000));
    let long_value = format!("{}.example.org", "a".repeat(60));
    let mut bad = indicator(
        1,
        &format!("[domain-name:value = '{long_value}' AND x:y = 1]"),
    );
    bad["id"] = json!(long_id);
    bad["pattern"] = json!(format!("[{}", "x".repeat(60_000)));
    let plan = plan_of(vec![bad], &Warninglists::default()).unwrap();
    assert_eq!(plan.failures.len(), 1);
    let failure = &plan.failures[0];
    assert!(failure.id.len() <= 256, "{}", failure.id.len());
    assert!(failure.id.starts_with("indicator--é") && failure.id.ends_with('…'));
    let message = failure.message.as_deref().unwrap_or_default();
    assert!(
        !message.is_empty() && message.len() <= 1024,
        "{}",
        message.len()
    );
}

#[test]
fn a_post_judges_a_bounded_number_of_values_however_its_objects_are_sized() {
    // 25 objects of 1,000 values each, in one round of judging: past the judging budget,
    // objects are failed without a look at the node's assertions.
    let objects: Vec<Value> = (0..25)
        .map(|o| {
            let values: Vec<String> = (0..1000)
                .map(|v| format!("domain-name:value = 'v{v}.o{o}.example.org'"))
                .collect();
            indicator(o, &format!("[{}]", values.join(" OR ")))
        })
        .collect();
    let me = org("SG-IGCI");
    let members = [me.clone()].into();
    let looked = std::sync::atomic::AtomicUsize::new(0);
    let plan = plan(
        &json!({ "objects": objects }),
        &publisher_of(&me, &members),
        &Warninglists::default(),
        (
            |_: &intelmesh_core::Indicator| {
                looked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pb::IndicatorState::default()
            },
            no_containers,
        ),
    )
    .unwrap();
    let looked = looked.into_inner();
    assert!(looked <= 2 * MAX_POST_VALUES, "{looked} values judged");
    // What fits is signed, in envelope order; every later object fails as over the budget.
    let per_object = 1000;
    let fit = MAX_POST_VALUES / per_object;
    assert_eq!(plan.to_sign.len(), fit * per_object);
    assert_eq!(plan.successes.len(), fit);
    assert_eq!(plan.failures.len(), 25 - fit);
    assert!(plan.failures.iter().all(|f| f
        .message
        .as_deref()
        .is_some_and(|m| m.starts_with("not added"))));
}

#[test]
fn an_envelope_without_objects_adds_nothing_and_is_no_error() {
    let me = org("SG-IGCI");
    let members = [me.clone()].into();
    let publisher = publisher_of(&me, &members);
    let lists = Warninglists::default();
    for body in [
        json!({}),
        json!({"more": false}),
        json!({"more": false, "next": "x"}),
    ] {
        let planned =
            plan(&body, &publisher, &lists, (nothing_held, no_containers)).expect("an envelope");
        assert!(planned.to_sign.is_empty() && planned.successes.is_empty());
        assert!(planned.failures.is_empty(), "{body}");
    }
    // An object naming anything else is still no envelope.
    let other = plan(
        &json!({"id": "x"}),
        &publisher,
        &lists,
        (nothing_held, no_containers),
    );
    assert!(matches!(other, Err(PlanError::NotAnEnvelope(_))));
}

/// Markings given in a shape that is no list (granular markings as one object, marking
/// references as one string) may restrict the object all the same: failures, never signed at
/// the default TLP.
#[test]
fn markings_not_given_as_lists_are_failures_not_amber() {
    let red = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";
    let mut granular = indicator(1, "[domain-name:value = 'a.example.org']");
    granular["granular_markings"] = json!({"marking_ref": red, "selectors": ["pattern"]});
    let mut one_ref = indicator(2, "[domain-name:value = 'b.example.org']");
    one_ref["object_marking_refs"] = json!(red);
    let mut empty = indicator(3, "[domain-name:value = 'c.example.org']");
    empty["granular_markings"] = json!([]);
    let plan = plan_of(vec![granular, one_ref, empty], &Warninglists::new()).unwrap();
    let signed: Vec<&str> = plan.to_sign.iter().map(|p| p.indicator.value()).collect();
    assert_eq!(signed, ["c.example.org"]);
    let failed: Vec<&str> = plan.failures.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(failed, ["indicator--1", "indicator--2"]);
    let why: Vec<&str> = (plan.failures.iter())
        .map(|d| d.message.as_deref().unwrap_or_default())
        .collect();
    assert!(why[0].contains("granular markings are not read"), "{why:?}");
    assert!(why[1].contains("a list was expected"), "{why:?}");
}

/// An envelope giving an indicator and, later or earlier in it, a newer version that revokes
/// it: the older version is not published (it would publish a value the newer one revokes).
#[test]
fn an_older_version_of_an_object_is_not_applied_over_a_newer_one() {
    let pattern = "[domain-name:value = 'revoked.example.org']";
    let older = indicator(9, pattern);
    let mut newer = indicator(9, pattern);
    newer["modified"] = json!("2026-11-02T00:00:00.000Z");
    newer["revoked"] = json!(true);
    for objects in [vec![older.clone(), newer.clone()], vec![newer, older]] {
        let plan = plan_of(objects, &Warninglists::new()).unwrap();
        let upserts = (plan.to_sign.iter())
            .filter(|p| p.indicator.value() == "revoked.example.org")
            .filter(|p| matches!(p.payload.body, Some(pb::payload::Body::Upsert(_))))
            .count();
        assert_eq!(upserts, 0);
        let superseded = (plan.failures.iter())
            .filter(|d| (d.message.as_deref()).is_some_and(|m| m.contains("supersedes it")))
            .map(|d| d.version.clone())
            .collect::<Vec<_>>();
        assert_eq!(superseded, [Some("2026-11-01T00:00:00.000Z".to_string())]);
    }
}
