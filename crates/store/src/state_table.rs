//! The state table: a read-optimised copy of the indicator index for lookups. Each state,
//! reduced to what a verdict rests on and packed small (`state_record`), sits in a flat file
//! mapped into memory and found through a sorted array of key hashes (`state_table_file`),
//! so a lookup reads it with a memory read instead of an LSM search. Keys written since the
//! copy began are read from the key-value space instead. This module decides what is copied,
//! which keys a copy may answer for, and when a copy is put in force.
//!
//! Why: at 10M indicators an LSM point read searches the filter, index and data blocks of
//! several levels, mostly outside the block cache, and decodes the whole state (README,
//! `bench scale`). A positioned read of each record instead was still a sixth of a lookup's
//! CPU, most of it the kernel finding and copying the page. The table costs about 16 bytes of
//! memory per indicator for its hashes and about 24 bytes of file per indicator, whose pages
//! count in the node's RSS once read and which the kernel may drop and read again under memory
//! pressure; and a scan of the index in the background, never on the write path.
//!
//! Invariants:
//! - The table never answers for a key written after its copy began: `Kv::apply_batch` marks
//!   every index key of a batch before committing it, a build starts recording marks and
//!   opens its scan in one step that no batch interleaves with (`gate`), and a marked key is
//!   read from the LSM. So the table shows no state other than the key-value space's.
//! - Bounded: the marks of a table (and of a build) are at most `max_marks`; past that the
//!   table is dropped (every read goes to the LSM) or the build given up.
//! - Neither durable nor trusted across opens: the builder of each open first removes what an
//!   earlier process left, then builds anew.
//! - A record is taken for a key only if its slot's hash and the record's check (keyed hashes
//!   of two messages under a key drawn per process, 96 bits together) are the key's: two keys of
//!   10M agree on both with odds of about one in 10^21 a lookup, and a peer choosing values
//!   cannot aim at the keys it does not know.
//! - The file is written whole and synced before it is mapped, and only this process writes
//!   it (0600, in the store's private directory): a mapped page that cannot be read back
//!   (a failing disk) ends the process, as the engine's own reads would fail then too.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use intelmesh_proto::v1 as pb;

use crate::kv::Kv;
use crate::presence::Regrowth;
pub(crate) use crate::state_table_file::remove_stale;
use crate::state_table_file::{RecordWriter, Table};
use crate::{keys, StoreError};

/// Most keys written since a table's copy (or a build's scan) began before it is dropped (or
/// given up): 2M hashes, about 40 MiB.
pub(crate) const MAX_MARKS: usize = 2_000_000;

/// Index keys read by one scan of a build (see `StateTables::copy`); fewer in unit tests, so
/// their builds cross chunks.
const SCAN_CHUNK: usize = if cfg!(test) { 1_000 } else { 65_536 };

/// Told apart from the slot's hash of a key, its record's check is the hash of the key and
/// this.
const CHECK_TAG: u8 = 0xc4;

/// Slots reserved beyond the index's count at the start of a build, for what it gains meanwhile.
const SLACK: u64 = 1 << 16;

/// How often a build looks whether it was told to stop.
const STOP_CHECK_EVERY: u64 = 4096;

/// Key hashes as set members: they are SipHash under a key drawn per process already, so
/// hashing them again would only cost time (and a peer choosing indicator values cannot make
/// them collide).
type Marks = HashSet<u64, BuildHasherDefault<Prehashed>>;

#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The state table of one store, shared by its key-value space (which marks writes), its
/// reads and the thread building it.
pub(crate) struct StateTables {
    hasher: RandomState,
    /// Most marked keys a table or a build may carry.
    max_marks: usize,
    current: RwLock<Current>,
    /// Taken shared by every batch from marking to commit, exclusively by a build while it
    /// starts recording marks and opens its scan.
    gate: RwLock<()>,
    /// Index keys written since open: how the builder tells the store is quiet.
    writes: AtomicU64,
}

#[derive(Default)]
struct Current {
    table: Option<Arc<Table>>,
    /// Keys written since `table`'s copy began.
    marks: Marks,
    /// Keys written since the scan of the build under way began; `None`: no build, or one
    /// given up because too many keys were written meanwhile.
    next: Option<Marks>,
}

