//! Certificate expiry warnings: which of this node's own certificates (read once at start) and
//! which other active members' latest certificates recorded in the roster expire within the
//! warning window, for status and for the WARN lines logged at start, every hour and when a
//! roster version changes them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use intelmesh_proto::v1 as pb;
use intelmesh_roster::{MemberStatus, Policy};

use crate::cert_facts::{cert_facts_pem, utc_text};
use crate::config::NodeConfig;
use crate::state::NodeState;

const DAY_MS: i64 = 86_400_000;

/// The warning window in static mode, where no roster policy sets one.
pub const STATIC_WARN_DAYS: u64 = Policy::DEFAULT_CERT_WARN_DAYS;

/// How often the warnings in force are logged again, changed or not.
pub const LOG_EVERY: Duration = Duration::from_secs(3600);

pub const OWN_FEDERATION: &str = "own federation certificate";
pub const OWN_API: &str = "own API certificate";

/// One of this node's own certificates: which, its file, and its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnCert {
    pub subject: &'static str,
    pub file: PathBuf,
    pub not_after_unix_ms: i64,
}

/// This node's own certificates as read when it started (status is asked for every few
/// milliseconds by some callers: the files are not read again for it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnCerts(pub Vec<OwnCert>);

impl OwnCerts {
    /// Reads the federation and API listener certificates `cfg` names. One that cannot be read
    /// is logged and left out (`start` has refused a node whose certificates do not load).
    pub fn read(cfg: &NodeConfig) -> OwnCerts {
        let read = |subject: &'static str, file: &Path| {
            let facts = std::fs::read_to_string(file)
                .map_err(anyhow::Error::from)
                .and_then(|pem| cert_facts_pem(&pem));
            match facts {
                Ok(f) => Some(OwnCert {
                    subject,
                    file: file.to_path_buf(),
                    not_after_unix_ms: f.not_after_unix_ms,
                }),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read the {subject} to watch its expiry");
                    None
                }
            }
        };
        OwnCerts(
            [
                read(OWN_FEDERATION, &cfg.federation.cert),
                read(OWN_API, &cfg.api.cert),
            ]
            .into_iter()
            .flatten()
            .collect(),
        )
    }
}

/// What the warnings are computed from.
pub struct Facts<'a> {
    /// This node's org: its own entry in the roster is left out (its own files say more).
    pub own_org: &'a str,
    pub own: &'a [OwnCert],
    /// The roster's members (none in static mode).
    pub members: &'a [pb::Member],
    /// Revoked serials, in the roster's form: a revoked certificate warns of nothing.
    pub revoked: &'a BTreeSet<String>,
    pub warn_days: u64,
}

/// One certificate's end: own certificates by file, members' by the serial the roster records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertEnd {
    pub subject: String,
    pub file_or_serial: String,
    pub not_after_unix_ms: i64,
    pub member: bool,
}

/// Every certificate watched: own certificates first, then, in roster order, each other
/// active member's latest recorded certificate (the one ending last among those not revoked).
pub fn ends(facts: &Facts<'_>) -> Vec<CertEnd> {
    let own = facts.own.iter().map(|c| CertEnd {
        subject: c.subject.to_string(),
        file_or_serial: c.file.display().to_string(),
        not_after_unix_ms: c.not_after_unix_ms,
        member: false,
    });
    let members = facts
        .members
        .iter()
        .filter(|m| {
            m.org != facts.own_org
                && MemberStatus::from_proto(m.status) == Some(MemberStatus::Active)
        })
        .filter_map(|m| {
            let latest = m
                .certificates
                .iter()
                .filter(|c| !facts.revoked.contains(&c.serial))
                .max_by_key(|c| c.not_after_unix_ms)?;
            Some(CertEnd {
                subject: m.org.clone(),
                file_or_serial: latest.serial.clone(),
                not_after_unix_ms: latest.not_after_unix_ms,
                member: true,
            })
        });
    own.chain(members).collect()
}

/// The certificates of [`ends`] that end less than `warn_days` after `now_unix_ms` (or have
/// ended).
pub fn warnings(facts: &Facts<'_>, now_unix_ms: i64) -> Vec<pb::CertificateWarning> {
    let window = i64::try_from(facts.warn_days)
        .unwrap_or(i64::MAX)
        .saturating_mul(DAY_MS);
    ends(facts)
        .into_iter()
        .filter(|e| e.not_after_unix_ms.saturating_sub(now_unix_ms) < window)
        .map(|e| pb::CertificateWarning {
            expired: e.not_after_unix_ms <= now_unix_ms,
            subject: e.subject,
            file_or_serial: e.file_or_serial,
            not_after_unix_ms: e.not_after_unix_ms,
            member: e.member,
        })
        .collect()
}

