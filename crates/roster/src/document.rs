//! Well-formedness of a roster document: decoding it, and every rule one version must meet on
//! its own (the rules between two versions are in [`crate::roster`]).

use std::collections::{BTreeMap, BTreeSet};

use intelmesh_core::entry::{InvalidOrgId, ZERO_HASH};
use intelmesh_core::sealed::{EncKeyId, EncryptionPublic, KeyError};
use intelmesh_core::{Hash, KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::model::{
    is_serial, node_identity, parse_key, Authority, AuthorityKey, CheckedMember, KeyDefect,
    MemberKey, MemberRole, MemberStatus, MAX_ENCRYPTION_KEYS,
};

/// A document that passed every rule of one version, with its parts decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedDocument {
    pub document: pb::RosterDocument,
    pub federation_id: OrgId,
    pub prev_hash: Hash,
    pub authority: Authority,
    pub members: BTreeMap<OrgId, CheckedMember>,
    pub revoked: BTreeSet<String>,
}

/// What is wrong with a roster document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocumentDefect {
    #[error("the document does not decode as a RosterDocument: {0}")]
    Undecodable(String),
    #[error("federation id: {0}")]
    FederationId(InvalidOrgId),
    #[error("version 0: versions start at 1")]
    VersionZero,
    #[error("prev_hash has {0} bytes, not 32")]
    PrevHashLength(usize),
    #[error("no authority: a roster needs authority keys and a threshold")]
    NoAuthority,
    #[error("authority key {index} ({name}) has {len} bytes, not 32")]
    AuthorityKeyLength {
        index: usize,
        name: String,
        len: usize,
    },
    #[error("authority key {index} ({name}) is not a valid ed25519 public key")]
    AuthorityKeyInvalid { index: usize, name: String },
    #[error("authority key {key_id} is listed twice")]
    DuplicateAuthorityKey { key_id: KeyId },
    #[error("threshold {threshold} with {keys} authority keys: it must be 1 to {keys}")]
    Threshold { threshold: u32, keys: usize },
    #[error("member {index}: {error}")]
    MemberOrg { index: usize, error: InvalidOrgId },
    #[error("member {0} is listed twice")]
    DuplicateMember(OrgId),
    #[error("member {0} takes the federation id, which is the roster log's origin")]
    MemberIsFederation(OrgId),
    #[error("member {org}: role {value} is not hub or agency")]
    MemberRole { org: OrgId, value: i32 },
    #[error("member {org}: status {value} is not active, suspended or removed")]
    MemberStatus { org: OrgId, value: i32 },
    #[error("member {org}: country {value:?} is not an ISO 3166-1 alpha-2 code (or empty)")]
    Country { org: OrgId, value: String },
    #[error("member {org}: node identity {found:?}, expected {expected:?}")]
    NodeIdentity {
        org: OrgId,
        found: String,
        expected: String,
    },
    #[error("member {org}: withdrawn but not removed")]
    WithdrawnNotRemoved { org: OrgId },
    #[error("member {org}: signing key {index} has {len} bytes, not 32")]
    MemberKeyLength {
        org: OrgId,
        index: usize,
        len: usize,
    },
    #[error("member {org}: signing key {index} is not a valid ed25519 public key")]
    MemberKeyInvalid { org: OrgId, index: usize },
    #[error("member {org}: signing key {index} starts at seq 0; seqs start at 1")]
    KeyFirstSeqZero { org: OrgId, index: usize },
    #[error("member {org}: signing key {index} ends at seq {last} before it starts at {first}")]
    KeyRange {
        org: OrgId,
        index: usize,
        first: u64,
        last: u64,
    },
    #[error("member {org}: signing key {index} has last_seq {last_seq:?} but ended_by {ended_by}: both or neither")]
    KeyEnd {
        org: OrgId,
        index: usize,
        last_seq: Option<u64>,
        ended_by: i32,
    },
    #[error("signing key {key_id} is listed for {first} and again for {second}")]
    KeyReused {
        key_id: KeyId,
        first: OrgId,
        second: OrgId,
    },
    #[error("member {org}: encryption key {index}: {error}")]
    EncryptionKeyInvalid {
        org: OrgId,
        index: usize,
        error: KeyError,
    },
    #[error("encryption key {key_id} is listed for {first} and again for {second}")]
    EncryptionKeyReused {
        key_id: EncKeyId,
        first: OrgId,
        second: OrgId,
    },
    #[error("member {org}: {count} encryption keys, at most {max} are listed")]
    TooManyEncryptionKeys {
        org: OrgId,
        count: usize,
        max: usize,
    },
    #[error("certificate serial {serial:?} ({context}) is not lowercase hex of 1 to 40 digits without leading zeros")]
    Serial { serial: String, context: String },
    #[error("certificate serial {serial} is listed twice ({context})")]
    DuplicateSerial { serial: String, context: String },
    #[error("revoked certificate {serial}: org {org:?} is not an org id")]
    RevokedOrg { serial: String, org: String },
    #[error("hub address {address:?} names {org:?}, which is not a hub member")]
    HubNotHubMember { org: String, address: String },
    #[error("hub address {address:?} of {org} is not host:port")]
    HubAddress { org: OrgId, address: String },
    #[error("hub address {address:?} of {org} is listed twice")]
    DuplicateHubAddress { org: OrgId, address: String },
    #[error("federation CA certificate {index} is not a PEM certificate")]
    CaCertificate { index: usize },
}

