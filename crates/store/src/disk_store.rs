//! [`DiskStore`]: the [`Store`] on disk (one key-value space, see `kv`), with the indicator index beside the log and the hold
//! queue for entries that arrived before their predecessors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use intelmesh_core::entry::header_hash;
use intelmesh_core::{Hash, Head, Indicator, OrgId, StaticKeys, VerifiedEntry};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::arrival::ArrivalClock;
use crate::background::Background;
use crate::hold::HoldQueue;
use crate::index::decode_state;
use crate::index_write::IndexMeta;
use crate::open::{open_db, open_kv};
use crate::postings::Selection;
use crate::presence::{fill_in_background, Presence};
use crate::segment::{last_segment, segments_from};
use crate::select::Selected;
use crate::state_table::Answer;
use crate::state_table_build::keep_built;
pub use crate::store_config::{Arrivals, StoreConfig};
use crate::write::Extra;
use crate::write_lock::Held;
use crate::{index_rebuild, keys, private_dir, receipt, select};
use crate::{ApplyReport, Fill, Store, StoreError, VersionVector};

pub struct DiskStore {
    pub(crate) db: crate::kv::Kv,
    pub(crate) cfg: StoreConfig,
    /// Serializes `apply` (chain decisions read heads they then change) and guards holds.
    pub(crate) held: Mutex<HoldQueue>,
    /// Batches of `apply` waiting to be written together (`group_commit`).
    group: crate::group_commit::GroupCommit<VerifiedEntry>,
    /// Entries and bytes in `held` when the lock was last released.
    held_sizes: (AtomicUsize, AtomicUsize),
    /// When a rebuild of the index (left by a failed cut) last failed: writes fail fast until
    /// [`crate::truncate::REBUILD_RETRY`] has passed, rather than each one clearing and folding
    /// the whole log again under the lock.
    pub(crate) rebuild_failed: Mutex<Option<std::time::Instant>>,
    /// Set while the store's rebuild mark may be set (a cut marked it, or a look found it):
    /// the write path reads this, not the store, before every write.
    pub(crate) rebuild_marked: std::sync::atomic::AtomicBool,
    /// The index's counters as flushed; changed only by `apply` and `truncate_origin`, while
    /// they hold `held`, after their batch is flushed.
    index_meta: Mutex<IndexMeta>,
    /// The log generation as flushed (keys the cached heads); raised by `apply` and
    /// `truncate_origin` under `held`.
    pub(crate) generation: AtomicU64,
    /// Payload fills made (and flushed); raised by `apply` under `held`.
    pub(crate) fills: AtomicU64,
    /// Fork proofs held (and flushed); raised under `held`.
    pub(crate) forks: AtomicU64,
    /// Entries dropped from the hold queue past the hold time, by any write since the open.
    pub(crate) hold_expired: AtomicU64,
    /// Each origin's last segment as last written (`tail_cache`).
    pub(crate) tails: crate::tail_cache::TailCache,
    /// Where the index came from when the store opened.
    index_source: IndexSource,
    /// The heads as read at a log generation. Every link asks for them after every append
    /// (its vector, its next batch): a hub with 190 links would otherwise scan the store 190
    /// times per entry.
    heads_at: Mutex<Option<(u64, SharedHeads)>>,
    /// Which indicators the index may hold, so reads of absent ones skip the disk.
    pub(crate) presence: Arc<Presence>,
    /// Stamps the arrival times of changed records (see `arrival`), when the store keeps
    /// them; used under `held`.
    pub(crate) arrivals: Option<ArrivalClock>,
    /// Odd while a write is changing heads or the index on disk and the counters that go with
    /// them (see [`Publishing`]), so `state_digest` can read them without the write lock.
    pub(crate) publishing: AtomicU64,
    /// The pass filling `presence` at open; late, so it is joined once the rest is dropped.
    _filling: Option<Background>,
    /// The thread keeping the state table built (see `state_table`); joined on drop.
    _table_builder: Option<Background>,
}

type SharedHeads = Arc<BTreeMap<OrgId, Head>>;

/// Where the index of an opened store came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexSource {
    /// The index on disk, complete: every write updates it in the log's own batch.
    OnDisk,
    /// A pass over the whole log at open: finishing a rebuild that a crash interrupted.
    Rebuilt,
}

