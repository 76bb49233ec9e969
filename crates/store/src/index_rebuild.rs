//! Rebuilding the on-disk index from the log, in bounded memory and safe against a crash.
//!
//! Needed when entries leave a log (a compromise cut: folds cannot be undone). A marker key is set before anything is removed and cleared in
//! the last batch; a store opened with the marker set rebuilds again, so a crash at any point
//! leaves either the old complete index being replaced or a complete new one.

use intelmesh_core::verify::read_stored_opened;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use crate::arrival::ArrivalClock;
use crate::index::IndexUpdate;
use crate::index_write::{IndexBatch, IndexMeta};
use crate::presence::Presence;
use crate::segment::all_segments;
use crate::{keys, StoreError};

/// Indicators folded per batch: bounds the memory of a rebuild whatever the log's size.
const CHUNK_INDICATORS: usize = 16_384;
/// Keys removed per batch while clearing the old index.
const CHUNK_REMOVALS: usize = 65_536;

/// Marks the index as being rebuilt, in `batch` (so the mark lands with the change that calls
/// for the rebuild).
pub(crate) fn mark(batch: &mut crate::kv::Batch) {
    batch.insert(keys::INDEX_REBUILD, &[][..]);
}

/// Whether the index's states are in this build's layout; a store without an index is marked
/// so at once. One that is not rebuilds its index (whose last batch marks it).
pub(crate) fn layout_current(db: &crate::kv::Kv) -> Result<bool, StoreError> {
    let layout = db
        .get(keys::INDEX_LAYOUT)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
        .map(u32::from_be_bytes);
    if layout == Some(keys::INDEX_LAYOUT_VERSION) {
        return Ok(true);
    }
    if db.scan_prefix([keys::INDEX]).keys().next().is_none() {
        db.insert(keys::INDEX_LAYOUT, keys::INDEX_LAYOUT_VERSION.to_be_bytes())?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether a rebuild was started and not finished.
pub(crate) fn pending(db: &crate::kv::Kv) -> Result<bool, StoreError> {
    Ok(db.get(keys::INDEX_REBUILD)?.is_some())
}

/// Replaces the index with one folded from the whole log, every record's arrival stamped anew
/// on `clock` when the store keeps them; durable when it returns. The caller keeps other writes out (holds `held`, or the
/// store is still opening).
pub(crate) fn rebuild(
    db: &crate::kv::Kv,
    presence: &Presence,
    clock: Option<&ArrivalClock>,
) -> Result<IndexMeta, StoreError> {
    let t = std::time::Instant::now();
    let mut start = crate::kv::Batch::default();
    mark(&mut start);
    db.apply_batch(start)?;
    clear(db)?;
    let mut index = IndexBatch::new(IndexMeta::default(), presence, clock);
    // Entries whose payload does not read back: left out of the index (it is derived; `verify-
    // store` names them), not a store that no longer opens, as one would be if every open
    // rebuilt and failed on them.
    let mut unreadable = 0u64;
    for item in all_segments(db) {
        let (origin, seg) = item?;
        for (seq, raw) in seg.into_entries() {
            let update = match update_of(db, &origin, seq, &raw) {
                Ok(Some(update)) => update,
                Ok(None) => continue,
                Err(StoreError::Corrupt(why)) => {
                    if unreadable < 10 {
                        tracing::warn!(%why, "left out of the rebuilt index");
                    }
                    unreadable += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            index.merge(db, update)?;
            if index.len() >= CHUNK_INDICATORS {
                let mut batch = crate::kv::Batch::default();
                let meta = index.write(db, &mut batch)?;
                db.apply_batch(batch)?;
                index = IndexBatch::new(meta, presence, clock);
            }
        }
    }
    let mut last = crate::kv::Batch::default();
    let meta = index.write(db, &mut last)?;
    last.remove(keys::INDEX_REBUILD);
    last.insert(keys::INDEX_LAYOUT, keys::INDEX_LAYOUT_VERSION.to_be_bytes());
    db.apply_batch(last)?;
    tracing::info!(
        indicators = meta.count,
        unreadable,
        ms = t.elapsed().as_millis() as u64,
        "indicator index rebuilt from the log"
    );
    Ok(meta)
}

/// What a logged entry folds into the index: nothing for a stub or a sealed payload this
/// node cannot open.
pub(crate) fn update_of(
    db: &crate::kv::Kv,
    origin: &OrgId,
    seq: u64,
    raw: &pb::SignedEntry,
) -> Result<Option<IndexUpdate>, StoreError> {
    if raw.payload.is_none() {
        return Ok(None);
    }
    let opened = crate::disk_store::opened_of(db, origin, seq, raw)?;
    let (header, payload) = read_stored_opened(raw, opened.as_deref()).map_err(|e| {
        StoreError::Corrupt(format!("{origin}#{seq}: stored entry unreadable: {e}"))
    })?;
    Ok(payload.map(|payload| IndexUpdate {
        key: keys::index(&payload.indicator),
        header,
        payload,
    }))
}

/// Removes every key that starts with `prefix`, in batches.
pub(crate) fn remove_prefix(db: &crate::kv::Kv, prefix: u8) -> Result<(), StoreError> {
    loop {
        let mut batch = crate::kv::Batch::default();
        let mut n = 0;
        for kv in db.scan_prefix([prefix]).keys().take(CHUNK_REMOVALS) {
            batch.remove(kv?.to_vec());
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        db.apply_batch(batch)?;
    }
}

/// Removes every index state, posting, arrival time and counter. Postings and arrival times
/// go first: a reader following one to its state while this runs finds the state still there.
fn clear(db: &crate::kv::Kv) -> Result<(), StoreError> {
    for prefix in [keys::POSTING, keys::ARRIVAL, keys::ARRIVED, keys::INDEX] {
        remove_prefix(db, prefix)?;
    }
    let mut batch = crate::kv::Batch::default();
    batch.remove(keys::INDEX_COUNT);
    batch.remove(keys::PREFIX_LENGTHS);
    batch.remove(keys::INDEX_DIGEST);
    db.apply_batch(batch)?;
    Ok(())
}
