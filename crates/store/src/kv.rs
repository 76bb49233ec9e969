//! The store's one ordered key-value space on disk (fjall, an LSM tree): atomic batches
//! durable when written (the journal fsynced first), ordered and prefix scans.
//!
//! Everything of a store lives in one keyspace, so one batch writes log, heads and index
//! atomically. An LSM tree writes sequentially (a journal, then sorted tables merged in the
//! background): inserting at random keys costs what appending does, a restart replays only the
//! journal since the last memtable flush, and tables are compressed. sled 0.34, the engine
//! before, rewrote a leaf per random insert, kept at least twice the live bytes on disk and
//! read back everything written since it last opened on every restart (README, `bench scale`).

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use crate::presence::Presence;
use crate::state_table::{self, count_of, StateTables};
use crate::{keys, StoreError};

/// A key or value as read: cheap to clone, derefs to bytes.
pub(crate) type Bytes = fjall::Slice;

/// The name of the one keyspace holding a store.
const SPACE: &str = "store";

/// The file fjall creates in a database directory, so its presence says a store exists there.
pub(crate) const MARKER_FILE: &str = "version";

/// The engine's lock file, its first journal and its directory of keyspaces.
const LOCK_FILE: &str = "lock";
const FIRST_JOURNAL: &str = "0.jnl";
const SPACES_DIR: &str = "keyspaces";

/// How many bytes of journal may wait before memtables are flushed to tables: a restart after
/// a crash replays at most this much (fjall's default, 512 MiB, would take seconds).
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// Memtable size: a full one is written out as a sorted table by a background worker.
const MEMTABLE_BYTES: u64 = 16 << 20;

/// How many times larger each level of the LSM tree is than the one above it (fjall's
/// default: 10). fjall keeps a keyspace's strategy from its creation: a store made under
/// another ratio opens with its own.
const LEVEL_RATIO: f32 = 4.0;

/// Background workers (memtable flushes and compactions) per store. One: with more, fjall
/// 3.1's first worker hands every compaction request back to the queue so as to stay free for
/// flushes, and while the others compact it takes the same request straight back, spinning
/// (22% of the node's CPU while ingesting into a 2M-indicator store, measured with perf).
const WORKER_THREADS: usize = 1;

/// Cheap to clone: clones share the open database.
#[derive(Clone)]
pub(crate) struct Kv {
    db: Database,
    space: Keyspace,
    /// Told of every index key before a batch writing it is committed (see `state_table`).
    tables: Arc<StateTables>,
    /// Told of every index key a batch writes before it is committed, under the state
    /// table's gate (see `presence`).
    presence: Arc<Presence>,
}

impl Kv {
    /// Opens (or creates) the store's key-value space at `path` with a block cache of
    /// `cache_bytes`.
    pub(crate) fn open(path: &Path, cache_bytes: u64) -> Result<Kv, StoreError> {
        let db = Database::builder(path)
            .cache_size(cache_bytes)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .worker_threads(WORKER_THREADS)
            .open()
            .map_err(|e| open_error(path, e))?;
        let space = db
            .keyspace(SPACE, || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES)
                    .compaction_strategy(Arc::new(
                        fjall::compaction::Leveled::default()
                            .with_level_ratio_policy(vec![LEVEL_RATIO]),
                    ))
            })
            .map_err(|e| open_error(path, e))?;
        // Sized for the index on disk, so it holds it in one filter (see `presence`).
        let indexed = count_of(space.get(keys::INDEX_COUNT)?.as_deref());
        Ok(Kv {
            db,
            space,
            tables: Arc::new(StateTables::new(state_table::MAX_MARKS)),
            presence: Arc::new(Presence::sized_for(indexed)),
        })
    }

    /// The filter of the index keys this store may hold.
    pub(crate) fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// The state table of this store, which every batch marks.
    pub(crate) fn state_tables(&self) -> &StateTables {
        &self.tables
    }

    /// The same space with `tables` marked instead (tests: small limits).
    #[cfg(test)]
    pub(crate) fn with_state_tables(self, tables: StateTables) -> Kv {
        Kv {
            tables: Arc::new(tables),
            ..self
        }
    }

    /// What is published now, for reads that must see one state (a page of postings and the
    /// states they name, a seek and the scan after it).
    pub(crate) fn view(&self) -> View<'_> {
        View {
            snapshot: self.db.snapshot(),
            space: &self.space,
        }
    }

    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, StoreError> {
        self.view().get(key)
    }

    pub(crate) fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        self.view().contains_key(key)
    }

    /// Writes one key, durably.
    pub(crate) fn insert(
        &self,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.insert(key, value);
        self.apply_batch(batch)
    }

    /// Whether the space holds no key at all.
    pub(crate) fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.view().scan_prefix([]).keys().next().is_none())
    }

    /// Every key starting with `prefix`, in order (and in reverse with `rev`/`next_back`).
    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        self.view().scan_prefix(prefix)
    }

    pub(crate) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        self.view().range(range)
    }

    /// Writes `batch` atomically and durably: the journal holds it on disk (fsynced) before
    /// any reader can see it, so no read shows a state a crash could undo, and it is durable
    /// when this returns.
    pub(crate) fn apply_batch(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.0.is_empty() {
            return Ok(());
        }
        // Marked before the commit, and with no build starting in between: the state table
        // never answers for a key once its new state can be read. Added to the presence filter
        // likewise, so no reader is told a key is absent once it can be read, and a filter
        // regrown from a build's scan gets every key that scan may not see.
        let writes = batch.settled();
        let _gate = self.tables.batch_gate();
        let index = writes.index_entries();
        self.tables
            .mark(index.iter().map(|(key, _)| key.as_slice()));
        for (key, value) in index {
            if value.is_some() {
                self.presence.add(key);
            }
        }
        let mut write = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (key, value) in writes.0 {
            match value {
                Some(v) => write.insert(&self.space, key, v),
                None => write.remove(&self.space, key),
            }
        }
        write.commit()?;
        Ok(())
    }
}

