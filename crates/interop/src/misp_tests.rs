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
        attr("malware-sample", "a5ff5f.exe|2F7059D7B1DDA3080E391D99788FFF18"),
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
            ind(T::Md5, "2f7059d7b1dda3080e391d99788fff18"),
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

fn tlps(event: &Value) -> Vec<(Tlp, TlpSource)> {
    one_event(event)
        .indicators()
        .map(|i| (i.tlp, i.tlp_source))
        .collect()
}

#[test]
fn an_attribute_shared_wider_than_its_event_keeps_the_event_tlp() {
    let event = json!({"Event": {"distribution": "0", "Attribute": [
        {"type": "domain", "value": "x.example", "to_ids": true, "distribution": "3"},
        {"type": "domain", "value": "y.example", "to_ids": true, "distribution": 1},
    ]}});
    assert_eq!(
        tlps(&event),
        vec![
            (Tlp::AmberStrict, TlpSource::EventDistribution(0)),
            (Tlp::AmberStrict, TlpSource::EventDistribution(0)),
        ]
    );
    let sharing_group = json!({"distribution": 4, "Attribute": [
        {"type": "domain", "value": "x.example", "to_ids": true, "distribution": "3"},
    ]});
    assert_eq!(
        tlps(&sharing_group),
        vec![(Tlp::Red, TlpSource::EventDistribution(4))]
    );
    // The attribute's own tag marks it apart from the event's, but the event's distribution
    // still narrows it.
    let tagged = json!({"distribution": 1, "Tag": [{"name": "tlp:amber"}], "Attribute": [
        {"type": "domain", "value": "x.example", "to_ids": true, "Tag": [{"name": "tlp:clear"}]},
    ]});
    assert_eq!(
        tlps(&tagged),
        vec![(Tlp::Green, TlpSource::EventDistribution(1))]
    );
}

