//! One copy of the index as the state table holds it: reduced states packed as records
//! (`state_record`) back to back in a file of this process's own, mapped read-only, and found
//! through a sorted array of key hashes split by their top bits. `state_table` decides what is
//! copied and when a copy answers; this module owns the file, its slots and the reads.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use intelmesh_proto::v1 as pb;

use crate::index::decode_state;
use crate::state_record::Names;
use crate::StoreError;

/// The file name of a table, before its build number.
pub(crate) const FILE_PREFIX: &str = "state-table.";

/// A slot packs a record's offset (the high 40 bits: files up to 1 TiB) and length (the low
/// 24 bits); a longer record stays out of the table and its key is marked instead.
const LEN_BITS: u32 = 24;
const MAX_RECORD: usize = (1 << LEN_BITS) - 1;
const MAX_OFFSET: u64 = 1 << (64 - LEN_BITS);

/// Writes a table's records back to back.
pub(crate) struct RecordWriter {
    out: BufWriter<File>,
    offset: u64,
    /// The record being built, reused.
    record: Vec<u8>,
    /// The names the records refer to by number.
    names: Names,
}

impl RecordWriter {
    /// Writes the record of the key whose check is `check` and its stored `state`; returns
    /// its slot (packed offset and length), `None` if it is too long to be slotted.
    pub(crate) fn write(&mut self, check: u32, state: &[u8]) -> Result<Option<u64>, RecordError> {
        let record = &mut self.record;
        record.clear();
        self.names
            .write(check, &reduce(&decode_state(state)?), record);
        if record.len() > MAX_RECORD {
            return Ok(None);
        }
        if self.offset >= MAX_OFFSET {
            return Err(StoreError::Corrupt("state table over 1 TiB".into()).into());
        }
        self.out.write_all(record)?;
        let slot = self.offset << LEN_BITS | record.len() as u64;
        self.offset += record.len() as u64;
        Ok(Some(slot))
    }
}

/// Why a record was not written: the state read, or the file.
pub(crate) enum RecordError {
    Store(StoreError),
    Io(std::io::Error),
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> RecordError {
        RecordError::Store(e)
    }
}

impl From<std::io::Error> for RecordError {
    fn from(e: std::io::Error) -> RecordError {
        RecordError::Io(e)
    }
}

/// The state with only what a lookup's verdict, confidence and origins rest on: each
/// assertion's origin, seq, distribution, revocation, confidence and validity, and who saw the
/// indicator under which distribution. Descriptions, tags, references, sighting counts and
/// times are left out.
pub(crate) fn reduce(state: &pb::IndicatorState) -> pb::IndicatorState {
    pb::IndicatorState {
        indicator: None,
        assertions: state
            .assertions
            .iter()
            .map(|a| pb::OriginAssertion {
                origin: a.origin.clone(),
                seq: a.seq,
                revoked: a.revoked,
                confidence: a.confidence,
                distribution: a.distribution.clone(),
                valid_from_unix_ms: a.valid_from_unix_ms,
                valid_until_unix_ms: a.valid_until_unix_ms,
                ..Default::default()
            })
            .collect(),
        sightings: state
            .sightings
            .iter()
            .map(|s| pb::OriginSightings {
                origin: s.origin.clone(),
                distribution: s.distribution.clone(),
                ..Default::default()
            })
            .collect(),
    }
}

