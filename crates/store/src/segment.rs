//! The log's unit of storage: a run of consecutive entries of one origin in one value of the store.
//!
//! A segment is keyed by (origin, seq of its first entry) and entry `i` has seq `first + i`.
//! Appends fill an origin's last segment up to [`SEGMENT_TARGET_BYTES`], then start a new one,
//! so a batch costs a few writes rather than one per entry, and a range read decodes runs; a
//! segment an earlier write left is extended only while under [`REOPEN_BYTES`].

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use prost::bytes::Bytes;
use prost::Message;

use crate::{keys, StoreError};

/// A segment stops taking entries once it holds this many bytes: a batch costs a few writes
/// and a partly filled tail segment is cheap to rewrite (16 KiB and 32 KiB measured no faster
/// in `bench ingest`). A segment holding one entry near the 64 KiB payload cap is bigger.
pub(crate) const SEGMENT_TARGET_BYTES: usize = 6 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct Segment {
    first: u64,
    entries: Vec<pb::SignedEntry>,
    bytes: usize,
}

impl Segment {
    pub(crate) fn new(first: u64) -> Segment {
        Segment {
            first,
            entries: Vec::new(),
            bytes: 0,
        }
    }

    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Seq of the last entry; `first - 1` when empty.
    pub(crate) fn last_seq(&self) -> u64 {
        (self.first.saturating_add(self.entries.len() as u64)).saturating_sub(1)
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        seq >= self.first && seq <= self.last_seq()
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&pb::SignedEntry> {
        self.entries
            .get(usize::try_from(seq.checked_sub(self.first)?).ok()?)
    }

    /// The entries from `seq` on (all of them from a seq before the first).
    pub(crate) fn entries_from(&self, seq: u64) -> impl Iterator<Item = &pb::SignedEntry> {
        let skip = usize::try_from(seq.saturating_sub(self.first)).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip)
    }

    pub(crate) fn last(&self) -> Option<&pb::SignedEntry> {
        self.entries.last()
    }

    /// Replaces the entry at `seq` (a stub by its full entry); false if `seq` is not here.
    pub(crate) fn replace(&mut self, seq: u64, entry: pb::SignedEntry) -> bool {
        let Some(slot) = seq
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.entries.get_mut(i))
        else {
            return false;
        };
        self.bytes = self.bytes - slot.encoded_len() + entry.encoded_len();
        *slot = entry;
        true
    }

    /// About the bytes it holds (its entries' encodings).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= SEGMENT_TARGET_BYTES
    }

    /// Appends the entry with seq `last_seq() + 1`.
    pub(crate) fn push(&mut self, entry: pb::SignedEntry) {
        self.bytes += entry.encoded_len();
        self.entries.push(entry);
    }

    /// Drops the entries after `seq` (which this segment must hold): the segment then ends at
    /// `seq`.
    pub(crate) fn keep_through(&mut self, seq: u64) -> bool {
        if !self.contains(seq) {
            return false;
        }
        let keep = (seq - self.first + 1) as usize;
        for e in self.entries.drain(keep..) {
            self.bytes = self.bytes.saturating_sub(e.encoded_len());
        }
        true
    }

    /// Entries with their seqs.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (u64, pb::SignedEntry)> {
        let first = self.first;
        self.entries
            .into_iter()
            .enumerate()
            .map(move |(i, e)| (first + i as u64, e))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.bytes + 4 * self.entries.len());
        for e in &self.entries {
            prost::encoding::message::encode(1, e, &mut buf);
        }
        buf
    }

    pub(crate) fn decode(first: u64, value: &[u8]) -> Result<Segment, StoreError> {
        // Entries decoded from one `Bytes` share its buffer instead of copying each field.
        let seg = pb::LogSegment::decode(Bytes::copy_from_slice(value)).map_err(|e| {
            StoreError::Corrupt(format!("log segment #{first} does not decode: {e}"))
        })?;
        if first == 0 || seg.entries.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "log segment #{first} is empty or starts at seq 0"
            )));
        }
        Ok(Segment {
            first,
            bytes: value.len(),
            entries: seg.entries,
        })
    }
}

