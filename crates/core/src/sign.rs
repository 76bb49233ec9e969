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

    /// Signs `items` as the entries following `head`, in order, and returns them with the
    /// new head. The chain is built first (each header names the hash of the one before,
    /// which covers no signature), then the signatures are made on all cores: a large
    /// publication is not held to one core's signing rate.
    pub fn sign_chain(
        &self,
        mut head: Option<Head>,
        issued_at_unix_ms: i64,
        items: &[(Distribution, pb::Payload)],
    ) -> (Vec<pb::SignedEntry>, Option<Head>) {
        use rayon::prelude::*;
        let mut unsigned = Vec::with_capacity(items.len());
        for (distribution, payload) in items {
            let (seq, prev_hash) = crate::entry::next_link(head);
            let payload = crate::payload::seal(payload, distribution.tlp.is_restricted());
            let header = self.header(seq, prev_hash, issued_at_unix_ms, distribution, &payload);
            head = Some(Head {
                seq,
                hash: header_hash(&header),
            });
            unsigned.push((header, payload));
        }
        let entries = unsigned
            .into_par_iter()
            .map(|(header, payload)| self.sign_header(header, Some(payload)))
            .collect();
        (entries, head)
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
        let header = self.header(seq, prev_hash, issued_at_unix_ms, distribution, &payload);
        self.sign_header(header, Some(payload))
    }

    /// The encoded header of an entry of this signer.
    fn header(
        &self,
        seq: u64,
        prev_hash: Hash,
        issued_at_unix_ms: i64,
        distribution: &Distribution,
        payload: &[u8],
    ) -> Vec<u8> {
        pb::EntryHeader {
            origin: self.org.as_str().to_string(),
            seq,
            prev_hash: prev_hash.to_vec(),
            payload_commitment: payload_commitment(payload).to_vec(),
            payload_len: payload.len() as u64,
            issued_at_unix_ms,
            key_id: self.key_id.0.to_vec(),
            distribution: Some(distribution.to_proto()),
        }
        .encode_to_vec()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Tlp;
    use crate::verify::{verify_entry, StaticKeys, VerifyConfig};

    fn payload(n: u32) -> pb::Payload {
        pb::Payload {
            body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(pb::IndicatorRef {
                    r#type: pb::IndicatorType::Domain as i32,
                    value: format!("d{n}.example"),
                }),
                confidence: 50,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn a_chain_signed_on_all_cores_links_and_verifies_like_one_signed_in_turn() {
        let org = OrgId::parse("AU-AFP").unwrap();
        let signer = Signer::new(org.clone(), SigningKey::from_bytes(&[7; 32]));
        let mut keys = StaticKeys::default();
        keys.insert(org, signer.verifying_key());
        let green = Distribution {
            tlp: Tlp::Green,
            recipients: vec![],
        };
        let red = Distribution {
            tlp: Tlp::Red,
            recipients: vec![],
        };
        let items: Vec<_> = (0..50)
            .map(|n| {
                (
                    if n % 3 == 0 {
                        red.clone()
                    } else {
                        green.clone()
                    },
                    payload(n),
                )
            })
            .collect();
        let (_, start) = signer.sign_next(None, 1_000, &green, &payload(99));
        let (entries, head) = signer.sign_chain(Some(start), 2_000, &items);
        assert_eq!(entries.len(), 50);
        let cfg = VerifyConfig::at(2_000);
        let mut prev = start;
        for (i, e) in entries.into_iter().enumerate() {
            let v = verify_entry(e, &keys, &cfg).unwrap_or_else(|e| panic!("entry {i}: {e}"));
            assert_eq!(v.header().seq, prev.seq + 1);
            assert_eq!(v.header().prev_hash, prev.hash);
            prev = Head {
                seq: v.header().seq,
                hash: *v.hash(),
            };
        }
        assert_eq!(head, Some(prev));
        assert_eq!(signer.sign_chain(head, 3_000, &[]), (vec![], head));
    }
}
