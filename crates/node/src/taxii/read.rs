//! Reading the collection: pages of STIX objects as one reader may see them, in the order they
//! arrived at this node, and single objects by id through the index's object-id postings.
//!
//! An object's `date_added` is when the record it shows (an origin's assertion or sightings
//! under one distribution) last changed at this node, by this node's clock
//! (`intelmesh_store::arrival`), not when its origin signed it: an entry that crossed the
//! federation late is added late, so a client polling with `added_after` set to the last
//! `X-TAXII-Date-Added-Last` it saw misses nothing. Times are distinct to the microsecond, so
//! paging by `added_after` alone loses nothing at a page boundary either. Each record keeps
//! its own time: a change to a record the reader may not see sends nothing again.
//!
//! A page reads an ordered range of arrival postings (no scan of the collection), so it costs
//! the same however large the collection grows.

use std::collections::HashMap;

use intelmesh_core::indicator::normalize;
use intelmesh_core::object_id::parse_uuid;
use intelmesh_core::{Indicator, IndicatorType, OrgId};
use intelmesh_interop::stix_export::{identity_id, identity_object};
use intelmesh_interop::taxii::ObjectsQuery;
use intelmesh_interop::Warninglists;
use intelmesh_proto::v1 as pb;
use intelmesh_store::arrival::{assertion_slot, parse_position, sightings_slot, Slot};
use intelmesh_store::{Selection, Store, StoreError};
use serde_json::Value;

use crate::api::stix::objects_of;
use crate::api::view::Filter;
use crate::token::TokenKey;
use crate::warninglists::lists_of;

/// Records read per store call.
const CHUNK: usize = 256;
/// Records one page looks at before answering with what it found (and a `next` token).
const SCAN_BUDGET: usize = 20_000;

/// A page ends once its objects come to about this many bytes of JSON, whatever its limit:
/// a page of long descriptions must still fit the gateway's answer budget.
const PAGE_BYTES: usize = 16 << 20;

/// About how many bytes `v` takes as JSON (strings as written, before escapes).
fn json_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(json_bytes).sum::<usize>() + 2,
        Value::Object(fields) => {
            fields
                .iter()
                .map(|(k, v)| k.len() + 4 + json_bytes(v))
                .sum::<usize>()
                + 2
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
    }
}

/// Bytes of the shortest arrival posting (time, slot, an index key of two bytes).
const SHORTEST_POSITION: usize = 27;

/// One object with the times TAXII reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Dated {
    /// When it was added to the collection here, in microseconds.
    pub date_added_us: i64,
    /// Its `modified`, in milliseconds.
    pub version: i64,
    pub object: Value,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    pub objects: Vec<Dated>,
    /// Present when more may follow.
    pub next: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("next is not a token this server issued: {0}")]
    BadToken(&'static str),
    /// Identities are paged on their own (they have no date added of their own): beside other
    /// types on a page by date added they would be missing without a word.
    #[error("match[type]: identity is read in a request of its own, not beside other types")]
    MixedIdentity,
}

/// What a reader may see: its org and the members hidden from every read.
pub struct Reader<'a> {
    pub store: &'a dyn Store,
    pub org: &'a OrgId,
    pub view: &'a Filter,
    /// Known-benign values: indicators on a list name it in `x_intelmesh_warninglists`.
    pub warninglists: &'a Warninglists,
    /// What `next` tokens are sealed under.
    pub tokens: &'a TokenKey,
}

/// One object this reader sees, with the record it shows and its version.
struct Shown {
    slot: Slot,
    version: i64,
    object: Value,
}

