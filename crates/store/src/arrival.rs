//! Arrival postings: when each record of the index last changed at this node, by this node's
//! clock, so a reader polling "what arrived after T" (TAXII `added_after`) misses nothing that
//! reached this node late.
//!
//! A record is one slot of an indicator's state: an origin's assertion, or its sightings,
//! under one distribution (`index`). Its arrival time is stamped when a write changes it, in
//! microseconds, strictly increasing across the store's writes (they run one at a time under
//! its write lock) and across restarts (the clock resumes after the newest stamp), so every
//! record has a distinct time and one later than any a reader saw before the write. A record
//! keeps its own time: a change to another record of the same indicator (one the reader may not
//! see, say RED) moves nothing the reader sees.
//!
//! Unlike the postings, arrival times are not a function of the index: they say when, not what.
//! `verify-store` checks that they cover the index's records exactly, not their values, and a
//! rebuild of the index stamps every record anew (a reader then sees everything once more,
//! never less).
//!
//! Arrival postings are scoped as the other postings are (`postings`): a record's go under the
//! public scope, or under each org that may read it, and a reader reads the public scope and
//! its own, merged by time. A record withheld from a reader is no candidate of its reads: it
//! costs it nothing it could time or count, and it takes no place in a page.
//!
//! Layout:
//! - `A <len u16><scope><time, order-preserving u64 µs><slot, 16 bytes><index key>`: ordered
//!   by time within each scope;
//! - `a <slot, 16 bytes><index key>` → the time (i64 BE): finds a record's postings to move
//!   them.
//!
//! A position, what a read resumes after, is a posting without its scope: `A <time><slot>
//! <index key>` ([`parse_position`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use intelmesh_core::entry::sha256;
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::postings::{ordered, scopes};
use crate::{keys, Arrivals, StoreError};

/// The id of one record of a state, unique within the indicator.
pub type Slot = [u8; 16];

/// What identifies one version of a record: a write that changes the marker changes the record.
type Marker = (u64, u64);

/// One record of a state as its arrival is kept: its version, and the scopes it is posted in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) marker: Marker,
    pub(crate) scopes: Vec<String>,
    /// Its TLP's code (0 when it has none), which orders a write's stamps.
    pub(crate) tlp: i32,
}

const ASSERTION: u8 = b'a';
const SIGHTINGS: u8 = b's';

fn slot(kind: u8, origin: &str, d: Option<&pb::Distribution>) -> Slot {
    let d = d.map(Message::encode_to_vec).unwrap_or_default();
    let mut name = Vec::with_capacity(16 + origin.len() + d.len());
    name.push(kind);
    name.extend_from_slice(&(origin.len() as u64).to_be_bytes());
    name.extend_from_slice(origin.as_bytes());
    name.extend_from_slice(&d);
    let mut s = [0u8; 16];
    s.copy_from_slice(&sha256(&name)[..16]);
    s
}

/// The slot of an origin's assertion as the index stores it (its distribution canonical).
pub fn assertion_slot(a: &pb::OriginAssertion) -> Slot {
    slot(ASSERTION, &a.origin, a.distribution.as_ref())
}

/// The slot of an origin's sightings as the index stores them.
pub fn sightings_slot(s: &pb::OriginSightings) -> Slot {
    slot(SIGHTINGS, &s.origin, s.distribution.as_ref())
}

/// Every record of `state` with its marker and scopes.
pub(crate) fn slots_of(state: &pb::IndicatorState) -> BTreeMap<Slot, Record> {
    let record = |marker, d: Option<&pb::Distribution>, origin: &str| Record {
        marker,
        scopes: scopes(d, origin).into_iter().map(str::to_string).collect(),
        tlp: d.map_or(0, |d| d.tlp),
    };
    let assertions = state.assertions.iter().map(|a| {
        let r = record((a.seq, 0), a.distribution.as_ref(), &a.origin);
        (assertion_slot(a), r)
    });
    let sightings = state.sightings.iter().map(|s| {
        let r = record((s.last_seq, s.count), s.distribution.as_ref(), &s.origin);
        (sightings_slot(s), r)
    });
    assertions.chain(sightings).collect()
}

