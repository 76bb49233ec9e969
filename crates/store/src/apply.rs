//! One `Store::apply` in progress: chain decisions against the stored heads, with every write
//! gathered into one batch.
//!
//! Heads and segments are read from the db once per call and kept per origin; later entries of
//! the same call see what earlier ones changed. Index updates are only collected here: they are
//! merged into the index once the batch is durable.

use std::collections::{BTreeMap, HashMap};

use intelmesh_core::chain::{admit, Admission, ChainError, StoredAt};
use intelmesh_core::entry::header_hash;
use intelmesh_core::evidence::{chain_break, equivocation};
use intelmesh_core::{Head, KeyId, OrgId, VerifiedEntry};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::index::IndexUpdate;
use crate::segment::{segment_at, tail_segment, Segment, Tail, REOPEN_BYTES};
use crate::tail_cache::TailCache;
use crate::{keys, Outcome, StoreError};

/// Fork proofs kept per origin: one proves the fork, a few show its extent; an origin that
/// signs conflicting entries without end cannot grow the store without end.
pub const MAX_FORK_PROOFS_PER_ORIGIN: usize = 8;

pub(crate) enum Placed {
    Done(Outcome),
    /// Predecessors missing: the entry comes back to be held.
    Gap(Box<VerifiedEntry>),
}

/// What this call did to one origin.
struct OriginWork {
    head: Option<Head>,
    /// Segments this call read or changed, by first seq; `true` marks those to write back.
    segments: BTreeMap<u64, (Segment, bool)>,
    /// First seq of the segment holding the head, once looked up.
    tail: Option<u64>,
    /// Key ids recorded by this call.
    keys: Vec<KeyId>,
    head_changed: bool,
}

impl OriginWork {
    /// The cached segment holding `seq`.
    fn cached(&mut self, seq: u64) -> Option<&mut (Segment, bool)> {
        self.segments
            .range_mut(..=seq)
            .next_back()
            .map(|(_, s)| s)
            .filter(|(s, _)| s.contains(seq))
    }
}

/// What `finish` hands back: the batch of writes, and the index updates to merge once they are
/// durable, in the order the entries were placed.
pub(crate) struct Finished {
    pub(crate) batch: crate::kv::Batch,
    pub(crate) index: Vec<IndexUpdate>,
    /// Some segment was written: the log generation must rise with this batch.
    pub(crate) log_changed: bool,
    /// The heads this batch moves.
    pub(crate) heads: Vec<(OrgId, Head)>,
    /// Payload fills recorded in the batch, numbered on from the store's count.
    pub(crate) fills: u64,
    /// Fork proofs recorded in the batch.
    pub(crate) forks: u64,
    /// Each origin whose head's segment the batch writes, with that segment (`None`: to be
    /// forgotten).
    pub(crate) tails: Vec<(OrgId, Option<Segment>)>,
}

pub(crate) struct Work<'a> {
    db: &'a crate::kv::Kv,
    /// The tails as stored (the write lock is held), so an append need not read them.
    cached_tails: &'a TailCache,
    /// The heads as stored (the write lock is held), so an origin's first entry in a call need
    /// not read its head.
    stored_heads: &'a BTreeMap<OrgId, Head>,
    /// The store's node: a sealed entry it reads and did not open is marked (`reopen`).
    owner: Option<&'a OrgId>,
    batch: crate::kv::Batch,
    origins: HashMap<OrgId, OriginWork>,
    index: Vec<IndexUpdate>,
    /// Stubs this call completed, in order.
    fills: Vec<(OrgId, u64)>,
    /// Fork proofs found by this call (written at `finish`, within the per-origin cap).
    forks: Vec<pb::ForkProof>,
}

