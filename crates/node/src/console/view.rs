//! The console's view model: the federation as the page shows it, built by plain functions
//! from the Admin service's health rows, the node's status and the roster. Display texts are
//! made here once, for the server-rendered HTML and for the JSON the live script reads.

use intelmesh_proto::v1 as pb;
use serde::Serialize;

const DAY_MS: i64 = 86_400_000;

/// The federation at a glance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Federation {
    /// This hub's org id.
    pub hub: String,
    pub roster_version: u64,
    pub generated_at_unix_ms: i64,
    pub members: Vec<MemberRow>,
    pub alerts: Vec<Alert>,
}

/// One member's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberRow {
    pub org: String,
    pub display_name: String,
    /// `hub` or `agency`.
    pub role: &'static str,
    /// `active`, `suspended` or `removed`.
    pub status: &'static str,
    /// `self` (this hub), `up` or `down`.
    pub link: &'static str,
    pub last_seen_unix_ms: i64,
    pub lag: u64,
    /// The roster version it last announced.
    pub roster_version: u64,
    /// Whole days until its latest certificate ends (negative: ended); none recorded: `None`.
    pub cert_days_left: Option<i64>,
    pub forked: bool,
    pub held_entries: u64,
    pub entries_24h: u64,
    pub stale: bool,
    /// The cells of its table row, in column order.
    pub cells: Vec<Cell>,
}

/// One table cell: its column, its text, and a class that colours it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub field: &'static str,
    pub text: String,
    /// `ok`, `warn`, `bad` or empty.
    pub class: &'static str,
}

/// Something an operator should look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `fork`, `stale`, `conflict`, `certificate` or `roster`.
    pub kind: &'static str,
    pub text: String,
}

/// The table's columns, in order, with their headings.
pub const COLUMNS: [(&str, &str); 11] = [
    ("org", "Member"),
    ("role", "Role"),
    ("status", "Status"),
    ("link", "Link"),
    ("last_seen", "Last seen"),
    ("lag", "Lag (entries)"),
    ("roster_version", "Roster version"),
    ("cert", "Certificate"),
    ("forked", "Forked"),
    ("held", "Held"),
    ("entries_24h", "Entries 24 h"),
];

/// What the rows are made from: the Admin service's `FederationStatus`, the node's own
/// status (for alerts), the roster's members (names and roles) and its policy's warning
/// window for certificates.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub hub: &'a str,
    pub health: &'a pb::FederationStatusResponse,
    pub status: &'a pb::StatusResponse,
    pub members: &'a [pb::Member],
    pub cert_warn_days: u64,
}

/// The view of `sources` at `now_unix_ms`.
pub fn federation(sources: &Sources<'_>, now_unix_ms: i64) -> Federation {
    let Sources {
        hub,
        health,
        status,
        members,
        cert_warn_days,
    } = *sources;
    let rows = health
        .members
        .iter()
        .map(|h| {
            let member = members.iter().find(|m| m.org == h.org);
            member_row(hub, h, member, cert_warn_days, now_unix_ms)
        })
        .collect();
    Federation {
        hub: hub.to_string(),
        roster_version: health.roster_version,
        generated_at_unix_ms: now_unix_ms,
        members: rows,
        alerts: alerts(status, now_unix_ms),
    }
}

fn member_row(
    hub: &str,
    h: &pb::MemberHealth,
    member: Option<&pb::Member>,
    cert_warn_days: u64,
    now_unix_ms: i64,
) -> MemberRow {
    let role = match member.map(|m| m.role()) {
        Some(pb::MemberRole::Hub) => "hub",
        _ => "agency",
    };
    let status = match h.status() {
        pb::MemberStatus::Suspended => "suspended",
        pb::MemberStatus::Removed => "removed",
        _ => "active",
    };
    let link = if h.org == hub {
        "self"
    } else if h.connected {
        "up"
    } else {
        "down"
    };
    let cert_days_left = (h.cert_not_after_unix_ms > 0)
        .then(|| (h.cert_not_after_unix_ms - now_unix_ms).div_euclid(DAY_MS));
    let mut row = MemberRow {
        org: h.org.clone(),
        display_name: member.map(|m| m.display_name.clone()).unwrap_or_default(),
        role,
        status,
        link,
        last_seen_unix_ms: h.last_seen_unix_ms,
        lag: h.lag,
        roster_version: h.roster_version,
        cert_days_left,
        forked: h.forked,
        held_entries: h.held_entries,
        entries_24h: h.entries_24h,
        stale: h.stale,
        cells: Vec::new(),
    };
    row.cells = cells(&row, cert_warn_days, now_unix_ms);
    row
}