/// The store's arrival clock: the newest time stamped.
#[derive(Debug, Default)]
pub(crate) struct ArrivalClock(AtomicI64);

impl ArrivalClock {
    /// The clock of a store: it resumes after the newest stamp on disk (its record, or the
    /// newest posting, whichever is later).
    pub(crate) fn read(db: &crate::kv::Kv) -> Result<ArrivalClock, StoreError> {
        // Written with every batch that stamps, so at least the newest time of any scope.
        let recorded = match db.get(keys::ARRIVAL_CLOCK)? {
            Some(v) => decode_time(&v)?,
            None => 0,
        };
        Ok(ArrivalClock(AtomicI64::new(recorded)))
    }

    /// Records the newest time stamped in `batch`, so the clock survives a rebuild's clearing.
    pub(crate) fn record(&self, batch: &mut crate::kv::Batch) {
        batch.insert(
            keys::ARRIVAL_CLOCK,
            self.0.load(Ordering::Acquire).to_be_bytes(),
        );
    }

    /// A time after every one stamped before, and not before the wall clock. Only writers
    /// holding the store's write lock stamp, so times follow the order writes commit in.
    fn stamp(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let next = now.max(self.0.load(Ordering::Acquire).saturating_add(1));
        self.0.store(next, Ordering::Release);
        next
    }
}

/// The prefix of every arrival posting in `scope`.
pub(crate) fn scope_prefix(scope: &str) -> Vec<u8> {
    let scope = &scope.as_bytes()[..scope.len().min(MAX_SCOPE)];
    let mut k = Vec::with_capacity(3 + scope.len());
    k.push(keys::ARRIVAL);
    k.extend_from_slice(&(scope.len() as u16).to_be_bytes());
    k.extend_from_slice(scope);
    k
}

/// Longest scope (an org id) a posting holds, in bytes; org ids are far shorter.
const MAX_SCOPE: usize = 1024;

fn posting(scope: &str, time: i64, slot: &Slot, index_key: &[u8]) -> Vec<u8> {
    let mut k = scope_prefix(scope);
    k.extend_from_slice(&ordered(time).to_be_bytes());
    k.extend_from_slice(slot);
    k.extend_from_slice(index_key);
    k
}

/// The position a posting of the scope whose prefix is `prefix` stands for.
#[cfg(test)]
pub(crate) fn position_of(prefix: &[u8], posting: &[u8]) -> Option<Vec<u8>> {
    let rest = posting.strip_prefix(prefix)?;
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(keys::ARRIVAL);
    k.extend_from_slice(rest);
    Some(k)
}

pub(crate) fn record_key(slot: &Slot, index_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(17 + index_key.len());
    k.push(keys::ARRIVED);
    k.extend_from_slice(slot);
    k.extend_from_slice(index_key);
    k
}

/// The first position of a read of records arrived at or after `since` (µs); within a scope,
/// after its prefix (as every position).
pub(crate) fn start(since: i64) -> Vec<u8> {
    let mut k = vec![keys::ARRIVAL];
    k.extend_from_slice(&ordered(since).to_be_bytes());
    k
}

/// The time, slot and index key of an arrival posting; `None` for another key.
pub fn parse_position(k: &[u8]) -> Option<(i64, Slot, &[u8])> {
    if k.first() != Some(&keys::ARRIVAL) {
        return None;
    }
    let time = u64::from_be_bytes(k.get(1..9)?.try_into().ok()?) ^ (1 << 63);
    let slot: Slot = k.get(9..25)?.try_into().ok()?;
    Some((time as i64, slot, k.get(25..).filter(|i| !i.is_empty())?))
}

/// The slot and index key of a record key; `None` for another key.
pub(crate) fn parse_record_key(k: &[u8]) -> Option<(Slot, &[u8])> {
    if k.first() != Some(&keys::ARRIVED) {
        return None;
    }
    let slot: Slot = k.get(1..17)?.try_into().ok()?;
    Some((slot, k.get(17..).filter(|i| !i.is_empty())?))
}