fn indicator_of(state: &pb::IndicatorState) -> Option<Indicator> {
    let r = state.indicator.as_ref()?;
    normalize(IndicatorType::from_proto(r.r#type)?, &r.value).ok()
}

impl Reader<'_> {
    /// The objects of one stored state this reader sees that pass `q`'s filters (all but
    /// `added_after`), each with the record it shows.
    fn shown(&self, state: &pb::IndicatorState, q: &ObjectsQuery) -> Vec<Shown> {
        let Some(visible) = self.view.view(state, self.org) else {
            return Vec::new();
        };
        // Only with lists loaded: the value is normalized again for the probe.
        let lists = indicator_of(&visible)
            .filter(|_| !self.warninglists.is_empty())
            .map(|i| lists_of(self.warninglists, &i))
            .unwrap_or_default();
        // `objects_of` makes one indicator per assertion, then, when there is one to name,
        // one sighting per reporter and TLP (its records of several recipient sets merged),
        // in the order of their first records.
        let mut groups: Vec<((&str, i32), Vec<Slot>)> = Vec::new();
        for x in visible
            .sightings
            .iter()
            .filter(|_| !visible.assertions.is_empty())
        {
            let key = (
                x.origin.as_str(),
                x.distribution.as_ref().map_or(0, |d| d.tlp),
            );
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, slots)) => slots.push(sightings_slot(x)),
                None => groups.push((key, vec![sightings_slot(x)])),
            }
        }
        let indicator = indicator_of(&visible);
        let slots: Vec<Slot> = visible
            .assertions
            .iter()
            .map(assertion_slot)
            .chain(
                (groups.into_iter())
                    .filter_map(|(_, slots)| self.latest(indicator.as_ref(), slots)),
            )
            .collect();
        let objects = objects_of(&visible);
        if objects.len() != slots.len() {
            // A value this version cannot read: nothing to show.
            return Vec::new();
        }
        slots
            .into_iter()
            .zip(objects)
            .map(|(slot, (mut version, mut object))| {
                if !lists.is_empty() && object["type"] == "indicator" {
                    object["x_intelmesh_warninglists"] = Value::from(lists.clone());
                }
                // A sighting's count grows by reports of earlier sightings too, which leave its
                // last one where it was: its version is then when the change reached this node,
                // so a client keeping one copy per version takes the new count.
                if object["type"] == "sighting" {
                    let arrived = (indicator.as_ref())
                        .and_then(|i| self.store.arrival(i, &slot).ok().flatten())
                        .map(|us| us.div_euclid(1000));
                    if let Some(ms) = arrived.filter(|ms| *ms > version) {
                        version = ms;
                        object["modified"] =
                            Value::from(intelmesh_interop::time::format_timestamp(ms));
                    }
                }
                Shown {
                    slot,
                    version,
                    object,
                }
            })
            .filter(|s| q.matches(&s.object))
            .filter(|s| !q.versions.select(&[(s.version, &s.object)]).is_empty())
            .collect()
    }
}

impl Reader<'_> {
    /// Of the records `slots` one object shows (a reporter's sightings at one TLP), the one
    /// that arrived last: the object is added at its arrival, once, as it stands then.
    fn latest(&self, indicator: Option<&Indicator>, slots: Vec<Slot>) -> Option<Slot> {
        match (indicator, slots.as_slice()) {
            (Some(indicator), [_, _, ..]) => {
                let arrived = |slot: &Slot| self.store.arrival(indicator, slot).ok().flatten();
                slots.into_iter().max_by_key(arrived)
            }
            _ => slots.last().copied(),
        }
    }
}

/// Whether `s` shows a reporter's sightings.
fn is_sighting(s: &Shown) -> bool {
    s.object.get("type").and_then(Value::as_str) == Some("sighting")
}

impl Reader<'_> {
    /// The records of `state` that are assertions this reader sees, and when the first of them
    /// arrived here. A reporter's sightings show only beside such an assertion, so they are
    /// added no earlier than it: dated at their own arrival (which a first assertion the reader
    /// may not see moves), they would say when that hidden assertion arrived, and a client
    /// polling past that time would never get them.
    fn seen_assertions(
        &self,
        state: &pb::IndicatorState,
    ) -> Result<(Vec<Slot>, Option<i64>), StoreError> {
        let Some(visible) = self.view.view(state, self.org) else {
            return Ok((Vec::new(), None));
        };
        let Some(indicator) = indicator_of(&visible) else {
            return Ok((Vec::new(), None));
        };
        let slots: Vec<Slot> = visible.assertions.iter().map(assertion_slot).collect();
        let mut first: Option<i64> = None;
        for slot in &slots {
            if let Some(t) = self.store.arrival(&indicator, slot)? {
                first = Some(first.map_or(t, |f| f.min(t)));
            }
        }
        Ok((slots, first))
    }
}

/// What the token of a page of a `match[id]` answer, or of the identities, opens to: this
/// mark, then how many objects the request's earlier pages held (u64).
const ID_PAGE: &[u8] = b"match[id] page";
const IDENTITY_PAGE: &[u8] = b"identity page";

