//! IP addresses and CIDR blocks.
//!
//! Parsing is std's, which is strict on purpose: a dotted quad only, no leading zeros (is
//! `010` octal or decimal?), no shorthand such as `127.1`. The canonical text is std's
//! `Display`, which for IPv6 is RFC 5952's lower-case compressed form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::domain::url_part;
use super::NormalizeError;

pub(crate) fn ipv4(value: &str) -> Result<String, NormalizeError> {
    match value.parse::<Ipv4Addr>() {
        // std takes only the dotted quad `Display` writes (four decimal octets, no leading
        // zero, sign or space), so what it accepts is already canonical: copied, not written
        // again (a tenth of a lookup's normalization went to `Display`).
        Ok(_) => Ok(value.to_owned()),
        Err(_) => Err(
            url_part(value).unwrap_or_else(|| NormalizeError::InvalidIpv4 {
                value: value.to_owned(),
            }),
        ),
    }
}

/// Also takes the bracketed form of URLs, `[2001:db8::1]`.
pub(crate) fn ipv6(value: &str) -> Result<String, NormalizeError> {
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    match bare.parse::<Ipv6Addr>() {
        Ok(addr) => Ok(text_with_room(addr, IPV6_TEXT)),
        Err(_) => Err(
            url_part(value).unwrap_or_else(|| NormalizeError::InvalidIpv6 {
                value: value.to_owned(),
            }),
        ),
    }
}

/// `addr/prefix`, canonically the network address (host bits cleared) and the prefix, so
/// `124.171.71.9/24` and `124.171.71.0/24` are one block.
///
/// A bare address is rejected rather than read as a /32 or /128: which one was meant is the
/// sender's call, and the ipv4/ipv6 types exist for single addresses.
pub(crate) fn cidr(value: &str) -> Result<String, NormalizeError> {
    let Some((addr, prefix)) = value.rsplit_once('/') else {
        return Err(NormalizeError::MissingPrefix {
            value: value.to_owned(),
        });
    };
    let invalid = |reason| NormalizeError::InvalidCidr {
        value: value.to_owned(),
        reason,
    };
    // At most three digits: no prefix is longer than 128, and this keeps the parse in range.
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("the prefix is not a decimal number"));
    }
    let prefix: u32 = prefix
        .parse()
        .map_err(|_| invalid("the prefix is not a decimal number"))?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| invalid("the address is not an IPv4 or IPv6 address"))?;
    let network = match addr {
        IpAddr::V4(v4) => {
            check_prefix(prefix, 32)?;
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            check_prefix(prefix, 128)?;
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    };
    Ok(text_with_room(
        format_args!("{network}/{prefix}"),
        IPV6_TEXT + 4,
    ))
}

fn check_prefix(prefix: u32, max: u8) -> Result<(), NormalizeError> {
    if prefix > u32::from(max) {
        return Err(NormalizeError::PrefixTooLong { prefix, max });
    }
    Ok(())
}

/// The longest text of an IPv6 address (eight groups of four digits and seven colons).
pub(crate) const IPV6_TEXT: usize = 39;

/// `value` as `Display` writes it, into a string with room for `room` bytes: an address is
/// written piece by piece, and `to_string` or `format!` grew their string by doubling on the
/// way (reallocations were half a percent of a lookup of mixed values).
pub(crate) fn text_with_room(value: impl std::fmt::Display, room: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(room);
    // Writing into a string fails only if `value`'s `Display` does, which an address's never does.
    let _ = write!(out, "{value}");
    out
}
