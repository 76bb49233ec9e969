//! Sealed entries this node reads and could not open when it took them in (its encryption key
//! missing or unreadable then): marked beside the log (`W` keys, written by `apply` in the
//! entry's own batch, with a payload only), listed for the node to open again once its keys
//! change, and folded into the index when opened.
//!
//! Without this, such an entry stayed unopened for good: it is a valid link of its origin's
//! chain, stored, and no peer sends a stored entry again.

use std::sync::atomic::Ordering;

use intelmesh_core::{OrgId, VerifiedEntry};
use intelmesh_proto::v1 as pb;

use crate::index::IndexUpdate;
use crate::index_write::IndexBatch;
use crate::{keys, DiskStore, Store, StoreError};

/// Where an unopened mark is: its entry's origin and seq.
pub type Mark = (OrgId, u64);

/// One entry marked unopened, as the log holds it.
#[derive(Clone, Debug)]
pub struct Unopened {
    pub origin: OrgId,
    pub seq: u64,
    pub raw: pb::SignedEntry,
}

impl DiskStore {
    /// Up to `limit` marks of entries that did not open, by origin and seq, after `after` (an
    /// origin and seq) if given, with the last mark read (where the next call goes on): each
    /// with its entry as the log holds it, or none when the log no longer holds it in full.
    pub fn unopened(
        &self,
        after: Option<(&OrgId, u64)>,
        limit: usize,
    ) -> Result<(Vec<Unopened>, Option<Mark>), StoreError> {
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
        let last = marks.last().cloned();
        let mut out = Vec::with_capacity(marks.len());
        for (origin, seq) in marks {
            let raw = Store::range(self, &origin, seq, 1)?.pop();
            if let Some(raw) = raw.filter(|r| r.payload.is_some()) {
                out.push(Unopened { origin, seq, raw });
            }
        }
        Ok((out, last))
    }

    /// Drops the marks `marks` (entries that will not open with any key).
    pub fn forget_unopened(&self, marks: &[Mark]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let _held = self.lock();
        let mut batch = crate::kv::Batch::default();
        for (origin, seq) in marks {
            batch.remove(keys::unopened(origin, *seq));
        }
        self.db.apply_batch(batch)
    }

    /// Keeps what `entries` (marked unopened, opened now) opened to, folds them into the index
    /// (the fold does not depend on order) and drops their marks, in one atomic batch; each is
    /// counted as a fill, so a Watch past its seq sends it. Returns how many went in. One
    /// whose mark is gone (opened already) or that the log no longer holds as it is (cut
    /// since) is left out.
    pub fn apply_opened(&self, entries: Vec<VerifiedEntry>) -> Result<usize, StoreError> {
        let _held = self.lock();
        self.rebuild_if_marked()?;
        let mut batch = crate::kv::Batch::default();
        let mut index = IndexBatch::new(self.index_meta(), &self.presence, self.arrivals.as_ref());
        let fills_made = self.fills.load(Ordering::Acquire);
        let mut opened = 0u64;
        let mut taken = std::collections::BTreeSet::new();
        for e in entries {
            let (origin, seq) = (e.header().origin.clone(), e.header().seq);
            let (Some(bytes), Some(payload)) = (e.opened(), e.payload()) else {
                continue;
            };
            if !self.db.contains_key(keys::unopened(&origin, seq))?
                || !taken.insert((origin.clone(), seq))
            {
                continue;
            }
            let held = Store::range(self, &origin, seq, 1)?;
            if held.first().map(|h| &h.header) != Some(&e.raw().header) {
                continue;
            }
            batch.insert(keys::opened(&origin, seq), bytes.to_vec());
            batch.remove(keys::unopened(&origin, seq));
            opened += 1;
            batch.insert(
                keys::fill(fills_made + opened),
                keys::fill_record(&origin, seq),
            );
            index.merge(
                &self.db,
                IndexUpdate {
                    key: keys::index(&payload.indicator),
                    header: e.header().clone(),
                    payload: payload.clone(),
                },
            )?;
        }
        if opened == 0 {
            return Ok(0);
        }
        let meta = index.write(&self.db, &mut batch)?;
        let publishing = self.publishing();
        self.db.apply_batch(batch)?;
        self.fills.fetch_add(opened, Ordering::AcqRel);
        self.set_index_meta(meta);
        publishing.done();
        Ok(opened as usize)
    }
}
