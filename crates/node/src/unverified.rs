//! Entries received that cannot be verified yet: signed with a key this node's key list does not
//! hold. That is not proof of forgery (a member was added, or rotated its key, and this node's
//! list is behind), so such an entry is kept, bounded, and checked again whenever the key list
//! changes, while the link that brought it stays up. Only an entry proved bad (a known key, a
//! signature that fails) ends a link.
//!
//! Bounded because peers feed it: entries per origin, bytes in all, and time; what does not fit
//! is dropped and comes again when the link restarts (the peer's view of this node comes from
//! its hello then), which the next key-list change makes happen (`resends`). Status shows
//! what waits, per origin and key.

use std::collections::BTreeMap;
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
}

#[derive(Default)]
struct Inner {
    by_origin: BTreeMap<OrgId, BTreeMap<Slot, Waiting>>,
    bytes: usize,
    /// When the queue was last scanned for entries past [`UNVERIFIED_TTL`].
    scanned: Option<Instant>,
    /// (origin, key) pairs some of whose entries were dropped for lack of room: at most
    /// [`SUMMARY_ROWS`] (a peer chooses origins and key ids freely), the rest counted in
    /// `dropped_elsewhere`.
    dropped: BTreeMap<(OrgId, KeyId), u64>,
    /// Entries dropped under pairs beyond those `dropped` names.
    dropped_elsewhere: u64,
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
    /// Counts a dropped entry; whether its (origin, key) is newly named.
    fn note_dropped(&mut self, origin: OrgId, key_id: KeyId) -> bool {
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
        let mut freed = 0;
        let mut expired = Vec::new();
        self.by_origin.retain(|origin, queue| {
            queue.retain(|_, w| {
                let keep = now.saturating_duration_since(w.since) <= UNVERIFIED_TTL;
                if !keep {
                    freed += size(&w.entry);
                    expired.push((origin.clone(), w.key_id));
                }
                keep
            });
            !queue.is_empty()
        });
        self.bytes = self.bytes.saturating_sub(freed);
        // Counted as dropped, as for lack of room: the sender counts them delivered, so when
        // the key comes (a roster published after an hour) links restart and they are sent
        // again, instead of every later entry of the origin waiting on a gap.
        for (origin, key_id) in expired {
            self.note_dropped(origin, key_id);
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

    /// Keeps `entry` (origin, seq and key id as its checked header says). A second copy of a
    /// waiting entry replaces nothing; a different entry claiming the same (origin, seq) waits
    /// beside it (up to [`CANDIDATES_PER_SEQ`]), so whichever verifies later is taken.
    pub fn add(
        &self,
        origin: OrgId,
        seq: u64,
        key_id: KeyId,
        entry: pb::SignedEntry,
        limits: &UnverifiedLimits,
    ) -> Added {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        let bytes = size(&entry);
        let slot = (seq, header_hash(&entry.header));
        let queue = inner.by_origin.get(&origin);
        if queue.is_some_and(|q| q.contains_key(&slot)) {
            return Added::Kept { new_key: false };
        }
        let new_key = !queue.is_some_and(|q| q.values().any(|w| w.key_id == key_id));
        let queued = queue.map_or(0, BTreeMap::len);
        let claims = queue.map_or(0, |q| {
            q.range((seq, [0; 32])..=(seq, [u8::MAX; 32])).count()
        });
        if queued >= limits.per_origin
            || claims >= CANDIDATES_PER_SEQ
            || inner.bytes + bytes > limits.total_bytes
        {
            return Added::Dropped {
                first: inner.note_dropped(origin, key_id),
            };
        }
        inner.bytes += bytes;
        inner.by_origin.entry(origin).or_default().insert(
            slot,
            Waiting {
                // Kept up to an hour: not a slice of the frame it came in.
                entry: entry.detached(),
                key_id,
                since: Instant::now(),
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
        std::mem::take(&mut inner.by_origin)
            .into_values()
            .flat_map(BTreeMap::into_values)
            .map(|w| w.entry)
            .collect()
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

    /// Forgets what was dropped (after the key list changed); whether anything was.
    pub fn clear_dropped(&self) -> bool {
        let mut inner = self.lock();
        let any = !inner.dropped.is_empty() || inner.dropped_elsewhere > 0;
        inner.dropped.clear();
        inner.dropped_elsewhere = 0;
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
mod tests {
    use super::*;

    fn entry(n: usize) -> pb::SignedEntry {
        entry_marked(n, 0)
    }

    /// An entry of `n` header bytes, told apart from others of that size by `mark`.
    fn entry_marked(n: usize, mark: u8) -> pb::SignedEntry {
        let mut header = vec![0; n];
        if let Some(first) = header.first_mut() {
            *first = mark;
        }
        pb::SignedEntry {
            header: header.into(),
            signature: vec![0; 64].into(),
            payload: None,
        }
    }

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).unwrap()
    }

    #[test]
    fn a_waiting_entry_does_not_keep_the_frame_it_came_in() {
        // As decoded from a frame: every field a slice of the frame's one buffer.
        let frame = prost::bytes::Bytes::from(vec![5u8; 1 << 20]);
        let sliced = pb::SignedEntry {
            header: frame.slice(0..100),
            signature: frame.slice(100..164),
            payload: Some(frame.slice(200..300)),
        };
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 2,
            total_bytes: 1000,
        };
        q.add(org("AU"), 1, KeyId([1; 8]), sliced.clone(), &limits);
        let kept = q.take_all();
        assert_eq!(kept, [sliced]);
        let in_frame = frame.as_ptr_range();
        let fields = [&kept[0].header, &kept[0].signature];
        for field in fields.into_iter().chain(kept[0].payload.as_ref()) {
            assert!(
                !in_frame.contains(&field.as_ptr()),
                "a field still points into the frame"
            );
        }
    }

    #[test]
    fn bounded_per_origin_and_in_bytes_and_says_what_was_dropped() {
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 2,
            total_bytes: 1000,
        };
        let k = KeyId([1; 8]);
        let kept = |new_key| Added::Kept { new_key };
        assert_eq!(q.add(org("AU"), 1, k, entry(100), &limits), kept(true));
        assert_eq!(q.add(org("AU"), 2, k, entry(100), &limits), kept(false));
        assert_eq!(q.add(org("AU"), 2, k, entry(100), &limits), kept(false));
        let dropped = |first| Added::Dropped { first };
        assert_eq!(q.add(org("AU"), 3, k, entry(100), &limits), dropped(true));
        assert_eq!(q.add(org("AU"), 4, k, entry(100), &limits), dropped(false));
        assert_eq!(q.add(org("BR"), 1, k, entry(100), &limits), kept(true));
        assert_eq!(q.add(org("FR"), 1, k, entry(900), &limits), dropped(true));
        assert_eq!(q.len(), 3);
        let rows = q.summary();
        let au = rows.iter().find(|r| r.origin == "AU").unwrap();
        assert_eq!((au.entries, au.dropped), (2, true));
        let fr = rows.iter().find(|r| r.origin == "FR").unwrap();
        assert_eq!((fr.entries, fr.dropped), (0, true));
        assert_eq!(q.take_all().len(), 3);
        assert!(q.is_empty());
        assert_eq!(q.add(org("FR"), 1, k, entry(900), &limits), kept(true));
    }

    #[test]
    fn made_up_entries_at_a_seq_leave_room_for_the_origins_own() {
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 100,
            total_bytes: 100_000,
        };
        let (fake, real) = (KeyId([9; 8]), KeyId([1; 8]));
        // Someone relays a made-up entry at AU's next seq first.
        assert_eq!(
            q.add(org("AU"), 5, fake, entry_marked(100, 1), &limits),
            Added::Kept { new_key: true }
        );
        // AU's own entry at that seq, under its new key, still waits.
        assert_eq!(
            q.add(org("AU"), 5, real, entry_marked(100, 2), &limits),
            Added::Kept { new_key: true }
        );
        assert_eq!(
            q.add(org("AU"), 5, real, entry_marked(100, 2), &limits),
            Added::Kept { new_key: false }
        );
        assert_eq!(q.len(), 2);
        // Claims on one seq are bounded: past them, a new one is dropped and said so.
        for mark in 3..=4 {
            assert_eq!(
                q.add(org("AU"), 5, fake, entry_marked(100, mark), &limits),
                Added::Kept { new_key: false }
            );
        }
        assert_eq!(
            q.add(org("AU"), 5, fake, entry_marked(100, 5), &limits),
            Added::Dropped { first: true }
        );
        assert_eq!(
            q.add(org("AU"), 6, fake, entry_marked(100, 5), &limits),
            Added::Kept { new_key: false }
        );
        let headers: Vec<u8> = q.take_all().iter().map(|e| e.header[0]).collect();
        assert_eq!(headers.len(), 5);
        assert!(
            headers.contains(&2),
            "the origin's own entry is checked again"
        );
    }

    #[test]
    fn an_entry_that_waited_past_its_time_counts_as_dropped_so_it_is_sent_again() {
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 4,
            total_bytes: 10_000,
        };
        q.add(org("AU"), 1, KeyId([1; 8]), entry(100), &limits);
        let later = Instant::now() + UNVERIFIED_TTL + Duration::from_secs(120);
        q.lock().expire(later);
        assert!(q.take_all().is_empty());
        assert!(
            q.clear_dropped(),
            "the key's arrival restarts the links, so the peer sends it again"
        );
    }

    #[test]
    fn what_was_dropped_is_remembered_for_a_bounded_number_of_origins_and_keys() {
        // A peer choosing a new origin and key id for every entry it sends a full queue.
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 1,
            total_bytes: 200,
        };
        let k = KeyId([1; 8]);
        assert_eq!(
            q.add(org("AU"), 1, k, entry(100), &limits),
            Added::Kept { new_key: true }
        );
        let pairs = 10 * SUMMARY_ROWS;
        for i in 0..pairs {
            let origin = org(&format!("X{i}"));
            let key = KeyId((i as u64).to_be_bytes());
            let first = i < SUMMARY_ROWS;
            assert_eq!(
                q.add(origin, 1, key, entry(150), &limits),
                Added::Dropped { first }
            );
        }
        let rows = q.summary();
        assert_eq!(rows.len(), SUMMARY_ROWS);
        assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS);
        assert_eq!(q.dropped_elsewhere(), (pairs - SUMMARY_ROWS) as u64);
        let resends = q.resends();
        assert!(q.clear_dropped(), "entries were dropped");
        assert!(!q.clear_dropped(), "nothing since");
        assert_eq!(q.dropped_elsewhere(), 0);
        q.ask_resend();
        assert!(resends.has_changed().unwrap());
        assert_eq!(q.summary().len(), 1);
    }
}
