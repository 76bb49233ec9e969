//! URLs: parsed and serialized by the `url` crate (WHATWG rules), with the host held to the
//! same rules as the domain and IP types and the fragment dropped.
//!
//! The `url` crate already lower-cases scheme and host, converts IDNs to punycode, drops the
//! default port of http, https, ftp, ws and wss and percent-encodes what needs it; its output
//! is the canonical form. Percent-escapes already present are kept as written (`%3f` stays
//! lower case), as the `url` crate does.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use url::{Host, Url};

use super::{domain, normalize, Indicator, IndicatorType, NormalizeError};

/// Schemes whose URLs locate a network resource. Others (`mailto`, `magnet`, `javascript`,
/// `file`, `data`) name no host one could block.
const SCHEMES: &[&str] = &[
    "http", "https", "ftp", "ftps", "sftp", "ws", "wss", "tcp", "udp", "dns", "smb",
];

/// Schemes the WHATWG parser knows, whose hosts it lower-cases and converts to punycode.
/// The others get an opaque host, which is checked here instead.
const SPECIAL: &[&str] = &["http", "https", "ftp", "ws", "wss"];

/// `value` as a canonical URL, parsed (its serialization is the canonical form).
pub(crate) fn url(value: &str) -> Result<Url, NormalizeError> {
    let full = match scheme_of(value) {
        Some(scheme) => {
            let scheme = scheme.to_ascii_lowercase();
            if !SCHEMES.contains(&scheme.as_str()) {
                return Err(NormalizeError::UnsupportedScheme { scheme });
            }
            Cow::Borrowed(value)
        }
        // `/wp-login.php` is a path, yet `http:///wp-login.php` would parse with host
        // `wp-login.php`.
        None if value.starts_with(['/', '\\']) => {
            return Err(NormalizeError::MissingHost {
                value: value.to_owned(),
            })
        }
        // Lists often leave the scheme off (`host/path`, `host:port/path`); http is what a
        // browser would assume.
        None => Cow::Owned(format!("http://{value}")),
    };
    let invalid = |reason: String| NormalizeError::InvalidUrl {
        value: value.to_owned(),
        reason,
    };
    let mut url = Url::parse(&full).map_err(|err| invalid(err.to_string()))?;
    url.set_fragment(None);
    if let Some(host) = canonical_host(&url, &full, value)? {
        url.set_host(Some(&host))
            .map_err(|err| invalid(err.to_string()))?;
    }
    Ok(url)
}

/// The host of a canonical URL as an address or domain indicator, read by the same parser
/// that made it canonical (so user info, ports and bracketed IPv6 hosts are taken apart as
/// the URL means them).
pub(crate) fn host(canonical: &str) -> Option<Indicator> {
    match plain_host(canonical) {
        Some(host) => host.indicator(),
        None => host_of(&Url::parse(canonical).ok()?),
    }
}

/// The host of `value` if it is a URL already in the form [`url`] gives, read without the
/// `url` crate: scheme `http` or `https`; as host a dotted-quad IPv4 address, or a name of
/// lower-case letters, digits, dots and hyphens whose last label starts with a letter (the
/// WHATWG parser reads a host ending in a number as an IPv4 address) and none punycode; no
/// port or user info; then a path and maybe a query, of characters the parser keeps as they
/// are, with no dot segment or fragment. `None` says nothing of validity: such a value goes
/// through [`url`]. URLs are about a fifth of a bulk lookup's values, and the parse was most
/// of their cost.
pub(crate) fn plain_host(value: &str) -> Option<PlainHost<'_>> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))?;
    // A path is required: `http://host` is serialized with one.
    let (host, path_and_query) = rest.split_at(rest.find('/')?);
    let host_byte =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-');
    if !host.bytes().all(host_byte) {
        return None;
    }
    // A dotted quad as std reads it is written as the parser writes it back (no leading
    // zeros); any other host ending in a number (`1.2.3`, `0x7f.1`) the parser reads its way.
    let ty = match host.parse::<Ipv4Addr>() {
        Ok(_) => IndicatorType::Ipv4,
        Err(_) => IndicatorType::Domain,
    };
    if ty == IndicatorType::Domain {
        let last = host.rsplit('.').next()?;
        let punycode = host.split('.').any(|l| l.starts_with("xn--"));
        if !last.bytes().next()?.is_ascii_lowercase() || punycode {
            return None;
        }
        domain::check_ascii(host, value).ok()?;
    }
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let dot_segment = path.split('/').any(|s| s == "." || s == "..");
    let query_plain = query.is_none_or(|q| !q.is_empty() && q.bytes().all(plain_query_byte));
    let plain = !dot_segment && path.bytes().all(plain_path_byte) && query_plain;
    plain.then_some(PlainHost { name: host, ty })
}

