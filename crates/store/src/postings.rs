//! Postings: the secondary keys that let a query by tag, origin or update time read an ordered
//! range instead of the whole index.
//!
//! A posting is a key with an empty value, derived from one indicator's state alone
//! ([`postings_of`]), so the set of postings is a pure function of the index: a write replaces
//! the postings of the states it changed by their difference, and `verify-store` derives them
//! again from the rebuilt index and compares. Postings may name more indicators than a reader
//! sees (a RED assertion's tag is posted too): a query reads candidates from them and shows each
//! only through the reader's view, so they narrow what is read, never what is allowed.
//!
//! Layout (`Q` then a kind byte):
//! - `Q t <len u16><tag, lowercase><index key>`: per tag of any assertion (its first
//!   `MAX_TAGS`, each cut at [`MAX_POSTED_NAME`] bytes);
//! - `Q o <len u16><origin><index key>`: per origin with an assertion or sightings;
//! - `Q m <time, order-preserving u64><index key>`: the latest issue or sighting time;
//! - `Q i <uuid, 16 bytes><index key>`: the object id of each origin's assertion and of each
//!   reporter's sightings per TLP (`intelmesh_core::object_id`), so a STIX id finds its
//!   indicator without a table of issued ids.
//!
//! Tags and origins are length-prefixed, so no tag can be read as a prefix of another.

use std::collections::BTreeSet;

use intelmesh_core::object_id;
use intelmesh_core::Tlp;
use intelmesh_proto::v1 as pb;

use crate::keys;

const TAG: u8 = b't';
const ORIGIN: u8 = b'o';
const TIME: u8 = b'm';
const OBJECT: u8 = b'i';

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

/// Every posting key of `state`, stored under `index_key`.
pub(crate) fn postings_of(index_key: &[u8], state: &pb::IndicatorState) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let indicator = keys::indicator_of_index(index_key);
    for a in &state.assertions {
        // The first tags only: a received entry may carry thousands (nodes sign at most
        // these), and each posting holds the index key.
        for tag in a.tags.iter().take(intelmesh_core::entry::MAX_TAGS) {
            out.insert(named(TAG, &tag.to_lowercase(), index_key));
        }
        out.insert(named(ORIGIN, &a.origin, index_key));
        if let Some((ty, value)) = indicator {
            let id = object_id::assertion_uuid(&a.origin, ty, value);
            out.insert(object(&id, index_key));
        }
    }
    for s in &state.sightings {
        out.insert(named(ORIGIN, &s.origin, index_key));
        let tlp = s.distribution.as_ref().and_then(|d| Tlp::from_proto(d.tlp));
        if let (Some((ty, value)), Some(tlp)) = (indicator, tlp) {
            let id = object_id::sightings_uuid(&s.origin, tlp, ty, value);
            out.insert(object(&id, index_key));
        }
    }
    let latest = state
        .assertions
        .iter()
        .map(|a| a.issued_at_unix_ms)
        .chain(state.sightings.iter().map(|s| s.last_seen_unix_ms))
        .max();
    if let Some(t) = latest {
        let mut k = Vec::with_capacity(10 + index_key.len());
        k.extend_from_slice(&[keys::POSTING, TIME]);
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

fn named(kind: u8, name: &str, index_key: &[u8]) -> Vec<u8> {
    let mut k = range_of(kind, name);
    k.extend_from_slice(index_key);
    k
}

/// Longest tag or origin name a posting holds, in bytes. Entry validation allows far shorter
/// ones (`intelmesh_core::entry::MAX_TAG_BYTES`, lowercased at most three times as long); the
/// cut keeps every posting key, name and index key together, under the engine's 64 KiB key
/// limit whatever an entry held.
const MAX_POSTED_NAME: usize = 1024;

/// The prefix of every posting of one tag or origin. Longer names are cut at
/// [`MAX_POSTED_NAME`] bytes: a cut one still posts under a single prefix.
fn range_of(kind: u8, name: &str) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(MAX_POSTED_NAME)];
    let mut k = Vec::with_capacity(4 + name.len());
    k.extend_from_slice(&[keys::POSTING, kind]);
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// The index key a posting key ends in; `None` for a key of no posting layout.
pub(crate) fn index_key_of(posting: &[u8]) -> Option<&[u8]> {
    match posting.get(..2)? {
        [keys::POSTING, TIME] => posting.get(10..),
        [keys::POSTING, OBJECT] => posting.get(18..),
        [keys::POSTING, TAG | ORIGIN] => {
            let len = u16::from_be_bytes(posting.get(2..4)?.try_into().ok()?);
            posting.get(4 + usize::from(len)..)
        }
        _ => None,
    }
}