impl DiskStore {
    /// Opens (or creates) the store and checks every head against its log's tail.
    pub fn open(cfg: StoreConfig) -> Result<DiskStore, StoreError> {
        let db = open_db(&cfg)?;
        let presence = Arc::clone(db.presence());
        let mut store = DiskStore {
            db,
            cfg,
            held: Mutex::new(HoldQueue::default()),
            group: Default::default(),
            held_sizes: (AtomicUsize::new(0), AtomicUsize::new(0)),
            rebuild_failed: Mutex::new(None),
            rebuild_marked: std::sync::atomic::AtomicBool::new(false),
            index_meta: Mutex::new(IndexMeta::default()),
            generation: AtomicU64::new(0),
            fills: AtomicU64::new(0),
            forks: AtomicU64::new(0),
            hold_expired: AtomicU64::new(0),
            tails: Default::default(),
            index_source: IndexSource::OnDisk,
            heads_at: Mutex::new(None),
            presence,
            arrivals: None,
            publishing: AtomicU64::new(0),
            _filling: None,
            _table_builder: None,
        };
        store.check_tails()?;
        *store.forks.get_mut() = store.db.scan_prefix([keys::FORK]).count() as u64;
        let generation = match store.db.get(keys::GENERATION)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("log generation is not 8 bytes".into()))?,
            None => 0,
        };
        let stamp_all = crate::arrival::settle(&store.db, store.cfg.arrivals)?;
        if store.db.get(keys::ARRIVALS_KEPT)?.is_some() {
            store.arrivals = Some(ArrivalClock::read(&store.db)?);
        }
        let stale_layout = !index_rebuild::layout_current(&store.db)?;
        let meta = if index_rebuild::pending(&store.db)? || stamp_all || stale_layout {
            tracing::info!("rebuilding the indicator index from the log");
            store.index_source = IndexSource::Rebuilt;
            let meta = index_rebuild::rebuild(&store.db, &store.presence, store.arrivals.as_ref())?;
            // Rebuilt with this build's postings.
            store.db.insert(keys::POSTINGS_SCOPED, Vec::new())?;
            meta
        } else {
            crate::postings::migrate(&store.db)?;
            IndexMeta::read(&store.db)?
        };
        tracing::info!(
            indicators = meta.count,
            source = ?store.index_source,
            "indicator index ready"
        );
        *store
            .index_meta
            .get_mut()
            .unwrap_or_else(|p| p.into_inner()) = meta;
        *store.generation.get_mut() = generation;
        *store.fills.get_mut() = match store.db.scan_prefix([keys::FILL]).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                keys::parse_fill(&k, &v)
                    .ok_or_else(|| StoreError::Corrupt("a fill record does not parse".into()))?
                    .0
            }
            None => 0,
        };
        store._filling = Some(fill_in_background(
            store.db.clone(),
            Arc::clone(&store.presence),
        ));
        store._table_builder = Some(keep_built(
            store.db.clone(),
            store.cfg.path.clone(),
            store.cfg.state_table.clone(),
        ));
        Ok(store)
    }

    /// Whether the in-memory filter of held indicators is complete (filled in the background
    /// after open); until then every read of an indicator goes to disk.
    pub fn presence_filled(&self) -> bool {
        self.presence.filled()
    }

    /// The state stored under index key `key`; the presence filter spares the disk read of
    /// an absent one.
    fn stored_state(&self, key: &[u8]) -> Result<Option<pb::IndicatorState>, StoreError> {
        if !self.presence.may_hold(key) {
            return Ok(None);
        }
        self.db.get(key)?.map(|v| decode_state(&v)).transpose()
    }

    /// Indicators in the lookup table in force (see `state_table`); `None` while lookups read
    /// the index alone.
    pub fn lookup_table_size(&self) -> Option<usize> {
        self.db.state_tables().in_force().map(|(len, _)| len)
    }

    /// The org the store was recorded for, if any.
    pub fn owner(&self) -> Result<Option<OrgId>, StoreError> {
        Ok(self
            .db
            .get(keys::OWNER)?
            .and_then(|v| OrgId::parse(std::str::from_utf8(&v).ok()?).ok()))
    }

    /// Whether a store was ever created at `path` (the engine's marker is there): opening one
    /// where there is none creates it.
    pub fn exists_at(path: &Path) -> bool {
        path.join(crate::kv::MARKER_FILE).is_file()
    }

    /// Checks, without loading the store, that the one at `path` (if there is one) is free
    /// and was not recorded for another org than `owner`: what opening it for `owner` would
    /// refuse. For `intelmesh run --check`, so it records nothing.
    pub fn check_owner_at(path: &Path, owner: &OrgId) -> Result<(), StoreError> {
        // The engine writes its marker when it creates a store: without it there is nothing to
        // check.
        if !DiskStore::exists_at(path) {
            return Ok(());
        }
        let found = {
            let db = open_kv(path, 1 << 20)?;
            db.get(keys::OWNER)?
        };
        // The engine may have written files while opening: keep them private too.
        private_dir::restrict(path)?;
        match found {
            Some(v) if v.as_ref() != owner.as_str().as_bytes() => Err(StoreError::OtherOwner {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&v).chars().take(80).collect(),
                expected: owner.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn check_tails(&self) -> Result<(), StoreError> {
        for (origin, head) in self.heads()? {
            let seg = last_segment(&self.db, &origin)?.ok_or_else(|| {
                StoreError::Corrupt(format!("{origin}: head #{} but no log", head.seq))
            })?;
            if seg.last_seq() != head.seq {
                return Err(StoreError::Corrupt(format!(
                    "{origin}: head is #{} but the log ends at #{}",
                    head.seq,
                    seg.last_seq()
                )));
            }
            let tail = seg
                .last()
                .ok_or_else(|| StoreError::Corrupt(format!("{origin}: empty log segment")))?;
            if header_hash(&tail.header) != head.hash {
                return Err(StoreError::Corrupt(format!(
                    "{origin}: head #{} hash differs from the logged entry",
                    head.seq
                )));
            }
        }
        Ok(())
    }

    fn heads(&self) -> Result<Vec<(OrgId, Head)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix([keys::HEAD]) {
            let (k, v) = kv?;
            let origin = keys::origin_of(&k)
                .ok_or_else(|| StoreError::Corrupt(format!("bad head key {k:?}")))?;
            out.push((origin, decode_head(&v)?));
        }
        Ok(out)
    }

    /// The signing keys recorded when entries were accepted, for offline re-verification.
    pub fn recorded_keys(&self) -> Result<StaticKeys, StoreError> {
        let mut reg = StaticKeys::default();
        for kv in self.db.scan_prefix([keys::KEY]) {
            let (k, v) = kv?;
            let origin = keys::origin_of(&k)
                .ok_or_else(|| StoreError::Corrupt(format!("bad key record {k:?}")))?;
            let bytes: [u8; 32] = v.as_ref().try_into().map_err(|_| {
                StoreError::Corrupt(format!("{origin}: recorded key is not 32 bytes"))
            })?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| {
                StoreError::Corrupt(format!("{origin}: recorded key is not a valid point"))
            })?;
            reg.insert(origin, key);
        }
        Ok(reg)
    }

    pub(crate) fn stored_heads(&self) -> Result<Vec<(OrgId, Head)>, StoreError> {
        self.heads()
    }

    /// Where the index came from when the store opened.
    pub fn index_source(&self) -> IndexSource {
        self.index_source
    }

    /// Indicators in the index.
    pub fn indicator_count(&self) -> usize {
        self.index_meta().count as usize
    }

    /// Entries waiting for predecessors, as of the last write.
    pub fn held_count(&self) -> usize {
        self.held_sizes.0.load(Ordering::Acquire)
    }

    /// Bytes of the entries waiting for predecessors, as of the last write.
    pub fn held_bytes(&self) -> usize {
        self.held_sizes.1.load(Ordering::Acquire)
    }

    /// The receipt of an earlier publication under `key` (see `receipt`); none for one made
    /// before a cut of this node's own log, whose entries the cut may have removed.
    pub fn receipt(&self, key: &[u8]) -> Result<Option<receipt::Receipt>, StoreError> {
        let Some(found) = self.db.get(receipt::key(key))? else {
            return Ok(None);
        };
        let found = receipt::decode(&found)?;
        let cut_at = self
            .db
            .get(keys::OWN_CUT_AT)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes);
        Ok(Some(found).filter(|r| cut_at.is_none_or(|cut| r.at_unix_ms > cut)))
    }

    /// The seq at which `origin` was first found to have forked, if it was.
    pub fn flagged_at(&self, origin: &OrgId) -> Result<Option<u64>, StoreError> {
        self.db
            .get(keys::flag(origin))?
            .map(|v| {
                <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt(format!("{origin}: flag is not 8 bytes")))
            })
            .transpose()
    }

    /// How many entries writes since the open dropped from the hold queue, held for their
    /// predecessors past the hold time: their senders count them delivered, so only a
    /// restarted link sends them again.
    pub fn hold_expired_count(&self) -> u64 {
        self.hold_expired.load(Ordering::Acquire)
    }

    /// How many fork proofs the store holds.
    pub fn fork_count(&self) -> u64 {
        self.forks.load(Ordering::Acquire)
    }

    /// The index's counters as of the last flushed write.
    pub(crate) fn index_meta(&self) -> IndexMeta {
        *self.index_meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the counters of a flushed write (the caller holds `held`).
    pub(crate) fn set_index_meta(&self, meta: IndexMeta) {
        *self.index_meta.lock().unwrap_or_else(|p| p.into_inner()) = meta;
    }

    /// The heads, read from disk once per log generation. `apply` raises the generation only
    /// after its batch is flushed, so a caller whose write returned reads its own heads; a
    /// reader racing a write sees the heads from before or after it, as with a scan.
    pub(crate) fn current_heads(&self) -> Result<SharedHeads, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let cached = self
            .heads_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, heads)) = cached {
            if at == generation {
                return Ok(heads);
            }
        }
        let heads = Arc::new(self.stored_heads()?.into_iter().collect::<BTreeMap<_, _>>());
        if self.generation.load(Ordering::Acquire) == generation {
            *self.heads_at.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((generation, Arc::clone(&heads)));
        }
        Ok(heads)
    }

    /// Brings the cached heads from `before` to `after`, the generation a write just made
    /// durable with `changed` heads, if the cache holds those of `before` (else the next
    /// read finds it stale and reads every head). The caller holds `held` and publishes
    /// `after` only once this returns.
    pub(crate) fn advance_heads(&self, before: u64, after: u64, changed: Vec<(OrgId, Head)>) {
        let mut cached = self.heads_at.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, heads)) = cached.as_mut().filter(|(at, _)| *at == before) {
            let heads_now = Arc::make_mut(heads);
            heads_now.extend(changed);
            *at = after;
        }
    }

    pub(crate) fn lock(&self) -> Held<'_> {
        // A panic while holding the lock leaves only the in-memory hold queue behind; it is a
        // cache of unacknowledged entries, so carrying on with it is safe.
        Held::new(
            self.held.lock().unwrap_or_else(|p| p.into_inner()),
            &self.held_sizes,
        )
    }
}

