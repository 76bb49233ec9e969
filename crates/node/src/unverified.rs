//! Entries received that cannot be verified yet: signed with a key this node's key list does not
//! hold. That is not proof of forgery (a member was added, or rotated its key, and this node's
//! list is behind), so such an entry is kept, bounded, and checked again whenever the key list
//! changes, while the link that brought it stays up. Only an entry proved bad (a known key, a
//! signature that fails) ends a link.
//!
//! Bounded because peers feed it: entries and a quarter of the bytes per origin (one share for
//! all origins the key list does not name, whose names cost a peer nothing), bytes in all, and
//! time (counted from an entry's first arrival, not from its last recheck); what does not fit
//! is dropped and comes again when the link restarts (the peer's view of this node comes from
//! its hello then), which the next key-list change makes happen (`resends`). Status shows
//! what waits, per origin and key.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use intelmesh_core::entry::{header_hash, Hash};
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;

/// How long an entry waits for its key before it is dropped.
pub const UNVERIFIED_TTL: Duration = Duration::from_secs(60 * 60);
/// Rows of the status summary (origin, key); the rest are counted in the last row.
const SUMMARY_ROWS: usize = 64;
/// Different entries kept for one (origin, seq): anyone may relay an entry under a key id
/// nobody can check yet, so the origin's own entry must find room beside made-up ones.
const CANDIDATES_PER_SEQ: usize = 4;

/// Where a waiting entry sits: its seq, then its header's hash (several may claim one seq).
type Slot = (u64, Hash);

/// The most of the queue's bytes one share may take: a peer filling it under one origin (its
/// own, or a made-up one) leaves room for the others' entries.
const SHARE_OF_BYTES: usize = 4;

/// Whose share an entry counts against: its origin's when the key list names that origin,
/// else (`None`) the one share of every origin it does not.
type Share = Option<OrgId>;

/// What one share holds.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    entries: usize,
    bytes: usize,
}

/// Bounds of the queue (from the node's `Limits`).
#[derive(Clone, Copy, Debug)]
pub struct UnverifiedLimits {
    pub per_origin: usize,
    pub total_bytes: usize,
}

struct Waiting {
    entry: pb::SignedEntry,
    key_id: KeyId,
    since: Instant,
    /// Counted against its origin's share (else the share of origins not listed).
    member: bool,
}

#[derive(Default)]
struct Inner {
    by_origin: BTreeMap<OrgId, BTreeMap<Slot, Waiting>>,
    bytes: usize,
    shares: BTreeMap<Share, Usage>,
    /// When each entry the last [`Unverified::take_all`] took had first arrived: one kept
    /// again after its recheck keeps its time, so rechecks do not keep it forever.
    arrived: HashMap<(OrgId, Slot), Instant>,
    /// When the queue was last scanned for entries past [`UNVERIFIED_TTL`].
    scanned: Option<Instant>,
    /// (origin, key) pairs some of whose entries were dropped for lack of room: at most
    /// [`SUMMARY_ROWS`] (a peer chooses origins and key ids freely), the rest counted in
    /// `dropped_elsewhere`.
    dropped: BTreeMap<(OrgId, KeyId), u64>,
    /// Entries dropped under pairs beyond those `dropped` names.
    dropped_elsewhere: u64,
    /// Entries of origins the key list does not name that were dropped: counted, never named
    /// (a peer makes such names up at will, and would fill the rows with them for good).
    dropped_unlisted: u64,
}

/// What [`Unverified::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Kept; `new_key` when no entry of this origin was waiting for this key before.
    Kept { new_key: bool },
    /// No room: dropped (it comes again when the link restarts); `first` when none of this
    /// origin and key was dropped before (since the key list last changed).
    Dropped { first: bool },
}

