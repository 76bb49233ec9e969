//! `Query`: which ordered store range a filter reads ([`selection`]), its pages, and the page
//! tokens that resume them.
//!
//! A page reads candidates from one range of the index or its postings (a tag, an origin, a
//! type, recent changes) and shows each through the reader's view and the whole filter, so a
//! page costs what it returns plus what the reader may not see, never a scan of the index.

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::{Selection, Store, StoreError};
use prost::Message;

use super::view::{invalid, Filter, Invalid};
use crate::token::TokenKey;

/// Candidates read per store call while filling a page.
const QUERY_CHUNK: usize = 256;
/// Candidates one query call looks at before answering with what it found (and a token).
const QUERY_SCAN_BUDGET: usize = 20_000;
/// Encoded bytes of states after which a page ends (with a token), or half the node's message
/// limit if that is less: a run of indicators with 60 KB descriptions must make shorter pages,
/// not an answer too large to send, which would stall every reader there.
const QUERY_PAGE_BYTES: usize = 2 << 20;

/// Where a page ends by size for a node whose messages are at most `max_message_bytes`.
pub fn page_bytes(max_message_bytes: usize) -> usize {
    QUERY_PAGE_BYTES.min(max_message_bytes / 2)
}

/// The narrowest range that holds every indicator `filter` can match: its tags if it names
/// any (few indicators carry a given tag), else its origins, else its types, else the changes
/// since its time, else the whole index. The filter still checks every criterion.
pub fn selection(filter: &Filter) -> Selection {
    if !filter.tags().is_empty() {
        Selection::Tags(filter.tags().iter().cloned().collect())
    } else if !filter.origins().is_empty() {
        // A withdrawn origin's records are never shown, so its range is not read: its
        // records would take the scan budget, and pages coming back empty would count them.
        let shown = filter.origins().iter().filter(|o| filter.shows_origin(o));
        Selection::Origins(shown.cloned().collect())
    } else if !filter.types().is_empty() {
        Selection::Types(filter.types().iter().map(|t| t.code()).collect())
    } else if filter.since() > 0 {
        Selection::UpdatedSince(filter.since())
    } else {
        Selection::All
    }
}

