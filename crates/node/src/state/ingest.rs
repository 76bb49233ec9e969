//! Entries received from peers, taken in: verified on all cores (`check_entries`, ahead of
//! the batch being applied), those held already or refused lately set aside without a
//! signature check, the good ones applied durably under the cut lock, those whose key is not
//! known yet kept (`unverified`), and the wants and roster checkpoints they settle.

use std::collections::HashMap;
use std::sync::Arc;

use intelmesh_core::chain::ChainError;
use intelmesh_core::verify::{verify_batch_parallel, Control, VerifyConfig};
use intelmesh_core::{KeyId, OrgId, StaticKeys, VerifiedEntry, VerifyError};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{ApplyReport, Outcome, Store};
use prost::Message;

use super::{NodeError, NodeState};
use crate::config::Role;
use crate::unverified::Added;
use crate::wants::{owed, EntryKey};

/// Entries per rayon task when verifying a received batch. One ed25519 batch check costs less
/// per signature the more it holds: `bench catchup` ran at 51.5k entries/s with 128 and 61.5k/s
/// with 256, and a full 1024-entry frame still spreads over 4 tasks.
pub const VERIFY_CHUNK: usize = 256;

/// How many received batches a link verifies ahead of the one being applied: an entry batch is
/// verified (on all cores) as soon as it is read, so the next batches verify while the current
/// one is applied and flushed (one core, then the disk), and no core waits for the slowest
/// chunk of a batch. As many verified batches may wait for the link's receive loop, which
/// applies those waiting in one write. Bounds what a link holds in memory.
pub const VERIFY_AHEAD: usize = 4;

/// What became of a batch received from a peer.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub appended: usize,
    pub duplicates: usize,
    pub held: usize,
    /// Entries kept to be verified once their key is known (see `unverified`).
    pub unverifiable: usize,
    pub refused: Vec<VerifyError>,
    /// Refused lately for the same reason, and refused again without a signature check (see
    /// `refused_lately`): a link treats them as `refused`, without logging each again.
    pub refused_again: Vec<VerifyError>,
    pub chain_rejected: Vec<ChainError>,
}

/// The hold-queue expiries acted on (the store's count then), when, and whether a timer waits
/// to act on more.
#[derive(Default)]
pub(super) struct HoldResend {
    seen: u64,
    last: Option<std::time::Instant>,
    timer_set: bool,
}

/// Least time between two link restarts for entries that expired from the hold queue.
const HOLD_RESEND_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Entries read ahead from a held one's seq when looking for replays: about one segment.
const HELD_READ_AHEAD: usize = 16;
/// Bytes of held entries read to find a batch's replays: this many times the bytes it brought,
/// plus a base.
const HELD_READ_BUDGET_FACTOR: usize = 4;
const HELD_READ_BUDGET_BASE: usize = 1 << 20;

/// Received entries after verification: those that verified, those that cannot be verified
/// yet (unknown key), and why the others were refused.
#[derive(Debug, Default)]
pub struct Checked {
    pub good: Vec<VerifiedEntry>,
    pub unknown_key: Vec<UnknownKey>,
    pub refused: Vec<VerifyError>,
    /// The key list they were verified under.
    pub keys: Option<Arc<StaticKeys>>,
    /// Entries this node held already, as they came (counted as duplicates, not verified).
    pub held_already: Vec<(OrgId, u64)>,
    /// Entries refused lately, refused again without a signature check.
    pub refused_again: Vec<VerifyError>,
}

impl Checked {
    /// Whether `other` was verified under the same key list.
    pub fn same_keys(&self, other: &Checked) -> bool {
        match (&self.keys, &other.keys) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Takes in `other`'s entries, after this one's.
    pub fn merge(&mut self, other: Checked) {
        self.good.extend(other.good);
        self.unknown_key.extend(other.unknown_key);
        self.refused.extend(other.refused);
        self.held_already.extend(other.held_already);
        self.refused_again.extend(other.refused_again);
    }
}

/// An entry signed with a key not in this node's key list, as its checked header names it.
#[derive(Debug)]
pub struct UnknownKey {
    pub origin: OrgId,
    pub seq: u64,
    pub key_id: KeyId,
    pub entry: pb::SignedEntry,
}

impl NodeState {
    /// Verifies entries received from a peer (all cores) and applies the good ones durably.
    pub async fn ingest(
        self: &Arc<Self>,
        raws: Vec<pb::SignedEntry>,
    ) -> Result<IngestReport, NodeError> {
        let checked = self.verify_received(raws).await?;
        self.apply_checked(checked).await
    }