/// What `state` watches: the roster's window and members in roster mode, own certificates and
/// [`STATIC_WARN_DAYS`] in static mode.
fn with_facts<T>(state: &NodeState, f: impl FnOnce(&Facts<'_>) -> T) -> T {
    let roster = state.roster();
    let none = BTreeSet::new();
    let facts = Facts {
        own_org: state.org.as_str(),
        own: &state.own_certs.0,
        members: roster.as_ref().map_or(&[], |r| r.members()),
        revoked: roster.as_ref().map_or(&none, |r| r.revoked_serials()),
        warn_days: roster
            .as_ref()
            .map_or(STATIC_WARN_DAYS, |r| r.policy().cert_warn_days),
    };
    f(&facts)
}

/// The warnings for `state` at `now_unix_ms`.
pub fn of_state(state: &NodeState, now_unix_ms: i64) -> Vec<pb::CertificateWarning> {
    with_facts(state, |facts| warnings(facts, now_unix_ms))
}

/// For metrics: `(certificate, org, not_after_unix_ms)` of every certificate watched, the
/// certificate named `federation` or `api` (own) or `node` (a member's).
pub fn ends_of_state(state: &NodeState) -> Vec<(String, String, i64)> {
    with_facts(state, ends)
        .into_iter()
        .map(|e| {
            let (certificate, org) = match (e.member, e.subject.as_str()) {
                (true, _) => ("node", e.subject.clone()),
                (false, OWN_FEDERATION) => ("federation", state.org.to_string()),
                (false, _) => ("api", state.org.to_string()),
            };
            (certificate.to_string(), org, e.not_after_unix_ms)
        })
        .collect()
}

/// A warning in one line: `own federation certificate /etc/x.pem expires in 12 days
/// (2027-01-31 00:00:00 UTC)`, `member AU-AFP certificate 1f… EXPIRED 3 days ago (…)`.
pub fn warning_text(w: &pb::CertificateWarning, now_unix_ms: i64) -> String {
    let what = if w.member {
        format!("member {} certificate {}", w.subject, w.file_or_serial)
    } else {
        format!("{} {}", w.subject, w.file_or_serial)
    };
    let left = w.not_after_unix_ms.saturating_sub(now_unix_ms);
    let when = if w.expired || left <= 0 {
        match left.saturating_neg() / DAY_MS {
            0 => "EXPIRED".to_string(),
            1 => "EXPIRED 1 day ago".to_string(),
            d => format!("EXPIRED {d} days ago"),
        }
    } else {
        match left / DAY_MS {
            0 => "expires within a day".to_string(),
            1 => "expires in 1 day".to_string(),
            d => format!("expires in {d} days"),
        }
    };
    format!(
        "{what} {when} ({})",
        utc_text(w.not_after_unix_ms.div_euclid(1000))
    )
}

/// What makes two sets of warnings the same for the log: which certificates, and whether ended.
fn log_keys(warnings: &[pb::CertificateWarning]) -> Vec<(String, String, bool)> {
    warnings
        .iter()
        .map(|w| (w.subject.clone(), w.file_or_serial.clone(), w.expired))
        .collect()
}

/// Logs the warnings at WARN when the node starts, then every [`LOG_EVERY`], and when a roster
/// version (or the passing time, checked at the same moments) changes which certificates they
/// name; until the node stops.
pub async fn warn_periodically(state: Arc<NodeState>) {
    let mut changes = state.roster_changes();
    let mut logged: Option<Vec<(String, String, bool)>> = None;
    let mut due = true;
    loop {
        let now = intelmesh_core::now_unix_ms();
        let current = of_state(&state, now);
        let keys = log_keys(&current);
        if due || logged.as_ref() != Some(&keys) {
            for w in &current {
                tracing::warn!(
                    not_after_unix_ms = w.not_after_unix_ms,
                    "certificate: {}: renew it",
                    warning_text(w, now)
                );
            }
            if current.is_empty() && logged.as_ref().is_some_and(|l| !l.is_empty()) {
                tracing::info!("no certificate nears its expiry any more");
            }
            logged = Some(keys);
        }
        let roster_changed = async {
            match changes.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(LOG_EVERY) => due = true,
            open = roster_changed => {
                if !open {
                    changes = None;
                }
                due = false;
            }
            _ = state.stopped() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn own(subject: &'static str, file: &str, days: i64) -> OwnCert {
        OwnCert {
            subject,
            file: PathBuf::from(file),
            not_after_unix_ms: NOW + days * DAY_MS,
        }
    }

    fn member(org: &str, status: pb::MemberStatus, certs: &[(&str, i64)]) -> pb::Member {
        pb::Member {
            org: org.into(),
            status: status as i32,
            certificates: certs
                .iter()
                .map(|(serial, days)| pb::IssuedCert {
                    serial: (*serial).into(),
                    not_after_unix_ms: NOW + days * DAY_MS,
                })
                .collect(),
            ..pb::Member::default()
        }
    }

    fn subjects(w: &[pb::CertificateWarning]) -> Vec<(&str, &str, bool, bool)> {
        w.iter()
            .map(|w| {
                (
                    w.subject.as_str(),
                    w.file_or_serial.as_str(),
                    w.expired,
                    w.member,
                )
            })
            .collect()
    }

    fn run(
        own: &[OwnCert],
        members: &[pb::Member],
        revoked: &[&str],
        days: u64,
    ) -> Vec<pb::CertificateWarning> {
        let revoked = revoked.iter().map(|s| s.to_string()).collect();
        warnings(
            &Facts {
                own_org: "HUB",
                own,
                members,
                revoked: &revoked,
                warn_days: days,
            },
            NOW,
        )
    }

    #[test]
    fn own_certificates_warn_when_near_or_past_their_end_and_not_when_far() {
        let certs = [
            own(OWN_FEDERATION, "/n/federation.pem", 12),
            own(OWN_API, "/n/api.pem", 365),
        ];
        let w = run(&certs, &[], &[], 30);
        assert_eq!(
            subjects(&w),
            [(OWN_FEDERATION, "/n/federation.pem", false, false)]
        );
        assert_eq!(w[0].not_after_unix_ms, NOW + 12 * DAY_MS);
        // The window is the policy's: 10 days leaves the 12-day certificate out.
        assert!(run(&certs, &[], &[], 10).is_empty());
        let expired = [own(OWN_API, "/n/api.pem", -2), own(OWN_FEDERATION, "/f", 0)];
        assert_eq!(
            subjects(&run(&expired, &[], &[], 30)),
            [
                (OWN_API, "/n/api.pem", true, false),
                (OWN_FEDERATION, "/f", true, false)
            ],
            "a certificate ending now has expired"
        );
    }

    #[test]
    fn members_warn_by_their_latest_certificate_and_only_while_active() {
        use pb::MemberStatus::{Active, Removed, Suspended};
        let members = [
            member("AU-AFP", Active, &[("a1", 5)]),
            // Renewed: the later certificate counts, the one about to end does not.
            member("BR-PF", Active, &[("b1", 3), ("b2", 300)]),
            member("CA-RCMP", Active, &[("c2", 20), ("c1", 2)]),
            member("DE-BKA", Suspended, &[("d1", 1)]),
            member("FR-PN", Removed, &[("f1", -1)]),
            member("GB-NCA", Active, &[("g1", -3)]),
            member("JP-NPA", Active, &[]),
            // This node's own entry: its files speak for it.
            member("HUB", Active, &[("h1", 1)]),
        ];
        assert_eq!(
            subjects(&run(&[], &members, &[], 30)),
            [
                ("AU-AFP", "a1", false, true),
                ("CA-RCMP", "c2", false, true),
                ("GB-NCA", "g1", true, true),
            ]
        );
    }

    #[test]
    fn a_refused_certificate_is_not_the_latest() {
        let members = [member(
            "AU-AFP",
            pb::MemberStatus::Active,
            &[("a1", 10), ("a2", 300)],
        )];
        assert!(run(&[], &members, &[], 30).is_empty());
        assert_eq!(
            subjects(&run(&[], &members, &["a2"], 30)),
            [("AU-AFP", "a1", false, true)]
        );
        assert!(run(&[], &members, &["a1", "a2"], 30).is_empty());
    }

    #[test]
    fn warnings_read_as_one_line() {
        let w = |days: i64, expired: bool, member: bool| pb::CertificateWarning {
            subject: if member {
                "AU-AFP".into()
            } else {
                OWN_FEDERATION.into()
            },
            file_or_serial: if member {
                "1f2e".into()
            } else {
                "/n/f.pem".into()
            },
            not_after_unix_ms: NOW + days * DAY_MS,
            expired,
            member,
        };
        assert_eq!(
            warning_text(&w(12, false, false), NOW),
            "own federation certificate /n/f.pem expires in 12 days (2027-01-27 08:00:00 UTC)"
        );
        assert_eq!(
            warning_text(&w(-3, true, true), NOW),
            "member AU-AFP certificate 1f2e EXPIRED 3 days ago (2027-01-12 08:00:00 UTC)"
        );
        assert!(warning_text(&w(0, true, true), NOW).contains(" EXPIRED ("));
        let soon = pb::CertificateWarning {
            not_after_unix_ms: NOW + 3_600_000,
            ..w(0, false, false)
        };
        assert!(warning_text(&soon, NOW).contains("expires within a day"));
        // An end a roster names may be any number: read, never a panic.
        for end in [i64::MIN, i64::MAX] {
            let odd = pb::CertificateWarning {
                not_after_unix_ms: end,
                ..w(0, true, true)
            };
            assert!(warning_text(&odd, NOW).starts_with("member AU-AFP"));
        }
    }

    #[test]
    fn the_log_repeats_a_set_only_when_it_changes() {
        let a = run(&[own(OWN_API, "/a", 3)], &[], &[], 30);
        let later = warnings(
            &Facts {
                own_org: "HUB",
                own: &[own(OWN_API, "/a", 3)],
                members: &[],
                revoked: &BTreeSet::new(),
                warn_days: 30,
            },
            NOW + DAY_MS,
        );
        assert_eq!(
            log_keys(&a),
            log_keys(&later),
            "a day closer is the same set"
        );
        let ended = run(&[own(OWN_API, "/a", 0)], &[], &[], 30);
        assert_ne!(log_keys(&a), log_keys(&ended), "expiry changes it");
    }
}