/// One page of the indicators `tokens.reader` sees through `filter`, after the position
/// `after`; its token sealed for that reader.
pub fn query(
    store: &dyn Store,
    tokens: &Tokens,
    filter: &Filter,
    size: usize,
    page_bytes: usize,
    mut after: Option<Vec<u8>>,
) -> Result<pb::QueryResponse, StoreError> {
    let reader = tokens.reader;
    let selection = selection(filter);
    let mut states = Vec::new();
    // By change time an indicator may come twice (its public and its restricted records
    // changed at different times): a page shows it once.
    let mut shown = std::collections::BTreeSet::new();
    let (mut scanned, mut bytes) = (0, 0);
    loop {
        let chunk = store.select(&selection, reader, after.as_deref(), QUERY_CHUNK)?;
        let (n, end) = (chunk.len(), chunk.len() < QUERY_CHUNK);
        for (i, (position, s)) in chunk.into_iter().enumerate() {
            scanned += 1;
            let first_time = s
                .indicator
                .as_ref()
                .is_none_or(|i| shown.insert((i.r#type, i.value.clone())));
            if let Some(v) = filter.view(&s, reader).filter(|_| first_time) {
                bytes += v.encoded_len();
                states.push(v);
            }
            after = Some(position);
            let full = states.len() >= size || bytes >= page_bytes;
            if full || scanned >= QUERY_SCAN_BUDGET {
                // A full page always has a token, even on the range's last record: whether
                // anything follows it may be a record the reader does not see (a RED one
                // carrying the tag asked for), so only the next, maybe empty, page says. A
                // short chunk ends the range: no token when the budget ran out on its last.
                let more = full || !end || i + 1 < n;
                let next_page_token = match (more, &after) {
                    (true, Some(p)) => tokens.seal(&selection, p),
                    _ => String::new(),
                };
                return Ok(pb::QueryResponse {
                    states,
                    next_page_token,
                });
            }
        }
        if end {
            return Ok(pb::QueryResponse {
                states,
                next_page_token: String::new(),
            });
        }
    }
}

/// Bytes of [`range_of`] a token carries.
const RANGE_ID_LEN: usize = 16;

/// Which range a token's position belongs to: its kind and everything that bounds it (the
/// tags, origins, types or time), digested. A token resumes only the query that issued it: a
/// position ends on any candidate, one the reader may not see too, and resumed in another
/// range (another tag, another time) it would say where that hidden record lies.
fn range_of(selection: &Selection) -> [u8; RANGE_ID_LEN] {
    let mut bytes = Vec::new();
    let mut list = |kind: u8, items: &mut dyn Iterator<Item = &[u8]>| {
        bytes.push(kind);
        for item in items {
            bytes.extend_from_slice(&(item.len() as u64).to_be_bytes());
            bytes.extend_from_slice(item);
        }
    };
    match selection {
        Selection::All => list(1, &mut std::iter::empty()),
        Selection::Types(t) => list(2, &mut t.iter().map(std::slice::from_ref)),
        Selection::Tags(t) => list(3, &mut t.iter().map(|t| t.as_bytes())),
        Selection::Origins(o) => list(4, &mut o.iter().map(|o| o.as_bytes())),
        Selection::UpdatedSince(t) => list(5, &mut std::iter::once(&t.to_be_bytes()[..])),
        Selection::ObjectId(id) => list(6, &mut std::iter::once(&id[..])),
        Selection::ArrivedSince(t) => list(7, &mut std::iter::once(&t.to_be_bytes()[..])),
    }
    let digest = intelmesh_core::entry::sha256(&bytes);
    let mut id = [0; RANGE_ID_LEN];
    id.copy_from_slice(&digest[..RANGE_ID_LEN]);
    id
}

/// Page tokens for one reader: the range and the position, sealed for the reader
/// (`crate::token`), because a position is an index key and names the indicator there, which
/// the reader may not be allowed to see.
pub struct Tokens<'a> {
    pub key: &'a TokenKey,
    pub reader: &'a OrgId,
}

impl Tokens<'_> {
    /// A token to resume `selection` after `position` (padded by the key, so its length says
    /// nothing of the position's).
    pub fn seal(&self, selection: &Selection, position: &[u8]) -> String {
        let mut bytes = Vec::with_capacity(RANGE_ID_LEN + position.len());
        bytes.extend_from_slice(&range_of(selection));
        bytes.extend_from_slice(position);
        self.key.seal(self.reader, &bytes)
    }

    /// The position a token resumes `selection` after; `None` for the empty token (first
    /// page). A position is only ever a bound of an ordered range, so even a forged one would
    /// read from elsewhere in the same range, never around the reader's view.
    pub fn open(&self, token: &str, selection: &Selection) -> Result<Option<Vec<u8>>, Invalid> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = |why: &str| invalid(format!("page_token is not one this API issued: {why}"));
        let bytes = self.key.open(self.reader, token).map_err(bad)?;
        let (range, position) = bytes
            .split_at_checked(RANGE_ID_LEN)
            .ok_or_else(|| bad("too short"))?;
        if range != range_of(selection) {
            return Err(bad("issued for a query with another filter"));
        }
        Ok(Some(position.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::IndicatorType;

    fn filter(f: pb::Filter) -> Filter {
        Filter::parse(Some(&f)).unwrap()
    }

    #[test]
    fn the_narrowest_range_is_chosen() {
        let all = pb::Filter {
            types: vec![pb::IndicatorType::Domain as i32],
            tags: vec!["C2".into()],
            origins: vec!["AU-AFP".into()],
            updated_since_unix_ms: 5,
            ..Default::default()
        };
        assert_eq!(
            selection(&filter(all.clone())),
            Selection::Tags(vec!["c2".into()])
        );
        let no_tags = pb::Filter {
            tags: vec![],
            ..all.clone()
        };
        assert_eq!(
            selection(&filter(no_tags.clone())),
            Selection::Origins(vec!["AU-AFP".into()])
        );
        let types = pb::Filter {
            origins: vec![],
            ..no_tags.clone()
        };
        let code = IndicatorType::Domain.code();
        assert_eq!(
            selection(&filter(types.clone())),
            Selection::Types(vec![code])
        );
        let since = pb::Filter {
            types: vec![],
            ..types
        };
        assert_eq!(selection(&filter(since)), Selection::UpdatedSince(5));
        assert_eq!(selection(&Filter::default()), Selection::All);
        // Only withdrawn origins named: no range at all, not the next narrowest.
        let withdrawn = filter(no_tags).hiding(["AU-AFP".to_string()].into());
        assert_eq!(selection(&withdrawn), Selection::Origins(vec![]));
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_others() {
        let key = TokenKey::random();
        let (au, br) = (
            OrgId::parse("AU-AFP").unwrap(),
            OrgId::parse("BR-PF").unwrap(),
        );
        let tokens = Tokens {
            key: &key,
            reader: &au,
        };
        let tags = Selection::Tags(vec!["c2".into()]);
        let token = tokens.seal(&tags, b"I\x04evil.example");
        assert!(
            !token.contains("6576696c"),
            "the position shows through: {token}"
        );
        assert_eq!(
            tokens.open(&token, &tags),
            Ok(Some(b"I\x04evil.example".to_vec()))
        );
        assert_eq!(tokens.open("", &tags), Ok(None));
        let long = "A".repeat(10_000);
        // A hex position as tokens were once made, made-up text, too long: all refused.
        let hex_position = hex::encode(b"\x03I\x04evil.example");
        for bad in ["zz", "0", long.as_str(), hex_position.as_str()] {
            let e = tokens.open(bad, &tags).unwrap_err();
            assert!(e.0.starts_with("page_token"), "{e}");
        }
        // Another kind of range, or the same kind bounded otherwise: its position would say
        // where a record lies in that other range.
        for other in [
            Selection::All,
            Selection::Tags(vec!["phishing".into()]),
            Selection::Tags(vec!["c2".into(), "phishing".into()]),
            Selection::Origins(vec!["c2".into()]),
        ] {
            let e = tokens.open(&token, &other).unwrap_err();
            assert!(e.0.contains("another filter"), "{other:?}: {e}");
        }
        let since = tokens.seal(&Selection::UpdatedSince(5), b"t");
        assert!(tokens.open(&since, &Selection::UpdatedSince(6)).is_err());
        assert!(tokens.open(&since, &Selection::UpdatedSince(5)).is_ok());
        let other = Tokens {
            key: &key,
            reader: &br,
        };
        assert!(other.open(&token, &tags).is_err(), "another reader's token");
        // A token's length says nothing of the position's within a bucket.
        let long_position = [b"I\x04".as_slice(), &[b'a'; 200]].concat();
        let long_token = tokens.seal(&tags, &long_position);
        assert_eq!(
            tokens.seal(&tags, b"I\x04a.example").len(),
            token.len(),
            "both under 64 bytes"
        );
        assert_eq!(
            tokens
                .seal(&tags, &[b"I\x04".as_slice(), &[b'b'; 100]].concat())
                .len(),
            long_token.len()
        );
        assert_eq!(tokens.open(&long_token, &tags), Ok(Some(long_position)));
    }
}