    /// The first half of [`NodeState::ingest`]: verification on all cores, off the async
    /// threads. Split out so a link can verify the next batch while the previous one is being
    /// applied.
    pub async fn verify_received(
        self: &Arc<Self>,
        raws: Vec<pb::SignedEntry>,
    ) -> Result<Checked, NodeError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let (held_already, raws) = me.without_held(raws);
            let (refused_again, raws) = me.without_refused_lately(raws);
            let verified = raws.len();
            let mut checked = check_entries(
                raws,
                me.keys(),
                &VerifyConfig::at(intelmesh_core::now_unix_ms()),
            );
            checked.held_already = held_already;
            checked.refused_again = refused_again;
            checked.good = me.open_received(std::mem::take(&mut checked.good));
            let held = checked.held_already.len();
            me.metrics.verified_batch(started.elapsed(), verified, held);
            checked
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))
    }

    /// `raws` without the entries this node holds already, byte for byte (header, signature,
    /// and the payload if the entry brings one): those cost a store read, not a signature
    /// check, so a peer sending again what it sent (two hubs, a replay) makes no verification
    /// work. Anything else at a held seq goes on to be verified: another header (a fork, but
    /// not once its origin's forks are proven to the store's cap), changed bytes (a forgery),
    /// a payload for a stub held.
    fn without_held(
        &self,
        raws: Vec<pb::SignedEntry>,
    ) -> (Vec<(OrgId, u64)>, Vec<pb::SignedEntry>) {
        let Ok(heads) = self.store.heads() else {
            return (Vec::new(), raws);
        };
        // Held seqs the batch names, and how many consecutive seqs of one origin follow each
        // (itself included): reads go ahead only over seqs the peer sent, so a stub naming
        // one seq here and there costs one entry's read, not a segment's.
        let named: Vec<Option<(OrgId, u64)>> = raws
            .iter()
            .map(|raw| {
                let h = pb::EntryHeader::decode(raw.header.as_ref()).ok()?;
                let origin = OrgId::parse(&h.origin).ok()?;
                let head = heads.get(&origin)?;
                (h.seq != 0 && h.seq <= head.seq).then_some((origin, h.seq))
            })
            .collect();
        let mut run = vec![1usize; named.len()];
        for i in (0..named.len().saturating_sub(1)).rev() {
            if let (Some((o, s)), Some((next_o, next_s))) = (&named[i], &named[i + 1]) {
                if o == next_o && s.checked_add(1) == Some(*next_s) {
                    run[i] = (run[i + 1] + 1).min(HELD_READ_AHEAD);
                }
            }
        }
        // What the reads may cost, against what the peer sent: stubs of large held entries
        // past it are verified instead, as any entry is.
        let sent: usize = raws.iter().map(|r| r.encoded_len()).sum();
        let mut budget = sent.saturating_mul(HELD_READ_BUDGET_FACTOR) + HELD_READ_BUDGET_BASE;
        let mut held = Vec::new();
        let mut rest = Vec::with_capacity(raws.len());
        let mut read: HashMap<(OrgId, u64), pb::SignedEntry> = HashMap::new();
        let mut proven: HashMap<OrgId, bool> = HashMap::new();
        let forks_proven = |origin: &OrgId, proven: &mut HashMap<OrgId, bool>| {
            *proven.entry(origin.clone()).or_insert_with(|| {
                self.store
                    .fork_proof_count(origin)
                    .is_ok_and(|n| n >= intelmesh_store::MAX_FORK_PROOFS_PER_ORIGIN)
            })
        };
        for ((raw, key), run) in raws.into_iter().zip(named).zip(run) {
            let stored = key.and_then(|key| {
                if !read.contains_key(&key) && budget > 0 {
                    let entries = self.store.range(&key.0, key.1, run).ok()?;
                    for (i, e) in entries.into_iter().enumerate() {
                        budget = budget.saturating_sub(e.encoded_len());
                        read.insert((key.0.clone(), key.1 + i as u64), e);
                    }
                }
                let stored = read.get(&key)?;
                Some((key, stored))
            });
            match stored {
                // Byte for byte: a changed signature or payload is verified, and a forgery
                // found, as before. A payload this node is owed goes on too, so that its want
                // is settled (the store may hold it already: two links raced).
                Some((key, s))
                    if s.header == raw.header
                        && s.signature == raw.signature
                        && (raw.payload.is_none() || raw.payload == s.payload)
                        && !(raw.payload.is_some() && self.wants.contains(&key)) =>
                {
                    held.push(key)
                }
                // Another version of an entry held, from an origin whose forks the store keeps
                // all the proofs of that it keeps: verified (and opened, if sealed here), it
                // could only be refused again, and its origin's key may sign such versions
                // without end. Set aside with what is held; the origin is flagged already.
                Some((key, s)) if s.header != raw.header && forks_proven(&key.0, &mut proven) => {
                    held.push(key)
                }
                _ => rest.push(raw),
            }
        }
        (held, rest)
    }

    /// The second half of [`NodeState::ingest`]: applies the verified entries durably and
    /// reports the refused ones with the outcomes.
    pub async fn apply_checked(
        self: &Arc<Self>,
        checked: Checked,
    ) -> Result<IngestReport, NodeError> {
        // Nothing to write (a peer sent again what this node holds: two hubs relaying the
        // same entries, a replay): no write, so no wait for the store's writer behind every
        // other link's batch.
        if checked.good.is_empty() && checked.unknown_key.is_empty() && checked.refused.is_empty() {
            return Ok(IngestReport {
                duplicates: checked.held_already.len(),
                refused_again: checked.refused_again,
                ..IngestReport::default()
            });
        }
        let me = Arc::clone(self);
        let report = tokio::task::spawn_blocking(move || -> Result<IngestReport, NodeError> {
            let mut report = IngestReport {
                refused: checked.refused,
                refused_again: checked.refused_again,
                duplicates: checked.held_already.len(),
                ..IngestReport::default()
            };
            let mut good = checked.good;
            let verified_with = checked.keys.clone();
            let (mut unknown, mut used) = (checked.unknown_key, checked.keys);
            loop {
                report.unverifiable += me.keep_unverified(unknown);
                // A key list that changed after these were verified may hold their keys, and
                // its recheck may have run before they were kept: they would wait for the next
                // change. Once kept under the list in force, the next change rechecks them.
                let now = me.keys();
                if used.as_ref().is_none_or(|u| Arc::ptr_eq(u, &now)) {
                    break;
                }
                let again = check_entries(
                    me.unverified.take_all(),
                    Arc::clone(&now),
                    &VerifyConfig::at(intelmesh_core::now_unix_ms()),
                );
                report.unverifiable = 0;
                good.extend(me.open_received(again.good));
                // The queue is shared by every link: what fails now may have come from any
                // peer, so it is dropped and logged, never counted against this link (which
                // would be cut for another's forgery).
                for e in &again.refused {
                    tracing::warn!(error = %e, "an entry that waited for its key does not verify");
                }
                me.resend_if_out_of_range(&again.refused);
                (unknown, used) = (again.unknown_key, Some(now));
            }
            // A compromise cut made since they were verified must not be undone: under the
            // cut lock, the key list in force judges their seqs again (see `roster_follow`).
            let _cutting = me.cut_lock_shared();
            let good = me.drop_ended(good, verified_with.as_ref(), &mut report.refused);
            let good = me.refuse_unfollowable_versions(good, &mut report.refused);
            let watched = me.stubs_to_watch(&good);
            let checkpoints = received_checkpoints(&good);
            let started = std::time::Instant::now();
            let applied = me.store.apply(good)?;
            me.metrics.applied_batch(started.elapsed());
            me.metrics.store_written(&applied.timings);
            // Only from entries the store took: a member replaying copies of its own entries
            // with other contents (refused as equivocations, each time) must not move what
            // this node believes of its roster, nor raise an alarm per copy.
            let checkpoints = (checkpoints.into_iter())
                .filter(|(i, _)| {
                    matches!(
                        applied.outcomes.get(*i),
                        Some(Outcome::Appended | Outcome::Held)
                    )
                })
                .map(|(_, c)| c)
                .collect();
            me.take_checkpoints(checkpoints);
            me.settle_wants(watched, &applied)?;
            report.appended = applied.released.len();
            for o in applied.outcomes {
                match o {
                    Outcome::Appended | Outcome::PayloadFilled => report.appended += 1,
                    Outcome::Duplicate => report.duplicates += 1,
                    Outcome::Held => report.held += 1,
                    Outcome::Rejected(e) => report.chain_rejected.push(e),
                }
            }
            me.remember_refused(&report.refused);
            Ok(report)
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
        if report.appended > 0 {
            self.bump();
        }
        self.resend_if_hold_expired();
        Ok(report)
    }

    /// Restarts every link when any write dropped entries from the hold queue since the last
    /// restart for it, at most once per [`HOLD_RESEND_EVERY`]: their senders count them
    /// delivered, so only restarted links send them again, or the origin's every later entry
    /// waits on the gap. Bounded in rate, since a member can make an entry expire at will
    /// (one past a seq it never sends); one that comes too soon is acted on when the wait is
    /// over, by a timer, not at the next received batch, which a quiet mesh may never send.
    pub(crate) fn resend_if_hold_expired(self: &Arc<Self>) {
        let total = self.store.hold_expired_count();
        let mut r = crate::rotation::lock(&self.hold_resend);
        if total <= r.seen {
            return;
        }
        let since = r.last.map(|at| at.elapsed());
        match since {
            Some(since) if since < HOLD_RESEND_EVERY => {
                if !r.timer_set {
                    r.timer_set = true;
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(HOLD_RESEND_EVERY - since) => {}
                            _ = me.stopped() => return,
                        }
                        crate::rotation::lock(&me.hold_resend).timer_set = false;
                        me.resend_if_hold_expired();
                    });
                }
            }
            _ => {
                r.seen = total;
                r.last = Some(std::time::Instant::now());
                tracing::warn!("entries held for their predecessors expired: links restart so peers send them again");
                self.unverified.ask_resend();
            }
        }
    }

    /// Keeps entries whose key is unknown until the key list changes; how many were kept.
    fn keep_unverified(&self, unknown: Vec<UnknownKey>) -> usize {
        let limits = self.unverified_limits();
        let keys = self.keys();
        let mut kept = 0;
        for u in unknown {
            let (origin, seq, key_id) = (u.origin.clone(), u.seq, u.key_id);
            let member = keys.is_member(&origin);
            match self
                .unverified
                .add(u.origin, u.seq, u.key_id, u.entry, &limits, member)
            {
                Added::Kept { new_key } => {
                    kept += 1;
                    if new_key {
                        tracing::warn!(%origin, seq, key = %key_id, "entries signed with a key this node's key list does not hold: kept until the list has it");
                    }
                }
                // Once per origin and key: a peer filling the queue on purpose must not fill
                // the log as well.
                Added::Dropped { first: true } => {
                    tracing::warn!(%origin, seq, key = %key_id, "no room for more entries waiting for their key: dropped (sent again when the link restarts)")
                }
                Added::Dropped { first: false } => {
                    tracing::debug!(%origin, seq, key = %key_id, "no room for more entries waiting for their key: dropped")
                }
            }
        }
        kept
    }

    /// Updates the payloads owed after an apply: stubs logged are wanted, filled ones no longer.
    fn settle_wants(
        &self,
        watched: Vec<(usize, EntryKey, bool)>,
        applied: &ApplyReport,
    ) -> Result<(), NodeError> {
        for (i, key, stub) in watched {
            match applied.outcomes.get(i) {
                Some(Outcome::Appended) if stub => self.wants.add(key),
                // A full entry fills the stub, or finds the payload already held (a want the
                // start-up scan added just as the payload arrived).
                Some(Outcome::PayloadFilled | Outcome::Duplicate) if !stub => {
                    self.wants.remove(&key)
                }
                _ => {}
            }
        }
        // Entries held for a gap and logged now: owed stubs among them are wanted too.
        let hub = self.cfg.role == Role::Hub;
        for (origin, seq) in &applied.released {
            for raw in self.store.range(origin, *seq, 1)? {
                if crate::wants::owed_stub(&raw, &self.org, hub)?.is_some() {
                    self.wants.add((origin.clone(), *seq));
                }
            }
        }
        Ok(())
    }

    /// The entries of a batch that change what this node is owed, by position: stubs it may
    /// hold in full (`true`), and full entries for stubs it is waiting on (`false`).
    fn stubs_to_watch(&self, batch: &[VerifiedEntry]) -> Vec<(usize, EntryKey, bool)> {
        let hub = self.cfg.role == Role::Hub;
        let waiting = !self.wants.is_empty();
        let key = |e: &VerifiedEntry| (e.header().origin.clone(), e.header().seq);
        batch
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                if !e.has_payload() {
                    owed(e.header(), &self.org, hub).then(|| (i, key(e), true))
                } else if waiting && self.wants.contains(&key(e)) {
                    Some((i, key(e), false))
                } else {
                    None
                }
            })
            .collect()
    }
}

