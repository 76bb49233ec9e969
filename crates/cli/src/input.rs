//! Turning command-line input into checked values: indicator lists from arguments and files,
//! indicator types, TLP levels, org ids and times. Everything wrong becomes a usage error.

use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use intelmesh_core::indicator::{detect, normalize, Indicator, IndicatorType};
use intelmesh_core::{OrgId, Tlp};
use intelmesh_interop::lists::strip_comment;

use crate::usage;

/// One raw value and where it came from, for error messages.
#[derive(Clone, Debug)]
pub struct RawValue {
    pub value: String,
    pub origin: String,
}

/// Values from positional arguments, then from `file` (`-` is stdin): one per line, blank
/// lines and `#` comments skipped. A `#` starts a comment at the start of a line or after
/// whitespace, so URL fragments (`http://x/#a`) survive.
pub fn read_values(args: &[String], file: Option<&Path>) -> anyhow::Result<Vec<RawValue>> {
    let mut out: Vec<RawValue> = args
        .iter()
        .enumerate()
        .map(|(i, v)| RawValue {
            value: v.clone(),
            origin: format!("argument {}", i + 1),
        })
        .collect();
    if let Some(path) = file {
        let text = if path == Path::new("-") {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| usage(format!("--file -: reading stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("--file {}: {e}", path.display())))?
        };
        for (i, line) in text.lines().enumerate() {
            let value = strip_comment(line).trim();
            if !value.is_empty() {
                out.push(RawValue {
                    value: value.to_string(),
                    origin: format!("{}:{}", path.display(), i + 1),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(usage(
            "no values: give them as arguments or with --file FILE (one per line)",
        ));
    }
    Ok(out)
}

/// A value checked locally, with the type it will be submitted under.
#[derive(Clone, Debug)]
pub struct Checked {
    pub raw: RawValue,
    pub indicator: Indicator,
}

/// Normalizes each value under `ty`, or detects its type. Invalid values are an error naming
/// the first few, unless `skip_invalid`, when they are dropped and returned as messages.
/// Values that normalize to one indicator are kept once.
pub fn check_values(
    values: Vec<RawValue>,
    ty: Option<IndicatorType>,
    skip_invalid: bool,
) -> anyhow::Result<(Vec<Checked>, Vec<String>)> {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for raw in values {
        let result = match ty {
            Some(ty) => normalize(ty, &raw.value),
            None => detect(&raw.value),
        };
        match result {
            Ok(indicator) => {
                if seen.insert(indicator.clone()) {
                    ok.push(Checked { raw, indicator });
                }
            }
            Err(e) => bad.push(format!("{}: {:?}: {e}", raw.origin, raw.value)),
        }
    }
    if !bad.is_empty() && !skip_invalid {
        let shown: Vec<&str> = bad.iter().take(3).map(String::as_str).collect();
        return Err(usage(format!(
            "{} value(s) are not valid indicators{}: {}{}; fix them or pass --skip-invalid",
            bad.len(),
            ty.map(|t| format!(" of type {t}")).unwrap_or_default(),
            shown.join("; "),
            if bad.len() > shown.len() { "; …" } else { "" }
        )));
    }
    if ok.is_empty() {
        return Err(usage("no valid values to send"));
    }
    Ok((ok, bad))
}

/// For clap: an indicator type name (`domain`, `ipv4`, `sha256`, `domain-name`, …).
pub fn parse_type(s: &str) -> Result<IndicatorType, String> {
    IndicatorType::from_str(s).map_err(|_| {
        let names: Vec<&str> = IndicatorType::ALL.iter().map(|t| t.as_str()).collect();
        format!(
            "unknown indicator type {s:?}; use one of {}",
            names.join(", ")
        )
    })
}

/// For clap: a TLP level (`clear`, `green`, `amber`, `amber+strict`, `red`, `TLP:AMBER`).
pub fn parse_tlp(s: &str) -> Result<Tlp, String> {
    Tlp::parse(s).ok_or_else(|| {
        format!("unknown TLP level {s:?}; use clear, green, amber, amber+strict or red")
    })
}

/// For clap: an org id.
pub fn parse_org(s: &str) -> Result<OrgId, String> {
    OrgId::parse(s).map_err(|e| e.to_string())
}

/// For clap: a point in time, as Unix milliseconds or an age such as `90s`, `15m`, `12h`, `7d`.
pub fn parse_since(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected Unix milliseconds or an age like 15m, 12h, 7d"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use s, m, h or d")),
    };
    Ok(intelmesh_core::now_unix_ms().saturating_sub(n.saturating_mul(unit_ms)))
}

/// For clap: a point in time, as RFC 3339 (`2026-03-01T12:00:00Z`) or Unix milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    intelmesh_interop::parse_timestamp(s)
        .map_err(|e| format!("{e}; give RFC 3339 (2026-03-01T12:00:00Z) or Unix milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_skip_blanks_and_comments_and_name_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("iocs.txt");
        std::fs::write(
            &path,
            "# list\n\nevil[.]example\n1.2.3.4 # scanner\nnot a value\n",
        )
        .unwrap();
        let values = read_values(&[], Some(&path)).unwrap();
        let texts: Vec<&str> = values.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(texts, ["evil[.]example", "1.2.3.4", "not a value"]);
        let err = check_values(values.clone(), None, false).unwrap_err();
        assert!(err.to_string().contains("iocs.txt:5"), "{err}");
        let (ok, bad) = check_values(values, None, true).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].indicator.value(), "evil.example");
        assert_eq!(bad.len(), 1);
    }

    #[test]
    fn ages_and_types_parse() {
        let now = intelmesh_core::now_unix_ms();
        let t = parse_since("2h").unwrap();
        assert!((now - 7_200_000 - 1_000..=now - 7_200_000 + 1_000).contains(&t));
        assert_eq!(parse_since("1700000000000").unwrap(), 1_700_000_000_000);
        assert!(parse_since("2w").is_err());
        assert_eq!(parse_type("SHA-256").unwrap(), IndicatorType::Sha256);
        assert!(parse_type("hash").unwrap_err().contains("sha256"));
        assert_eq!(parse_tlp("amber+strict").unwrap(), Tlp::AmberStrict);
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
