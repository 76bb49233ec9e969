//! Counting the authority signatures on a roster version: which distinct authority keys signed
//! it validly, and whether the thresholds it needs are met.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, VerifyingKey};
use intelmesh_core::signature::{check_components, verify_one};
use intelmesh_core::{Hash, KeyId};
use intelmesh_proto::v1 as pb;

use crate::document::check_document;
use crate::error::{AuthorityKeys, RosterError};
use crate::hash::{roster_hash, signature_message};
use crate::model::Authority;
use crate::roster::Roster;

/// How far a signed version is from publication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Thresholds {
    pub signed_current: u32,
    pub needed_current: u32,
    /// Zero both when the version keeps the authority's keys and threshold.
    pub signed_new: u32,
    pub needed_new: u32,
}

impl Thresholds {
    pub fn is_complete(&self) -> bool {
        self.signed_current >= self.needed_current && self.signed_new >= self.needed_new
    }
}

/// The distinct keys of `authority` that validly signed `hash`. Signatures by other keys, by a
/// key already counted, or that fail the one signature rule do not count (and are not an error:
/// anyone can append bytes to a SignedRoster).
pub fn valid_signers(
    authority: &Authority,
    hash: &Hash,
    signatures: &[pb::RosterSignature],
) -> BTreeSet<KeyId> {
    let mut signers = BTreeSet::new();
    for s in signatures {
        let Ok(id) = <[u8; 8]>::try_from(s.key_id.as_slice()).map(KeyId) else {
            continue;
        };
        if signers.contains(&id) {
            continue;
        }
        let Some(key) = authority.key(&id) else {
            continue;
        };
        if signs(&key.key, hash, s) {
            signers.insert(id);
        }
    }
    signers
}

/// Whether `s` is a valid signature of `hash` by `key` (under the one signature rule).
pub fn signs(key: &VerifyingKey, hash: &Hash, s: &pb::RosterSignature) -> bool {
    let Ok(signature) = Signature::from_slice(&s.signature) else {
        return false;
    };
    let message = signature_message(hash, s.signed_at_unix_ms);
    check_components(&signature, key).is_ok() && verify_one(key, &message, &signature)
}

fn count(authority: &Authority, hash: &Hash, signatures: &[pb::RosterSignature]) -> u32 {
    u32::try_from(valid_signers(authority, hash, signatures).len()).unwrap_or(u32::MAX)
}

/// The signatures `signed` carries and needs to follow `current`.
pub fn thresholds(current: &Roster, signed: &pb::SignedRoster) -> Result<Thresholds, RosterError> {
    let next = check_document(&signed.document)?;
    let hash = roster_hash(&signed.document);
    let mut t = Thresholds {
        signed_current: count(current.authority(), &hash, &signed.signatures),
        needed_current: current.authority().threshold,
        ..Thresholds::default()
    };
    if !current.authority().same_power(&next.authority) {
        t.signed_new = count(&next.authority, &hash, &signed.signatures);
        t.needed_new = next.authority.threshold;
    }
    Ok(t)
}

/// The signatures a genesis carries and needs (its own authority's threshold).
pub fn genesis_thresholds(signed: &pb::SignedRoster) -> Result<Thresholds, RosterError> {
    let doc = check_document(&signed.document)?;
    let hash = roster_hash(&signed.document);
    Ok(Thresholds {
        signed_current: count(&doc.authority, &hash, &signed.signatures),
        needed_current: doc.authority.threshold,
        ..Thresholds::default()
    })
}

/// Refuses `signed` unless `authority`'s threshold of its keys signed it.
pub(crate) fn require(
    authority: &Authority,
    keys: AuthorityKeys,
    version: u64,
    hash: &Hash,
    signatures: &[pb::RosterSignature],
) -> Result<(), RosterError> {
    let have = count(authority, hash, signatures);
    if have < authority.threshold {
        return Err(RosterError::UnderSigned {
            version,
            keys,
            have,
            need: authority.threshold,
        });
    }
    Ok(())
}
