//! Postings: the secondary keys that let a query by tag, origin or update time read an ordered
//! range instead of the whole index.
//!
//! A posting is a key with an empty value, derived from one indicator's state alone
//! ([`postings_of`]), so the set of postings is a pure function of the index: a write replaces
//! the postings of the states it changed by their difference, and `verify-store` derives them
//! again from the rebuilt index and compares.
//!
//! Tag, origin, time and whole-index postings are scoped by audience: a record's go under the public
//! scope when anyone may read it (CLEAR, GREEN, AMBER), else under each org that may (its origin and
//! recipients, the rule of `intelmesh_core::entry::allows_names`). A reader's selection reads
//! the public scope and its own, so it never reads a candidate it may not see: a record
//! withheld from it costs it no read, no time and no place in a page (a query by a tag only
//! withheld records carry reads nothing). Readers still see each candidate only through their
//! view, which also applies withdrawals and TLP ceilings.
//!
//! Layout (`Q` then a kind byte):
//! - `Q T <len u16><scope><len u16><tag, lowercase><index key>`: per tag of any assertion (its
//!   first `MAX_TAGS`, each cut at [`MAX_POSTED_NAME`] bytes), per scope;
//! - `Q O <len u16><scope><len u16><origin><index key>`: per origin with an assertion or
//!   sightings, per scope;
//! - `Q R <len u16><scope><index key>`: per scope with any record (the whole index, and a type's
//!   part of it, for one reader);
//! - `Q M <len u16><scope><time, order-preserving u64><index key>`: per scope, the latest issue
//!   or sighting time of its records;
//! - `Q i <uuid, 16 bytes><index key>`: the object id of each origin's assertion and of each
//!   reporter's sightings per TLP (`intelmesh_core::object_id`), so a STIX id finds its
//!   indicator without a table of issued ids.
//!
//! The public scope is empty; org ids never are. Names are length-prefixed, so no scope or tag
//! can be read as a prefix of another. `Q t`, `Q o` and `Q m` were the unscoped tag, origin and
//! time postings of earlier builds (see [`migrate`]).

use std::collections::BTreeSet;

use intelmesh_core::object_id;
use intelmesh_core::Tlp;
use intelmesh_proto::v1 as pb;

use crate::{keys, StoreError};

const TAG: u8 = b'T';
const ORIGIN: u8 = b'O';
const READABLE: u8 = b'R';
const TIME: u8 = b'M';
const OBJECT: u8 = b'i';
/// The unscoped tag, origin and time postings of earlier builds.
const UNSCOPED: [u8; 3] = [b't', b'o', b'm'];
/// The scoped postings (all but object ids, which are not scoped).
const SCOPED: [u8; 4] = [TAG, ORIGIN, READABLE, TIME];

/// The scope of records anyone may read.
pub(crate) const PUBLIC: &str = "";

/// Most scoped tag postings of one record: its tags times its scopes. An origin naming a
/// hundred recipients on a record of 64 tags would otherwise make one write post thousands of
/// keys. Shared out evenly: each reader of a record of more than eight readers finds it by its
/// first `512 / readers` tags (and always by origin and in the whole index).
const MAX_SCOPED_TAGS: usize = 512;

/// What a query reads its candidates from, in the order they come out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Every indicator, in index order (type, then value).
    All,
    /// Indicators of these type codes, in index order.
    Types(Vec<u8>),
    /// Indicators with any of these tags (any case), in index order.
    Tags(Vec<String>),
    /// Indicators with an assertion or sightings from any of these origins, in index order.
    Origins(Vec<String>),
    /// Indicators issued or sighted at or after this time, oldest change first.
    UpdatedSince(i64),
    /// Records that arrived at this node at or after this time (µs, this node's clock), in
    /// the order they arrived: an indicator once per record changed (see `arrival`).
    ArrivedSince(i64),
    /// The indicator(s) behind an object id (an assertion's or a reporter's sightings).
    ObjectId([u8; 16]),
}