impl Inner {
    /// Counts a dropped entry (of an origin the key list names: `member`); whether its
    /// (origin, key) is newly named, or for an unlisted origin whether it is the first since
    /// the links last restarted.
    fn note_dropped(&mut self, origin: OrgId, key_id: KeyId, member: bool) -> bool {
        if !member {
            self.dropped_unlisted += 1;
            return self.dropped_unlisted == 1;
        }
        let pair = (origin, key_id);
        if let Some(n) = self.dropped.get_mut(&pair) {
            *n += 1;
            return false;
        }
        if self.dropped.len() >= SUMMARY_ROWS {
            self.dropped_elsewhere += 1;
            return false;
        }
        self.dropped.insert(pair, 1);
        true
    }

    /// Drops entries that waited longer than [`UNVERIFIED_TTL`], scanning at most once a
    /// minute (an entry leaves at most a minute late; a full queue costs no scan per entry).
    fn expire(&mut self, now: Instant) {
        if self
            .scanned
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(60))
        {
            return;
        }
        self.scanned = Some(now);
        let mut expired = Vec::new();
        self.by_origin.retain(|origin, queue| {
            queue.retain(|_, w| {
                let keep = now.saturating_duration_since(w.since) <= UNVERIFIED_TTL;
                if !keep {
                    expired.push((origin.clone(), w.key_id, w.member, size(&w.entry)));
                }
                keep
            });
            !queue.is_empty()
        });
        for (origin, _, member, bytes) in &expired {
            self.bytes = self.bytes.saturating_sub(*bytes);
            let share = member.then(|| origin.clone());
            if let Some(usage) = self.shares.get_mut(&share) {
                usage.entries = usage.entries.saturating_sub(1);
                usage.bytes = usage.bytes.saturating_sub(*bytes);
                if usage.entries == 0 {
                    self.shares.remove(&share);
                }
            }
        }
        // Counted as dropped, as for lack of room: the sender counts them delivered, so when
        // the key comes (a roster published after an hour) links restart and they are sent
        // again, instead of every later entry of the origin waiting on a gap.
        for (origin, key_id, member, _) in expired {
            self.note_dropped(origin, key_id, member);
        }
    }
}

/// The queue of entries waiting for their signing key.
#[derive(Default)]
pub struct Unverified {
    inner: Mutex<Inner>,
    /// Raised when entries were dropped for lack of room and the key list then changed: every
    /// link restarts, so its peer sends again from this node's hello what this node lacks (a
    /// sender counts what it sent as delivered, so it would not send them otherwise).
    resend: tokio::sync::watch::Sender<u64>,
}

fn size(e: &pb::SignedEntry) -> usize {
    e.header.len() + e.signature.len() + e.payload.as_ref().map_or(0, |p| p.len())
}