/// The page of `objects` (the whole answer, in a fixed order) a token of `mark` resumes, or
/// the first: a token says how many objects its request's earlier pages held.
fn counted_page(
    r: &Reader,
    q: &ObjectsQuery,
    objects: Vec<Dated>,
    limit: usize,
    mark: &[u8],
) -> Result<Page, ReadError> {
    let skip = match q.next.as_deref() {
        Some(token) => {
            let plain = r.tokens.open(r.org, token).map_err(ReadError::BadToken)?;
            let count = plain
                .strip_prefix(mark)
                .and_then(|n| <[u8; 8]>::try_from(n).ok())
                .ok_or(ReadError::BadToken("not a token of this kind of page"))?;
            usize::try_from(u64::from_be_bytes(count))
                .map_err(|_| ReadError::BadToken("past the end"))?
        }
        None => 0,
    };
    let next = (objects.len().saturating_sub(skip) > limit).then(|| {
        let mut plain = mark.to_vec();
        plain.extend_from_slice(&((skip + limit) as u64).to_be_bytes());
        r.tokens.seal(r.org, &plain)
    });
    let objects = objects.into_iter().skip(skip).take(limit).collect();
    Ok(Page { objects, next })
}

/// The identity of every origin whose records the reader sees (what `created_by_ref` and
/// `where_sighted_refs` name), for `match[type]=identity`: by date added, then id.
fn identities(r: &Reader, q: &ObjectsQuery, limit: usize) -> Result<Page, ReadError> {
    let mut budget = SCAN_BUDGET;
    let mut objects = Vec::new();
    for origin in r.store.heads()?.keys() {
        objects.extend(identity_of(r, origin, q, &mut budget)?);
    }
    objects.sort_by(|a, b| {
        let id = |d: &Dated| d.object["id"].as_str().unwrap_or_default().to_string();
        (a.date_added_us, id(a)).cmp(&(b.date_added_us, id(b)))
    });
    counted_page(r, q, objects, limit, IDENTITY_PAGE)
}

/// The arrival position a token's opened bytes name, if they name one.
fn position_of(after: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    if after.starts_with(ID_PAGE) || after.starts_with(IDENTITY_PAGE) {
        return Err(ReadError::BadToken(
            "another kind of page's, not a position",
        ));
    }
    if after.len() < SHORTEST_POSITION || parse_position(&after).is_none() {
        return Err(ReadError::BadToken("not a position"));
    }
    Ok(after)
}

/// One page of at most `limit` objects. Pages follow the arrival postings from `added_after`
/// on; `match[id]` reads the object-id postings instead (at most 100 ids), and
/// `match[type]=identity` the origins' identities, each in pages of `limit` by count.
pub fn page(r: &Reader, q: &ObjectsQuery, limit: usize) -> Result<Page, ReadError> {
    if !q.ids.is_empty() {
        let mut objects = Vec::new();
        // One budget for the whole request: a hundred identity ids scan no more than one.
        let mut budget = SCAN_BUDGET;
        let mut read = HashMap::new();
        for id in &q.ids {
            for d in by_id_within(r, id, q, &mut budget, &mut read)? {
                if !objects.iter().any(|o: &Dated| o.object == d.object) {
                    objects.push(d);
                }
            }
        }
        // In pages of `limit` too, in the order of the ids asked.
        return counted_page(r, q, objects, limit, ID_PAGE);
    }
    if !q.types.is_empty() && q.types.iter().all(|t| t == "identity") {
        return identities(r, q, limit);
    }
    if q.types.iter().any(|t| t == "identity") {
        return Err(ReadError::MixedIdentity);
    }
    let since = q.added_after_us.map_or(i64::MIN, |t| t.saturating_add(1));
    let selection = Selection::ArrivedSince(since);
    let mut after = match q.next.as_deref() {
        Some(token) => {
            let plain = r.tokens.open(r.org, token).map_err(ReadError::BadToken)?;
            Some(position_of(plain)?)
        }
        None => None,
    };
    // The raw position, so a token stays short (the key pads it to one of a few lengths).
    let seal = |after: &[u8]| r.tokens.seal(r.org, after);
    let mut out = Vec::new();
    let (mut scanned, mut bytes) = (0, 0);
    loop {
        let chunk = r.store.select(&selection, r.org, after.as_deref(), CHUNK)?;
        let end = chunk.len() < CHUNK;
        let n = chunk.len();
        for (i, (position, state)) in chunk.into_iter().enumerate() {
            scanned += 1;
            if let Some((arrived, slot, _)) = parse_position(&position) {
                let objects = at_posting(r, &state, q, arrived, slot)?;
                // A posting's objects stay on one page: past the limit, the page ends before it.
                if !out.is_empty() && out.len() + objects.len() > limit {
                    return Ok(Page {
                        objects: out,
                        next: after.as_deref().map(seal),
                    });
                }
                for s in objects {
                    bytes += json_bytes(&s.object);
                    out.push(Dated {
                        date_added_us: arrived,
                        version: s.version,
                        object: s.object,
                    });
                }
            }
            let last_of_range = end && i + 1 == n;
            let full = out.len() >= limit || bytes >= PAGE_BYTES;
            // A full page always has a `next`, even on the range's last record: whether more
            // follows may be a record this reader does not see, so only the next page says.
            if full || (scanned >= SCAN_BUDGET && !last_of_range) {
                return Ok(Page {
                    objects: out,
                    next: Some(seal(&position)),
                });
            }
            after = Some(position);
        }
        if end {
            return Ok(Page {
                objects: out,
                next: None,
            });
        }
    }
}

