//! Warninglist JSON in, list names per indicator out.

use super::*;
use intelmesh_core::indicator::normalize;
use serde_json::json;

fn ind(ty: IndicatorType, value: &str) -> Indicator {
    match normalize(ty, value) {
        Ok(ind) => ind,
        Err(e) => panic!("test value {value:?} does not normalize: {e}"),
    }
}

fn list(v: Value) -> Warninglist {
    match warninglist_of(&v) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

fn sample() -> (Warninglists, Vec<AddReport>) {
    let lists = [
        list(
            json!({"name": "dns", "type": "cidr", "list": ["8.8.8.8", "8.8.4.4/32", "2001:4860:4860::8888"],
                    "matching_attributes": ["ip-src", "ip-dst", "domain|ip"]}),
        ),
        list(
            json!({"name": "google", "type": "hostname", "list": ["google.com", ".gstatic.com.", "maps.googleapis.com"],
                    "matching_attributes": ["hostname", "domain", "url"]}),
        ),
        list(
            json!({"name": "private", "type": "cidr", "list": ["10.0.0.0/8", "FE80::/10", "not-a-block", "10.0.0.0/33"]}),
        ),
        list(
            json!({"name": "empty", "type": "string", "list": ["D41D8CD98F00B204E9800998ECF8427E", "3::"],
                    "matching_attributes": ["md5", "ssdeep"]}),
        ),
        list(json!({"name": "cdn", "type": "substring", "list": ["cloudfront"]})),
        list(json!({"name": "rx", "type": "regex", "list": ["^evil"]})),
        list(json!({"name": "exact", "type": "string", "list": ["192.0.2.0/24", "203.0.113.9"]})),
        list(json!({"name": "mapped", "type": "cidr", "list": ["::ffff:198.51.100.0/120"]})),
    ];
    let mut w = Warninglists::new();
    let reports = lists.iter().map(|l| w.add(l)).collect();
    (w, reports)
}

#[test]
fn matches_by_kind() {
    let (w, _) = sample();
    use IndicatorType as T;
    let cases: Vec<(Indicator, Vec<&str>)> = vec![
        (ind(T::Ipv4, "8.8.8.8"), vec!["dns"]),
        (ind(T::Ipv4, "8.8.8.9"), vec![]),
        (ind(T::Ipv6, "2001:4860:4860::8888"), vec!["dns"]),
        (ind(T::Domain, "google.com"), vec!["google"]),
        (ind(T::Domain, "mail.google.com"), vec!["google"]),
        (ind(T::Domain, "notgoogle.com"), vec![]),
        (ind(T::Domain, "a.gstatic.com"), vec!["google"]),
        (ind(T::Url, "https://www.google.com/search"), vec!["google"]),
        (ind(T::Url, "http://8.8.8.8/x"), vec!["dns"]),
        (ind(T::Ipv4, "10.200.3.4"), vec!["private"]),
        (ind(T::Cidr, "10.1.0.0/16"), vec!["private"]),
        // A block holding a listed one is applied whole by a firewall: it is flagged too.
        (ind(T::Cidr, "10.0.0.0/7"), vec!["private"]),
        (ind(T::Cidr, "11.0.0.0/8"), vec![]),
        (ind(T::Cidr, "8.8.8.0/24"), vec!["dns"]),
        (ind(T::Cidr, "8.8.4.4/32"), vec!["dns"]),
        (ind(T::Cidr, "8.8.8.10/31"), vec![]),
        (
            ind(T::Cidr, "0.0.0.0/0"),
            vec!["dns", "exact", "mapped", "private"],
        ),
        (ind(T::Cidr, "2001:4860::/32"), vec!["dns"]),
        (ind(T::Cidr, "::/0"), vec!["dns", "private"]),
        (ind(T::Ipv6, "::ffff:8.8.8.8"), vec!["dns"]),
        (ind(T::Cidr, "::ffff:8.8.0.0/112"), vec!["dns"]),
        // A string list's blocks and addresses are covered too; a block inside one of its
        // blocks covers nothing of it, and is not the entry itself.
        (ind(T::Cidr, "203.0.113.0/24"), vec!["exact"]),
        (ind(T::Cidr, "192.0.0.0/16"), vec!["exact"]),
        (ind(T::Cidr, "192.0.2.0/24"), vec!["exact"]),
        (ind(T::Cidr, "192.0.2.0/25"), vec![]),
        // An IPv4-mapped list entry matches as the IPv4 block it reaches, either spelling.
        (ind(T::Ipv4, "198.51.100.7"), vec!["mapped"]),
        (ind(T::Ipv6, "::ffff:198.51.100.7"), vec!["mapped"]),
        (ind(T::Cidr, "3::/16"), vec![]),
        (ind(T::Cidr, "0.0.0.0/1"), vec!["dns", "private"]),
        // A domain with a listed name below it; a URL on such a host covers nothing listed.
        (ind(T::Domain, "googleapis.com"), vec!["google"]),
        (ind(T::Domain, "co.com"), vec![]),
        (ind(T::Domain, "static.com"), vec![]),
        (ind(T::Url, "http://googleapis.com/x"), vec![]),
        (ind(T::Ipv6, "fe80::1"), vec!["private"]),
        (
            ind(T::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            vec!["empty"],
        ),
        // The ssdeep "3::" of the hash list is no IPv6 indicator.
        (ind(T::Ipv6, "3::"), vec![]),
        (ind(T::Domain, "d1.cloudfront.net"), vec!["cdn"]),
        (ind(T::Domain, "evil.example"), vec![]),
    ];
    for (indicator, want) in cases {
        assert_eq!(w.matches(&indicator), want, "{}", indicator.value());
    }
}

#[test]
fn reports_entries_it_cannot_use() {
    let (w, reports) = sample();
    assert_eq!(w.len(), 8);
    assert_eq!(
        reports[0],
        AddReport {
            used: 3,
            unusable: vec![]
        }
    );
    assert_eq!(
        reports[2],
        AddReport {
            used: 2,
            unusable: vec![
                ("not-a-block".into(), "not an address or CIDR block"),
                ("10.0.0.0/33".into(), "not an address or CIDR block"),
            ]
        }
    );
    assert_eq!(
        reports[5],
        AddReport {
            used: 0,
            unusable: vec![("^evil".into(), "regex lists are not matched")]
        }
    );
}

#[test]
fn refuses_malformed_lists() {
    assert!(matches!(
        parse_warninglist("{"),
        Err(WarninglistError::Json(_))
    ));
    assert_eq!(
        parse_warninglist(r#"{"list": []}"#),
        Err(WarninglistError::MissingField { field: "name" })
    );
    // Found by the fuzzer: a blank name made matches that name no list.
    assert_eq!(
        parse_warninglist(r#"{"name": " ", "list": ["8.8.8.8"]}"#),
        Err(WarninglistError::MissingField { field: "name" })
    );
    assert_eq!(
        parse_warninglist(r#"{"name": "x", "type": "glob", "list": []}"#),
        Err(WarninglistError::UnknownKind {
            kind: "glob".into()
        })
    );
    assert_eq!(
        parse_warninglist(r#"{"name": "x", "list": "a"}"#),
        Err(WarninglistError::BadField {
            field: "list",
            expected: "a list of strings",
            found: "string"
        })
    );
    assert_eq!(
        parse_warninglist(r#"{"name": "x"}"#),
        Err(WarninglistError::MissingField { field: "list" })
    );
}

/// A string list's address is found however the value writes it: as a `/32` or `/128`
/// block, or IPv4-mapped; a string list's block as a block of the same length.
#[test]
fn a_string_lists_address_is_found_as_a_whole_length_block_or_mapped() {
    let (w, _) = sample();
    let ty = IndicatorType::Cidr;
    assert_eq!(w.matches(&ind(ty, "203.0.113.9/32")), ["exact"]);
    assert_eq!(
        w.matches(&ind(IndicatorType::Ipv6, "::ffff:203.0.113.9")),
        ["exact"]
    );
    assert_eq!(w.matches(&ind(ty, "::ffff:203.0.113.9/128")), ["exact"]);
    assert_eq!(w.matches(&ind(ty, "192.0.2.0/24")), ["exact"]);
    // Neighbours are not on it.
    assert!(w.matches(&ind(ty, "203.0.113.10/32")).is_empty());
    assert!(w.matches(&ind(ty, "192.0.2.0/25")).is_empty());
    let v6 = list(json!({"name": "v6", "type": "string", "list": ["2001:db8::1"]}));
    let mut w = Warninglists::new();
    w.add(&v6);
    assert_eq!(w.matches(&ind(ty, "2001:db8::1/128")), ["v6"]);
    assert!(w.matches(&ind(ty, "2001:db8::2/128")).is_empty());
}

/// A hostname list's IDN entry finds the domain as values are kept (punycode), spelt either way.
#[test]
fn an_idn_hostname_entry_finds_its_domain() {
    let idn = list(json!({"name": "idn", "type": "hostname", "list": ["Bücher.example."]}));
    let mut w = Warninglists::new();
    w.add(&idn);
    assert_eq!(
        w.matches(&ind(IndicatorType::Domain, "bücher.example")),
        ["idn"]
    );
    assert_eq!(
        w.matches(&ind(IndicatorType::Domain, "xn--bcher-kva.example")),
        ["idn"]
    );
    assert_eq!(
        w.matches(&ind(IndicatorType::Domain, "shop.bücher.example")),
        ["idn"]
    );
}

/// IANA's special-purpose list names the whole IPv4-mapped range: it must not become
/// `0.0.0.0/0`, flagging every IPv4 value; a mapped block inside it is still its IPv4 block.
#[test]
fn the_whole_ipv4_mapped_range_flags_no_ipv4_value() {
    let special = list(json!({"name": "special", "type": "cidr",
        "list": ["::ffff:0:0/96", "::ffff:192.0.2.0/120"]}));
    let mut w = Warninglists::new();
    w.add(&special);
    assert!(w.matches(&ind(IndicatorType::Ipv4, "8.8.8.8")).is_empty());
    assert!(w
        .matches(&ind(IndicatorType::Cidr, "10.0.0.0/8"))
        .is_empty());
    assert_eq!(
        w.matches(&ind(IndicatorType::Ipv4, "192.0.2.7")),
        ["special"]
    );
}

#[test]
fn lists_of_one_kind_find_what_they_hold_and_no_lists_find_nothing() {
    use IndicatorType as T;
    let names = list(json!({"name": "google", "type": "hostname", "list": ["google.com"]}));
    let blocks = list(json!({"name": "dns", "type": "cidr", "list": ["8.8.8.0/24"]}));
    let only = |l: &Warninglist| {
        let mut w = Warninglists::new();
        w.add(l);
        w
    };
    let (none, names_only, blocks_only) = (Warninglists::new(), only(&names), only(&blocks));
    let asked = [
        ind(T::Domain, "mail.google.com"),
        ind(T::Url, "https://www.google.com/q"),
        ind(T::Ipv4, "8.8.8.8"),
        ind(T::Cidr, "8.8.0.0/16"),
        ind(T::Ipv6, "::ffff:8.8.8.8"),
    ];
    fn found<'w>(w: &'w Warninglists, asked: &[Indicator]) -> Vec<Vec<&'w str>> {
        asked.iter().map(|i| w.matches(i)).collect()
    }
    let nothing: Vec<&str> = Vec::new();
    assert_eq!(found(&none, &asked), vec![nothing.clone(); asked.len()]);
    assert_eq!(
        found(&names_only, &asked),
        vec![
            vec!["google"],
            vec!["google"],
            nothing.clone(),
            nothing.clone(),
            nothing.clone()
        ]
    );
    assert_eq!(
        found(&blocks_only, &asked),
        vec![
            nothing.clone(),
            nothing.clone(),
            vec!["dns"],
            vec!["dns"],
            vec!["dns"]
        ]
    );
}
