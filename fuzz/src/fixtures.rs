//! The fixed world the targets verify against: two member orgs with fixed signing keys and a
//! fixed clock, so seeds signed here verify there and a mutated seed reaches every check.

use std::sync::{Arc, OnceLock};

use ed25519_dalek::SigningKey;
use intelmesh_core::sealed::{DecryptionKeys, EncryptionSecret};
use intelmesh_core::{OrgId, Signer, StaticKeys, VerifyConfig};

/// The clock every target verifies at (2027-01-15); seeds are issued a minute before.
pub const NOW_UNIX_MS: i64 = 1_800_000_000_000;
pub const ISSUED_AT_UNIX_MS: i64 = NOW_UNIX_MS - 60_000;

/// The orgs of the fixed world: `ORIGIN` signs the seeds, `PEER` is a recipient.
pub const ORIGIN: &str = "ORIGIN";
pub const PEER: &str = "PEER";

fn org(name: &str) -> OrgId {
    // Both names are constants that satisfy the org id rules.
    OrgId::parse(name).unwrap_or_else(|e| panic!("fixture org id {name}: {e}"))
}

pub fn origin() -> OrgId {
    org(ORIGIN)
}

pub fn peer() -> OrgId {
    org(PEER)
}

/// The origin's signer (a fixed key: this is a test world, not a secret).
pub fn origin_signer() -> Signer {
    Signer::new(origin(), SigningKey::from_bytes(&[7; 32]))
}

pub fn peer_signer() -> Signer {
    Signer::new(peer(), SigningKey::from_bytes(&[8; 32]))
}

/// An org's encryption key in the fixed world (fixed bytes: not a secret).
fn encryption_secret(org: &OrgId) -> EncryptionSecret {
    let fill = if org == &origin() { 9 } else { 10 };
    EncryptionSecret::from_bytes(&[fill; 32])
        .unwrap_or_else(|e| panic!("fixture encryption key: {e}"))
}

/// The key list of the fixed world (signing and encryption keys), built once per process.
pub fn keys() -> Arc<StaticKeys> {
    static KEYS: OnceLock<Arc<StaticKeys>> = OnceLock::new();
    Arc::clone(KEYS.get_or_init(|| {
        let mut keys = StaticKeys::default();
        for s in [origin_signer(), peer_signer()] {
            keys.insert(s.org().clone(), s.verifying_key());
            keys.set_encryption_key(s.org().clone(), encryption_secret(s.org()).public());
        }
        Arc::new(keys)
    }))
}

/// The peer's encryption keys: what it opens the origin's sealed seeds with.
pub fn peer_decryption_keys() -> &'static DecryptionKeys {
    static KEYS: OnceLock<DecryptionKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = DecryptionKeys::default();
        keys.insert(encryption_secret(&peer()));
        keys
    })
}

pub fn verify_config() -> VerifyConfig {
    VerifyConfig::at(NOW_UNIX_MS)
}
