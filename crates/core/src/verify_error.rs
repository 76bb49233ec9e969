//! Why an entry was refused: `VerifyError` and the defects it names, each with the origin and
//! seq where they could be read.

use crate::entry::{KeyId, OrgId};
use crate::indicator::NormalizeError;
use crate::payload::{MAX_NONCE_LEN, MIN_NONCE_LEN, PAD_BUCKETS};
pub use crate::signature::SignatureDefect;

/// Why an entry was refused. Each names the origin and seq where they could be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("header of {len} bytes is over the {max}-byte cap")]
    HeaderTooLarge { len: usize, max: usize },
    #[error("header bytes do not decode: {reason}")]
    MalformedHeader { reason: String },
    #[error("{origin}#{seq}: invalid header: {defect}")]
    InvalidHeader {
        origin: String,
        seq: u64,
        defect: HeaderDefect,
    },
    #[error("{origin}#{seq}: payload of {len} bytes is over the {max}-byte cap")]
    PayloadTooLarge {
        origin: OrgId,
        seq: u64,
        len: usize,
        max: usize,
    },
    #[error("{origin}#{seq}: payload is {actual} bytes, header says {declared}")]
    PayloadLengthMismatch {
        origin: OrgId,
        seq: u64,
        declared: u64,
        actual: u64,
    },
    #[error("{origin}#{seq}: payload does not match the header's commitment")]
    PayloadCommitmentMismatch { origin: OrgId, seq: u64 },
    #[error("{origin}#{seq}: invalid payload: {defect}")]
    InvalidPayload {
        origin: OrgId,
        seq: u64,
        defect: PayloadDefect,
    },
    #[error("{origin}#{seq}: issued at {issued_at_unix_ms} ms, more than {max_skew_ms} ms after now ({now_unix_ms} ms)")]
    FromFuture {
        origin: OrgId,
        seq: u64,
        issued_at_unix_ms: i64,
        now_unix_ms: i64,
        max_skew_ms: i64,
    },
    #[error("{origin}#{seq}: unknown signing key {key_id} for this origin")]
    UnknownKey {
        origin: OrgId,
        seq: u64,
        key_id: KeyId,
    },
    #[error("{origin}#{seq}: signing key {key_id} may sign only seqs {first_seq}..{}; refused (ended by a rotation, a compromise report or a suspension)", last_seq.map_or_else(|| "".to_string(), |l| l.to_string()))]
    KeyNotValidAtSeq {
        origin: OrgId,
        seq: u64,
        key_id: KeyId,
        first_seq: u64,
        last_seq: Option<u64>,
    },
    /// An authority-log entry whose roster version does not follow the version before it by
    /// the roster's rules, or that comes past a version not followed yet. Its signature holds:
    /// the origin's key signed it, and a relay may have passed it on in good faith.
    #[error("{origin}#{seq}: roster version not taken: {reason}")]
    RosterVersionRefused {
        origin: OrgId,
        seq: u64,
        reason: String,
    },
    /// An authority-log entry past the next version this node can judge: sent before its
    /// predecessor (a relay's order, or a hostile one's); it is sent again after it.
    #[error("{origin}#{seq}: roster version arrived before version {next}, which precedes it")]
    RosterVersionAhead { origin: OrgId, seq: u64, next: u64 },
    #[error("{origin}#{seq}: signature does not verify")]
    BadSignature { origin: OrgId, seq: u64 },
    #[error("{origin}#{seq}: signature refused: {defect}")]
    MalformedSignature {
        origin: OrgId,
        seq: u64,
        defect: SignatureDefect,
    },
    #[error("{origin}#{seq}: batch path refused: {defect}")]
    MalformedBatchPath {
        origin: OrgId,
        seq: u64,
        defect: crate::batch_tree::PathDefect,
    },
}