#[test]
fn an_object_stricter_than_its_event_and_attribute_wins() {
    let event = json!({"Event": {"distribution": "3", "Object": [
        {"name": "domain-ip", "distribution": "0", "Attribute": [
            {"type": "domain", "value": "x.example", "to_ids": true, "distribution": "3"},
            {"type": "domain", "value": "y.example", "to_ids": true},
        ]},
        {"name": "file", "distribution": 4, "Attribute": [
            {"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "to_ids": true, "distribution": 1},
        ]},
        {"name": "url", "Tag": [{"name": "tlp:red"}], "Attribute": [
            {"type": "url", "value": "http://x.example/", "to_ids": true, "distribution": 3},
        ]},
    ]}});
    assert_eq!(
        tlps(&event),
        vec![
            (Tlp::AmberStrict, TlpSource::ObjectDistribution(0)),
            (Tlp::AmberStrict, TlpSource::ObjectDistribution(0)),
            (Tlp::Red, TlpSource::ObjectDistribution(4)),
            (Tlp::Red, TlpSource::ObjectTag),
        ]
    );
}

#[test]
fn inherit_at_the_attribute_or_object_leaves_the_level_above_to_decide() {
    let event = json!({"Event": {"distribution": "2",
        "Attribute": [
            {"type": "domain", "value": "a.example", "to_ids": true, "distribution": "5"},
        ],
        "Object": [
            {"name": "o1", "distribution": "5", "Attribute": [
                {"type": "domain", "value": "b.example", "to_ids": true, "distribution": 5},
                {"type": "domain", "value": "c.example", "to_ids": true, "distribution": "0"},
            ]},
            {"name": "o2", "distribution": 0, "Attribute": [
                {"type": "domain", "value": "d.example", "to_ids": true, "distribution": "5"},
            ]},
        ]
    }});
    assert_eq!(
        tlps(&event),
        vec![
            (Tlp::Green, TlpSource::EventDistribution(2)),
            (Tlp::Green, TlpSource::EventDistribution(2)),
            (Tlp::AmberStrict, TlpSource::AttributeDistribution(0)),
            (Tlp::AmberStrict, TlpSource::ObjectDistribution(0)),
        ]
    );
    // Inherit all the way up to an event that gives none: the caller's default.
    let nothing = json!({"Object": [{"name": "o", "distribution": "5", "Attribute": [
        {"type": "domain", "value": "a.example", "to_ids": true, "distribution": "5"},
    ]}]});
    assert_eq!(tlps(&nothing), vec![(Tlp::Amber, TlpSource::Default)]);
}

#[test]
fn an_event_with_many_tags_and_attributes_keeps_a_few_tags_per_indicator() {
    let mut event_tags: Vec<Value> = (0..20_000)
        .map(|i| json!({"name": format!("tag-{i}")}))
        .collect();
    // After every other tag: the TLP must still be found.
    event_tags.push(json!({"name": "tlp:red"}));
    let attributes: Vec<Value> = (0..2_000)
        .map(|i| json!({"type": "domain", "value": format!("d{i}.example"), "to_ids": true}))
        .collect();
    let event = json!({"Event": {"distribution": "3", "Tag": event_tags, "Attribute": attributes}});
    let started = std::time::Instant::now();
    let e = one_event(&event);
    let took = started.elapsed();
    // Generous for a debug build on a busy machine; copying every tag into every attribute
    // took far longer (and gigabytes).
    assert!(took.as_secs() < 20, "import took {took:?}");
    let first: Vec<String> = (0..MAX_TAGS_PER_INDICATOR)
        .map(|i| format!("tag-{i}"))
        .collect();
    assert_eq!(e.tlp_tag, Some(Tlp::Red));
    assert_eq!(e.counts().indicators, 2_000);
    for i in e.indicators() {
        assert_eq!(i.tags, first);
        assert_eq!((i.tlp, i.tlp_source), (Tlp::Red, TlpSource::EventTag));
    }

    // An attribute's own tlp: tag counts though the event's tags fill the indicator.
    let full = json!({"Tag": (0..40).map(|i| json!({"name": format!("t{i}")})).collect::<Vec<_>>(),
        "Attribute": [{"type": "domain", "value": "a.example", "to_ids": true,
            "Tag": [{"name": "extra"}, {"name": "tlp:amber+strict"}]}]});
    let e = one_event(&full);
    let got: Vec<_> = e.indicators().collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].tags.len(), MAX_TAGS_PER_INDICATOR);
    assert!(!got[0].tags.iter().any(|t| t == "extra"));
    assert_eq!(
        (got[0].tlp, got[0].tlp_source),
        (Tlp::AmberStrict, TlpSource::AttributeTag)
    );
}

#[test]
fn repeated_tags_are_kept_once_in_order_and_long_ones_cut() {
    let long = "é".repeat(100);
    let event = json!({"Event": {
        "Tag": [{"name": "a"}, {"name": "b"}, {"name": "a"}, {"name": " b "}, {"name": "TLP:GREEN"}, {"name": "  "}],
        "EventTag": [{"Tag": {"name": "a"}}, {"Tag": {"name": long.clone()}}, {"Tag": {"name": long.clone()}}],
        "Object": [{"name": "o", "Tag": [{"name": "b"}, {"name": "c"}], "Attribute": [
            {"type": "domain", "value": "x.example", "to_ids": true,
             "AttributeTag": [{"Tag": {"name": "c"}}, {"Tag": {"name": "d"}}, {"Tag": {"name": "a"}}]},
        ]}]
    }});
    let e = one_event(&event);
    let cut = format!("{}…", "é".repeat(MAX_TAG_BYTES / 2));
    let got: Vec<_> = e.indicators().map(|i| i.tags.clone()).collect();
    assert_eq!(
        got,
        vec![vec![
            "a".to_owned(),
            "b".into(),
            cut,
            "c".into(),
            "d".into()
        ]]
    );
    assert_eq!(e.tlp_tag, Some(Tlp::Green));
}

