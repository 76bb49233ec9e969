//! Patterns in, indicators or the refusal out; and pattern_of read back.

use super::*;
use intelmesh_core::indicator::normalize;
use proptest::prelude::*;

fn ind(ty: IndicatorType, value: &str) -> Indicator {
    match normalize(ty, value) {
        Ok(ind) => ind,
        Err(e) => panic!("test value {value:?} does not normalize: {e}"),
    }
}

#[test]
fn reads_each_supported_object_path() {
    let cases = [
        ("[ipv4-addr:value = '198.51.100.1']", IndicatorType::Ipv4, "198.51.100.1"),
        ("[ipv4-addr:value = '223.166.0.0/15']", IndicatorType::Cidr, "223.166.0.0/15"),
        ("[ipv6-addr:value = '2001:DB8::1']", IndicatorType::Ipv6, "2001:db8::1"),
        ("[ipv6-addr:value = 'FE80::/10']", IndicatorType::Cidr, "fe80::/10"),
        ("[domain-name:value = 'Example.COM.']", IndicatorType::Domain, "example.com"),
        ("[url:value = 'http://89.251.22.227/guacos.php ']", IndicatorType::Url, "http://89.251.22.227/guacos.php"),
        ("[email-addr:value = '01Flip@proton.me']", IndicatorType::Email, "01flip@proton.me"),
        ("[file:hashes.'SHA-256' = 'AEC070645FE53EE3B3763059376134F058CC337247C978ADD178B6CCDFB0019F']", IndicatorType::Sha256, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
        ("[file:hashes.sha256 = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", IndicatorType::Sha256, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
        ("[file:hashes.SHA256 = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", IndicatorType::Sha256, "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f"),
        ("[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']", IndicatorType::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("[file:hashes.MD5 = 'D41D8CD98F00B204E9800998ECF8427E']", IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        ("[file:hashes.md5 = 'd41d8cd98f00b204e9800998ecf8427e']", IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
        ("[file:hashes.'MD5' = 'd41d8cd98f00b204e9800998ecf8427e']", IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
    ];
    for (pattern, ty, canonical) in cases {
        let got = parse_pattern(pattern);
        assert_eq!(got, Ok(vec![ind(ty, canonical)]), "{pattern}");
        if let Ok(got) = got {
            assert_eq!(got[0].value(), canonical, "{pattern}");
        }
    }
}

#[test]
fn reads_or_inside_and_across_observations() {
    let got = parse_pattern(
        "([domain-name:value = 'a.example' OR (url:value = 'http://b.example/x')]) \
         OR [ipv4-addr:value = '192.0.2.1' OR domain-name:value = 'A.example']",
    );
    assert_eq!(
        got,
        Ok(vec![
            ind(IndicatorType::Domain, "a.example"),
            ind(IndicatorType::Url, "http://b.example/x"),
            ind(IndicatorType::Ipv4, "192.0.2.1"),
        ])
    );
}

#[test]
fn unescapes_string_literals() {
    assert_eq!(
        parse_pattern(r"[url:value = 'http://x.example/it\'s\\here']"),
        Ok(vec![ind(IndicatorType::Url, r"http://x.example/it's\here")])
    );
}

#[test]
fn names_what_is_unsupported() {
    let op = |o: &str| {
        Err(PatternError::UnsupportedOperator {
            operator: o.to_owned(),
        })
    };
    let cases: Vec<(&str, Result<Vec<Indicator>, PatternError>)> = vec![
        ("[ipv4-addr:value = '1.2.3.4' AND domain-name:value = 'a.example']", op("AND")),
        ("[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'a.example']", op("AND")),
        ("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'a.example']", op("FOLLOWEDBY")),
        ("[url:value MATCHES '^http']", op("MATCHES")),
        ("[domain-name:value LIKE '%.example']", op("LIKE")),
        ("[domain-name:value != 'a.example']", op("!=")),
        ("[NOT domain-name:value = 'a.example']", op("NOT")),
        ("[ipv4-addr:value IN ('1.2.3.4', '1.2.3.5')]", op("IN")),
        (
            "[ipv4-addr:value = '1.2.3.4'] WITHIN 300 SECONDS",
            Err(PatternError::UnsupportedQualifier { qualifier: "WITHIN".into() }),
        ),
        (
            "[ipv4-addr:value = '1.2.3.4'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
            Err(PatternError::UnsupportedQualifier { qualifier: "START".into() }),
        ),
        (
            "[process:name = 'evil.exe']",
            Err(PatternError::UnsupportedPath { path: "process:name".into() }),
        ),
        (
            "[file:hashes.'SHA-512' = 'ab']",
            Err(PatternError::UnsupportedPath { path: "file:hashes.'SHA-512'".into() }),
        ),
        (
            "[email-message:to_refs[*].value = 'a@b.example']",
            Err(PatternError::UnsupportedPath { path: "email-message:to_refs[*].value".into() }),
        ),
        (
            "[app:cert.sha256 = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
            Err(PatternError::UnsupportedPath { path: "app:cert.sha256".into() }),
        ),
        (
            "[network-traffic:dst_port = 443]",
            Err(PatternError::UnsupportedPath { path: "network-traffic:dst_port".into() }),
        ),
        (
            "[ipv4-addr:value = 17]",
            Err(PatternError::UnsupportedValue { path: "ipv4-addr:value".into() }),
        ),
        ("", Err(PatternError::Empty)),
    ];
    for (pattern, want) in cases {
        assert_eq!(parse_pattern(pattern), want, "{pattern}");
    }
}

#[test]
fn refuses_malformed_patterns_with_a_position() {
    for pattern in [
        "ipv4-addr:value = '1.2.3.4'",
        "[ipv4-addr:value = '1.2.3.4'",
        "[ipv4-addr:value = '1.2.3.4]",
        "[ipv4-addr:value = '1.2.3.4')]",
        "([ipv4-addr:value = '1.2.3.4']",
        "[ipv4-addr:value = '1.2.3.4'] OR",
        "[ipv4-addr:value '1.2.3.4']",
        "[url:value = 'http://a.example/\\x']",
        "[ipv4-addr:value = '1.2.3.4'] ]",
        "[]",
        "[ipv4-addr:value = '1.2.3.4' OR]",
        "[ipv4-addr:value = '1.2.3.4'] {",
    ] {
        match parse_pattern(pattern) {
            Err(PatternError::Syntax { at, .. }) => assert!(at <= pattern.len(), "{pattern}"),
            other => panic!("{pattern:?} gave {other:?}, a syntax error was expected"),
        }
    }
}

#[test]
fn a_bad_value_names_path_and_reason() {
    match parse_pattern("[ipv4-addr:value = '999.1.1.1']") {
        Err(PatternError::Value {
            path,
            value,
            source,
        }) => {
            assert_eq!(path, "ipv4-addr:value");
            assert_eq!(value, "999.1.1.1");
            assert_eq!(source.kind(), "invalid_ipv4");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn bounds_size_and_comparisons() {
    let long = format!(
        "[url:value = 'http://a.example/{}']",
        "a".repeat(MAX_PATTERN_LEN)
    );
    assert!(matches!(
        parse_pattern(&long),
        Err(PatternError::TooLong { .. })
    ));
    let many = vec!["[ipv4-addr:value = '1.2.3.4']"; MAX_COMPARISONS + 1].join(" OR ");
    assert_eq!(
        parse_pattern(&many),
        Err(PatternError::TooManyComparisons {
            max: MAX_COMPARISONS
        })
    );
    // Deep nesting is counted, not recursed into: it must not overflow the stack.
    let deep = format!(
        "{}[ipv4-addr:value = '1.2.3.4']{}",
        "(".repeat(20_000),
        ")".repeat(20_000)
    );
    assert_eq!(
        parse_pattern(&deep),
        Ok(vec![ind(IndicatorType::Ipv4, "1.2.3.4")])
    );
}

#[test]
fn pattern_of_writes_the_standard_forms() {
    let cases = [
        (
            IndicatorType::Ipv4,
            "1.2.3.4",
            "[ipv4-addr:value = '1.2.3.4']",
        ),
        (
            IndicatorType::Cidr,
            "10.0.0.0/8",
            "[ipv4-addr:value = '10.0.0.0/8']",
        ),
        (
            IndicatorType::Cidr,
            "2001:db8::/32",
            "[ipv6-addr:value = '2001:db8::/32']",
        ),
        (
            IndicatorType::Sha256,
            &"a".repeat(64),
            &format!("[file:hashes.'SHA-256' = '{}']", "a".repeat(64)),
        ),
        (
            IndicatorType::Url,
            "http://x.example/it's",
            "[url:value = 'http://x.example/it\\'s']",
        ),
    ];
    for (ty, value, want) in cases {
        assert_eq!(pattern_of(&ind(ty, value)), want);
    }
}

/// Values of every type, including the awkward ones (quotes, backslashes, IDN, v6 blocks).
const ROUND_TRIP: &[(IndicatorType, &str)] = &[
    (IndicatorType::Ipv4, "0.0.0.0"),
    (IndicatorType::Ipv4, "255.255.255.255"),
    (IndicatorType::Ipv6, "::"),
    (IndicatorType::Ipv6, "::ffff:1.2.3.4"),
    (IndicatorType::Cidr, "0.0.0.0/0"),
    (IndicatorType::Cidr, "1.2.3.4/32"),
    (IndicatorType::Cidr, "::/0"),
    (IndicatorType::Cidr, "fe80::/10"),
    (IndicatorType::Domain, "xn--telegrm-qbd.com"),
    (IndicatorType::Domain, "ap3rtur3_2.mooo.com"),
    (IndicatorType::Url, "http://a.example/'quoted'"),
    (IndicatorType::Url, "http://a.example/back\\slash"),
    (IndicatorType::Url, "tcp://45.77.160.195:443/"),
    (IndicatorType::Url, "http://[2001:db8::1]:8080/x?y=1&z=%27"),
    (IndicatorType::Email, "o'brien@example.com"),
    (IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
    (
        IndicatorType::Sha1,
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ),
];

#[test]
fn pattern_of_reads_back_to_the_same_indicator() {
    for (ty, value) in ROUND_TRIP {
        let Ok(indicator) = normalize(*ty, value) else {
            // Whether core takes a value is core's business; what it takes must round-trip.
            continue;
        };
        let pattern = pattern_of(&indicator);
        assert_eq!(parse_pattern(&pattern), Ok(vec![indicator]), "{pattern}");
    }
}

fn any_indicator() -> impl Strategy<Value = Option<Indicator>> {
    let typed =
        |ty: IndicatorType, s: BoxedStrategy<String>| s.prop_map(move |v| normalize(ty, &v).ok());
    prop_oneof![
        typed(
            IndicatorType::Ipv4,
            any::<u32>()
                .prop_map(|v| std::net::Ipv4Addr::from(v).to_string())
                .boxed()
        ),
        typed(
            IndicatorType::Ipv6,
            any::<u128>()
                .prop_map(|v| std::net::Ipv6Addr::from(v).to_string())
                .boxed()
        ),
        typed(
            IndicatorType::Cidr,
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv4Addr::from(a)))
                .boxed()
        ),
        typed(
            IndicatorType::Cidr,
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, p)| format!("{}/{p}", std::net::Ipv6Addr::from(a)))
                .boxed()
        ),
        typed(
            IndicatorType::Domain,
            "[a-z0-9_]{1,12}(\\.[a-z0-9-]{1,12}){0,3}\\.[a-z]{2,6}".boxed()
        ),
        typed(
            IndicatorType::Url,
            "(http|https|ftp)://[a-z]{1,10}\\.[a-z]{2,5}(:[0-9]{1,4})?/[ -~]{0,40}".boxed()
        ),
        typed(
            IndicatorType::Email,
            "[a-z0-9.'_+-]{1,16}@[a-z]{1,10}\\.[a-z]{2,5}".boxed()
        ),
        typed(IndicatorType::Md5, "[0-9a-fA-F]{32}".boxed()),
        typed(IndicatorType::Sha1, "[0-9a-fA-F]{40}".boxed()),
        typed(IndicatorType::Sha256, "[0-9a-fA-F]{64}".boxed()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_canonical_indicator_round_trips(indicator in any_indicator()) {
        if let Some(indicator) = indicator {
            let pattern = pattern_of(&indicator);
            prop_assert_eq!(parse_pattern(&pattern), Ok(vec![indicator]), "{}", pattern);
        }
    }

    #[test]
    fn arbitrary_text_gives_canonical_values_or_an_error(text in "[\\[\\]()' =a-zA-Z0-9:./\\\\-]{0,80}") {
        if let Ok(found) = parse_pattern(&text) {
            prop_assert!(!found.is_empty());
            for indicator in found {
                prop_assert_eq!(normalize(indicator.ty(), indicator.value()), Ok(indicator.clone()));
            }
        }
    }
}
