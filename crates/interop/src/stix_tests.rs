//! Small STIX inputs in, outcomes out.

use super::*;
use crate::marking::{TLP1_RED, TLP2_GREEN};
use intelmesh_core::indicator::normalize;
use intelmesh_core::IndicatorType;
use serde_json::json;

fn ind(ty: IndicatorType, value: &str) -> Indicator {
    match normalize(ty, value) {
        Ok(ind) => ind,
        Err(e) => panic!("test value {value:?} does not normalize: {e}"),
    }
}

fn import(value: &Value) -> StixImport {
    match import_stix(value, &ImportOptions::default()) {
        Ok(got) => got,
        Err(e) => panic!("import refused: {e}"),
    }
}

#[test]
fn reads_an_indicator_with_everything_the_mesh_keeps() {
    let bundle = json!({
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {"type": "marking-definition", "id": "marking-definition--local",
             "definition_type": "statement", "definition": {"statement": "TLP:AMBER+STRICT"}},
            {"type": "indicator", "spec_version": "2.1", "id": "indicator--a",
             "created": "2020-01-01T00:00:00.000Z", "modified": "2020-01-02T00:00:00.000Z",
             "created_by_ref": "identity--x", "name": "bad host",
             "pattern": "[domain-name:value = 'Evil.example' OR ipv4-addr:value = '192.0.2.1']",
             "pattern_type": "stix", "valid_from": "2020-01-01T00:00:00Z",
             "valid_until": "2021-01-01T00:00:00Z", "confidence": 80, "revoked": true,
             "labels": ["apt", "c2"], "indicator_types": ["malicious-activity", "c2"],
             "object_marking_refs": [TLP2_GREEN, "marking-definition--local", "marking-definition--nowhere"]},
            {"type": "relationship", "id": "relationship--r"}
        ]
    });
    let got = import(&bundle);
    assert_eq!(
        got.counts(),
        ImportCounts {
            objects: 3,
            indicator_objects: 1,
            imported_objects: 1,
            indicators: 2,
            skipped: 2,
            failed: 0
        }
    );
    let found: Vec<_> = got.indicators().collect();
    assert_eq!(
        found[0].indicator,
        ind(IndicatorType::Domain, "evil.example")
    );
    assert_eq!(found[1].indicator, ind(IndicatorType::Ipv4, "192.0.2.1"));
    let first = found[0];
    assert_eq!(first.stix_id, "indicator--a");
    assert_eq!(first.tlp, Tlp::AmberStrict);
    assert!(!first.tlp_defaulted);
    assert_eq!(
        first.unknown_markings,
        vec!["marking-definition--nowhere".to_owned()]
    );
    assert_eq!(first.confidence, Some(80));
    assert_eq!(first.valid_from_unix_ms, Some(1_577_836_800_000));
    assert_eq!(first.valid_until_unix_ms, Some(1_609_459_200_000));
    assert_eq!(first.modified_unix_ms, Some(1_577_923_200_000));
    assert!(first.revoked);
    assert_eq!(first.tags, vec!["apt", "c2", "malicious-activity"]);
    assert_eq!(first.created_by_ref.as_deref(), Some("identity--x"));
    assert_eq!(
        got.objects[0].outcome,
        Outcome::Skipped(SkipReason::MarkingDefinition)
    );
    assert_eq!(
        got.objects[2].outcome,
        Outcome::Skipped(SkipReason::NotAnIndicator)
    );
}

#[test]
fn unmarked_objects_take_the_callers_default() {
    let object = json!({"type": "indicator", "id": "indicator--b",
        "pattern": "[url:value = 'http://a.example/x']", "valid_from": "2020-01-01T00:00:00Z"});
    let got = match import_stix(
        &object,
        &ImportOptions {
            default_tlp: Tlp::Green,
        },
    ) {
        Ok(got) => got,
        Err(e) => panic!("{e}"),
    };
    let found: Vec<_> = got.indicators().collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].tlp, Tlp::Green);
    assert!(found[0].tlp_defaulted);
}

