//! Folding a batch of updates into the on-disk index: the changed states, their postings and the
//! index's counters, written into the same batch as the log entries they come from.
//!
//! Writing the index in the log's own atomic batch is what makes it exact after any crash: the
//! index never lags the log and never runs ahead of it, so a restart replays nothing and a
//! reader never sees a state a crash could undo. The fold reads the current states from the store
//! under the store's write lock (`held`), so no other write can change them in between.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use intelmesh_core::containment::PrefixLengths;
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::arrival::{self, ArrivalClock, Slot};
use crate::index::{decode_state, merge_payload, IndexUpdate};
use crate::postings::postings_of;
use crate::presence::Presence;
use crate::state_sum::StateSum;
use crate::{keys, StoreError};

/// The index's counters, as stored beside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IndexMeta {
    /// Indicators in the index.
    pub(crate) count: u64,
    /// Prefix lengths of the CIDR blocks in the index.
    pub(crate) lengths: PrefixLengths,
    /// The running digest of the stored states.
    pub(crate) digest: StateSum,
}

impl IndexMeta {
    pub(crate) fn read(db: &crate::kv::Kv) -> Result<IndexMeta, StoreError> {
        let count = match db.get(keys::INDEX_COUNT)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("index count is not 8 bytes".into()))?,
            None => 0,
        };
        let lengths = match db.get(keys::PREFIX_LENGTHS)? {
            Some(v) => PrefixLengths::from_bytes(&v)
                .ok_or_else(|| StoreError::Corrupt("prefix lengths record is malformed".into()))?,
            None => PrefixLengths::default(),
        };
        let digest = match db.get(keys::INDEX_DIGEST)? {
            Some(v) => StateSum::from_bytes(&v)
                .ok_or_else(|| StoreError::Corrupt("index digest is not 32 bytes".into()))?,
            None => StateSum::default(),
        };
        Ok(IndexMeta {
            count,
            lengths,
            digest,
        })
    }

    fn write(&self, batch: &mut crate::kv::Batch) {
        batch.insert(keys::INDEX_COUNT, self.count.to_be_bytes());
        batch.insert(keys::PREFIX_LENGTHS, self.lengths.to_bytes());
        batch.insert(keys::INDEX_DIGEST, self.digest.to_bytes());
    }
}

/// One indicator touched by the batch: its postings and records before, and its state now.
struct Touched {
    postings_before: BTreeSet<Vec<u8>>,
    slots_before: BTreeMap<Slot, arrival::Record>,
    state: pb::IndicatorState,
}

/// The index changes of one write, gathered before they are put in its batch.
pub(crate) struct IndexBatch<'a> {
    touched: HashMap<Vec<u8>, Touched>,
    meta: IndexMeta,
    presence: &'a Presence,
    clock: Option<&'a ArrivalClock>,
}

impl<'a> IndexBatch<'a> {
    pub(crate) fn new(
        meta: IndexMeta,
        presence: &'a Presence,
        clock: Option<&'a ArrivalClock>,
    ) -> IndexBatch<'a> {
        IndexBatch {
            touched: HashMap::new(),
            meta,
            presence,
            clock,
        }
    }

    /// Folds one update into its indicator's state, read from `db` the first time the batch
    /// touches it.
    pub(crate) fn merge(
        &mut self,
        db: &crate::kv::Kv,
        update: IndexUpdate,
    ) -> Result<(), StoreError> {
        let IndexUpdate {
            key,
            header,
            payload,
        } = update;
        if !self.touched.contains_key(&key) && !self.touch_stored(db, &key)? {
            self.meta.count = self.meta.count.saturating_add(1);
            self.meta.lengths.record(&payload.indicator);
            self.touched.insert(
                key.clone(),
                Touched {
                    postings_before: BTreeSet::new(),
                    slots_before: BTreeMap::new(),
                    state: pb::IndicatorState::default(),
                },
            );
        }
        if let Some(t) = self.touched.get_mut(&key) {
            merge_payload(&mut t.state, &header, payload);
        }
        Ok(())
    }

    /// Takes `origin`'s records (assertions and sightings) out of the state under `key`, so
    /// that its entries still in the log can be folded in again after a cut. No state, no
    /// change.
    pub(crate) fn forget_origin(
        &mut self,
        db: &crate::kv::Kv,
        key: &[u8],
        origin: &str,
    ) -> Result<(), StoreError> {
        if !self.touched.contains_key(key) && !self.touch_stored(db, key)? {
            return Ok(());
        }
        if let Some(t) = self.touched.get_mut(key) {
            t.state.assertions.retain(|a| a.origin != origin);
            t.state.sightings.retain(|x| x.origin != origin);
        }
        Ok(())
    }

    /// Reads the state under `key` into the batch, if the store holds one; says whether it did.
    fn touch_stored(&mut self, db: &crate::kv::Kv, key: &[u8]) -> Result<bool, StoreError> {
        let stored = match self.presence.may_hold(key) {
            true => db.get(key)?,
            false => None,
        };
        let Some(v) = stored else {
            return Ok(false);
        };
        let state = decode_state(&v)?;
        self.meta.digest.remove(key, &v);
        self.touched.insert(
            key.to_vec(),
            Touched {
                postings_before: postings_of(key, &state),
                slots_before: arrival::slots_of(&state),
                state,
            },
        );
        Ok(true)
    }

    /// Puts the new states, the changed postings and arrival times, and the counters in
    /// `batch` (which adds the new indicators to the presence filter as it is applied); returns
    /// the counters as they will be once `batch` is applied. Reads `db` for the arrival times
    /// of changed records.
    pub(crate) fn write(
        mut self,
        db: &crate::kv::Kv,
        batch: &mut crate::kv::Batch,
    ) -> Result<IndexMeta, StoreError> {
        if self.touched.is_empty() {
            return Ok(self.meta);
        }
        let mut due = arrival::Due::default();
        for (key, t) in self.touched {
            let after = postings_of(&key, &t.state);
            for gone in t.postings_before.difference(&after) {
                batch.remove(gone.as_slice());
            }
            for new in after.difference(&t.postings_before) {
                batch.insert(new.as_slice(), &[][..]);
            }
            if self.clock.is_some() {
                let slots = arrival::slots_of(&t.state);
                // Only a record's own change stamps it. Sightings held before a value's first
                // assertion are added to a reader's collection with the first assertion it
                // sees (the TAXII read does it): stamping them again with the value's first
                // assertion would date, in their versions, an assertion the reader may not see.
                arrival::write_changes(db, &key, &t.slots_before, &slots, &mut due, batch)?;
            }
            // Left with no record (its origin's entries cut): no longer indexed.
            if is_empty(&t.state) {
                self.meta.count = self.meta.count.saturating_sub(1);
                batch.remove(key);
                continue;
            }
            let state = t.state.encode_to_vec();
            self.meta.digest.add(&key, &state);
            batch.insert(key, state);
        }
        if let Some(clock) = self.clock {
            due.stamp(clock, batch);
            clock.record(batch);
        }
        self.meta.write(batch);
        Ok(self.meta)
    }

    /// Indicators touched so far.
    pub(crate) fn len(&self) -> usize {
        self.touched.len()
    }
}

/// Whether a state holds no record at all.
fn is_empty(state: &pb::IndicatorState) -> bool {
    state.assertions.is_empty() && state.sightings.is_empty()
}
