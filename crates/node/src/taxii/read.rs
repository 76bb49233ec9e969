//! Reading the collection: pages of STIX objects as one reader may see them, in the order of
//! the index's time postings, and single objects by id through its object-id postings.
//!
//! A page reads an ordered range (no scan of the collection), so it costs the same however
//! large the collection grows. Each object's `date_added` is its version time; with
//! `added_after`, only versions after it are returned, so a change in a record the reader may
//! not see never sends an object it already has again.

use intelmesh_core::indicator::normalize;
use intelmesh_core::object_id::parse_uuid;
use intelmesh_core::{IndicatorType, OrgId};
use intelmesh_interop::stix_export::{identity_id, identity_object};
use intelmesh_interop::taxii::ObjectsQuery;
use intelmesh_interop::Warninglists;
use intelmesh_store::{Selection, Store, StoreError};
use serde_json::Value;

use crate::api::stix::objects_of;
use crate::api::view::Filter;
use crate::token::TokenKey;
use crate::warninglists::lists_of;

/// States read per store call.
const CHUNK: usize = 256;
/// States one page looks at before answering with what it found (and a `next` token).
const SCAN_BUDGET: usize = 20_000;
/// Bytes before the index key in a time posting key (`Q m <u64>`).
const TIME_POSTING_HEAD: usize = 10;

/// One object with the times TAXII reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Dated {
    pub date_added: i64,
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

impl Reader<'_> {
    /// The objects of one stored state this reader sees that pass `q`, oldest version first.
    fn objects(&self, state: &intelmesh_proto::v1::IndicatorState, q: &ObjectsQuery) -> Vec<Dated> {
        let Some(visible) = self.view.view(state, self.org) else {
            return Vec::new();
        };
        // Only with lists loaded: the value is normalized again for the probe.
        let lists = visible
            .indicator
            .as_ref()
            .filter(|_| !self.warninglists.is_empty())
            .and_then(|r| normalize(IndicatorType::from_proto(r.r#type)?, &r.value).ok())
            .map(|i| lists_of(self.warninglists, &i))
            .unwrap_or_default();
        objects_of(&visible)
            .into_iter()
            .map(|(v, mut o)| {
                if !lists.is_empty() && o["type"] == "indicator" {
                    o["x_intelmesh_warninglists"] = Value::from(lists.clone());
                }
                (v, o)
            })
            .filter(|(v, o)| q.added_after.is_none_or(|a| *v > a) && q.matches(o))
            .filter(|(v, o)| !q.versions.select(&[(*v, o)]).is_empty())
            .map(|(version, object)| Dated {
                date_added: version,
                version,
                object,
            })
            .collect()
    }
}

/// Where a page resumes: after a position of the time range, then past `skip` objects of the
/// state with index key `partial` if that state comes first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Resume {
    after: Option<Vec<u8>>,
    skip: usize,
    partial: Vec<u8>,
}

fn encode(r: &Resume) -> String {
    let after = r.after.as_deref().map(hex::encode).unwrap_or_default();
    format!("{after}.{}.{}", r.skip, hex::encode(&r.partial))
}

fn decode(token: &str) -> Result<Resume, ReadError> {
    let mut parts = token.split('.');
    let (Some(after), Some(skip), Some(partial), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::BadToken("not three parts"));
    };
    let after = match after {
        "" => None,
        a => Some(hex::decode(a).map_err(|_| ReadError::BadToken("position is not hex"))?),
    };
    if after.as_ref().is_some_and(|a| a.len() < TIME_POSTING_HEAD) {
        return Err(ReadError::BadToken("position too short"));
    }
    Ok(Resume {
        after,
        skip: skip
            .parse()
            .map_err(|_| ReadError::BadToken("skip is not a count"))?,
        partial: hex::decode(partial).map_err(|_| ReadError::BadToken("key is not hex"))?,
    })
}

