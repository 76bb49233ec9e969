//! Log entries: org ids, TLP, the decoded header, hashing and the exact bytes that get signed.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use intelmesh_proto::v1 as pb;
use sha2::{Digest, Sha256};

/// Largest encoded header accepted; anything bigger is refused before decoding.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;
/// Largest payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Prefix of every signed message, so an intelmesh signature can never be replayed as a
/// signature over anything else made with the same key.
pub const SIGNING_CONTEXT: &[u8] = b"intelmesh/v1 entry-header\0";

/// SHA-256 digest.
pub type Hash = [u8; 32];
/// The `prev_hash` of seq 1.
pub const ZERO_HASH: Hash = [0; 32];

pub fn sha256(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

/// The hash that the next entry's `prev_hash` names: SHA-256 of the header bytes as signed.
pub fn header_hash(header_bytes: &[u8]) -> Hash {
    sha256(header_bytes)
}

/// The exact message an origin signs: the context prefix, then the header bytes.
pub fn signed_message(header_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + header_bytes.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(header_bytes);
    msg
}

/// A stable organisation id such as `SG-IGCI`: 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(String);

impl OrgId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<OrgId, InvalidOrgId> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !raw.chars().all(ok_char) {
            return Err(InvalidOrgId(raw.chars().take(80).collect()));
        }
        Ok(OrgId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid org id {0:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
pub struct InvalidOrgId(pub String);

/// Identifies a signing key: the first 8 bytes of SHA-256 of the ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = sha256(key.as_bytes());
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// TLP 2.0, ordered from least to most restrictive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tlp {
    Clear,
    Green,
    Amber,
    AmberStrict,
    Red,
}

impl Tlp {
    pub fn from_proto(v: i32) -> Option<Tlp> {
        match pb::Tlp::try_from(v).ok()? {
            pb::Tlp::Unspecified => None,
            pb::Tlp::Clear => Some(Tlp::Clear),
            pb::Tlp::Green => Some(Tlp::Green),
            pb::Tlp::Amber => Some(Tlp::Amber),
            pb::Tlp::AmberStrict => Some(Tlp::AmberStrict),
            pb::Tlp::Red => Some(Tlp::Red),
        }
    }

    pub fn to_proto(self) -> pb::Tlp {
        match self {
            Tlp::Clear => pb::Tlp::Clear,
            Tlp::Green => pb::Tlp::Green,
            Tlp::Amber => pb::Tlp::Amber,
            Tlp::AmberStrict => pb::Tlp::AmberStrict,
            Tlp::Red => pb::Tlp::Red,
        }
    }

    /// Whether the payload goes only to the origin's listed recipients.
    pub fn is_restricted(self) -> bool {
        matches!(self, Tlp::AmberStrict | Tlp::Red)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tlp::Clear => "CLEAR",
            Tlp::Green => "GREEN",
            Tlp::Amber => "AMBER",
            Tlp::AmberStrict => "AMBER+STRICT",
            Tlp::Red => "RED",
        }
    }

    pub fn parse(raw: &str) -> Option<Tlp> {
        let norm = raw.trim().to_ascii_uppercase();
        let norm = norm.strip_prefix("TLP:").unwrap_or(&norm);
        match norm {
            "CLEAR" | "WHITE" => Some(Tlp::Clear),
            "GREEN" => Some(Tlp::Green),
            "AMBER" => Some(Tlp::Amber),
            "AMBER+STRICT" | "AMBER_STRICT" | "AMBER-STRICT" => Some(Tlp::AmberStrict),
            "RED" => Some(Tlp::Red),
            _ => None,
        }
    }
}

impl fmt::Display for Tlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may read an entry's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    pub tlp: Tlp,
    /// Orgs besides the origin that may read an AMBER+STRICT or RED payload.
    pub recipients: Vec<OrgId>,
}

impl Distribution {
    pub fn to_proto(&self) -> pb::Distribution {
        pb::Distribution {
            tlp: self.tlp.to_proto() as i32,
            recipients: self.recipients.iter().map(|r| r.0.clone()).collect(),
        }
    }

    /// Whether `reader` may see the payload of an entry that `origin` published.
    pub fn allows(&self, origin: &OrgId, reader: &OrgId) -> bool {
        !self.tlp.is_restricted() || reader == origin || self.recipients.contains(reader)
    }
}

/// A header decoded from its signed bytes and checked for well-formedness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub origin: OrgId,
    pub seq: u64,
    pub prev_hash: Hash,
    pub payload_sha256: Hash,
    pub payload_len: u64,
    pub issued_at_unix_ms: i64,
    pub key_id: KeyId,
    pub distribution: Distribution,
}

impl Header {
    pub fn to_proto(&self) -> pb::EntryHeader {
        pb::EntryHeader {
            origin: self.origin.0.clone(),
            seq: self.seq,
            prev_hash: self.prev_hash.to_vec(),
            payload_sha256: self.payload_sha256.to_vec(),
            payload_len: self.payload_len,
            issued_at_unix_ms: self.issued_at_unix_ms,
            key_id: self.key_id.0.to_vec(),
            distribution: Some(self.distribution.to_proto()),
        }
    }
}

/// The position of an origin's newest entry: what the next entry chains onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    pub fn to_proto(self) -> pb::Head {
        pb::Head {
            seq: self.seq,
            hash: self.hash.to_vec(),
        }
    }

    pub fn from_proto(head: &pb::Head) -> Option<Head> {
        Some(Head {
            seq: head.seq,
            hash: head.hash.as_slice().try_into().ok()?,
        })
    }
}

/// The (seq, prev_hash) an origin's next entry must carry.
pub fn next_link(head: Option<Head>) -> (u64, Hash) {
    match head {
        Some(h) => (h.seq + 1, h.hash),
        None => (1, ZERO_HASH),
    }
}

/// The same entry without its payload: what a peer that may not read it receives.
pub fn withheld_stub(entry: &pb::SignedEntry) -> pb::SignedEntry {
    pb::SignedEntry {
        header: entry.header.clone(),
        signature: entry.signature.clone(),
        payload: None,
    }
}