/// Removes the table files an earlier process left in `dir`.
pub(crate) fn remove_stale(dir: &Path) -> Result<(), StoreError> {
    let io = |e: std::io::Error| StoreError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    for dirent in std::fs::read_dir(dir).map_err(io)? {
        let dirent = dirent.map_err(io)?;
        if dirent
            .file_name()
            .to_string_lossy()
            .starts_with(FILE_PREFIX)
        {
            std::fs::remove_file(dirent.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// One copy of the index: records (`state_record`) back to back in the file at `path`, mapped,
/// found through `slots` (key hash, packed offset and length) sorted by hash.
pub(crate) struct Table {
    path: PathBuf,
    /// The file of records; `None` when it is empty.
    map: Option<memmap2::Mmap>,
    /// The origins and distributions its records name by number.
    names: Names,
    slots: Vec<(u64, u64)>,
    /// `radix[b]` is the first slot whose hash's top bits are `b` or more.
    radix: Vec<u32>,
    /// `64 -` the number of top bits `radix` splits on.
    shift: u32,
}

impl Table {
    /// A new table whose records go to the new file `dir/state-table.{number}` through the
    /// writer returned with it. From here the table owns the file and removes it when dropped
    /// (a build that stops leaves nothing behind).
    pub(crate) fn create(dir: &Path, number: u64) -> Result<(Table, RecordWriter), StoreError> {
        let path = dir.join(format!("{FILE_PREFIX}{number}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            // Lookups read their states here: no access-time check per read (about 1% of a
            // lookup's CPU). The process owns the file it creates, so the flag is allowed.
            .custom_flags(libc::O_NOATIME)
            .open(&path)
            .map_err(|e| StoreError::Io {
                path: path.clone(),
                source: e,
            })?;
        let table = Table {
            path,
            map: None,
            names: Names::default(),
            slots: Vec::new(),
            radix: Vec::new(),
            shift: 0,
        };
        let out = RecordWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            offset: 0,
            record: Vec::new(),
            names: Names::default(),
        };
        Ok((table, out))
    }

    /// Reserves room for `slots` slots at once: growing by doubling would, at 10M, hold up to
    /// twice the slots' memory (and copy them) on the way. Not had: the slots grow as they
    /// fill instead.
    pub(crate) fn reserve(&mut self, slots: usize) {
        let _ = self.slots.try_reserve_exact(slots);
    }

    /// Takes the slot the writer gave the record of the key whose hash is `h`.
    pub(crate) fn push(&mut self, h: u64, slot: u64) {
        self.slots.push((h, slot));
    }

    /// The keys the table holds.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Ends the writing of the records: the file is written back, then mapped, and the names
    /// the records use are taken from the writer.
    pub(crate) fn finish(&mut self, out: RecordWriter) -> Result<(), StoreError> {
        let file = out.out.into_inner().map_err(|e| self.io(e.into_error()))?;
        // Written back before it is mapped: a write the disk refuses fails the build here,
        // rather than a lookup's read of the page later.
        file.sync_data().map_err(|e| self.io(e))?;
        self.names = out.names;
        self.map = match out.offset {
            // A file of nothing cannot be mapped, and no slot points into it.
            0 => None,
            // SAFETY: the file is this process's own (created in `create`, 0600, in the
            // store's private directory), written whole through the writer and never written
            // again; nothing truncates it while the table, which owns the mapping, lives.
            _ => Some(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| self.io(e))?),
        };
        if let Some(map) = &self.map {
            // Lookups read records at random: a page dropped under memory pressure is read
            // back alone, not with its neighbours.
            let _ = map.advise(memmap2::Advice::Random);
        }
        let [(origins, origin_bytes), (distributions, distribution_bytes)] = self.names.size();
        tracing::debug!(
            bytes = out.offset,
            origins,
            origin_bytes,
            distributions,
            distribution_bytes,
            "state table written"
        );
        Ok(())
    }

    /// A failure of the table's file (or, passed through, of the store) as a store error.
    pub(crate) fn io(&self, e: impl Into<RecordError>) -> StoreError {
        match e.into() {
            RecordError::Store(e) => e,
            RecordError::Io(e) => StoreError::Io {
                path: self.path.clone(),
                source: e,
            },
        }
    }

    /// Sorts the slots and splits them by their hashes' top bits, one to two slots a bucket:
    /// a read then touches one cache line of `radix` and one or two of `slots` (with four
    /// slots a bucket, the search's misses cost more than the positioned read).
    pub(crate) fn index(&mut self) {
        self.slots.sort_unstable();
        self.slots.shrink_to_fit();
        let bits = self.slots.len().max(2).ilog2().clamp(1, 26);
        self.shift = 64 - bits;
        let buckets = 1usize << bits;
        self.radix = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for b in 0..=buckets {
            while at < self.slots.len() && ((self.slots[at].0 >> self.shift) as usize) < b {
                at += 1;
            }
            self.radix.push(at as u32);
        }
        // Every read is a random line of each.
        crate::huge_pages::back_with_huge_pages(&self.slots);
        crate::huge_pages::back_with_huge_pages(&self.radix);
    }

    /// The slots of `h`'s bucket.
    fn bucket(&self, h: u64) -> &[(u64, u64)] {
        let bucket = (h >> self.shift) as usize;
        match (self.radix.get(bucket), self.radix.get(bucket + 1)) {
            (Some(&lo), Some(&hi)) => self.slots.get(lo as usize..hi as usize).unwrap_or_default(),
            _ => &[],
        }
    }

    /// The state of each of `asked` (a key's hash and check), in order: the buckets of all
    /// are found, then their slots searched, then the records read, so that the cache misses
    /// of each step overlap across keys.
    pub(crate) fn states(
        &self,
        asked: &[(u64, u32)],
    ) -> Result<Vec<Option<pb::IndicatorState>>, StoreError> {
        let buckets: Vec<&[(u64, u64)]> = asked.iter().map(|(h, _)| self.bucket(*h)).collect();
        let candidates: Vec<&[(u64, u64)]> = (asked.iter().zip(buckets))
            .map(|((h, _), in_bucket)| &in_bucket[in_bucket.partition_point(|s| s.0 < *h)..])
            .collect();
        // The first record of each key is loaded before any is read, so that their cache
        // misses overlap too.
        let records = self.records();
        let mut loaded = 0u8;
        for ((h, _), from) in asked.iter().zip(&candidates) {
            if let Some(&(_, packed)) = from.first().filter(|s| s.0 == *h) {
                loaded ^= records.get(offset_of(packed)).copied().unwrap_or_default();
            }
        }
        std::hint::black_box(loaded);
        // Pushed into room for all, not collected: a collect through `Result` cannot size the
        // vector first, and grew it by doubling (reallocations were 0.5% of a lookup at 10M).
        let mut states = Vec::with_capacity(asked.len());
        for ((h, check), from) in asked.iter().zip(candidates) {
            states.push(self.record(from, *h, *check)?);
        }
        Ok(states)
    }

    /// The table's records, mapped.
    fn records(&self) -> &[u8] {
        self.map.as_deref().unwrap_or_default()
    }

    /// The state of the key whose hash is `h` and check `check` among the slots `from` on
    /// (its bucket's, from the first of hash `h`).
    fn record(
        &self,
        from: &[(u64, u64)],
        h: u64,
        check: u32,
    ) -> Result<Option<pb::IndicatorState>, StoreError> {
        let records = self.records();
        for &(_, packed) in from.iter().take_while(|s| s.0 == h) {
            let offset = offset_of(packed);
            let len = (packed as usize) & MAX_RECORD;
            let record = offset
                .checked_add(len)
                .and_then(|end| records.get(offset..end))
                .ok_or_else(|| StoreError::Corrupt("state table slot beyond its file".into()))?;
            if let Some(state) = self.names.read(record, check)? {
                return Ok(Some(state));
            }
        }
        Ok(None)
    }
}

/// The offset a slot packs.
fn offset_of(packed: u64) -> usize {
    usize::try_from(packed >> LEN_BITS).unwrap_or(usize::MAX)
}

impl Drop for Table {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "state table file not removed");
        }
    }
}
