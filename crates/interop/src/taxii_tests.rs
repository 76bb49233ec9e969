use serde_json::json;

use super::*;

#[test]
fn query_parameters_are_read() {
    let q = parse_objects_query(Some(
        "added_after=2026-12-01T10:00:00.123456Z&limit=2&next=abc&match%5Bid%5D=indicator--0a1b2c3d-0000-4000-8000-000000000001\
         &match[type]=indicator,sighting&match[version]=first,2026-01-01T00:00:00Z&match[spec_version]=2.1&unknown=1",
    ))
    .unwrap();
    assert_eq!(
        q.added_after_us,
        Some(parse_timestamp("2026-12-01T10:00:00.123Z").unwrap() * 1000 + 456)
    );
    assert_eq!(q.limit, Some(2));
    assert_eq!(q.next.as_deref(), Some("abc"));
    assert_eq!(
        q.ids,
        vec!["indicator--0a1b2c3d-0000-4000-8000-000000000001"]
    );
    assert_eq!(q.types, vec!["indicator", "sighting"]);
    assert!(q.versions.first && !q.versions.last && !q.versions.all);
    assert_eq!(
        q.versions.at,
        vec![parse_timestamp("2026-01-01T00:00:00Z").unwrap()]
    );
    assert_eq!(q.spec_versions, vec!["2.1"]);
    assert_eq!(parse_objects_query(None).unwrap(), ObjectsQuery::default());
    // An id named many times is read once (each may cost a scan).
    let repeated = format!(
        "match[id]={}",
        vec!["identity--0a1b2c3d-0000-4000-8000-000000000001"; 200].join(",")
    );
    let q = parse_objects_query(Some(&repeated)).unwrap();
    assert_eq!(q.ids.len(), 1);
}

#[test]
fn added_after_takes_any_fractional_precision() {
    for (text, us) in [
        ("2026-12-01T10:00:00Z", 0),
        ("2026-12-01T10:00:00.1Z", 100_000),
        ("2026-12-01T10:00:00.12Z", 120_000),
        ("2026-12-01T10:00:00.123456789Z", 123_456),
    ] {
        let q = parse_objects_query(Some(&format!("added_after={text}"))).unwrap();
        let base = parse_timestamp("2026-12-01T10:00:00Z").unwrap() * 1000;
        assert_eq!(q.added_after_us, Some(base + us), "{text}");
    }
}

#[test]
fn malformed_parameters_name_themselves() {
    let long = format!("limit={}", "9".repeat(MAX_QUERY_BYTES));
    let many = format!(
        "match[id]={}",
        (0..101)
            .map(|i| format!("indicator--0a1b2c3d-0000-4000-8000-{i:012}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    for (query, parameter) in [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("added_after=yesterday", "added_after"),
        ("match[version]=bogus", "match[version]"),
        ("match[id]=not-an-id", "match[id]"),
        ("match[id]=indicator--xyz", "match[id]"),
        ("match[type]=Indicator", "match[type]"),
        ("match[spec_version]=3.0", "match[spec_version]"),
        ("next=", "next"),
        (long.as_str(), "(query string)"),
        (many.as_str(), "match[id]"),
    ] {
        let e = parse_objects_query(Some(query)).unwrap_err();
        assert_eq!(e.parameter, parameter, "{query:.60}: {e}");
    }
}

#[test]
fn versions_are_selected() {
    let v = [(1, 'a'), (2, 'b'), (3, 'c')];
    let pick = |m: VersionMatch| m.select(&v).iter().map(|(_, c)| *c).collect::<String>();
    assert_eq!(pick(VersionMatch::default()), "c");
    assert_eq!(
        pick(VersionMatch {
            first: true,
            ..Default::default()
        }),
        "a"
    );
    assert_eq!(
        pick(VersionMatch {
            first: true,
            last: true,
            ..Default::default()
        }),
        "ac"
    );
    assert_eq!(
        pick(VersionMatch {
            all: true,
            ..Default::default()
        }),
        "abc"
    );
    assert_eq!(
        pick(VersionMatch {
            at: vec![2],
            ..Default::default()
        }),
        "b"
    );
    assert_eq!(
        pick(VersionMatch {
            at: vec![9],
            ..Default::default()
        }),
        ""
    );
}

#[test]
fn media_types_are_negotiated() {
    for ok in [
        None,
        Some("application/taxii+json;version=2.1"),
        Some("application/taxii+json"),
        Some("Application/TAXII+json; version=\"2.1\""),
        Some("text/html, application/taxii+json;version=2.1"),
        Some("*/*"),
        Some("application/*"),
    ] {
        assert!(accepts_taxii(ok), "{ok:?}");
    }
    for refused in [
        Some("application/json"),
        Some("application/taxii+json;version=2.0"),
        Some("text/html"),
        Some("application/taxii+json;q=0"),
        Some(""),
    ] {
        assert!(!accepts_taxii(refused), "{refused:?}");
    }
    assert!(is_taxii_content(Some("application/taxii+json;version=2.1")));
    assert!(is_taxii_content(Some("application/taxii+json")));
    assert!(!is_taxii_content(Some("application/json")));
    assert!(!is_taxii_content(Some("application/stix+json;version=2.1")));
    assert!(!is_taxii_content(None));
}

#[test]
fn filters_and_pages() {
    let q = parse_objects_query(Some("match[type]=sighting&match[spec_version]=2.1")).unwrap();
    let indicator = json!({"type": "indicator", "id": "indicator--x", "spec_version": "2.1"});
    let sighting = json!({"type": "sighting", "id": "sighting--x", "spec_version": "2.1"});
    assert!(!q.matches(&indicator));
    assert!(q.matches(&sighting));
    assert_eq!(envelope(vec![], None), json!({"more": false}));
    assert_eq!(
        envelope(vec![indicator.clone()], Some("t")),
        json!({"more": true, "next": "t", "objects": [indicator]})
    );
    assert_eq!(
        object_version(&json!({"modified": "2026-01-01T00:00:00Z"})),
        Some(1_767_225_600_000)
    );
}

#[test]
fn status_counts_are_the_lists() {
    let d = |id: &str| StatusDetail {
        id: id.into(),
        version: None,
        message: Some("m".into()),
    };
    let s = StatusResource {
        id: "s".into(),
        request_unix_ms: 0,
        successes: vec![d("a"), d("b")],
        failures: vec![d("c")],
        pendings: vec![],
    };
    let j: serde_json::Value = serde_json::from_str(&s.to_json_text()).unwrap();
    assert_eq!(j["status"], "complete");
    assert_eq!(j["total_count"], 3);
    assert_eq!(j["success_count"], 2);
    assert_eq!(j["failure_count"], 1);
    assert_eq!(j["pending_count"], 0);
    assert_eq!(j["failures"][0]["message"], "m");
    assert_eq!(j["successes"][1]["id"], "b");
    // Required by TAXII 2.1: without one of its own, an object's version is when it came.
    assert_eq!(
        j["successes"][0]["version"], "1970-01-01T00:00:00.000Z",
        "{j}"
    );
    assert_eq!(j["request_timestamp"], "1970-01-01T00:00:00.000Z");
}

#[test]
fn object_ids_are_checked() {
    assert!(object_id_ok(
        "indicator--0a1b2c3d-0000-4000-8000-000000000001"
    ));
    assert!(!object_id_ok(
        "indicator-0a1b2c3d-0000-4000-8000-000000000001"
    ));
    assert!(!object_id_ok("indicator--0a1b2c3d-0000-4000-8000"));
    assert!(!object_id_ok("--0a1b2c3d-0000-4000-8000-000000000001"));
}