/// The row's cells, in [`COLUMNS`] order.
fn cells(r: &MemberRow, cert_warn_days: u64, now_unix_ms: i64) -> Vec<Cell> {
    let warn_days = i64::try_from(cert_warn_days).unwrap_or(i64::MAX);
    let cell = |field, text: String, class| Cell { field, text, class };
    let status_class = match r.status {
        "active" => "ok",
        "suspended" => "warn",
        _ => "bad",
    };
    // A suspended or removed member is expected to be unlinked.
    let link_class = match (r.link, r.status) {
        ("down", "active") => "bad",
        ("down", _) => "",
        _ => "ok",
    };
    let last_seen = match (r.link, r.last_seen_unix_ms) {
        ("self", _) => "this hub".to_string(),
        (_, 0) => "never".to_string(),
        (_, t) => format!("{} ago", age(now_unix_ms.saturating_sub(t))),
    };
    let (cert, cert_class) = match r.cert_days_left {
        None => ("none recorded".to_string(), ""),
        Some(d) if d < 0 => (format!("ended {} d ago", -d), "bad"),
        Some(d) if d < warn_days => (format!("{d} d left"), "warn"),
        Some(d) => (format!("{d} d left"), "ok"),
    };
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    vec![
        cell("org", r.org.clone(), ""),
        cell("role", r.role.to_string(), ""),
        cell("status", r.status.to_string(), status_class),
        cell("link", r.link.to_string(), link_class),
        cell("last_seen", last_seen, if r.stale { "warn" } else { "" }),
        cell(
            "lag",
            r.lag.to_string(),
            if r.lag > 0 { "warn" } else { "" },
        ),
        cell("roster_version", r.roster_version.to_string(), ""),
        cell("cert", cert, cert_class),
        cell(
            "forked",
            yes_no(r.forked),
            if r.forked { "bad" } else { "" },
        ),
        cell(
            "held",
            r.held_entries.to_string(),
            if r.held_entries > 0 { "warn" } else { "" },
        ),
        cell("entries_24h", r.entries_24h.to_string(), ""),
    ]
}

/// A duration in its largest whole unit: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min", s / 60),
        3_600..86_400 => format!("{} h", s / 3_600),
        _ => format!("{} d", s / 86_400),
    }
}