pub(crate) fn decode_head(bytes: &[u8]) -> Result<Head, StoreError> {
    pb::Head::decode(bytes)
        .ok()
        .as_ref()
        .and_then(Head::from_proto)
        .ok_or_else(|| StoreError::Corrupt("head record does not decode".into()))
}

impl Store for DiskStore {
    fn apply(&self, batch: Vec<VerifiedEntry>) -> Result<ApplyReport, StoreError> {
        self.group
            .apply(batch, |all| self.apply_with(all, Extra::default()))
    }

    fn head(&self, origin: &OrgId) -> Result<Option<Head>, StoreError> {
        match self.db.get(keys::head(origin))? {
            Some(v) => Ok(Some(decode_head(&v)?)),
            None => Ok(None),
        }
    }

    fn heads(&self) -> Result<SharedHeads, StoreError> {
        self.current_heads()
    }

    fn vector(&self) -> Result<VersionVector, StoreError> {
        Ok(self
            .current_heads()?
            .iter()
            .map(|(origin, head)| (origin.clone(), head.seq))
            .collect())
    }

    fn range(
        &self,
        origin: &OrgId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<pb::SignedEntry>, StoreError> {
        let from_seq = from_seq.max(1);
        if let Some(tail) = self.tails.range(origin, from_seq, limit) {
            return Ok(tail);
        }
        let mut out = Vec::new();
        for seg in segments_from(&self.db, origin, from_seq)? {
            for (seq, e) in seg?.into_entries() {
                if out.len() == limit {
                    return Ok(out);
                }
                if seq >= from_seq {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    fn indicator(&self, indicator: &Indicator) -> Result<Option<pb::IndicatorState>, StoreError> {
        self.index_readable()?;
        self.stored_state(&keys::index(indicator))
    }

    fn arrival(
        &self,
        indicator: &Indicator,
        slot: &crate::arrival::Slot,
    ) -> Result<Option<i64>, StoreError> {
        crate::arrival::arrival_of(&self.db, slot, &keys::index(indicator))
    }

    fn lookup_states(
        &self,
        indicators: &[&Indicator],
    ) -> Result<Vec<Option<pb::IndicatorState>>, StoreError> {
        self.index_readable()?;
        // The keys side by side in one buffer: one allocation for a group, not one a probe.
        let mut buffer = Vec::with_capacity(indicators.iter().map(|i| 2 + i.value().len()).sum());
        let mut ends = Vec::with_capacity(indicators.len());
        for i in indicators {
            keys::push_index(&mut buffer, i);
            ends.push(buffer.len());
        }
        let keys: Vec<&[u8]> = (std::iter::once(0).chain(ends.iter().copied()))
            .zip(&ends)
            .map(|(start, &end)| &buffer[start..end])
            .collect();
        // Most probes of a lookup are for indicators nobody listed: the filter's one cache
        // line answers those, where the table's search missed the cache two or three times.
        let held = self.presence.may_hold_each(&keys);
        let asked: Vec<&[u8]> = (keys.iter().zip(&held))
            .filter(|(_, held)| **held)
            .map(|(k, _)| *k)
            .collect();
        let mut answers = self.db.state_tables().lookup_many(&asked)?.into_iter();
        // Pushed into room for all: a collect through `Result` grew the vector by doubling.
        let mut states = Vec::with_capacity(keys.len());
        for (key, held) in keys.iter().zip(held) {
            if !held {
                states.push(None);
                continue;
            }
            states.push(match answers.next() {
                Some(Answer::Found(state)) => Some(state),
                Some(Answer::Absent) => None,
                Some(Answer::AskLsm) | None => {
                    self.db.get(key)?.map(|v| decode_state(&v)).transpose()?
                }
            });
        }
        Ok(states)
    }

    fn select(
        &self,
        selection: &Selection,
        reader: &OrgId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Selected>, StoreError> {
        self.index_readable()?;
        select::select(&self.db, selection, reader.as_str(), after, limit)
    }

    fn fork_proof_count(&self, origin: &OrgId) -> Result<usize, StoreError> {
        crate::apply::fork_proofs_of(&self.db, origin)
    }

    fn fork_proofs(&self) -> Result<Vec<pb::ForkProof>, StoreError> {
        self.db
            .scan_prefix([keys::FORK])
            .map(|kv| {
                pb::ForkProof::decode(kv?.1.as_ref())
                    .map_err(|e| StoreError::Corrupt(format!("fork proof does not decode: {e}")))
            })
            .collect()
    }

    fn flagged_origins(&self) -> Result<Vec<OrgId>, StoreError> {
        self.db
            .scan_prefix([keys::FLAG])
            .map(|kv| {
                let (k, _) = kv?;
                keys::origin_of(&k).ok_or_else(|| StoreError::Corrupt(format!("bad flag {k:?}")))
            })
            .collect()
    }

    fn fills_after(&self, after: u64, limit: usize) -> Result<Vec<Fill>, StoreError> {
        let start = keys::fill(after.saturating_add(1));
        self.db
            .range(start..)
            .take_while(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.first() == Some(&keys::FILL))
            })
            .take(limit)
            .map(|kv| {
                let (k, v) = kv?;
                let (n, origin, seq) = keys::parse_fill(&k, &v)
                    .ok_or_else(|| StoreError::Corrupt("a fill record does not parse".into()))?;
                Ok(Fill { n, origin, seq })
            })
            .collect()
    }

    fn fill_count(&self) -> u64 {
        self.fills.load(Ordering::Acquire)
    }

    fn prefix_lengths(&self) -> intelmesh_core::containment::PrefixLengths {
        self.index_meta().lengths
    }

    fn may_hold_blocks(
        &self,
        blocks: &[intelmesh_core::containment::BlockBits],
        held: &mut [bool],
    ) {
        self.presence.may_hold_blocks(blocks, held)
    }

    fn opened(&self, origin: &OrgId, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(keys::opened(origin, seq))?.map(|v| v.to_vec()))
    }

    fn state_digest(&self) -> Result<Hash, StoreError> {
        self.index_readable()?;
        self.consistent_digest()
    }
}

/// A log entry (origin, seq, entry) and what it opened to at this node, if sealed and opened.
pub(crate) type OpenedEntry = (OrgId, u64, pb::SignedEntry, Option<Vec<u8>>);

/// What a stored sealed entry opened to at this node; `None` for an entry that is not sealed
/// (its header says so: no read) or that this node could not open.
pub(crate) fn opened_of(
    db: &crate::kv::Kv,
    origin: &OrgId,
    seq: u64,
    raw: &pb::SignedEntry,
) -> Result<Option<Vec<u8>>, StoreError> {
    let sealed = raw.payload.is_some()
        && pb::EntryHeader::decode(raw.header.as_ref()).is_ok_and(|h| h.sealed);
    if !sealed {
        return Ok(None);
    }
    Ok(db.get(keys::opened(origin, seq))?.map(|v| v.to_vec()))
}
