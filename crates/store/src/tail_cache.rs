//! Each origin's last log segments as last written, for range reads of the log's tail: a
//! hub's every link reads each new entry of every origin to send it on, and from the LSM tree
//! each such read seeks back to the segment and decodes it (two thirds of a busy hub's time,
//! with 190 links). A write marks the origins it changes before its batch commits and sets
//! their tails once the batch is durable, both under the write lock, so a read finds the tail
//! as it is in the store or none (a reader that saw the new head must not be answered from
//! the tail before it); a read of anything older goes to the store. Per origin, the segments
//! holding its last [`KEEP_BYTES`] or so: entries that trickle in make small segments
//! (`segment::REOPEN_BYTES`), and a link a few entries behind must still be answered here.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use crate::segment::{Segment, SEGMENT_TARGET_BYTES};

/// An origin's cached segments stop at about this many bytes (the newest always kept).
pub(crate) const KEEP_BYTES: usize = SEGMENT_TARGET_BYTES;

/// An origin's last segments, consecutive, the last one holding its head.
#[derive(Default)]
struct Recent {
    segments: VecDeque<Arc<Segment>>,
    /// A write changing them is being committed: reads go to the store until it is durable.
    writing: bool,
}

impl Recent {
    /// Takes `tail`, the segment now holding the head: in place of the last segment if it is
    /// that one rewritten, after it if it follows on, else alone.
    fn take(&mut self, tail: Segment) {
        let last = self.segments.back();
        if last.is_some_and(|l| l.first() == tail.first()) {
            self.segments.pop_back();
        } else if last.is_none_or(|l| l.last_seq().checked_add(1) != Some(tail.first())) {
            self.segments.clear();
        }
        self.segments.push_back(Arc::new(tail));
        let mut bytes: usize = self.segments.iter().map(|s| s.bytes()).sum();
        while self.segments.len() > 1 && bytes > KEEP_BYTES {
            if let Some(old) = self.segments.pop_front() {
                bytes -= old.bytes();
            }
        }
        self.writing = false;
    }
}

#[derive(Default)]
pub(crate) struct TailCache {
    tails: Mutex<HashMap<OrgId, Recent>>,
}

