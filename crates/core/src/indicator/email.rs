//! Email addresses: `local@domain`, both parts lower-cased.
//!
//! RFC 5321 lets the local part be case-sensitive, but no large provider treats it so, and a
//! sender who writes `01Flip@proton.me` and one who writes `01flip@proton.me` mean the same
//! mailbox; one key for both matters more than a distinction nobody makes. Provider-specific
//! rewrites (Gmail's dots, `+tags`) are not applied: they are not true of every domain.

use super::{domain, NormalizeError};

/// RFC 5321's limit on the local part.
const MAX_LOCAL: usize = 64;

pub(crate) fn email(value: &str) -> Result<String, NormalizeError> {
    let invalid = |reason| NormalizeError::InvalidEmail {
        value: value.to_owned(),
        reason,
    };
    let bare = strip_wrapping(value);
    let Some((local, host)) = bare.rsplit_once('@') else {
        return Err(invalid("there is no @"));
    };
    if local.contains('@') {
        return Err(invalid("there is more than one @"));
    }
    if local.is_empty() {
        return Err(invalid("the local part is empty"));
    }
    if local.len() > MAX_LOCAL {
        return Err(invalid("the local part is over 64 bytes"));
    }
    // Quoted local parts and SMTPUTF8 addresses are legal but rare in threat data, and would
    // need their own case rules; plain dot-atoms cover what the corpus holds.
    if !local.bytes().all(is_atext_or_dot) {
        return Err(invalid("the local part has a character that needs quoting"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(invalid(
            "the local part has a leading, trailing or doubled dot",
        ));
    }
    let host = domain::domain(host)?;
    Ok(format!("{}@{host}", local.to_ascii_lowercase()))
}

/// Removes a `mailto:` prefix and `<…>` around the address, as in mail headers.
fn strip_wrapping(value: &str) -> &str {
    let value = value
        .get(..7)
        .filter(|prefix| prefix.eq_ignore_ascii_case("mailto:"))
        .map_or(value, |_| &value[7..]);
    value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(value)
}

/// RFC 5322 `atext`, plus the dot that separates atoms.
fn is_atext_or_dot(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b)
}