impl<'a> Work<'a> {
    pub(crate) fn new(
        db: &'a crate::kv::Kv,
        cached_tails: &'a TailCache,
        stored_heads: &'a BTreeMap<OrgId, Head>,
        owner: Option<&'a OrgId>,
        entries: usize,
    ) -> Work<'a> {
        Work {
            db,
            cached_tails,
            stored_heads,
            owner,
            batch: crate::kv::Batch::default(),
            origins: HashMap::new(),
            index: Vec::with_capacity(entries),
            fills: Vec::new(),
            forks: Vec::new(),
        }
    }

    fn origin(&mut self, origin: &OrgId) -> Result<&mut OriginWork, StoreError> {
        if !self.origins.contains_key(origin) {
            let fresh = OriginWork {
                head: self.stored_heads.get(origin).copied(),
                segments: BTreeMap::new(),
                tail: None,
                keys: Vec::new(),
                head_changed: false,
            };
            self.origins.insert(origin.clone(), fresh);
        }
        self.origins
            .get_mut(origin)
            .ok_or_else(|| StoreError::Corrupt("origin state vanished".into()))
    }

    pub(crate) fn head(&mut self, origin: &OrgId) -> Result<Option<Head>, StoreError> {
        Ok(self.origin(origin)?.head)
    }

    /// The segment holding stored entry `seq` (at most the head), read into this call.
    fn segment_of(&mut self, origin: &OrgId, seq: u64) -> Result<&mut (Segment, bool), StoreError> {
        let db = self.db;
        let o = self.origin(origin)?;
        if o.cached(seq).is_none() {
            let seg = segment_at(db, origin, seq)?
                .filter(|s| s.contains(seq))
                .ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "{origin}: #{seq} is below the head but not logged"
                    ))
                })?;
            o.segments.insert(seg.first(), (seg, false));
        }
        o.cached(seq)
            .ok_or_else(|| StoreError::Corrupt("segment vanished".into()))
    }

    fn stored(&mut self, origin: &OrgId, seq: u64) -> Result<pb::SignedEntry, StoreError> {
        let (seg, _) = self.segment_of(origin, seq)?;
        seg.get(seq).cloned().ok_or_else(|| {
            StoreError::Corrupt(format!("{origin}: #{seq} missing from its segment"))
        })
    }

    pub(crate) fn place(&mut self, entry: VerifiedEntry) -> Result<Placed, StoreError> {
        let h = entry.header();
        let (origin, seq) = (h.origin.clone(), h.seq);
        let head = self.head(&origin)?;
        let stored = if seq <= head.map_or(0, |x| x.seq) {
            Some(self.stored(&origin, seq)?)
        } else {
            None
        };
        let stored_at = stored.as_ref().map(|s| StoredAt {
            hash: header_hash(&s.header),
            has_payload: s.payload.is_some(),
        });
        let has_payload = entry.has_payload();
        let admission = admit(
            head,
            stored_at,
            seq,
            &h.prev_hash,
            entry.hash(),
            has_payload,
        );
        let outcome = match admission {
            Admission::Append => {
                let new_head = Head {
                    seq,
                    hash: *entry.hash(),
                };
                self.write_entry(entry, true)?;
                let o = self.origin(&origin)?;
                o.head = Some(new_head);
                o.head_changed = true;
                Outcome::Appended
            }
            Admission::FillPayload => {
                self.write_entry(entry, false)?;
                Outcome::PayloadFilled
            }
            Admission::Duplicate => Outcome::Duplicate,
            Admission::Gap { .. } => return Ok(Placed::Gap(Box::new(entry))),
            Admission::Equivocation { .. } => {
                if let Some(stored) = stored {
                    self.record_equivocation(&stored, &entry);
                }
                Outcome::Rejected(ChainError::Equivocation { origin, seq })
            }
            Admission::ChainBreak { .. } => {
                // The origin signed a successor of another entry than the one stored: as much
                // a fork as two entries at one seq.
                if let Some(before) = seq.checked_sub(1).filter(|s| *s > 0) {
                    let predecessor = self.stored(&origin, before)?;
                    self.forks.push(chain_break(
                        &predecessor,
                        &entry,
                        intelmesh_core::now_unix_ms(),
                    ));
                }
                Outcome::Rejected(ChainError::ChainBreak { origin, seq })
            }
        };
        Ok(Placed::Done(outcome))
    }

    /// Logs `entry`: appended after the head, or replacing the stub stored at its seq.
    fn write_entry(&mut self, entry: VerifiedEntry, append: bool) -> Result<(), StoreError> {
        let opened = entry.opened().map(<[u8]>::to_vec);
        let unopened = opened.is_none()
            && entry.raw().payload.is_some()
            && entry.is_sealed()
            && self.owner.is_some_and(|me| entry.is_reader(me));
        let (raw, header, _hash, payload, key) = entry.into_parts();
        let (origin, seq) = (&header.origin, header.seq);
        if let Some(opened) = opened {
            // In the same batch as the envelope: the index is rebuilt from the log without
            // this node's keys.
            self.batch.insert(keys::opened(origin, seq), opened);
        }
        if unopened {
            self.batch.insert(keys::unopened(origin, seq), &[][..]);
        }
        if append {
            self.append(origin, seq, raw)?;
        } else {
            let (seg, dirty) = self.segment_of(origin, seq)?;
            if !seg.replace(seq, raw) {
                return Err(StoreError::Corrupt(format!(
                    "{origin}: #{seq} left its segment"
                )));
            }
            *dirty = true;
            self.fills.push((origin.clone(), seq));
        }
        let o = self.origin(origin)?;
        if !o.keys.contains(&header.key_id) {
            o.keys.push(header.key_id);
            self.batch.insert(
                keys::signing_key(origin, &header.key_id),
                key.as_bytes().to_vec(),
            );
        }
        if let Some(payload) = payload {
            self.index.push(IndexUpdate {
                key: keys::index(&payload.indicator),
                header,
                payload,
            });
        }
        Ok(())
    }

    /// Adds the entry after the head to the origin's last segment, or starts a new one.
    fn append(&mut self, origin: &OrgId, seq: u64, raw: pb::SignedEntry) -> Result<(), StoreError> {
        let (db, cached_tails) = (self.db, self.cached_tails);
        let o = self.origin(origin)?;
        if let (None, Some(head)) = (o.tail, o.head) {
            let cached = cached_tails
                .tail(origin)
                .filter(|t| t.last_seq() == head.seq)
                .map(|t| {
                    if t.bytes() < REOPEN_BYTES {
                        Tail::Open(Segment::clone(&t))
                    } else {
                        Tail::Closed(t.first())
                    }
                });
            let tail = match cached {
                Some(tail) => tail,
                None => tail_segment(db, origin)?
                    .ok_or_else(|| StoreError::Corrupt(format!("{origin}: head without a log")))?,
            };
            match tail {
                Tail::Open(seg) => {
                    o.tail = Some(seg.first());
                    o.segments.entry(seg.first()).or_insert((seg, false));
                }
                // Not in `segments` (unless this call read it for another reason): the append
                // below starts a new segment. Not decoded, so where it ends is not checked
                // against the head here (the open checks every tail, `check_tails`).
                Tail::Closed(first) if first <= head.seq => o.tail = Some(first),
                Tail::Closed(first) => {
                    return Err(StoreError::Corrupt(format!(
                        "{origin}: the last log segment starts at #{first}, past the head #{}",
                        head.seq
                    )))
                }
            }
        }
        // A segment this call rewrites anyway (dirty) fills to the target; one an earlier
        // write left, only while small (`REOPEN_BYTES`).
        let open = o
            .tail
            .and_then(|first| o.segments.get(&first))
            .is_some_and(|(s, dirty)| !s.is_full() && (*dirty || s.bytes() < REOPEN_BYTES));
        if !open {
            o.segments.insert(seq, (Segment::new(seq), true));
            o.tail = Some(seq);
        }
        let (seg, dirty) = o
            .tail
            .and_then(|first| o.segments.get_mut(&first))
            .ok_or_else(|| StoreError::Corrupt("tail segment vanished".into()))?;
        if seg.last_seq() + 1 != seq {
            return Err(StoreError::Corrupt(format!(
                "{origin}: appending #{seq} after a segment ending at #{}",
                seg.last_seq()
            )));
        }
        seg.push(raw);
        *dirty = true;
        Ok(())
    }

    /// Keeps the proof that `entry` and `other` (stored, or held) are two entries of one origin
    /// at one seq.
    pub(crate) fn record_equivocation(&mut self, other: &pb::SignedEntry, entry: &VerifiedEntry) {
        self.forks
            .push(equivocation(other, entry, intelmesh_core::now_unix_ms()));
    }

    /// Adds the fork proofs of this call to the batch, at most [`MAX_FORK_PROOFS_PER_ORIGIN`]
    /// per origin, and flags their origins at the first seq found. Returns how many it added.
    fn write_forks(&mut self) -> Result<u64, StoreError> {
        let mut added_for: HashMap<OrgId, usize> = HashMap::new();
        // Proofs this call put in the batch: the same proof twice in one call (a frame
        // repeating it) is one proof, not two against the origin's cap and the count.
        let mut in_batch: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut added = 0;
        for proof in std::mem::take(&mut self.forks) {
            let (Ok(origin), Some(conflicting)) =
                (OrgId::parse(&proof.origin), proof.conflicting.as_ref())
            else {
                continue;
            };
            let key = keys::fork(&origin, proof.seq, &header_hash(&conflicting.header));
            if in_batch.contains(&key) || self.db.contains_key(&key)? {
                continue;
            }
            let have = match added_for.get(&origin) {
                Some(n) => *n,
                None => fork_proofs_of(self.db, &origin)?,
            };
            if have >= MAX_FORK_PROOFS_PER_ORIGIN {
                continue;
            }
            if have == 0 && !self.db.contains_key(keys::flag(&origin))? {
                self.batch
                    .insert(keys::flag(&origin), proof.seq.to_be_bytes().to_vec());
            }
            added_for.insert(origin, have + 1);
            self.batch.insert(key.clone(), proof.encode_to_vec());
            in_batch.insert(key);
            added += 1;
        }
        Ok(added)
    }

    /// The batch with the changed segments, final heads and fills (numbered after the
    /// store's `fills_made`), and the index updates.
    pub(crate) fn finish(mut self, fills_made: u64) -> Result<Finished, StoreError> {
        let forks = self.write_forks()?;
        let mut log_changed = false;
        let mut heads = Vec::new();
        let mut tails = Vec::new();
        for (origin, o) in &self.origins {
            let head = o.head.map(|h| h.seq);
            let last = o.segments.keys().next_back().copied();
            let mut tail = None;
            let mut others_written = false;
            for (first, (seg, dirty)) in &o.segments {
                if *dirty {
                    let encoded = seg.encode();
                    // The last segment holds the head: written, it is the tail as now stored,
                    // kept decoded into a buffer of its own (entries as placed share the
                    // buffers they arrived in, a whole gRPC frame each).
                    if Some(*first) == last && head == Some(seg.last_seq()) {
                        // Not decoded (it was just encoded): the tail is forgotten, not kept
                        // stale.
                        tail = Some(Segment::decode(*first, &encoded).ok());
                    } else {
                        others_written = true;
                    }
                    self.batch.insert(keys::log(origin, *first), encoded);
                    log_changed = true;
                }
            }
            // Any other segment written (a fill, or a batch's earlier segments) may be one the
            // cache holds: the origin's cached segments are forgotten, then the tail taken.
            if others_written {
                tails.push((origin.clone(), None));
            }
            if let Some(tail) = tail {
                tails.push((origin.clone(), tail));
            }
            if let (true, Some(head)) = (o.head_changed, o.head) {
                self.batch
                    .insert(keys::head(origin), head.to_proto().encode_to_vec());
                // The cached heads are keyed by the generation.
                log_changed = true;
                heads.push((origin.clone(), head));
            }
        }
        for (n, (origin, seq)) in (fills_made + 1..).zip(&self.fills) {
            self.batch
                .insert(keys::fill(n), keys::fill_record(origin, *seq));
        }
        Ok(Finished {
            log_changed,
            heads,
            tails,
            fills: self.fills.len() as u64,
            forks,
            batch: self.batch,
            index: self.index,
        })
    }

    /// Adds proofs checked elsewhere (received from peers) to this call's.
    pub(crate) fn add_forks(&mut self, proofs: impl IntoIterator<Item = pb::ForkProof>) {
        self.forks.extend(proofs);
    }
}

/// How many fork proofs of `origin` the store keeps (at most [`MAX_FORK_PROOFS_PER_ORIGIN`]).
pub(crate) fn fork_proofs_of(db: &crate::kv::Kv, origin: &OrgId) -> Result<usize, StoreError> {
    let mut n = 0;
    for kv in db.scan_prefix(keys::fork_prefix(origin)) {
        kv?;
        n += 1;
    }
    Ok(n)
}
