//! Log entries: org ids, TLP, the decoded header, hashing and the exact bytes that get signed.

use std::fmt;

use ed25519_dalek::VerifyingKey;
use intelmesh_proto::v1 as pb;
use sha2::{Digest, Sha256};

/// Largest encoded header accepted; anything bigger is refused before decoding.
pub const MAX_HEADER_BYTES: usize = 4 * 1024;
/// Largest payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most tags a node puts in an upsert it signs (`Submit` refuses more, importers keep the
/// first ones), and most tags of one assertion any node indexes (a key per tag, holding the
/// indicator's index key): a received entry with more is still valid (an older signer's), its
/// tags past these are kept in its state but not indexed.
pub const MAX_TAGS: usize = 64;
/// Longest tag a node signs, in bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// Most recipients an AMBER+STRICT or RED entry names beside its origin. Each reader costs
/// every node that indexes the entry keys of its own (what that reader may select), so a
/// received header naming more is refused, as `Submit` refuses to sign it: a 4 KiB header
/// would otherwise name a thousand made-up orgs.
pub const MAX_RECIPIENTS: usize = 64;
/// Prefix of every signed message, so an intelmesh signature can never be replayed as a
/// signature over anything else made with the same key.
pub const SIGNING_CONTEXT: &[u8] = b"intelmesh/v1 entry-header\0";
/// Prefix of every payload commitment, so it is never the plain hash of the payload bytes.
pub const COMMITMENT_CONTEXT: &[u8] = b"intelmesh/v1 payload-commitment\0";

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

/// The header's commitment to `payload` (the payload bytes as sent, nonce included). It hides the
/// payload from whoever lacks those bytes because the payload carries a fresh random nonce.
pub fn payload_commitment(payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(COMMITMENT_CONTEXT);
    h.update(payload);
    h.finalize().into()
}

/// The exact message an origin signs: the context prefix, then the header bytes.
pub fn signed_message(header_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + header_bytes.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.extend_from_slice(header_bytes);
    msg
}

/// A stable organisation id such as `SG-IGCI`.
///
/// One strict form: 1 to 63 characters of `A-Z`, `0-9` and `-`, starting and ending with a
/// letter or digit. So an org id is also a DNS label once lowercased, and no two org ids map to
/// the same name anywhere (certificates, DNS names, file names, store keys); a looser form let
/// `AU-AFP`, `au-afp` and `AU_AFP` share one certificate name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(String);

impl OrgId {
    pub const MAX_LEN: usize = 63;

    pub fn parse(raw: &str) -> Result<OrgId, InvalidOrgId> {
        if !Self::is_valid(raw) {
            return Err(InvalidOrgId(raw.chars().take(80).collect()));
        }
        Ok(OrgId(raw.to_string()))
    }

    /// Whether [`OrgId::parse`] accepts `raw`, without making an id of it.
    pub fn is_valid(raw: &str) -> bool {
        let ok_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-';
        let bytes = raw.as_bytes();
        !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.chars().all(ok_char)
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
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

// Derived order and equality are the inner string's, so maps keyed by org id can be searched
// with a name as received, without parsing or allocating one first.
impl std::borrow::Borrow<str> for OrgId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for OrgId {
    type Err = InvalidOrgId;

    fn from_str(s: &str) -> Result<OrgId, InvalidOrgId> {
        OrgId::parse(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid org id {0:?}: use 1 to 63 characters of A-Z, 0-9 and '-', starting and ending with a letter or digit{hint}", hint = InvalidOrgId::hint(.0))]
pub struct InvalidOrgId(pub String);

impl InvalidOrgId {
    /// The id it was probably meant to be, when upper case and '-' for '_' make it valid.
    pub fn suggestion(&self) -> Option<OrgId> {
        OrgId::parse(&self.0.trim().to_ascii_uppercase().replace('_', "-")).ok()
    }

    fn hint(raw: &str) -> String {
        InvalidOrgId(raw.to_string())
            .suggestion()
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default()
    }
}

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
    /// Every level, least restrictive first.
    pub const ALL: [Tlp; 5] = [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];

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

    /// Whether a relay may carry the payload of `origin`'s entry: an open level, or a
    /// restricted one with a recipient other than the origin to reach. A RED entry for nobody
    /// but its origin (named or not) never leaves it in full.
    pub fn relayed(&self, origin: &OrgId) -> bool {
        !self.tlp.is_restricted() || self.recipients.iter().any(|r| r != origin)
    }

    /// Whether `reader` may see the payload of an entry that `origin` published.
    pub fn allows(&self, origin: &OrgId, reader: &OrgId) -> bool {
        allows_names(
            self.tlp,
            self.recipients.iter().map(OrgId::as_str),
            origin.as_str(),
            reader,
        )
    }
}

/// [`Distribution::allows`] on names as stored, already checked to be org ids, for reads that
/// make no [`Distribution`] of every record they look at: the one rule of who reads what.
pub fn allows_names<'a>(
    tlp: Tlp,
    mut recipients: impl Iterator<Item = &'a str>,
    origin: &str,
    reader: &OrgId,
) -> bool {
    !tlp.is_restricted() || reader.as_str() == origin || recipients.any(|r| r == reader.as_str())
}

/// A header decoded from its signed bytes and checked for well-formedness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub origin: OrgId,
    pub seq: u64,
    pub prev_hash: Hash,
    /// [`payload_commitment`] of the payload bytes.
    pub payload_commitment: Hash,
    pub payload_len: u64,
    pub issued_at_unix_ms: i64,
    pub key_id: KeyId,
    pub distribution: Distribution,
    /// The payload is an envelope sealed to the origin and the recipients
    /// ([`crate::sealed`]); the commitment and length are the envelope's.
    pub sealed: bool,
}

impl Header {
    pub fn to_proto(&self) -> pb::EntryHeader {
        pb::EntryHeader {
            origin: self.origin.0.clone(),
            seq: self.seq,
            prev_hash: self.prev_hash.to_vec(),
            payload_commitment: self.payload_commitment.to_vec(),
            payload_len: self.payload_len,
            issued_at_unix_ms: self.issued_at_unix_ms,
            key_id: self.key_id.0.to_vec(),
            distribution: Some(self.distribution.to_proto()),
            sealed: self.sealed,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_have_one_strict_form() {
        for good in [
            "SG-IGCI",
            "AU-AFP",
            "A",
            "X1",
            "INTERPOL-7",
            &"A".repeat(63),
        ] {
            assert_eq!(
                OrgId::parse(good).map(|o| o.to_string()),
                Ok(good.to_string())
            );
        }
        for bad in [
            "",
            "au-afp",
            "AU_AFP",
            "AU.AFP",
            "-AU",
            "AU-",
            "AU AFP",
            "ÄU",
            &"A".repeat(64),
        ] {
            assert!(OrgId::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn a_refused_org_id_suggests_its_strict_form() {
        let err = OrgId::parse("au_afp").unwrap_err();
        assert_eq!(err.suggestion(), OrgId::parse("AU-AFP").ok());
        assert!(err.to_string().ends_with("(did you mean AU-AFP?)"), "{err}");
        assert_eq!(OrgId::parse("a b").unwrap_err().suggestion(), None);
    }

    #[test]
    fn the_commitment_is_not_the_plain_hash() {
        assert_ne!(payload_commitment(b"x"), sha256(b"x"));
    }
}
