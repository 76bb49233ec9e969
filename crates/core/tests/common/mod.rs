//! What the core's integration tests share: signers from fixed seeds and the key list of a few.

use ed25519_dalek::SigningKey;
use intelmesh_core::{OrgId, Signer, StaticKeys};

/// The signer of `org` with the key made from `seed`.
pub fn signer(org: &str, seed: u8) -> Signer {
    Signer::new(
        OrgId::parse(org).unwrap(),
        SigningKey::from_bytes(&[seed; 32]),
    )
}

/// A key list holding each of `signers`' keys for its org.
pub fn keys_of(signers: &[&Signer]) -> StaticKeys {
    let mut k = StaticKeys::default();
    for s in signers {
        k.insert(s.org().clone(), s.verifying_key());
    }
    k
}
