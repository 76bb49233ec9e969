//! The roster's hash and the exact message authority keys sign, and signing one document.

use ed25519_dalek::{Signer as _, SigningKey};
use intelmesh_core::{Hash, KeyId};
use intelmesh_proto::v1 as pb;
use sha2::{Digest, Sha256};

/// Prefix of every roster hash, so it is never the plain hash of the document bytes.
pub const DOCUMENT_CONTEXT: &[u8] = b"intelmesh/v1 roster-document\0";
/// Prefix of every message an authority key signs, so a roster signature can never be replayed
/// as any other intelmesh signature made with the same key.
pub const SIGNATURE_CONTEXT: &[u8] = b"intelmesh/v1 roster-signature\0";

/// The hash that names a roster version: SHA-256 of the context prefix and the document bytes
/// exactly as signed.
pub fn roster_hash(document_bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(DOCUMENT_CONTEXT);
    h.update(document_bytes);
    h.finalize().into()
}

/// What an authority key signs: the context prefix, the roster hash and the signing time
/// (8 bytes, big endian).
pub fn signature_message(roster_hash: &Hash, signed_at_unix_ms: i64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32 + 8);
    msg.extend_from_slice(SIGNATURE_CONTEXT);
    msg.extend_from_slice(roster_hash);
    msg.extend_from_slice(&signed_at_unix_ms.to_be_bytes());
    msg
}

/// One authority key's signature over `document_bytes`, made at `now_unix_ms`.
pub fn sign_document(
    document_bytes: &[u8],
    key: &SigningKey,
    now_unix_ms: i64,
) -> pb::RosterSignature {
    let message = signature_message(&roster_hash(document_bytes), now_unix_ms);
    pb::RosterSignature {
        key_id: KeyId::of(&key.verifying_key()).0.to_vec(),
        signed_at_unix_ms: now_unix_ms,
        signature: key.sign(&message).to_bytes().to_vec(),
    }
}
