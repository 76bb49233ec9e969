//! How API answers are printed: short human lines by default, and JSON values (field names as
//! in the proto, enums as names, times as Unix milliseconds) for `--json`.

use intelmesh_core::indicator::IndicatorType;
use intelmesh_core::Tlp;
use intelmesh_interop::text::printable;
use intelmesh_proto::v1 as pb;
use serde_json::{json, Value};

pub fn type_name(t: i32) -> String {
    IndicatorType::from_proto(t)
        .map(|t| t.as_str().to_string())
        .unwrap_or_else(|| format!("type#{t}"))
}

pub fn tlp_name(t: i32) -> String {
    Tlp::from_proto(t)
        .map(|t| t.as_str().to_string())
        .unwrap_or_else(|| "UNSPECIFIED".to_string())
}

pub fn verdict_name(v: i32) -> &'static str {
    match pb::Verdict::try_from(v) {
        Ok(pb::Verdict::Unknown) => "unknown",
        Ok(pb::Verdict::Malicious) => "malicious",
        Ok(pb::Verdict::Revoked) => "revoked",
        Ok(pb::Verdict::Seen) => "seen",
        Ok(pb::Verdict::Unspecified) | Err(_) => "unspecified",
    }
}

/// `2024-05-01T12:00:00.250Z`, or `-` for 0.
pub fn fmt_time(ms: i64) -> String {
    if ms == 0 {
        return "-".to_string();
    }
    intelmesh_interop::format_timestamp(ms)
}

