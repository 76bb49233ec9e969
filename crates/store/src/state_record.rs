//! The lookup table's records: a reduced state (`state_table::reduce`) packed small, with its
//! origins and distributions named by number from lists the table holds in memory, and a
//! check of the key it belongs to in place of the key.
//!
//! Why: the table is mapped into memory so a lookup reads a record without a system call, and
//! a mapped page counts in the node's RSS. Records as the index stores them, key included,
//! took about 80 bytes an indicator (800 MB at 10M); the names of a federation's few hundred
//! origins and handful of distributions repeated in each were most of it.
//!
//! A record: the key's check (4 bytes, little-endian), the number of assertions, each
//! assertion (origin, seq, flags, confidence, distribution, valid-from, valid-until if any),
//! the number of sightings, each sighting (origin, distribution); numbers as varints. A name
//! is `id << 1` for the `id`th of its list, or `len << 1 | 1` then `len` bytes written in place
//! (a string, or an encoded `Distribution`) once the lists are full: they are bounded, the
//! records are not.

use std::collections::HashMap;

use intelmesh_proto::v1 as pb;
use prost::encoding::{decode_varint, encode_varint};
use prost::Message;

use crate::StoreError;

/// Most names a list holds; past it (or [`MAX_NAME_BYTES`]) names are written in place.
const MAX_NAMES: usize = 1 << 16;
/// Most bytes the encoded names of a list hold together. A name costs about three times its
/// encoding in memory (its form as the map's key, its item, and their allocations), so a
/// table's lists stay under about 25 MiB whatever names peers choose.
const MAX_NAME_BYTES: usize = 4 << 20;

/// Bytes of a record's key check.
const CHECK_BYTES: usize = 4;

const REVOKED: u8 = 1;
const HAS_VALID_UNTIL: u8 = 2;
const NO_DISTRIBUTION: u8 = 4;

/// The names a table's records refer to by number.
#[derive(Default)]
pub(crate) struct Names {
    origins: List<String>,
    distributions: List<pb::Distribution>,
}

struct List<T> {
    items: Vec<T>,
    ids: HashMap<Vec<u8>, u64>,
    bytes: usize,
}

impl<T> Default for List<T> {
    fn default() -> List<T> {
        List {
            items: Vec::new(),
            ids: HashMap::new(),
            bytes: 0,
        }
    }
}

impl<T> List<T> {
    /// Writes the name whose bytes are `form` (made into an item by `item` if new).
    fn put(&mut self, form: &[u8], item: impl FnOnce() -> T, out: &mut Vec<u8>) {
        if let Some(&id) = self.ids.get(form) {
            return encode_varint(id << 1, out);
        }
        if self.items.len() < MAX_NAMES && self.bytes + form.len() <= MAX_NAME_BYTES {
            let id = self.items.len() as u64;
            self.items.push(item());
            self.ids.insert(form.to_vec(), id);
            self.bytes += form.len();
            return encode_varint(id << 1, out);
        }
        encode_varint((form.len() as u64) << 1 | 1, out);
        out.extend_from_slice(form);
    }

    /// Reads a name: an item of the list, or the bytes written in place.
    fn get<'r>(&self, rec: &mut &'r [u8]) -> Result<Named<'_, 'r, T>, StoreError> {
        let n = varint(rec)?;
        if n & 1 == 0 {
            return usize::try_from(n >> 1)
                .ok()
                .and_then(|id| self.items.get(id))
                .map(Named::Listed)
                .ok_or_else(|| corrupt("a name number beyond its list"));
        }
        let len = usize::try_from(n >> 1).unwrap_or(usize::MAX);
        let (bytes, rest) = rec
            .split_at_checked(len)
            .ok_or_else(|| corrupt("a name longer than its record"))?;
        *rec = rest;
        Ok(Named::InPlace(bytes))
    }

    /// The names the list holds, and the bytes of their forms.
    fn size(&self) -> (usize, usize) {
        (self.items.len(), self.bytes)
    }
}

