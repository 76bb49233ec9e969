//! Signing the entries an origin publishes.

use std::collections::BTreeMap;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use intelmesh_proto::v1 as pb;
use prost::Message;

use crate::entry::{
    header_hash, payload_commitment, signed_message, Distribution, Hash, Head, KeyId, OrgId,
};
use crate::sealed::{seal_batch, EncryptionPublic, Reader, SealError};

/// A publication of at least this many entries is signed this many to a hash tree
/// ([`crate::batch_tree`]): one signature for them all, and a path of at most five hashes
/// (174 bytes encoded) in each entry. A smaller one is signed entry by entry.
pub const BATCH_LEAVES: usize = 32;
/// Publications of at least this many entries signed entry by entry are signed on every core.
const SIGN_IN_PARALLEL_FROM: usize = 8;

/// An entry whose header is built and hashed, before it is signed.
struct Unsigned {
    header: Vec<u8>,
    hash: Hash,
    payload: Vec<u8>,
}

/// Where an origin finds the current encryption key of each reader it seals to.
pub trait ReaderKeys: Sync {
    fn current(&self, org: &OrgId) -> Option<EncryptionPublic>;
}

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
    /// which covers no signature), then, if there are at least [`BATCH_LEAVES`], each run of
    /// that many is signed as one batch (the last run may be shorter), the batches on all
    /// cores; fewer are signed one by one. Nothing is sealed to readers.
    pub fn sign_chain(
        &self,
        head: Option<Head>,
        issued_at_unix_ms: i64,
        items: &[(Distribution, pb::Payload)],
    ) -> (Vec<pb::SignedEntry>, Option<Head>) {
        match self.sign_chain_sealing(head, issued_at_unix_ms, items, None) {
            Ok(signed) => signed,
            Err(_) => unreachable!("nothing is sealed without reader keys"),
        }
    }

    /// [`Signer::sign_chain`], with every AMBER+STRICT and RED payload sealed to its readers
    /// (this origin and the recipients) under the keys `seal` gives, when `seal` is given.
    /// Sealing runs on all cores before the chain is built, as the header commits to the
    /// envelope. Fails, signing nothing, if a reader has no key or a payload is too large.
    pub fn sign_chain_sealing(
        &self,
        mut head: Option<Head>,
        issued_at_unix_ms: i64,
        items: &[(Distribution, pb::Payload)],
        seal: Option<&dyn ReaderKeys>,
    ) -> Result<(Vec<pb::SignedEntry>, Option<Head>), SealError> {
        use rayon::prelude::*;
        let payloads = self.payloads(items, seal)?;
        let mut unsigned = Vec::with_capacity(items.len());
        for ((distribution, _), (payload, sealed)) in items.iter().zip(payloads) {
            let (seq, prev_hash) = crate::entry::next_link(head);
            let header = self.header(
                seq,
                prev_hash,
                issued_at_unix_ms,
                distribution,
                &payload,
                sealed,
            );
            let hash = header_hash(&header);
            head = Some(Head { seq, hash });
            unsigned.push(Unsigned {
                header,
                hash,
                payload,
            });
        }
        if unsigned.len() < BATCH_LEAVES {
            // A small publication is signed entry by entry: what batching saves it is a
            // millisecond at most, and its entries keep the plain form (no path) that every
            // verifier of the one-signature-per-entry rule, older nodes included, accepts.
            let sign = |u| self.sign_alone(u);
            let entries = if unsigned.len() < SIGN_IN_PARALLEL_FROM {
                unsigned.into_iter().map(sign).collect()
            } else {
                unsigned.into_par_iter().map(sign).collect()
            };
            return Ok((entries, head));
        }
        let batches: Vec<Vec<pb::SignedEntry>> = unsigned
            .into_par_iter()
            .chunks(BATCH_LEAVES)
            .map(|batch| self.sign_batch(batch))
            .collect();
        Ok((batches.into_iter().flatten().collect(), head))
    }

    /// Signs one entry as itself: a signature of its header, no path.
    fn sign_alone(&self, u: Unsigned) -> pb::SignedEntry {
        self.sign_header(u.header, Some(u.payload))
    }

    /// Signs entries that follow each other: one alone as itself, several as one batch.
    fn sign_batch(&self, batch: Vec<Unsigned>) -> Vec<pb::SignedEntry> {
        if batch.len() < 2 {
            return batch.into_iter().map(|u| self.sign_alone(u)).collect();
        }
        let hashes: Vec<Hash> = batch.iter().map(|u| u.hash).collect();
        let (root, paths) = crate::batch_tree::build(&hashes);
        let signature = self
            .key
            .sign(&crate::batch_tree::signed_root(&root))
            .to_bytes();
        batch
            .into_iter()
            .zip(paths)
            .map(|(u, path)| pb::SignedEntry {
                header: u.header.into(),
                signature: crate::batch_tree::signature_field(&signature, Some(&path)).into(),
                payload: Some(u.payload.into()),
            })
            .collect()
    }

    /// [`Signer::sign_next`] with the payload sealed to its readers when it is restricted.
    pub fn sign_next_sealing(
        &self,
        head: Option<Head>,
        issued_at_unix_ms: i64,
        distribution: &Distribution,
        payload: &pb::Payload,
        seal: &dyn ReaderKeys,
    ) -> Result<(pb::SignedEntry, Head), SealError> {
        let items = [(distribution.clone(), payload.clone())];
        let (mut entries, head) =
            self.sign_chain_sealing(head, issued_at_unix_ms, &items, Some(seal))?;
        match (entries.pop(), head) {
            (Some(entry), Some(head)) => Ok((entry, head)),
            _ => unreachable!("one item signs one entry"),
        }
    }

    /// The payload bytes each item's entry carries, and whether they are an envelope: restricted
    /// items sealed (when `seal` is given), one [`seal_batch`] per set of readers, so each
    /// reader gets one encapsulation for all the items it reads.
    fn payloads(
        &self,
        items: &[(Distribution, pb::Payload)],
        seal: Option<&dyn ReaderKeys>,
    ) -> Result<Vec<(Vec<u8>, bool)>, SealError> {
        use rayon::prelude::*;
        let padded: Vec<Vec<u8>> = items
            .par_iter()
            .map(|(d, p)| crate::payload::seal(p, d.tlp.is_restricted()))
            .collect();
        let Some(keys) = seal else {
            return Ok(padded.into_iter().map(|p| (p, false)).collect());
        };
        let mut groups: BTreeMap<Vec<OrgId>, Vec<usize>> = BTreeMap::new();
        for (i, (d, _)) in items.iter().enumerate() {
            if d.tlp.is_restricted() {
                let readers = std::iter::once(&self.org)
                    .chain(d.recipients.iter().filter(|r| **r != self.org))
                    .cloned()
                    .collect();
                groups.entry(readers).or_default().push(i);
            }
        }
        let sealed: Vec<(Vec<usize>, Vec<Vec<u8>>)> = groups
            .into_par_iter()
            .map(|(orgs, indices)| {
                let readers = orgs
                    .into_iter()
                    .map(|org| match keys.current(&org) {
                        Some(key) => Ok(Reader { org, key }),
                        None => Err(SealError::NoKey(org)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let plain: Vec<Vec<u8>> = indices.iter().map(|&i| padded[i].clone()).collect();
                Ok((indices, seal_batch(&self.org, &plain, &readers)?))
            })
            .collect::<Result<_, SealError>>()?;
        let mut out: Vec<(Vec<u8>, bool)> = padded.into_iter().map(|p| (p, false)).collect();
        for (indices, envelopes) in sealed {
            for (i, envelope) in indices.into_iter().zip(envelopes) {
                out[i] = (envelope, true);
            }
        }
        Ok(out)
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
        let header = self.header(
            seq,
            prev_hash,
            issued_at_unix_ms,
            distribution,
            &payload,
            false,
        );
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
        sealed: bool,
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
            sealed,
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
