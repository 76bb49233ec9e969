//! The federation's health as this hub sees it, one row per member: link, lag, roster version
//! acknowledged, recent entries, entries waiting for a key, forks, certificate expiry,
//! silence of its checkpoints.

use std::collections::BTreeMap;

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;

use super::AdminError;
use crate::state::{header_of, NodeState};

const DAY_MS: i64 = 86_400_000;

pub fn federation_status(state: &NodeState) -> Result<pb::FederationStatusResponse, AdminError> {
    // The version in force, as Status reports it: its keys taken in and its cut made. The
    // version just followed may still be on its way there, and members reported under it
    // (suspended, say) would show what is not in effect yet.
    let roster = state.roster_in_force().ok_or(AdminError::NotFollowing)?;
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

/// How many of `origin`'s entries were issued at or after `since_unix_ms`.
fn entries_since(store: &dyn Store, origin: &OrgId, since_unix_ms: i64) -> Result<u64, AdminError> {
    let Some(head) = store.head(origin)? else {
        return Ok(0);
    };
    let issued_at = |seq: u64| -> Result<Option<i64>, AdminError> {
        let entry = store.range(origin, seq, 1)?;
        Ok(entry
            .first()
            .and_then(header_of)
            .map(|h| h.issued_at_unix_ms))
    };
    count_since(head.seq, since_unix_ms, issued_at)
}

/// How many of the entries 1..=`head` were issued at or after `since`, by a binary search on
/// issue times (an origin's entries are issued in order; a missing one counts as older): a
/// few dozen entries read, whatever the origin published, not a walk through its log.
fn count_since<E>(
    head: u64,
    since: i64,
    mut issued_at: impl FnMut(u64) -> Result<Option<i64>, E>,
) -> Result<u64, E> {
    // The first seq issued at or after `since`, in lo..=hi; head + 1 when none is.
    let (mut lo, mut hi) = (1u64, head.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if issued_at(mid)?.is_some_and(|t| t >= since) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(head.saturating_add(1) - lo)
}

#[cfg(test)]
mod tests {
    use super::count_since;

    fn count(times: &[i64], since: i64) -> u64 {
        let at = |seq: u64| Ok::<_, ()>(times.get(seq as usize - 1).copied());
        count_since(times.len() as u64, since, at).unwrap()
    }

    #[test]
    fn entries_since_a_time_are_counted_by_a_search() {
        assert_eq!(count(&[], 5), 0);
        assert_eq!(count(&[1, 2, 3, 5, 5, 8], 5), 3);
        assert_eq!(count(&[1, 2, 3], 0), 3);
        assert_eq!(count(&[1, 2, 3], 4), 0);
        assert_eq!(count(&[7], 7), 1);
        // Reads a few dozen of a million entries, not all of them.
        let mut reads = 0;
        let n = count_since(1_000_000, 999_990, |seq| {
            reads += 1;
            Ok::<_, ()>(Some(seq as i64))
        });
        assert_eq!(n, Ok(11));
        assert!(reads <= 21, "{reads} reads");
        // A missing entry (a log cut before it) counts as older.
        let n = count_since(10, 0, |seq| Ok::<_, ()>((seq > 4).then_some(100)));
        assert_eq!(n, Ok(6));
    }
}
