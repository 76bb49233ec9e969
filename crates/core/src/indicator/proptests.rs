//! Properties of normalization: canonical values are fixed points, the cosmetic differences
//! between reporters (case, padding, quotes, defanging) vanish, clean values survive refanging
//! untouched, and no input panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::{
    detect, detect_with_host, has_port, has_url_scheme, normalize, refang, IndicatorType, Seen,
};

fn label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9_-]{0,12}[a-z0-9])?".prop_filter("not punycode", |l| !l.starts_with("xn--"))
}

fn domain() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..4), "[a-z]{2,8}")
        .prop_map(|(labels, tld)| format!("{}.{tld}", labels.join(".")))
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<[u16; 8]>().prop_map(Ipv6Addr::from)
}

fn url() -> impl Strategy<Value = String> {
    let host = prop_oneof![domain(), ipv4().prop_map(|a| a.to_string())];
    let port = prop::option::of(1u16..);
    let path = prop::collection::vec("[a-zA-Z0-9._~%-]{0,8}", 0..4);
    let query = prop::option::of("[a-zA-Z0-9=&%]{0,12}");
    let scheme = prop::sample::select(vec!["http", "https", "ftp", "tcp"]);
    (scheme, host, port, path, query).prop_map(|(scheme, host, port, path, query)| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{scheme}://{host}{port}/{}{query}", path.join("/"))
    })
}

/// Clean values of every type, as a reporter might write them.
fn typed_value() -> impl Strategy<Value = (IndicatorType, String)> {
    let hash = |len: usize| prop::collection::vec(any::<u8>(), len).prop_map(hex::encode_upper);
    let email = ("[a-z0-9]([a-z0-9._+-]{0,10}[a-z0-9])?", domain())
        .prop_filter("no doubled dot", |(local, _)| !local.contains(".."))
        .prop_map(|(local, domain)| format!("{local}@{domain}"));
    prop_oneof![
        ipv4().prop_map(|a| (IndicatorType::Ipv4, a.to_string())),
        ipv6().prop_map(|a| (IndicatorType::Ipv6, a.to_string())),
        (ipv4(), 0u8..=32).prop_map(|(a, p)| (IndicatorType::Cidr, format!("{a}/{p}"))),
        (ipv6(), 0u8..=128).prop_map(|(a, p)| (IndicatorType::Cidr, format!("{a}/{p}"))),
        domain().prop_map(|d| (IndicatorType::Domain, d)),
        url().prop_map(|u| (IndicatorType::Url, u)),
        email.prop_map(|e| (IndicatorType::Email, e)),
        hash(16).prop_map(|h| (IndicatorType::Md5, h)),
        hash(20).prop_map(|h| (IndicatorType::Sha1, h)),
        hash(32).prop_map(|h| (IndicatorType::Sha256, h)),
    ]
}

/// URLs near the plain form `uri::plain_host` reads without the parser: mostly plain, with
/// one or more of what takes a URL off it (case, ports, punycode and numeric labels, dot
/// segments, escapes, characters the parser escapes or drops).
fn near_plain_url() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "http", "https", "http", "https", "HTTP", "hTTps", "ftp", "ws",
    ]);
    let label = prop_oneof![
        4 => "[a-z][a-z0-9-]{0,8}",
        1 => "[a-zA-Z0-9_-]{0,6}",
        1 => "xn--[a-z0-9-]{1,8}",
        1 => "[0-9]{1,3}",
        1 => "0x[0-9a-f]{1,2}",
    ];
    let host = prop_oneof![
        3 => prop::collection::vec(label, 1..5).prop_map(|l| l.join(".")),
        1 => ipv4().prop_map(|a| a.to_string()),
        1 => "[0-9]{1,4}(\\.[0-9]{1,3}){0,4}",
    ];
    let trailer = prop::sample::select(vec!["", "", "", "", ".", ":80", ":8080", "@x.com"]);
    let segment = prop_oneof![
        6 => "[a-zA-Z0-9._~!$&'*+,;=:@-]{0,8}",
        1 => r#"[a-z%\\ \t\n"<>^`{}|()\[\]#é]{0,4}"#,
        1 => prop::sample::select(vec![".", "..", "%2e", ".%2E", "%2e%2e"]).prop_map(String::from),
    ];
    let path = prop::collection::vec(segment, 0..4).prop_map(|s| s.join("/"));
    let query = prop::option::of("[a-zA-Z0-9=&?/.:@'%#-]{0,10}");
    (scheme, host, trailer, path, query).prop_map(|(scheme, host, trailer, path, query)| {
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        format!("{scheme}://{host}{trailer}/{path}{query}")
    })
}

/// Strings made of the characters the rules care about, to reach their edge cases.
fn tricky() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9.:/@%_\\[\\](){}?#'\" \t-]{0,40}",
        "(hxxps?|fxp|http|[.]|\\[dot\\]|\\[|\\]|\\(|\\)|[a-z]|[.]|:|/|@|%2e|\t){0,20}",
        "\\PC{0,24}",
    ]
}

