//! Sealed entries this node reads and could not open when it took them in (its encryption key
//! missing or unreadable then): marked beside the log (`W` keys, written by `apply` in the
//! entry's own batch), listed for the node to open again once its keys are fixed, and folded
//! into the index when opened.
//!
//! Without this, such an entry stayed unopened for good: it is a valid link of its origin's
//! chain, stored, and no peer sends a stored entry again.

use std::collections::{BTreeMap, BTreeSet};

use intelmesh_core::verify::read_stored_opened;
use intelmesh_core::{OrgId, VerifiedEntry};
use intelmesh_proto::v1 as pb;

use crate::index_rebuild::update_of;
use crate::index_write::IndexBatch;
use crate::segment::segments_from;
use crate::{keys, DiskStore, Store, StoreError};

/// What one origin's entries opened to now, by seq, and the index keys of what they name.
type Opened = (BTreeMap<u64, Vec<u8>>, BTreeSet<Vec<u8>>);

/// One entry marked unopened, as the log holds it.
#[derive(Clone, Debug)]
pub struct Unopened {
    pub origin: OrgId,
    pub seq: u64,
    pub raw: pb::SignedEntry,
}

impl DiskStore {
    /// Up to `limit` of the entries marked unopened, by origin and seq, after `after` (an
    /// origin and seq) if given. A mark whose entry the log no longer holds in full (cut since)
    /// is skipped.
    pub fn unopened(
        &self,
        after: Option<(&OrgId, u64)>,
        limit: usize,
    ) -> Result<Vec<Unopened>, StoreError> {
        let start = match after {
            Some((origin, seq)) => keys::unopened(origin, seq.saturating_add(1)),
            None => vec![keys::UNOPENED],
        };
        let mut marks = Vec::new();
        for k in self.db.range(start..).keys() {
            let k = k?;
            if k.first() != Some(&keys::UNOPENED) || marks.len() == limit {
                break;
            }
            let (Some(origin), Some(seq)) = (keys::origin_of(&k), keys::seq_of_log(&k)) else {
                return Err(StoreError::Corrupt(
                    "an unopened mark does not parse".into(),
                ));
            };
            marks.push((origin, seq));
        }
        let mut out = Vec::with_capacity(marks.len());
        for (origin, seq) in marks {
            let raw = Store::range(self, &origin, seq, 1)?.pop();
            if let Some(raw) = raw.filter(|r| r.payload.is_some()) {
                out.push(Unopened { origin, seq, raw });
            }
        }
        Ok(out)
    }

    /// Keeps what `entries` (marked unopened, opened now) opened to, folds them into the index
    /// and drops their marks, in one atomic batch; returns how many went in. One the log no
    /// longer holds as it is (cut since) is left out. Each origin's records on the indicators
    /// they name are folded again from its log, in order, as a rebuild would fold them.
    pub fn apply_opened(&self, entries: Vec<VerifiedEntry>) -> Result<usize, StoreError> {
        let _held = self.lock();
        let mut batch = crate::kv::Batch::default();
        let mut by_origin: BTreeMap<OrgId, Opened> = BTreeMap::new();
        for e in entries {
            let (origin, seq) = (e.header().origin.clone(), e.header().seq);
            let (Some(opened), Some(payload)) = (e.opened(), e.payload()) else {
                continue;
            };
            let held = Store::range(self, &origin, seq, 1)?;
            if held.first().map(|h| &h.header) != Some(&e.raw().header) {
                continue;
            }
            batch.insert(keys::opened(&origin, seq), opened.to_vec());
            batch.remove(keys::unopened(&origin, seq));
            let (seqs, indicators) = by_origin.entry(origin).or_default();
            seqs.insert(seq, opened.to_vec());
            indicators.insert(keys::index(&payload.indicator));
        }
        let opened: usize = by_origin.values().map(|(seqs, _)| seqs.len()).sum();
        if opened == 0 {
            return Ok(0);
        }
        let mut index = IndexBatch::new(self.index_meta(), &self.presence, self.arrivals.as_ref());
        for (origin, (seqs, indicators)) in &by_origin {
            for key in indicators {
                index.forget_origin(&self.db, key, origin.as_str())?;
            }
            for seg in segments_from(&self.db, origin, 0)? {
                for (seq, raw) in seg?.into_entries() {
                    let update = match seqs.get(&seq) {
                        Some(opened) => opened_update(origin, seq, &raw, opened)?,
                        None => update_of(&self.db, origin, seq, &raw)?,
                    };
                    match update {
                        Some(u) if indicators.contains(&u.key) => index.merge(&self.db, u)?,
                        _ => {}
                    }
                }
            }
        }
        let meta = index.write(&self.db, &mut batch)?;
        let publishing = self.publishing();
        self.db.apply_batch(batch)?;
        self.set_index_meta(meta);
        publishing.done();
        Ok(opened)
    }
}

/// The index update of `origin`'s stored entry `seq`, opened to `opened` now.
fn opened_update(
    origin: &OrgId,
    seq: u64,
    raw: &pb::SignedEntry,
    opened: &[u8],
) -> Result<Option<crate::index::IndexUpdate>, StoreError> {
    let (header, payload) = read_stored_opened(raw, Some(opened)).map_err(|e| {
        StoreError::Corrupt(format!("{origin}#{seq}: stored entry unreadable: {e}"))
    })?;
    Ok(payload.map(|payload| crate::index::IndexUpdate {
        key: keys::index(&payload.indicator),
        header,
        payload,
    }))
}
