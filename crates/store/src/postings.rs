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
mod tests {
    use super::*;

    fn dist(tlp: pb::Tlp, recipients: &[&str]) -> Option<pb::Distribution> {
        Some(pb::Distribution {
            tlp: tlp as i32,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
        })
    }

    fn state(tags: &[&str], origin: &str, issued: i64, sighted: Option<i64>) -> pb::IndicatorState {
        pb::IndicatorState {
            assertions: vec![pb::OriginAssertion {
                origin: origin.into(),
                issued_at_unix_ms: issued,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                distribution: dist(pb::Tlp::Green, &[]),
                ..Default::default()
            }],
            sightings: sighted
                .map(|t| pb::OriginSightings {
                    origin: "SG".into(),
                    last_seen_unix_ms: t,
                    distribution: dist(pb::Tlp::Green, &[]),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    /// How many indicators of `p` the selection's ranges for `reader` find.
    fn found(p: &BTreeSet<Vec<u8>>, selection: &Selection, reader: &str) -> usize {
        let ranges = ranges(selection, reader);
        let found: BTreeSet<&[u8]> = p
            .iter()
            .filter_map(|k| {
                let r = ranges.iter().find(|r| k.starts_with(&r.prefix))?;
                Some(&k[r.skip..])
            })
            .collect();
        found.len()
    }

    #[test]
    fn a_state_posts_its_tags_origins_and_latest_time() {
        let key = b"I\x04evil.example";
        let p = postings_of(key, &state(&["C2", "c2", "Phishing"], "AU", 10, Some(20)));
        assert_eq!(
            found(&p, &Selection::Tags(vec!["c2".into()]), "NZ"),
            1,
            "C2 and c2 are one tag"
        );
        assert_eq!(
            p.len(),
            2 + 2 + 1 + 1 + 2,
            "two tags, two origins, the whole index, one time, two object ids"
        );
        let id =
            object_id::assertion_uuid("AU", intelmesh_core::IndicatorType::Domain, "evil.example");
        assert_eq!(found(&p, &Selection::ObjectId(id), "NZ"), 1);
        let time = p
            .iter()
            .find(|k| k.starts_with(&[keys::POSTING, TIME]))
            .unwrap();
        let public = time_scope(PUBLIC);
        assert_eq!(&time[public.len()..public.len() + 8], &time_start(20)[2..]);
        assert_eq!(&time[public.len() + 8..], key);
        assert!(p.iter().all(|k| index_key_of(k) == Some(&key[..])));
        assert_eq!(index_key_of(b"QT\xff"), None);
        assert_eq!(index_key_of(b"Ix"), None);
    }

    #[test]
    fn a_withheld_record_is_a_candidate_only_for_its_readers() {
        let key = b"I\x04hidden.example";
        let mut s = state(&["op-nightfall"], "AU", 10, None);
        s.assertions[0].distribution = dist(pb::Tlp::Red, &["SG", "SG"]);
        s.sightings.push(pb::OriginSightings {
            origin: "NZ".into(),
            last_seen_unix_ms: 11,
            distribution: dist(pb::Tlp::AmberStrict, &["FR"]),
            ..Default::default()
        });
        let p = postings_of(key, &s);
        let tag = Selection::Tags(vec!["OP-Nightfall".into()]);
        let au = Selection::Origins(vec!["AU".into()]);
        let domains = Selection::Types(vec![key[1]]);
        for (reader, tags, origins, all) in [
            ("AU", 1, 1, 1),
            ("SG", 1, 1, 1),
            ("NZ", 0, 0, 1),
            ("FR", 0, 0, 1),
            ("DE", 0, 0, 0),
        ] {
            assert_eq!(found(&p, &tag, reader), tags, "{reader}");
            assert_eq!(found(&p, &au, reader), origins, "{reader}");
            assert_eq!(found(&p, &Selection::All, reader), all, "{reader}");
            assert_eq!(found(&p, &domains, reader), all, "{reader}");
        }
        // The latest time per scope: AU's RED record at 10 is none of FR's, whose is 11.
        let time_of = |scope: &str| {
            let prefix = time_scope(scope);
            p.iter()
                .find_map(|k| k.strip_prefix(prefix.as_slice()))
                .map(|rest| rest[..8].to_vec())
        };
        assert_eq!(time_of("AU"), Some(ordered(10).to_be_bytes().to_vec()));
        assert_eq!(time_of("FR"), Some(ordered(11).to_be_bytes().to_vec()));
        assert_eq!(time_of("DE"), None);
        assert_eq!(time_of(PUBLIC), None);
        // No reader but those: a malformed distribution posts in no scope.
        s.assertions[0].distribution = dist(pb::Tlp::Red, &["not an org"]);
        s.sightings.clear();
        let p = postings_of(key, &s);
        assert_eq!(found(&p, &tag, "AU"), 0);
        assert!(p.iter().all(|k| index_key_of(k) == Some(&key[..])));
    }

    #[test]
    fn a_record_of_many_readers_posts_a_bounded_number_of_tags() {
        let tags: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let readers: Vec<String> = (0..100).map(|i| format!("ORG{i}")).collect();
        let readers: Vec<&str> = readers.iter().map(String::as_str).collect();
        let mut s = state(&tags, "AU", 1, None);
        s.assertions[0].distribution = dist(pb::Tlp::AmberStrict, &readers);
        let p = postings_of(b"I\x04x.example", &s);
        let posted = p
            .iter()
            .filter(|k| k.starts_with(&[keys::POSTING, TAG]))
            .count();
        assert!(posted <= MAX_SCOPED_TAGS, "{posted}");
        // Every reader finds it by its first tags, by origin and in the whole index.
        let first = MAX_SCOPED_TAGS / 101;
        for reader in ["AU", "ORG0", "ORG99"] {
            assert_eq!(found(&p, &Selection::All, reader), 1);
            assert_eq!(found(&p, &Selection::Origins(vec!["AU".into()]), reader), 1);
            let tag = |i: usize| Selection::Tags(vec![format!("t{i}")]);
            assert_eq!(found(&p, &tag(first - 1), reader), 1, "{reader}");
            assert_eq!(found(&p, &tag(first), reader), 0, "{reader}");
        }
        // A record of a few readers is found by every tag.
        s.assertions[0].distribution = dist(pb::Tlp::AmberStrict, &readers[..7]);
        let p = postings_of(b"I\x04x.example", &s);
        assert_eq!(found(&p, &Selection::Tags(vec!["t63".into()]), "ORG6"), 1);
    }

    #[test]
    fn a_posting_key_stays_short_whatever_the_tag() {
        // Lowercasing can lengthen text (`Ⱥ` is 2 bytes, `ⱥ` 3); no key may pass the engine's
        // limit, which panics the writer.
        let long_key = [b"I\x05".as_slice(), &[b'a'; 2048]].concat();
        let tag = "Ⱥ".repeat(40_000);
        let p = postings_of(&long_key, &state(&[&tag], "AU", 1, None));
        assert!(p
            .iter()
            .all(|k| k.len() < 6 + MAX_POSTED_NAME + long_key.len() + 1));
        assert_eq!(found(&p, &Selection::Tags(vec![tag]), "NZ"), 1);
    }

    #[test]
    fn an_assertion_posts_its_first_tags_only() {
        let tags: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let p = postings_of(b"I\x04x.example", &state(&tags, "AU", 1, None));
        let posted = p
            .iter()
            .filter(|k| k.starts_with(&[keys::POSTING, TAG]))
            .count();
        assert_eq!(posted, intelmesh_core::entry::MAX_TAGS);
    }

    #[test]
    fn a_tag_is_never_read_as_the_prefix_of_another() {
        let p = postings_of(b"I\x04x.example", &state(&["apt"], "AU", 1, None));
        assert_eq!(found(&p, &Selection::Tags(vec!["ap".into()]), "NZ"), 0);
    }

    #[test]
    fn a_store_of_an_earlier_build_gets_its_postings_scoped_once() {
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::kv::Kv::open(dir.path(), 1 << 20).unwrap();
        let key = b"I\x04x.example";
        let s = state(&["c2"], "AU", 1, None);
        let mut old = vec![keys::POSTING, b't', 0, 2];
        old.extend_from_slice(b"c2");
        old.extend_from_slice(key);
        let mut batch = crate::kv::Batch::default();
        batch.insert(key.to_vec(), s.encode_to_vec());
        batch.insert(old.clone(), Vec::new());
        db.apply_batch(batch).unwrap();
        migrate(&db).unwrap();
        assert!(
            db.get(&old).unwrap().is_none(),
            "the unscoped posting is gone"
        );
        let posted = |kind: u8| db.scan_prefix([keys::POSTING, kind]).keys().count();
        assert_eq!(
            (posted(TAG), posted(ORIGIN), posted(READABLE), posted(TIME)),
            (1, 1, 1, 1)
        );
        // Marked: a second open changes nothing, unless an earlier build ran on the store
        // since (a rollback) and wrote unscoped postings.
        let scoped_before = db.scan_prefix([keys::POSTING]).keys().count();
        migrate(&db).unwrap();
        assert_eq!(
            db.scan_prefix([keys::POSTING]).keys().count(),
            scoped_before
        );
        // The rollback left a scoped posting stale (a tag its state no longer has).
        let stale = scoped(TAG, PUBLIC, Some("gone"), key);
        db.insert(old.clone(), Vec::new()).unwrap();
        db.insert(stale.clone(), Vec::new()).unwrap();
        migrate(&db).unwrap();
        assert!(
            db.get(&old).unwrap().is_none(),
            "migrated again after a rollback"
        );
        assert!(db.get(&stale).unwrap().is_none(), "and scoped anew");
        assert_eq!(
            db.scan_prefix([keys::POSTING]).keys().count(),
            scoped_before
        );
    }

    #[test]
    fn arrivals_of_an_earlier_build_are_posted_in_their_scopes_at_their_times() {
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let db = crate::kv::Kv::open(dir.path(), 1 << 20).unwrap();
        let key = b"I\x04x.example";
        let mut s = state(&["c2"], "AU", 1, None);
        s.assertions[0].distribution = dist(pb::Tlp::Red, &["SG"]);
        let slot = crate::arrival::assertion_slot(&s.assertions[0]);
        let time: i64 = 1_700_000_000_000_000;
        let mut unscoped = vec![keys::ARRIVAL];
        unscoped.extend_from_slice(&ordered(time).to_be_bytes());
        unscoped.extend_from_slice(&slot);
        unscoped.extend_from_slice(key);
        let mut batch = crate::kv::Batch::default();
        batch.insert(key.to_vec(), s.encode_to_vec());
        batch.insert(crate::arrival::record_key(&slot, key), time.to_be_bytes());
        batch.insert(unscoped.clone(), Vec::new());
        batch.insert(keys::ARRIVALS_KEPT, Vec::new());
        db.apply_batch(batch).unwrap();
        migrate(&db).unwrap();
        assert!(db.get(&unscoped).unwrap().is_none());
        let clock = db
            .get(keys::ARRIVAL_CLOCK)
            .unwrap()
            .expect("the clock kept");
        assert_eq!(crate::arrival::decode_time(&clock).unwrap(), time);
        for (reader, found) in [("AU", true), ("SG", true), ("NZ", false)] {
            let prefix = crate::arrival::scope_prefix(reader);
            let at: Vec<_> = (db.scan_prefix(&prefix).keys())
                .map(|k| {
                    let k = k.unwrap();
                    crate::arrival::position_of(&prefix, &k)
                        .and_then(|p| crate::arrival::parse_position(&p).map(|(t, s, _)| (t, s)))
                })
                .collect();
            let want = if found {
                vec![Some((time, slot))]
            } else {
                vec![]
            };
            assert_eq!(at, want, "{reader}");
        }
        // An arrival posting an earlier build wrote since (a rollback) is reposted too.
        db.insert(unscoped.clone(), Vec::new()).unwrap();
        migrate(&db).unwrap();
        assert!(db.get(&unscoped).unwrap().is_none());
    }

    #[test]
    fn times_sort_as_numbers_including_negative_ones() {
        let ts = [-5i64, 0, 7, i64::MAX, i64::MIN];
        let mut keys: Vec<_> = ts.iter().map(|&t| time_start(t)).collect();
        keys.sort();
        let mut sorted = ts.to_vec();
        sorted.sort();
        assert_eq!(
            keys,
            sorted.iter().map(|&t| time_start(t)).collect::<Vec<_>>()
        );
    }
}