/// Decodes `bytes` and checks every rule of one version.
pub fn check_document(bytes: &[u8]) -> Result<CheckedDocument, DocumentDefect> {
    let document = pb::RosterDocument::decode(bytes)
        .map_err(|e| DocumentDefect::Undecodable(e.to_string()))?;
    check_decoded(document)
}

/// Checks every rule of one version of an already decoded document.
pub fn check_decoded(document: pb::RosterDocument) -> Result<CheckedDocument, DocumentDefect> {
    let federation_id =
        OrgId::parse(&document.federation_id).map_err(DocumentDefect::FederationId)?;
    if document.version == 0 {
        return Err(DocumentDefect::VersionZero);
    }
    let prev_hash: Hash = document
        .prev_hash
        .as_slice()
        .try_into()
        .map_err(|_| DocumentDefect::PrevHashLength(document.prev_hash.len()))?;
    let authority = check_authority(document.authority.as_ref())?;
    let members = check_members(&document, &federation_id)?;
    let revoked = check_certificates(&document)?;
    check_hubs(&document, &members)?;
    check_ca_certs(&document)?;
    Ok(CheckedDocument {
        document,
        federation_id,
        prev_hash,
        authority,
        members,
        revoked,
    })
}

/// Whether `prev_hash` is the genesis link (32 zero bytes).
pub(crate) fn is_genesis_link(prev_hash: &Hash) -> bool {
    *prev_hash == ZERO_HASH
}

pub(crate) fn check_authority(
    authority: Option<&pb::Authority>,
) -> Result<Authority, DocumentDefect> {
    let authority = authority.ok_or(DocumentDefect::NoAuthority)?;
    let mut keys = Vec::with_capacity(authority.keys.len());
    for (index, k) in authority.keys.iter().enumerate() {
        let name = k.name.clone();
        let key = parse_key(&k.public_key).map_err(|d| match d {
            KeyDefect::Length(len) => DocumentDefect::AuthorityKeyLength {
                index,
                name: name.clone(),
                len,
            },
            KeyDefect::Invalid => DocumentDefect::AuthorityKeyInvalid {
                index,
                name: name.clone(),
            },
        })?;
        let candidate = AuthorityKey { name, key };
        if keys.iter().any(|k: &AuthorityKey| k.id() == candidate.id()) {
            return Err(DocumentDefect::DuplicateAuthorityKey {
                key_id: candidate.id(),
            });
        }
        keys.push(candidate);
    }
    if authority.threshold == 0 || authority.threshold as usize > keys.len() {
        return Err(DocumentDefect::Threshold {
            threshold: authority.threshold,
            keys: keys.len(),
        });
    }
    Ok(Authority {
        keys,
        threshold: authority.threshold,
    })
}

