//! Mesh values out to STIX, and back in through the importer.

use super::*;
use crate::marking::tlp_marking_definition;
use crate::stix::{import_stix, ImportOptions};
use intelmesh_core::indicator::normalize;
use intelmesh_core::IndicatorType;

fn ind(ty: IndicatorType, value: &str) -> Indicator {
    match normalize(ty, value) {
        Ok(ind) => ind,
        Err(e) => panic!("test value {value:?} does not normalize: {e}"),
    }
}

fn sample(indicator: Indicator, tlp: Tlp) -> ExportIndicator {
    ExportIndicator {
        indicator,
        origin: "cert-example".into(),
        tlp,
        confidence: Some(75),
        valid_from_unix_ms: 1_600_000_000_000,
        valid_until_unix_ms: Some(1_700_000_000_000),
        revoked: false,
        created_unix_ms: 1_600_000_000_000,
        modified_unix_ms: 1_600_000_001_234,
        tags: vec!["c2".into(), "apt-x".into()],
        description: Some("seen in phishing".into()),
    }
}

fn uuid_part(id: &str) -> &str {
    id.split_once("--").map_or("", |(_, u)| u)
}

#[test]
fn ids_are_deterministic_uuids_per_origin_and_value() {
    let a = ind(IndicatorType::Domain, "a.example");
    let b = ind(IndicatorType::Domain, "b.example");
    assert_eq!(indicator_id("org1", &a), indicator_id("org1", &a));
    assert_ne!(indicator_id("org1", &a), indicator_id("org2", &a));
    assert_ne!(indicator_id("org1", &a), indicator_id("org1", &b));
    assert_ne!(identity_id("org1"), identity_id("org2"));
    for id in [indicator_id("org1", &a), identity_id("org1")] {
        let u = uuid_part(&id);
        let groups: Vec<usize> = u.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id}");
        assert!(u
            .bytes()
            .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(&u[14..15], "8", "version nibble of {id}");
        assert!(
            matches!(&u[19..20], "8" | "9" | "a" | "b"),
            "variant of {id}"
        );
    }
}

#[test]
fn indicator_object_has_the_stix_2_1_fields() {
    let e = sample(
        ind(IndicatorType::Sha256, &"AB".repeat(32)),
        Tlp::AmberStrict,
    );
    let o = indicator_object(&e);
    assert_eq!(o["type"], "indicator");
    assert_eq!(o["spec_version"], "2.1");
    assert_eq!(o["id"], json!(indicator_id("cert-example", &e.indicator)));
    assert_eq!(o["created_by_ref"], json!(identity_id("cert-example")));
    assert_eq!(
        o["pattern"],
        json!(format!("[file:hashes.'SHA-256' = '{}']", "ab".repeat(32)))
    );
    assert_eq!(o["pattern_type"], "stix");
    assert_eq!(o["valid_from"], "2020-09-13T12:26:40.000Z");
    assert_eq!(o["modified"], "2020-09-13T12:26:41.234Z");
    assert_eq!(o["confidence"], 75);
    assert_eq!(o["labels"], json!(["c2", "apt-x"]));
    assert_eq!(
        o["object_marking_refs"],
        json!([crate::marking::TLP2_AMBER_STRICT])
    );
    assert!(o.get("revoked").is_none());
}