pub fn indicator_text(r: Option<&pb::IndicatorRef>) -> String {
    match r {
        Some(r) => format!("{} {}", type_name(r.r#type), r.value),
        None => "(no indicator)".to_string(),
    }
}

fn distribution_text(d: Option<&pb::Distribution>) -> String {
    match d {
        Some(d) if d.recipients.is_empty() => tlp_name(d.tlp),
        Some(d) => format!("{} to {}", tlp_name(d.tlp), d.recipients.join(",")),
        None => "UNSPECIFIED".to_string(),
    }
}

pub fn indicator_json(r: Option<&pb::IndicatorRef>) -> Value {
    match r {
        Some(r) => json!({"type": type_name(r.r#type), "value": r.value}),
        None => Value::Null,
    }
}

fn distribution_json(d: Option<&pb::Distribution>) -> Value {
    match d {
        Some(d) => json!({"tlp": tlp_name(d.tlp), "recipients": d.recipients}),
        None => Value::Null,
    }
}

pub fn state_json(s: &pb::IndicatorState) -> Value {
    let assertions: Vec<Value> = s
        .assertions
        .iter()
        .map(|a| {
            json!({
                "origin": a.origin,
                "seq": a.seq,
                "revoked": a.revoked,
                "confidence": a.confidence,
                "distribution": distribution_json(a.distribution.as_ref()),
                "issued_at_unix_ms": a.issued_at_unix_ms,
                "valid_from_unix_ms": a.valid_from_unix_ms,
                "valid_until_unix_ms": a.valid_until_unix_ms,
                "tags": a.tags,
                "threat_types": a.threat_types,
                "description": a.description,
                "external_references": a.external_references.iter().map(|r| json!({
                    "source": r.source, "url": r.url, "external_id": r.external_id,
                })).collect::<Vec<_>>(),
                "revoke_reason": a.revoke_reason,
            })
        })
        .collect();
    let sightings: Vec<Value> = s
        .sightings
        .iter()
        .map(|x| {
            json!({
                "origin": x.origin,
                "count": x.count,
                "first_seen_unix_ms": x.first_seen_unix_ms,
                "last_seen_unix_ms": x.last_seen_unix_ms,
                "last_seq": x.last_seq,
                "distribution": distribution_json(x.distribution.as_ref()),
            })
        })
        .collect();
    json!({
        "indicator": indicator_json(s.indicator.as_ref()),
        "assertions": assertions,
        "sightings": sightings,
    })
}

/// One line per assertion and sighting, indented under the indicator.
pub fn state_text(s: &pb::IndicatorState) -> String {
    let mut out = indicator_text(s.indicator.as_ref());
    for a in &s.assertions {
        let what = if a.revoked {
            "REVOKED".to_string()
        } else {
            format!("asserts confidence {}", a.confidence)
        };
        out.push_str(&format!(
            "\n  {}#{} {what} {} issued {}",
            a.origin,
            a.seq,
            distribution_text(a.distribution.as_ref()),
            fmt_time(a.issued_at_unix_ms)
        ));
        // Tags and descriptions are other members' text: nothing in them may act on the
        // terminal or fake a line.
        if !a.tags.is_empty() {
            out.push_str(&format!(" tags {}", printable(&a.tags.join(","))));
        }
        if !a.threat_types.is_empty() {
            let threats = a.threat_types.join(",");
            out.push_str(&format!(" threats {}", printable(&threats)));
        }
        if let Some(until) = a.valid_until_unix_ms {
            out.push_str(&format!(" valid until {}", fmt_time(until)));
        }
        if a.revoked && !a.revoke_reason.is_empty() {
            out.push_str(&format!(" reason {:?}", a.revoke_reason));
        }
        if !a.description.is_empty() {
            out.push_str(&format!(" — {}", printable(&a.description)));
        }
    }
    for x in &s.sightings {
        out.push_str(&format!(
            "\n  {} saw it {} time(s), {} .. {} (last #{}) {}",
            x.origin,
            x.count,
            fmt_time(x.first_seen_unix_ms),
            fmt_time(x.last_seen_unix_ms),
            x.last_seq,
            distribution_text(x.distribution.as_ref())
        ));
    }
    out
}

/// A one-line summary of a state: who asserts it, who revoked it, who saw it.
pub fn state_summary(s: &pb::IndicatorState) -> String {
    let mut parts: Vec<String> = s
        .assertions
        .iter()
        .map(|a| {
            if a.revoked {
                format!("{}#{} revoked", a.origin, a.seq)
            } else {
                format!("{}#{} conf {}", a.origin, a.seq, a.confidence)
            }
        })
        .collect();
    parts.extend(
        s.sightings
            .iter()
            .map(|x| format!("{} saw {}x", x.origin, x.count)),
    );
    if parts.is_empty() {
        parts.push("nothing visible".to_string());
    }
    format!(
        "{}  [{}]",
        indicator_text(s.indicator.as_ref()),
        parts.join("; ")
    )
}

pub fn status_json(s: &pb::StatusResponse) -> Value {
    let peers: Vec<Value> = s
        .peers
        .iter()
        .map(|p| {
            json!({
                "org_id": p.org_id,
                "connected": p.connected,
                "address": p.address,
                "lag": p.lag,
                "last_heard_unix_ms": p.last_heard_unix_ms,
                "last_error": p.last_error,
                "entries_sent": p.entries_sent,
                "entries_received": p.entries_received,
                "other_hub_serves_first": p.other_hub_serves_first,
            })
        })
        .collect();
    json!({
        "org_id": s.org_id,
        "vector": sorted_vector(s).into_iter().collect::<serde_json::Map<String, Value>>(),
        "peers": peers,
        "state_digest": s.state_digest,
        "flagged_origins": s.flagged_origins,
        "fork_proofs": s.fork_proofs,
        "held_entries": s.held_entries,
        "payloads_owed": s.payloads_owed,
        "unverified": s.unverified.iter().map(|u| json!({
            "origin": u.origin,
            "key_id": u.key_id,
            "entries": u.entries,
            "dropped": u.dropped,
        })).collect::<Vec<_>>(),
        "roster_version": s.roster_version,
        "roster_hash": s.roster_hash,
        "roster_refused": s.roster_refused,
        "roster_conflicts": s.roster_conflicts.iter().map(|c| json!({
            "member": c.member,
            "version": c.version,
            "ours": c.ours,
            "theirs": c.theirs,
            "seq": c.seq,
            "seen_at_unix_ms": c.seen_at_unix_ms,
        })).collect::<Vec<_>>(),
        "stale_members": s.stale_members,
        "roster_ahead": s.roster_ahead.iter().map(|a| json!({
            "member": a.member,
            "version": a.version,
        })).collect::<Vec<_>>(),
        "ready": s.ready,
        "readiness": s.readiness,
        "certificate_warnings": s.certificate_warnings.iter().map(|w| json!({
            "subject": w.subject,
            "file_or_serial": w.file_or_serial,
            "not_after_unix_ms": w.not_after_unix_ms,
            "expired": w.expired,
            "member": w.member,
        })).collect::<Vec<_>>(),
    })
}

fn sorted_vector(s: &pb::StatusResponse) -> Vec<(String, Value)> {
    let mut v: Vec<(String, Value)> = s
        .vector
        .iter()
        .map(|(o, seq)| (o.clone(), json!(seq)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `AU-AFP=12 BR-PF=3`, sorted by origin; `(empty)` for a node that holds nothing.
pub fn vector_text(vector: &std::collections::HashMap<String, u64>) -> String {
    let mut v: Vec<_> = vector.iter().collect();
    v.sort();
    if v.is_empty() {
        return "(empty)".to_string();
    }
    v.iter()
        .map(|(o, s)| format!("{o}={s}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn status_text(s: &pb::StatusResponse, now_ms: i64) -> String {
    let mut out = format!(
        "node {}\n  {}\n  state digest {}\n  vector {}",
        s.org_id,
        if s.ready {
            "ready".to_string()
        } else {
            format!("NOT READY: {}", printable(&s.readiness))
        },
        s.state_digest,
        vector_text(&s.vector)
    );
    out.push_str(&roster_text(s));
    if s.peers.is_empty() {
        out.push_str("\n  peers: none configured");
    }
    for p in &s.peers {
        let heard = match p.last_heard_unix_ms {
            0 => "never heard".to_string(),
            at => format!("heard {}", ago(now_ms, at)),
        };
        out.push_str(&format!(
            "\n  peer {} {}{} lag {} {}, sent {} received {}",
            p.org_id,
            if p.connected {
                "connected"
            } else {
                "disconnected"
            },
            if p.address.is_empty() {
                String::new()
            } else {
                format!(" ({})", printable(&p.address))
            },
            p.lag,
            heard,
            p.entries_sent,
            p.entries_received
        ));
        if p.other_hub_serves_first {
            out.push_str(", another hub serves it first");
        }
        if !p.last_error.is_empty() {
            // A peer's words (a hello's claimed name, a status it sent) may carry escapes.
            out.push_str(&format!(", last error: {}", printable(&p.last_error)));
        }
    }
    out.push_str(&format!(
        "\n  flagged origins: {} ({} fork proofs held)\n  held entries: {}\n  payloads owed: {}",
        if s.flagged_origins.is_empty() {
            "none".to_string()
        } else {
            s.flagged_origins.join(", ")
        },
        s.fork_proofs,
        s.held_entries,
        s.payloads_owed
    ));
    for u in &s.unverified {
        out.push_str(&format!(
            "\n  unverified: {} entries of {} signed with key {}, not in this node's key list{}",
            u.entries,
            u.origin,
            u.key_id,
            if u.dropped {
                " (more were dropped: they come again when the link restarts)"
            } else {
                ""
            }
        ));
    }
    for w in &s.certificate_warnings {
        out.push_str(&format!(
            "\n  certificate: {}",
            intelmesh_node::cert_watch::warning_text(w, now_ms)
        ));
    }
    out
}

/// The roster lines of a node's status: empty in static mode (no version).
fn roster_text(s: &pb::StatusResponse) -> String {
    if s.roster_version == 0 {
        return String::new();
    }
    let short = |h: &str| h.chars().take(16).collect::<String>();
    let mut out = format!(
        "\n  roster version {} (hash {}…)",
        s.roster_version,
        short(&s.roster_hash)
    );
    if !s.roster_refused.is_empty() {
        out.push_str(&format!(
            "\n  roster refused: {}",
            printable(&s.roster_refused)
        ));
    }
    for c in &s.roster_conflicts {
        out.push_str(&format!(
            "\n  ROSTER FORK: {}'s checkpoint #{} names version {} with hash {}…, this node's roster log has {}…",
            c.member,
            c.seq,
            c.version,
            short(&c.theirs),
            short(&c.ours)
        ));
    }
    if !s.stale_members.is_empty() {
        out.push_str(&format!(
            "\n  stale (no recent checkpoint): {}",
            s.stale_members.join(", ")
        ));
    }
    if let Some(newest) = s.roster_ahead.iter().map(|a| a.version).max() {
        let members: Vec<&str> = s.roster_ahead.iter().map(|a| a.member.as_str()).collect();
        out.push_str(&format!(
            "\n  ROSTER BEHIND: checkpoints of {} name version {newest}, this node follows {}: a hub may be withholding it",
            members.join(", "),
            s.roster_version
        ));
    }
    out
}

/// `intelmesh admin status`: the federation table, tab-separated, times as durations.
pub fn federation_table(r: &pb::FederationStatusResponse, now_ms: i64) -> Vec<String> {
    let mut lines = vec![
        format!("roster version {}", r.roster_version),
        "member\tstatus\tconnected\tlast_seen\tlag\troster\tentries_24h\theld\tforked\tcert_expires\tstale".into(),
    ];
    for m in &r.members {
        lines.push(format!(
            "{}\t{:?}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            m.org,
            m.status(),
            m.connected,
            ago(now_ms, m.last_seen_unix_ms),
            m.lag,
            m.roster_version,
            m.entries_24h,
            m.held_entries,
            m.forked,
            expires(now_ms, m.cert_not_after_unix_ms),
            m.stale
        ));
    }
    lines
}

/// "never", or how long ago `at_ms` was.
fn ago(now_ms: i64, at_ms: i64) -> String {
    if at_ms <= 0 {
        return "never".into();
    }
    let secs = now_ms.saturating_sub(at_ms).max(0) as f64 / 1000.0;
    format!("{secs:.1}s ago")
}

/// "-" when no certificate is recorded, else the days left ("expired" once past).
fn expires(now_ms: i64, not_after_ms: i64) -> String {
    const DAY_MS: i64 = 86_400_000;
    match not_after_ms {
        0 => "-".into(),
        t if t <= now_ms => "expired".into(),
        t => format!("in {}d", (t - now_ms) / DAY_MS),
    }
}

/// A member's current encryption key as `roster show` prints it.
pub fn current_encryption_key(m: &pb::Member) -> String {
    match m.encryption_keys.last() {
        None => "no encryption key".to_string(),
        Some(k) => match intelmesh_core::sealed::EncryptionPublic::from_bytes(&k.public_key) {
            Ok(key) => format!(
                "encryption key {} (since version {}{})",
                key.id(),
                k.since_version,
                if k.reported_compromised {
                    ", reported compromised: nothing sealed to it"
                } else {
                    ""
                }
            ),
            Err(e) => format!("encryption key invalid: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn status_times_read_as_durations() {
        assert_eq!(ago(10_000, 0), "never");
        assert_eq!(ago(10_000, 7_500), "2.5s ago");
        assert_eq!(expires(0, 0), "-");
        assert_eq!(expires(5, 5), "expired");
        assert_eq!(expires(0, 30 * 86_400_000 + 1), "in 30d");
    }
    use super::*;

    #[test]
    fn status_shows_certificate_warnings_as_lines_and_in_json() {
        const DAY_MS: i64 = 86_400_000;
        let now = 1_800_000_000_000;
        let s = pb::StatusResponse {
            org_id: "AU-AFP".into(),
            certificate_warnings: vec![
                pb::CertificateWarning {
                    subject: "own federation certificate".into(),
                    file_or_serial: "/n/federation.pem".into(),
                    not_after_unix_ms: now + 12 * DAY_MS,
                    expired: false,
                    member: false,
                },
                pb::CertificateWarning {
                    subject: "BR-PF".into(),
                    file_or_serial: "1f2e".into(),
                    not_after_unix_ms: now - DAY_MS,
                    expired: true,
                    member: true,
                },
            ],
            ..pb::StatusResponse::default()
        };
        let text = status_text(&s, now);
        assert!(
            text.contains("\n  certificate: own federation certificate /n/federation.pem expires in 12 days (2027-01-27 08:00:00 UTC)"),
            "{text}"
        );
        assert!(
            text.contains("\n  certificate: member BR-PF certificate 1f2e EXPIRED 1 day ago (2027-01-14 08:00:00 UTC)"),
            "{text}"
        );
        let json = status_json(&s);
        let warnings = json["certificate_warnings"].as_array().expect("array");
        assert_eq!(warnings.len(), 2);
        assert_eq!(warnings[0]["file_or_serial"], "/n/federation.pem");
        assert_eq!(warnings[0]["not_after_unix_ms"], now + 12 * DAY_MS);
        assert_eq!(warnings[1]["subject"], "BR-PF");
        assert_eq!(warnings[1]["expired"], true);
        assert_eq!(warnings[1]["member"], true);
    }

    #[test]
    fn status_names_the_agencies_another_hub_serves_first() {
        let peer = |org: &str, other: bool| pb::PeerStatus {
            org_id: org.into(),
            connected: true,
            other_hub_serves_first: other,
            ..pb::PeerStatus::default()
        };
        let s = pb::StatusResponse {
            org_id: "HUB-A".into(),
            peers: vec![peer("AU-AFP", true), peer("BR-PF", false)],
            ..pb::StatusResponse::default()
        };
        let text = status_text(&s, 0);
        let line = |org: &str| {
            (text.lines())
                .find(|l| l.contains(&format!("peer {org} ")))
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            line("AU-AFP").ends_with(", another hub serves it first"),
            "{text}"
        );
        assert!(!line("BR-PF").contains("another hub"), "{text}");
        let json = status_json(&s);
        assert_eq!(json["peers"][0]["other_hub_serves_first"], true);
        assert_eq!(json["peers"][1]["other_hub_serves_first"], false);
    }

    #[test]
    fn another_members_text_cannot_act_on_the_terminal() {
        let s = pb::IndicatorState {
            assertions: vec![pb::OriginAssertion {
                origin: "AU-AFP".into(),
                tags: vec!["c2\u{1b}[2J".into()],
                description: "fine\nBR-PF#1 REVOKED".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = state_text(&s);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("tags c2\\u{1b}[2J"), "{text}");
        assert!(text.contains("fine\\nBR-PF#1 REVOKED"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        // A peer's words in the status: a hello's claimed name, a status it sent.
        let status = pb::StatusResponse {
            peers: vec![pb::PeerStatus {
                org_id: "BR-PF".into(),
                last_error: "hello says \u{1b}[8m".into(),
                ..Default::default()
            }],
            roster_refused: "v9\u{1b}[1A\u{1b}[2K".into(),
            ..Default::default()
        };
        let text = status_text(&status, 0);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("hello says \\u{1b}[8m"), "{text}");
    }

    #[test]
    fn times_format_as_utc() {
        assert_eq!(fmt_time(0), "-");
        assert_eq!(fmt_time(1_700_000_000_250), "2023-11-14T22:13:20.250Z");
        assert_eq!(fmt_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
