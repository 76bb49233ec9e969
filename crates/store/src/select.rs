//! Reading a [`Selection`] page by page: ordered key ranges of the index or its postings, so a
//! page costs what it returns, never a scan of the whole index.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;

use intelmesh_proto::v1 as pb;

use crate::arrival;
use crate::index::decode_state;
use crate::kv::View;
use crate::postings::{ranges, time_scope, time_start, Range, Selection, PUBLIC};
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
    // One view for the postings of every scope and the states they name: read apart, a batch
    // landing between two scopes' ranges could show its later record and not its earlier one,
    // and the page's position would pass the earlier one for good.
    let view = db.view();
    match selection {
        Selection::UpdatedSince(since) => by_time(&view, *since, reader, after, limit),
        Selection::ArrivedSince(since) => by_arrival(&view, *since, reader, after, limit),
        _ => by_index_key(&view, &ranges(selection, reader), after, limit),
    }
}

/// Selections in index order: each range read from just after `after`'s index key, merged
/// lazily (a heap of each range's next key), each indicator once: a page reads about `limit`
/// keys however many ranges (tags, origins, types) the selection names.
fn by_index_key(
    db: &View,
    ranges: &[Range],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    let mut scans: Vec<_> = ranges
        .iter()
        .map(|r| {
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
            let (prefix, skip) = (r.prefix.clone(), r.skip);
            db.range::<Vec<u8>, _>((start, Bound::Unbounded))
                .keys()
                .map_while(move |k| match k {
                    Ok(k) if k.starts_with(&prefix) => Some(Ok(k[skip..].to_vec())),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
        })
        .collect();
    let mut next = BinaryHeap::new();
    for (i, scan) in scans.iter_mut().enumerate() {
        if let Some(k) = scan.next() {
            next.push(Reverse((k?, i)));
        }
    }
    let mut found: Vec<Vec<u8>> = Vec::new();
    while found.len() < limit {
        let Some(Reverse((key, i))) = next.pop() else {
            break;
        };
        if let Some(k) = scans[i].next() {
            next.push(Reverse((k?, i)));
        }
        if found.last() != Some(&key) {
            found.push(key);
        }
    }
    found
        .into_iter()
        .map(|key| {
            let state = read_state(db, &key)?;
            Ok((key, state))
        })
        .collect()
}

/// The time selection for `reader`: time postings from `since` on (or after the position
/// `after`) in the public scope and the reader's, merged, oldest first. An indicator whose
/// records in the two scopes changed at different times comes at both (callers show it once
/// per page).
fn by_time(
    db: &View,
    since: i64,
    reader: &str,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    let first = time_start(since);
    // A position of an earlier build (`Q m`, unscoped) resumes as the same time and key.
    let earlier = after
        .filter(|a| a.starts_with(b"Qm"))
        .map(|a| [&first[..2], &a[2..]].concat());
    let after = earlier.as_deref().or(after);
    let positions = merged_scopes(db, reader, &first, after, limit, time_scope)?;
    let mut out: Vec<Selected> = Vec::with_capacity(positions.len());
    for position in positions {
        // A posting too short to name an indicator (a damaged store) ends the page.
        let Some(index_key) = position.get(first.len()..) else {
            break;
        };
        // One entry per position, so a short answer still means the range ended; an
        // indicator met again (its change in the other scope) is read once.
        let state = match out
            .iter()
            .find(|(p, _)| p.get(first.len()..) == Some(index_key))
        {
            Some((_, s)) => s.clone(),
            None => read_state(db, index_key)?,
        };
        out.push((position, state));
    }
    Ok(out)
}

/// Positions (postings without their scope: a kind byte or two, then what follows the scope)
/// of the public scope's range and `reader`'s from `first` on, or after `after`, merged in
/// order; at most `limit`. `prefix_of` gives a scope's prefix.
fn merged_scopes(
    db: &View,
    reader: &str,
    first: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    prefix_of: fn(&str) -> Vec<u8>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let kind = first.len() - 8;
    let scopes: &[&str] = if reader == PUBLIC {
        &[PUBLIC]
    } else {
        &[PUBLIC, reader]
    };
    // A position of another kind (forged) resumes nothing: the read starts at `first`.
    let after = after.filter(|a| a.len() > kind && a[..kind] == first[..kind]);
    let mut positions = Vec::new();
    for scope in scopes {
        let prefix = prefix_of(scope);
        let within = |position: &[u8]| [prefix.as_slice(), &position[kind..]].concat();
        let start = match resume_at(first, after) {
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
            let Some(rest) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            positions.push([&first[..kind], rest].concat());
        }
    }
    // Each scope's are in order; a record is in one scope a reader reads.
    positions.sort();
    positions.truncate(limit);
    Ok(positions)
}

/// The arrival selection for `reader`: arrival postings from `since` on (or after the position
/// `after`) in the public scope and the reader's, merged by time, oldest first; a state once
/// per record of it that arrived.
fn by_arrival(
    db: &View,
    since: i64,
    reader: &str,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Selected>, StoreError> {
    let first = arrival::start(since);
    let positions = merged_scopes(db, reader, &first, after, limit, arrival::scope_prefix)?;
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

fn read_state(db: &View, index_key: &[u8]) -> Result<pb::IndicatorState, StoreError> {
    let v = db.get(index_key)?.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "a posting names {:?}, which the index does not hold",
            String::from_utf8_lossy(index_key.get(2..).unwrap_or_default())
        ))
    })?;
    decode_state(&v)
}
