use super::*;

#[test]
fn csv_cells_stay_text_in_a_spreadsheet() {
    let cases = [
        ("evil.example", "evil.example"),
        ("a,b", "\"a,b\""),
        ("say \"hi\"", "\"say \"\"hi\"\"\""),
        (
            "=HYPERLINK(\"http://x/\",\"open\")",
            "\"'=HYPERLINK(\"\"http://x/\"\",\"\"open\"\")\"",
        ),
        ("+1", "\"'+1\""),
        ("-2+3+cmd|' /C calc'!A0", "\"'-2+3+cmd|' /C calc'!A0\""),
        ("@SUM(A1)", "\"'@SUM(A1)\""),
        ("\tx", "\"'\tx\""),
        ("line\nbreak", "\"line\nbreak\""),
        ("", ""),
    ];
    for (text, cell) in cases {
        assert_eq!(csv_field(text), cell, "{text:?}");
    }
}

#[test]
fn a_tags_cell_splits_back_into_its_tags() {
    let tags = [
        "c2".to_string(),
        "a;b".into(),
        "back\\slash".into(),
        "=1".into(),
        "two\nlines\r".into(),
    ];
    let cell = tags_cell(&tags);
    assert_eq!(cell, "\"c2;a\\;b;back\\\\slash;=1;two\\nlines\\r\"");
    assert_eq!(cell.lines().count(), 1);
    // Split on `;` not escaped, unescape: the tags again.
    let inner = cell.trim_matches('"');
    let mut back = vec![String::new()];
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => back
                .last_mut()
                .unwrap()
                .extend(chars.next().map(|c| match c {
                    'n' => '\n',
                    'r' => '\r',
                    c => c,
                })),
            ';' => back.push(String::new()),
            c => back.last_mut().unwrap().push(c),
        }
    }
    assert_eq!(back, tags);
    // Led by a formula character, the cell is marked as text.
    assert_eq!(tags_cell(&["=1".to_string()]), "\"'=1\"");
}

#[test]
fn blocks_too_wide_for_a_block_list_are_named() {
    let cidr = |s: &str| normalize(IndicatorType::Cidr, s).expect(s);
    let cases = [
        ("0.0.0.0/1", Some("IPv4 block(s) wider than /8")),
        ("10.0.0.0/8", None),
        ("198.51.100.0/24", None),
        // Holding the mapped range: every IPv4 address in BIND's RPZ.
        (
            "::/8",
            Some("IPv6 block(s) holding every IPv4-mapped address (::ffff:0:0/96)"),
        ),
        (
            "::/64",
            Some("IPv6 block(s) holding every IPv4-mapped address (::ffff:0:0/96)"),
        ),
        (
            "::ffff:0.0.0.0/95",
            Some("IPv6 block(s) holding every IPv4-mapped address (::ffff:0:0/96)"),
        ),
        // Inside it: an IPv4 block of 96 bits less.
        ("::ffff:0.0.0.0/96", Some("IPv4 block(s) wider than /8")),
        ("::ffff:10.0.0.0/100", Some("IPv4 block(s) wider than /8")),
        ("::ffff:10.0.0.0/104", None),
        ("2000::/3", Some("IPv6 block(s) wider than /16")),
        ("2001:db8::/32", None),
        ("::/128", None),
    ];
    for (block, why) in cases {
        assert_eq!(too_wide(&cidr(block)), why, "{block}");
    }
    assert_eq!(
        too_wide(&normalize(IndicatorType::Ipv4, "8.8.8.8").unwrap()),
        None
    );
}

#[test]
fn origin_and_tag_filters_keep_only_the_assertions_they_name() {
    let assertion = |origin: &str, tags: &[&str]| pb::OriginAssertion {
        origin: origin.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    let sighting = |origin: &str| pb::OriginSightings {
        origin: origin.into(),
        count: 1,
        ..Default::default()
    };
    let states = vec![
        pb::IndicatorState {
            assertions: vec![assertion("AU-AFP", &["C2"]), assertion("XX-EVIL", &["c2"])],
            sightings: vec![sighting("AU-AFP"), sighting("XX-EVIL")],
            ..Default::default()
        },
        // Named by the trusted origin's sighting only.
        pb::IndicatorState {
            assertions: vec![assertion("XX-EVIL", &["c2"])],
            sightings: vec![sighting("AU-AFP")],
            ..Default::default()
        },
    ];
    let filter = |origins: &[&str], tags: &[&str]| FilterArgs {
        types: Vec::new(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        origins: origins
            .iter()
            .map(|o| intelmesh_core::OrgId::parse(o).unwrap())
            .collect(),
        tlp_ceiling: None,
        since: None,
    };
    let origins_of = |states: &[pb::IndicatorState]| -> Vec<(Vec<String>, Vec<String>)> {
        states
            .iter()
            .map(|s| {
                (
                    s.assertions.iter().map(|a| a.origin.clone()).collect(),
                    s.sightings.iter().map(|x| x.origin.clone()).collect(),
                )
            })
            .collect()
    };
    let au = narrowed(states.clone(), &filter(&["AU-AFP"], &[]));
    assert_eq!(
        origins_of(&au),
        [
            (vec!["AU-AFP".to_string()], vec!["AU-AFP".to_string()]),
            (vec![], vec!["AU-AFP".to_string()]),
        ]
    );
    // Nothing the trusted origin asserts in force: no value on its block list.
    assert_eq!(asserted(&au[1..], 0), Vec::<Indicator>::new());
    let tagged = narrowed(states.clone(), &filter(&["AU-AFP"], &["c2"]));
    assert_eq!(origins_of(&tagged), [(vec!["AU-AFP".to_string()], vec![])]);
    assert_eq!(narrowed(states.clone(), &filter(&[], &[])), states);
}
