//! Which records a search shows: time range, caller, method, and values by digest.

use std::collections::BTreeSet;

use crate::record::Record;

/// A search over the trail; every field that is set must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// From this time (Unix ms), inclusive.
    pub since_ms: Option<i64>,
    /// Before this time (Unix ms), exclusive.
    pub until_ms: Option<i64>,
    /// The caller's org, and its name if given (`ORG` or `ORG/NAME`).
    pub org: Option<String>,
    pub name: Option<String>,
    /// A method (`Indicators/Lookup`) or a service (`Indicators`, `TAXII`, `Admin`).
    pub method: Option<String>,
    /// Records naming any of these digests (see [`crate::AuditKey::search_digests`]).
    pub digests: Option<BTreeSet<String>>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        self.since_ms.is_none_or(|t| r.time_ms >= t)
            && self.until_ms.is_none_or(|t| r.time_ms < t)
            && self
                .org
                .as_ref()
                .is_none_or(|o| o.eq_ignore_ascii_case(&r.org))
            && self.name.as_ref().is_none_or(|n| *n == r.name)
            && self
                .method
                .as_ref()
                .is_none_or(|m| method_matches(m, &r.method))
            && self
                .digests
                .as_ref()
                .is_none_or(|d| r.digests.iter().any(|x| d.contains(x)))
    }
}

fn method_matches(wanted: &str, method: &str) -> bool {
    method == wanted
        || method
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with(['/', ' ']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(org: &str, name: &str, method: &str, t: i64, digests: &[&str]) -> Record {
        Record {
            seq: 1,
            time_ms: t,
            org: org.into(),
            name: name.into(),
            role: "service".into(),
            method: method.into(),
            values: digests.len() as u64,
            part: 1,
            parts: 1,
            digests: digests.iter().map(|d| d.to_string()).collect(),
            code: 0,
            result: "OK".into(),
            prev: String::new(),
        }
    }

    #[test]
    fn each_field_narrows_the_search() {
        let r = record("SG-IGCI", "soc", "Indicators/Lookup", 1_000, &["aa", "bb"]);
        assert!(Filter::default().matches(&r));
        let with = |f: Filter| f.matches(&r);
        assert!(with(Filter {
            since_ms: Some(1_000),
            until_ms: Some(1_001),
            ..Default::default()
        }));
        assert!(!with(Filter {
            since_ms: Some(1_001),
            ..Default::default()
        }));
        assert!(!with(Filter {
            until_ms: Some(1_000),
            ..Default::default()
        }));
        assert!(with(Filter {
            org: Some("sg-igci".into()),
            name: Some("soc".into()),
            ..Default::default()
        }));
        assert!(!with(Filter {
            name: Some("other".into()),
            ..Default::default()
        }));
        assert!(!with(Filter {
            org: Some("SG-SPF".into()),
            ..Default::default()
        }));
        for m in ["Indicators/Lookup", "Indicators"] {
            assert!(
                with(Filter {
                    method: Some(m.into()),
                    ..Default::default()
                }),
                "{m}"
            );
        }
        for m in ["Indicators/Look", "Indic", "Admin"] {
            assert!(
                !with(Filter {
                    method: Some(m.into()),
                    ..Default::default()
                }),
                "{m}"
            );
        }
        let taxii = record("SG-IGCI", "user:reader", "TAXII GET /taxii2/", 1, &[]);
        assert!(Filter {
            method: Some("TAXII".into()),
            ..Default::default()
        }
        .matches(&taxii));
        let digests = |d: &[&str]| Filter {
            digests: Some(d.iter().map(|x| x.to_string()).collect()),
            ..Default::default()
        };
        assert!(with(digests(&["zz", "bb"])));
        assert!(!with(digests(&["zz"])));
    }
}
