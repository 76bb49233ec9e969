//! Indicator types and normalization to one canonical form per value.
//!
//! The same IP, domain or hash reported by two agencies must be the same key, whatever case,
//! defanging, quoting or padding each used. Every value therefore goes through [`normalize`]
//! (type known) or [`detect`] (type guessed) before it is signed, stored or compared, and an
//! [`Indicator`] can only be made that way. Canonical values are fixed points: normalizing one
//! again returns it unchanged, which is what lets a receiver check that a sender normalized.
//!
//! Every value is first trimmed (whitespace, NBSP, BOM), stripped of one pair of balanced
//! quotes and [refanged](refang); the rules of each type live in the submodules.

mod domain;
mod email;
mod error;
mod net;
pub(crate) use net::{text_with_room, IPV6_TEXT};
mod refang;
mod uri;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use intelmesh_proto::v1 as pb;

pub use error::NormalizeError;
pub use refang::refang;

/// Longest value accepted, raw (once trimmed) or canonical, in bytes.
pub const MAX_LEN: usize = 2048;

/// What kind of thing an indicator value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndicatorType {
    Ipv4,
    Ipv6,
    Cidr,
    Domain,
    Url,
    Email,
    Md5,
    Sha1,
    Sha256,
}

impl IndicatorType {
    /// Whether values of this type are file hashes.
    pub fn is_hash(self) -> bool {
        matches!(
            self,
            IndicatorType::Md5 | IndicatorType::Sha1 | IndicatorType::Sha256
        )
    }

    pub const ALL: [IndicatorType; 9] = [
        IndicatorType::Ipv4,
        IndicatorType::Ipv6,
        IndicatorType::Cidr,
        IndicatorType::Domain,
        IndicatorType::Url,
        IndicatorType::Email,
        IndicatorType::Md5,
        IndicatorType::Sha1,
        IndicatorType::Sha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorType::Ipv4 => "ipv4",
            IndicatorType::Ipv6 => "ipv6",
            IndicatorType::Cidr => "cidr",
            IndicatorType::Domain => "domain",
            IndicatorType::Url => "url",
            IndicatorType::Email => "email",
            IndicatorType::Md5 => "md5",
            IndicatorType::Sha1 => "sha1",
            IndicatorType::Sha256 => "sha256",
        }
    }

    pub fn to_proto(self) -> pb::IndicatorType {
        match self {
            IndicatorType::Ipv4 => pb::IndicatorType::Ipv4,
            IndicatorType::Ipv6 => pb::IndicatorType::Ipv6,
            IndicatorType::Cidr => pb::IndicatorType::Cidr,
            IndicatorType::Domain => pb::IndicatorType::Domain,
            IndicatorType::Url => pb::IndicatorType::Url,
            IndicatorType::Email => pb::IndicatorType::Email,
            IndicatorType::Md5 => pb::IndicatorType::Md5,
            IndicatorType::Sha1 => pb::IndicatorType::Sha1,
            IndicatorType::Sha256 => pb::IndicatorType::Sha256,
        }
    }

    /// `None` for `Unspecified` and for numbers this build does not know.
    pub fn from_proto(v: i32) -> Option<IndicatorType> {
        IndicatorType::ALL
            .into_iter()
            .find(|ty| ty.to_proto() as i32 == v)
    }

    /// A stable number, 1 to 9, equal to the proto enum's; storage keys are built from it, so
    /// it never changes for a type.
    pub fn code(self) -> u8 {
        match self {
            IndicatorType::Ipv4 => 1,
            IndicatorType::Ipv6 => 2,
            IndicatorType::Cidr => 3,
            IndicatorType::Domain => 4,
            IndicatorType::Url => 5,
            IndicatorType::Email => 6,
            IndicatorType::Md5 => 7,
            IndicatorType::Sha1 => 8,
            IndicatorType::Sha256 => 9,
        }
    }

    /// The inverse of [`IndicatorType::code`], for reading storage keys back.
    pub fn from_code(code: u8) -> Option<IndicatorType> {
        IndicatorType::ALL.into_iter().find(|ty| ty.code() == code)
    }

    /// Number of hex digits of a hash type.
    fn hash_len(self) -> Option<usize> {
        match self {
            IndicatorType::Md5 => Some(32),
            IndicatorType::Sha1 => Some(40),
            IndicatorType::Sha256 => Some(64),
            _ => None,
        }
    }
}

