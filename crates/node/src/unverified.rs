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
            total_bytes: 2000,
        };
        q.add(org("AU"), 1, KeyId([1; 8]), sliced.clone(), &limits, true);
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
            total_bytes: 2000,
        };
        let k = KeyId([1; 8]);
        let kept = |new_key| Added::Kept { new_key };
        let add = |origin: &str, seq, n| q.add(org(origin), seq, k, entry(n), &limits, true);
        assert_eq!(add("AU", 1, 100), kept(true));
        assert_eq!(add("AU", 2, 100), kept(false));
        assert_eq!(add("AU", 2, 100), kept(false));
        let dropped = |first| Added::Dropped { first };
        // Past the entries of one origin.
        assert_eq!(add("AU", 3, 100), dropped(true));
        assert_eq!(add("AU", 4, 100), dropped(false));
        assert_eq!(add("BR", 1, 100), kept(true));
        // Past FR's share of the bytes (a quarter: 500).
        assert_eq!(add("FR", 1, 400), kept(true));
        assert_eq!(add("FR", 2, 100), dropped(true));
        // Past the queue's bytes.
        assert_eq!(add("CA", 1, 400), kept(true));
        assert_eq!(add("DE", 1, 400), kept(true));
        assert_eq!(add("NL", 1, 400), dropped(true));
        assert_eq!(q.len(), 6);
        let rows = q.summary();
        let row = |o: &str| {
            let r = rows.iter().find(|r| r.origin == o).unwrap();
            (r.entries, r.dropped)
        };
        assert_eq!(row("AU"), (2, true));
        assert_eq!(row("FR"), (1, true));
        assert_eq!(row("NL"), (0, true));
        assert_eq!(q.take_all().len(), 6);
        assert!(q.is_empty());
        assert_eq!(add("FR", 2, 100), kept(true));
    }

    #[test]
    fn one_origin_takes_at_most_its_share_and_unlisted_origins_share_one() {
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 100,
            total_bytes: 4000,
        };
        let k = KeyId([1; 8]);
        let add =
            |origin: &str, seq, member| q.add(org(origin), seq, k, entry(400), &limits, member);
        // A member's share is a quarter of the bytes (two entries of 400 and their signatures).
        assert!(matches!(add("AU", 1, true), Added::Kept { .. }));
        assert!(matches!(add("AU", 2, true), Added::Kept { .. }));
        assert!(matches!(add("AU", 3, true), Added::Dropped { .. }));
        // Made-up origins, each new, share one quarter between them.
        assert!(matches!(add("X1", 1, false), Added::Kept { .. }));
        assert!(matches!(add("X2", 1, false), Added::Kept { .. }));
        assert!(matches!(add("X3", 1, false), Added::Dropped { .. }));
        // Room is left for the other members.
        assert!(matches!(add("BR", 1, true), Added::Kept { .. }));
        assert!(matches!(add("CA", 1, true), Added::Kept { .. }));
        assert_eq!(q.len(), 6);
        // The made-up origins' drops name no row, and restart links only once the list gains
        // a member.
        let made_up: Vec<(String, bool)> = (q.summary().into_iter())
            .filter(|r| r.origin.starts_with('X'))
            .map(|r| (r.origin, r.dropped))
            .collect();
        assert_eq!(made_up, [("X1".into(), false), ("X2".into(), false)]);
        assert!(
            !q.clear_dropped(|_, _| false, false),
            "no key came, no member joined"
        );
        assert!(q.clear_dropped(|_, _| false, true), "a member joined");
        assert!(!q.clear_dropped(|_, _| false, true), "counted once");
        assert!(q.clear_dropped(|_, _| true, false), "AU's key came");
        // Taken out and kept again (a recheck): shares start over.
        assert_eq!(q.take_all().len(), 6);
        assert!(matches!(add("AU", 3, true), Added::Kept { .. }));
    }

    #[test]
    fn a_recheck_keeps_the_time_an_entry_first_arrived() {
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 4,
            total_bytes: 10_000,
        };
        let k = KeyId([1; 8]);
        q.add(org("AU"), 1, k, entry(100), &limits, true);
        let first = q.lock().by_origin[&org("AU")]
            .values()
            .next()
            .map(|w| w.since);
        std::thread::sleep(Duration::from_millis(20));
        // Checked again and still unknown: kept again, as it came.
        for e in q.take_all() {
            q.add(org("AU"), 1, k, e, &limits, true);
        }
        let again = q.lock().by_origin[&org("AU")]
            .values()
            .next()
            .map(|w| w.since);
        assert_eq!(again, first);
        // A new entry is timed from now.
        q.add(org("AU"), 2, k, entry(101), &limits, true);
        let times: Vec<Instant> = q.lock().by_origin[&org("AU")]
            .values()
            .map(|w| w.since)
            .collect();
        assert!(times[1] > times[0]);
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
            q.add(org("AU"), 5, fake, entry_marked(100, 1), &limits, true),
            Added::Kept { new_key: true }
        );
        // AU's own entry at that seq, under its new key, still waits.
        assert_eq!(
            q.add(org("AU"), 5, real, entry_marked(100, 2), &limits, true),
            Added::Kept { new_key: true }
        );
        assert_eq!(
            q.add(org("AU"), 5, real, entry_marked(100, 2), &limits, true),
            Added::Kept { new_key: false }
        );
        assert_eq!(q.len(), 2);
        // Claims on one seq are bounded: past them, a new one is dropped and said so.
        for mark in 3..=4 {
            assert_eq!(
                q.add(org("AU"), 5, fake, entry_marked(100, mark), &limits, true),
                Added::Kept { new_key: false }
            );
        }
        assert_eq!(
            q.add(org("AU"), 5, fake, entry_marked(100, 5), &limits, true),
            Added::Dropped { first: true }
        );
        assert_eq!(
            q.add(org("AU"), 6, fake, entry_marked(100, 5), &limits, true),
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
        q.add(org("AU"), 1, KeyId([1; 8]), entry(100), &limits, true);
        let later = Instant::now() + UNVERIFIED_TTL + Duration::from_secs(120);
        q.lock().expire(later);
        assert!(q.take_all().is_empty());
        assert!(
            q.clear_dropped(|_, _| true, false),
            "the key's arrival restarts the links, so the peer sends it again"
        );
    }

    #[test]
    fn what_was_dropped_is_remembered_for_a_bounded_number_of_origins_and_keys() {
        // A peer choosing a new origin and key id for every entry it sends a full queue.
        let q = Unverified::default();
        let limits = UnverifiedLimits {
            per_origin: 1,
            total_bytes: 800,
        };
        let k = KeyId([1; 8]);
        assert_eq!(
            q.add(org("AU"), 1, k, entry(100), &limits, true),
            Added::Kept { new_key: true }
        );
        let pairs = 10 * SUMMARY_ROWS;
        for i in 0..pairs {
            let origin = org(&format!("X{i}"));
            let key = KeyId((i as u64).to_be_bytes());
            let first = i < SUMMARY_ROWS;
            assert_eq!(
                q.add(origin, 1, key, entry(150), &limits, true),
                Added::Dropped { first }
            );
        }
        let rows = q.summary();
        assert_eq!(rows.len(), SUMMARY_ROWS);
        assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS);
        assert_eq!(q.dropped_elsewhere(), (pairs - SUMMARY_ROWS) as u64);
        let resends = q.resends();
        // A key list holding none of their keys: only those not named restart the links.
        assert!(
            q.clear_dropped(|_, _| false, false),
            "pairs beyond the rows were dropped"
        );
        assert!(
            !q.clear_dropped(|_, _| false, false),
            "none of their keys known: no restart"
        );
        assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS, "still remembered");
        let x3 = org("X3");
        assert!(q.clear_dropped(|o, _| *o == x3, false), "X3's key came");
        assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS - 1);
        assert!(q.clear_dropped(|_, _| true, false), "entries were dropped");
        assert!(!q.clear_dropped(|_, _| true, false), "nothing since");
        assert_eq!(q.dropped_elsewhere(), 0);
        q.ask_resend();
        assert!(resends.has_changed().unwrap());
        assert_eq!(q.summary().len(), 1);
    }
}
