//! Requests a member signs for the hub operators: an enrolment request (its public parts, signed
//! with its new signing key as proof of possession), a key rotation request (signed by the
//! current key and by the new one) and an encryption key request (signed by its current key).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use intelmesh_core::entry::InvalidOrgId;
use intelmesh_core::sealed::{EncryptionPublic, KeyError};
use intelmesh_core::signature::{check_components, verify_one};
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::model::{parse_key, KeyDefect};

/// Prefix of the message an enrolment request's key signs.
pub const ENROLMENT_CONTEXT: &[u8] = b"intelmesh/v1 enrolment\0";
/// Prefix of the message both keys of a rotation request sign.
pub const ROTATION_CONTEXT: &[u8] = b"intelmesh/v1 rotation\0";
/// Prefix of the message a replacement key signs after a compromise report.
pub const REPLACEMENT_CONTEXT: &[u8] = b"intelmesh/v1 replacement-key\0";
/// Prefix of the message a member's current signing key signs to set its encryption key.
pub const ENCRYPTION_KEY_CONTEXT: &[u8] = b"intelmesh/v1 encryption-key\0";

/// What an agency says about itself when it asks to join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentDetails {
    pub org: OrgId,
    pub display_name: String,
    /// ISO 3166-1 alpha-2, or "" for international bodies.
    pub country: String,
    pub csr_pem: String,
    /// Its X25519 encryption key (the roster lists it as the member's first one).
    pub encryption_key: Option<EncryptionPublic>,
}

/// Whether `country` is what the roster takes as a member's country: an ISO 3166-1 alpha-2
/// code (two capital letters), or empty for an international body.
pub fn is_country_code(country: &str) -> bool {
    country.is_empty() || (country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase()))
}

/// Longest display name a member may have, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;

/// What is wrong with how an agency names itself, if anything: a display name the roster shows
/// on one line everywhere (none empty, none with control characters, at most
/// [`MAX_DISPLAY_NAME_CHARS`]), a country that is an ISO 3166-1 alpha-2 code or empty.
pub fn naming_problem(display_name: &str, country: &str) -> Option<String> {
    if display_name.trim().is_empty() {
        return Some("the display name is empty".into());
    }
    if display_name.chars().any(char::is_control) {
        return Some(format!(
            "the display name {display_name:?} holds control characters (a line break, a tab, …)"
        ));
    }
    if display_name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Some(format!(
            "the display name is longer than {MAX_DISPLAY_NAME_CHARS} characters"
        ));
    }
    (!is_country_code(country)).then(|| {
        format!("country {country:?} is not an ISO 3166-1 alpha-2 code (two capital letters, e.g. AU), or empty for an international body")
    })
}

/// An enrolment request whose signature verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEnrolment {
    pub request: pb::EnrolmentRequest,
    pub org: OrgId,
    pub signing_key: VerifyingKey,
    /// `None` for a request made before members had encryption keys.
    pub encryption_key: Option<EncryptionPublic>,
}

/// An encryption key request whose signature verified against the key it was checked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEncryptionKey {
    pub request: pb::EncryptionKeyRequest,
    pub org: OrgId,
    pub new_key: EncryptionPublic,
}

/// A rotation request whose two signatures verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedRotation {
    pub request: pb::RotationRequest,
    pub org: OrgId,
    pub old_key: VerifyingKey,
    pub new_key: VerifyingKey,
    /// The last seq the old key signs; the new key starts after it.
    pub last_seq: u64,
}