/// The objects the arrival posting of `state`'s record `slot` (at `arrived`) adds for this
/// reader: the object of that record (one at most), unless it is sightings that arrived before
/// the first assertion the reader sees; and at that assertion's posting, those sightings.
fn at_posting(
    r: &Reader,
    state: &pb::IndicatorState,
    q: &ObjectsQuery,
    arrived: i64,
    slot: Slot,
) -> Result<Vec<Shown>, ReadError> {
    let mut shown = r.shown(state, q);
    if !shown.iter().any(is_sighting) {
        shown.retain(|s| s.slot == slot);
        return Ok(shown);
    }
    let (assertions, first) = r.seen_assertions(state)?;
    let Some(first) = first else {
        shown.retain(|s| s.slot == slot);
        return Ok(shown);
    };
    let indicator = indicator_of(state);
    let mut out = Vec::new();
    for s in shown {
        let keep = if s.slot == slot {
            !is_sighting(&s) || arrived > first
        } else if arrived == first && assertions.contains(&slot) && is_sighting(&s) {
            // Sightings that came before the first assertion the reader sees: added with it.
            let own = match &indicator {
                Some(i) => r.store.arrival(i, &s.slot)?,
                None => None,
            };
            own.is_some_and(|own| own < first)
        } else {
            false
        };
        if keep {
            out.push(s);
        }
    }
    Ok(out)
}

/// Every version of object `id` this reader sees that passes `q`'s filters (the mesh keeps
/// each object's latest version); empty when there is none. An `identity` id names an origin
/// (the `created_by_ref` of its objects).
pub fn by_id(r: &Reader, id: &str, q: &ObjectsQuery) -> Result<Vec<Dated>, ReadError> {
    let mut budget = SCAN_BUDGET;
    by_id_within(r, id, q, &mut budget, &mut HashMap::new())
}

/// The states read by object-id UUID for one request.
type ReadById = HashMap<[u8; 16], Vec<(Vec<u8>, pb::IndicatorState)>>;

/// [`by_id`], an identity's scan taking from `budget` (indicators read), the states of each
/// UUID read once per request (`read`).
fn by_id_within(
    r: &Reader,
    id: &str,
    q: &ObjectsQuery,
    budget: &mut usize,
    read: &mut ReadById,
) -> Result<Vec<Dated>, ReadError> {
    if id.starts_with("identity--") {
        return identity(r, id, q, budget);
    }
    // Only indicators and sightings are kept by UUID; and a UUID asked again under another
    // type is not read again: a hundred spellings of one id would otherwise time a hundred
    // reads of a state the reader may not see, telling it the node holds the record.
    let Some((ty, uuid)) = id.split_once("--") else {
        return Ok(Vec::new());
    };
    let Some(uuid) = parse_uuid(uuid).filter(|_| matches!(ty, "indicator" | "sighting")) else {
        return Ok(Vec::new());
    };
    let states = match read.entry(uuid) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => {
            // One id names one origin's assertion (or sightings) of one value; a few states
            // at most share a UUID prefix by chance, so a small read is the whole answer.
            e.insert(
                r.store
                    .select(&Selection::ObjectId(uuid), r.org, None, 16)?,
            )
        }
    };
    let mut found = Vec::new();
    for (_, state) in states.iter() {
        let Some(indicator) = indicator_of(state) else {
            continue;
        };
        for s in r.shown(state, q) {
            if s.object.get("id").and_then(Value::as_str) != Some(id) {
                continue;
            }
            // Every record in the index has its time; the signing time is the fallback.
            let own = r
                .store
                .arrival(&indicator, &s.slot)?
                .unwrap_or(s.version.saturating_mul(1000));
            // Sightings are added with the first assertion the reader sees (see `at_posting`).
            let date_added_us = match is_sighting(&s) {
                true => own.max(r.seen_assertions(state)?.1.unwrap_or(i64::MIN)),
                false => own,
            };
            if q.added_after_us.is_none_or(|a| date_added_us > a) {
                found.push(Dated {
                    date_added_us,
                    version: s.version,
                    object: s.object,
                });
            }
        }
    }
    Ok(found)
}