pub(crate) fn decode_time(v: &[u8]) -> Result<i64, StoreError> {
    <[u8; 8]>::try_from(v)
        .map(i64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("an arrival time is not 8 bytes".into()))
}

/// The arrival time of one record; `None` when the store has none for it.
pub(crate) fn arrival_of(
    db: &crate::kv::Kv,
    slot: &Slot,
    index_key: &[u8],
) -> Result<Option<i64>, StoreError> {
    db.get(record_key(slot, index_key))?
        .map(|v| decode_time(&v))
        .transpose()
}

/// Puts in `batch` the arrival changes of one indicator whose records went from `before` to
/// `after`: a record gone loses its posting, a changed one its old posting; the changed and
/// new records are added to `due`, to be stamped with the write's others ([`Due::stamp`]).
/// `db` is read for the old times, under the store's write lock.
pub(crate) fn write_changes(
    db: &crate::kv::Kv,
    index_key: &[u8],
    before: &BTreeMap<Slot, Record>,
    after: &BTreeMap<Slot, Record>,
    due: &mut Due,
    batch: &mut crate::kv::Batch,
) -> Result<(), StoreError> {
    let forget_old = |slot: &Slot, r: &Record, batch: &mut crate::kv::Batch| {
        if let Some(old) = arrival_of(db, slot, index_key)? {
            for scope in &r.scopes {
                batch.remove(posting(scope, old, slot, index_key));
            }
        }
        Ok::<(), StoreError>(())
    };
    for (slot, r) in before.iter().filter(|(s, _)| !after.contains_key(*s)) {
        forget_old(slot, r, batch)?;
        batch.remove(record_key(slot, index_key));
    }
    for (slot, record) in after {
        match before.get(slot) {
            Some(r) if r.marker == record.marker => continue,
            Some(r) => forget_old(slot, r, batch)?,
            None => {}
        }
        due.0.push((*slot, record.clone(), index_key.to_vec()));
    }
    Ok(())
}

/// The records one write stamps.
#[derive(Default)]
pub(crate) struct Due(Vec<(Slot, Record, Vec<u8>)>);

impl Due {
    /// Stamps every record due: the records anyone may read first (CLEAR, then GREEN, then
    /// AMBER, so a reader held to a lower TLP sees the first of them), then the restricted
    /// ones grouped by who reads them. Stamps are consecutive within a write, so a record
    /// withheld from a reader stamped between two it sees would leave a gap in their times
    /// that counts it: none does for a reader of the public scope; for one of several
    /// overlapping reader sets, one can.
    pub(crate) fn stamp(mut self, clock: &ArrivalClock, batch: &mut crate::kv::Batch) {
        let public = |r: &Record| r.scopes.iter().all(|s| s == crate::postings::PUBLIC);
        self.0.sort_by(|(_, a, _), (_, b, _)| {
            (!public(a), &a.scopes, a.tlp).cmp(&(!public(b), &b.scopes, b.tlp))
        });
        for (slot, record, index_key) in self.0 {
            let now = clock.stamp();
            for scope in &record.scopes {
                batch.insert(posting(scope, now, &slot, &index_key), &[][..]);
            }
            batch.insert(record_key(&slot, &index_key), now.to_be_bytes());
        }
    }
}