/// The scopes a record of `origin` under `distribution` is posted in: the public one, or each
/// org that may read it; none when nobody may (a malformed distribution, which no view shows).
pub(crate) fn scopes<'a>(
    distribution: Option<&'a pb::Distribution>,
    origin: &'a str,
) -> Vec<&'a str> {
    let Some((d, tlp)) = distribution.and_then(|d| Some((d, Tlp::from_proto(d.tlp)?))) else {
        return Vec::new();
    };
    let valid = intelmesh_core::OrgId::is_valid;
    if !valid(origin) || !d.recipients.iter().all(|r| valid(r)) {
        return Vec::new();
    }
    if !tlp.is_restricted() {
        return vec![PUBLIC];
    }
    // A set: a header names at most `MAX_RECIPIENTS`, but a state decoded from an older
    // store may name more, and a repeat must cost no key and no quadratic search.
    let readers: BTreeSet<&str> = std::iter::once(origin)
        .chain(d.recipients.iter().map(String::as_str))
        .collect();
    readers.into_iter().collect()
}

/// Every posting key of `state`, stored under `index_key`.
pub(crate) fn postings_of(index_key: &[u8], state: &pb::IndicatorState) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let indicator = keys::indicator_of_index(index_key);
    for a in &state.assertions {
        // The first tags only: a received entry may carry thousands (nodes sign at most
        // these), and each posting holds the index key. Tags differing in case are one.
        let mut tags: Vec<String> = Vec::new();
        for tag in a.tags.iter().take(intelmesh_core::entry::MAX_TAGS) {
            let tag = tag.to_lowercase();
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        let scopes = scopes(a.distribution.as_ref(), &a.origin);
        let per_scope = (MAX_SCOPED_TAGS / scopes.len().max(1)).max(1);
        for scope in scopes {
            for tag in tags.iter().take(per_scope) {
                out.insert(scoped(TAG, scope, Some(tag), index_key));
            }
            out.insert(scoped(ORIGIN, scope, Some(&a.origin), index_key));
            out.insert(scoped(READABLE, scope, None, index_key));
        }
        if let Some((ty, value)) = indicator {
            let id = object_id::assertion_uuid(&a.origin, ty, value);
            out.insert(object(&id, index_key));
        }
    }
    for s in &state.sightings {
        for scope in scopes(s.distribution.as_ref(), &s.origin) {
            out.insert(scoped(ORIGIN, scope, Some(&s.origin), index_key));
            out.insert(scoped(READABLE, scope, None, index_key));
        }
        let tlp = s.distribution.as_ref().and_then(|d| Tlp::from_proto(d.tlp));
        if let (Some((ty, value)), Some(tlp)) = (indicator, tlp) {
            let id = object_id::sightings_uuid(&s.origin, tlp, ty, value);
            out.insert(object(&id, index_key));
        }
    }
    // Per scope, the latest time of its records: a reader's changes are ordered by what it
    // may read, never moved by a change withheld from it.
    let mut latest: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let times = (state.assertions.iter())
        .map(|a| {
            (
                a.distribution.as_ref(),
                a.origin.as_str(),
                a.issued_at_unix_ms,
            )
        })
        .chain((state.sightings.iter()).map(|s| {
            (
                s.distribution.as_ref(),
                s.origin.as_str(),
                s.last_seen_unix_ms,
            )
        }));
    for (d, origin, t) in times {
        for scope in scopes(d, origin) {
            let at = latest.entry(scope).or_insert(t);
            *at = (*at).max(t);
        }
    }
    for (scope, t) in latest {
        let mut k = scoped_range(TIME, scope, None);
        k.extend_from_slice(&ordered(t).to_be_bytes());
        k.extend_from_slice(index_key);
        out.insert(k);
    }
    out
}

/// `i64` to `u64` keeping the order, so big-endian bytes sort as the times do.
pub(crate) fn ordered(t: i64) -> u64 {
    (t as u64) ^ (1 << 63)
}

fn object(id: &[u8; 16], index_key: &[u8]) -> Vec<u8> {
    let mut k = object_range(id);
    k.extend_from_slice(index_key);
    k
}

fn object_range(id: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&[keys::POSTING, OBJECT]);
    k.extend_from_slice(id);
    k
}

