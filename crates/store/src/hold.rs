//! The hold queue: verified entries that arrived before their predecessors, kept in memory
//! (never acknowledged) until the gap closes.
//!
//! It is fed by peers, so it is bounded four ways: entries per origin, bytes in all, bytes per
//! origin (a share of the whole, so one origin's entries, valid ones included, cannot leave
//! no room for the others'), and time (an entry whose gap does not close within the
//! configured time is dropped; the sync protocol offers it again). An entry leaves the queue as soon as its origin's log reaches its seq,
//! whether it is appended then, or turns out to be a duplicate, an equivocation or a chain
//! break (the store then keeps the proof).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use intelmesh_core::{OrgId, VerifiedEntry};

struct Held {
    entry: VerifiedEntry,
    since: Instant,
}

/// Limits of the hold queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HoldLimits {
    pub(crate) per_origin: usize,
    pub(crate) total_bytes: usize,
    pub(crate) ttl: Duration,
}

/// The most of the queue's bytes one origin's entries may take: a quarter.
const ORIGIN_SHARE_DIVISOR: usize = 4;

/// One origin's held entries.
#[derive(Default)]
struct Origin {
    entries: BTreeMap<u64, Held>,
    bytes: usize,
}

#[derive(Default)]
pub(crate) struct HoldQueue {
    by_origin: HashMap<OrgId, Origin>,
    bytes: usize,
    /// When the queue was last scanned for expired entries.
    scanned: Option<Instant>,
}

/// What became of an entry offered to the queue.
#[derive(Debug)]
pub(crate) enum Offer {
    Held,
    /// The same entry is already held.
    AlreadyHeld,
    /// Another entry is held at this seq: the origin signed both. The offered entry comes back.
    Conflicts(Box<VerifiedEntry>),
    Full,
}

fn size(e: &VerifiedEntry) -> usize {
    let raw = e.raw();
    raw.header.len() + raw.signature.len() + raw.payload.as_ref().map_or(0, |p| p.len())
}

impl HoldQueue {
    pub(crate) fn offer(&mut self, e: VerifiedEntry, limits: &HoldLimits, now: Instant) -> Offer {
        let (origin, seq) = (&e.header().origin, e.header().seq);
        let held_here = self.by_origin.get(origin);
        if let Some(held) = held_here.and_then(|q| q.entries.get(&seq)) {
            return if held.entry.hash() == e.hash() {
                Offer::AlreadyHeld
            } else {
                Offer::Conflicts(Box::new(e))
            };
        }
        let (n, origin_bytes) = held_here.map_or((0, 0), |q| (q.entries.len(), q.bytes));
        let bytes = size(&e);
        let share = limits.total_bytes / ORIGIN_SHARE_DIVISOR;
        if n >= limits.per_origin
            || self.bytes + bytes > limits.total_bytes
            || origin_bytes + bytes > share
        {
            return Offer::Full;
        }
        self.bytes += bytes;
        let q = self.by_origin.entry(origin.clone()).or_default();
        q.bytes += bytes;
        q.entries.insert(
            seq,
            Held {
                // Held for minutes: not a slice of the frame it came in.
                entry: e.detached(),
                since: now,
            },
        );
        Offer::Held
    }

    /// The entry held at (origin, seq).
    pub(crate) fn get(&self, origin: &OrgId, seq: u64) -> Option<&VerifiedEntry> {
        self.by_origin
            .get(origin)?
            .entries
            .get(&seq)
            .map(|h| &h.entry)
    }

    /// Takes out the lowest held entry of `origin` if its seq is at most `upto`.
    pub(crate) fn take_first_upto(&mut self, origin: &OrgId, upto: u64) -> Option<VerifiedEntry> {
        let queue = self.by_origin.get_mut(origin)?;
        let (&seq, _) = queue.entries.first_key_value()?;
        if seq > upto {
            return None;
        }
        let held = queue.entries.remove(&seq)?;
        let freed = size(&held.entry);
        queue.bytes = queue.bytes.saturating_sub(freed);
        if queue.entries.is_empty() {
            self.by_origin.remove(origin);
        }
        self.bytes = self.bytes.saturating_sub(freed);
        Some(held.entry)
    }

    /// Drops entries held longer than `ttl`; returns how many. Every write calls it, so it
    /// scans the queue only when a quarter of `ttl` passed since its last scan: an entry then
    /// leaves at most a quarter late, and a full queue costs no scan per batch.
    pub(crate) fn expire(&mut self, ttl: Duration, now: Instant) -> usize {
        if self
            .scanned
            .is_some_and(|at| now.saturating_duration_since(at) < ttl / 4)
        {
            return 0;
        }
        self.scanned = Some(now);
        let mut dropped = 0;
        let mut freed = 0;
        self.by_origin.retain(|_, queue| {
            let mut freed_here = 0;
            queue.entries.retain(|_, h| {
                let keep = now.saturating_duration_since(h.since) <= ttl;
                if !keep {
                    dropped += 1;
                    freed_here += size(&h.entry);
                }
                keep
            });
            queue.bytes = queue.bytes.saturating_sub(freed_here);
            freed += freed_here;
            !queue.entries.is_empty()
        });
        self.bytes = self.bytes.saturating_sub(freed);
        dropped
    }

    /// Drops the entries of `origin` held at seqs after `seq`; returns how many.
    pub(crate) fn drop_after(&mut self, origin: &OrgId, seq: u64) -> usize {
        let Some(queue) = self.by_origin.get_mut(origin) else {
            return 0;
        };
        let dropped = queue.entries.split_off(&seq.saturating_add(1));
        let freed: usize = dropped.values().map(|h| size(&h.entry)).sum();
        queue.bytes = queue.bytes.saturating_sub(freed);
        if queue.entries.is_empty() {
            self.by_origin.remove(origin);
        }
        self.bytes = self.bytes.saturating_sub(freed);
        dropped.len()
    }

    /// Drops the entries of `origin` held at seqs after `seq` that the key `public_key` signed;
    /// returns how many.
    pub(crate) fn drop_signed_after(
        &mut self,
        origin: &OrgId,
        seq: u64,
        public_key: &[u8; 32],
    ) -> usize {
        let Some(queue) = self.by_origin.get_mut(origin) else {
            return 0;
        };
        let mut freed = 0;
        let before = queue.entries.len();
        queue.entries.retain(|&at, h| {
            let drop = at > seq && h.entry.key().as_bytes() == public_key;
            if drop {
                freed += size(&h.entry);
            }
            !drop
        });
        let dropped = before - queue.entries.len();
        queue.bytes = queue.bytes.saturating_sub(freed);
        if queue.entries.is_empty() {
            self.by_origin.remove(origin);
        }
        self.bytes = self.bytes.saturating_sub(freed);
        dropped
    }

    /// Drops every held entry `drop` picks; returns how many.
    pub(crate) fn drop_where(&mut self, mut drop: impl FnMut(&VerifiedEntry) -> bool) -> usize {
        let mut dropped = 0;
        for queue in self.by_origin.values_mut() {
            let mut freed = 0;
            queue.entries.retain(|_, h| {
                let out = drop(&h.entry);
                if out {
                    freed += size(&h.entry);
                    dropped += 1;
                }
                !out
            });
            queue.bytes = queue.bytes.saturating_sub(freed);
            self.bytes = self.bytes.saturating_sub(freed);
        }
        self.by_origin.retain(|_, q| !q.entries.is_empty());
        dropped
    }

    pub(crate) fn len(&self) -> usize {
        self.by_origin.values().map(|q| q.entries.len()).sum()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
