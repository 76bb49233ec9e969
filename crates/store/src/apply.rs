//! One `Store::apply` in progress: chain decisions against the stored heads, with every write
//! gathered into one sled batch.
//!
//! Reads go through to the db once per origin and per indicator; the entries this call wrote
//! are kept per origin, so later entries of the same call see them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use intelmesh_core::chain::{admit, Admission, ChainError, StoredAt};
use intelmesh_core::entry::{header_hash, withheld_stub};
use intelmesh_core::{Head, KeyId, OrgId, VerifiedEntry};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::index::merge_payload;
use crate::sled_store::{decode_entry, decode_head, decode_state};
use crate::{keys, Outcome, StoreError};

pub(crate) enum Placed {
    Done(Outcome),
    /// Predecessors missing: the entry comes back to be held.
    Gap(Box<VerifiedEntry>),
}

/// What this call did to one origin.
struct OriginWork {
    head: Option<Head>,
    /// Entries written by this call (appends and payload fills), by seq.
    written: HashMap<u64, pb::SignedEntry>,
    /// Key ids recorded by this call.
    keys: Vec<KeyId>,
    head_changed: bool,
}

pub(crate) struct Work<'a> {
    db: &'a sled::Db,
    batch: sled::Batch,
    origins: HashMap<OrgId, OriginWork>,
    index: HashMap<Vec<u8>, pb::IndicatorState>,
}

impl<'a> Work<'a> {
    pub(crate) fn new(db: &'a sled::Db) -> Work<'a> {
        Work {
            db,
            batch: sled::Batch::default(),
            origins: HashMap::new(),
            index: HashMap::new(),
        }
    }

    fn origin(&mut self, origin: &OrgId) -> Result<&mut OriginWork, StoreError> {
        if !self.origins.contains_key(origin) {
            let head = match self.db.get(keys::head(origin))? {
                Some(v) => Some(decode_head(&v)?),
                None => None,
            };
            let fresh = OriginWork {
                head,
                written: HashMap::new(),
                keys: Vec::new(),
                head_changed: false,
            };
            self.origins.insert(origin.clone(), fresh);
        }
        self.origins
            .get_mut(origin)
            .ok_or_else(|| StoreError::Corrupt("origin state vanished".into()))
    }

    pub(crate) fn head(&mut self, origin: &OrgId) -> Result<Option<Head>, StoreError> {
        Ok(self.origin(origin)?.head)
    }

    fn stored(&mut self, origin: &OrgId, seq: u64) -> Result<Option<pb::SignedEntry>, StoreError> {
        if let Some(e) = self.origin(origin)?.written.get(&seq) {
            return Ok(Some(e.clone()));
        }
        match self.db.get(keys::log(origin, seq))? {
            Some(v) => Ok(Some(decode_entry(&v)?)),
            None => Ok(None),
        }
    }

    pub(crate) fn place(&mut self, entry: VerifiedEntry) -> Result<Placed, StoreError> {
        let h = entry.header();
        let (origin, seq) = (h.origin.clone(), h.seq);
        let head = self.head(&origin)?;
        let stored = if seq <= head.map_or(0, |x| x.seq) {
            self.stored(&origin, seq)?
        } else {
            None
        };
        let stored_at = stored.as_ref().map(|s| StoredAt {
            hash: header_hash(&s.header),
            has_payload: s.payload.is_some(),
        });
        let has_payload = entry.payload().is_some();
        let admission = admit(
            head,
            stored_at,
            seq,
            &h.prev_hash,
            entry.hash(),
            has_payload,
        );
        let outcome = match admission {
            Admission::Append => {
                let new_head = Head {
                    seq,
                    hash: *entry.hash(),
                };
                self.write_entry(entry)?;
                let o = self.origin(&origin)?;
                o.head = Some(new_head);
                o.head_changed = true;
                Outcome::Appended
            }
            Admission::FillPayload => {
                self.write_entry(entry)?;
                Outcome::PayloadFilled
            }
            Admission::Duplicate => Outcome::Duplicate,
            Admission::Gap { .. } => return Ok(Placed::Gap(Box::new(entry))),
            Admission::Equivocation { .. } => {
                self.record_fork(&entry, stored);
                Outcome::Rejected(ChainError::Equivocation { origin, seq })
            }
            Admission::ChainBreak { .. } => {
                Outcome::Rejected(ChainError::ChainBreak { origin, seq })
            }
        };
        Ok(Placed::Done(outcome))
    }

    fn write_entry(&mut self, entry: VerifiedEntry) -> Result<(), StoreError> {
        let (raw, header, _hash, payload, key) = entry.into_parts();
        self.batch
            .insert(keys::log(&header.origin, header.seq), raw.encode_to_vec());
        let o = self.origin(&header.origin)?;
        o.written.insert(header.seq, raw);
        if !o.keys.contains(&header.key_id) {
            o.keys.push(header.key_id);
            self.batch.insert(
                keys::signing_key(&header.origin, &header.key_id),
                key.as_bytes().to_vec(),
            );
        }
        if let Some(payload) = payload {
            let state = match self.index.entry(keys::index(&payload.indicator)) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    let loaded = match self.db.get(v.key())? {
                        Some(bytes) => decode_state(&bytes)?,
                        None => pb::IndicatorState::default(),
                    };
                    v.insert(loaded)
                }
            };
            merge_payload(state, &header, payload);
        }
        Ok(())
    }

    fn record_fork(&mut self, entry: &VerifiedEntry, stored: Option<pb::SignedEntry>) {
        let h = entry.header();
        let proof = pb::ForkProof {
            origin: h.origin.to_string(),
            seq: h.seq,
            kept: stored.as_ref().map(withheld_stub),
            conflicting: Some(withheld_stub(entry.raw())),
            detected_at_unix_ms: intelmesh_core::now_unix_ms(),
        };
        self.batch.insert(
            keys::fork(&h.origin, h.seq, entry.hash()),
            proof.encode_to_vec(),
        );
        self.batch
            .insert(keys::flag(&h.origin), h.seq.to_be_bytes().to_vec());
    }

    /// The sled batch with the final heads and index states added.
    pub(crate) fn finish(mut self) -> sled::Batch {
        for (origin, o) in &self.origins {
            if let (true, Some(head)) = (o.head_changed, o.head) {
                self.batch
                    .insert(keys::head(origin), head.to_proto().encode_to_vec());
            }
        }
        for (key, state) in self.index {
            self.batch.insert(key, state.encode_to_vec());
        }
        self.batch
    }
}
