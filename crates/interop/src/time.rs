//! RFC 3339 timestamps as STIX and MISP write them, to and from Unix milliseconds.
//!
//! Only the subset the formats use: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. No calendar
//! crate is in the workspace, and the civil-date arithmetic is a few lines (Howard Hinnant's
//! `days_from_civil`), so it lives here.

use thiserror::Error;

/// Why a timestamp text is not one this crate reads.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("timestamp {value:?} is not YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM): {reason}")]
    Malformed { value: String, reason: &'static str },
    #[error("timestamp {value:?} is out of range: {reason}")]
    OutOfRange { value: String, reason: &'static str },
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp; sub-millisecond digits are
/// dropped, not rounded, so a re-export never moves a time forward.
pub fn parse_timestamp(value: &str) -> Result<i64, TimestampError> {
    parse_timestamp_micros(value).map(|us| us.div_euclid(1000))
}

/// Microseconds since the Unix epoch of an RFC 3339 timestamp; digits past the microsecond are
/// dropped, not rounded.
pub fn parse_timestamp_micros(value: &str) -> Result<i64, TimestampError> {
    let malformed = |reason| TimestampError::Malformed {
        value: value.chars().take(64).collect(),
        reason,
    };
    let range = |reason| TimestampError::OutOfRange {
        value: value.chars().take(64).collect(),
        reason,
    };
    let b = value.trim().as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return Err(malformed("wrong length"));
    }
    let num = |from: usize, len: usize| -> Result<i64, TimestampError> {
        let digits = b
            .get(from..from + len)
            .ok_or_else(|| malformed("cut short"))?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(malformed("a digit was expected"));
        }
        Ok(digits
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let sep = |at: usize, want: &[u8]| -> Result<(), TimestampError> {
        match b.get(at) {
            Some(c) if want.contains(c) => Ok(()),
            _ => Err(malformed("a separator is missing")),
        }
    };
    let year = num(0, 4)?;
    sep(4, b"-")?;
    let month = num(5, 2)?;
    sep(7, b"-")?;
    let day = num(8, 2)?;
    sep(10, b"Tt ")?;
    let hour = num(11, 2)?;
    sep(13, b":")?;
    let minute = num(14, 2)?;
    sep(16, b":")?;
    let second = num(17, 2)?;
    let mut at = 19;
    let mut micros = 0i64;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 6 {
                micros = micros * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return Err(malformed("no digits after the decimal point"));
        }
        for _ in (at - start)..6 {
            micros *= 10;
        }
    }
    let offset_min = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&c @ (b'+' | b'-')) if at + 6 == b.len() => {
            sep(at + 3, b":")?;
            let (h, m) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if h > 23 || m > 59 {
                return Err(range("the UTC offset"));
            }
            let off = h * 60 + m;
            if c == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return Err(malformed("the zone must be Z or ±HH:MM")),
    };
    if !(1..=12).contains(&month) {
        return Err(range("the month"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(range("the day"));
    }
    // 60 is a leap second; it is read as the next second's start.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(range("the time of day"));
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1_000_000 + micros)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form STIX 2.1 recommends, for milliseconds since the
/// epoch. Years outside 0..=9999 are clamped because RFC 3339 has no room for them.
pub fn format_timestamp(unix_ms: i64) -> String {
    const MIN: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
    const MAX: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
    let ms = unix_ms.clamp(MIN, MAX);
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` for microseconds since the epoch, clamped as
/// [`format_timestamp`]: for times that must keep their order below a millisecond (TAXII's
/// `date_added`).
pub fn format_timestamp_micros(unix_us: i64) -> String {
    let us = unix_us.clamp(-62_167_219_200_000_000, 253_402_300_799_999_999);
    let ms = format_timestamp(us.div_euclid(1000));
    // The millisecond form ends in `.mmmZ`: the microseconds go before the `Z`.
    format!("{}{:03}Z", ms.trim_end_matches('Z'), us.rem_euclid(1000))
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_stix_and_misp_write() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_timestamp("2016-05-12T08:17:27.000Z"),
            Ok(1_463_041_047_000)
        );
        assert_eq!(
            parse_timestamp("2016-05-12T08:17:27.123456Z"),
            Ok(1_463_041_047_123)
        );
        assert_eq!(
            parse_timestamp("2016-05-12T10:17:27.5+02:00"),
            Ok(1_463_041_047_500)
        );
        assert_eq!(parse_timestamp("2000-02-29T00:00:00Z"), Ok(951_782_400_000));
    }

    #[test]
    fn refuses_what_is_not_rfc_3339() {
        for bad in [
            "",
            "2016-05-12",
            "2016-05-12T08:17:27",
            "2016-13-12T08:17:27Z",
            "2015-02-29T08:17:27Z",
            "2016-05-12T24:17:27Z",
            "2016-05-12T08:17:27.Z",
            "2016-05-12T08:17:27+0200",
            "２016-05-12T08:17:27Z",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn format_and_parse_are_inverse() {
        for ms in [
            0,
            1,
            999,
            1_463_041_047_123,
            951_782_400_000,
            -86_400_001,
            253_402_300_799_999,
        ] {
            let text = format_timestamp(ms);
            assert_eq!(parse_timestamp(&text), Ok(ms), "{text}");
        }
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn microseconds_keep_their_order_and_round_trip() {
        for us in [0, 1, 999_999, 1_463_041_047_123_456, -1, -86_400_000_001] {
            let text = format_timestamp_micros(us);
            assert_eq!(parse_timestamp_micros(&text), Ok(us), "{text}");
        }
        assert_eq!(
            format_timestamp_micros(1_463_041_047_123_456),
            "2016-05-12T08:17:27.123456Z"
        );
        assert_eq!(
            parse_timestamp_micros("2016-05-12T08:17:27.1234567891Z"),
            Ok(1_463_041_047_123_456)
        );
        assert_eq!(
            parse_timestamp("2016-05-12T08:17:27.123999Z"),
            Ok(1_463_041_047_123)
        );
    }
}