fn scoped(kind: u8, scope: &str, name: Option<&str>, index_key: &[u8]) -> Vec<u8> {
    let mut k = scoped_range(kind, scope, name);
    k.extend_from_slice(index_key);
    k
}

/// Longest tag or origin name a posting holds, in bytes. Entry validation allows far shorter
/// ones (`intelmesh_core::entry::MAX_TAG_BYTES`, lowercased at most three times as long); the
/// cut keeps every posting key, name and index key together, under the engine's 64 KiB key
/// limit whatever an entry held.
const MAX_POSTED_NAME: usize = 1024;

/// Appends `name`, cut at [`MAX_POSTED_NAME`] bytes and prefixed with its length.
fn push_name(k: &mut Vec<u8>, name: &str) {
    let name = &name.as_bytes()[..name.len().min(MAX_POSTED_NAME)];
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name);
}

/// The prefix of every posting of one kind in one scope (and of one tag or origin in it). Longer
/// names are cut at [`MAX_POSTED_NAME`] bytes: a cut one still posts under a single prefix.
fn scoped_range(kind: u8, scope: &str, name: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + scope.len() + name.map_or(0, str::len));
    k.extend_from_slice(&[keys::POSTING, kind]);
    push_name(&mut k, scope);
    if let Some(name) = name {
        push_name(&mut k, name);
    }
    k
}

/// The bytes after one length-prefixed name at the start of `bytes`.
#[cfg(test)]
fn after_name(bytes: &[u8]) -> Option<&[u8]> {
    let len = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?);
    bytes.get(2 + usize::from(len)..)
}

/// The index key a posting key ends in; `None` for a key of no posting layout.
#[cfg(test)]
pub(crate) fn index_key_of(posting: &[u8]) -> Option<&[u8]> {
    match posting.get(..2)? {
        [keys::POSTING, TIME] => after_name(posting.get(2..)?)?.get(8..),
        [keys::POSTING, OBJECT] => posting.get(18..),
        [keys::POSTING, TAG | ORIGIN] => after_name(after_name(posting.get(2..)?)?),
        [keys::POSTING, READABLE] => after_name(posting.get(2..)?),
        _ => None,
    }
}

/// The ranges a selection reads for `reader`: each a key prefix whose keys end in an index key
/// after `skip` bytes, and sorted in the selection's order within the range. Tags, origins and
/// the index (whole or by type) are read in the public scope and the reader's.
pub(crate) fn ranges(selection: &Selection, reader: &str) -> Vec<Range> {
    let scopes = [PUBLIC, reader];
    let each_scope = |kind: u8, name: Option<&str>, then: &[u8]| {
        scopes
            .iter()
            .map(|scope| {
                let mut prefix = scoped_range(kind, scope, name);
                let skip = prefix.len();
                prefix.extend_from_slice(then);
                Range { prefix, skip }
            })
            .collect::<Vec<_>>()
    };
    match selection {
        Selection::All => each_scope(READABLE, None, &[]),
        Selection::Types(codes) => {
            let codes: BTreeSet<u8> = codes.iter().copied().collect();
            codes
                .into_iter()
                .flat_map(|c| each_scope(READABLE, None, &[keys::INDEX, c]))
                .collect()
        }
        Selection::Tags(tags) => {
            let tags: BTreeSet<String> = tags.iter().map(|t| t.to_lowercase()).collect();
            tags.iter()
                .flat_map(|t| each_scope(TAG, Some(t), &[]))
                .collect()
        }
        Selection::Origins(origins) => {
            let origins: BTreeSet<&String> = origins.iter().collect();
            origins
                .into_iter()
                .flat_map(|o| each_scope(ORIGIN, Some(o), &[]))
                .collect()
        }
        Selection::ObjectId(id) => vec![Range::posting(object_range(id))],
        // Read by time (see `select`); their keys end in no index key alone.
        Selection::UpdatedSince(_) | Selection::ArrivedSince(_) => Vec::new(),
    }
}