fn check_members(
    document: &pb::RosterDocument,
    federation_id: &OrgId,
) -> Result<BTreeMap<OrgId, CheckedMember>, DocumentDefect> {
    let mut members = BTreeMap::new();
    let mut key_owner: BTreeMap<KeyId, OrgId> = BTreeMap::new();
    let mut enc_owner: BTreeMap<EncKeyId, OrgId> = BTreeMap::new();
    for (index, m) in document.members.iter().enumerate() {
        let org =
            OrgId::parse(&m.org).map_err(|error| DocumentDefect::MemberOrg { index, error })?;
        if org == *federation_id {
            return Err(DocumentDefect::MemberIsFederation(org));
        }
        if members.contains_key(&org) {
            return Err(DocumentDefect::DuplicateMember(org));
        }
        let role = MemberRole::from_proto(m.role).ok_or_else(|| DocumentDefect::MemberRole {
            org: org.clone(),
            value: m.role,
        })?;
        let status =
            MemberStatus::from_proto(m.status).ok_or_else(|| DocumentDefect::MemberStatus {
                org: org.clone(),
                value: m.status,
            })?;
        if !crate::enrolment::is_country_code(&m.country) {
            return Err(DocumentDefect::Country {
                org,
                value: m.country.clone(),
            });
        }
        let expected = node_identity(&org);
        if m.node_identity != expected {
            return Err(DocumentDefect::NodeIdentity {
                org,
                found: m.node_identity.clone(),
                expected,
            });
        }
        if m.withdrawn && status != MemberStatus::Removed {
            return Err(DocumentDefect::WithdrawnNotRemoved { org });
        }
        let keys = check_member_keys(&org, &m.signing_keys)?;
        for k in &keys {
            let id = KeyId::of(&k.key);
            if let Some(first) = key_owner.insert(id, org.clone()) {
                return Err(DocumentDefect::KeyReused {
                    key_id: id,
                    first,
                    second: org,
                });
            }
        }
        let encryption_keys = check_encryption_keys(&org, &m.encryption_keys, &mut enc_owner)?;
        members.insert(
            org,
            CheckedMember {
                index,
                role,
                status,
                keys,
                encryption_keys,
            },
        );
    }
    Ok(members)
}

/// A member's encryption keys: each a usable X25519 key, none listed twice in the roster (one
/// key, one reader), at most [`MAX_ENCRYPTION_KEYS`].
fn check_encryption_keys(
    org: &OrgId,
    keys: &[pb::EncryptionKey],
    owner: &mut BTreeMap<EncKeyId, OrgId>,
) -> Result<Vec<EncryptionPublic>, DocumentDefect> {
    if keys.len() > MAX_ENCRYPTION_KEYS {
        return Err(DocumentDefect::TooManyEncryptionKeys {
            org: org.clone(),
            count: keys.len(),
            max: MAX_ENCRYPTION_KEYS,
        });
    }
    let mut out = Vec::with_capacity(keys.len());
    for (index, k) in keys.iter().enumerate() {
        let key = EncryptionPublic::from_bytes(&k.public_key).map_err(|error| {
            DocumentDefect::EncryptionKeyInvalid {
                org: org.clone(),
                index,
                error,
            }
        })?;
        if let Some(first) = owner.insert(key.id(), org.clone()) {
            return Err(DocumentDefect::EncryptionKeyReused {
                key_id: key.id(),
                first,
                second: org.clone(),
            });
        }
        out.push(key);
    }
    Ok(out)
}

