//! Data-in, data-out tables for normalization, refanging and detection. Most values are real
//! ones from the shared corpus (see its STATS.md, "Oddities an importer must handle").

use super::{detect, normalize, refang, IndicatorType, NormalizeError};
use intelmesh_proto::v1 as pb;

use IndicatorType::{Cidr, Domain, Email, Ipv4, Ipv6, Md5, Sha1, Sha256, Url};

#[path = "tests/urls.rs"]
mod urls;

/// `Ok(canonical)` or `Err(kind)`.
type Expected<'a> = Result<&'a str, &'static str>;

/// `Ok((type, canonical))` or `Err(kind)`.
type Detected<'a> = Result<(IndicatorType, &'a str), &'static str>;

const SHA1: &str = "A94A8FE5CCB19BA61C4C0873D391E987982FBBD3";
const SHA256: &str = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";

#[test]
fn refang_table() {
    let cases = [
        ("162.222.214[.]48", "162.222.214.48"),
        ("rammenale[.]com", "rammenale.com"),
        ("precizeabrilliant[,]com", "precizeabrilliant.com"),
        ("hxxp://0.x90.io/", "http://0.x90.io/"),
        ("htxxp://example.com/", "http://example.com/"),
        ("hXXps://example.com", "https://example.com"),
        ("HXXP://example.com", "http://example.com"),
        ("fxp://files.example.com/a", "ftp://files.example.com/a"),
        // The longest defanged name; one letter more is a name of no scheme.
        ("HTXXPS://example.com/x", "https://example.com/x"),
        ("ahtxxps://example.com/x", "ahtxxps://example.com/x"),
        ("hxxps:/example.com", "hxxps:/example.com"),
        (
            "128[.]199[.]72[.]218[:]4700/wp-content/",
            "128.199.72.218:4700/wp-content/",
        ),
        (
            "hxxp[://]minish[.]wiki[.]gd/c[.]pdf",
            "http://minish.wiki.gd/c.pdf",
        ),
        ("hxxps[:]//a[.]com", "https://a.com"),
        (
            "https[:]//cmctt.]com/pub/media/sun.png",
            "https://cmctt.com/pub/media/sun.png",
        ),
        ("example(.)com", "example.com"),
        ("example{.}com", "example.com"),
        ("example[dot]com", "example.com"),
        ("example(DOT)com", "example.com"),
        ("user[at]example[.]com", "user@example.com"),
        ("user(@)example.com", "user@example.com"),
        ("user[@]example.com", "user@example.com"),
        ("a[/]b", "a/b"),
        ("[[.]]", "."),
        ("magnet[:]?xt=urn:btih[:]abc", "magnet:?xt=urn:btih:abc"),
        (
            "https://fe.xrqo8.ru.com/[.]well-known/acme-challenge/",
            "https://fe.xrqo8.ru.com/.well-known/acme-challenge/",
        ),
        (
            "hxxps://startrackzm[.]com/x.php?Email=REDACTED@adm.dp.gov.ua",
            "https://startrackzm.com/x.php?Email=REDACTED@adm.dp.gov.ua",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(refang(raw), want, "refang({raw:?})");
        assert_eq!(refang(want), want, "refang is not idempotent on {want:?}");
    }
}

#[test]
fn refang_leaves_clean_values_alone() {
    let clean = [
        // Real host names that contain the defanged scheme words.
        "hxxp.ddspadus.com",
        "msservices.hxxps443.org",
        "wwwhxxpswwwhxxpwww.myftp.biz",
        "hxxp-naver.wetax-pay.online",
        "hxxps-out.wetax-pay.site",
        "03trpavurnaer.servehxxp.com",
        "lilyoejivdhxxpjfb.su",
        "example.com/hxxp://x",
        "http://[::1]:80/",
        "http://[2001:db8::1]/",
        "http://[::ffff:1.2.3.4]/",
        "https://www.welivesecurity.com[WeLiveSecurity]",
        "a.]]b",
        "cmctt[.com",
        "%LocalAppData%\\NvSmartMax[.dll]",
        "f(x)",
        "",
    ];
    for value in clean {
        assert_eq!(refang(value), value);
        assert!(
            matches!(refang(value), std::borrow::Cow::Borrowed(_)),
            "{value:?} was copied"
        );
    }
}

#[test]
fn normalize_ip_table() {
    let cases: &[(IndicatorType, &str, Expected<'_>)] = &[
        (Ipv4, "1.2.3.4", Ok("1.2.3.4")),
        (Ipv4, " 1.2.3.4 \t", Ok("1.2.3.4")),
        (Ipv4, "\"1.2.3.4\"", Ok("1.2.3.4")),
        (Ipv4, "'1.2.3.4'", Ok("1.2.3.4")),
        (Ipv4, "\u{feff}1.2.3.4\u{a0}", Ok("1.2.3.4")),
        (Ipv4, "162.222.214[.]48", Ok("162.222.214.48")),
        (Ipv4, "010.1.1.1", Err("invalid_ipv4")),
        (Ipv4, "1.2.3", Err("invalid_ipv4")),
        (Ipv4, "256.1.1.1", Err("invalid_ipv4")),
        (Ipv4, "176.123.5.126;65", Err("invalid_ipv4")),
        (Ipv4, "2001:db8::1", Err("invalid_ipv4")),
        (Ipv4, "194.45.8.41:443", Err("has_port")),
        (Ipv4, "1.2.3.0/24", Err("has_prefix")),
        (Ipv4, "1.2.3.4/index.html", Err("has_path")),
        (Ipv4, "http://1.2.3.4", Err("has_scheme")),
        (Ipv4, "hxxp://1.2.3.4", Err("has_scheme")),
        (Ipv4, "", Err("empty")),
        (Ipv4, " \t ", Err("empty")),
        (Ipv4, "\"\"", Err("empty")),
        (
            Ipv6,
            "2400:6180:0:d0::1008:2001",
            Ok("2400:6180:0:d0::1008:2001"),
        ),
        (Ipv6, "2001:DB8:0:0:0:0:0:1", Ok("2001:db8::1")),
        (Ipv6, "3::", Ok("3::")),
        (Ipv6, "[2001:db8::1]", Ok("2001:db8::1")),
        (Ipv6, "::FFFF:1.2.3.4", Ok("::ffff:1.2.3.4")),
        (Ipv6, "[2001:db8::1]:443", Err("has_port")),
        (Ipv6, "2001:db8::g", Err("invalid_ipv6")),
        (Ipv6, "fe80::1%eth0", Err("invalid_ipv6")),
        (Ipv6, "1.2.3.4", Err("invalid_ipv6")),
        (Ipv6, "3e:0a:2c:0e:38:22:59:d6:91:52", Err("invalid_ipv6")),
        (Cidr, "124.171.71.9/24", Ok("124.171.71.0/24")),
        (Cidr, "124.171.71.0/24", Ok("124.171.71.0/24")),
        (Cidr, "223.167.0.0/15", Ok("223.166.0.0/15")),
        (Cidr, "FE80::/10", Ok("fe80::/10")),
        (Cidr, "FE80::1234/10", Ok("fe80::/10")),
        (Cidr, "0.0.0.0/0", Ok("0.0.0.0/0")),
        (Cidr, "255.255.255.255/0", Ok("0.0.0.0/0")),
        (Cidr, "10.1.2.3/32", Ok("10.1.2.3/32")),
        (Cidr, "2001:db8::1/128", Ok("2001:db8::1/128")),
        (Cidr, "10.0.0.0/08", Ok("10.0.0.0/8")),
        (Cidr, "1.2.3.4", Err("missing_prefix")),
        (Cidr, "1.2.3.4/33", Err("prefix_too_long")),
        (Cidr, "::/129", Err("prefix_too_long")),
        (Cidr, "1.2.3.4/", Err("invalid_cidr")),
        (Cidr, "1.2.3.4/x", Err("invalid_cidr")),
        (Cidr, "1.2.3.4/-1", Err("invalid_cidr")),
        (Cidr, "1.2.3.4/1000", Err("invalid_cidr")),
        (Cidr, "example.com/24", Err("invalid_cidr")),
    ];
    check(cases);
}

#[test]
fn normalize_domain_table() {
    let long_label = "a".repeat(64);
    let label_63 = format!("{}.com", "a".repeat(63));
    let too_long = format!("{}com", "abcdefghi.".repeat(26));
    let max_len = format!("{}.{}", vec!["a".repeat(63); 3].join("."), "b".repeat(61));
    let sha_label = format!("{}.pem", SHA256.to_lowercase());
    let cases: &[(IndicatorType, &str, Expected<'_>)] = &[
        (Domain, "example.com", Ok("example.com")),
        (Domain, "CitingSecurity.com", Ok("citingsecurity.com")),
        (Domain, "hahwuUmkwioq.site", Ok("hahwuumkwioq.site")),
        (Domain, "terryblog.110MB.com", Ok("terryblog.110mb.com")),
        (Domain, "redcima.com.", Ok("redcima.com")),
        (Domain, "bücher.example", Ok("xn--bcher-kva.example")),
        (Domain, "BÜCHER.Example", Ok("xn--bcher-kva.example")),
        (Domain, "xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
        (Domain, "XN--BCHER-KVA.EXAMPLE", Ok("xn--bcher-kva.example")),
        (Domain, "xn--telegrm-qbd.com", Ok("xn--telegrm-qbd.com")),
        (
            Domain,
            "xn--bbautkozmetika-pob.hu",
            Ok("xn--bbautkozmetika-pob.hu"),
        ),
        (
            Domain,
            "bbautókozmetika.hu",
            Ok("xn--bbautkozmetika-pob.hu"),
        ),
        (Domain, "ｅｘａｍｐｌｅ.com", Ok("example.com")),
        (Domain, "l·l.cat", Ok("xn--ll-0ea.cat")),
        (Domain, "понедельник.zip", Ok("xn--d1abbmkekedj3m.zip")),
        (Domain, "ap3rtur3_2.mooo.com", Ok("ap3rtur3_2.mooo.com")),
        (Domain, "u_a_sux.aeroua.online", Ok("u_a_sux.aeroua.online")),
        (Domain, "_dmarc.example.com", Ok("_dmarc.example.com")),
        (Domain, "hxxp.ddspadus.com", Ok("hxxp.ddspadus.com")),
        (
            Domain,
            "msservices.hxxps443.org",
            Ok("msservices.hxxps443.org"),
        ),
        (
            Domain,
            "hxxp-naver.wetax-pay.online",
            Ok("hxxp-naver.wetax-pay.online"),
        ),
        (Domain, "rammenale[.]com", Ok("rammenale.com")),
        (
            Domain,
            "owa-insss-org-ill-owa-authen[.]ml",
            Ok("owa-insss-org-ill-owa-authen.ml"),
        ),
        (Domain, "momplay.mov", Ok("momplay.mov")),
        (Domain, "ab--cd.com", Ok("ab--cd.com")),
        (
            Domain,
            "xn--bcher-kva.xn--p1ai",
            Ok("xn--bcher-kva.xn--p1ai"),
        ),
        (Domain, &label_63, Ok(&label_63)),
        (Domain, &max_len, Ok(&max_len)),
        (Domain, "support¬forum.org", Ok("xn--supportforum-tqa.org")),
        (
            Domain,
            "xn--supportforum-tqa.org",
            Ok("xn--supportforum-tqa.org"),
        ),
        (Domain, "⚡.coinigy.com", Ok("xn--57h.coinigy.com")),
        (Domain, "exa\u{a0}mple.com", Err("domain_bad_char")),
        (Domain, "exa\u{ad}mple.com", Err("domain_bad_char")),
        (Domain, "exa\u{200b}mple.com", Err("domain_bad_char")),
        (Domain, "exa mple.com", Err("domain_bad_char")),
        (Domain, "*.example.com", Err("domain_bad_char")),
        (Domain, "user@example.com", Err("domain_bad_char")),
        (Domain, "example.com:abc", Err("domain_bad_char")),
        (Domain, "localhost", Err("single_label")),
        (Domain, "localhost.", Err("single_label")),
        (Domain, "1.2.3.4", Err("invalid_tld")),
        (Domain, "example.123", Err("invalid_tld")),
        (Domain, "example.c", Err("invalid_tld")),
        (Domain, "example.c0m", Err("invalid_tld")),
        (Domain, "a..com", Err("empty_label")),
        (Domain, ".example.com", Err("empty_label")),
        (Domain, "example.com..", Err("empty_label")),
        (Domain, ".", Err("empty_label")),
        (Domain, "-a.com", Err("label_hyphen_edge")),
        (Domain, "a-.com", Err("label_hyphen_edge")),
        (Domain, &format!("{long_label}.com"), Err("label_too_long")),
        (Domain, &sha_label, Err("label_too_long")),
        (Domain, &too_long, Err("domain_too_long")),
        (Domain, "xn--zz.com", Err("invalid_idn")),
        (Domain, "clausdomain.homeunix[.]com:3928", Err("has_port")),
        (Domain, "example.com/path", Err("has_path")),
        (Domain, "example.com?q", Err("has_path")),
        (Domain, "http://example.com", Err("has_scheme")),
    ];
    check(cases);
}

#[test]
fn detect_table() {
    let sha1_lower = SHA1.to_lowercase();
    let sha256_lower = SHA256.to_lowercase();
    let cases: &[(&str, Detected<'_>)] = &[
        (
            "9F88234068D7ABAD65979EB1DF63EFB5",
            Ok((Md5, "9f88234068d7abad65979eb1df63efb5")),
        ),
        (SHA1, Ok((Sha1, &sha1_lower))),
        (SHA256, Ok((Sha256, &sha256_lower))),
        ("1.2.3.4", Ok((Ipv4, "1.2.3.4"))),
        ("162.222.214[.]48", Ok((Ipv4, "162.222.214.48"))),
        ("3::", Ok((Ipv6, "3::"))),
        ("[::1]", Ok((Ipv6, "::1"))),
        ("124.171.71.9/24", Ok((Cidr, "124.171.71.0/24"))),
        ("FE80::/10", Ok((Cidr, "fe80::/10"))),
        ("hxxp://x.com", Ok((Url, "http://x.com/"))),
        ("194.45.8.41:443", Ok((Url, "http://194.45.8.41:443/"))),
        (
            "[2a01:7e01::f03c:91ff:feac:f30f]:8080",
            Ok((Url, "http://[2a01:7e01::f03c:91ff:feac:f30f]:8080/")),
        ),
        ("example.com:3928", Ok((Url, "http://example.com:3928/"))),
        (
            "newidealupvc.com:443/img/x.php",
            Ok((Url, "http://newidealupvc.com:443/img/x.php")),
        ),
        (
            "https://s.com/?Email=a@b.com",
            Ok((Url, "https://s.com/?Email=a@b.com")),
        ),
        ("01Flip@proton.me", Ok((Email, "01flip@proton.me"))),
        ("user[at]example[.]com", Ok((Email, "user@example.com"))),
        ("mailto:a@b.com", Ok((Email, "a@b.com"))),
        ("example.com", Ok((Domain, "example.com"))),
        ("hxxp.ddspadus.com", Ok((Domain, "hxxp.ddspadus.com"))),
        ("bücher.example", Ok((Domain, "xn--bcher-kva.example"))),
        ("redcima.com.", Ok((Domain, "redcima.com"))),
        ("secretsdump.py", Ok((Domain, "secretsdump.py"))),
        ("deadbeef", Err("unrecognized")),
        ("hello", Err("unrecognized")),
        ("", Err("empty")),
        ("300.1.1.1", Err("invalid_ipv4")),
        ("3e:0a:2c:0e:38:22:59:d6:91:52", Err("invalid_ipv6")),
        ("/zuniga.php", Err("missing_host")),
        ("localhost.", Err("single_label")),
    ];
    for (raw, want) in cases {
        let got = detect(raw)
            .map(|i| (i.ty(), i.into_value()))
            .map_err(|e| e.kind());
        let want = want.map(|(ty, value)| (ty, value.to_owned()));
        assert_eq!(got, want, "detect({raw:?})");
    }
}

#[test]
fn type_names_and_codes() {
    for (i, ty) in IndicatorType::ALL.into_iter().enumerate() {
        assert_eq!(usize::from(ty.code()), i + 1);
        assert_eq!(i32::from(ty.code()), ty.to_proto() as i32);
        assert_eq!(IndicatorType::from_proto(ty.to_proto() as i32), Some(ty));
        assert_eq!(IndicatorType::from_code(ty.code()), Some(ty));
        assert_eq!(ty.as_str().parse::<IndicatorType>(), Ok(ty));
        assert_eq!(ty.as_str().to_uppercase().parse::<IndicatorType>(), Ok(ty));
        assert_eq!(ty.to_string(), ty.as_str());
    }
    assert_eq!(
        IndicatorType::from_proto(pb::IndicatorType::Unspecified as i32),
        None
    );
    assert_eq!(IndicatorType::from_proto(10), None);
    assert_eq!(IndicatorType::from_proto(-1), None);
    assert_eq!(IndicatorType::from_code(0), None);
    let aliases = [
        ("ipv4-addr", Ipv4),
        ("IPv6-Addr", Ipv6),
        ("domain-name", Domain),
        ("email-addr", Email),
        ("SHA-1", Sha1),
        ("sha-256", Sha256),
    ];
    for (name, ty) in aliases {
        assert_eq!(name.parse::<IndicatorType>(), Ok(ty));
    }
    assert_eq!(
        "ip".parse::<IndicatorType>(),
        Err(NormalizeError::UnknownType {
            name: "ip".to_owned()
        })
    );
}

#[test]
fn errors_name_the_offending_part() {
    let message = |ty, raw| normalize(ty, raw).map(|_| ()).unwrap_err().to_string();
    assert!(message(Domain, "localhost").contains("\"localhost\""));
    assert!(message(Domain, "exa\u{a0}mple.com").contains("'\\u{a0}'"));
    assert!(message(Domain, "example.c0m").contains("\"c0m\""));
    assert!(message(Cidr, "1.2.3.4/33").contains("/33"));
    assert!(message(Url, "gopher://x.com/").contains("\"gopher\""));
    assert!(message(Md5, "abc").contains("3 hex digits, 32 expected"));
    let long = "a".repeat(super::MAX_LEN + 1);
    assert_eq!(
        normalize(Domain, &long),
        Err(NormalizeError::TooLong {
            len: super::MAX_LEN + 1,
            max: super::MAX_LEN
        })
    );
}

/// Checks each case, and that every canonical value normalizes to itself.
fn check(cases: &[(IndicatorType, &str, Expected<'_>)]) {
    for &(ty, raw, want) in cases {
        let got = normalize(ty, raw);
        assert_eq!(
            got.as_ref().map(|i| i.value()).map_err(|e| e.kind()),
            want,
            "normalize({ty}, {raw:?}): {got:?}"
        );
        if let Ok(indicator) = got {
            assert_eq!(indicator.ty(), ty);
            let again = normalize(ty, indicator.value());
            assert_eq!(
                again.as_ref(),
                Ok(&indicator),
                "not a fixed point: {indicator:?}"
            );
        }
    }
}

#[test]
fn values_too_long_for_dns_are_refused_before_idna() {
    // Found by the `misp` fuzz target: a 2 KiB punycode label took IDNA over a millisecond.
    let long_label = format!("xn--{}.example", "h".repeat(496));
    match normalize(Domain, &long_label) {
        Err(NormalizeError::LabelTooLong { len, .. }) => assert_eq!(len, 500),
        other => panic!("{other:?}"),
    }
    let long_name = format!("{}.example", "ü".repeat(600));
    assert!(matches!(
        normalize(Domain, &long_name),
        Err(NormalizeError::DomainTooLong { .. })
    ));
    // What IDNA accepts still passes.
    assert_eq!(
        normalize(Domain, "XN--BCHER-KVA.example").unwrap().value(),
        "xn--bcher-kva.example"
    );
    assert_eq!(
        normalize(Domain, "bücher.example").unwrap().value(),
        "xn--bcher-kva.example"
    );
}

/// Which URLs are read as plain, without the parser: canonical http(s) URLs with a host name;
/// anything the parser would change, or whose host is not a plain name, is not.
#[test]
fn plain_urls_are_read_without_the_parser() {
    let cases = [
        ("https://login12.com/wp/a.php?id=5&x=y", Some("login12.com")),
        ("http://a-b.example.co/", Some("a-b.example.co")),
        (
            "http://1.2.example.com/x//y/.hidden",
            Some("1.2.example.com"),
        ),
        (
            "https://example.com/a;b,c=d:e@f!$&'*+~",
            Some("example.com"),
        ),
        (
            "https://example.com/Upper/Case?Q=1?2/3",
            Some("example.com"),
        ),
        ("https://example.com", None),
        ("HTTPS://example.com/", None),
        ("ftp://example.com/", None),
        ("https://Example.com/", None),
        ("https://example.com./", None),
        ("https://example.com:443/", None),
        ("https://user@example.com/", None),
        ("https://1.2.3.4/a.exe", Some("1.2.3.4")),
        ("http://192.168.0.10/?id=1", Some("192.168.0.10")),
        ("https://01.2.3.4/", None),
        ("https://1.2.3/", None),
        ("https://1.2.3.4.5/", None),
        ("https://example.123/", None),
        ("https://xn--bcher-kva.de/", None),
        ("https://exa_mple.com/", None),
        ("https://-example.com/", None),
        ("https://localhost/", None),
        ("https://example.com/a/../b", None),
        ("https://example.com/a/./b", None),
        ("https://example.com/a/%2e/b", None),
        ("https://example.com/a b", None),
        ("https://example.com/a\\b", None),
        ("https://example.com/(x)", None),
        ("https://example.com/a#frag", None),
        ("https://example.com/a?", None),
        ("https://example.com/a?it's", None),
        ("https://example.com/caf\u{e9}", None),
    ];
    for (url, host) in cases {
        assert_eq!(super::uri::plain_host(url).map(|h| h.name), host, "{url:?}");
        if host.is_some() {
            let indicator = normalize(IndicatorType::Url, url).expect("a plain URL is valid");
            assert_eq!(
                indicator.value(),
                url,
                "a plain URL is canonical as written"
            );
            assert_eq!(indicator.host().as_ref().map(|h| h.value()), host);
        }
    }
}
