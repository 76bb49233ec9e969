//! Small MISP events in, per-attribute outcomes out.

use super::*;
use serde_json::json;

fn ind(ty: IndicatorType, value: &str) -> Indicator {
    match normalize(ty, value) {
        Ok(ind) => ind,
        Err(e) => panic!("test value {value:?} does not normalize: {e}"),
    }
}

fn one_event(value: &Value) -> MispEvent {
    match import_misp(value, &MispOptions::default()) {
        Ok(mut events) if events.len() == 1 => events.remove(0),
        other => panic!("expected one event, got {other:?}"),
    }
}

fn attr(ty: &str, value: &str) -> Value {
    json!({"type": ty, "value": value, "to_ids": true, "uuid": format!("u-{ty}")})
}

#[test]
fn maps_each_supported_type_and_composite() {
    let event = json!({"Event": {"info": "x", "Attribute": [
        attr("ip-src", "192.0.2.1"),
        attr("ip-dst", "2001:DB8::1"),
        attr("ip-dst", "198.51.100.0/24"),
        attr("ip-dst|port", "192.0.2.2|443"),
        attr("domain", "Evil.Example."),
        attr("hostname", "www.evil.example"),
        attr("domain|ip", "c2.example|203.0.113.9"),
        attr("url", "hxxp://bad.example/x"),
        attr("email-src", "Bad@Example.com"),
        attr("md5", "D41D8CD98F00B204E9800998ECF8427E"),
        attr("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        attr("filename|sha256", &format!("evil.exe|{}", "e3".repeat(32))),
    ]}});
    let got: Vec<Indicator> = one_event(&event)
        .indicators()
        .map(|i| i.indicator.clone())
        .collect();
    use IndicatorType as T;
    assert_eq!(
        got,
        vec![
            ind(T::Ipv4, "192.0.2.1"),
            ind(T::Ipv6, "2001:db8::1"),
            ind(T::Cidr, "198.51.100.0/24"),
            ind(T::Ipv4, "192.0.2.2"),
            ind(T::Domain, "evil.example"),
            ind(T::Domain, "www.evil.example"),
            ind(T::Domain, "c2.example"),
            ind(T::Ipv4, "203.0.113.9"),
            ind(T::Url, "http://bad.example/x"),
            ind(T::Email, "bad@example.com"),
            ind(T::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            ind(T::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            ind(T::Sha256, &"e3".repeat(32)),
        ]
    );
}

#[test]
fn reports_each_attribute_it_does_not_import() {
    let event = json!({"Attribute": [
        {"type": "domain", "value": "ctx.example", "to_ids": false},
        {"type": "domain", "value": "gone.example", "to_ids": true, "deleted": true},
        {"type": "text", "value": "hello", "to_ids": true},
        {"type": "ip-dst", "value": "999.0.0.1", "to_ids": "1"},
        {"type": "domain|ip", "value": "only.example", "to_ids": 1},
        {"type": "url", "to_ids": true},
        "not an object",
    ]});
    let e = one_event(&event);
    let outcomes: Vec<_> = e.attributes.iter().map(|a| a.outcome.clone()).collect();
    assert_eq!(outcomes[0], AttributeOutcome::Skipped(MispSkip::NotForIds));
    assert_eq!(outcomes[1], AttributeOutcome::Skipped(MispSkip::Deleted));
    assert_eq!(
        outcomes[2],
        AttributeOutcome::Skipped(MispSkip::UnsupportedType {
            attribute_type: "text".into()
        })
    );
    assert!(
        matches!(&outcomes[3], AttributeOutcome::Failed(AttributeError::Value { ty: IndicatorType::Ipv4, value, .. }) if value == "999.0.0.1")
    );
    assert_eq!(
        outcomes[4],
        AttributeOutcome::Failed(AttributeError::CompositeParts {
            attribute_type: "domain|ip".into(),
            parts: 2,
            got: 1
        })
    );
    assert_eq!(
        outcomes[5],
        AttributeOutcome::Failed(AttributeError::MissingField { field: "value" })
    );
    assert_eq!(
        outcomes[6],
        AttributeOutcome::Failed(AttributeError::NotAnObject { found: "string" })
    );
    assert_eq!(
        e.counts(),
        MispCounts {
            attributes: 7,
            imported: 0,
            indicators: 0,
            not_for_ids: 1,
            unsupported_type: 1,
            deleted: 1,
            failed: 4
        }
    );
}

#[test]
fn tlp_is_the_stricter_of_tag_and_distribution_else_the_default() {
    let event = json!({"Event": {
        "distribution": "1",
        "Tag": [{"name": "tlp:green"}, {"name": "misp-galaxy:rat=\"jRAT\""}],
        "Attribute": [
            {"type": "domain", "value": "a.example", "to_ids": true, "Tag": [{"name": "TLP:RED"}, {"name": "kill-chain:c2"}]},
            {"type": "domain", "value": "b.example", "to_ids": true, "distribution": "0"},
        ],
        "Object": [{"name": "file", "Attribute": [
            {"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "to_ids": true, "object_relation": "md5"}
        ]}]
    }});
    let e = one_event(&event);
    assert_eq!(e.tlp_tag, Some(Tlp::Green));
    let got: Vec<_> = e
        .indicators()
        .map(|i| (i.tlp, i.tlp_source, i.tags.clone()))
        .collect();
    let galaxy = "misp-galaxy:rat=\"jRAT\"".to_owned();
    assert_eq!(
        got,
        vec![
            (
                Tlp::Red,
                TlpSource::AttributeTag,
                vec![galaxy.clone(), "kill-chain:c2".into()]
            ),
            // "Your organisation only" beats the event's tlp:green.
            (
                Tlp::AmberStrict,
                TlpSource::AttributeDistribution(0),
                vec![galaxy.clone()]
            ),
            (Tlp::Green, TlpSource::EventTag, vec![galaxy]),
        ]
    );
    assert_eq!(e.attributes[2].object_name.as_deref(), Some("file"));

    let untagged = json!({"Event": {"distribution": 3, "Attribute": [
        {"type": "domain", "value": "a.example", "to_ids": true, "distribution": "5"},
        {"type": "domain", "value": "b.example", "to_ids": true, "distribution": 4},
    ]}});
    let got: Vec<_> = one_event(&untagged)
        .indicators()
        .map(|i| (i.tlp, i.tlp_source))
        .collect();
    assert_eq!(
        got,
        vec![
            (Tlp::Clear, TlpSource::EventDistribution(3)),
            (Tlp::Red, TlpSource::AttributeDistribution(4))
        ]
    );

    let bare = json!({"Attribute": [{"type": "domain", "value": "a.example", "to_ids": true}]});
    match import_misp(
        &bare,
        &MispOptions {
            default_tlp: Tlp::Green,
        },
    ) {
        Ok(events) => {
            let got: Vec<_> = events[0]
                .indicators()
                .map(|i| (i.tlp, i.tlp_source))
                .collect();
            assert_eq!(got, vec![(Tlp::Green, TlpSource::Default)]);
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn distribution_table() {
    let got: Vec<_> = (0..=5).map(tlp_of_distribution).collect();
    assert_eq!(
        got,
        vec![
            Some(Tlp::AmberStrict),
            Some(Tlp::Green),
            Some(Tlp::Green),
            Some(Tlp::Clear),
            Some(Tlp::Red),
            None
        ]
    );
}

#[test]
fn accepts_every_event_shape_and_refuses_the_rest() {
    let ev = json!({"uuid": "e1", "Orgc": {"name": "CIRCL"}, "Attribute": [attr("domain", "a.example")]});
    for input in [
        json!({"Event": ev.clone()}),
        ev.clone(),
        json!({"response": [{"Event": ev.clone()}]}),
        json!([ev.clone()]),
    ] {
        let e = one_event(&input);
        assert_eq!(e.uuid.as_deref(), Some("e1"));
        assert_eq!(e.creator_org.as_deref(), Some("CIRCL"));
        assert_eq!(e.counts().indicators, 1);
    }
    let opts = MispOptions::default();
    assert!(matches!(
        import_misp_str("{\"Event\": {,}", &opts),
        Err(MispError::Json(_))
    ));
    assert!(matches!(
        import_misp(&json!({"a": 1}), &opts),
        Err(MispError::NotMisp { .. })
    ));
    assert!(matches!(
        import_misp(&json!("x"), &opts),
        Err(MispError::NotMisp { .. })
    ));
}
