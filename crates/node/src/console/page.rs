//! The console's HTML: plain functions from the view model to a page, every string from the
//! roster or the network escaped by [`escape`]. The pages are complete without script; the
//! live script (`console.js`) only refreshes the table and the alerts in place.

use std::fmt::Write;

use intelmesh_proto::v1 as pb;

use super::view::{Alert, Federation, MemberRow, COLUMNS};
use crate::cert_facts::utc_text;

/// `s` as HTML text or attribute value: `& < > " '` as character references.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return "never".into();
    }
    utc_text(unix_ms.div_euclid(1000))
}

/// The whole page around `body`: header with the roster version, alerts, navigation.
fn layout(title: &str, fed: &Federation, member: Option<&str>, body: &str) -> String {
    let mut alerts = String::new();
    alert_items(&fed.alerts, &mut alerts);
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · intelmesh hub {hub}</title>
<link rel="stylesheet" href="/console.css">
<script src="/console.js" defer></script>
</head>
<body{member}>
<header>
<h1>intelmesh hub <span id="hub">{hub}</span></h1>
<nav><a href="/">Federation</a> · <a href="/roster">Roster history</a> · <a href="/api/federation.json">JSON</a></nav>
<p>Roster version <strong id="roster-version">{version}</strong> · updated <span id="updated">{updated}</span></p>
<h2>Alerts</h2>
<ul id="alerts">{alerts}</ul>
</header>
<main>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
        hub = escape(&fed.hub),
        version = fed.roster_version,
        updated = time(fed.generated_at_unix_ms),
        // The live script refreshes this one member's row only.
        member = member
            .map(|m| format!(r#" data-member="{}""#, escape(m)))
            .unwrap_or_default(),
    )
}

fn alert_items(alerts: &[Alert], out: &mut String) {
    if alerts.is_empty() {
        out.push_str(r#"<li class="none">no alerts</li>"#);
    }
    for a in alerts {
        let _ = write!(
            out,
            r#"<li class="alert alert-{}">{}</li>"#,
            a.kind,
            escape(&a.text)
        );
    }
}

/// The table row of one member (the live script builds the same from the JSON).
fn member_tr(row: &MemberRow, out: &mut String) {
    let _ = write!(
        out,
        r#"<tr data-org="{}" data-status="{}">"#,
        escape(&row.org),
        row.status
    );
    for cell in &row.cells {
        let text = escape(&cell.text);
        let content = if cell.field == "org" {
            format!(r#"<a href="/member/{}">{text}</a>"#, escape(&row.org))
        } else {
            text
        };
        let _ = write!(
            out,
            r#"<td data-field="{}" class="{}">{content}</td>"#,
            cell.field, cell.class
        );
    }
    out.push_str("</tr>\n");
}

fn members_table(rows: &[MemberRow], out: &mut String) {
    out.push_str("<table id=\"members\">\n<thead><tr>");
    for (field, heading) in COLUMNS {
        let _ = write!(out, r#"<th data-field="{field}">{heading}</th>"#);
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        member_tr(row, out);
    }
    out.push_str("</tbody>\n</table>\n");
}

/// `GET /`: the federation at a glance.
pub fn index(fed: &Federation) -> String {
    let mut body = format!("<h2>Members ({})</h2>\n", fed.members.len());
    members_table(&fed.members, &mut body);
    layout("Federation", fed, None, &body)
}

/// `GET /member/{org}`: one member's row, its roster entry, its link and its roster history.
pub fn member(
    fed: &Federation,
    row: &MemberRow,
    roster: Option<&pb::Member>,
    peer: Option<&pb::PeerStatus>,
    events: &[pb::AuditEvent],
) -> String {
    let mut body = format!("<h2>Member {}</h2>\n", escape(&row.org));
    members_table(std::slice::from_ref(row), &mut body);
    body.push_str("<h3>Roster entry</h3>\n<dl>");
    let mut item = |term: &str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(&value));
    };
    item("Name", row.display_name.clone());
    if let Some(m) = roster {
        item("Country", m.country.clone());
        item("Node identity", m.node_identity.clone());
        item("Signing keys", m.signing_keys.len().to_string());
        item("Withdrawn", if m.withdrawn { "yes" } else { "no" }.into());
        for c in &m.certificates {
            item(
                "Certificate",
                format!("serial {} until {}", c.serial, time(c.not_after_unix_ms)),
            );
        }
    }
    item("Last seen", time(row.last_seen_unix_ms));
    if let Some(p) = peer {
        item("Address", p.address.clone());
        item("Entries sent", p.entries_sent.to_string());
        item("Entries received", p.entries_received.to_string());
        if !p.last_error.is_empty() {
            item("Last link error", p.last_error.clone());
        }
    }
    body.push_str("</dl>\n<h3>Roster changes naming it</h3>\n");
    audit_list(events, &mut body);
    layout(&format!("Member {}", row.org), fed, Some(&row.org), &body)
}

/// `GET /roster`: every roster version with who proposed and signed it.
pub fn roster(fed: &Federation, events: &[pb::AuditEvent]) -> String {
    let mut body = String::from("<h2>Roster history and admin audit</h2>\n");
    audit_list(events, &mut body);
    layout("Roster history", fed, None, &body)
}

fn audit_list(events: &[pb::AuditEvent], out: &mut String) {
    if events.is_empty() {
        out.push_str("<p>none</p>\n");
        return;
    }
    out.push_str("<ol id=\"audit\" reversed>\n");
    for e in events.iter().rev() {
        let _ = write!(
            out,
            r#"<li data-version="{}"><strong>version {}</strong> · {} · proposed by {}"#,
            e.version,
            e.version,
            time(e.issued_at_unix_ms),
            escape(&e.proposed_by)
        );
        if !e.reason.is_empty() {
            let _ = write!(out, " · reason: {}", escape(&e.reason));
        }
        out.push_str("<ul>");
        for a in &e.actions {
            let _ = write!(out, "<li>{}</li>", escape(a));
        }
        for (who, at) in e.signed_by.iter().zip(&e.signed_at_unix_ms) {
            let _ = write!(out, "<li>signed by {} at {}</li>", escape(who), time(*at));
        }
        out.push_str("</ul></li>\n");
    }
    out.push_str("</ol>\n");
}

#[cfg(test)]
mod tests {
    use super::super::view::Cell;
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("BR-PF"), "BR-PF");
        assert_eq!(escape(""), "");
    }

    fn fed(name: &str) -> Federation {
        let cells = vec![
            Cell {
                field: "org",
                text: "AU-AFP".into(),
                class: "",
            },
            Cell {
                field: "status",
                text: "suspended".into(),
                class: "warn",
            },
        ];
        Federation {
            hub: "HUB".into(),
            roster_version: 7,
            generated_at_unix_ms: 1_800_000_000_000,
            members: vec![MemberRow {
                org: "AU-AFP".into(),
                display_name: name.into(),
                role: "agency",
                status: "suspended",
                link: "down",
                last_seen_unix_ms: 0,
                lag: 0,
                roster_version: 6,
                cert_days_left: None,
                forked: false,
                held_entries: 0,
                entries_24h: 0,
                stale: false,
                cells,
            }],
            alerts: vec![Alert {
                kind: "fork",
                text: "<b>AU-AFP</b> forked".into(),
            }],
        }
    }

    #[test]
    fn the_index_lists_members_and_escapes_what_it_shows() {
        let page = index(&fed("x"));
        assert!(
            page.contains(r#"<strong id="roster-version">7</strong>"#),
            "{page}"
        );
        assert!(page.contains(r#"<tr data-org="AU-AFP" data-status="suspended">"#));
        assert!(page.contains(r#"<td data-field="status" class="warn">suspended</td>"#));
        assert!(page.contains(r#"<a href="/member/AU-AFP">AU-AFP</a>"#));
        assert!(page.contains("&lt;b&gt;AU-AFP&lt;/b&gt; forked"), "{page}");
        assert!(!page.contains("<b>"));
        assert!(page.contains(r#"<script src="/console.js" defer></script>"#));
    }

    #[test]
    fn the_member_page_escapes_roster_strings() {
        let f = fed("<img src=x onerror=alert(1)>");
        let events = vec![pb::AuditEvent {
            version: 2,
            proposed_by: "HUB/<alice>".into(),
            actions: vec!["suspend AU-AFP".into()],
            signed_by: vec!["alice".into()],
            signed_at_unix_ms: vec![1_800_000_000_000],
            ..Default::default()
        }];
        let page = member(&f, &f.members[0], None, None, &events);
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        assert!(!page.contains("<img"));
        assert!(page.contains("proposed by HUB/&lt;alice&gt;"));
        assert!(page.contains("<li>suspend AU-AFP</li>"));
        assert!(
            page.contains("signed by alice at 2027-01-15 08:00:00 UTC"),
            "{page}"
        );
        let history = roster(&f, &[]);
        assert!(history.contains("<p>none</p>"));
    }
}