/// The host of a URL [`plain_host`] read: its text and whether it is an address or a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlainHost<'a> {
    pub name: &'a str,
    pub ty: IndicatorType,
}

impl PlainHost<'_> {
    /// The host as an indicator, as [`host_of`] makes it from the parsed URL.
    pub(crate) fn indicator(&self) -> Option<Indicator> {
        normalize(self.ty, self.name).ok()
    }
}

/// A byte the WHATWG parser keeps as it is in the path of an http(s) URL (unreserved
/// characters and sub-delimiters but brackets, which refanging reads, `:`, `@` and `/`).
fn plain_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// A byte kept as it is in the query of an http(s) URL: as in a path, and `?`, but not `'`,
/// which the special-query set escapes.
fn plain_query_byte(b: u8) -> bool {
    (plain_path_byte(b) && b != b'\'') || b == b'?'
}

/// [`host`] of a URL already parsed, as [`url`] returns it: parsing its serialization again
/// gives the same URL.
pub(crate) fn host_of(url: &Url) -> Option<Indicator> {
    match url.host()? {
        Host::Ipv4(addr) => normalize(IndicatorType::Ipv4, &addr.to_string()).ok(),
        Host::Ipv6(addr) => normalize(IndicatorType::Ipv6, &addr.to_string()).ok(),
        // An opaque host (a scheme the WHATWG parser does not know) is kept percent-encoded.
        Host::Domain(name) => {
            let name = percent_decode(name)?;
            let ty = if name.parse::<Ipv4Addr>().is_ok() {
                IndicatorType::Ipv4
            } else {
                IndicatorType::Domain
            };
            normalize(ty, &name).ok()
        }
    }
}

/// The scheme of `value`, if it starts with one.
///
/// `host:port` also starts with letters and a colon, so a colon followed by digits only is a
/// port, not a scheme.
fn scheme_of(value: &str) -> Option<&str> {
    let (head, rest) = value.split_once(':')?;
    let mut chars = head.chars();
    let first_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_alpha || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return None;
    }
    if rest.starts_with("//") {
        return Some(head);
    }
    let port = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let is_port = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (!is_port && !head.contains('.')).then_some(head)
}

/// The host as written in `full` (a URL with its scheme): after the scheme and any slashes,
/// before the path, query or fragment, without user info and port.
fn written_host(full: &str) -> &str {
    let rest = full.split_once(':').map_or(full, |(_, rest)| rest);
    let rest = rest.trim_start_matches(['/', '\\']);
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.split(':').next().unwrap_or(host)
}

/// The host to put in place of the parsed one, if it is not canonical yet. `full` is the URL
/// as parsed (with its scheme), `shown` as given.
fn canonical_host(url: &Url, full: &str, shown: &str) -> Result<Option<String>, NormalizeError> {
    let missing = || NormalizeError::MissingHost {
        value: shown.to_owned(),
    };
    let host = match url.host() {
        None => return Err(missing()),
        // The WHATWG parser reads `107.183.86` as 107.183.0.86, `010.1.1.1` as 8.1.1.1 and
        // `0x7f.1` as 127.0.0.1: a list's truncated or padded address would block an
        // unrelated one. Only the dotted quad the address type takes is read as one.
        Some(Host::Ipv4(addr)) => {
            let written = written_host(full);
            let written = written.strip_suffix('.').unwrap_or(written);
            return match written.parse::<Ipv4Addr>() {
                Ok(a) if a == addr => Ok(None),
                _ => Err(NormalizeError::InvalidUrl {
                    value: shown.to_owned(),
                    reason: format!(
                        "the host {written:?} is no dotted-quad IPv4 address (a browser reads it as {addr})"
                    ),
                }),
            };
        }
        Some(Host::Ipv6(_)) => return Ok(None),
        Some(Host::Domain(host)) => host,
    };
    if host.is_empty() {
        return Err(missing());
    }
    let canonical = if SPECIAL.contains(&url.scheme()) {
        let name = host.strip_suffix('.').unwrap_or(host);
        domain::check_ascii(name, host)?;
        Cow::Borrowed(name)
    } else {
        let decoded = percent_decode(host).ok_or_else(|| NormalizeError::InvalidUrl {
            value: shown.to_owned(),
            reason: "the host is not UTF-8 once percent-decoded".to_owned(),
        })?;
        match decoded.parse::<Ipv4Addr>() {
            Ok(addr) => Cow::Owned(addr.to_string()),
            Err(_) => Cow::Owned(domain::domain(&decoded)?),
        }
    };
    Ok((canonical != host).then(|| canonical.into_owned()))
}

/// Decodes `%XX` escapes; the `url` crate escapes non-ASCII in opaque hosts.
fn percent_decode(s: &str) -> Option<Cow<'_, str>> {
    if !s.contains('%') {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            // from_str_radix alone would take a sign: "%+f".
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}