impl Unverified {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Whole entries go in and out under the lock; a panic elsewhere leaves it usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `entry` (origin, seq and key id as its checked header says; `member` when the
    /// key list names its origin). A second copy of a waiting entry replaces nothing; a
    /// different entry claiming the same (origin, seq) waits beside it (up to
    /// [`CANDIDATES_PER_SEQ`]), so whichever verifies later is taken.
    pub fn add(
        &self,
        origin: OrgId,
        seq: u64,
        key_id: KeyId,
        entry: pb::SignedEntry,
        limits: &UnverifiedLimits,
        member: bool,
    ) -> Added {
        let mut inner = self.lock();
        let now = Instant::now();
        inner.expire(now);
        let bytes = size(&entry);
        let slot = (seq, header_hash(&entry.header));
        let queue = inner.by_origin.get(&origin);
        if queue.is_some_and(|q| q.contains_key(&slot)) {
            return Added::Kept { new_key: false };
        }
        let new_key = !queue.is_some_and(|q| q.values().any(|w| w.key_id == key_id));
        let claims = queue.map_or(0, |q| {
            q.range((seq, [0; 32])..=(seq, [u8::MAX; 32])).count()
        });
        let share = member.then(|| origin.clone());
        let used = inner.shares.get(&share).copied().unwrap_or_default();
        if used.entries >= limits.per_origin
            || used.bytes + bytes > limits.total_bytes / SHARE_OF_BYTES
            || claims >= CANDIDATES_PER_SEQ
            || inner.bytes + bytes > limits.total_bytes
        {
            return Added::Dropped {
                first: inner.note_dropped(origin, key_id, member),
            };
        }
        inner.bytes += bytes;
        let usage = inner.shares.entry(share).or_default();
        usage.entries += 1;
        usage.bytes += bytes;
        let since = inner.arrived.remove(&(origin.clone(), slot)).unwrap_or(now);
        inner.by_origin.entry(origin).or_default().insert(
            slot,
            Waiting {
                // Kept up to an hour: not a slice of the frame it came in.
                entry: entry.detached(),
                key_id,
                since,
                member,
            },
        );
        Added::Kept { new_key }
    }

    /// Takes every waiting entry out (in origin, seq order), to be verified again, after
    /// dropping those that waited longer than [`UNVERIFIED_TTL`].
    pub fn take_all(&self) -> Vec<pb::SignedEntry> {
        let mut inner = self.lock();
        inner.scanned = None;
        inner.expire(Instant::now());
        inner.bytes = 0;
        inner.shares.clear();
        let mut arrived = HashMap::new();
        let mut taken = Vec::new();
        for (origin, queue) in std::mem::take(&mut inner.by_origin) {
            for (slot, w) in queue {
                arrived.insert((origin.clone(), slot), w.since);
                taken.push(w.entry);
            }
        }
        inner.arrived = arrived;
        taken
    }

    pub fn is_empty(&self) -> bool {
        self.lock().by_origin.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().by_origin.values().map(BTreeMap::len).sum()
    }

    /// What waits, per origin and key, for status.
    pub fn summary(&self) -> Vec<pb::Unverified> {
        let inner = self.lock();
        let mut rows: BTreeMap<(OrgId, KeyId), u64> = BTreeMap::new();
        for (origin, queue) in &inner.by_origin {
            for w in queue.values() {
                *rows.entry((origin.clone(), w.key_id)).or_default() += 1;
            }
        }
        for key in inner.dropped.keys() {
            rows.entry(key.clone()).or_default();
        }
        rows.into_iter()
            .take(SUMMARY_ROWS)
            .map(|((origin, key_id), entries)| pb::Unverified {
                dropped: inner.dropped.contains_key(&(origin.clone(), key_id)),
                origin: origin.to_string(),
                key_id: key_id.to_string(),
                entries,
            })
            .collect()
    }

    /// After the key list changed: forgets what was dropped under the (origin, key) pairs
    /// `signable` now says the list holds, and under pairs not named (those beyond the
    /// summary's rows); whether any such was, so that links restart and peers send them again.
    /// Pairs whose key is still unknown stay: a restart would bring them only to wait again,
    /// and a peer sending made-up keys on purpose would restart every link at each change.
    ///
    /// Entries of unlisted origins that were dropped count only when the list gained a member
    /// (`new_member`): only then can one of them verify.
    pub fn clear_dropped(
        &self,
        signable: impl Fn(&OrgId, &KeyId) -> bool,
        new_member: bool,
    ) -> bool {
        let mut inner = self.lock();
        let before = inner.dropped.len();
        inner
            .dropped
            .retain(|(origin, key_id), _| !signable(origin, key_id));
        let unlisted = new_member && inner.dropped_unlisted > 0;
        let any = inner.dropped.len() < before || inner.dropped_elsewhere > 0 || unlisted;
        inner.dropped_elsewhere = 0;
        if unlisted {
            inner.dropped_unlisted = 0;
        }
        any
    }

    /// Asks every link to restart, so that peers send again what was dropped.
    pub fn ask_resend(&self) {
        self.resend.send_modify(|n| *n += 1);
    }

    /// Changes when [`Unverified::ask_resend`] is called (links watch it).
    pub fn resends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resend.subscribe()
    }

    /// Entries dropped under (origin, key) pairs beyond those the summary names.
    #[cfg(test)]
    fn dropped_elsewhere(&self) -> u64 {
        self.lock().dropped_elsewhere
    }
}

#[cfg(test)]
#[path = "unverified_tests.rs"]
mod tests;
