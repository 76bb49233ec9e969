//! [`DiskStore::truncate_origin`]: removes an origin's log entries after a seq. The one write
//! that takes entries out of a log: a compromise report ends a key at the last seq its member
//! vouches for, and what that key signed after it (a thief's entries, taken in before the report
//! arrived) must leave every read.
//!
//! Like `apply`, it holds the `held` lock (so no write interleaves) and writes one durable batch:
//! the trimmed segment, the later segments removed,
//! the head moved back (removed at 0), the log generation raised, and the indicators the cut
//! entries named folded again without them (`index_refold`). A cut too wide for that is marked
//! for a rebuild in the batch instead, and only then is the whole index rebuilt from the log
//! (it is a pure function of the log, and entries leaving it cannot be unfolded). A crash
//! before the rebuild ends leaves the mark, and the next open rebuilds the index (see
//! `index_rebuild`).

use std::sync::atomic::Ordering;

use intelmesh_core::entry::header_hash;
use intelmesh_core::{Head, OrgId, VerifiedEntry};
use prost::Message;

use crate::segment::{segment_at, segments_from};
use crate::{index_rebuild, index_refold, keys, DiskStore, Store, StoreError};

/// What [`DiskStore::truncate_origin`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TruncateReport {
    /// Log entries removed (seqs after `keep_through` up to the old head).
    pub removed: u64,
    /// Entries of the origin held for their predecessors at seqs after `keep_through`, dropped.
    pub held_dropped: usize,
    /// The origin's head afterwards.
    pub head: Option<Head>,
}

/// Least time between two tries of an index rebuild that failed.
pub(crate) const REBUILD_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

impl DiskStore {
    /// Drops the entries of `origin` held for their predecessors at seqs after `keep_through`
    /// that `public_key` signed; returns how many. For a key ended at `keep_through` while the
    /// log is still below it: once the gap closed they would be appended with no key check (the
    /// queue's entries were judged when they arrived, under the older key list).
    pub fn drop_held_signed_after(
        &self,
        origin: &OrgId,
        keep_through: u64,
        public_key: &[u8; 32],
    ) -> usize {
        self.lock()
            .drop_signed_after(origin, keep_through, public_key)
    }

    /// Drops every held entry `drop` picks; returns how many. For a new key list: the queue's
    /// entries were judged when they arrived, under the list then in force, and once their gap
    /// closed they would be appended with no key check.
    ///
    /// They count as dropped from the hold queue ([`DiskStore::hold_expired_count`]): their
    /// senders count them delivered, and should a later key list let their key sign them (a
    /// reinstatement), only a restarted link sends them again.
    pub fn drop_held_where(&self, drop: impl FnMut(&VerifiedEntry) -> bool) -> usize {
        let dropped = self.lock().drop_where(drop);
        self.hold_expired
            .fetch_add(dropped as u64, Ordering::AcqRel);
        dropped
    }

    /// Rebuilds the index if a cut's rebuild failed after the cut was written (its mark still
    /// set): the log is cut, the index not yet; the cuts asked again finish it rather than
    /// wait for a restart. Says whether it rebuilt. (The failed write left the publishing
    /// count odd: digests are read under the lock, which this holds.)
    pub fn finish_index_rebuild(&self) -> Result<bool, StoreError> {
        let _held = self.lock();
        if index_rebuild::pending(&self.db)? {
            self.rebuild_marked.store(true, Ordering::Release);
        }
        self.rebuild_if_marked()
    }

    /// Refuses a read of the index while a cut's rebuild of it failed and is not yet done: the
    /// index is half cleared, and would answer "not listed" for values the log lists. (While
    /// a rebuild runs, reads see its progress; one that fails leaves that until retried.)
    pub(crate) fn index_readable(&self) -> Result<(), StoreError> {
        if !self.rebuild_marked.load(Ordering::Acquire) {
            return Ok(());
        }
        let failed = self
            .rebuild_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match failed.is_some() {
            true => Err(StoreError::RebuildPending),
            false => Ok(()),
        }
    }

