//! Roster checkpoints, the defence against a hub that shows members different rosters: this
//! node publishes `RosterCheckpoint{version, hash}` in its own log after each roster change
//! and every `policy.checkpoint_interval_ms`; every member's checkpoint it takes in is compared
//! with its own roster log at that version. Two hashes at one version are a roster conflict,
//! logged at ERROR and shown in status; members whose checkpoints stop arriving show as stale.
//!
//! Conflicts and the last checkpoint seen per member are kept in memory only (a few per
//! member): the entries themselves stay in the logs, and a restart compares the checkpoints
//! that arrive after it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use intelmesh_core::{Hash, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{compare_checkpoint, CheckpointVerdict, Roster};

use crate::roster_follow::clear;
use crate::state::{NodeError, NodeState};

/// Conflicts kept per member (the first ones: later ones add nothing to the proof).
pub const MAX_CONFLICTS_PER_MEMBER: usize = 4;

/// A member is stale when its last checkpoint is older than this many periods.
pub const STALE_AFTER_PERIODS: i64 = 3;

/// A member's checkpoint as taken in: which entry of its log, when it was signed.
#[derive(Clone, Debug)]
pub struct Seen {
    pub version: u64,
    pub hash: Hash,
    pub seq: u64,
    pub issued_at_unix_ms: i64,
}

/// A member's checkpoint naming another roster than this node's at the same version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub member: OrgId,
    pub version: u64,
    pub ours: Hash,
    pub theirs: Hash,
    pub seq: u64,
    pub seen_at_unix_ms: i64,
}

#[derive(Default)]
struct Inner {
    last: BTreeMap<OrgId, Seen>,
    conflicts: BTreeMap<OrgId, VecDeque<Conflict>>,
}

pub struct Checkpoints {
    inner: Mutex<Inner>,
    started_unix_ms: i64,
}

impl Default for Checkpoints {
    fn default() -> Checkpoints {
        Checkpoints {
            inner: Mutex::default(),
            started_unix_ms: intelmesh_core::now_unix_ms(),
        }
    }
}

impl Checkpoints {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each change is whole under the lock; a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Compares the checkpoints of members that were ahead of this node with the version it
    /// follows now.
    pub fn roster_changed(&self, roster: &Roster) {
        let mut inner = self.lock();
        let ahead: Vec<(OrgId, Seen)> = inner
            .last
            .iter()
            .filter(|(_, s)| s.version == roster.version())
            .map(|(o, s)| (o.clone(), s.clone()))
            .collect();
        for (member, seen) in ahead {
            if seen.hash != *roster.hash() {
                record(&mut inner, member, &seen, *roster.hash());
            }
        }
    }

    /// Takes in a member's checkpoint: `ours` is this node's roster hash at its version.
    fn take(&self, member: OrgId, seen: Seen, ours: Option<&Hash>) {
        let checkpoint = pb::RosterCheckpoint {
            version: seen.version,
            roster_hash: seen.hash.to_vec(),
        };
        let mut inner = self.lock();
        match compare_checkpoint(ours, &checkpoint) {
            Ok(CheckpointVerdict::Conflict { ours, .. }) => {
                record(&mut inner, member.clone(), &seen, ours)
            }
            Ok(CheckpointVerdict::Agrees | CheckpointVerdict::Ahead(_)) => {}
            Err(defect) => {
                tracing::warn!(%member, seq = seen.seq, %defect, "malformed roster checkpoint");
                return;
            }
        }
        let newer = inner.last.get(&member).is_none_or(|s| s.seq < seen.seq);
        if newer {
            inner.last.insert(member, seen);
        }
    }

    /// Members whose last checkpoint names a version past `version`, with that version.
    pub fn ahead(&self, version: u64) -> Vec<(OrgId, u64)> {
        let inner = self.lock();
        let ahead = inner.last.iter().filter(|(_, s)| s.version > version);
        ahead.map(|(o, s)| (o.clone(), s.version)).collect()
    }

    pub fn conflicts(&self) -> Vec<Conflict> {
        self.lock().conflicts.values().flatten().cloned().collect()
    }

