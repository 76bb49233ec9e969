//! `plan` as data in, data out: an envelope large enough to be judged on several cores, with
//! every kind of outcome, comes back in envelope order with one outcome per object.

use std::collections::BTreeSet;

use intelmesh_interop::{parse_warninglist, Warninglists};
use intelmesh_proto::v1 as pb;
use serde_json::{json, Value};

use super::plan;
use crate::api::submission::Publisher;
use crate::api::test_values::{org, NOW};

fn indicator(n: usize, pattern: &str) -> Value {
    json!({
        "type": "indicator", "spec_version": "2.1", "id": format!("indicator--{n}"),
        "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
        "pattern": pattern, "pattern_type": "stix", "valid_from": "2026-11-01T00:00:00Z",
    })
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
        (i.value() == "held.example.org").then(|| pb::OriginAssertion {
            revoked: true,
            ..Default::default()
        })
    };

    let plan = plan(&json!({ "objects": objects }), &publisher, &lists, held).unwrap();

    let signed: Vec<&str> = plan.to_sign.iter().map(|p| p.indicator.value()).collect();
    let expected: Vec<String> = (0..n)
        .filter(|i| ![10, 20, 30, 40, 50, 200].contains(i))
        .map(|i| format!("d{i}.example.org"))
        .collect();
    assert_eq!(signed, expected, "each new value once, in envelope order");
    let failed: Vec<&str> = plan.failures.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(failed, ["indicator--20", "malware--40"]);
    assert!(plan.failures[0]
        .message
        .as_deref()
        .is_some_and(|m| m.contains("warninglists") && m.contains("Public DNS")));
    let succeeded: BTreeSet<&str> = plan.successes.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(plan.successes.len(), n - 2, "one outcome per object");
    assert_eq!(succeeded.len(), n - 2);
    for id in [
        "indicator--10",
        "indicator--200",
        "indicator--30",
        "marking-definition--50",
    ] {
        assert!(succeeded.contains(id), "{id} succeeds without being signed");
    }
}