/// Makes the store keep arrival times or not, as `want`s; whether every record must be
/// stamped (by a rebuild of the index, which sets the mark as it ends). A store without an
/// index is marked at once; one whose index was written without arrival times is stamped
/// (kept since, or written by an earlier build); one whose times are not wanted drops them.
pub(crate) fn settle(db: &crate::kv::Kv, want: Arrivals) -> Result<bool, StoreError> {
    let marked = db.get(keys::ARRIVALS_KEPT)?.is_some();
    let no_index = db.scan_prefix([keys::INDEX]).keys().next().is_none();
    let keep = match want {
        Arrivals::AsFound => marked || no_index,
        Arrivals::Kept => true,
        Arrivals::NotKept => false,
    };
    match (keep, marked) {
        (true, false) if no_index => {
            db.insert(keys::ARRIVALS_KEPT, &[][..])?;
            Ok(false)
        }
        (true, false) => {
            // The mark first: a crash before the rebuild ends rebuilds again.
            let mut batch = crate::kv::Batch::default();
            crate::index_rebuild::mark(&mut batch);
            batch.insert(keys::ARRIVALS_KEPT, &[][..]);
            db.apply_batch(batch)?;
            Ok(true)
        }
        (false, _) if marked || any(db)? => {
            drop_all(db)?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Whether the store holds any arrival time or posting.
pub(crate) fn any(db: &crate::kv::Kv) -> Result<bool, StoreError> {
    for prefix in [keys::ARRIVAL, keys::ARRIVED] {
        if let Some(k) = db.scan_prefix([prefix]).keys().next() {
            k?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops every arrival time and posting and the mark that they are kept: the mark first, so
/// a crash part way leaves a store that keeps none, whose leftovers the next drop removes.
pub(crate) fn drop_all(db: &crate::kv::Kv) -> Result<(), StoreError> {
    let mut unmark = crate::kv::Batch::default();
    unmark.remove(keys::ARRIVALS_KEPT);
    db.apply_batch(unmark)?;
    crate::index_rebuild::remove_prefix(db, keys::ARRIVAL)?;
    crate::index_rebuild::remove_prefix(db, keys::ARRIVED)
}

/// Posts every record's arrival anew in its scopes, at the time kept for it: for a store of an
/// earlier build, whose arrival postings were unscoped (`postings::migrate`). Idempotent.
pub(crate) fn repost(db: &crate::kv::Kv) -> Result<(), StoreError> {
    crate::index_rebuild::remove_prefix(db, keys::ARRIVAL)?;
    const CHUNK: usize = 16_384;
    let mut batch = crate::kv::Batch::default();
    let mut read: Option<(Vec<u8>, BTreeMap<Slot, Record>)> = None;
    // The clock resumes after the newest time kept, as it did from the unscoped postings.
    let mut newest = match db.get(keys::ARRIVAL_CLOCK)? {
        Some(v) => decode_time(&v)?,
        None => i64::MIN,
    };
    for kv in db.scan_prefix([keys::ARRIVED]) {
        let (k, v) = kv?;
        let Some((slot, index_key)) = parse_record_key(&k) else {
            continue;
        };
        if read
            .as_ref()
            .is_none_or(|(key, _)| key.as_slice() != index_key)
        {
            let Some(state) = db.get(index_key)? else {
                continue;
            };
            let slots = slots_of(&crate::index::decode_state(&state)?);
            read = Some((index_key.to_vec(), slots));
        }
        let Some(record) = read.as_ref().and_then(|(_, slots)| slots.get(&slot)) else {
            continue;
        };
        let time = decode_time(&v)?;
        newest = newest.max(time);
        for scope in &record.scopes {
            batch.insert(posting(scope, time, &slot, index_key), &[][..]);
        }
        if batch.len() >= CHUNK {
            db.apply_batch(std::mem::take(&mut batch))?;
        }
    }
    if newest > i64::MIN {
        batch.insert(keys::ARRIVAL_CLOCK, newest.to_be_bytes());
    }
    db.apply_batch(batch)
}

/// For `verify-store`: whether every record of the `rebuilt` index has exactly one arrival
/// time and one posting at it (none at all in a store that does not keep them), and no time or
/// posting names anything else; what differs if not.
/// The times themselves are this node's and cannot be checked against the log.
pub(crate) fn check(
    db: &crate::kv::Kv,
    rebuilt: &BTreeMap<Vec<u8>, pb::IndicatorState>,
    kept: bool,
) -> Result<Option<String>, StoreError> {
    let (expected, expected_postings): (usize, usize) = match kept {
        true => rebuilt.values().fold((0, 0), |(n, p), s| {
            let slots = slots_of(s);
            (
                n + slots.len(),
                p + slots.values().map(|r| r.scopes.len()).sum::<usize>(),
            )
        }),
        false => (0, 0),
    };
    let (mut times, mut stray, mut unposted) = (0usize, 0usize, 0usize);
    for kv in db.scan_prefix([keys::ARRIVED]) {
        let (k, v) = kv?;
        times += 1;
        let Some((slot, index_key)) = parse_record_key(&k) else {
            stray += 1;
            continue;
        };
        let Some(record) = rebuilt
            .get(index_key)
            .and_then(|s| slots_of(s).remove(&slot))
        else {
            stray += 1;
            continue;
        };
        let time = decode_time(&v)?;
        for scope in &record.scopes {
            if db.get(posting(scope, time, &slot, index_key))?.is_none() {
                unposted += 1;
            }
        }
    }
    let postings = db.scan_prefix([keys::ARRIVAL]).keys().count();
    if times == expected && stray == 0 && unposted == 0 && postings == expected_postings {
        return Ok(None);
    }
    Ok(Some(format!(
        "arrival times differ from the records of the rebuilt index: {times} stored ({stray} \
         stray, {unposted} without their posting), {postings} postings, {expected} expected"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_back_and_sort_by_time() {
        let s = [7u8; 16];
        let public = scope_prefix(crate::postings::PUBLIC);
        let at = |t: i64, index_key: &[u8]| {
            position_of(&public, &posting(crate::postings::PUBLIC, t, &s, index_key))
                .expect("a posting of the scope")
        };
        let (a, b) = (at(-3, b"I\x04x"), at(1_700_000_000_000_000, b"I\x04a"));
        assert!(a < b);
        assert_eq!(
            parse_position(&b),
            Some((1_700_000_000_000_000, s, &b"I\x04a"[..]))
        );
        assert!(start(-3) <= a && start(-2) > a);
        assert_eq!(parse_position(b"A\0\0"), None);
        assert_eq!(parse_position(&at(1, b"")), None);
        // A posting of another scope is no position of this one.
        let other = posting("AU-AFP", 1, &s, b"I\x04x");
        assert_eq!(position_of(&public, &other), None);
        assert!(position_of(&scope_prefix("AU-AFP"), &other).is_some());
        assert_eq!(
            parse_record_key(&record_key(&s, b"I\x04x")),
            Some((s, &b"I\x04x"[..]))
        );
    }

    #[test]
    fn each_record_has_its_own_slot() {
        let d = |tlp: pb::Tlp| {
            Some(pb::Distribution {
                tlp: tlp as i32,
                ..Default::default()
            })
        };
        let state = pb::IndicatorState {
            assertions: vec![
                pb::OriginAssertion {
                    origin: "AU".into(),
                    seq: 3,
                    distribution: d(pb::Tlp::Green),
                    ..Default::default()
                },
                pb::OriginAssertion {
                    origin: "AU".into(),
                    seq: 4,
                    distribution: d(pb::Tlp::Red),
                    ..Default::default()
                },
            ],
            sightings: vec![pb::OriginSightings {
                origin: "AU".into(),
                last_seq: 5,
                count: 2,
                distribution: d(pb::Tlp::Green),
                ..Default::default()
            }],
            ..Default::default()
        };
        let slots = slots_of(&state);
        assert_eq!(slots.len(), 3, "two distributions and the sightings");
        let sighted = &slots[&sightings_slot(&state.sightings[0])];
        assert_eq!(
            (sighted.marker, sighted.scopes.as_slice()),
            ((5, 2), &[String::new()][..])
        );
        let red = &slots[&assertion_slot(&state.assertions[1])];
        assert_eq!(
            (red.marker, red.scopes.as_slice()),
            ((4, 0), &["AU".to_string()][..])
        );
    }

    #[test]
    fn stamps_rise_even_when_the_clock_does_not() {
        let clock = ArrivalClock(AtomicI64::new(i64::MAX - 10));
        let (a, b) = (clock.stamp(), clock.stamp());
        assert!(b > a && a > i64::MAX - 10);
    }
}