/// One page of at most `limit` objects. Pages follow the time postings from `added_after`
/// on; `match[id]` reads the object-id postings instead (at most 100 ids, one page).
pub fn page(r: &Reader, q: &ObjectsQuery, limit: usize) -> Result<Page, ReadError> {
    if !q.ids.is_empty() {
        let mut objects = Vec::new();
        for id in &q.ids {
            for d in by_id(r, id, q)? {
                if !objects.iter().any(|o: &Dated| o.object == d.object) {
                    objects.push(d);
                }
            }
        }
        return Ok(Page {
            objects,
            next: None,
        });
    }
    let since = q.added_after.map_or(i64::MIN, |t| t.saturating_add(1));
    let selection = Selection::UpdatedSince(since);
    let resume = match q.next.as_deref() {
        Some(token) => {
            let plain = r.tokens.open(r.org, token).map_err(ReadError::BadToken)?;
            decode(std::str::from_utf8(&plain).map_err(|_| ReadError::BadToken("not text"))?)?
        }
        None => Resume::default(),
    };
    let seal = |resume: &Resume| r.tokens.seal(r.org, encode(resume).as_bytes());
    let mut after = resume.after.clone();
    let mut out = Vec::new();
    let mut scanned = 0;
    let mut first = true;
    loop {
        let chunk = r.store.select(&selection, after.as_deref(), CHUNK)?;
        let end = chunk.len() < CHUNK;
        let n = chunk.len();
        for (i, (position, state)) in chunk.into_iter().enumerate() {
            scanned += 1;
            let key = position
                .get(TIME_POSTING_HEAD..)
                .unwrap_or_default()
                .to_vec();
            let skip = if first && key == resume.partial {
                resume.skip
            } else {
                0
            };
            first = false;
            let objects: Vec<Dated> = r.objects(&state, q).into_iter().skip(skip).collect();
            let room = limit - out.len();
            if objects.len() > room {
                out.extend(objects.into_iter().take(room));
                let next = Resume {
                    after,
                    skip: skip + room,
                    partial: key,
                };
                return Ok(Page {
                    objects: out,
                    next: Some(seal(&next)),
                });
            }
            out.extend(objects);
            after = Some(position);
            let last_of_range = end && i + 1 == n;
            if (out.len() == limit || scanned >= SCAN_BUDGET) && !last_of_range {
                let next = Resume {
                    after,
                    ..Resume::default()
                };
                return Ok(Page {
                    objects: out,
                    next: Some(seal(&next)),
                });
            }
        }
        if end {
            return Ok(Page {
                objects: out,
                next: None,
            });
        }
    }
}

/// Every version of object `id` this reader sees that passes `q`'s filters (the mesh keeps
/// each object's latest version); empty when there is none. An `identity` id names an origin
/// (the `created_by_ref` of its objects).
pub fn by_id(r: &Reader, id: &str, q: &ObjectsQuery) -> Result<Vec<Dated>, ReadError> {
    if id.starts_with("identity--") {
        return identity(r, id, q);
    }
    let Some(uuid) = id.split_once("--").and_then(|(_, u)| parse_uuid(u)) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    // One id names one origin's assertion (or sightings) of one value; a few states at most
    // share a UUID prefix by chance, so a small read is the whole answer.
    for (_, state) in r.store.select(&Selection::ObjectId(uuid), None, 16)? {
        found.extend(
            r.objects(&state, q)
                .into_iter()
                .filter(|d| d.object.get("id").and_then(Value::as_str) == Some(id)),
        );
    }
    Ok(found)
}

/// The identity object of an origin this node holds entries of and may show, whose id is
/// `id`; created (and added) at the origin's first entry.
fn identity(r: &Reader, id: &str, q: &ObjectsQuery) -> Result<Vec<Dated>, ReadError> {
    let heads = r.store.heads()?;
    let Some(origin) = heads
        .keys()
        .find(|o| identity_id(o.as_str()) == id && r.view.shows_origin(o.as_str()))
    else {
        return Ok(Vec::new());
    };
    let first = r.store.range(origin, 1, 1)?;
    let created = first
        .first()
        .and_then(crate::state::header_of)
        .map_or(0, |h| h.issued_at_unix_ms);
    let object = identity_object(origin.as_str(), created);
    if !q.matches(&object) {
        return Ok(Vec::new());
    }
    Ok(vec![Dated {
        date_added: created,
        version: created,
        object,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_others() {
        let r = Resume {
            after: Some(b"Qm\x80\0\0\0\0\0\0\x01I\x04a.example".to_vec()),
            skip: 2,
            partial: b"I\x04b.example".to_vec(),
        };
        assert_eq!(decode(&encode(&r)).unwrap(), r);
        assert_eq!(decode(".0.").unwrap(), Resume::default());
        for bad in ["", "a.b", "zz.0.", "00.0.", "..x", ".-1.", "a.b.c.d"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