/// Whether the store holds postings of an earlier build: it ran again after this one migrated
/// the store (a rollback), and wrote some. Its arrival postings began with a time, whose first
/// byte is 0x80 or more for any time after 1970; a scope's length never is.
fn unscoped_left(db: &crate::kv::Kv) -> Result<bool, StoreError> {
    for kind in UNSCOPED {
        if let Some(k) = db.scan_prefix([keys::POSTING, kind]).keys().next() {
            k?;
            return Ok(true);
        }
    }
    let old_arrival = (
        std::ops::Bound::Included(vec![keys::ARRIVAL, 0x80]),
        std::ops::Bound::Excluded(vec![keys::ARRIVAL + 1]),
    );
    match db.range::<Vec<u8>, _>(old_arrival).keys().next() {
        Some(k) => k.map(|_| true),
        None => Ok(false),
    }
}

/// Rewrites the tag, origin and arrival postings of a store written by an earlier build, whose
/// were unscoped: removes those and posts every indicator's scoped postings, in bounded batches
/// (arrivals at the times kept for them).
/// Idempotent, so a crash part way leaves the mark unset and the next open does it again.
pub(crate) fn migrate(db: &crate::kv::Kv) -> Result<(), StoreError> {
    if db.get(keys::POSTINGS_SCOPED)?.is_some() && !unscoped_left(db)? {
        return Ok(());
    }
    // Unmarked first, in a batch of its own: a crash once keys are gone (on a second run,
    // after a rollback, the mark was set) makes the next open migrate again.
    let mut unmark = crate::kv::Batch::default();
    unmark.remove(keys::POSTINGS_SCOPED);
    db.apply_batch(unmark)?;
    const CHUNK: usize = 16_384;
    // The scoped ones too: an earlier build run since (a rollback) left them as they were
    // when it changed their states.
    for kind in UNSCOPED.into_iter().chain(SCOPED) {
        loop {
            let chunk: Vec<_> = (db.scan_prefix([keys::POSTING, kind]).keys())
                .take(CHUNK)
                .collect::<Result<_, _>>()?;
            if chunk.is_empty() {
                break;
            }
            let mut batch = crate::kv::Batch::default();
            for k in chunk {
                batch.remove(k.to_vec());
            }
            db.apply_batch(batch)?;
        }
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let start = match &after {
            Some(k) => std::ops::Bound::Excluded(k.clone()),
            None => std::ops::Bound::Included(vec![keys::INDEX]),
        };
        let mut batch = crate::kv::Batch::default();
        let mut read = 0;
        for kv in db
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .take(CHUNK)
        {
            let (k, v) = kv?;
            if k.first() != Some(&keys::INDEX) {
                break;
            }
            let state = crate::index::decode_state(&v)?;
            for p in postings_of(&k, &state) {
                if p.get(1).is_some_and(|kind| SCOPED.contains(kind)) {
                    batch.insert(p, Vec::new());
                }
            }
            after = Some(k.to_vec());
            read += 1;
        }
        if read == 0 {
            break;
        }
        db.apply_batch(batch)?;
        if read < CHUNK {
            break;
        }
    }
    if db.get(keys::ARRIVALS_KEPT)?.is_some() {
        crate::arrival::repost(db)?;
    }
    db.insert(keys::POSTINGS_SCOPED, Vec::new())
}

/// The prefix of the time postings of `scope`.
pub(crate) fn time_scope(scope: &str) -> Vec<u8> {
    scoped_range(TIME, scope, None)
}

/// The position a time selection starts at (inclusive): a time posting without its scope.
pub(crate) fn time_start(since: i64) -> Vec<u8> {
    let mut k = vec![keys::POSTING, TIME];
    k.extend_from_slice(&ordered(since).to_be_bytes());
    k
}

/// One ordered key range of a selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub(crate) prefix: Vec<u8>,
    /// Bytes before the index key within each key of the range.
    pub(crate) skip: usize,
}

impl Range {
    fn posting(prefix: Vec<u8>) -> Range {
        let skip = prefix.len();
        Range { prefix, skip }
    }
}

#[cfg(test)]
#[path = "postings_tests.rs"]
mod tests;