/// What the table says of one index key.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    /// The index does not hold it.
    Absent,
    /// Its state, with only what a lookup's verdict rests on (see
    /// [`crate::state_table_file::reduce`]).
    Found(pb::IndicatorState),
    /// No table, or the key was written since the table's copy began: read the key-value
    /// space.
    AskLsm,
}

impl StateTables {
    pub(crate) fn new(max_marks: usize) -> StateTables {
        StateTables {
            hasher: RandomState::new(),
            max_marks,
            current: RwLock::default(),
            gate: RwLock::default(),
            writes: AtomicU64::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Current> {
        self.current.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Held by a batch from [`StateTables::mark`] until it is committed.
    pub(crate) fn batch_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks index keys about to be written, so the table stops answering for them.
    pub(crate) fn mark<'k>(&self, index_keys: impl Iterator<Item = &'k [u8]>) {
        let mut n = 0u64;
        let mut cur = self.write();
        let Current { table, marks, next } = &mut *cur;
        for key in index_keys {
            n += 1;
            if table.is_none() && next.is_none() {
                continue;
            }
            let h = self.hasher.hash_one(key);
            if table.is_some() {
                marks.insert(h);
            }
            if let Some(next) = next.as_mut() {
                next.insert(h);
            }
        }
        if marks.len() > self.max_marks {
            tracing::info!(
                marks = marks.len(),
                "state table dropped: too many indicators written since its copy; \
                 lookups read the index until the next build"
            );
            *table = None;
            *marks = Marks::default();
        }
        if next.as_ref().is_some_and(|m| m.len() > self.max_marks) {
            *next = None;
        }
        drop(cur);
        self.writes.fetch_add(n, Ordering::Relaxed);
    }

    /// What the table says of `key` (the store asks [`Self::lookup_many`]).
    #[cfg(test)]
    pub(crate) fn lookup(&self, key: &[u8]) -> Result<Answer, StoreError> {
        Ok(self.lookup_many(&[key])?.pop().unwrap_or(Answer::AskLsm))
    }

    /// What the table says of each of `keys`, in order: under one read of the table in force
    /// (its lock word is written by every reader, so taken once a batch, not once a key), and
    /// with the memory reads of all of them issued before any record is read.
    pub(crate) fn lookup_many(&self, keys: &[&[u8]]) -> Result<Vec<Answer>, StoreError> {
        let hashes: Vec<u64> = keys.iter().map(|k| self.hasher.hash_one(k)).collect();
        let (table, ask_lsm) = {
            let cur = self.read();
            let Some(table) = &cur.table else {
                return Ok(keys.iter().map(|_| Answer::AskLsm).collect());
            };
            let marked: Vec<bool> = hashes
                .iter()
                .map(|h| !cur.marks.is_empty() && cur.marks.contains(h))
                .collect();
            (Arc::clone(table), marked)
        };
        let asked: Vec<(u64, u32)> = (hashes.iter().zip(keys).zip(&ask_lsm))
            .filter(|(_, marked)| !**marked)
            .map(|((h, k), _)| (*h, self.check(k)))
            .collect();
        // One answer per key asked of the table: a marked key takes none of them.
        let mut found = table.states(&asked)?.into_iter();
        Ok(ask_lsm
            .iter()
            .map(|marked| match marked {
                true => Answer::AskLsm,
                false => match found.next() {
                    Some(Some(state)) => Answer::Found(state),
                    _ => Answer::Absent,
                },
            })
            .collect())
    }

    /// The check a record of `key` carries: the keyed hash of another message than the
    /// slot's (the key and a tag), so as independent of it as a second key's would be.
    fn check(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one((key, CHECK_TAG)) as u32
    }

    /// Most keys a table may have had written since its copy before it is dropped.
    pub(crate) fn max_marks(&self) -> usize {
        self.max_marks
    }

    /// Index keys written since open.
    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The keys of the table in force and how many were written since its copy began; `None`
    /// without a table.
    pub(crate) fn in_force(&self) -> Option<(usize, usize)> {
        let cur = self.read();
        cur.table.as_ref().map(|t| (t.len(), cur.marks.len()))
    }

    /// Copies the index of `db` into a new table file `dir/state-table.{number}` and puts it in
    /// force. `Ok(false)`: told to stop, or given up because more than `max_marks` keys were
    /// written during the copy.
    pub(crate) fn build(
        &self,
        db: &Kv,
        dir: &Path,
        number: u64,
        stop: &AtomicBool,
    ) -> Result<bool, StoreError> {
        // From here the table owns the file and removes it if the build stops.
        let (mut table, out) = Table::create(dir, number)?;
        let expected = index_count(db)?;
        let presence = db.presence();
        let regrowth = {
            // No batch is between its marking and its commit now: every batch committed
            // before is seen by the scan's reads (all made later), every one after is marked
            // (and adds its keys to the presence filter being regrown).
            let _no_batch = self.gate.write().unwrap_or_else(|p| p.into_inner());
            self.write().next = Some(Marks::default());
            presence
                .regrowth_due()
                .then(|| presence.start_regrowth(expected))
        };
        let copied = self.copy(db, &mut table, out, expected, regrowth.as_ref(), stop);
        let oversize = match copied {
            Ok(Some(oversize)) => oversize,
            other => {
                self.write().next = None;
                presence.abandon_regrowth();
                return other.map(|_| false);
            }
        };
        // The scan saw every key: the regrown filter holds the index whether or not the
        // table is put in force.
        if let Some(regrowth) = regrowth {
            presence.finish_regrowth(regrowth);
        }
        table.index();
        let mut cur = self.write();
        let Some(mut marks) = cur.next.take() else {
            return Ok(false);
        };
        marks.extend(oversize);
        cur.table = Some(Arc::new(table));
        cur.marks = marks;
        Ok(true)
    }

    /// Writes every (key, reduced state) of the index (about `expected` keys) to `table`'s file
    /// and slots, and each key to `regrowth`; returns the hashes of the keys whose records were
    /// too long to be slotted, `None` if told to stop.
    ///
    /// The index is read in chunks, each by a scan of its own: a scan holds the engine's view
    /// of the moment it opened, and one held through a copy of 10M states under a bulk load
    /// kept what the load replaced alive (peak RSS 2.4 GiB in `bench scale`, against 1.1 GiB).
    fn copy(
        &self,
        db: &Kv,
        table: &mut Table,
        mut out: RecordWriter,
        expected: u64,
        regrowth: Option<&Regrowth>,
        stop: &AtomicBool,
    ) -> Result<Option<Vec<u64>>, StoreError> {
        // A count read back from a damaged store must not ask for more than any machine has
        // (the presence filter clamps it likewise): past this the slots grow as they fill.
        let room = expected.min(1 << 28).saturating_add(SLACK);
        table.reserve(usize::try_from(room).unwrap_or(usize::MAX));
        let mut oversize = Vec::new();
        let end = vec![keys::INDEX + 1];
        let mut start = vec![keys::INDEX];
        let mut n = 0u64;
        loop {
            let mut in_chunk = 0;
            for kv in db.range(start.clone()..end.clone()).take(SCAN_CHUNK) {
                let (key, value) = kv?;
                in_chunk += 1;
                n += 1;
                let h = self.hasher.hash_one(&key[..]);
                if let Some(regrowth) = regrowth {
                    regrowth.add(&key);
                }
                match out
                    .write(self.check(&key), &value)
                    .map_err(|e| table.io(e))?
                {
                    Some(slot) => table.push(h, slot),
                    None => oversize.push(h),
                }
                if n.is_multiple_of(STOP_CHECK_EVERY) && stop.load(Ordering::Acquire) {
                    return Ok(None);
                }
                if in_chunk == SCAN_CHUNK {
                    // The next chunk starts just after this key.
                    start = key.to_vec();
                    start.push(0);
                }
            }
            if in_chunk < SCAN_CHUNK {
                break;
            }
        }
        table.finish(out)?;
        Ok(Some(oversize))
    }
}

/// The indicators in the index, as its count records them.
pub(crate) fn index_count(db: &Kv) -> Result<u64, StoreError> {
    Ok(count_of(db.get(keys::INDEX_COUNT)?.as_deref()))
}

/// The count a stored [`keys::INDEX_COUNT`] value records (none: 0).
pub(crate) fn count_of(value: Option<&[u8]>) -> u64 {
    value
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
#[path = "state_table_tests.rs"]
mod tests;