/// The ranges a selection reads: each a key prefix whose keys end in an index key after
/// `skip` bytes, and sorted in the selection's order within the range.
pub(crate) fn ranges(selection: &Selection) -> Vec<Range> {
    match selection {
        Selection::All => vec![Range::index(vec![keys::INDEX])],
        Selection::Types(codes) => {
            let codes: BTreeSet<u8> = codes.iter().copied().collect();
            codes
                .into_iter()
                .map(|c| Range::index(vec![keys::INDEX, c]))
                .collect()
        }
        Selection::Tags(tags) => {
            let tags: BTreeSet<String> = tags.iter().map(|t| t.to_lowercase()).collect();
            tags.iter()
                .map(|t| Range::posting(range_of(TAG, t)))
                .collect()
        }
        Selection::Origins(origins) => {
            let origins: BTreeSet<&String> = origins.iter().collect();
            origins
                .into_iter()
                .map(|o| Range::posting(range_of(ORIGIN, o)))
                .collect()
        }
        Selection::ObjectId(id) => vec![Range::posting(object_range(id))],
        Selection::UpdatedSince(_) => vec![Range {
            prefix: vec![keys::POSTING, TIME],
            skip: 10,
        }],
        // Read by time, as `UpdatedSince` (see `select`); its keys end in no index key alone.
        Selection::ArrivedSince(_) => Vec::new(),
    }
}

/// The key a time selection starts at (inclusive).
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
    fn index(prefix: Vec<u8>) -> Range {
        Range { prefix, skip: 0 }
    }

    fn posting(prefix: Vec<u8>) -> Range {
        let skip = prefix.len();
        Range { prefix, skip }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(tags: &[&str], origin: &str, issued: i64, sighted: Option<i64>) -> pb::IndicatorState {
        pb::IndicatorState {
            assertions: vec![pb::OriginAssertion {
                origin: origin.into(),
                issued_at_unix_ms: issued,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            }],
            sightings: sighted
                .map(|t| pb::OriginSightings {
                    origin: "SG".into(),
                    last_seen_unix_ms: t,
                    distribution: Some(pb::Distribution {
                        tlp: pb::Tlp::Green as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_state_posts_its_tags_origins_and_latest_time() {
        let key = b"I\x04evil.example";
        let p = postings_of(key, &state(&["C2", "c2", "Phishing"], "AU", 10, Some(20)));
        let tags: Vec<_> = ranges(&Selection::Tags(vec!["c2".into()]))
            .iter()
            .map(|r| p.iter().filter(|k| k.starts_with(&r.prefix)).count())
            .collect();
        assert_eq!(tags, [1], "C2 and c2 are one tag");
        assert_eq!(
            p.len(),
            2 + 2 + 1 + 2,
            "two tags, two origins, one time, two object ids"
        );
        let id =
            object_id::assertion_uuid("AU", intelmesh_core::IndicatorType::Domain, "evil.example");
        let by_id = &ranges(&Selection::ObjectId(id))[0];
        assert_eq!(p.iter().filter(|k| k.starts_with(&by_id.prefix)).count(), 1);
        let time = p
            .iter()
            .find(|k| k.starts_with(&[keys::POSTING, TIME]))
            .unwrap();
        assert_eq!(&time[..10], &time_start(20)[..]);
        assert_eq!(&time[10..], key);
        assert!(p.iter().all(|k| index_key_of(k) == Some(&key[..])));
        assert_eq!(index_key_of(b"Qt\xff"), None);
        assert_eq!(index_key_of(b"Ix"), None);
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
            .all(|k| k.len() < 4 + MAX_POSTED_NAME + long_key.len() + 1));
        let found = &ranges(&Selection::Tags(vec![tag]))[0];
        assert_eq!(p.iter().filter(|k| k.starts_with(&found.prefix)).count(), 1);
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
        let other = &ranges(&Selection::Tags(vec!["ap".into()]))[0];
        assert!(!p.iter().any(|k| k.starts_with(&other.prefix)));
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