/// The space as it was when the view was taken: every batch published then, whole, and none
/// after. Every read of the space goes through one: fjall's own keyspace reads look at every
/// sequence number, and a batch inserts its keys one by one before publishing its number, so
/// they could see half a batch (a head before its segment, a posting before its state). A view
/// also keeps compaction from dropping the versions it reads; hold it briefly.
pub(crate) struct View<'a> {
    snapshot: fjall::Snapshot,
    space: &'a Keyspace,
}

impl View<'_> {
    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, StoreError> {
        Ok(self.snapshot.get(self.space, key)?)
    }

    pub(crate) fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool, StoreError> {
        Ok(self.snapshot.contains_key(self.space, key)?)
    }

    /// Every key starting with `prefix`, in order (and in reverse with `rev`/`next_back`).
    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        Iter(self.snapshot.prefix(self.space, prefix))
    }

    pub(crate) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        Iter(self.snapshot.range(self.space, range))
    }
}

/// The engine writes its [`MARKER_FILE`] last when it creates a store, and refuses to create
/// one over the journal a creation cut short (by a kill) left behind. Without the marker the
/// store never held a write, so what the creation left is removed, under the store's lock so a
/// process creating it now is not disturbed.
pub(crate) fn clear_unfinished_creation(path: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let journal = path.join(FIRST_JOURNAL);
    if path.join(MARKER_FILE).exists() || !journal.exists() {
        return Ok(());
    }
    let lock = std::fs::File::open(path.join(LOCK_FILE)).map_err(io)?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => StoreError::InUse(path.to_path_buf()),
        std::fs::TryLockError::Error(e) => io(e),
    })?;
    tracing::warn!(path = %path.display(), "removing what a store creation cut short left behind");
    std::fs::remove_file(&journal).map_err(io)?;
    match std::fs::remove_dir_all(path.join(SPACES_DIR)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
        _ => Ok(()),
    }
}

fn open_error(path: &Path, e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Locked => StoreError::InUse(path.to_path_buf()),
        e => StoreError::Engine(e),
    }
}

/// Ordered (key, value) pairs of a scan.
pub(crate) struct Iter(fjall::Iter);

impl Iter {
    /// The keys alone.
    pub(crate) fn keys(self) -> impl DoubleEndedIterator<Item = Result<Bytes, StoreError>> {
        self.0.map(|g| g.key().map_err(StoreError::from))
    }
}

impl Iterator for Iter {
    type Item = Result<(Bytes, Bytes), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0
            .next()
            .map(|g| g.into_inner().map_err(StoreError::from))
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0
            .next_back()
            .map(|g| g.into_inner().map_err(StoreError::from))
    }
}