/// What the node's status says needs an operator: forks, members gone silent, roster
/// conflicts, a roster version refused, certificates near or past their end.
pub fn alerts(status: &pb::StatusResponse, now_unix_ms: i64) -> Vec<Alert> {
    let mut out = Vec::new();
    for org in &status.flagged_origins {
        out.push(Alert {
            kind: "fork",
            text: format!("{org} signed two different entries at one seq (fork flagged)"),
        });
    }
    for org in &status.stale_members {
        out.push(Alert {
            kind: "stale",
            text: format!("{org} sent no roster checkpoint for several periods"),
        });
    }
    for c in &status.roster_conflicts {
        out.push(Alert {
            kind: "conflict",
            text: format!(
                "{} checkpointed another roster at version {} (ours {}…, theirs {}…)",
                c.member,
                c.version,
                c.ours.get(..12).unwrap_or(&c.ours),
                c.theirs.get(..12).unwrap_or(&c.theirs)
            ),
        });
    }
    if !status.roster_refused.is_empty() {
        out.push(Alert {
            kind: "roster",
            text: format!("roster refused: {}", status.roster_refused),
        });
    }
    for w in &status.certificate_warnings {
        out.push(Alert {
            kind: "certificate",
            text: crate::cert_watch::warning_text(w, now_unix_ms),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn health(org: &str, status: pb::MemberStatus, connected: bool) -> pb::MemberHealth {
        pb::MemberHealth {
            org: org.into(),
            status: status as i32,
            connected,
            last_seen_unix_ms: NOW - 5_000,
            roster_version: 3,
            cert_not_after_unix_ms: NOW + 10 * DAY_MS + 1,
            ..Default::default()
        }
    }

    fn text<'a>(row: &'a MemberRow, field: &str) -> &'a str {
        &row.cells.iter().find(|c| c.field == field).unwrap().text
    }

    #[test]
    fn rows_say_status_link_and_expiry_in_words() {
        let fed = pb::FederationStatusResponse {
            roster_version: 3,
            members: vec![
                health("HUB", pb::MemberStatus::Active, true),
                pb::MemberHealth {
                    lag: 4,
                    forked: true,
                    ..health("AU-AFP", pb::MemberStatus::Active, false)
                },
                pb::MemberHealth {
                    cert_not_after_unix_ms: 0,
                    last_seen_unix_ms: 0,
                    ..health("SG-IGCI", pb::MemberStatus::Suspended, false)
                },
            ],
        };
        let members = vec![pb::Member {
            org: "HUB".into(),
            role: pb::MemberRole::Hub as i32,
            display_name: "The hub".into(),
            ..Default::default()
        }];
        let sources = Sources {
            hub: "HUB",
            health: &fed,
            status: &pb::StatusResponse::default(),
            members: &members,
            cert_warn_days: 30,
        };
        let view = federation(&sources, NOW);
        assert_eq!(view.roster_version, 3);
        let [hub, au, sg] = &view.members[..] else {
            panic!("three rows: {view:?}");
        };
        assert_eq!((hub.role, hub.status, hub.link), ("hub", "active", "self"));
        assert_eq!(hub.display_name, "The hub");
        assert_eq!(text(hub, "last_seen"), "this hub");
        assert_eq!(text(hub, "cert"), "10 d left");
        assert_eq!(hub.cells[7].class, "warn");
        let relaxed = federation(
            &Sources {
                cert_warn_days: 5,
                ..sources
            },
            NOW,
        );
        assert_eq!(relaxed.members[0].cells[7].class, "ok");
        assert_eq!((au.role, au.status, au.link), ("agency", "active", "down"));
        assert_eq!(text(au, "last_seen"), "5 s ago");
        assert_eq!(text(au, "forked"), "yes");
        assert_eq!(text(au, "lag"), "4");
        assert_eq!(
            au.cells.iter().find(|c| c.field == "link").unwrap().class,
            "bad"
        );
        assert_eq!((sg.status, sg.link), ("suspended", "down"));
        assert_eq!(sg.cert_days_left, None);
        assert_eq!(text(sg, "last_seen"), "never");
        assert_eq!(text(sg, "cert"), "none recorded");
        // A suspended member's link is expected down: not coloured as a fault.
        assert_eq!(
            sg.cells.iter().find(|c| c.field == "link").unwrap().class,
            ""
        );
        assert_eq!(hub.cells.len(), COLUMNS.len());
        for (cell, (field, _)) in hub.cells.iter().zip(COLUMNS) {
            assert_eq!(cell.field, field);
        }
    }

    #[test]
    fn alerts_name_forks_silence_conflicts_and_certificates() {
        let status = pb::StatusResponse {
            flagged_origins: vec!["AU-AFP".into()],
            stale_members: vec!["SG-IGCI".into()],
            roster_conflicts: vec![pb::RosterConflict {
                member: "NZ-POL".into(),
                version: 4,
                ours: "aa".repeat(32),
                theirs: "bb".repeat(32),
                ..Default::default()
            }],
            certificate_warnings: vec![pb::CertificateWarning {
                subject: "AU-AFP".into(),
                file_or_serial: "0a".into(),
                not_after_unix_ms: NOW + 3 * DAY_MS,
                expired: false,
                member: true,
            }],
            ..Default::default()
        };
        let kinds: Vec<_> = alerts(&status, NOW)
            .into_iter()
            .map(|a| (a.kind, a.text))
            .collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(kinds[0].0, "fork");
        assert!(kinds[0].1.contains("AU-AFP"));
        assert_eq!(kinds[1].0, "stale");
        assert_eq!(kinds[2].0, "conflict");
        assert!(
            kinds[2].1.contains("version 4 (ours aaaaaaaaaaaa…"),
            "{}",
            kinds[2].1
        );
        assert_eq!(kinds[3].0, "certificate");
        assert!(
            kinds[3].1.contains("member AU-AFP certificate 0a"),
            "{}",
            kinds[3].1
        );
    }

    #[test]
    fn ages_use_their_largest_unit() {
        assert_eq!(age(-5), "0 s");
        assert_eq!(age(59_999), "59 s");
        assert_eq!(age(60_000), "1 min");
        assert_eq!(age(7_200_000), "2 h");
        assert_eq!(age(3 * DAY_MS), "3 d");
    }
}