impl VerifyError {
    /// A short stable name, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::HeaderTooLarge { .. } => "header_too_large",
            VerifyError::MalformedHeader { .. } => "malformed_header",
            VerifyError::InvalidHeader { .. } => "invalid_header",
            VerifyError::PayloadTooLarge { .. } => "payload_too_large",
            VerifyError::PayloadLengthMismatch { .. } => "payload_length_mismatch",
            VerifyError::PayloadCommitmentMismatch { .. } => "payload_commitment_mismatch",
            VerifyError::InvalidPayload { .. } => "invalid_payload",
            VerifyError::FromFuture { .. } => "from_future",
            VerifyError::UnknownKey { .. } => "unknown_key",
            VerifyError::KeyNotValidAtSeq { .. } => "key_not_valid_at_seq",
            VerifyError::RosterVersionRefused { .. } => "roster_version_refused",
            VerifyError::RosterVersionAhead { .. } => "roster_version_ahead",
            VerifyError::BadSignature { .. } => "bad_signature",
            VerifyError::MalformedSignature { .. } => "malformed_signature",
            VerifyError::MalformedBatchPath { .. } => "malformed_batch_path",
        }
    }

    /// Whether the entry could not be checked at all, rather than proved bad: its key is not
    /// (yet) in this node's key list. Such an entry may be fine (a member added, or a key
    /// rotated, somewhere first); a node holds it and checks it again when its keys change.
    pub fn is_unverifiable_yet(&self) -> bool {
        matches!(self, VerifyError::UnknownKey { .. })
    }

    /// Whether the refusal follows from what the origin's key may sign, not from what the
    /// relay did: a key ended by the roster (rotation, compromise, suspension). A relay whose
    /// roster is older may forward such an entry in good faith, so it must not cost the link.
    pub fn is_origin_fault(&self) -> bool {
        matches!(
            self,
            VerifyError::KeyNotValidAtSeq { .. }
                | VerifyError::RosterVersionRefused { .. }
                | VerifyError::RosterVersionAhead { .. }
        )
    }

    /// Whether the entry is dated past this node's clock and skew: a relay whose clock runs
    /// ahead may have taken it in good faith, and it verifies once its time comes.
    pub fn is_from_future(&self) -> bool {
        matches!(self, VerifyError::FromFuture { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderDefect {
    #[error("{0}")]
    Origin(crate::entry::InvalidOrgId),
    #[error("seq must start at 1")]
    ZeroSeq,
    #[error("prev_hash must be 32 bytes, got {0}")]
    PrevHashLength(usize),
    #[error("seq 1 must have an all-zero prev_hash")]
    FirstEntryHasPrev,
    #[error("payload_commitment must be 32 bytes, got {0}")]
    PayloadCommitmentLength(usize),
    #[error("key_id must be 8 bytes, got {0}")]
    KeyIdLength(usize),
    #[error("payload_len {0} is over the cap")]
    PayloadLenOverCap(u64),
    #[error("payload_len {0} of a restricted (AMBER+STRICT or RED) entry is not a padding bucket ({buckets:?})", buckets = PAD_BUCKETS)]
    UnpaddedRestricted(u64),
    #[error("missing or unknown TLP level")]
    Tlp,
    #[error("invalid recipient: {0}")]
    Recipient(crate::entry::InvalidOrgId),
    #[error("{0} recipients named; at most {max}", max = crate::entry::MAX_RECIPIENTS)]
    TooManyRecipients(usize),
    #[error("signature must be 64 bytes, or 64 and a batch path of at most {max} bytes; got {0}", max = crate::batch_tree::MAX_PATH_BYTES)]
    SignatureLength(usize),
    #[error("only AMBER+STRICT and RED payloads are sealed")]
    SealedUnrestricted,
    #[error("issued_at {0} is before 1970")]
    IssuedBeforeEpoch(i64),
    #[error("only AMBER+STRICT and RED entries name recipients; the others go to all")]
    RecipientsUnrestricted,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadDefect {
    #[error("does not decode: {0}")]
    Undecodable(String),
    #[error("no body (upsert, revoke or sighting)")]
    MissingBody,
    #[error("no indicator")]
    MissingIndicator,
    #[error("unknown indicator type {0}")]
    UnknownType(i32),
    #[error("{0}")]
    InvalidValue(NormalizeError),
    #[error("value {value:?} is not canonical; sign {canonical:?} instead")]
    NotCanonical { value: String, canonical: String },
    #[error("confidence {0} is over 100")]
    Confidence(u32),
    #[error("sighting count must be at least 1")]
    ZeroCount,
    #[error("nonce of {0} bytes; it must be {MIN_NONCE_LEN} to {MAX_NONCE_LEN} random bytes")]
    Nonce(usize),
    #[error("a roster version may only be in the federation authority's log")]
    RosterOutsideAuthorityLog,
    #[error("the federation authority's log carries roster versions only")]
    AuthorityLogNotRoster,
    #[error("sealed envelope: {0}")]
    Envelope(crate::sealed::EnvelopeDefect),
    #[error("a sealed payload opened to {0} bytes, not a padding bucket")]
    SealedUnpadded(usize),
    #[error("a sealed payload carries an indicator, not a control entry")]
    SealedControl,
    #[error("control entries (roster versions, checkpoints) must be TLP:CLEAR")]
    RestrictedControl,
}