/// The identity object of an origin this node holds entries of and may show, whose id is
/// `id`; created (and added) as [`identity_created`] says.
fn identity(
    r: &Reader,
    id: &str,
    q: &ObjectsQuery,
    budget: &mut usize,
) -> Result<Vec<Dated>, ReadError> {
    let heads = r.store.heads()?;
    let Some(origin) = heads.keys().find(|o| identity_id(o.as_str()) == id) else {
        return Ok(Vec::new());
    };
    identity_of(r, origin, q, budget)
}

/// [`identity`] of `origin`.
fn identity_of(
    r: &Reader,
    origin: &intelmesh_core::OrgId,
    q: &ObjectsQuery,
    budget: &mut usize,
) -> Result<Vec<Dated>, ReadError> {
    // An origin whose records the reader may not see is not named to it (not even that it
    // has entries here, nor since when).
    if !r.view.shows_origin(origin.as_str()) || !shows_any_record_of(r, origin, budget)? {
        return Ok(Vec::new());
    }
    let created = identity_created(r, origin)?;
    let object = identity_object(origin.as_str(), created);
    let date_added_us = created.saturating_mul(1000);
    if !q.matches(&object) || q.added_after_us.is_some_and(|a| date_added_us <= a) {
        return Ok(Vec::new());
    }
    Ok(vec![Dated {
        date_added_us,
        version: created,
        object,
    }])
}

/// Whether the reader sees an assertion or sightings of `origin` among the indicators the
/// origin has a record of that `budget` still allows reading (the index, not the log: a
/// member's log also holds CLEAR roster checkpoints, which every reader may read).
fn shows_any_record_of(
    r: &Reader,
    origin: &intelmesh_core::OrgId,
    budget: &mut usize,
) -> Result<bool, ReadError> {
    let selection = Selection::Origins(vec![origin.to_string()]);
    let mut after = None::<Vec<u8>>;
    while *budget > 0 {
        let want = CHUNK.min(*budget);
        let chunk = r.store.select(&selection, r.org, after.as_deref(), want)?;
        let end = chunk.len() < want;
        for (position, state) in chunk {
            *budget = budget.saturating_sub(1);
            let of_origin = |o: &str| o == origin.as_str();
            if let Some(v) = r.view.view(&state, r.org) {
                if v.assertions.iter().any(|a| of_origin(&a.origin))
                    || v.sightings.iter().any(|s| of_origin(&s.origin))
                {
                    return Ok(true);
                }
            }
            after = Some(position);
        }
        if end {
            break;
        }
    }
    Ok(false)
}

/// When an identity shown to the reader was created: its origin's first entry's signing time
/// when the reader may read that entry (a roster checkpoint, a CLEAR record), else the epoch.
/// Fixed either way, as STIX wants of an object's `created`, and never the time of an entry
/// the reader may not read.
fn identity_created(r: &Reader, origin: &intelmesh_core::OrgId) -> Result<i64, ReadError> {
    let first = r.store.range(origin, 1, 1)?;
    Ok((first.first())
        .and_then(crate::state::header_of)
        .filter(|h| r.view.admits_entry(h, r.org))
        .map_or(0, |h| h.issued_at_unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sizes_are_estimated_close_to_what_is_written() {
        let object = serde_json::json!({
            "type": "indicator",
            "id": "indicator--0a1b2c3d-0000-4000-8000-000000000001",
            "description": "d".repeat(60_000),
            "labels": ["a", "b"],
            "confidence": 80,
            "revoked": false,
            "x": null,
        });
        let written = object.to_string().len();
        let estimated = json_bytes(&object);
        assert!(
            estimated >= written * 9 / 10 && estimated <= written * 11 / 10,
            "{estimated} for {written}"
        );
    }

    #[test]
    fn tokens_name_an_arrival_position_and_nothing_else() {
        let mut position = vec![b'A'];
        position.extend_from_slice(&[0x80; 8]);
        position.extend_from_slice(&[7; 16]);
        position.extend_from_slice(b"I\x04a.example");
        assert_eq!(position_of(position.clone()).unwrap(), position);
        for bad in [
            &b""[..],
            b"zz",
            b"\0",
            b"Qm\x80\0\0\0\0\0\0\x01I\x04a.example",
        ] {
            assert!(position_of(bad.to_vec()).is_err(), "{bad:?}");
        }
    }
}