#[test]
fn exported_indicators_import_back_unchanged() {
    let values = [
        (IndicatorType::Ipv4, "203.0.113.5"),
        (IndicatorType::Ipv6, "2001:db8::5"),
        (IndicatorType::Cidr, "203.0.113.0/24"),
        (IndicatorType::Cidr, "2001:db8::/48"),
        (IndicatorType::Domain, "xn--telegrm-qbd.com"),
        (IndicatorType::Url, "http://a.example/it's\\x"),
        (IndicatorType::Email, "o'brien@example.com"),
        (IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        (
            IndicatorType::Sha1,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        ),
    ];
    let tlps = Tlp::ALL;
    let exports: Vec<ExportIndicator> = values
        .iter()
        .zip(tlps.iter().cycle())
        .enumerate()
        .map(|(i, ((ty, v), tlp))| {
            let mut e = sample(ind(*ty, v), *tlp);
            e.revoked = i % 2 == 1;
            e.valid_until_unix_ms = (i % 3 != 0).then_some(1_700_000_000_000);
            e.confidence = (i % 4 != 0).then_some(i as u32 * 10);
            e
        })
        .collect();
    let mut objects = vec![identity_object("cert-example", 0)];
    objects.extend(tlps.iter().map(|t| tlp_marking_definition(*t)));
    objects.extend(exports.iter().map(indicator_object));
    let exported = bundle(objects);
    // An explicit default different from every marking proves each TLP came from its marking.
    let back = match import_stix(
        &exported,
        &ImportOptions {
            default_tlp: Tlp::Red,
        },
    ) {
        Ok(back) => back,
        Err(e) => panic!("{e}"),
    };
    let back: Vec<_> = back.indicators().collect();
    assert_eq!(back.len(), exports.len());
    for (e, b) in exports.iter().zip(back) {
        assert_eq!(b.indicator, e.indicator);
        assert_eq!(b.stix_id, indicator_id(&e.origin, &e.indicator));
        assert_eq!(b.tlp, e.tlp);
        assert!(!b.tlp_defaulted);
        assert_eq!(b.confidence, e.confidence);
        assert_eq!(b.valid_from_unix_ms, Some(e.valid_from_unix_ms));
        assert_eq!(b.valid_until_unix_ms, e.valid_until_unix_ms);
        assert_eq!(b.revoked, e.revoked);
        assert_eq!(b.created_unix_ms, Some(e.created_unix_ms));
        assert_eq!(b.modified_unix_ms, Some(e.modified_unix_ms));
        assert_eq!(b.tags, e.tags);
        assert_eq!(b.description, e.description);
        assert_eq!(b.created_by_ref, Some(identity_id(&e.origin)));
    }
}

#[test]
fn sighting_names_the_indicator_and_the_reporter() {
    let indicator = ind(IndicatorType::Domain, "a.example");
    let s = ExportSighting {
        indicator: indicator.clone(),
        indicator_origin: "org-a".into(),
        reporter: "org-b".into(),
        tlp: Tlp::Green,
        first_seen_unix_ms: 0,
        seen_at_unix_ms: 0,
        count: u64::MAX,
    };
    let o = sighting_object(&s);
    assert_eq!(o["type"], "sighting");
    assert_eq!(
        o["sighting_of_ref"],
        json!(indicator_id("org-a", &indicator))
    );
    assert_eq!(o["where_sighted_refs"], json!([identity_id("org-b")]));
    assert_eq!(o["first_seen"], "1970-01-01T00:00:00.000Z");
    assert_eq!(o["count"], MAX_SIGHTING_COUNT);
    assert_eq!(
        o["object_marking_refs"],
        json!([crate::marking::TLP2_GREEN])
    );
    let later = ExportSighting {
        seen_at_unix_ms: 60_000,
        ..s.clone()
    };
    let l = sighting_object(&later);
    assert_eq!(l["id"], o["id"], "a later sighting is a new version of one object");
    assert_eq!(l["modified"], "1970-01-01T00:01:00.000Z");
    assert_eq!(l["created"], o["created"]);
    let red = ExportSighting {
        tlp: Tlp::Red,
        ..s.clone()
    };
    assert_ne!(sighting_object(&red)["id"], o["id"], "one object per TLP");
}

#[test]
fn bundle_id_follows_its_objects() {
    let a = identity_object("org-a", 0);
    let b = identity_object("org-b", 0);
    assert_eq!(bundle(vec![a.clone()])["id"], bundle(vec![a.clone()])["id"]);
    assert_ne!(bundle(vec![a.clone()])["id"], bundle(vec![a, b])["id"]);
}

#[test]
fn export_bundle_carries_identities_and_markings_once() {
    let a = sample(ind(IndicatorType::Domain, "a.example"), Tlp::Green);
    let mut b = sample(ind(IndicatorType::Domain, "b.example"), Tlp::Green);
    b.origin = "cert-other".into();
    let s = ExportSighting {
        indicator: a.indicator.clone(),
        indicator_origin: a.origin.clone(),
        reporter: "cert-other".into(),
        tlp: Tlp::Red,
        first_seen_unix_ms: 1,
        seen_at_unix_ms: 5,
        count: 2,
    };
    let out = export_bundle(&[a.clone(), b.clone()], &[s], 0);
    let objects = out["objects"].as_array().cloned().unwrap_or_default();
    let types: Vec<&str> = objects.iter().filter_map(|o| o["type"].as_str()).collect();
    assert_eq!(
        types,
        vec![
            "identity",
            "identity",
            "marking-definition",
            "marking-definition",
            "indicator",
            "indicator",
            "sighting"
        ]
    );
    assert_eq!(objects[0]["id"], json!(identity_id("cert-example")));
    assert_eq!(objects[1]["id"], json!(identity_id("cert-other")));
    assert_eq!(objects[2]["id"], json!(crate::marking::TLP2_GREEN));
    assert_eq!(objects[3]["id"], json!(crate::marking::TLP2_RED));
    let back = match import_stix(&out, &ImportOptions::default()) {
        Ok(back) => back,
        Err(e) => panic!("{e}"),
    };
    let got: Vec<_> = back
        .indicators()
        .map(|i| (i.indicator.clone(), i.tlp))
        .collect();
    assert_eq!(
        got,
        vec![(a.indicator, Tlp::Green), (b.indicator, Tlp::Green)]
    );
    assert_eq!(back.counts().skipped, 5);
}
