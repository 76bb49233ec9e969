//! Normalization tables of URLs, e-mail addresses and hashes, and the host a URL or e-mail names.

use super::*;

#[test]
fn normalize_url_table() {
    let cases: &[(IndicatorType, &str, Expected<'_>)] = &[
        (
            Url,
            "http://Example.COM:80/a%3fb#frag",
            Ok("http://example.com/a%3fb"),
        ),
        (Url, "HTTP://example.com", Ok("http://example.com/")),
        (Url, "https://x.com:443", Ok("https://x.com/")),
        (Url, "ftp://Example.com:21/x", Ok("ftp://example.com/x")),
        (
            Url,
            "newidealupvc.com:443/img/prettyPhoto/jquery.max.php",
            Ok("http://newidealupvc.com:443/img/prettyPhoto/jquery.max.php"),
        ),
        (
            Url,
            "hxxp[://]minish[.]wiki[.]gd/c[.]pdf",
            Ok("http://minish.wiki.gd/c.pdf"),
        ),
        (
            Url,
            "http://m.goudie[.]in:1024/js.html",
            Ok("http://m.goudie.in:1024/js.html"),
        ),
        (
            Url,
            "http://134.209.222.206:15363",
            Ok("http://134.209.222.206:15363/"),
        ),
        (Url, "143.92.48.38", Ok("http://143.92.48.38/")),
        (Url, "now.asmkpo.com:80", Ok("http://now.asmkpo.com/")),
        (
            Url,
            "128[.]199[.]72[.]218[:]4700/wp/x",
            Ok("http://128.199.72.218:4700/wp/x"),
        ),
        (
            Url,
            "tcp://45.77.160.195:443/",
            Ok("tcp://45.77.160.195:443/"),
        ),
        (
            Url,
            "dns://win10.ipv6-microsoft.org",
            Ok("dns://win10.ipv6-microsoft.org"),
        ),
        (
            Url,
            "DNS://Win10.IPv6-Microsoft.org",
            Ok("dns://win10.ipv6-microsoft.org"),
        ),
        (
            Url,
            "tcp://Bücher.example:53",
            Ok("tcp://xn--bcher-kva.example:53"),
        ),
        (
            Url,
            "'http://89.251.22.227/guacos.php '",
            Ok("http://89.251.22.227/guacos.php"),
        ),
        (
            Url,
            "alwaysup.greatandsafeways4contents.icu/%3fb9zd1=x%26cid=y",
            Ok("http://alwaysup.greatandsafeways4contents.icu/%3fb9zd1=x%26cid=y"),
        ),
        (
            Url,
            "http://example.com/a b?q=c d",
            Ok("http://example.com/a%20b?q=c%20d"),
        ),
        (
            Url,
            "http://bücher.example/",
            Ok("http://xn--bcher-kva.example/"),
        ),
        (Url, "http://example.com./a", Ok("http://example.com/a")),
        (
            Url,
            "http://ap3rtur3_2.mooo.com/x",
            Ok("http://ap3rtur3_2.mooo.com/x"),
        ),
        (
            Url,
            "http://[2001:DB8::1]:8080/",
            Ok("http://[2001:db8::1]:8080/"),
        ),
        (
            Url,
            "https://fe.xrqo8.ru.com/[.]well-known/acme-challenge/",
            Ok("https://fe.xrqo8.ru.com/.well-known/acme-challenge/"),
        ),
        (
            Url,
            "hxxps://startrackzm[.]com/x.php?Email=REDACTED@adm.dp.gov.ua",
            Ok("https://startrackzm.com/x.php?Email=REDACTED@adm.dp.gov.ua"),
        ),
        (
            Url,
            "file://sunshine-bizrate-inc-software.trycloudflare.com@SSL/DavWWWRoot/update.cmd",
            Err("unsupported_scheme"),
        ),
        (Url, "magnet:?xt=urn:btih:abc", Err("unsupported_scheme")),
        (Url, "mailto:a@example.com", Err("unsupported_scheme")),
        (Url, "javascript:alert(1)", Err("unsupported_scheme")),
        (Url, "/wp-login.php", Err("missing_host")),
        (Url, "tcp:///x", Err("missing_host")),
        (Url, "http://localhost/", Err("single_label")),
        (Url, "http://-a.com/", Err("label_hyphen_edge")),
        (Url, "http://a..com/", Err("empty_label")),
        (
            Url,
            "http://support¬forum.org/",
            Ok("http://xn--supportforum-tqa.org/"),
        ),
        (
            Url,
            "smb://38.9.8.78/driverpack/DPU.exe",
            Ok("smb://38.9.8.78/driverpack/DPU.exe"),
        ),
        (Url, "http://foo.123/", Err("invalid_url")),
        (Url, "http://example.com:99999/", Err("invalid_url")),
        (
            Url,
            "https://www.welivesecurity.com[WeLiveSecurity]",
            Err("invalid_url"),
        ),
        (Url, "http://", Err("invalid_url")),
        // A truncated, zero-padded or hex address is no address of the IPv4 type: the URL
        // parser would read each as another address.
        (Url, "107.183.86", Err("invalid_url")),
        (Url, "182.86.133:8880", Err("invalid_url")),
        (Url, "http://010.1.1.1/x", Err("invalid_url")),
        (Url, "http://0x7f.1/", Err("invalid_url")),
        (Url, "http://2130706433/", Err("invalid_url")),
        (
            Url,
            "http://user@1.2.3.4:81/x",
            Ok("http://user@1.2.3.4:81/x"),
        ),
        (Url, "http://1.2.3.4./", Ok("http://1.2.3.4/")),
        (Url, "HTTP:\\\\5.6.7.8\\a", Ok("http://5.6.7.8/a")),
    ];
    check(cases);
}

#[test]
fn normalize_email_and_hash_table() {
    let local_65 = format!("{}@example.com", "a".repeat(65));
    let sha256_lower = SHA256.to_lowercase();
    let sha1_lower = SHA1.to_lowercase();
    let cases: &[(IndicatorType, &str, Expected<'_>)] = &[
        (Email, "01Flip@proton.me", Ok("01flip@proton.me")),
        (
            Email,
            "jagdish.meshraam@gmail.com",
            Ok("jagdish.meshraam@gmail.com"),
        ),
        (Email, "user[at]example[.]com", Ok("user@example.com")),
        (Email, "user(@)Example.COM", Ok("user@example.com")),
        (Email, "mailto:User@Example.com", Ok("user@example.com")),
        (Email, "<user@example.com>", Ok("user@example.com")),
        (
            Email,
            "first.o'brien+tag@example.com",
            Ok("first.o'brien+tag@example.com"),
        ),
        (
            Email,
            "user@bücher.example",
            Ok("user@xn--bcher-kva.example"),
        ),
        (Email, "userexample.com", Err("invalid_email")),
        (Email, "a@b@example.com", Err("invalid_email")),
        (Email, "@example.com", Err("invalid_email")),
        (Email, ".a@example.com", Err("invalid_email")),
        (Email, "a..b@example.com", Err("invalid_email")),
        (Email, "\"a b\"@example.com", Err("invalid_email")),
        (Email, "josé@example.com", Err("invalid_email")),
        (Email, &local_65, Err("invalid_email")),
        (Email, "user@localhost", Err("single_label")),
        (Email, "user@example.com:25", Err("has_port")),
        (
            Md5,
            "9F88234068D7ABAD65979EB1DF63EFB5",
            Ok("9f88234068d7abad65979eb1df63efb5"),
        ),
        (
            Md5,
            "E42a8cef2e70d4f3c96c2b8073e7d396",
            Ok("e42a8cef2e70d4f3c96c2b8073e7d396"),
        ),
        (
            Md5,
            "90ce1320bd999c17abdf8975c92b08f7 ",
            Ok("90ce1320bd999c17abdf8975c92b08f7"),
        ),
        (Sha1, SHA1, Ok(&sha1_lower)),
        (Sha256, SHA256, Ok(&sha256_lower)),
        (Md5, SHA1, Err("bad_hash_length")),
        (
            Sha256,
            "9F88234068D7ABAD65979EB1DF63EFB5",
            Err("bad_hash_length"),
        ),
        (Md5, "g9f88234068d7abad65979eb1df63efb", Err("not_hex")),
        (
            Md5,
            "d41d8cd98f00b204e9800998ecf8427e file.exe",
            Err("not_hex"),
        ),
        (Sha1, "", Err("empty")),
    ];
    check(cases);
}

#[test]
fn a_url_or_email_names_its_host() {
    let cases: &[(&str, Option<(IndicatorType, &str)>)] = &[
        (
            "http://Login.Example.com:8080/a?b",
            Some((Domain, "login.example.com")),
        ),
        (
            "https://user%40x@evil.example/p",
            Some((Domain, "evil.example")),
        ),
        ("http://192.0.2.1/x", Some((Ipv4, "192.0.2.1"))),
        ("http://[2001:db8::1]:81/", Some((Ipv6, "2001:db8::1"))),
        ("tcp://198.51.100.7:4444", Some((Ipv4, "198.51.100.7"))),
        ("tcp://c2.example:4444", Some((Domain, "c2.example"))),
    ];
    for (raw, want) in cases {
        let url = normalize(Url, raw).unwrap();
        let got = url.host().map(|h| (h.ty(), h.value().to_owned()));
        assert_eq!(got, want.map(|(t, v)| (t, v.to_owned())), "{raw}");
    }
    let email = normalize(Email, "Someone@Mail.Example.org").unwrap();
    let host = email.host().unwrap();
    assert_eq!((host.ty(), host.value()), (Domain, "mail.example.org"));
    assert_eq!(normalize(Domain, "a.example").unwrap().host(), None);
}
