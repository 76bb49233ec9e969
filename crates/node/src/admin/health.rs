//! The federation's health as this hub sees it, one row per member: link, lag, roster version
//! acknowledged, recent entries, entries waiting for a key, forks, certificate expiry,
//! silence of its checkpoints.

use std::collections::BTreeMap;

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;

use super::proposals::current_roster as current;
use super::AdminError;
use crate::state::{header_of, NodeState};

const DAY_MS: i64 = 86_400_000;
/// `entries_24h` walks back from a member's head reading at most this many headers: cheap, and
/// a member over it shows this number.
pub const RECENT_SCAN_CAP: u64 = 10_000;
const SCAN_CHUNK: u64 = 512;

pub fn federation_status(state: &NodeState) -> Result<pb::FederationStatusResponse, AdminError> {
    let roster = current(state)?;
    let now = intelmesh_core::now_unix_ms();
    let peers = state.peers.snapshot();
    let heads = state.store.heads()?;
    let flagged = state.store.flagged_origins()?;
    let stale = state
        .follow()
        .map(|f| f.checkpoints.stale(&roster, &state.org, now))
        .unwrap_or_default();
    let mut waiting: BTreeMap<String, u64> = BTreeMap::new();
    for row in state.unverified.summary() {
        *waiting.entry(row.origin).or_default() += row.entries;
    }
    let mut members = Vec::new();
    for m in roster.members() {
        let Ok(org) = OrgId::parse(&m.org) else {
            continue;
        };
        let mut health = pb::MemberHealth {
            org: m.org.clone(),
            status: m.status,
            held_entries: waiting.get(&m.org).copied().unwrap_or(0),
            forked: flagged.contains(&org),
            cert_not_after_unix_ms: m
                .certificates
                .iter()
                .map(|c| c.not_after_unix_ms)
                .max()
                .unwrap_or(0),
            stale: stale.contains(&org),
            entries_24h: entries_since(state.store.as_ref(), &org, now - DAY_MS)?,
            ..Default::default()
        };
        if org == state.org {
            health.connected = true;
            health.hub = state.org.to_string();
            health.last_seen_unix_ms = now;
            health.roster_version = roster.version();
        } else if let Some(peer) = peers.get(&org) {
            health.connected = peer.connected;
            health.hub = if peer.connected {
                state.org.to_string()
            } else {
                String::new()
            };
            health.last_seen_unix_ms = peer.last_heard_unix_ms;
            health.roster_version = peer.roster_version;
            health.lag = heads
                .iter()
                .map(|(origin, head)| {
                    head.seq
                        .saturating_sub(peer.vector.get(origin.as_str()).copied().unwrap_or(0))
                })
                .sum();
        } else {
            health.lag = heads.values().map(|h| h.seq).sum();
        }
        members.push(health);
    }
    Ok(pb::FederationStatusResponse {
        roster_version: roster.version(),
        members,
    })
}

/// How many of `origin`'s entries were issued at or after `since_unix_ms`, by issue time,
/// walking back from its head (at most [`RECENT_SCAN_CAP`] headers).
fn entries_since(store: &dyn Store, origin: &OrgId, since_unix_ms: i64) -> Result<u64, AdminError> {
    let Some(head) = store.head(origin)? else {
        return Ok(0);
    };
    let mut count = 0;
    let mut end = head.seq;
    while end > 0 && count < RECENT_SCAN_CAP {
        let from = end.saturating_sub(SCAN_CHUNK - 1).max(1);
        let chunk = store.range(origin, from, usize::try_from(end - from + 1).unwrap_or(0))?;
        for entry in chunk.iter().rev() {
            match header_of(entry) {
                Some(h) if h.issued_at_unix_ms >= since_unix_ms => count += 1,
                _ => return Ok(count),
            }
            if count >= RECENT_SCAN_CAP {
                return Ok(count);
            }
        }
        end = from - 1;
    }
    Ok(count)
}
