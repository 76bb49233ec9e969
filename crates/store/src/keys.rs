//! Key layout of the store's one key-value space (one space, so one batch writes log, heads and
//! index atomically). Org ids never contain a NUL byte, so `origin 0x00`
//! ends an origin unambiguously and keys of one origin sort by seq.

use intelmesh_core::{Indicator, IndicatorType, KeyId, OrgId};

pub const LOG: u8 = b'L';
pub const HEAD: u8 = b'H';
pub const INDEX: u8 = b'I';
pub const FORK: u8 = b'F';
pub const FLAG: u8 = b'X';
pub const KEY: u8 = b'K';
pub const FILL: u8 = b'P';
/// Postings of the index (see `postings`).
pub const POSTING: u8 = b'Q';
/// What a sealed payload opened to at this node (a reader), beside the envelope in the log.
pub const OPENED: u8 = b'U';
/// A sealed entry this node is a reader of and could not open when it took it in (see
/// `reopen`): opened again when the node's keys change.
pub const UNOPENED: u8 = b'W';
/// Arrival postings, by time (see `arrival`).
pub const ARRIVAL: u8 = b'A';
/// Arrival times, by record (see `arrival`).
pub const ARRIVED: u8 = b'a';
/// Present once every record of the index has its arrival time: set on a new store and by a
/// rebuild, so a store written before arrival times were kept rebuilds its index once.
pub const ARRIVALS_KEPT: &[u8] = b"Marrivals";
/// The newest arrival time stamped (i64 BE), written with every batch that stamps: the clock
/// resumes after it even when a rebuild had cleared every posting.
pub const ARRIVAL_CLOCK: &[u8] = b"Marrival_clock";
/// The layout of the index's states (u32 BE): a store whose index is older rebuilds it once.
pub const INDEX_LAYOUT: &[u8] = b"Mindex_layout";
/// 2: assertions keep their first issue time (`first_issued_at_unix_ms`).
/// (Not raised for the caps on an origin's slots per state and on posted tags: a rebuild
/// stamps every record's arrival anew, so every TAXII poller would read the whole collection
/// again. A state an older node wrote past either cap, which only hundreds of tags or
/// audiences on one value make, stays as it is, and `verify-store` names it. Nor for the
/// stripping of an origin's slots past its fourth, `index::FULL_SLOTS_PER_ORIGIN`: a state an
/// older node wrote with five audiences of one origin keeps their text until the value is
/// next written, and `verify-store` names it.)
pub const INDEX_LAYOUT_VERSION: u32 = 2;
/// Present once the tag and origin postings are scoped by audience (see `postings::migrate`).
pub const POSTINGS_SCOPED: &[u8] = b"Mpostings_scoped";
/// The number of indicators in the index.
pub const INDEX_COUNT: &[u8] = b"Mcount";
/// The prefix lengths of the CIDR blocks in the index.
pub const PREFIX_LENGTHS: &[u8] = b"Mlengths";
/// The running digest of the index's states (see `state_sum`).
pub const INDEX_DIGEST: &[u8] = b"Mdigest";
/// Present while the index is being rebuilt from the log (see `index_rebuild`).
pub const INDEX_REBUILD: &[u8] = b"Mrebuild";
/// When the store's owner's own log was last cut (i64 BE ms): receipts of publications up to
/// then may name entries the cut removed, so they no longer answer repeats (see `receipt`).
pub const OWN_CUT_AT: &[u8] = b"Mown_cut_at";
/// The one key holding the log generation: raised with every change to the log, so cached
/// heads can tell whether they are current.
pub const GENERATION: &[u8] = b"G";
/// The one key holding the layout version of the store.
pub const FORMAT: &[u8] = b"V";
/// Layout version this build reads and writes: 6 since the store lives in an LSM tree (fjall);
/// 5 and before were sled databases, which this build refuses with what to do. (Within sled,
/// 5 brought object-id postings, 4 the index on disk, 3 payload commitments and receipts.)
pub const FORMAT_VERSION: u32 = 6;
/// The one key holding the org id of the node the store belongs to.
pub const OWNER: &[u8] = b"O";