impl TailCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Recent>> {
        // Each origin's segments change in one step under the lock.
        self.tails.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `limit` entries of `origin` from `from_seq` on, if the cached segments start at
    /// or before it; `None` when the read must go to the store.
    pub(crate) fn range(
        &self,
        origin: &OrgId,
        from_seq: u64,
        limit: usize,
    ) -> Option<Vec<pb::SignedEntry>> {
        let segments: Vec<Arc<Segment>> = {
            let cached = self.lock();
            let recent = cached.get(origin).filter(|r| !r.writing)?;
            let first = recent.segments.front()?.first();
            if from_seq < first {
                return None;
            }
            // From the segment holding `from_seq` (or the last, past the head).
            let start = recent
                .segments
                .iter()
                .rposition(|s| s.first() <= from_seq)
                .unwrap_or(0);
            recent.segments.range(start..).cloned().collect()
        };
        Some(
            segments
                .iter()
                .flat_map(|s| s.entries_from(from_seq))
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// `origin`'s last segment as stored, if cached (asked under the write lock, it is the
    /// stored one).
    pub(crate) fn tail(&self, origin: &OrgId) -> Option<Arc<Segment>> {
        let cached = self.lock();
        let recent = cached.get(origin).filter(|r| !r.writing)?;
        recent.segments.back().cloned()
    }

    /// The tails a durable write left: each the segment now holding its origin's head (or
    /// `None`, to forget the origin: an older segment was rewritten).
    pub(crate) fn written(&self, tails: Vec<(OrgId, Option<Segment>)>) {
        if tails.is_empty() {
            return;
        }
        let mut cached = self.lock();
        for (origin, tail) in tails {
            match tail {
                Some(tail) => cached.entry(origin).or_default().take(tail),
                None => {
                    cached.remove(&origin);
                }
            }
        }
    }

    /// Forgets `origin`'s segments, before a write that changes its log.
    pub(crate) fn forget(&self, origin: &OrgId) {
        self.lock().remove(origin);
    }

    /// Closes the origins a write is about to change to reads, before its batch commits.
    pub(crate) fn writing(&self, tails: &[(OrgId, Option<Segment>)]) {
        if tails.is_empty() {
            return;
        }
        let mut cached = self.lock();
        for (origin, _) in tails {
            if let Some(recent) = cached.get_mut(origin) {
                recent.writing = true;
            }
        }
    }

    /// Forgets the origins of a write that failed: what it left in the store is not known.
    pub(crate) fn failed(&self, tails: &[(OrgId, Option<Segment>)]) {
        let mut cached = self.lock();
        for (origin, _) in tails {
            cached.remove(origin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, entries: usize, pad: usize) -> Segment {
        let mut s = Segment::new(first);
        for i in 0..entries {
            s.push(pb::SignedEntry {
                header: vec![i as u8; pad].into(),
                ..pb::SignedEntry::default()
            });
        }
        s
    }

    fn org() -> OrgId {
        OrgId::parse("AU-AFP").unwrap()
    }

    /// How many entries the cache answers from `from` on, if it answers.
    fn seqs_of(cache: &TailCache, from: u64, limit: usize) -> Option<usize> {
        cache.range(&org(), from, limit).map(|es| es.len())
    }

    #[test]
    fn consecutive_tails_are_kept_together_up_to_the_bytes_and_a_gap_starts_afresh() {
        let cache = TailCache::default();
        // Three entries of 400 bytes a segment, segments following on.
        for first in [1, 4, 7] {
            cache.written(vec![(org(), Some(segment(first, 3, 400)))]);
        }
        assert_eq!(seqs_of(&cache, 2, 100), Some(8));
        assert_eq!(seqs_of(&cache, 7, 2), Some(2));
        assert_eq!(seqs_of(&cache, 10, 5), Some(0), "past the head");
        // The same segment rewritten with one more entry replaces it.
        cache.written(vec![(org(), Some(segment(7, 4, 400)))]);
        assert_eq!(seqs_of(&cache, 1, 100), Some(10));
        // Past the bytes kept the oldest go: five segments of 1,209 bytes fit in 6 KiB.
        for first in (11..60).step_by(3) {
            cache.written(vec![(org(), Some(segment(first, 3, 400)))]);
        }
        assert_eq!(seqs_of(&cache, 1, 100), None, "read from the store");
        assert_eq!(seqs_of(&cache, 46, 100), None);
        assert_eq!(seqs_of(&cache, 47, 100), Some(15), "seqs 47 to 61");
        // A tail that does not follow on (a cut, then other entries) is kept alone.
        cache.written(vec![(org(), Some(segment(30, 1, 400)))]);
        assert_eq!(seqs_of(&cache, 29, 100), None);
        assert_eq!(seqs_of(&cache, 30, 100), Some(1));
    }

    #[test]
    fn a_write_in_progress_or_failed_sends_reads_to_the_store() {
        let cache = TailCache::default();
        cache.written(vec![(org(), Some(segment(1, 3, 100)))]);
        let pending = vec![(org(), None)];
        cache.writing(&pending);
        assert_eq!(seqs_of(&cache, 1, 10), None);
        assert!(cache.tail(&org()).is_none());
        cache.written(vec![(org(), Some(segment(4, 1, 100)))]);
        assert_eq!(seqs_of(&cache, 1, 10), Some(4));
        cache.writing(&pending);
        cache.failed(&pending);
        assert_eq!(seqs_of(&cache, 4, 10), None);
        // An older segment rewritten (a fill) forgets the origin.
        cache.written(vec![(org(), Some(segment(5, 1, 100)))]);
        cache.written(vec![(org(), None)]);
        assert_eq!(seqs_of(&cache, 5, 10), None);
    }
}