/// Why a signed request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the request does not decode: {0}")]
    Undecodable(String),
    #[error("{0}")]
    Org(InvalidOrgId),
    #[error("{which} has {len} bytes, not 32")]
    KeyLength { which: &'static str, len: usize },
    #[error("{which} is not a valid ed25519 public key")]
    KeyInvalid { which: &'static str },
    #[error("the {which} signature is missing or not 64 bytes")]
    SignatureLength { which: &'static str },
    #[error("the {which} signature does not verify: the request was not signed by {key_id}, or was altered")]
    BadSignature { which: &'static str, key_id: KeyId },
    #[error("the new key is the old key")]
    SameKey,
    #[error("the encryption key: {0}")]
    EncryptionKey(KeyError),
}

fn message(context: &[u8], request: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(context.len() + request.len());
    msg.extend_from_slice(context);
    msg.extend_from_slice(request);
    msg
}

fn check_signature(
    which: &'static str,
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> Result<(), RequestError> {
    let signature =
        Signature::from_slice(signature).map_err(|_| RequestError::SignatureLength { which })?;
    let bad = RequestError::BadSignature {
        which,
        key_id: KeyId::of(key),
    };
    check_components(&signature, key).map_err(|_| bad.clone())?;
    if !verify_one(key, message, &signature) {
        return Err(bad);
    }
    Ok(())
}

fn key(which: &'static str, bytes: &[u8]) -> Result<VerifyingKey, RequestError> {
    parse_key(bytes).map_err(|d| match d {
        KeyDefect::Length(len) => RequestError::KeyLength { which, len },
        KeyDefect::Invalid => RequestError::KeyInvalid { which },
    })
}

/// An enrolment request for `details`, signed with the new signing key `key`.
pub fn sign_enrolment(
    details: &EnrolmentDetails,
    key: &SigningKey,
    now_unix_ms: i64,
) -> pb::SignedEnrolmentRequest {
    let request = pb::EnrolmentRequest {
        org: details.org.to_string(),
        display_name: details.display_name.clone(),
        country: details.country.clone(),
        csr_pem: details.csr_pem.clone(),
        signing_key: key.verifying_key().to_bytes().to_vec(),
        created_at_unix_ms: now_unix_ms,
        encryption_key: details
            .encryption_key
            .map(|k| k.as_bytes().to_vec())
            .unwrap_or_default(),
    }
    .encode_to_vec();
    let signature = key.sign(&message(ENROLMENT_CONTEXT, &request));
    pb::SignedEnrolmentRequest {
        request,
        signature: signature.to_bytes().to_vec(),
    }
}

/// Decodes an enrolment request and checks its proof of possession.
pub fn verify_enrolment(
    signed: &pb::SignedEnrolmentRequest,
) -> Result<VerifiedEnrolment, RequestError> {
    if signed.request.is_empty() {
        return Err(RequestError::Undecodable(
            "it is empty (give the enrolment.request file `node init` wrote)".into(),
        ));
    }
    let request = pb::EnrolmentRequest::decode(signed.request.as_slice())
        .map_err(|e| RequestError::Undecodable(e.to_string()))?;
    let org = OrgId::parse(&request.org).map_err(RequestError::Org)?;
    let signing_key = key("the signing key", &request.signing_key)?;
    let encryption_key = if request.encryption_key.is_empty() {
        None
    } else {
        Some(encryption_key(&request.encryption_key)?)
    };
    check_signature(
        "signing key's",
        &signing_key,
        &message(ENROLMENT_CONTEXT, &signed.request),
        &signed.signature,
    )?;
    Ok(VerifiedEnrolment {
        request,
        org,
        signing_key,
        encryption_key,
    })
}

fn encryption_key(bytes: &[u8]) -> Result<EncryptionPublic, RequestError> {
    EncryptionPublic::from_bytes(bytes).map_err(RequestError::EncryptionKey)
}

/// A request that `new_key` become `org`'s current encryption key, signed with its current
/// signing key `current`.
pub fn sign_encryption_key(
    org: &OrgId,
    current: &SigningKey,
    new_key: &EncryptionPublic,
    now_unix_ms: i64,
) -> pb::SignedEncryptionKeyRequest {
    let request = pb::EncryptionKeyRequest {
        org: org.to_string(),
        new_key: new_key.as_bytes().to_vec(),
        created_at_unix_ms: now_unix_ms,
    }
    .encode_to_vec();
    let signature = current.sign(&message(ENCRYPTION_KEY_CONTEXT, &request));
    pb::SignedEncryptionKeyRequest {
        request,
        signature: signature.to_bytes().to_vec(),
    }
}

fn decode_encryption_key(
    signed: &pb::SignedEncryptionKeyRequest,
) -> Result<(pb::EncryptionKeyRequest, OrgId), RequestError> {
    let request = pb::EncryptionKeyRequest::decode(signed.request.as_slice())
        .map_err(|e| RequestError::Undecodable(e.to_string()))?;
    let org = OrgId::parse(&request.org).map_err(RequestError::Org)?;
    Ok((request, org))
}

/// Which member an encryption key request is for, before its signature is checked (with that
/// member's current signing key, by [`verify_encryption_key`]).
pub fn encryption_key_org(signed: &pb::SignedEncryptionKeyRequest) -> Result<OrgId, RequestError> {
    decode_encryption_key(signed).map(|(_, org)| org)
}

/// Decodes an encryption key request and checks that `current` (the member's current signing
/// key, as the roster lists it) signed it.
pub fn verify_encryption_key(
    signed: &pb::SignedEncryptionKeyRequest,
    current: &VerifyingKey,
) -> Result<VerifiedEncryptionKey, RequestError> {
    let (request, org) = decode_encryption_key(signed)?;
    let new_key = encryption_key(&request.new_key)?;
    check_signature(
        "current signing key's",
        current,
        &message(ENCRYPTION_KEY_CONTEXT, &signed.request),
        &signed.signature,
    )?;
    Ok(VerifiedEncryptionKey {
        request,
        org,
        new_key,
    })
}

/// A request to end `old` at `last_seq` and sign with `new` from `last_seq + 1`, signed by both.
pub fn sign_rotation(
    org: &OrgId,
    old: &SigningKey,
    new: &SigningKey,
    last_seq: u64,
    now_unix_ms: i64,
) -> pb::SignedRotationRequest {
    let request = pb::RotationRequest {
        org: org.to_string(),
        old_key: old.verifying_key().to_bytes().to_vec(),
        last_seq,
        new_key: new.verifying_key().to_bytes().to_vec(),
        created_at_unix_ms: now_unix_ms,
    }
    .encode_to_vec();
    let msg = message(ROTATION_CONTEXT, &request);
    pb::SignedRotationRequest {
        signature: old.sign(&msg).to_bytes().to_vec(),
        new_key_signature: new.sign(&msg).to_bytes().to_vec(),
        request,
    }
}

/// Decodes a rotation request and checks both signatures. Whether the old key is the member's
/// current one is a roster question ([`crate::propose`]).
pub fn verify_rotation(
    signed: &pb::SignedRotationRequest,
) -> Result<VerifiedRotation, RequestError> {
    let request = pb::RotationRequest::decode(signed.request.as_slice())
        .map_err(|e| RequestError::Undecodable(e.to_string()))?;
    let org = OrgId::parse(&request.org).map_err(RequestError::Org)?;
    let old_key = key("the old key", &request.old_key)?;
    let new_key = key("the new key", &request.new_key)?;
    if old_key == new_key {
        return Err(RequestError::SameKey);
    }
    let msg = message(ROTATION_CONTEXT, &signed.request);
    check_signature("old key's", &old_key, &msg, &signed.signature)?;
    check_signature("new key's", &new_key, &msg, &signed.new_key_signature)?;
    Ok(VerifiedRotation {
        last_seq: request.last_seq,
        request,
        org,
        old_key,
        new_key,
    })
}

/// What a replacement key signs: the org and the first seq it will sign, so the proof cannot
/// be replayed for another member or another cut-off.
fn replacement_message(org: &OrgId, first_seq: u64) -> Vec<u8> {
    let mut body = org.as_str().as_bytes().to_vec();
    body.push(0);
    body.extend_from_slice(&first_seq.to_be_bytes());
    message(REPLACEMENT_CONTEXT, &body)
}

/// The proof that the holder of `new` asks for it to sign `org`'s seqs from `first_seq`, to
/// send with a compromise report.
pub fn sign_replacement(org: &OrgId, new: &SigningKey, first_seq: u64) -> Vec<u8> {
    new.sign(&replacement_message(org, first_seq))
        .to_bytes()
        .to_vec()
}

/// Checks a replacement key and its proof; returns the key.
pub fn verify_replacement(
    org: &OrgId,
    key_bytes: &[u8],
    first_seq: u64,
    proof: &[u8],
) -> Result<VerifyingKey, RequestError> {
    let new = key("replacement key", key_bytes)?;
    check_signature(
        "replacement key",
        &new,
        &replacement_message(org, first_seq),
        proof,
    )?;
    Ok(new)
}
