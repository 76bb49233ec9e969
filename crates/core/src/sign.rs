//! Signing the entries an origin publishes.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::entry::{
    header_hash, payload_commitment, signed_message, Distribution, Hash, Head, KeyId, OrgId,
};

/// An org's signing identity.
pub struct Signer {
    org: OrgId,
    key: SigningKey,
    key_id: KeyId,
}

impl Signer {
    pub fn new(org: OrgId, key: SigningKey) -> Signer {
        let key_id = KeyId::of(&key.verifying_key());
        Signer { org, key, key_id }
    }

    /// A fresh random key, for tests, benches and `keygen`.
    pub fn generate(org: OrgId) -> Signer {
        Signer::new(org, SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn org(&self) -> &OrgId {
        &self.org
    }

    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs `payload` as the entry following `head` and returns it with its new head. The
    /// payload is sealed first: a fresh nonce, and padding for restricted levels.
    pub fn sign_next(
        &self,
        head: Option<Head>,
        issued_at_unix_ms: i64,
        distribution: &Distribution,
        payload: &pb::Payload,
    ) -> (pb::SignedEntry, Head) {
        let (seq, prev_hash) = crate::entry::next_link(head);
        let payload = crate::payload::seal(payload, distribution.tlp.is_restricted());
        let entry = self.sign_raw(seq, prev_hash, issued_at_unix_ms, distribution, payload);
        let hash = header_hash(&entry.header);
        (entry, Head { seq, hash })
    }

    /// Signs an entry from its parts exactly as given (payload bytes as they are, no nonce
    /// added); tests use it to craft bad entries.
    pub fn sign_raw(
        &self,
        seq: u64,
        prev_hash: Hash,
        issued_at_unix_ms: i64,
        distribution: &Distribution,
        payload: Vec<u8>,
    ) -> pb::SignedEntry {
        let header = pb::EntryHeader {
            origin: self.org.as_str().to_string(),
            seq,
            prev_hash: prev_hash.to_vec(),
            payload_commitment: payload_commitment(&payload).to_vec(),
            payload_len: payload.len() as u64,
            issued_at_unix_ms,
            key_id: self.key_id.0.to_vec(),
            distribution: Some(distribution.to_proto()),
        };
        self.sign_header(header.encode_to_vec(), Some(payload))
    }

    /// Signs already encoded header bytes.
    pub fn sign_header(&self, header: Vec<u8>, payload: Option<Vec<u8>>) -> pb::SignedEntry {
        let signature = self.key.sign(&signed_message(&header));
        pb::SignedEntry {
            header: header.into(),
            signature: signature.to_bytes().to_vec().into(),
            payload: payload.map(Into::into),
        }
    }
}