#[test]
fn a_searched_attribute_takes_the_distribution_of_the_event_it_names() {
    let found = json!({"response": {"Attribute": [
        {"type": "domain", "value": "searched.example", "to_ids": true, "distribution": "5",
         "Event": {"uuid": "e1", "info": "x", "distribution": "0"}},
        {"type": "domain", "value": "wide.example", "to_ids": true, "distribution": "3",
         "Event": {"uuid": "e2", "info": "y", "distribution": "3"}},
        {"type": "domain", "value": "unknown.example", "to_ids": true, "distribution": "5"},
        {"type": "ip-dst", "value": "192.0.2.9", "to_ids": false},
        // The event's tags given (`includeEventTags`): none is a TLP, or one is.
        {"type": "domain", "value": "tagged.example", "to_ids": true, "distribution": "3",
         "Event": {"uuid": "e3", "info": "z", "distribution": "3", "Tag": [{"name": "osint"}]}},
        {"type": "domain", "value": "red.example", "to_ids": true, "distribution": "3",
         "Event": {"uuid": "e4", "info": "w", "distribution": "3",
                   "EventTag": [{"Tag": {"name": "tlp:red"}}]}},
        // Event tags inherited onto the attribute: known too.
        {"type": "domain", "value": "inherited.example", "to_ids": true, "distribution": "3",
         "Tag": [{"name": "tlp:green", "inherited": 1}],
         "Event": {"uuid": "e5", "info": "v", "distribution": "3"}},
        // In an object whose distribution the search leaves out, inheriting it: its own tag
        // does not widen what the object may have narrowed.
        {"type": "domain", "value": "in-object.example", "to_ids": true, "distribution": "5",
         "object_id": "7",
         "Event": {"uuid": "e6", "info": "u", "distribution": "3", "Tag": []}},
        {"type": "domain", "value": "tagged-in-object.example", "to_ids": true,
         "distribution": "5", "object_id": 8, "Tag": [{"name": "tlp:clear"}],
         "Event": {"uuid": "e7", "info": "t", "distribution": "3", "Tag": []}},
    ]}});
    let events = import_misp(&found, &MispOptions::default()).unwrap();
    let got: Vec<(String, Tlp)> = events
        .iter()
        .flat_map(|e| e.indicators())
        .map(|i| (i.indicator.value().to_string(), i.tlp))
        .collect();
    assert_eq!(
        got,
        [
            ("searched.example".to_string(), Tlp::AmberStrict),
            // Shared with all, but the search said nothing of the event's tags: the import's
            // TLP is the floor.
            ("wide.example".to_string(), Tlp::Amber),
            ("unknown.example".to_string(), Tlp::AmberStrict),
            ("tagged.example".to_string(), Tlp::Clear),
            ("red.example".to_string(), Tlp::Red),
            ("inherited.example".to_string(), Tlp::Green),
            ("in-object.example".to_string(), Tlp::Amber),
            ("tagged-in-object.example".to_string(), Tlp::Amber),
        ]
    );
    assert_eq!(events[3].counts().not_for_ids, 1);
    // The floor is the import's TLP.
    let green = MispOptions {
        default_tlp: Tlp::Green,
    };
    let wide = &import_misp(&found, &green).unwrap()[1];
    assert_eq!(wide.indicators().next().map(|i| i.tlp), Some(Tlp::Green));
    let odd = json!({"response": {"Events": []}});
    assert!(import_misp(&odd, &MispOptions::default()).is_err());
}