enum Named<'l, 'r, T> {
    Listed(&'l T),
    InPlace(&'r [u8]),
}

impl Names {
    /// Appends the record of a reduced `state` for the key whose check is `check`.
    pub(crate) fn write(&mut self, check: u32, state: &pb::IndicatorState, out: &mut Vec<u8>) {
        out.extend_from_slice(&check.to_le_bytes());
        encode_varint(state.assertions.len() as u64, out);
        for a in &state.assertions {
            self.origin(&a.origin, out);
            encode_varint(a.seq, out);
            let mut flags = 0;
            if a.revoked {
                flags |= REVOKED;
            }
            if a.valid_until_unix_ms.is_some() {
                flags |= HAS_VALID_UNTIL;
            }
            if a.distribution.is_none() {
                flags |= NO_DISTRIBUTION;
            }
            out.push(flags);
            encode_varint(u64::from(a.confidence), out);
            if let Some(d) = &a.distribution {
                self.distribution(d, out);
            }
            encode_varint(zigzag(a.valid_from_unix_ms), out);
            if let Some(until) = a.valid_until_unix_ms {
                encode_varint(zigzag(until), out);
            }
        }
        encode_varint(state.sightings.len() as u64, out);
        for s in &state.sightings {
            self.origin(&s.origin, out);
            out.push(if s.distribution.is_none() {
                NO_DISTRIBUTION
            } else {
                0
            });
            if let Some(d) = &s.distribution {
                self.distribution(d, out);
            }
        }
    }

    fn origin(&mut self, origin: &str, out: &mut Vec<u8>) {
        self.origins
            .put(origin.as_bytes(), || origin.to_owned(), out);
    }

    fn distribution(&mut self, d: &pb::Distribution, out: &mut Vec<u8>) {
        self.distributions
            .put(&d.encode_to_vec(), || d.clone(), out);
    }

    /// The reduced state in `record` if its key check is `check`; `None` if it is another
    /// key's.
    pub(crate) fn read(
        &self,
        record: &[u8],
        check: u32,
    ) -> Result<Option<pb::IndicatorState>, StoreError> {
        let (stored, mut rec) = record
            .split_first_chunk::<CHECK_BYTES>()
            .ok_or_else(|| corrupt("a record shorter than its check"))?;
        if u32::from_le_bytes(*stored) != check {
            return Ok(None);
        }
        let rec = &mut rec;
        // Each assertion takes at least five bytes, each sighting two: a count read from a
        // damaged record reserves no more than the record could hold.
        let n = bounded_count(rec, 5)?;
        let mut assertions = Vec::with_capacity(n);
        for _ in 0..n {
            let origin = self.read_origin(rec)?;
            let seq = varint(rec)?;
            let flags = byte(rec)?;
            let confidence =
                u32::try_from(varint(rec)?).map_err(|_| corrupt("a confidence beyond 32 bits"))?;
            let distribution = match flags & NO_DISTRIBUTION {
                0 => Some(self.read_distribution(rec)?),
                _ => None,
            };
            let valid_from_unix_ms = unzigzag(varint(rec)?);
            let valid_until_unix_ms = match flags & HAS_VALID_UNTIL {
                0 => None,
                _ => Some(unzigzag(varint(rec)?)),
            };
            assertions.push(pb::OriginAssertion {
                origin,
                seq,
                revoked: flags & REVOKED != 0,
                confidence,
                distribution,
                valid_from_unix_ms,
                valid_until_unix_ms,
                ..Default::default()
            });
        }
        let n = bounded_count(rec, 2)?;
        let mut sightings = Vec::with_capacity(n);
        for _ in 0..n {
            let origin = self.read_origin(rec)?;
            let distribution = match byte(rec)? & NO_DISTRIBUTION {
                0 => Some(self.read_distribution(rec)?),
                _ => None,
            };
            sightings.push(pb::OriginSightings {
                origin,
                distribution,
                ..Default::default()
            });
        }
        if !rec.is_empty() {
            return Err(corrupt("bytes after a record's last sighting"));
        }
        Ok(Some(pb::IndicatorState {
            indicator: None,
            assertions,
            sightings,
        }))
    }

    fn read_origin(&self, rec: &mut &[u8]) -> Result<String, StoreError> {
        match self.origins.get(rec)? {
            Named::Listed(o) => Ok(o.clone()),
            Named::InPlace(bytes) => String::from_utf8(bytes.to_vec())
                .map_err(|_| corrupt("an origin that is not UTF-8")),
        }
    }

    fn read_distribution(&self, rec: &mut &[u8]) -> Result<pb::Distribution, StoreError> {
        match self.distributions.get(rec)? {
            Named::Listed(d) => Ok(d.clone()),
            Named::InPlace(bytes) => pb::Distribution::decode(bytes)
                .map_err(|e| corrupt(&format!("a distribution that does not decode: {e}"))),
        }
    }

    /// The origins and distributions listed, and the bytes of their forms.
    pub(crate) fn size(&self) -> [(usize, usize); 2] {
        [self.origins.size(), self.distributions.size()]
    }
}

fn bounded_count(rec: &mut &[u8], min_bytes: usize) -> Result<usize, StoreError> {
    let n = varint(rec)?;
    usize::try_from(n)
        .ok()
        .filter(|n| n.saturating_mul(min_bytes) <= rec.len())
        .ok_or_else(|| corrupt("a count beyond what its record holds"))
}

fn varint(rec: &mut &[u8]) -> Result<u64, StoreError> {
    decode_varint(rec).map_err(|e| corrupt(&format!("a number that does not decode: {e}")))
}

fn byte(rec: &mut &[u8]) -> Result<u8, StoreError> {
    let (&b, rest) = rec
        .split_first()
        .ok_or_else(|| corrupt("a record cut short"))?;
    *rec = rest;
    Ok(b)
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("state table record: {what}"))
}

#[cfg(test)]
#[path = "state_record_tests.rs"]
mod tests;
