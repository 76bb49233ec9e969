//! Evidence that an origin forked: two entries it validly signed that cannot both belong to one
//! history. Anyone holding the origin's keys can check a proof alone, so proofs travel the
//! federation and every member flags the origin, wherever the fork was first seen.
//!
//! Two kinds: an equivocation (two different headers at one seq), and a chain break (an entry
//! whose `prev_hash` is not the hash of the entry at the seq before it: the origin signed a
//! successor of some other entry at that seq). Proofs hold stubs only, so they reveal no
//! payload to anyone.

use intelmesh_proto::v1 as pb;

use crate::entry::{header_hash, withheld_stub, Hash, OrgId};
use crate::verify::{verify_entry, KeyRegistry, VerifiedEntry, VerifyConfig, VerifyError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkKind {
    /// Two different headers at the same seq.
    Equivocation,
    /// An entry that does not link to the origin's entry at the seq before it.
    ChainBreak,
}

impl ForkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ForkKind::Equivocation => "equivocation",
            ForkKind::ChainBreak => "chain break",
        }
    }
}

/// A checked fork proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    pub origin: OrgId,
    /// The seq of the conflicting entry.
    pub seq: u64,
    pub kind: ForkKind,
    /// Header hash of the conflicting entry: with origin and seq, what identifies the proof.
    pub conflicting: Hash,
}

/// Why a fork proof was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("fork proof names an invalid origin: {0}")]
    Origin(String),
    #[error("fork proof of {origin}#{seq} lacks its {side} entry")]
    Missing {
        origin: String,
        seq: u64,
        side: &'static str,
    },
    #[error("fork proof of {origin}#{seq}: {side} entry: {error}")]
    Entry {
        origin: OrgId,
        seq: u64,
        side: &'static str,
        error: Box<VerifyError>,
    },
    #[error("fork proof of {origin}#{seq}: its entries are not {origin}'s entries at the seqs it claims")]
    Mismatch { origin: OrgId, seq: u64 },
    #[error("fork proof of {origin}#{seq}: the two entries do not conflict")]
    NoConflict { origin: OrgId, seq: u64 },
}

impl EvidenceError {
    /// Whether the proof could not be checked because a key is not (yet) known here.
    pub fn is_unverifiable_yet(&self) -> bool {
        matches!(self, EvidenceError::Entry { error, .. } if error.is_unverifiable_yet())
    }

    /// Whether an entry of the proof lies past the end the roster gave its key (rotation,
    /// compromise, suspension): refused everywhere, so the proof is moot, and a relay that
    /// kept it from before the cut passes it on in good faith (it must not cost the link).
    pub fn is_past_key_end(&self) -> bool {
        matches!(self, EvidenceError::Entry { error, .. } if error.is_origin_fault())
    }
}

/// The proof that `stored` and `received`, both of one origin at one seq, are different entries.
pub fn equivocation(
    stored: &pb::SignedEntry,
    received: &VerifiedEntry,
    detected_at_unix_ms: i64,
) -> pb::ForkProof {
    proof(stored, received, detected_at_unix_ms)
}

/// The proof that `received` (seq n + 1) does not link to `predecessor`, the origin's stored
/// entry at seq n.
pub fn chain_break(
    predecessor: &pb::SignedEntry,
    received: &VerifiedEntry,
    detected_at_unix_ms: i64,
) -> pb::ForkProof {
    proof(predecessor, received, detected_at_unix_ms)
}

fn proof(kept: &pb::SignedEntry, received: &VerifiedEntry, at: i64) -> pb::ForkProof {
    let h = received.header();
    pb::ForkProof {
        origin: h.origin.to_string(),
        seq: h.seq,
        kept: Some(withheld_stub(kept)),
        conflicting: Some(withheld_stub(received.raw())),
        detected_at_unix_ms: at,
    }
}

/// A fork proof that [`check`] accepted, as stubs only: what a store may keep and pass on.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedProof {
    fork: Fork,
    proof: pb::ForkProof,
}

impl CheckedProof {
    pub fn fork(&self) -> &Fork {
        &self.fork
    }
    pub fn proof(&self) -> &pb::ForkProof {
        &self.proof
    }
    pub fn into_proof(self) -> pb::ForkProof {
        self.proof
    }
}

/// Checks a proof received from anywhere: both entries verify under `keys` (as stubs; the
/// payloads are irrelevant and dropped), they are the named origin's, at the named seq and
/// the one before or the same, and they conflict.
pub fn check(proof: pb::ForkProof, keys: &dyn KeyRegistry) -> Result<CheckedProof, EvidenceError> {
    let fork = check_fork(&proof, keys)?;
    let proof = pb::ForkProof {
        kept: proof.kept.as_ref().map(withheld_stub),
        conflicting: proof.conflicting.as_ref().map(withheld_stub),
        ..proof
    };
    Ok(CheckedProof { fork, proof })
}

fn check_fork(proof: &pb::ForkProof, keys: &dyn KeyRegistry) -> Result<Fork, EvidenceError> {
    let origin = OrgId::parse(&proof.origin).map_err(|e| EvidenceError::Origin(e.to_string()))?;
    let seq = proof.seq;
    let side = |entry: &Option<pb::SignedEntry>, name: &'static str| {
        let entry = entry.as_ref().ok_or_else(|| EvidenceError::Missing {
            origin: origin.to_string(),
            seq,
            side: name,
        })?;
        // Entries were accepted in the past somewhere; their issue time is not judged here.
        verify_entry(withheld_stub(entry), keys, &VerifyConfig::at(i64::MAX)).map_err(|error| {
            EvidenceError::Entry {
                origin: origin.clone(),
                seq,
                side: name,
                error: Box::new(error),
            }
        })
    };
    let kept = side(&proof.kept, "kept")?;
    let conflicting = side(&proof.conflicting, "conflicting")?;
    let (k, c) = (kept.header(), conflicting.header());
    if k.origin != origin || c.origin != origin || c.seq != seq {
        return Err(EvidenceError::Mismatch { origin, seq });
    }
    let kind = if k.seq == c.seq && kept.hash() != conflicting.hash() {
        ForkKind::Equivocation
    } else if k.seq.checked_add(1) == Some(c.seq) && c.prev_hash != header_hash(&kept.raw().header)
    {
        ForkKind::ChainBreak
    } else {
        return Err(EvidenceError::NoConflict { origin, seq });
    };
    Ok(Fork {
        origin,
        seq,
        kind,
        conflicting: *conflicting.hash(),
    })
}
