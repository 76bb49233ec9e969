//! The indicator index: how one entry's payload changes the merged view of its indicator.
//!
//! The merge depends only on the entry, never on arrival order across origins: each origin's
//! assertion is replaced only by one with a higher seq, sightings add up, and lists stay
//! sorted by origin. So any delivery order of the same entries gives the same index.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use intelmesh_core::entry::Header;
use intelmesh_core::verify::{read_stored, Payload};
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::segment::Segment;
use crate::{keys, StoreError};

/// Folds one verified payload into `state` (a fresh state for a new indicator).
pub fn merge_payload(state: &mut pb::IndicatorState, header: &Header, payload: Payload) {
    use pb::payload::Body;
    if state.indicator.is_none() {
        state.indicator = Some(pb::IndicatorRef {
            r#type: payload.indicator.ty().to_proto() as i32,
            value: payload.indicator.value().to_string(),
        });
    }
    let origin = header.origin.as_str();
    match payload.body {
        Body::Upsert(u) => upsert_assertion(
            state,
            pb::OriginAssertion {
                origin: origin.to_string(),
                seq: header.seq,
                revoked: false,
                confidence: u.confidence,
                distribution: Some(header.distribution.to_proto()),
                issued_at_unix_ms: header.issued_at_unix_ms,
                valid_from_unix_ms: u.valid_from_unix_ms,
                valid_until_unix_ms: u.valid_until_unix_ms,
                tags: u.tags,
                threat_types: u.threat_types,
                description: u.description,
                external_references: u.external_references,
                revoke_reason: String::new(),
            },
        ),
        Body::Revoke(r) => upsert_assertion(
            state,
            pb::OriginAssertion {
                origin: origin.to_string(),
                seq: header.seq,
                revoked: true,
                distribution: Some(header.distribution.to_proto()),
                issued_at_unix_ms: header.issued_at_unix_ms,
                revoke_reason: r.reason,
                ..Default::default()
            },
        ),
        Body::Sighting(s) => add_sighting(state, header, &s),
    }
}

fn upsert_assertion(state: &mut pb::IndicatorState, new: pb::OriginAssertion) {
    match state
        .assertions
        .binary_search_by(|a| a.origin.as_str().cmp(&new.origin))
    {
        Ok(i) if state.assertions[i].seq < new.seq => state.assertions[i] = new,
        Ok(_) => {}
        Err(i) => state.assertions.insert(i, new),
    }
}

fn add_sighting(state: &mut pb::IndicatorState, header: &Header, s: &pb::Sighting) {
    let origin = header.origin.as_str();
    let i = match state
        .sightings
        .binary_search_by(|x| x.origin.as_str().cmp(origin))
    {
        Ok(i) => i,
        Err(i) => {
            state.sightings.insert(
                i,
                pb::OriginSightings {
                    origin: origin.to_string(),
                    first_seen_unix_ms: s.seen_at_unix_ms,
                    last_seen_unix_ms: s.seen_at_unix_ms,
                    ..Default::default()
                },
            );
            i
        }
    };
    let agg = &mut state.sightings[i];
    agg.count = agg.count.saturating_add(s.count);
    agg.first_seen_unix_ms = agg.first_seen_unix_ms.min(s.seen_at_unix_ms);
    agg.last_seen_unix_ms = agg.last_seen_unix_ms.max(s.seen_at_unix_ms);
    if header.seq > agg.last_seq {
        agg.last_seq = header.seq;
        agg.distribution = Some(header.distribution.to_proto());
    }
}

