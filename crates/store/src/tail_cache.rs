//! Each origin's last log segment as last written, for range reads of the log's tail: a hub's
//! every link reads each new entry of every origin to send it on, and from the LSM tree each
//! such read seeks back to the segment and decodes it (two thirds of a busy hub's time, with
//! 190 links). A write forgets the tails it changes before its batch commits and sets them
//! again once the batch is durable, both under the write lock, so a read finds the tail as it
//! is in the store or none (a reader that saw the new head must not be answered from the tail
//! before it); a read of anything older goes to the store. At most one segment per origin the
//! store holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use crate::segment::Segment;

#[derive(Default)]
pub(crate) struct TailCache {
    tails: Mutex<HashMap<OrgId, Arc<Segment>>>,
}

impl TailCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Arc<Segment>>> {
        // A map of whole segments, each replaced in one assignment.
        self.tails.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `limit` entries of `origin` from `from_seq` on, if the cached tail starts at or
    /// before it; `None` when the read must go to the store.
    pub(crate) fn range(
        &self,
        origin: &OrgId,
        from_seq: u64,
        limit: usize,
    ) -> Option<Vec<pb::SignedEntry>> {
        let tail = Arc::clone(self.lock().get(origin)?);
        (from_seq >= tail.first())
            .then(|| tail.entries_from(from_seq).take(limit).cloned().collect())
    }

    /// `origin`'s tail as stored, if cached (asked under the write lock, it is the stored one).
    pub(crate) fn tail(&self, origin: &OrgId) -> Option<Arc<Segment>> {
        self.lock().get(origin).cloned()
    }

    /// The tails a durable write left: each the segment now holding its origin's head (or
    /// `None`, to forget it).
    pub(crate) fn written(&self, tails: Vec<(OrgId, Option<Segment>)>) {
        if tails.is_empty() {
            return;
        }
        let mut cached = self.lock();
        for (origin, tail) in tails {
            match tail {
                Some(tail) => cached.insert(origin, Arc::new(tail)),
                None => cached.remove(&origin),
            };
        }
    }

    /// Forgets `origin`'s tail, before a write that changes its log.
    pub(crate) fn forget(&self, origin: &OrgId) {
        self.lock().remove(origin);
    }

    /// Forgets the tails a write is about to change, before its batch commits.
    pub(crate) fn writing(&self, tails: &[(OrgId, Option<Segment>)]) {
        if tails.is_empty() {
            return;
        }
        let mut cached = self.lock();
        for (origin, _) in tails {
            cached.remove(origin);
        }
    }
}
