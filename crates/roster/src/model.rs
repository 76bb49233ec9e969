//! The roster's parts as the rules read them: authority keys, member roles, statuses and key
//! ranges, and the one spelling of ids, serials and ranges.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;
use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;

/// One authority key, with the operator who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorityKey {
    pub name: String,
    pub key: VerifyingKey,
}

impl AuthorityKey {
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.key)
    }
}

/// Who may sign the next version: `threshold` of `keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub keys: Vec<AuthorityKey>,
    pub threshold: u32,
}

impl Authority {
    pub fn key(&self, id: &KeyId) -> Option<&AuthorityKey> {
        self.keys.iter().find(|k| k.id() == *id)
    }

    /// Whether `other` has the same keys (names aside) and threshold: if not, a version moving
    /// from one to the other needs the signatures of both.
    pub fn same_power(&self, other: &Authority) -> bool {
        let ids = |a: &Authority| {
            a.keys
                .iter()
                .map(|k| k.key.to_bytes())
                .collect::<BTreeSet<_>>()
        };
        self.threshold == other.threshold && ids(self) == ids(other)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberRole {
    Hub,
    Agency,
}

impl MemberRole {
    pub fn from_proto(v: i32) -> Option<MemberRole> {
        match pb::MemberRole::try_from(v).ok()? {
            pb::MemberRole::Hub => Some(MemberRole::Hub),
            pb::MemberRole::Agency => Some(MemberRole::Agency),
            pb::MemberRole::Unspecified => None,
        }
    }

    pub fn to_proto(self) -> pb::MemberRole {
        match self {
            MemberRole::Hub => pb::MemberRole::Hub,
            MemberRole::Agency => pb::MemberRole::Agency,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Hub => "hub",
            MemberRole::Agency => "agency",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberStatus {
    Active,
    Suspended,
    Removed,
}

impl MemberStatus {
    pub fn from_proto(v: i32) -> Option<MemberStatus> {
        match pb::MemberStatus::try_from(v).ok()? {
            pb::MemberStatus::Active => Some(MemberStatus::Active),
            pb::MemberStatus::Suspended => Some(MemberStatus::Suspended),
            pb::MemberStatus::Removed => Some(MemberStatus::Removed),
            pb::MemberStatus::Unspecified => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Active => "active",
            MemberStatus::Suspended => "suspended",
            MemberStatus::Removed => "removed",
        }
    }
}

/// A member's signing key and the range of the member's own seqs it may sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberKey {
    pub key: VerifyingKey,
    pub first_seq: u64,
    /// `None`: open-ended. `first_seq - 1`: ended before it signed anything (a member suspended
    /// before its first entry, or right after a rotation).
    pub last_seq: Option<u64>,
}

/// A member as the rules read it (the document's `pb::Member` has the rest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedMember {
    /// Position in the document's `members`.
    pub index: usize,
    pub role: MemberRole,
    pub status: MemberStatus,
    pub keys: Vec<MemberKey>,
    /// Its encryption keys in roster order: the last is current, earlier ones are history.
    pub encryption_keys: Vec<EncryptionPublic>,
}

/// The URI SAN a member's node certificate carries.
pub fn node_identity(org: &OrgId) -> String {
    format!("spiffe://intelmesh/org/{org}/node")
}

pub(crate) fn parse_key(bytes: &[u8]) -> Result<VerifyingKey, KeyDefect> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| KeyDefect::Length(bytes.len()))?;
    VerifyingKey::from_bytes(&array).map_err(|_| KeyDefect::Invalid)
}

pub(crate) enum KeyDefect {
    Length(usize),
    Invalid,
}

/// Whether `serial` is in the one form serials take in a roster: lowercase hex, 1 to 40 digits,
/// no leading zero (so one certificate has one spelling; see [`normalize_serial`]).
pub fn is_serial(serial: &str) -> bool {
    (1..=40).contains(&serial.len())
        && (serial == "0" || !serial.starts_with('0'))
        && serial
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A serial as tools print it (upper case, `:` separated, leading zeros) in the roster's form.
pub fn normalize_serial(raw: &str) -> String {
    let hex: String = raw
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() && !hex.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// A new active member with one open signing key from seq 1.
pub fn new_member(
    org: &OrgId,
    display_name: &str,
    country: &str,
    role: MemberRole,
    signing_key: &VerifyingKey,
) -> pb::Member {
    pb::Member {
        org: org.to_string(),
        display_name: display_name.to_string(),
        country: country.to_string(),
        role: role.to_proto() as i32,
        status: pb::MemberStatus::Active as i32,
        node_identity: node_identity(org),
        signing_keys: vec![pb::MemberKey {
            public_key: signing_key.to_bytes().to_vec(),
            first_seq: 1,
            last_seq: None,
            ended_by: pb::KeyEnd::Unspecified as i32,
        }],
        withdrawn: false,
        certificates: Vec::new(),
        encryption_keys: Vec::new(),
        certificates_from_unix_ms: 0,
    }
}

/// How far back the federation CA starts a certificate's validity (`pki`), so that a verifier
/// whose clock runs a little behind the issuer's accepts it at once. A compromise report
/// refuses certificates whose validity starts before the report's time less this: those
/// issued before it.
pub const CERT_BACKDATE_MS: i64 = 3_600_000;

/// How many encryption keys a member lists at most (its current one and the recent history):
/// a rotation beyond this drops the oldest.
pub const MAX_ENCRYPTION_KEYS: usize = 8;

/// `key` as a member's encryption key listed from roster `version`.
pub fn encryption_key(key: &EncryptionPublic, version: u64) -> pb::EncryptionKey {
    pb::EncryptionKey {
        public_key: key.as_bytes().to_vec(),
        since_version: version,
        reported_compromised: false,
    }
}

/// An encryption key as people read it: its id, or the bytes when they are no key.
pub(crate) fn encryption_key_label(bytes: &[u8]) -> String {
    EncryptionPublic::from_bytes(bytes)
        .map(|k| k.id().to_string())
        .unwrap_or_else(|_| format!("<invalid {}>", hex::encode(bytes)))
}

/// Who already lists the encryption key `key`, if anyone.
pub fn encryption_key_holder<'d>(doc: &'d pb::RosterDocument, key: &[u8]) -> Option<&'d str> {
    doc.members
        .iter()
        .find(|m| m.encryption_keys.iter().any(|k| k.public_key == key))
        .map(|m| m.org.as_str())
}

/// A seq range as people read it: `5..` (open), `5..=9`, or `none` (ended before first use).
pub fn seq_range(first_seq: u64, last_seq: Option<u64>) -> String {
    match last_seq {
        None => format!("{first_seq}.."),
        Some(last) if last < first_seq => "none".to_string(),
        Some(last) => format!("{first_seq}..={last}"),
    }
}