fn with_origin(prefix: u8, origin: &OrgId, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + origin.as_str().len() + extra);
    k.push(prefix);
    k.extend_from_slice(origin.as_str().as_bytes());
    k.push(0);
    k
}

/// The key of what `origin`'s sealed entry `seq` opened to.
pub fn opened(origin: &OrgId, seq: u64) -> Vec<u8> {
    let mut k = with_origin(OPENED, origin, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The mark of `origin`'s entry `seq`, sealed to this node and not opened.
pub fn unopened(origin: &OrgId, seq: u64) -> Vec<u8> {
    let mut k = with_origin(UNOPENED, origin, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix of every unopened mark of `origin`.
pub fn unopened_prefix(origin: &OrgId) -> Vec<u8> {
    with_origin(UNOPENED, origin, 0)
}

/// The prefix of every opened payload of `origin`.
pub fn opened_prefix(origin: &OrgId) -> Vec<u8> {
    with_origin(OPENED, origin, 0)
}

/// The key of the log segment of `origin` whose first entry is `seq`.
pub fn log(origin: &OrgId, seq: u64) -> Vec<u8> {
    let mut k = with_origin(LOG, origin, 8);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn head(origin: &OrgId) -> Vec<u8> {
    with_origin(HEAD, origin, 0)
}

pub fn flag(origin: &OrgId) -> Vec<u8> {
    with_origin(FLAG, origin, 0)
}

/// The prefix of every fork proof of `origin`.
pub fn fork_prefix(origin: &OrgId) -> Vec<u8> {
    with_origin(FORK, origin, 0)
}

pub fn fork(origin: &OrgId, seq: u64, conflicting: &[u8; 32]) -> Vec<u8> {
    let mut k = with_origin(FORK, origin, 40);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(conflicting);
    k
}

pub fn signing_key(origin: &OrgId, key_id: &KeyId) -> Vec<u8> {
    let mut k = with_origin(KEY, origin, 8);
    k.extend_from_slice(&key_id.0);
    k
}

/// The key of the `n`th payload fill (a stub completed by its full entry; `n` from 1).
pub fn fill(n: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(FILL);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// The record of a fill: which entry it completed (seq, then the origin's bytes).
pub fn fill_record(origin: &OrgId, seq: u64) -> Vec<u8> {
    let mut v = seq.to_be_bytes().to_vec();
    v.extend_from_slice(origin.as_str().as_bytes());
    v
}

/// The fill number of a fill key, and the entry its record names.
pub fn parse_fill(key: &[u8], record: &[u8]) -> Option<(u64, OrgId, u64)> {
    let n = u64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
    let seq = u64::from_be_bytes(record.get(..8)?.try_into().ok()?);
    let origin = OrgId::parse(std::str::from_utf8(record.get(8..)?).ok()?).ok()?;
    Some((n, origin, seq))
}

/// The key of an indicator's state in the index.
pub fn index(indicator: &Indicator) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + indicator.value().len());
    push_index(&mut k, indicator);
    k
}

/// Appends `indicator`'s index key to `out`.
pub fn push_index(out: &mut Vec<u8>, indicator: &Indicator) {
    out.push(INDEX);
    out.push(indicator.ty().code());
    out.extend_from_slice(indicator.value().as_bytes());
}

/// The type of an index key, without reading its value; `None` for another key.
pub fn type_of_index(key: &[u8]) -> Option<IndicatorType> {
    match key {
        [INDEX, code, ..] => IndicatorType::from_code(*code),
        _ => None,
    }
}

/// The type and value of an index key (`I <type code> <value>`); `None` for another key.
pub fn indicator_of_index(key: &[u8]) -> Option<(IndicatorType, &str)> {
    match key {
        [INDEX, code, value @ ..] => Some((
            IndicatorType::from_code(*code)?,
            std::str::from_utf8(value).ok()?,
        )),
        _ => None,
    }
}

/// The origin named by a key with an origin part (`prefix origin 0x00 …`).
pub fn origin_of(key: &[u8]) -> Option<OrgId> {
    let rest = key.get(1..)?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    OrgId::parse(std::str::from_utf8(&rest[..end]).ok()?).ok()
}

/// The first seq of a log segment key.
pub fn seq_of_log(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}
