//! Reading a [`Selection`] page by page: ordered key ranges of the index or its postings, so a
//! page costs what it returns, never a scan of the whole index.

use std::ops::Bound;

use intelmesh_proto::v1 as pb;

use crate::arrival;
use crate::index::decode_state;
use crate::postings::{ranges, time_start, Range, Selection, PUBLIC};
use crate::StoreError;

/// A state of a selection and the position to resume after it.
pub type Selected = (Vec<u8>, pb::IndicatorState);

/// Up to `limit` states of `selection` for `reader` after the position `after` (see
/// [`Selected`]): by tag, origin or type, and of the whole index, only states holding a record
/// `reader` may read (`postings`).
pub(crate) fn select(
    db: &crate::kv::Kv,
    selection: &Selection,
    reader: &str,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    match selection {
        Selection::UpdatedSince(since) => by_time(db, *since, after, limit),
        Selection::ArrivedSince(since) => by_arrival(db, *since, reader, after, limit),
        _ => by_index_key(db, &ranges(selection, reader), after, limit),
    }
}

/// Selections in index order: each range read from just after `after`'s index key, merged,
/// each indicator once.
fn by_index_key(
    db: &crate::kv::Kv,
    ranges: &[Range],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    let mut found: std::collections::BTreeSet<Vec<u8>> = std::collections::BTreeSet::new();
    for r in ranges {
        let start = match after {
            Some(a) => {
                let mut k = r.prefix[..r.skip].to_vec();
                k.extend_from_slice(a);
                if k >= r.prefix {
                    Bound::Excluded(k)
                } else {
                    Bound::Included(r.prefix.clone())
                }
            }
            None => Bound::Included(r.prefix.clone()),
        };
        for kv in db
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .keys()
            .take(limit)
        {
            let k = kv?;
            if !k.starts_with(&r.prefix) {
                break;
            }
            found.insert(k[r.skip..].to_vec());
        }
    }
    found
        .into_iter()
        .take(limit)
        .map(|key| {
            let state = read_state(db, &key)?;
            Ok((key, state))
        })
        .collect()
}

/// The time selection: time postings from `since` on (or after the position `after`, a
/// posting key), oldest first.
fn by_time(
    db: &crate::kv::Kv,
    since: i64,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    let first = time_start(since);
    let start = resume_at(&first, after);
    let prefix = &first[..2];
    let mut out = Vec::new();
    for kv in db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
        let (k, _) = kv?;
        if !k.starts_with(prefix) || out.len() == limit {
            break;
        }
        let state = read_state(db, &k[first.len()..])?;
        out.push((k.to_vec(), state));
    }
    Ok(out)
}

/// The arrival selection for `reader`: arrival postings from `since` on (or after the position
/// `after`) in the public scope and the reader's, merged by time, oldest first; a state once
/// per record of it that arrived.
fn by_arrival(
    db: &crate::kv::Kv,
    since: i64,
    reader: &str,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    let first = arrival::start(since);
    let mut positions: Vec<Vec<u8>> = Vec::new();
    let scopes: &[&str] = if reader == PUBLIC {
        &[PUBLIC]
    } else {
        &[PUBLIC, reader]
    };
    for scope in scopes {
        let prefix = arrival::scope_prefix(scope);
        let within = |position: &[u8]| [prefix.as_slice(), &position[1..]].concat();
        let start = match resume_at(&first, after) {
            Bound::Excluded(a) => Bound::Excluded(within(&a)),
            Bound::Included(f) => Bound::Included(within(&f)),
            Bound::Unbounded => Bound::Unbounded,
        };
        for k in db
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .keys()
            .take(limit)
        {
            let k = k?;
            let Some(position) = arrival::position_of(&prefix, &k) else {
                break;
            };
            positions.push(position);
        }
    }
    // Each scope's are in time order; a record is in one scope a reader reads.
    positions.sort();
    positions.truncate(limit);
    let mut out: Vec<Selected> = Vec::with_capacity(positions.len());
    for position in positions {
        let Some((_, _, index_key)) = arrival::parse_position(&position) else {
            break;
        };
        // Records of one indicator that arrived together are read once.
        let state = match out.last() {
            Some((p, s)) if arrival::parse_position(p).map(|(_, _, i)| i) == Some(index_key) => {
                s.clone()
            }
            _ => read_state(db, index_key)?,
        };
        out.push((position, state));
    }
    Ok(out)
}

/// Where a time-ordered read starts: just after `after`, unless that lies before `first` (a
/// position may only move a read within its range).
fn resume_at(first: &[u8], after: Option<&[u8]>) -> Bound<Vec<u8>> {
    match after {
        Some(a) if a >= first => Bound::Excluded(a.to_vec()),
        _ => Bound::Included(first.to_vec()),
    }
}

fn read_state(db: &crate::kv::Kv, index_key: &[u8]) -> Result<pb::IndicatorState, StoreError> {
    let v = db.get(index_key)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "a posting names {:?}, which the index does not hold",
            String::from_utf8_lossy(index_key.get(2..).unwrap_or_default())
        ))
    })?;
    decode_state(&v)
}