/// Writes to apply together. A key written twice keeps its last write, so building a batch
/// in steps needs no care about order. Kept in the order written and sorted once, when
/// applied: a write of a thousand indicators puts about ten thousand keys, and inserting each
/// into a sorted map was a twentieth of a TAXII add's CPU (perf, `bench taxii`).
#[derive(Default)]
pub(crate) struct Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Batch {
    pub(crate) fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push((key.into(), None));
    }

    /// Adds `other`'s writes, after this batch's own.
    pub(crate) fn extend(&mut self, other: Batch) {
        self.0.extend(other.0);
    }

    /// How many writes it holds (a key written twice counts twice).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The writes in key order, each key's last write only.
    fn settled(mut self) -> Settled {
        // Reversed, then sorted stably: each key's last write comes first among its own, and
        // is the one `dedup_by` keeps.
        self.0.reverse();
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        self.0.dedup_by(|later, kept| later.0 == kept.0);
        Settled(self.0)
    }
}

/// A [`Batch`]'s writes in key order, one per key.
struct Settled(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Settled {
    /// The index keys written (with their value) or removed (`None`).
    fn index_entries(&self) -> &[(Vec<u8>, Option<Vec<u8>>)] {
        let start = self
            .0
            .partition_point(|(k, _)| k.as_slice() < [keys::INDEX].as_slice());
        let end = self
            .0
            .partition_point(|(k, _)| k.as_slice() < [keys::INDEX + 1].as_slice());
        &self.0[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    const KEYS: usize = 64;
    const BATCHES: u64 = 1_000;

    fn key(i: usize) -> Vec<u8> {
        format!("k{i:03}").into_bytes()
    }

    fn value_of(kv: &Kv, i: usize) -> u64 {
        kv.get(key(i))
            .unwrap()
            .map_or(0, |v| u64::from_be_bytes(v.as_ref().try_into().unwrap()))
    }

    #[test]
    fn a_key_written_several_times_in_a_batch_keeps_its_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path(), 1 << 20).unwrap();
        kv.insert(key(4), 9u64.to_be_bytes()).unwrap();
        let mut batch = Batch::default();
        batch.insert(key(1), 1u64.to_be_bytes());
        batch.insert(key(2), 2u64.to_be_bytes());
        batch.remove(key(1));
        batch.insert(key(5), 5u64.to_be_bytes());
        let mut later = Batch::default();
        later.insert(key(2), 3u64.to_be_bytes());
        later.insert(key(1), 4u64.to_be_bytes());
        later.remove(key(5));
        later.remove(key(4));
        later.insert(key(3), 6u64.to_be_bytes());
        batch.extend(later);
        assert_eq!(batch.len(), 9, "writes are counted as made");
        kv.apply_batch(batch).unwrap();
        let read: Vec<(usize, u64)> = (1..=5).map(|i| (i, value_of(&kv, i))).collect();
        assert_eq!(read, [(1, 4), (2, 3), (3, 6), (4, 0), (5, 0)]);
        assert!(!kv.contains_key(key(5)).unwrap() && !kv.contains_key(key(4)).unwrap());
    }

    /// Every batch writes all keys with one number, so a reader reading the first key and then
    /// the last sees the last at least as new: a batch is seen whole or not at all.
    #[test]
    fn a_batch_is_read_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path(), 1 << 20).unwrap();
        let done = AtomicBool::new(false);
        let torn = std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut torn = 0u32;
                while !done.load(Ordering::Acquire) {
                    let first = value_of(&kv, 0);
                    let last = value_of(&kv, KEYS - 1);
                    let scanned: Vec<u64> = kv
                        .scan_prefix(b"k")
                        .map(|kv| u64::from_be_bytes(kv.unwrap().1.as_ref().try_into().unwrap()))
                        .collect();
                    let whole = scanned.is_empty()
                        || (scanned.len() == KEYS && scanned.iter().all(|v| *v == scanned[0]));
                    if last < first || !whole {
                        torn += 1;
                    }
                }
                torn
            });
            for n in 1..=BATCHES {
                let mut batch = Batch::default();
                for i in 0..KEYS {
                    batch.insert(key(i), n.to_be_bytes());
                }
                kv.apply_batch(batch).unwrap();
            }
            done.store(true, Ordering::Release);
            reader.join().unwrap()
        });
        assert_eq!(torn, 0, "reads that saw part of a batch");
        assert_eq!(value_of(&kv, 0), BATCHES);
    }
}
