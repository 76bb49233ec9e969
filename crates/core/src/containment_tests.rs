use super::*;
use crate::indicator::normalize;

fn ind(ty: IndicatorType, v: &str) -> Indicator {
    normalize(ty, v).unwrap()
}

#[test]
fn other_forms_name_the_same_addresses_and_agree_with_normalize() {
    use IndicatorType::{Cidr, Ipv4, Ipv6};
    let all = |_: &BlockBits| true;
    let none = |_: &BlockBits| false;
    let text = |(forms, other): (Vec<Indicator>, Option<Indicator>)| {
        let forms: Vec<String> = forms.iter().map(|f| f.value().to_string()).collect();
        (forms, other.map(|o| o.value().to_string()))
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: [(IndicatorType, &str, Vec<String>, Option<&str>); 7] = [
        (
            Ipv4,
            "10.1.2.3",
            s(&["::ffff:10.1.2.3"]),
            Some("::ffff:10.1.2.3"),
        ),
        (Ipv6, "::ffff:10.1.2.3", s(&["10.1.2.3"]), Some("10.1.2.3")),
        (Ipv6, "2001:db8::1", s(&[]), None),
        (
            Cidr,
            "10.1.2.3/32",
            s(&["10.1.2.3", "::ffff:10.1.2.3"]),
            Some("::ffff:10.1.2.3"),
        ),
        (
            Cidr,
            "10.0.0.0/8",
            s(&["::ffff:10.0.0.0/104"]),
            Some("::ffff:10.0.0.0/104"),
        ),
        (
            Cidr,
            "::ffff:203.0.113.0/120",
            s(&["203.0.113.0/24"]),
            Some("203.0.113.0/24"),
        ),
        (Cidr, "::/0", s(&[]), None),
    ];
    for (ty, value, forms, other) in cases {
        let got = text(other_forms(&ind(ty, value), &all));
        assert_eq!(got, (forms.clone(), other.map(str::to_string)), "{value}");
        // Every form is what normalize makes of it.
        for f in other_forms(&ind(ty, value), &all).0 {
            assert_eq!(normalize(f.ty(), f.value()).unwrap(), f, "{value}");
        }
    }
    // Blocks no filter holds are not probed; addresses are.
    let got = text(other_forms(&ind(Cidr, "10.0.0.0/8"), &none));
    assert_eq!(got, (s(&[]), Some("::ffff:10.0.0.0/104".into())));
    let got = text(other_forms(&ind(Ipv4, "10.1.2.3"), &none));
    assert_eq!(
        got,
        (s(&["::ffff:10.1.2.3"]), Some("::ffff:10.1.2.3".into()))
    );
}

fn lengths(cidrs: &[&str]) -> PrefixLengths {
    let mut l = PrefixLengths::default();
    for c in cidrs {
        l.record(&ind(IndicatorType::Cidr, c));
    }
    l
}

fn values(found: Vec<(Indicator, MatchKind)>) -> Vec<String> {
    found.into_iter().map(|(i, _)| i.into_value()).collect()
}

#[test]
fn the_mapped_range_keeps_ipv6_lengths_from_96_and_every_ipv4_length() {
    let all = lengths(&[
        "0.0.0.0/0",
        "10.0.0.0/8",
        "::/0",
        "2001:db8::/32",
        "2001:db8::/63",
        "2001:db8::/64",
        "2001:db8::/95",
        "::ffff:0:0/96",
        "::ffff:10.0.0.0/104",
        "::1/128",
    ]);
    let mapped = all.mapped_range();
    assert_eq!(mapped.v6().collect::<Vec<_>>(), [128, 104, 96]);
    assert_eq!(mapped.v4().collect::<Vec<_>>(), [8, 0]);
    assert_eq!(all.v6().count(), 8);
}

#[test]
fn a_block_is_written_as_its_canonical_text() {
    let octets = [0u8, 1, 9, 10, 42, 99, 100, 199, 200, 255];
    for (i, a) in octets.into_iter().enumerate() {
        let b = octets[(i + 3) % octets.len()];
        let c = octets[(i + 7) % octets.len()];
        let addr = IpAddr::V4(Ipv4Addr::new(a, b, c, 255 - a));
        for p in 0..=32u8 {
            let network = masked(addr, p);
            let text = block_text(network, p);
            assert_eq!(text, format!("{network}/{p}"));
            assert_eq!(ind(IndicatorType::Cidr, &text).value(), text);
        }
    }
    let v6 = IpAddr::V6("2001:db8::1".parse().unwrap());
    assert_eq!(block_text(masked(v6, 32), 32), "2001:db8::/32");
}

#[test]
fn an_ipv4_address_is_probed_at_every_held_length_longest_first() {
    let l = lengths(&["10.0.0.0/8", "192.168.1.0/24", "1.2.3.4/32", "0.0.0.0/0"]);
    let found = containers(&ind(IndicatorType::Ipv4, "10.1.2.3"), &l);
    assert!(found.iter().all(|(_, k)| *k == MatchKind::CidrContains));
    assert_eq!(
        values(found),
        ["10.1.2.3/32", "10.1.2.0/24", "10.0.0.0/8", "0.0.0.0/0"]
    );
}

#[test]
fn ipv6_edges_slash_zero_and_slash_128() {
    let l = lengths(&["::/0", "2001:db8::1/128", "2001:db8::/32", "10.0.0.0/8"]);
    let found = containers(&ind(IndicatorType::Ipv6, "2001:db8::1"), &l);
    assert_eq!(values(found), ["2001:db8::1/128", "2001:db8::/32", "::/0"]);
    // The IPv4 length does not leak into IPv6 probes, nor the reverse.
    let v4 = containers(&ind(IndicatorType::Ipv4, "10.9.9.9"), &l);
    assert_eq!(values(v4), ["10.0.0.0/8"]);
}

#[test]
fn a_block_is_contained_only_by_shorter_blocks() {
    let l = lengths(&["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]);
    let found = containers(&ind(IndicatorType::Cidr, "10.1.0.0/16"), &l);
    assert_eq!(values(found), ["10.0.0.0/8"]);
}

#[test]
fn nothing_is_probed_when_no_block_is_held() {
    let none = PrefixLengths::default();
    assert!(containers(&ind(IndicatorType::Ipv4, "10.1.2.3"), &none).is_empty());
    assert!(containers(&ind(IndicatorType::Ipv6, "::1"), &none).is_empty());
}

#[test]
fn parent_domains_stop_before_the_top_level() {
    let found = containers(
        &ind(IndicatorType::Domain, "a.b.example.co.uk"),
        &PrefixLengths::default(),
    );
    assert!(found.iter().all(|(_, k)| *k == MatchKind::ParentDomain));
    assert_eq!(values(found), ["b.example.co.uk", "example.co.uk", "co.uk"]);
    assert!(containers(
        &ind(IndicatorType::Domain, "example.com"),
        &PrefixLengths::default()
    )
    .is_empty());
}

#[test]
fn a_filter_leaves_out_the_blocks_it_does_not_hold() {
    let l = lengths(&["10.0.0.0/8", "10.1.2.0/24", "2001:db8::/32"]);
    let held = [
        BlockBits::of_cidr("10.1.2.0/24").unwrap(),
        BlockBits::of_cidr("2001:db8::/32").unwrap(),
    ];
    let filter = |b: &BlockBits| held.contains(b);
    let v4 = containers_where(&ind(IndicatorType::Ipv4, "10.1.2.3"), &l, &filter);
    assert_eq!(values(v4), ["10.1.2.0/24"]);
    let v6 = containers_where(&ind(IndicatorType::Ipv6, "2001:db8::9"), &l, &filter);
    assert_eq!(values(v6), ["2001:db8::/32"]);
    let other = containers_where(&ind(IndicatorType::Ipv4, "10.9.9.9"), &l, &filter);
    assert!(other.is_empty(), "10.0.0.0/8 is not in the filter");
}

#[test]
fn block_bits_are_the_same_from_an_address_and_from_the_cidr_text() {
    let addr: IpAddr = "10.1.2.3".parse().unwrap();
    assert_eq!(
        Some(BlockBits::around(addr, 24)),
        BlockBits::of_cidr("10.1.2.0/24")
    );
    assert_eq!(BlockBits::around(addr, 24).as_bytes(), [4, 24, 10, 1, 2, 0]);
    assert_ne!(BlockBits::around(addr, 24), BlockBits::around(addr, 23));
    // ::/0 and 0.0.0.0/0 are different blocks.
    assert_ne!(BlockBits::of_cidr("::/0"), BlockBits::of_cidr("0.0.0.0/0"));
    let v6 = BlockBits::of_cidr("2001:db8::/128").unwrap();
    assert_eq!(v6.as_bytes().len(), 18);
    assert_eq!(BlockBits::of_cidr("10.0.0.0/33"), None);
    assert_eq!(BlockBits::of_cidr("example.com"), None);
}

#[test]
fn record_says_when_the_set_grew_and_ignores_other_types() {
    let mut l = PrefixLengths::default();
    assert!(l.record(&ind(IndicatorType::Cidr, "10.0.0.0/8")));
    assert!(!l.record(&ind(IndicatorType::Cidr, "11.0.0.0/8")));
    assert!(!l.record(&ind(IndicatorType::Domain, "example.com")));
    assert!(l.record(&ind(IndicatorType::Cidr, "::/128")));
    assert_eq!(l.v4().collect::<Vec<_>>(), [8]);
    assert_eq!(l.v6().collect::<Vec<_>>(), [128]);
}

#[test]
fn bytes_round_trip_and_reject_impossible_bits() {
    let l = lengths(&[
        "0.0.0.0/0",
        "1.2.3.4/32",
        "::/0",
        "::1/128",
        "2001:db8::/64",
    ]);
    assert_eq!(PrefixLengths::from_bytes(&l.to_bytes()), Some(l));
    let mut bad = l.to_bytes();
    bad[2] = 1; // IPv4 bit 40
    assert_eq!(PrefixLengths::from_bytes(&bad), None);
    assert_eq!(PrefixLengths::from_bytes(&[0; 31]), None);
}

#[test]
fn an_address_is_written_as_display_writes_it() {
    let addresses = [
        "0.0.0.0",
        "1.2.3.4",
        "10.0.100.255",
        "255.255.255.255",
        "::ffff:0.0.0.0",
        "::ffff:1.2.3.4",
        "::ffff:255.255.255.255",
        "::",
        "::1",
        "::1.2.3.4",
        "64:ff9b::1.2.3.4",
        "2001:db8::ffff:1.2.3.4",
        "2001:db8:0:0:1:0:0:1",
        "fe80::ffff:0:1",
    ];
    for a in addresses {
        let addr: IpAddr = a.parse().unwrap();
        assert_eq!(address_text(addr), addr.to_string(), "{a}");
        if let IpAddr::V4(v4) = addr {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            assert_eq!(address_text(mapped), mapped.to_string(), "{a} mapped");
        }
    }
}

#[test]
fn a_block_lies_in_the_one_sixteen_of_its_family_its_network_starts() {
    let region = |v: &str| BlockBits::of_cidr(v).expect("a block").region();
    assert_eq!(region("10.1.0.0/16"), Some(0x0a01));
    assert_eq!(region("10.1.200.0/24"), Some(0x0a01));
    assert_eq!(region("255.255.255.255/32"), Some(0xffff));
    assert_eq!(region("0.0.0.0/16"), Some(0));
    assert_eq!(region("10.0.0.0/15"), None);
    assert_eq!(region("0.0.0.0/0"), None);
    assert_eq!(region("2001:db8::/32"), Some(REGIONS / 2 + 0x2001));
    assert_eq!(region("ffff::/16"), Some(REGIONS - 1));
    assert_eq!(region("::/16"), Some(REGIONS / 2));
    assert_eq!(region("2000::/3"), None);
    // An address's blocks at every length from 16 lie in its /16.
    let addr: IpAddr = "10.1.2.3".parse().unwrap();
    for p in 16..=32 {
        assert_eq!(BlockBits::around(addr, p).region(), Some(0x0a01), "/{p}");
    }
}

#[test]
fn held_lengths_are_walked_longest_first_whatever_the_words_hold() {
    // Edges of each word (0, 63, 64, 127, 128) and a dense run, in both families.
    let cases: [&[u8]; 5] = [
        &[],
        &[0],
        &[0, 1, 31, 32],
        &[0, 63, 64, 65, 96, 127, 128],
        &[
            8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
        ],
    ];
    for held in cases {
        let mut l = PrefixLengths::default();
        for &p in held {
            if p <= 32 {
                l.record(&ind(IndicatorType::Cidr, &format!("0.0.0.0/{p}")));
            }
            l.record(&ind(IndicatorType::Cidr, &format!("::/{p}")));
        }
        let v6: Vec<u8> = held.iter().rev().copied().collect();
        let v4: Vec<u8> = v6.iter().copied().filter(|p| *p <= 32).collect();
        assert_eq!(l.v6().collect::<Vec<_>>(), v6, "IPv6 lengths of {held:?}");
        assert_eq!(l.v4().collect::<Vec<_>>(), v4, "IPv4 lengths of {held:?}");
    }
}

#[test]
fn a_block_gives_back_its_network_and_length() {
    for cidr in [
        "0.0.0.0/0",
        "10.1.2.0/24",
        "1.2.3.4/32",
        "::/0",
        "2001:db8::/32",
        "::1/128",
    ] {
        let (addr, len) = parse_block(cidr).expect("a block");
        assert_eq!(
            BlockBits::around(addr, len).network(),
            (addr, len),
            "{cidr}"
        );
    }
}
