//! The store's write lock, and what readers learn without taking it: [`Held`] is the lock with
//! the hold queue, publishing the queue's sizes when released; [`Publishing`] brackets a
//! write's commit with a count, so the state digest can be read between writes. A hub applying
//! batches from 190 links held the lock nearly always, and Status, which read both under it,
//! waited for it for more than 5 s.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::MutexGuard;

use intelmesh_core::Hash;
use sha2::{Digest, Sha256};

use crate::hold::HoldQueue;
use crate::{keys, DiskStore, StoreError};

/// The write lock with the hold queue it guards; on release, the queue's sizes are published
/// for `held_count` and `held_bytes`, which Status reads without waiting for writes.
pub(crate) struct Held<'a> {
    queue: MutexGuard<'a, HoldQueue>,
    sizes: &'a (AtomicUsize, AtomicUsize),
}

impl<'a> Held<'a> {
    pub(crate) fn new(
        queue: MutexGuard<'a, HoldQueue>,
        sizes: &'a (AtomicUsize, AtomicUsize),
    ) -> Held<'a> {
        Held { queue, sizes }
    }
}

impl std::ops::Deref for Held<'_> {
    type Target = HoldQueue;
    fn deref(&self) -> &HoldQueue {
        &self.queue
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut HoldQueue {
        &mut self.queue
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.sizes.0.store(self.queue.len(), Ordering::Release);
        self.sizes.1.store(self.queue.bytes(), Ordering::Release);
    }
}

/// Lock-free attempts of `state_digest` before it takes the write lock.
const DIGEST_TRIES: usize = 64;

/// A write publishing changes to heads and index: the store's `publishing` count is odd from
/// before its batch is committed until [`Publishing::done`], once the counters in memory match
/// it. A write that fails part way never calls it: the count stays odd, and digests are read
/// under the lock from then on (what is on disk and in memory may differ until the store is
/// opened again).
pub(crate) struct Publishing<'a>(&'a AtomicU64);

impl Publishing<'_> {
    pub(crate) fn done(self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

impl DiskStore {
    /// Marks a write as publishing until the returned guard is done. Only under `held`.
    pub(crate) fn publishing(&self) -> Publishing<'_> {
        self.publishing.fetch_add(1, Ordering::AcqRel);
        Publishing(&self.publishing)
    }

    /// The digest of the heads on disk and the index's counters as they are now.
    fn digest_now(&self) -> Result<Hash, StoreError> {
        let mut hasher = Sha256::new();
        for kv in self.db.scan_prefix([keys::HEAD]) {
            let (k, v) = kv?;
            hasher.update((k.len() as u64).to_be_bytes());
            hasher.update(&k);
            hasher.update((v.len() as u64).to_be_bytes());
            hasher.update(&v);
        }
        hasher.update(self.index_meta().digest.to_bytes());
        Ok(hasher.finalize().into())
    }
}

impl DiskStore {
    /// Heads and index digest of one moment: read while no write published anything, or else
    /// under the write lock.
    pub(crate) fn consistent_digest(&self) -> Result<Hash, StoreError> {
        for _ in 0..DIGEST_TRIES {
            let before = self.publishing.load(Ordering::Acquire);
            if before.is_multiple_of(2) {
                let digest = self.digest_now()?;
                if self.publishing.load(Ordering::Acquire) == before {
                    return Ok(digest);
                }
            }
            std::thread::yield_now();
        }
        let _applying = self.lock();
        self.digest_now()
    }
}
