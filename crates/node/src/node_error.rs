//! Why a node could not do what it was asked: `NodeError`, each variant saying what to do.

use intelmesh_core::{OrgId, VerifyError};
use intelmesh_store::{Outcome, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a worker task failed: {0}")]
    Join(String),
    #[error("own entry {seq} was not appended: {outcome:?}")]
    OwnEntry { seq: u64, outcome: Outcome },
    #[error("own entry does not verify: {0}")]
    OwnVerify(VerifyError),
    #[error("idempotency key reused for a different request: use a new key for each request")]
    KeyReused,
    #[error("this node's signing key {key_id} is not in its key list for {org}: add its public key to the key list (or use the key the list holds) before publishing")]
    OwnKeyNotListed {
        org: OrgId,
        key_id: intelmesh_core::KeyId,
    },
    #[error("{org} is not admitted by roster v{version} yet: its signing key {key_id} is not in the roster (it publishes once a roster version enrols that key)")]
    NotAdmitted {
        org: OrgId,
        key_id: intelmesh_core::KeyId,
        version: u64,
    },
    /// Roster mode: the roster ended this node's signing key before the next seq (the member
    /// was suspended or removed, or the key reported compromised, or rotated away).
    #[error("{org}'s signing key {key_id} may sign no seq after {last_seq} in roster v{version} (ended by {ended_by}), so seq {next} cannot be signed: publishing resumes once a roster version reopens the key (reinstatement) or lists a new one")]
    OwnKeyEnded {
        org: OrgId,
        key_id: intelmesh_core::KeyId,
        last_seq: u64,
        next: u64,
        version: u64,
        /// `suspension`, `removal`, `compromise report`, `rotation`, or `the roster`.
        ended_by: &'static str,
    },
    /// The store holds less of the own log than the node signed (see `own_mark`).
    #[error("this node's store holds the log it signs for {origin} up to seq {held}, but the node signed up to seq {signed} (the mark {mark}): it signs nothing there until its peers have sent those entries back, since a new entry at a seq they hold would have every member hold that log for a fork; only if no peer ever received those entries, remove {mark}, and it signs on from seq {next}")]
    OwnLogBehind {
        origin: OrgId,
        held: u64,
        signed: u64,
        next: u64,
        mark: String,
    },
    #[error("a roster version ended signing keys and the cut of what they signed past their end is not made yet: publishing resumes once it is; retry")]
    CutDue,
    #[error("this node runs in static mode (no [roster] in its config): it follows no roster")]
    NotFollowing,
    #[error("{org} cannot sign roster log entries: its signing key is not the key of a hub member in roster v{version}")]
    NotAuthoritySigner { org: OrgId, version: u64 },
    /// Roster mode: another hub signs the roster log ([`intelmesh_roster::Roster::roster_publisher`]).
    #[error("{org} does not publish the roster log: {publisher} does in roster v{version} (the first active hub the roster lists): make and sign proposals on {publisher}")]
    NotRosterPublisher {
        org: OrgId,
        publisher: String,
        version: u64,
    },
    #[error("roster version refused: {0}")]
    RosterRefused(intelmesh_roster::RosterError),
    #[error("roster: {0}")]
    Follow(String),
    #[error("key rotation: {0}")]
    Rotation(#[from] crate::rotation::RotationError),
    #[error("encryption key: {0}")]
    EncryptionKey(String),
    /// A restricted entry could not be sealed to its readers (one has no encryption key, or
    /// the payload is too large to seal).
    #[error("cannot seal the restricted entry: {0}")]
    Seal(#[from] intelmesh_core::sealed::SealError),
    /// A caller's check of its items failed when made again under the publish lock
    /// ([`crate::own_entries::Rejudge`]).
    #[error("{0}")]
    Rejudged(String),
    #[error("own sealed entry does not open: {0}")]
    OwnOpen(intelmesh_core::opened::OpenFailure),
}
