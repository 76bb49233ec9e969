//! Chain rules: where a verified entry fits in its origin's log, given what is stored.
//!
//! Pure decisions on plain values; the store supplies the head and the stored header at the
//! entry's seq, applies the decision and keeps the fork proofs.

use crate::entry::{Hash, Head, OrgId};

/// What is already stored at the entry's (origin, seq), if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredAt {
    pub hash: Hash,
    pub has_payload: bool,
}

/// Where an entry fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The next entry of the chain: append it.
    Append,
    /// Already stored, byte-identical header: nothing to do (idempotent).
    Duplicate,
    /// Already stored as a withheld stub, and this copy carries the payload: fill it in.
    FillPayload,
    /// Predecessors are missing: hold it until they arrive.
    Gap { head_seq: u64 },
    /// A different, validly signed header at a seq already stored: the origin forked.
    Equivocation { stored: Hash },
    /// The next seq, but its `prev_hash` names another predecessor than the one stored.
    ChainBreak { expected: Hash },
}

/// Decides where an entry with `seq`, `prev_hash` and header hash `hash` fits.
/// `stored` is what the store holds at `seq` (only looked at when `seq <= head.seq`).
pub fn admit(
    head: Option<Head>,
    stored: Option<StoredAt>,
    seq: u64,
    prev_hash: &Hash,
    hash: &Hash,
    has_payload: bool,
) -> Admission {
    let head_seq = head.map_or(0, |h| h.seq);
    if seq <= head_seq {
        return match stored {
            Some(s) if s.hash == *hash && !s.has_payload && has_payload => Admission::FillPayload,
            Some(s) if s.hash == *hash => Admission::Duplicate,
            Some(s) => Admission::Equivocation { stored: s.hash },
            // The store guarantees every seq up to the head is present; treat a hole as a
            // fork rather than silently accepting a replacement.
            None => Admission::Equivocation { stored: [0; 32] },
        };
    }
    if seq > head_seq + 1 {
        return Admission::Gap { head_seq };
    }
    let expected = head.map_or([0; 32], |h| h.hash);
    if *prev_hash != expected {
        return Admission::ChainBreak { expected };
    }
    Admission::Append
}

/// Why an entry that verified was still not taken into the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("{origin}#{seq}: equivocation: a different signed entry is stored at this seq; fork proof kept, origin flagged")]
    Equivocation { origin: OrgId, seq: u64 },
    #[error("{origin}#{seq}: chain break: prev_hash does not match the stored entry {prev_seq}", prev_seq = seq - 1)]
    ChainBreak { origin: OrgId, seq: u64 },
    #[error("{origin}#{seq}: gap after #{head_seq} and the hold queue has no room for this origin (at most {limit} entries, and a quarter of the queue's bytes)")]
    HoldQueueFull {
        origin: OrgId,
        seq: u64,
        head_seq: u64,
        limit: usize,
    },
}

impl ChainError {
    pub fn kind(&self) -> &'static str {
        match self {
            ChainError::Equivocation { .. } => "equivocation",
            ChainError::ChainBreak { .. } => "chain_break",
            ChainError::HoldQueueFull { .. } => "hold_queue_full",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: Hash = [1; 32];
    const H2: Hash = [2; 32];
    const ZERO: Hash = [0; 32];

    fn head(seq: u64, hash: Hash) -> Option<Head> {
        Some(Head { seq, hash })
    }

    #[test]
    fn first_entry_appends_on_empty_log() {
        assert_eq!(admit(None, None, 1, &ZERO, &H1, true), Admission::Append);
    }

    #[test]
    fn next_entry_must_name_the_head() {
        assert_eq!(
            admit(head(1, H1), None, 2, &H1, &H2, true),
            Admission::Append
        );
        assert_eq!(
            admit(head(1, H1), None, 2, &H2, &H2, true),
            Admission::ChainBreak { expected: H1 }
        );
    }

    #[test]
    fn future_seq_is_a_gap() {
        assert_eq!(
            admit(None, None, 3, &H1, &H2, true),
            Admission::Gap { head_seq: 0 }
        );
        assert_eq!(
            admit(head(1, H1), None, 3, &H1, &H2, true),
            Admission::Gap { head_seq: 1 }
        );
    }

    #[test]
    fn stored_seq_is_duplicate_fill_or_fork() {
        let full = Some(StoredAt {
            hash: H1,
            has_payload: true,
        });
        let stub = Some(StoredAt {
            hash: H1,
            has_payload: false,
        });
        assert_eq!(
            admit(head(2, H2), full, 1, &ZERO, &H1, true),
            Admission::Duplicate
        );
        assert_eq!(
            admit(head(2, H2), full, 1, &ZERO, &H1, false),
            Admission::Duplicate
        );
        assert_eq!(
            admit(head(2, H2), stub, 1, &ZERO, &H1, false),
            Admission::Duplicate
        );
        assert_eq!(
            admit(head(2, H2), stub, 1, &ZERO, &H1, true),
            Admission::FillPayload
        );
        assert_eq!(
            admit(head(2, H2), full, 1, &ZERO, &H2, true),
            Admission::Equivocation { stored: H1 }
        );
    }
}