#[test]
fn accepts_envelopes_arrays_and_single_objects() {
    let object = json!({"type": "indicator", "id": "indicator--c",
        "pattern": "[ipv4-addr:value = '198.51.100.7']", "object_marking_refs": [TLP1_RED]});
    for input in [
        json!({"objects": [object.clone()]}),
        json!([object.clone()]),
        object.clone(),
        json!({"type": "bundle", "spec_version": "2.0", "objects": [object.clone()]}),
    ] {
        let got = import(&input);
        let tlps: Vec<_> = got
            .indicators()
            .map(|i| (i.indicator.value().to_owned(), i.tlp))
            .collect();
        assert_eq!(tlps, vec![("198.51.100.7".to_owned(), Tlp::Red)], "{input}");
    }
}

#[test]
fn refuses_what_is_not_stix() {
    let opts = ImportOptions::default();
    assert!(matches!(
        import_stix_str("{\"objects\": [},]}", &opts),
        Err(StixError::Json(_))
    ));
    assert_eq!(
        import_stix(&json!(3), &opts),
        Err(StixError::NotStix { found: "number" })
    );
    assert_eq!(
        import_stix(&json!({"hello": 1}), &opts),
        Err(StixError::NotStix {
            found: "object with neither type nor objects"
        })
    );
    // A byte-order mark before the JSON is not an error.
    let bom = "\u{feff}{\"objects\": []}";
    assert_eq!(import_stix_str(bom, &opts), Ok(StixImport::default()));
}

#[test]
fn each_broken_indicator_says_why() {
    let base = json!({"type": "indicator", "id": "indicator--d",
        "pattern": "[ipv4-addr:value = '192.0.2.9']"});
    let with = |key: &str, v: Value| {
        let mut o = base.clone();
        o[key] = v;
        o
    };
    let without = |key: &str| {
        let mut o = base.clone();
        if let Some(m) = o.as_object_mut() {
            m.remove(key);
        }
        o
    };
    let cases = vec![
        (
            without("pattern"),
            ObjectError::MissingField { field: "pattern" },
        ),
        (without("id"), ObjectError::MissingField { field: "id" }),
        (
            with("pattern_type", json!("yara")),
            ObjectError::PatternType {
                pattern_type: "yara".into(),
            },
        ),
        (
            with("confidence", json!(101)),
            ObjectError::BadField {
                field: "confidence",
                reason: "an integer from 0 to 100 was expected, found 101".into(),
            },
        ),
        (
            with("revoked", json!("yes")),
            ObjectError::BadField {
                field: "revoked",
                reason: "a boolean was expected, not a JSON string".into(),
            },
        ),
        (
            with("labels", json!("apt")),
            ObjectError::BadField {
                field: "labels",
                reason: "a list was expected, not a JSON string".into(),
            },
        ),
        (
            with("pattern", json!("[process:name = 'x.exe']")),
            ObjectError::Pattern(PatternError::UnsupportedPath {
                path: "process:name".into(),
            }),
        ),
    ];
    for (object, want) in cases {
        let got = import(&json!([object]));
        assert_eq!(got.objects[0].outcome, Outcome::Failed(want));
        assert_eq!(got.counts().failed, 1);
    }
    let got = import(&json!([with("valid_from", json!("yesterday")), 7]));
    assert!(matches!(
        &got.objects[0].outcome,
        Outcome::Failed(ObjectError::Timestamp {
            field: "valid_from",
            ..
        })
    ));
    assert_eq!(
        got.objects[1].outcome,
        Outcome::Failed(ObjectError::NotAnObject { found: "number" })
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        import_stix_str(&deep, &ImportOptions::default()),
        Err(StixError::Json(_))
    ));
    let object = format!(
        "{{\"type\": \"indicator\", \"id\": \"indicator--e\", \"pattern\": \"{}[ipv4-addr:value = '1.2.3.4']{}\"}}",
        "(".repeat(50_000),
        ")".repeat(50_000)
    );
    let got = import_stix_str(&object, &ImportOptions::default());
    assert!(
        matches!(&got, Ok(g) if g.objects[0].outcome == Outcome::Failed(ObjectError::Pattern(PatternError::TooLong { len: 100_029, max: crate::pattern::MAX_PATTERN_LEN }))),
        "{got:?}"
    );
}