proptest! {
    #[test]
    fn a_plain_name_is_normalized_as_by_every_rule(
        raw in prop_oneof![domain(), "[a-z0-9._-]{0,30}", "[a-z.]{1005,1020}", "(xn--|[a-z0-9]|[.]|-|_){0,20}", tricky()],
    ) {
        prop_assert_eq!(super::domain::domain(&raw), super::domain::domain_by_every_rule(&raw), "{:?}", raw);
    }

    /// What one pass over a value sees is what a scan per question (as `guess` first asked
    /// them) finds; every other question `guess` skips needs a character it was told is absent.
    #[test]
    fn one_pass_sees_what_a_scan_per_question_finds(
        raw in prop_oneof![typed_value().prop_map(|(_, raw)| raw), tricky(), "[0-9a-f:./@?#\\[\\]]{0,40}"],
    ) {
        let seen = Seen::of(&raw);
        let scanned = [
            raw.bytes().all(|b| b.is_ascii_hexdigit()),
            raw.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
            raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
            raw.is_ascii(),
            raw.contains('@'),
            raw.contains(':'),
            raw.contains('.'),
            raw.contains('/'),
            raw.contains(['?', '#']),
        ];
        let one_pass = [
            seen.all_hex,
            seen.all_digits_or_dots,
            seen.all_hex_colons_or_dots,
            seen.all_ascii,
            seen.at,
            seen.colon,
            seen.dot,
            seen.slash,
            seen.query_or_fragment,
        ];
        prop_assert_eq!(one_pass, scanned, "{:?}", raw);
        prop_assert!(seen.colon || !(has_url_scheme(&raw) || has_port(&raw)));
    }

    #[test]
    fn clean_values_are_accepted_and_fixed((ty, raw) in typed_value()) {
        let indicator = normalize(ty, &raw);
        prop_assert!(indicator.is_ok(), "{ty} {raw:?}: {indicator:?}");
        let Ok(indicator) = indicator else { unreachable!() };
        prop_assert_eq!(normalize(ty, indicator.value()), Ok(indicator.clone()));
        prop_assert_eq!(refang(indicator.value()), indicator.value());
        if ty != IndicatorType::Url {
            prop_assert_eq!(refang(&raw), raw.as_str());
        }
    }

    #[test]
    fn cosmetic_differences_vanish(
        (ty, raw) in typed_value(),
        upper in any::<bool>(),
        defang in any::<bool>(),
        pad in prop::sample::select(vec!["", " ", "\t", "\u{a0}", "\u{feff}"]),
        quote in prop::sample::select(vec!["", "\"", "'"]),
    ) {
        let mut variant = raw.clone();
        if upper && ty != IndicatorType::Url {
            variant = variant.to_uppercase();
        }
        if defang && ty != IndicatorType::Url {
            variant = variant.replace('.', "[.]").replace('@', "[at]");
        }
        let variant = format!("{pad}{quote}{variant}{quote}{pad}");
        prop_assert_eq!(normalize(ty, &variant), normalize(ty, &raw), "variant {:?}", variant);
    }

    #[test]
    fn detect_agrees_with_normalize((ty, raw) in typed_value()) {
        let detected = detect(&raw);
        prop_assert_eq!(detected.as_ref().map(|i| i.ty()), Ok(ty));
        prop_assert_eq!(detected, normalize(ty, &raw));
    }

    /// The host read off a URL as parsed is the host of its canonical form parsed again, for
    /// clean values and for anything else alike.
    #[test]
    fn detect_with_host_is_detect_and_its_host(
        raw in prop_oneof![typed_value().prop_map(|(_, raw)| raw), tricky()],
    ) {
        let expected = detect(&raw).map(|i| {
            let host = i.host();
            (i, host)
        });
        prop_assert_eq!(detect_with_host(&raw), expected);
    }

    /// A URL read as plain (its host taken without the parser) is one the `url` crate gives
    /// back unchanged, with that host.
    #[test]
    fn a_plain_url_is_what_the_parser_makes_of_it(
        raw in prop_oneof![near_plain_url(), url(), tricky()],
    ) {
        if let Some(host) = super::uri::plain_host(&raw) {
            let parsed = super::settled_url(&raw);
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", raw, parsed);
            let Ok(parsed) = parsed else { unreachable!() };
            prop_assert_eq!(parsed.as_str(), raw.as_str());
            prop_assert_eq!(host.indicator(), super::uri::host_of(&parsed), "{:?}", raw);
        }
    }

    #[test]
    fn refang_is_idempotent(raw in tricky()) {
        let once = refang(&raw).into_owned();
        prop_assert_eq!(refang(&once), once.as_str());
    }

    #[test]
    fn any_input_is_safe_and_canonical_values_are_fixed(raw in tricky()) {
        for ty in IndicatorType::ALL {
            if let Ok(indicator) = normalize(ty, &raw) {
                prop_assert_eq!(normalize(ty, indicator.value()), Ok(indicator.clone()));
            }
        }
        if let Ok(indicator) = detect(&raw) {
            prop_assert_eq!(detect(indicator.value()), Ok(indicator.clone()));
        }
    }

    /// An accepted IPv4 address is kept as written, so what std's parser accepts must be
    /// exactly what its `Display` writes: near-misses (leading zeros, signs, spaces, short
    /// forms) are refused or come out as `Display` writes them.
    #[test]
    fn an_accepted_ipv4_address_is_its_display(raw in "[+0-9 ]{1,4}\\.[0-9]{1,4}\\.[+0-9]{1,4}\\.[0-9 ]{1,4}") {
        if let Ok(indicator) = normalize(IndicatorType::Ipv4, &raw) {
            let addr: Ipv4Addr = indicator.value().parse().expect("an accepted address parses");
            prop_assert_eq!(indicator.value(), addr.to_string());
        }
    }
}