/// The indicator index: encoded [`pb::IndicatorState`] by [`keys::index`] key, in memory.
///
/// It is state derived from the log, which is the durable record: it is rebuilt from the log
/// when the store opens and updated only after a batch is flushed, so a reader never sees an
/// indicator state that a crash could take back. Values stay encoded to keep memory near the
/// size of the data.
#[derive(Default)]
pub(crate) struct Index {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// One payload to fold into the index, under its [`keys::index`] key.
pub(crate) struct IndexUpdate {
    pub(crate) key: Vec<u8>,
    pub(crate) header: Header,
    pub(crate) payload: Payload,
}

impl Index {
    /// Folds one update into the indicator's state: one search of the map, the state decoded
    /// only when the indicator is already known.
    pub(crate) fn merge(&mut self, update: IndexUpdate) -> Result<(), StoreError> {
        let IndexUpdate {
            key,
            header,
            payload,
        } = update;
        match self.map.entry(key) {
            Entry::Occupied(mut known) => {
                let mut state = decode_state(known.get())?;
                merge_payload(&mut state, &header, payload);
                *known.get_mut() = state.encode_to_vec();
            }
            Entry::Vacant(new) => {
                let mut state = pb::IndicatorState::default();
                merge_payload(&mut state, &header, payload);
                new.insert(state.encode_to_vec());
            }
        }
        Ok(())
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<pb::IndicatorState>, StoreError> {
        self.map.get(key).map(|v| decode_state(v)).transpose()
    }

    /// Sets one encoded state (loading a snapshot).
    pub(crate) fn insert(&mut self, key: Vec<u8>, state: Vec<u8>) {
        self.map.insert(key, state);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes of all keys and values.
    pub(crate) fn encoded_bytes(&self) -> usize {
        self.map.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// Encoded states in key order, strictly after `after` when given.
    pub(crate) fn after(&self, after: Option<&[u8]>) -> impl Iterator<Item = (&[u8], &[u8])> {
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        self.map
            .range::<[u8], _>((start, Bound::Unbounded))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// Folds every full entry of the log into a fresh index.
    pub(crate) fn rebuild(
        segments: impl Iterator<Item = Result<(OrgId, Segment), StoreError>>,
    ) -> Result<Index, StoreError> {
        let mut states: HashMap<Vec<u8>, pb::IndicatorState> = HashMap::new();
        for item in segments {
            let (origin, seg) = item?;
            for (seq, raw) in seg.into_entries() {
                if raw.payload.is_none() {
                    continue;
                }
                let (header, payload) = read_stored(&raw).map_err(|e| {
                    StoreError::Corrupt(format!("{origin}#{seq}: stored entry unreadable: {e}"))
                })?;
                if let Some(p) = payload {
                    merge_payload(
                        states.entry(keys::index(&p.indicator)).or_default(),
                        &header,
                        p,
                    );
                }
            }
        }
        Ok(Index {
            map: states
                .into_iter()
                .map(|(k, s)| (k, s.encode_to_vec()))
                .collect(),
        })
    }
}

pub(crate) fn decode_state(bytes: &[u8]) -> Result<pb::IndicatorState, StoreError> {
    pb::IndicatorState::decode(bytes)
        .map_err(|e| StoreError::Corrupt(format!("index record does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::indicator::normalize;
    use intelmesh_core::{Distribution, IndicatorType, KeyId, Tlp};

    fn upsert(origin: &str, seq: u64, confidence: u32) -> IndexUpdate {
        let indicator = normalize(IndicatorType::Domain, "c2.example").unwrap();
        IndexUpdate {
            key: keys::index(&indicator),
            header: Header {
                origin: OrgId::parse(origin).unwrap(),
                seq,
                prev_hash: [0; 32],
                payload_sha256: [0; 32],
                payload_len: 0,
                issued_at_unix_ms: 1,
                key_id: KeyId([0; 8]),
                distribution: Distribution {
                    tlp: Tlp::Green,
                    recipients: vec![],
                },
            },
            payload: Payload {
                indicator,
                body: pb::payload::Body::Upsert(pb::IndicatorUpsert {
                    confidence,
                    ..Default::default()
                }),
            },
        }
    }

    fn confidences(index: &Index) -> Vec<(String, u64, u32)> {
        let key = upsert("XX", 1, 0).key;
        let state = index.get(&key).unwrap().unwrap();
        state
            .assertions
            .into_iter()
            .map(|a| (a.origin, a.seq, a.confidence))
            .collect()
    }

    #[test]
    fn merging_keeps_each_origins_latest_assertion() {
        let mut index = Index::default();
        for u in [
            upsert("BB", 2, 60),
            upsert("AA", 1, 10),
            upsert("BB", 1, 90),
        ] {
            index.merge(u).unwrap();
        }
        assert_eq!(index.len(), 1);
        assert_eq!(
            confidences(&index),
            vec![("AA".into(), 1, 10), ("BB".into(), 2, 60)]
        );
    }

    #[test]
    fn merging_into_an_undecodable_state_is_an_error_and_changes_nothing() {
        let mut index = Index::default();
        let bad = vec![0xff, 0xff, 0xff];
        index.insert(upsert("AA", 1, 10).key, bad.clone());
        let err = index.merge(upsert("AA", 1, 10)).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(index.after(None).next().map(|(_, v)| v), Some(&bad[..]));
    }
}