    /// Active members other than `own` whose last checkpoint (or, if none came, this node's
    /// start) is older than [`STALE_AFTER_PERIODS`] periods of the roster's policy.
    pub fn stale(&self, roster: &Roster, own: &OrgId, now_unix_ms: i64) -> Vec<OrgId> {
        let period = i64::try_from(roster.policy().checkpoint_interval_ms).unwrap_or(i64::MAX);
        let limit = now_unix_ms.saturating_sub(period.saturating_mul(STALE_AFTER_PERIODS));
        let inner = self.lock();
        roster
            .statuses()
            .into_iter()
            .filter(|(org, (_, status))| {
                *org != own && *status == intelmesh_roster::MemberStatus::Active
            })
            .filter(|(org, _)| {
                let last = inner
                    .last
                    .get(*org)
                    .map_or(self.started_unix_ms, |s| s.issued_at_unix_ms);
                last < limit
            })
            .map(|(org, _)| org.clone())
            .collect()
    }
}

fn record(inner: &mut Inner, member: OrgId, seen: &Seen, ours: Hash) {
    let kept = inner.conflicts.entry(member.clone()).or_default();
    if kept
        .iter()
        .any(|c| c.version == seen.version && c.theirs == seen.hash)
    {
        return;
    }
    // Past the first few of a member, a conflict says nothing new, and a member's key could
    // otherwise bury the alarm under one line per entry it signs.
    if kept.len() >= MAX_CONFLICTS_PER_MEMBER {
        return;
    }
    tracing::error!(
        %member,
        version = seen.version,
        ours = %hex::encode(ours),
        theirs = %hex::encode(seen.hash),
        seq = seen.seq,
        "ROSTER CONFLICT: a member follows another roster at the same version (the authority or a hub showed two rosters)"
    );
    kept.push_back(Conflict {
        member,
        version: seen.version,
        ours,
        theirs: seen.hash,
        seq: seen.seq,
        seen_at_unix_ms: intelmesh_core::now_unix_ms(),
    });
}

/// A checkpoint entry taken in from a member's log.
pub struct Received {
    pub member: OrgId,
    pub seq: u64,
    pub issued_at_unix_ms: i64,
    pub checkpoint: pb::RosterCheckpoint,
}

impl NodeState {
    /// Compares checkpoints taken in from members' logs with this node's roster log.
    pub(crate) fn take_checkpoints(&self, received: Vec<Received>) {
        let Some(follow) = self.follow() else {
            return;
        };
        for r in received {
            let Ok(hash) = Hash::try_from(r.checkpoint.roster_hash.as_slice()) else {
                tracing::warn!(member = %r.member, seq = r.seq, "roster checkpoint with a hash that is not 32 bytes");
                continue;
            };
            // A peer's checkpoint says which roster it follows now; its hello said so only
            // when the link opened.
            self.peers.update_known(&r.member, |p| {
                if r.checkpoint.version >= p.roster_version {
                    p.roster_version = r.checkpoint.version;
                    p.roster_hash = hash.to_vec();
                }
            });
            let ours = follow.hash_at(r.checkpoint.version);
            let seen = Seen {
                version: r.checkpoint.version,
                hash,
                seq: r.seq,
                issued_at_unix_ms: r.issued_at_unix_ms,
            };
            follow.checkpoints.take(r.member, seen, ours.as_ref());
        }
    }

    /// Publishes this node's checkpoint of the roster it follows, in its own log.
    pub async fn publish_checkpoint(self: &Arc<Self>) -> Result<u64, NodeError> {
        let roster = self.roster().ok_or(NodeError::NotFollowing)?;
        let payload = pb::Payload {
            body: Some(pb::payload::Body::Checkpoint(pb::RosterCheckpoint {
                version: roster.version(),
                roster_hash: roster.hash().to_vec(),
            })),
            ..pb::Payload::default()
        };
        let seqs = self.publish(vec![(clear(), payload)]).await?;
        Ok(seqs.first().copied().unwrap_or(0))
    }
}