impl FromStr for IndicatorType {
    type Err = NormalizeError;

    /// Takes the [`IndicatorType::as_str`] names in any case, and the STIX names of the same
    /// types (`ipv4-addr`, `domain-name`, `sha-256`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ty = match s.trim().to_ascii_lowercase().as_str() {
            "ipv4" | "ipv4-addr" => IndicatorType::Ipv4,
            "ipv6" | "ipv6-addr" => IndicatorType::Ipv6,
            "cidr" => IndicatorType::Cidr,
            "domain" | "domain-name" => IndicatorType::Domain,
            "url" => IndicatorType::Url,
            "email" | "email-addr" => IndicatorType::Email,
            "md5" => IndicatorType::Md5,
            "sha1" | "sha-1" => IndicatorType::Sha1,
            "sha256" | "sha-256" => IndicatorType::Sha256,
            _ => return Err(NormalizeError::UnknownType { name: s.to_owned() }),
        };
        Ok(ty)
    }
}

impl fmt::Display for IndicatorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value in canonical form; only constructed through [`normalize`] and [`detect`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Indicator {
    ty: IndicatorType,
    value: String,
}

impl Indicator {
    /// For values built in canonical form by this crate (a masked block, a parent domain).
    pub(crate) fn canonical(ty: IndicatorType, value: String) -> Indicator {
        Indicator { ty, value }
    }

    pub fn ty(&self) -> IndicatorType {
        self.ty
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    pub fn into_value(self) -> String {
        self.value
    }

    /// The host a URL points at (an address or a domain) or the domain of an e-mail address,
    /// as an indicator of its own: what a block list naming the host would match. `None` for
    /// other types, and for a host that is no indicator (a single-label name).
    pub fn host(&self) -> Option<Indicator> {
        match self.ty {
            IndicatorType::Url => uri::host(&self.value),
            IndicatorType::Email => {
                let (_, domain) = self.value.rsplit_once('@')?;
                normalize(IndicatorType::Domain, domain).ok()
            }
            _ => None,
        }
    }
}

/// Puts `raw`, a value of type `ty`, in canonical form, or says what is wrong with it.
pub fn normalize(ty: IndicatorType, raw: &str) -> Result<Indicator, NormalizeError> {
    let value = prepare(raw)?;
    normalize_prepared(ty, &value)
}

/// Guesses the type of a raw value, for bulk lookups and list imports, and normalizes it.
///
/// In order: hex of a hash length is a hash; IPv4, IPv6, then `ip/prefix` a CIDR block; a
/// value with a scheme is a URL; one with `@` an email; one with a path, query or port
/// (`host/path`, `host:443`) a URL without its scheme; anything else with a dot a domain.
/// An `ip:port` is thus a URL, which keeps the port, not an IP.
pub fn detect(raw: &str) -> Result<Indicator, NormalizeError> {
    let value = prepare(raw)?;
    let detected = detected(&value)?;
    from_detected(detected, value)
}

/// [`detect`] and the value's [`Indicator::host`] together: a URL's host is read off the URL
/// as parsed to make it canonical, not by parsing the canonical form again (a lookup asks for
/// both of every value, and the second parse was a twentieth of its CPU).
pub fn detect_with_host(raw: &str) -> Result<(Indicator, Option<Indicator>), NormalizeError> {
    let value = prepare(raw)?;
    match detected(&value)? {
        Detected::Guessed(IndicatorType::Url) => {
            let (url, host) = match uri::plain_host(&value) {
                Some(host) => (value.to_string(), host.indicator()),
                None => {
                    let url = settled_url(&value)?;
                    let host = uri::host_of(&url);
                    (url.into(), host)
                }
            };
            Ok((within_max_len(IndicatorType::Url, url)?, host))
        }
        other => {
            let indicator = from_detected(other, value)?;
            let host = indicator.host();
            Ok((indicator, host))
        }
    }
}

/// What [`detect`] makes of a prepared value before normalizing it.
enum Detected {
    /// An IPv4 address std reads as written: canonical already. Addresses are most of what
    /// bulk lookups ask: one parse, here, rather than one to guess and another to normalize
    /// (what std reads is already canonical, see `net::ipv4`; no hash has a dot).
    CanonicalIpv4,
    /// The type to normalize it as ([`guess`]); a near miss of an address (`01.2.3.4`) is
    /// guessed IPv4, for the IPv4 error.
    Guessed(IndicatorType),
}

fn detected(value: &str) -> Result<Detected, NormalizeError> {
    if value.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(Detected::CanonicalIpv4);
    }
    match guess(value) {
        Some(ty) => Ok(Detected::Guessed(ty)),
        None => Err(NormalizeError::Unrecognized {
            value: value.to_string(),
        }),
    }
}

fn from_detected(detected: Detected, value: Cow<'_, str>) -> Result<Indicator, NormalizeError> {
    match detected {
        Detected::CanonicalIpv4 => Ok(Indicator {
            ty: IndicatorType::Ipv4,
            value: value.into_owned(),
        }),
        Detected::Guessed(ty) => normalize_prepared(ty, &value),
    }
}

/// Trims, unquotes and refangs, and enforces [`MAX_LEN`].
fn prepare(raw: &str) -> Result<Cow<'_, str>, NormalizeError> {
    let trimmed = trim(raw);
    let unquoted = ['"', '\'']
        .into_iter()
        .find_map(|q| trimmed.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
        .map_or(trimmed, trim);
    if unquoted.is_empty() {
        return Err(NormalizeError::Empty);
    }
    if unquoted.len() > MAX_LEN {
        return Err(NormalizeError::TooLong {
            len: unquoted.len(),
            max: MAX_LEN,
        });
    }
    Ok(refang(unquoted))
}

/// Trims whitespace, including the NBSP and the byte-order mark that spreadsheets and
/// Windows editors leave behind, and zero-width spaces from web pages.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || matches!(c, '\u{feff}' | '\u{200b}'))
}

