//! Why a roster version was refused, and why a peer is not admitted.

use intelmesh_core::{Hash, OrgId};

use crate::document::DocumentDefect;

/// Which authority a signature count is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityKeys {
    /// The keys of the version being followed (for a genesis: its own).
    Current,
    /// The keys a version installs when it changes the authority.
    New,
}

impl std::fmt::Display for AuthorityKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthorityKeys::Current => "current",
            AuthorityKeys::New => "new",
        })
    }
}

/// Why a roster version cannot be followed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    #[error("malformed roster document: {0}")]
    Malformed(#[from] DocumentDefect),
    #[error("roster hash {} is not the pinned genesis {}: this is another federation's roster, or the pin is wrong", hex::encode(.found), hex::encode(.pinned))]
    PinMismatch { pinned: Hash, found: Hash },
    #[error("a genesis must be version 1, this is version {version}")]
    NotGenesis { version: u64 },
    #[error("a genesis must have a prev_hash of 32 zero bytes")]
    GenesisPrevHash,
    #[error("roster of federation {offered:?}, but this node follows {ours}")]
    FederationMismatch { ours: OrgId, offered: String },
    #[error("rollback: version {offered} is older than the current version {current}")]
    Rollback { current: u64, offered: u64 },
    #[error("replay: version {version} is the current version ({})", if *.identical { "the same document" } else { "a DIFFERENT document: the authority signed two versions with one number" })]
    Replay { version: u64, identical: bool },
    #[error("skipped: version {offered} after {current}; version {} comes first", .current + 1)]
    Skipped { current: u64, offered: u64 },
    #[error("version {version} links to {}, but version {} has hash {}", hex::encode(.found), .version - 1, hex::encode(.expected))]
    PrevHash {
        version: u64,
        expected: Hash,
        found: Hash,
    },
    #[error("version {version} is under-signed: {have} valid signatures of {keys} authority keys, {need} needed")]
    UnderSigned {
        version: u64,
        keys: AuthorityKeys,
        have: u32,
        need: u32,
    },
}

/// Why a roster refuses a peer's connection (at the handshake, or when the roster changes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{org} is not a member of roster version {version}")]
    NotMember { org: OrgId, version: u64 },
    #[error("{org} is suspended in roster version {version}")]
    Suspended { org: OrgId, version: u64 },
    #[error("{org} was removed in or before roster version {version}")]
    Removed { org: OrgId, version: u64 },
    #[error("{org}'s signing key is reported compromised in roster version {version} and it holds no other: the report is made again with a replacement key (`intelmesh node replacement-key`)")]
    Compromised { org: OrgId, version: u64 },
    #[error("{org}'s certificate was issued before its key was reported compromised (roster version {version}): ask for a new certificate")]
    CertificateBeforeCompromise { org: OrgId, version: u64 },
    #[error("certificate {serial} of {org} is revoked in roster version {version}")]
    CertificateRevoked {
        org: OrgId,
        serial: String,
        version: u64,
    },
}