    /// [`Self::finish_index_rebuild`] with the write lock held by the caller: every write
    /// calls it first, so nothing is folded onto an index a failed rebuild left half cleared
    /// (a write on it would take a held indicator for a new one); while the rebuild fails,
    /// writes fail with it.
    pub(crate) fn rebuild_if_marked(&self) -> Result<bool, StoreError> {
        // A read of the store before every write cost 4-5% of the store's time at 10M
        // indicators (`bench scale`): the flag says when to look.
        if !self.rebuild_marked.load(Ordering::Acquire) || !index_rebuild::pending(&self.db)? {
            return Ok(false);
        }
        let mut failed = self
            .rebuild_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if failed.is_some_and(|at| at.elapsed() < REBUILD_RETRY) {
            return Err(StoreError::RebuildPending);
        }
        match index_rebuild::rebuild(&self.db, &self.presence, self.arrivals.as_ref()) {
            Ok(meta) => {
                *failed = None;
                self.rebuild_marked.store(false, Ordering::Release);
                self.set_index_meta(meta);
                Ok(true)
            }
            Err(e) => {
                *failed = Some(std::time::Instant::now());
                Err(e)
            }
        }
    }

    /// Removes `origin`'s log entries with seq > `keep_through`: the head becomes entry
    /// `keep_through` (no head at 0), held entries beyond it are dropped, and the indicator
    /// index is rebuilt from the log. Nothing to remove is not an error (`removed` 0). Durable
    /// when it returns `Ok`.
    pub fn truncate_origin(
        &self,
        origin: &OrgId,
        keep_through: u64,
    ) -> Result<TruncateReport, StoreError> {
        let mut held = self.lock();
        self.rebuild_if_marked()?;
        let held_dropped = held.drop_after(origin, keep_through);
        let head = Store::head(self, origin)?;
        let Some(old) = head.filter(|h| h.seq > keep_through) else {
            return Ok(TruncateReport {
                removed: 0,
                held_dropped,
                head,
            });
        };
        // Before the cut is durable: from here until then a read goes to the store, which
        // still holds the log uncut, never to a tail the cut removes.
        self.tails.forget(origin);
        let mut batch = crate::kv::Batch::default();
        let mut new_head: Option<Head> = None;
        // What the cut entries opened to goes with them, and so do the marks of those that
        // did not open: another entry may take their seqs.
        let after = keep_through.saturating_add(1);
        for (from, prefix) in [
            (keys::opened(origin, after), keys::opened_prefix(origin)),
            (keys::unopened(origin, after), keys::unopened_prefix(origin)),
        ] {
            for kv in self.db.range(from..).keys() {
                let k = kv?;
                if !k.starts_with(&prefix) {
                    break;
                }
                batch.remove(k.to_vec());
            }
        }
        for seg in segments_from(&self.db, origin, keep_through.saturating_add(1))? {
            let mut seg = seg?;
            if seg.first() > keep_through {
                batch.remove(keys::log(origin, seg.first()));
                continue;
            }
            // The segment holding both `keep_through` and `keep_through + 1`.
            if !seg.keep_through(keep_through) {
                return Err(StoreError::Corrupt(format!(
                    "{origin}: #{keep_through} is not in the segment that should hold it"
                )));
            }
            new_head = seg.last().map(|e| Head {
                seq: keep_through,
                hash: header_hash(&e.header),
            });
            batch.insert(keys::log(origin, seg.first()), seg.encode());
        }
        if keep_through > 0 && new_head.is_none() {
            // `keep_through + 1` starts a segment: the kept tail ends the one before it.
            let seg = segment_at(&self.db, origin, keep_through)?
                .filter(|s| s.last_seq() == keep_through)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "{origin}: #{keep_through} is below the head but not logged"
                    ))
                })?;
            new_head = seg.last().map(|e| Head {
                seq: keep_through,
                hash: header_hash(&e.header),
            });
        }
        match new_head {
            Some(h) => batch.insert(keys::head(origin), h.to_proto().encode_to_vec()),
            None => batch.remove(keys::head(origin)),
        }
        let generation = self.generation.load(Ordering::Acquire).saturating_add(1);
        batch.insert(keys::GENERATION, generation.to_be_bytes());
        // A cut of this node's own log: a client repeating a publication the cut removed
        // must have it signed again, not be told the seqs it was given, which the cut freed.
        if self.owner()?.as_ref() == Some(origin) {
            let now = intelmesh_core::now_unix_ms();
            batch.insert(keys::OWN_CUT_AT, now.to_be_bytes());
        }
        // What the cut entries named is folded again in the cut's own batch when it can be;
        // else the index is marked, and rebuilt from the log once the cut is durable.
        // One that cannot be (an entry or a state that does not read) is rebuilt too: the
        // rebuild reads only the kept log, and the cut must go through.
        let mut index = crate::kv::Batch::default();
        let refolded = match index_refold::cut_keys(&self.db, origin, keep_through) {
            Ok(Some(cut)) => {
                let with = (self.index_meta(), &*self.presence, self.arrivals.as_ref());
                index_refold::refold(&self.db, origin, keep_through, &cut, with, &mut index)
                    .map_err(|e| {
                        tracing::warn!(%origin, error = %e, "a cut's indicators could not be folded again; rebuilding the index");
                    })
                    .ok()
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%origin, error = %e, "a cut entry could not be read; rebuilding the index");
                None
            }
        };
        match refolded {
            Some(_) => batch.extend(index),
            None => {
                index_rebuild::mark(&mut batch);
                self.rebuild_marked.store(true, Ordering::Release);
            }
        }
        let publishing = self.publishing();
        self.db.apply_batch(batch)?;
        // The index's lengths before the heads that name the cut (a rebuild sets them after).
        if let Some(meta) = &refolded {
            self.set_index_meta(*meta);
        }
        self.generation.store(generation, Ordering::Release);
        match refolded {
            Some(_) => {}
            // The index folded the removed entries in: fold the log again. On an error the
            // mark stays, and the next open rebuilds it.
            None => {
                let meta =
                    index_rebuild::rebuild(&self.db, &self.presence, self.arrivals.as_ref())?;
                self.rebuild_marked.store(false, Ordering::Release);
                self.set_index_meta(meta);
            }
        }
        publishing.done();
        Ok(TruncateReport {
            removed: old.seq - keep_through,
            held_dropped,
            head: new_head,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreConfig;

    #[test]
    fn a_rebuild_a_failed_cut_left_is_finished_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
        assert!(
            !store.finish_index_rebuild().unwrap(),
            "nothing left to rebuild"
        );
        // As a cut whose rebuild failed leaves it: the mark written with the cut.
        let mut batch = crate::kv::Batch::default();
        index_rebuild::mark(&mut batch);
        store.db.apply_batch(batch).unwrap();
        assert!(index_rebuild::pending(&store.db).unwrap());
        assert!(store.finish_index_rebuild().unwrap());
        assert!(!index_rebuild::pending(&store.db).unwrap());
        assert!(!store.finish_index_rebuild().unwrap());
        // A write finishes it first: nothing is folded onto a half-cleared index.
        let mut batch = crate::kv::Batch::default();
        index_rebuild::mark(&mut batch);
        store.db.apply_batch(batch).unwrap();
        store.rebuild_marked.store(true, Ordering::Release);
        crate::Store::apply(&store, Vec::new()).unwrap();
        assert!(!index_rebuild::pending(&store.db).unwrap());
    }

    /// Once a cut's rebuild has failed, the half-cleared index answers no read until a retry
    /// rebuilds it: "not listed" would be wrong for values the log lists.
    #[test]
    fn reads_of_an_index_whose_rebuild_failed_are_refused_until_it_is_rebuilt() {
        use crate::Store;
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
        let value = intelmesh_core::indicator::detect("evil.example").unwrap();
        assert_eq!(store.indicator(&value).unwrap(), None);
        let mut batch = crate::kv::Batch::default();
        index_rebuild::mark(&mut batch);
        store.db.apply_batch(batch).unwrap();
        store.rebuild_marked.store(true, Ordering::Release);
        // A rebuild in progress: reads go on.
        assert!(store.indicator(&value).is_ok());
        *store.rebuild_failed.lock().unwrap() = Some(std::time::Instant::now());
        assert!(matches!(
            store.indicator(&value),
            Err(StoreError::RebuildPending)
        ));
        assert!(matches!(
            store.lookup_states(&[&value]),
            Err(StoreError::RebuildPending)
        ));
        assert!(matches!(
            store.state_digest(),
            Err(StoreError::RebuildPending)
        ));
        *store.rebuild_failed.lock().unwrap() = None;
        assert!(store.finish_index_rebuild().unwrap());
        assert_eq!(store.indicator(&value).unwrap(), None);
    }
}