/// Publishes a checkpoint after every roster change and every checkpoint period of the
/// roster's policy, until the node stops. A node not admitted yet publishes nothing; nor does
/// one whose own key the roster ended (suspended, removed, key reported compromised): that is
/// logged once, when it happens, and checkpoints resume when a version reopens the key (a
/// reinstatement) or lists a new one.
pub async fn publish_periodically(state: Arc<NodeState>) {
    let Some(mut changes) = state.roster_changes() else {
        return;
    };
    // Whether the last attempt found the own key ended (so it is logged once, not per period).
    let mut key_ended = false;
    loop {
        match state.publish_checkpoint().await {
            Ok(seq) => {
                if std::mem::take(&mut key_ended) {
                    tracing::info!(
                        seq,
                        "own signing key valid again: roster checkpoints resume"
                    );
                } else {
                    tracing::debug!(seq, "roster checkpoint published");
                }
            }
            Err(NodeError::NotAdmitted { .. }) => {}
            // The version just followed is being cut in: checkpoint it right after (a cut that
            // keeps failing is retried every 10 s, and logged there).
            Err(NodeError::CutDue) => {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = state.stopped() => return,
                }
            }
            Err(e @ (NodeError::OwnKeyEnded { .. } | NodeError::OwnLogBehind { .. })) => {
                if !std::mem::replace(&mut key_ended, true) {
                    tracing::warn!(error = %e, "roster checkpoints stop: this node cannot sign its next entry");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not publish a roster checkpoint"),
        }
        let period = state
            .roster()
            .map_or(60_000, |r| r.policy().checkpoint_interval_ms);
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(std::time::Duration::from_millis(period)) => continue,
            _ = state.stopped() => return,
        }
        // After a change every member checkpoints: spread out, so that 190 checkpoints (each
        // relayed to every member) do not compete with the change itself while it spreads.
        tokio::select! {
            _ = tokio::time::sleep(settle_delay(period)) => {}
            _ = state.stopped() => return,
        }
    }
}

/// How long after a roster change a node waits before its checkpoint: uniform in
/// [`SETTLE_MIN_MS`, `SETTLE_MAX_MS`], and at most half a checkpoint period.
fn settle_delay(period_ms: u64) -> std::time::Duration {
    use rand::Rng;
    let max = SETTLE_MAX_MS.min(period_ms / 2).max(1);
    let min = SETTLE_MIN_MS.min(max);
    std::time::Duration::from_millis(rand::thread_rng().gen_range(min..=max))
}

const SETTLE_MIN_MS: u64 = 500;
const SETTLE_MAX_MS: u64 = 2_500;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{settle_delay, Checkpoints, Seen, SETTLE_MAX_MS, SETTLE_MIN_MS};
    use intelmesh_core::OrgId;

    #[test]
    fn members_whose_checkpoints_name_a_newer_version_are_ahead() {
        let c = Checkpoints::default();
        let seen = |version, seq| Seen {
            version,
            hash: [version as u8; 32],
            seq,
            issued_at_unix_ms: 0,
        };
        let (au, br) = (
            OrgId::parse("AU-AFP").unwrap(),
            OrgId::parse("BR-PF").unwrap(),
        );
        let ours = [3; 32];
        c.take(au.clone(), seen(3, 1), Some(&ours));
        c.take(br.clone(), seen(5, 1), Some(&ours));
        assert_eq!(c.ahead(3), vec![(br.clone(), 5)]);
        // A member's later checkpoint replaces its earlier one; an older one does not.
        c.take(au.clone(), seen(4, 2), Some(&ours));
        c.take(au.clone(), seen(2, 1), Some(&ours));
        assert_eq!(c.ahead(3), vec![(au, 4), (br.clone(), 5)]);
        assert_eq!(c.ahead(4), vec![(br, 5)]);
        assert!(c.ahead(5).is_empty());
    }

    #[test]
    fn checkpoints_after_a_change_are_spread_within_bounds() {
        let delays: Vec<Duration> = (0..200).map(|_| settle_delay(60_000)).collect();
        let (min, max) = (
            Duration::from_millis(SETTLE_MIN_MS),
            Duration::from_millis(SETTLE_MAX_MS),
        );
        assert!(delays.iter().all(|d| *d >= min && *d <= max));
        assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
        // A short period (tests, labs) caps the wait at half of it.
        assert!((0..50).all(|_| settle_delay(400) <= Duration::from_millis(200)));
        assert!(settle_delay(0) <= Duration::from_millis(1));
    }
}