fn normalize_prepared(ty: IndicatorType, value: &str) -> Result<Indicator, NormalizeError> {
    let canonical = match ty {
        IndicatorType::Ipv4 => net::ipv4(value)?,
        IndicatorType::Ipv6 => net::ipv6(value)?,
        IndicatorType::Cidr => net::cidr(value)?,
        IndicatorType::Domain => domain::domain(value)?,
        IndicatorType::Url => match uri::plain_host(value) {
            Some(_) => value.to_owned(),
            None => settled_url(value)?.into(),
        },
        IndicatorType::Email => email::email(value)?,
        IndicatorType::Md5 | IndicatorType::Sha1 | IndicatorType::Sha256 => {
            hash(value, ty.hash_len().unwrap_or_default())?
        }
    };
    within_max_len(ty, canonical)
}

/// `canonical` as an indicator of type `ty`, unless it is longer than [`MAX_LEN`].
fn within_max_len(ty: IndicatorType, canonical: String) -> Result<Indicator, NormalizeError> {
    if canonical.len() > MAX_LEN {
        return Err(NormalizeError::TooLong {
            len: canonical.len(),
            max: MAX_LEN,
        });
    }
    Ok(Indicator {
        ty,
        value: canonical,
    })
}

/// A URL whose serialization refangs to itself.
///
/// The URL parser drops tabs and newlines, which can join a form such as `[\t.]` into `[.]`
/// after refanging has run; going round again keeps canonical values fixed points.
fn settled_url(value: &str) -> Result<url::Url, NormalizeError> {
    let mut url = uri::url(value)?;
    for _ in 0..3 {
        match refang(url.as_str()) {
            Cow::Borrowed(_) => return Ok(url),
            Cow::Owned(again) => url = uri::url(&again)?,
        }
    }
    Err(NormalizeError::InvalidUrl {
        value: value.to_owned(),
        reason: "refanging does not settle".to_owned(),
    })
}