#[test]
fn an_object_may_not_expand_past_what_its_entries_can_carry() {
    // An OR of 1,024 addresses: each value becomes an entry with a copy of the object's text.
    let pattern = (0..1024)
        .map(|i| format!("[ipv4-addr:value = '10.0.{}.{}']", i / 256, i % 256))
        .collect::<Vec<_>>()
        .join(" OR ");
    let object = |description: &str| {
        json!({"type": "indicator", "id": "indicator--e", "pattern": pattern,
            "description": description})
    };
    // Short text: every value is read.
    let small = import(&json!([object("scanner")]));
    match &small.objects[0].outcome {
        Outcome::Imported(values) => assert_eq!(values.len(), 1024),
        other => panic!("{other:?}"),
    }
    // 1 KiB of description on each of 1,024 values: over the object's expansion.
    let long = "x".repeat(1024);
    let got = import(&json!([object(&long)]));
    let shared = "indicator--e".len() + 1024;
    assert_eq!(
        got.objects[0].outcome,
        Outcome::Failed(ObjectError::ExpandsTooFar {
            values: 1024,
            bytes: shared,
            max: MAX_OBJECT_EXPANSION,
        })
    );
    // Text that no entry's payload could hold, even for one value.
    let huge = "x".repeat(MAX_PAYLOAD_BYTES + 1);
    let one = json!({"type": "indicator", "id": "indicator--f",
        "pattern": "[ipv4-addr:value = '192.0.2.9']", "description": huge});
    let got = import(&json!([one]));
    assert_eq!(
        got.objects[0].outcome,
        Outcome::Failed(ObjectError::TooLarge {
            bytes: "indicator--f".len() + MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES,
        })
    );
}

#[test]
fn labels_repeated_many_times_are_kept_once_each() {
    let labels: Vec<String> = (0..20_000).map(|i| format!("l{}", i % 3)).collect();
    let got = import(&json!([{"type": "indicator", "id": "indicator--g",
        "pattern": "[ipv4-addr:value = '192.0.2.9']", "labels": labels,
        "indicator_types": ["l1", "malicious-activity"]}]));
    match &got.objects[0].outcome {
        Outcome::Imported(values) => {
            assert_eq!(values[0].tags, ["l0", "l1", "l2", "malicious-activity"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn labels_past_what_an_entry_carries_are_cut_not_refused() {
    let mut labels: Vec<String> = vec!["é".repeat(200)];
    labels.extend((0..100).map(|i| format!("l{i}")));
    let got = import(&json!([{"type": "indicator", "id": "indicator--g",
        "pattern": "[ipv4-addr:value = '192.0.2.9']", "labels": labels}]));
    match &got.objects[0].outcome {
        Outcome::Imported(values) => {
            let tags = &values[0].tags;
            assert_eq!(tags.len(), intelmesh_core::entry::MAX_TAGS);
            assert!(tags[0].len() <= intelmesh_core::entry::MAX_TAG_BYTES);
            assert!(tags[0].ends_with('…'));
            assert_eq!(tags[1], "l0");
        }
        other => panic!("{other:?}"),
    }
}

/// Of several versions of one object, only the latest counts: by `modified` (else `created`),
/// and of two as late, the one given last.
#[test]
fn older_versions_of_an_object_given_again_are_superseded() {
    let v = |id: &str, modified: Option<&str>| match modified {
        Some(m) => json!({"type": "indicator", "id": id, "modified": m}),
        None => json!({"type": "indicator", "id": id}),
    };
    let objects = [
        v("indicator--a", Some("2024-06-01T00:00:00Z")),
        v("indicator--a", Some("2024-01-01T00:00:00.000Z")),
        v("indicator--b", Some("2024-01-01T00:00:00Z")),
        v("indicator--c", None),
        v("indicator--b", Some("2024-01-01T00:00:00.000Z")),
        v("indicator--c", Some("2020-01-01T00:00:00Z")),
        json!({"type": "indicator"}),
    ];
    let mut found: Vec<usize> = superseded(&objects).into_iter().collect();
    found.sort();
    assert_eq!(found, [1, 2, 3]);
}
