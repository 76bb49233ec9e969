//! Domain names: lower case, punycode for IDNs, no trailing dot, DNS-sized labels.
//!
//! The rules are those of host names seen in the wild rather than of RFC 952: underscores are
//! allowed because real malicious hosts have them (`ap3rtur3_2.mooo.com`), but the top-level
//! label must be letters or an `xn--` label, so that an IP address is never a domain.

use std::borrow::Cow;

use super::NormalizeError;

const MAX_LABEL: usize = 63;
const MAX_DOMAIN: usize = 253;

pub(crate) fn domain(value: &str) -> Result<String, NormalizeError> {
    // Most names arrive canonical already: lower-case label characters and dots, no punycode.
    // For those every step below but the label checks finds nothing to do (each a scan of the
    // value; a lookup normalizes every domain it is asked).
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    let short = value.len() <= 4 * MAX_DOMAIN;
    if plain && short && !value.split('.').any(|label| label.starts_with("xn--")) {
        let name = value.strip_suffix('.').unwrap_or(value);
        check_ascii(name, value)?;
        return Ok(name.to_owned());
    }
    domain_by_every_rule(value)
}

/// [`domain`] step by step, for any value.
pub(crate) fn domain_by_every_rule(value: &str) -> Result<String, NormalizeError> {
    if let Some(err) = url_part(value) {
        return Err(err);
    }
    check_chars(value)?;
    let ascii = to_ascii(value)?;
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    check_ascii(name, value)?;
    Ok(name.to_owned())
}

/// Checks a name that is already lower-case ASCII without a trailing dot, such as the host of
/// a parsed URL. `shown` is the value to name in errors.
pub(crate) fn check_ascii(name: &str, shown: &str) -> Result<(), NormalizeError> {
    if name.is_empty() {
        return Err(NormalizeError::EmptyLabel {
            value: shown.to_owned(),
        });
    }
    if name.len() > MAX_DOMAIN {
        return Err(NormalizeError::DomainTooLong { len: name.len() });
    }
    let mut labels = 0;
    for label in name.split('.') {
        labels += 1;
        if label.is_empty() {
            return Err(NormalizeError::EmptyLabel {
                value: shown.to_owned(),
            });
        }
        if label.len() > MAX_LABEL {
            return Err(NormalizeError::LabelTooLong {
                label: label.to_owned(),
                len: label.len(),
            });
        }
        // IDNA mappings can produce characters such as '/' (from U+2100 "a/c"), so the
        // output is checked too, not only the input.
        if let Some(ch) = label.chars().find(|&c| !is_label_char(c)) {
            return Err(NormalizeError::InvalidDomainChar {
                value: shown.to_owned(),
                ch,
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NormalizeError::HyphenAtLabelEdge {
                label: label.to_owned(),
            });
        }
    }
    if labels < 2 {
        return Err(NormalizeError::SingleLabel {
            value: shown.to_owned(),
        });
    }
    let tld = name.rsplit('.').next().unwrap_or(name);
    let alphabetic = tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_lowercase());
    let punycode = tld.len() > 4 && tld.starts_with("xn--");
    if !alphabetic && !punycode {
        return Err(NormalizeError::InvalidTld {
            tld: tld.to_owned(),
        });
    }
    Ok(())
}

/// Tells why a host-type value is really a URL, an endpoint or a CIDR block, if it is.
pub(crate) fn url_part(value: &str) -> Option<NormalizeError> {
    let owned = || value.to_owned();
    if value.contains("://") {
        return Some(NormalizeError::HasScheme { value: owned() });
    }
    if let Some((addr, rest)) = value.split_once('/') {
        let prefix =
            !rest.is_empty() && rest.len() <= 3 && rest.bytes().all(|b| b.is_ascii_digit());
        if prefix && addr.parse::<std::net::IpAddr>().is_ok() {
            return Some(NormalizeError::HasPrefix { value: owned() });
        }
    }
    if value.contains(['/', '?', '#']) {
        return Some(NormalizeError::HasPath { value: owned() });
    }
    let (host, port) = value.rsplit_once(':')?;
    let bare_host = !host.is_empty() && (!host.contains(':') || host.ends_with(']'));
    let port = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    (bare_host && port).then(|| NormalizeError::HasPort { value: owned() })
}

/// Rejects characters no host name has, before IDNA gets to map them into something else.
///
/// Other non-ASCII characters are IDNA's to judge. It follows UTS 46, as browsers and the
/// `url` crate do, so a domain and the host of a URL are accepted alike; that includes
/// symbols IDNA2008 registries refuse (`support¬forum.org`, `⚡.coinigy.com`), which still
/// occur in subdomains attackers control.
fn check_chars(value: &str) -> Result<(), NormalizeError> {
    let bad = value.chars().find(|&c| {
        if c.is_ascii() {
            !(is_label_char(c) || c.is_ascii_uppercase() || c == '.')
        } else {
            is_invisible(c)
        }
    });
    match bad {
        Some(ch) => Err(NormalizeError::InvalidDomainChar {
            value: value.to_owned(),
            ch,
        }),
        None => Ok(()),
    }
}

/// Lower-cases, and converts Unicode labels to punycode.
///
/// Plain ASCII names skip IDNA: for them it would only lower-case. Names with an `xn--` label
/// go through it so that a malformed punycode label is caught.
fn to_ascii(value: &str) -> Result<Cow<'_, str>, NormalizeError> {
    // IDNA's cost grows faster than the input: a long value or punycode label is refused
    // before it. No name of 253 ASCII characters takes more than four bytes per character,
    // and an `xn--` label is ASCII already, so neither limit refuses a name IDNA would accept.
    if value.len() > 4 * MAX_DOMAIN {
        return Err(NormalizeError::DomainTooLong { len: value.len() });
    }
    let mut has_punycode = false;
    for label in value.split('.') {
        if label
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("xn--"))
        {
            if label.len() > MAX_LABEL {
                return Err(NormalizeError::LabelTooLong {
                    label: label.to_ascii_lowercase(),
                    len: label.len(),
                });
            }
            has_punycode = true;
        }
    }
    if value.is_ascii() && !has_punycode {
        return Ok(if value.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(value.to_ascii_lowercase())
        } else {
            Cow::Borrowed(value)
        });
    }
    idna::domain_to_ascii(value)
        .map(Cow::Owned)
        .map_err(|_| NormalizeError::InvalidIdn {
            value: value.to_owned(),
        })
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// Characters that do not show: spaces, controls, soft hyphens, zero-width spaces. IDNA would
/// turn some into ASCII spaces and silently drop others; in an indicator they are copy
/// artifacts, better reported than merged with the name they hide in.
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c, '\u{ad}' | '\u{200b}' | '\u{2060}' | '\u{feff}')
}
