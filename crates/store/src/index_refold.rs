//! Folding again only what a cut touched: the indicators that an origin's cut entries named lose
//! that origin's records, and its entries still in the log are folded into them again, in the
//! cut's own batch.
//!
//! So the index never shows a cut half done, and the rest of the index is left as it is (a
//! whole rebuild takes minutes at 10M indicators, during which lookups and pages find nothing).
//! A block left with no record keeps its prefix length in the index's counters (they only
//! grow; a lookup probes the length for nothing, and `verify_store` takes a superset). A cut
//! naming more than [`MAX_REFOLDED`] indicators has the whole index rebuilt instead
//! (`index_rebuild`).

use std::collections::BTreeSet;

use intelmesh_core::OrgId;

use crate::arrival::ArrivalClock;
use crate::index_rebuild::update_of;
use crate::index_write::{IndexBatch, IndexMeta};
use crate::presence::Presence;
use crate::segment::segments_from;
use crate::StoreError;

/// Most indicators a cut folds again in its own batch (their states are held in memory).
pub(crate) const MAX_REFOLDED: usize = 16_384;

/// The index keys of what `origin`'s entries after `keep_through` name; `None` past
/// [`MAX_REFOLDED`].
pub(crate) fn cut_keys(
    db: &crate::kv::Kv,
    origin: &OrgId,
    keep_through: u64,
) -> Result<Option<BTreeSet<Vec<u8>>>, StoreError> {
    let mut keys = BTreeSet::new();
    for seg in segments_from(db, origin, keep_through.saturating_add(1))? {
        for (seq, raw) in seg?.into_entries() {
            if seq <= keep_through {
                continue;
            }
            if let Some(update) = update_of(db, origin, seq, &raw)? {
                keys.insert(update.key);
                if keys.len() > MAX_REFOLDED {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(keys))
}

/// The index as it is once `origin`'s entries after `keep_through` are gone, for the
/// indicators `keys` (what they named), written into `batch`; returns the counters after it.
/// Reads the log before the cut is applied (the kept entries are the same either way).
pub(crate) fn refold(
    db: &crate::kv::Kv,
    origin: &OrgId,
    keep_through: u64,
    keys: &BTreeSet<Vec<u8>>,
    (meta, presence, clock): (IndexMeta, &Presence, Option<&ArrivalClock>),
    batch: &mut crate::kv::Batch,
) -> Result<IndexMeta, StoreError> {
    // Nothing of the index changes: the kept log need not be read (a cut of stubs alone).
    if keys.is_empty() {
        return Ok(meta);
    }
    let mut index = IndexBatch::new(meta, presence, clock);
    for key in keys {
        index.forget_origin(db, key, origin.as_str())?;
    }
    'log: for seg in segments_from(db, origin, 0)? {
        for (seq, raw) in seg?.into_entries() {
            if seq > keep_through {
                break 'log;
            }
            match update_of(db, origin, seq, &raw)? {
                Some(update) if keys.contains(&update.key) => index.merge(db, update)?,
                _ => {}
            }
        }
    }
    index.write(db, batch)
}
