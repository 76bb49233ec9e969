//! Fixtures shared by the cross-crate tests: deterministic signers and payloads, `net`, a set
//! of real nodes in one process, `process`, a node in a child process a test can kill, and
//! `pki`, certificates an honest CA would not issue.

pub mod api;
pub mod browser;
pub mod bytes_on_disk;
pub mod console;
pub mod http1;
pub mod net;
pub mod pki;
pub mod process;
pub mod raw_call;
pub mod raw_peer;
pub mod roster_net;
pub mod store;
pub mod taxii;

use ed25519_dalek::SigningKey;
use intelmesh_core::entry::sha256;
use intelmesh_core::indicator::IndicatorType;
use intelmesh_core::verify::{verify_batch, VerifyConfig};
use intelmesh_core::{
    Distribution, Head, Indicator, OrgId, Signer, StaticKeys, Tlp, VerifiedEntry,
};
use intelmesh_proto::v1 as pb;

/// A signer whose key is derived from `seed` and `org`, so a second process gets the same one.
pub fn seeded_signer(seed: u64, org: &str) -> Signer {
    let mut material = seed.to_be_bytes().to_vec();
    material.extend_from_slice(org.as_bytes());
    let key = SigningKey::from_bytes(&sha256(&material));
    Signer::new(OrgId::parse(org).expect("fixture org ids are valid"), key)
}

pub fn registry(signers: &[&Signer]) -> StaticKeys {
    let mut keys = StaticKeys::default();
    for s in signers {
        keys.insert(s.org().clone(), s.verifying_key());
    }
    keys
}

pub fn green() -> Distribution {
    Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    }
}

/// An upsert of the domain `n.<org>.example` (canonical), padded with `pad` bytes of text.
pub fn upsert(org: &str, n: u64, pad: usize) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: domain_value(org, n),
            }),
            confidence: (n % 101) as u32,
            valid_from_unix_ms: 1_700_000_000_000,
            tags: vec![format!("batch-{}", n / 10)],
            description: "x".repeat(pad),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The domain [`upsert`] (and so [`chain`]) asserts at seq `n` of `org`'s log.
fn domain_value(org: &str, n: u64) -> String {
    format!("d{n}.{}.example", org.to_ascii_lowercase())
}

/// [`domain_value`] as the canonical indicator the index keys it by.
pub fn chain_domain(signer: &Signer, n: u64) -> Indicator {
    intelmesh_core::indicator::normalize(
        IndicatorType::Domain,
        &domain_value(signer.org().as_str(), n),
    )
    .expect("fixture domains are valid")
}

/// Fixture entries verified against `keys`, now (they must verify).
pub fn verified(keys: &StaticKeys, raws: Vec<pb::SignedEntry>) -> Vec<VerifiedEntry> {
    verify_batch(raws, keys, &VerifyConfig::at(intelmesh_core::now_unix_ms()))
        .into_iter()
        .map(|r| r.expect("fixture entries verify"))
        .collect()
}

/// The origins the multi-origin fixtures use.
pub const ORIGINS: [&str; 3] = ["AU-AFP", "BR-PF", "SG-IGCI"];

/// `count` consecutive entries of `signer` after `head`, issued at fixed times, each payload
/// padded with `pad` bytes.
pub fn chain(
    signer: &Signer,
    head: Option<Head>,
    count: u64,
    pad: usize,
) -> (Vec<pb::SignedEntry>, Option<Head>) {
    let mut head = head;
    let mut out = Vec::new();
    for _ in 0..count {
        let n = head.map_or(1, |h| h.seq + 1);
        let payload = upsert(signer.org().as_str(), n, pad);
        let (entry, next) =
            signer.sign_next(head, 1_700_000_000_000 + n as i64, &green(), &payload);
        out.push(entry);
        head = Some(next);
    }
    (out, head)
}

/// Hex SHA-256 over an entry's header, signature and payload bytes: "byte for byte" in one word.
pub fn entry_digest(e: &pb::SignedEntry) -> String {
    let mut bytes = e.header.to_vec();
    bytes.extend_from_slice(&e.signature);
    if let Some(p) = &e.payload {
        bytes.push(1);
        bytes.extend_from_slice(p);
    }
    hex::encode(sha256(&bytes))
}