#[test]
fn events_of_many_small_attributes_carry_a_bounded_weight_of_tags() {
    // 32 event tags of 128 bytes: every indicator carries all 4 KiB of them.
    let tags: Vec<Value> = (0..MAX_TAGS_PER_INDICATOR)
        .map(|i| json!({"name": format!("{i:03}{}", "t".repeat(MAX_TAG_BYTES - 3))}))
        .collect();
    let per_indicator = MAX_TAGS_PER_INDICATOR * MAX_TAG_BYTES;
    let fit = MAX_TAG_EXPANSION / per_indicator;
    let attributes: Vec<Value> = (0..fit + 100)
        .map(|i| attr("domain", &format!("d{i}.example")))
        .collect();
    let event = one_event(&json!({"Event": {"info": "x", "Tag": tags, "Attribute": attributes}}));
    let imported = event.indicators().count();
    assert_eq!(imported, fit);
    // Split over two events of one input, the budget is the same.
    let (a, b) = attributes.split_at(fit / 2);
    let two = json!({"response": [
        {"Event": {"info": "a", "Tag": tags, "Attribute": a}},
        {"Event": {"info": "b", "Tag": tags, "Attribute": b}},
    ]});
    let events = import_misp(&two, &MispOptions::default()).unwrap();
    let both: usize = events.iter().map(|e| e.indicators().count()).sum();
    assert_eq!(both, fit);
    // Split over two inputs sharing one budget (the event files of a feed), the same again.
    let mut budget = MispBudget::default();
    let files = [
        json!({"Event": {"info": "a", "Tag": tags, "Attribute": a}}),
        json!({"Event": {"info": "b", "Tag": tags, "Attribute": b}}),
    ];
    let read: usize = files
        .iter()
        .map(|f| import_misp_within(f, &MispOptions::default(), &mut budget).unwrap())
        .map(|events| events.iter().map(|e| e.indicators().count()).sum::<usize>())
        .sum();
    assert_eq!(read, fit);
    let first = event.indicators().next().expect("an indicator");
    assert_eq!(
        first.tags.iter().map(String::len).sum::<usize>(),
        per_indicator
    );
    let failed: Vec<&AttributeOutcome> = event
        .attributes
        .iter()
        .map(|a| &a.outcome)
        .filter(|o| matches!(o, AttributeOutcome::Failed(_)))
        .collect();
    assert_eq!(failed.len(), 100);
    assert!(failed.iter().all(|o| matches!(
        o,
        AttributeOutcome::Failed(AttributeError::ExpandsTooFar {
            max: MAX_TAG_EXPANSION
        })
    )));
}

/// A `tlp:` tag naming no level this reads, at any level, may be stricter than anything else
/// said: the value is marked to be withheld (RED), never taken at the distribution's level.
/// The Chatham House extension adds to a level and stays a plain tag.
#[test]
fn a_tlp_tag_naming_no_level_withholds_its_values() {
    let unclear = json!({"distribution": "3", "Tag": [{"name": "tlp:unclear"}], "Attribute": [
        {"type": "ip-dst", "value": "192.0.2.1", "to_ids": true},
    ]});
    assert_eq!(tlps(&unclear), vec![(Tlp::Red, TlpSource::UnreadableTag)]);
    let typo = json!({"distribution": 3, "Attribute": [
        {"type": "domain", "value": "x.example", "to_ids": true,
         "Tag": [{"name": "TLP:amber strict"}]},
    ]});
    assert_eq!(tlps(&typo), vec![(Tlp::Red, TlpSource::UnreadableTag)]);
    let in_object = json!({"distribution": 3, "Object": [
        {"name": "url", "Tag": [{"name": "tlp:amber-ish"}], "Attribute": [
            {"type": "url", "value": "http://x.example/", "to_ids": true},
        ]},
    ]});
    assert_eq!(tlps(&in_object), vec![(Tlp::Red, TlpSource::UnreadableTag)]);
    let chr = json!({"distribution": 3, "Tag": [{"name": "tlp:amber"}, {"name": "tlp:ex:chr"}],
        "Attribute": [{"type": "domain", "value": "x.example", "to_ids": true}]});
    assert_eq!(tlps(&chr), vec![(Tlp::Amber, TlpSource::EventTag)]);
    let tags: Vec<String> = one_event(&chr)
        .indicators()
        .flat_map(|i| i.tags.clone())
        .collect();
    assert_eq!(tags, ["tlp:ex:chr"]);
}