fn hash(value: &str, len: usize) -> Result<String, NormalizeError> {
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NormalizeError::NotHex {
            value: value.to_owned(),
        });
    }
    if value.len() != len {
        return Err(NormalizeError::BadHashLength {
            expected: len,
            got: value.len(),
        });
    }
    Ok(value.to_ascii_lowercase())
}

/// The type [`detect`] tries for a prepared value; see there for the order.
fn guess(value: &str) -> Option<IndicatorType> {
    // What the rules below ask of the characters, read in one pass: a lookup guesses the type
    // of every value not an IPv4 address, and a scan per question was a thirtieth of its CPU.
    let seen = Seen::of(value);
    let hash = [
        IndicatorType::Md5,
        IndicatorType::Sha1,
        IndicatorType::Sha256,
    ]
    .into_iter()
    .find(|ty| seen.all_hex && ty.hash_len() == Some(value.len()));
    if hash.is_some() {
        return hash;
    }
    let is_ip = |s: &str| s.parse::<std::net::IpAddr>().is_ok();
    let bare_v6 = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    // A dotted quad std reads never gets here: `detect` takes it first. Every IPv6 address,
    // port and scheme has a colon.
    if seen.colon && bare_v6.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some(IndicatorType::Ipv6);
    }
    if seen.slash
        && value.rsplit_once('/').is_some_and(|(addr, prefix)| {
            is_ip(addr) && !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit())
        })
    {
        return Some(IndicatorType::Cidr);
    }
    if seen.colon && has_url_scheme(value) {
        return Some(IndicatorType::Url);
    }
    let path_like = seen.slash || seen.query_or_fragment;
    if seen.at && !path_like {
        return Some(IndicatorType::Email);
    }
    if path_like || (seen.colon && has_port(value)) {
        return Some(IndicatorType::Url);
    }
    // Near misses get the error of the type they resemble rather than "unrecognized".
    if seen.all_digits_or_dots && seen.dot {
        return Some(IndicatorType::Ipv4);
    }
    if seen.colon && seen.all_hex_colons_or_dots {
        return Some(IndicatorType::Ipv6);
    }
    if seen.dot || !seen.all_ascii {
        return Some(IndicatorType::Domain);
    }
    None
}

/// Which characters a value holds, as [`guess`] asks.
struct Seen {
    all_hex: bool,
    all_digits_or_dots: bool,
    all_hex_colons_or_dots: bool,
    all_ascii: bool,
    at: bool,
    colon: bool,
    dot: bool,
    slash: bool,
    query_or_fragment: bool,
}

impl Seen {
    fn of(value: &str) -> Seen {
        let mut seen = Seen {
            all_hex: true,
            all_digits_or_dots: true,
            all_hex_colons_or_dots: true,
            all_ascii: true,
            at: false,
            colon: false,
            dot: false,
            slash: false,
            query_or_fragment: false,
        };
        for b in value.bytes() {
            let hex = b.is_ascii_hexdigit();
            seen.all_hex &= hex;
            seen.all_digits_or_dots &= b.is_ascii_digit() || b == b'.';
            seen.all_hex_colons_or_dots &= hex || b == b':' || b == b'.';
            seen.all_ascii &= b.is_ascii();
            seen.at |= b == b'@';
            seen.colon |= b == b':';
            seen.dot |= b == b'.';
            seen.slash |= b == b'/';
            seen.query_or_fragment |= b == b'?' || b == b'#';
        }
        seen
    }
}

/// `scheme://`, where the scheme is letters, digits, `+`, `-` or `.` after a letter.
fn has_url_scheme(value: &str) -> bool {
    let Some((head, _)) = value.split_once("://") else {
        return false;
    };
    let mut chars = head.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `host:port`, where the host has no colon of its own or is a bracketed IPv6 address.
fn has_port(value: &str) -> bool {
    value.rsplit_once(':').is_some_and(|(host, port)| {
        let bracketed = host.starts_with('[') && host.ends_with(']');
        !host.is_empty()
            && (!host.contains(':') || bracketed)
            && (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
    })
}