fn decode_kv(origin: &OrgId, k: &[u8], v: &[u8]) -> Result<Segment, StoreError> {
    let first = keys::seq_of_log(k)
        .ok_or_else(|| StoreError::Corrupt(format!("{origin}: bad log key {k:?}")))?;
    Segment::decode(first, v)
}

/// The segment of `origin` that starts at or before `seq` and is closest to it; it holds `seq`
/// if the log does.
pub(crate) fn segment_at(
    db: &crate::kv::Kv,
    origin: &OrgId,
    seq: u64,
) -> Result<Option<Segment>, StoreError> {
    match db
        .range(keys::log(origin, 0)..=keys::log(origin, seq))
        .next_back()
    {
        Some(kv) => {
            let (k, v) = kv?;
            Ok(Some(decode_kv(origin, &k, &v)?))
        }
        None => Ok(None),
    }
}

/// An origin's last segment, as an append finds it.
pub(crate) enum Tail {
    /// Small enough to take more entries: decoded.
    Open(Segment),
    /// Left by an earlier write at [`REOPEN_BYTES`] or more: appends start a new segment, so
    /// it is not decoded. Where it starts.
    Closed(u64),
}

/// A tail segment an earlier write left takes more entries only while it holds fewer bytes
/// than this. Entries that trickle in (a federation's normal flow: a frame of a few entries
/// of each origin) would otherwise rewrite a segment of up to [`SEGMENT_TARGET_BYTES`] per
/// entry, a write of several times the entry's size into the memtable and the journal, and
/// a sender would decode a segment that size to send one entry. A batch still fills the
/// segments it starts to the target.
pub(crate) const REOPEN_BYTES: usize = 1024;

/// `origin`'s last segment, decoded only if appends may extend it (see [`Tail`]).
pub(crate) fn tail_segment(db: &crate::kv::Kv, origin: &OrgId) -> Result<Option<Tail>, StoreError> {
    let Some(kv) = db
        .range(keys::log(origin, 0)..=keys::log(origin, u64::MAX))
        .next_back()
    else {
        return Ok(None);
    };
    let (k, v) = kv?;
    if v.len() < REOPEN_BYTES {
        return decode_kv(origin, &k, &v).map(|s| Some(Tail::Open(s)));
    }
    let first = keys::seq_of_log(&k)
        .ok_or_else(|| StoreError::Corrupt(format!("{origin}: bad log key {k:?}")))?;
    Ok(Some(Tail::Closed(first)))
}

/// The last segment of `origin`'s log.
pub(crate) fn last_segment(
    db: &crate::kv::Kv,
    origin: &OrgId,
) -> Result<Option<Segment>, StoreError> {
    segment_at(db, origin, u64::MAX)
}

/// `origin`'s segments in seq order, from the one holding `from_seq` on.
pub(crate) fn segments_from<'a>(
    db: &'a crate::kv::Kv,
    origin: &'a OrgId,
    from_seq: u64,
) -> Result<impl Iterator<Item = Result<Segment, StoreError>> + 'a, StoreError> {
    // The seek and the scan in one view: apart, a segment written between them (an origin's
    // first, or one cut short and filled again) holding `from_seq` could be passed over.
    let view = db.view();
    let start = match view
        .range(keys::log(origin, 0)..=keys::log(origin, from_seq))
        .next_back()
    {
        Some(kv) => kv?.0.to_vec(),
        None => keys::log(origin, from_seq),
    };
    Ok(view
        .range(start..=keys::log(origin, u64::MAX))
        .map(move |kv| {
            let (k, v) = kv?;
            decode_kv(origin, &k, &v)
        }))
}

/// Every segment in key order: by origin, then seq.
pub(crate) fn all_segments(
    db: &crate::kv::Kv,
) -> impl Iterator<Item = Result<(OrgId, Segment), StoreError>> + '_ {
    db.scan_prefix([keys::LOG]).map(|kv| {
        let (k, v) = kv?;
        let origin =
            keys::origin_of(&k).ok_or_else(|| StoreError::Corrupt(format!("bad log key {k:?}")))?;
        let seg = decode_kv(&origin, &k, &v)?;
        Ok((origin, seg))
    })
}
