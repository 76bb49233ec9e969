//! The first roster version: what `intelmesh federation init` writes for the initial authority
//! keys to sign.

use ed25519_dalek::VerifyingKey;
use intelmesh_core::entry::ZERO_HASH;
use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::document::{check_decoded, DocumentDefect};
use crate::model::{encryption_key, new_member, AuthorityKey, MemberRole};

/// A hub member of the genesis (the hubs that will publish the roster log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubMember {
    pub org: OrgId,
    pub display_name: String,
    pub country: String,
    pub signing_key: VerifyingKey,
    /// Its first encryption key, listed from version 1.
    pub encryption_key: Option<EncryptionPublic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenesisSpec {
    pub federation_id: OrgId,
    pub authority: Vec<AuthorityKey>,
    pub threshold: u32,
    pub hub_members: Vec<HubMember>,
    pub ca_certs_pem: Vec<String>,
    pub hubs: Vec<pb::HubAddress>,
    /// Zeros take the defaults ([`crate::Policy`]).
    pub policy: pb::Policy,
    /// Who ran `federation init`, for the audit trail.
    pub proposed_by: String,
}

/// The document bytes of version 1 (unsigned), checked against every rule of one version.
pub fn build_genesis(spec: &GenesisSpec, now_unix_ms: i64) -> Result<Vec<u8>, DocumentDefect> {
    let names: Vec<String> = spec
        .authority
        .iter()
        .map(|k| format!("{} ({})", k.name, KeyId::of(&k.key)))
        .collect();
    let mut actions = vec![format!(
        "create federation {}: authority {} of {}: {}",
        spec.federation_id,
        spec.threshold,
        spec.authority.len(),
        names.join(", ")
    )];
    actions.extend(spec.hub_members.iter().map(|h| {
        let encryption = h
            .encryption_key
            .map(|k| format!(" and encryption key {}", k.id()))
            .unwrap_or_default();
        format!(
            "add member {} ({}, {}) as hub with key {}{encryption}",
            h.org,
            h.display_name,
            h.country,
            KeyId::of(&h.signing_key)
        )
    }));
    let document = pb::RosterDocument {
        federation_id: spec.federation_id.to_string(),
        version: 1,
        prev_hash: ZERO_HASH.to_vec(),
        issued_at_unix_ms: now_unix_ms,
        authority: Some(pb::Authority {
            keys: spec
                .authority
                .iter()
                .map(|k| pb::AuthorityKey {
                    name: k.name.clone(),
                    public_key: k.key.to_bytes().to_vec(),
                })
                .collect(),
            threshold: spec.threshold,
        }),
        members: spec
            .hub_members
            .iter()
            .map(|h| {
                let mut m = new_member(
                    &h.org,
                    &h.display_name,
                    &h.country,
                    MemberRole::Hub,
                    &h.signing_key,
                );
                m.encryption_keys = h
                    .encryption_key
                    .iter()
                    .map(|k| encryption_key(k, 1))
                    .collect();
                m
            })
            .collect(),
        ca_certs_pem: spec.ca_certs_pem.clone(),
        revoked: Vec::new(),
        hubs: spec.hubs.clone(),
        policy: Some(spec.policy),
        change: Some(pb::Change {
            proposed_by: spec.proposed_by.clone(),
            actions,
            reason: "genesis".to_string(),
        }),
    };
    let bytes = document.encode_to_vec();
    check_decoded(document)?;
    Ok(bytes)
}