/// The members' roster checkpoints in a verified batch, each with its entry's place in it.
fn received_checkpoints(batch: &[VerifiedEntry]) -> Vec<(usize, crate::checkpoint::Received)> {
    batch
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e.control() {
            Some(Control::Checkpoint(c)) => Some((
                i,
                crate::checkpoint::Received {
                    member: e.header().origin.clone(),
                    seq: e.header().seq,
                    issued_at_unix_ms: e.header().issued_at_unix_ms,
                    checkpoint: c.clone(),
                },
            )),
            _ => None,
        })
        .collect()
}

/// Verifies received entries under `keys` (all cores): good, unknown key, refused.
pub fn check_entries(
    raws: Vec<pb::SignedEntry>,
    keys: Arc<StaticKeys>,
    cfg: &VerifyConfig,
) -> Checked {
    let mut checked = Checked::default();
    checked.good.reserve(raws.len());
    // Entries share their buffers (`Bytes`): keeping the batch to hand back the entries whose
    // key is unknown costs a reference count each.
    let kept = raws.clone();
    let results = verify_batch_parallel(raws, keys.as_ref(), cfg, VERIFY_CHUNK);
    for (r, raw) in results.into_iter().zip(kept) {
        match r {
            Ok(v) => checked.good.push(v),
            Err(VerifyError::UnknownKey {
                origin,
                seq,
                key_id,
            }) => checked.unknown_key.push(UnknownKey {
                origin,
                seq,
                key_id,
                entry: raw,
            }),
            Err(e) => checked.refused.push(e),
        }
    }
    checked.keys = Some(keys);
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).expect("org id")
    }

    #[test]
    fn batches_merge_in_order_and_only_when_checked_under_one_key_list() {
        let keys = Arc::new(StaticKeys::default());
        let checked = |held: &[(&str, u64)], keys: Option<&Arc<StaticKeys>>| Checked {
            keys: keys.cloned(),
            held_already: held.iter().map(|(o, s)| (org(o), *s)).collect(),
            ..Checked::default()
        };
        let mut first = checked(&[("AU", 1)], Some(&keys));
        let second = checked(&[("AU", 2), ("BR", 1)], Some(&keys));
        let other_list = checked(&[], Some(&Arc::new(StaticKeys::default())));
        assert!(first.same_keys(&second));
        assert!(
            !first.same_keys(&other_list),
            "an equal list, another version"
        );
        assert!(!first.same_keys(&checked(&[], None)));
        assert!(checked(&[], None).same_keys(&checked(&[], None)));
        first.merge(second);
        assert_eq!(
            first.held_already,
            [(org("AU"), 1), (org("AU"), 2), (org("BR"), 1)]
        );
        assert!(Arc::ptr_eq(first.keys.as_ref().expect("keys"), &keys));
    }
}
