use std::collections::BTreeSet;

use intelmesh_core::indicator::normalize;

use super::*;
use crate::misp::{import_misp, MispOptions, TlpSource};

fn assertion(origin: &str, ty: IndicatorType, value: &str, tlp: Tlp) -> ExportIndicator {
    ExportIndicator {
        indicator: normalize(ty, value).unwrap(),
        origin: origin.to_string(),
        tlp,
        confidence: Some(80),
        valid_from_unix_ms: 1_700_000_000_000,
        valid_until_unix_ms: None,
        revoked: false,
        created_unix_ms: 1_700_000_000_000,
        modified_unix_ms: 1_700_000_500_000,
        tags: vec!["c2".into(), "TLP:RED".into()],
        description: Some("seen in phishing".into()),
    }
}

/// Every mesh type, every TLP, two origins, one revoked assertion.
fn sample() -> Vec<ExportIndicator> {
    use IndicatorType as T;
    let values = [
        (T::Ipv4, "198.51.100.7"),
        (T::Ipv6, "2001:db8::1"),
        (T::Cidr, "203.0.113.0/24"),
        (T::Domain, "evil.example"),
        (T::Url, "http://evil.example/gate.php"),
        (T::Email, "phish@evil.example"),
        (T::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        (T::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        (
            T::Sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ];
    let mut out: Vec<ExportIndicator> = values
        .iter()
        .enumerate()
        .map(|(i, (ty, v))| assertion("SG-IGCI", *ty, v, Tlp::ALL[i % Tlp::ALL.len()]))
        .collect();
    out.push(assertion("BR-PF", T::Domain, "evil.example", Tlp::Red));
    let mut gone = assertion("BR-PF", T::Ipv4, "192.0.2.1", Tlp::Green);
    gone.revoked = true;
    out.push(gone);
    out
}

#[test]
fn every_exported_indicator_reads_back_with_its_tlp() {
    let input = sample();
    let feed = misp_feed(&input);
    assert_eq!((feed.attributes, feed.revoked), (10, 1));
    assert_eq!(feed.events.len(), 2);
    let mut read = BTreeSet::new();
    for (uuid, event) in &feed.events {
        let events = import_misp(event, &MispOptions::default()).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.uuid.as_deref(), Some(uuid.as_str()));
        assert_eq!(e.counts().failed + e.counts().not_for_ids, 0);
        let origin = e.creator_org.clone().unwrap();
        for i in e.indicators() {
            // The attribute's own tag decides, never the default.
            assert_eq!(i.tlp_source, TlpSource::AttributeTag);
            assert_eq!(i.tags, ["c2"], "a tlp: tag of its own is not written");
            assert_eq!(i.comment.as_deref(), Some("seen in phishing"));
            assert_eq!(i.timestamp_unix_ms, Some(1_700_000_500_000));
            read.insert((origin.clone(), i.indicator.clone(), i.tlp));
        }
    }
    let expected: BTreeSet<_> = input
        .iter()
        .filter(|e| !e.revoked)
        .map(|e| (e.origin.clone(), e.indicator.clone(), e.tlp))
        .collect();
    assert_eq!(read, expected);
}

#[test]
fn a_revocation_is_a_deleted_attribute_and_moves_the_event_timestamp_on() {
    let mut input = sample();
    let before = misp_feed(&input);
    let gone = input.iter_mut().find(|e| e.revoked).unwrap();
    gone.modified_unix_ms = 1_800_000_000_000;
    let origin = gone.origin.clone();
    let after = misp_feed(&input);
    let uuid = event_uuid(&origin);
    let event = |feed: &MispFeed| {
        feed.events
            .iter()
            .find(|(u, _)| *u == uuid)
            .map(|(_, e)| e["Event"].clone())
            .unwrap()
    };
    let attributes = event(&after)["Attribute"].as_array().unwrap().clone();
    let deleted: Vec<&Value> = attributes
        .iter()
        .filter(|a| a["value"] == "192.0.2.1")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["deleted"], true);
    assert_eq!(deleted[0]["to_ids"], false);
    // The fetcher updates an event only when the manifest's timestamp moves on.
    assert_eq!(event(&after)["timestamp"], "1800000000");
    assert_eq!(after.manifest[uuid.as_str()]["timestamp"], "1800000000");
    assert_ne!(event(&before)["timestamp"], event(&after)["timestamp"]);
    // Never in the lookup hashes, and read back as nothing to hold.
    assert!(!after
        .hashes
        .contains(&format!("{:x},", Md5::digest("192.0.2.1".as_bytes()))));
    let events = import_misp(&json!({ "Event": event(&after) }), &MispOptions::default()).unwrap();
    assert_eq!(events[0].counts().deleted, 1);
    assert!(events[0]
        .indicators()
        .all(|i| i.indicator.value() != "192.0.2.1"));
}

#[test]
fn the_manifest_names_each_event_and_ids_are_stable() {
    let feed = misp_feed(&sample());
    let manifest = feed.manifest.as_object().unwrap();
    assert_eq!(manifest.len(), 2);
    for (uuid, event) in &feed.events {
        let summary = &manifest[uuid];
        let e = &event["Event"];
        for k in [
            "info",
            "Orgc",
            "analysis",
            "threat_level_id",
            "timestamp",
            "date",
        ] {
            assert_eq!(summary[k], e[k], "{k}");
        }
        assert_eq!(summary["date"], "2023-11-14");
        assert_eq!(summary["timestamp"], "1700000500");
        assert_eq!(summary["published"], true);
        assert_eq!(summary["Tag"], e["Tag"]);
    }
    let br = &feed.events[0].1["Event"];
    assert_eq!(br["Orgc"]["name"], "BR-PF");
    assert_eq!(br["Tag"][0]["name"], "tlp:red");
    // Its revoked TLP:GREEN assertion travels as a deleted attribute to whoever had it: the
    // event goes as far as that.
    assert_eq!(br["distribution"], "1");
    // SG-IGCI's attributes go as far as TLP:CLEAR: the event's distribution allows it.
    assert_eq!(feed.events[1].1["Event"]["distribution"], "3");
    assert_eq!(feed.events[0].0, event_uuid("BR-PF"));
    // The same input gives the same files.
    assert_eq!(misp_feed(&sample()), feed);
    let lines: Vec<&str> = feed.hashes.lines().collect();
    assert_eq!(lines.len(), 10);
    // MD5 of the value, then the event, as MISP's feed generator writes them.
    let line = format!("96119eb3210daa472225fbad69fa9770,{}", feed.events[0].0);
    assert!(lines.contains(&line.as_str()), "{lines:?}");
}

#[test]
fn tlp_and_types_map_as_misp_names_them() {
    assert_eq!(
        tlp_tag_and_distribution(Tlp::Clear),
        ("tlp:clear".to_string(), 3)
    );
    assert_eq!(
        tlp_tag_and_distribution(Tlp::AmberStrict),
        ("tlp:amber+strict".to_string(), 0)
    );
    assert_eq!(attribute_type(IndicatorType::Cidr).0, "ip-dst");
    assert_eq!(attribute_type(IndicatorType::Email).0, "email-src");
}