fn check_member_keys(
    org: &OrgId,
    keys: &[pb::MemberKey],
) -> Result<Vec<MemberKey>, DocumentDefect> {
    let mut out = Vec::with_capacity(keys.len());
    for (index, k) in keys.iter().enumerate() {
        let key = parse_key(&k.public_key).map_err(|d| match d {
            KeyDefect::Length(len) => DocumentDefect::MemberKeyLength {
                org: org.clone(),
                index,
                len,
            },
            KeyDefect::Invalid => DocumentDefect::MemberKeyInvalid {
                org: org.clone(),
                index,
            },
        })?;
        if k.first_seq == 0 {
            return Err(DocumentDefect::KeyFirstSeqZero {
                org: org.clone(),
                index,
            });
        }
        if let Some(last) = k.last_seq {
            // last == first - 1 is the empty range: ended before it signed anything.
            if last < k.first_seq - 1 {
                return Err(DocumentDefect::KeyRange {
                    org: org.clone(),
                    index,
                    first: k.first_seq,
                    last,
                });
            }
        }
        let end_known = pb::KeyEnd::try_from(k.ended_by).ok();
        let consistent = match (k.last_seq, end_known) {
            (None, Some(pb::KeyEnd::Unspecified)) => true,
            (Some(_), Some(end)) => end != pb::KeyEnd::Unspecified,
            _ => false,
        };
        if !consistent {
            return Err(DocumentDefect::KeyEnd {
                org: org.clone(),
                index,
                last_seq: k.last_seq,
                ended_by: k.ended_by,
            });
        }
        out.push(MemberKey {
            key,
            first_seq: k.first_seq,
            last_seq: k.last_seq,
        });
    }
    Ok(out)
}

fn check_certificates(document: &pb::RosterDocument) -> Result<BTreeSet<String>, DocumentDefect> {
    let mut issued = BTreeSet::new();
    for m in &document.members {
        for cert in &m.certificates {
            let context = format!("issued to {}", m.org);
            if !is_serial(&cert.serial) {
                return Err(DocumentDefect::Serial {
                    serial: cert.serial.clone(),
                    context,
                });
            }
            if !issued.insert(cert.serial.clone()) {
                return Err(DocumentDefect::DuplicateSerial {
                    serial: cert.serial.clone(),
                    context,
                });
            }
        }
    }
    let mut revoked = BTreeSet::new();
    for r in &document.revoked {
        let context = "revoked".to_string();
        if !is_serial(&r.serial) {
            return Err(DocumentDefect::Serial {
                serial: r.serial.clone(),
                context,
            });
        }
        if !r.org.is_empty() && OrgId::parse(&r.org).is_err() {
            return Err(DocumentDefect::RevokedOrg {
                serial: r.serial.clone(),
                org: r.org.clone(),
            });
        }
        if !revoked.insert(r.serial.clone()) {
            return Err(DocumentDefect::DuplicateSerial {
                serial: r.serial.clone(),
                context,
            });
        }
    }
    Ok(revoked)
}

fn check_hubs(
    document: &pb::RosterDocument,
    members: &BTreeMap<OrgId, CheckedMember>,
) -> Result<(), DocumentDefect> {
    let mut seen = BTreeSet::new();
    for hub in &document.hubs {
        let org = OrgId::parse(&hub.org)
            .ok()
            .filter(|org| members.get(org).is_some_and(|m| m.role == MemberRole::Hub))
            .ok_or_else(|| DocumentDefect::HubNotHubMember {
                org: hub.org.clone(),
                address: hub.address.clone(),
            })?;
        let port_ok = hub.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok {
            return Err(DocumentDefect::HubAddress {
                org,
                address: hub.address.clone(),
            });
        }
        if !seen.insert((org.clone(), hub.address.clone())) {
            return Err(DocumentDefect::DuplicateHubAddress {
                org,
                address: hub.address.clone(),
            });
        }
    }
    Ok(())
}

fn check_ca_certs(document: &pb::RosterDocument) -> Result<(), DocumentDefect> {
    match document
        .ca_certs_pem
        .iter()
        .position(|pem| !pem.contains("-----BEGIN CERTIFICATE-----"))
    {
        Some(index) => Err(DocumentDefect::CaCertificate { index }),
        None => Ok(()),
    }
}
