//! Signature checks per second: this crate's (`signature::Batch`, `verify_one`) against
//! ed25519-zebra's, whose verdicts they give, on batches of entries from distinct origins (a
//! relayed frame) and alone. `cargo bench -p intelmesh-core --bench signatures`.

use std::time::Instant;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use ed25519_zebra::{batch, VerificationKey, VerificationKeyBytes};
use intelmesh_core::signature::{verify_one, Batch};

const KEYS: usize = 64;
const SIGNATURES: usize = 20_000;

fn main() {
    let signed: Vec<(VerifyingKey, Vec<u8>, Signature)> = (0..KEYS)
        .map(|i| {
            let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let message = vec![i as u8; 200];
            let sig = key.sign(&message);
            (key.verifying_key(), message, sig)
        })
        .collect();
    let nth = |i: usize| &signed[i % KEYS];
    for size in [1, 2, 4, 16, 64] {
        let rounds = SIGNATURES / size;
        let ours = per_signature(rounds * size, || {
            for r in 0..rounds {
                let mut b = Batch::default();
                for (key, message, sig) in (0..size).map(|j| nth(r + j)) {
                    b.queue(key, message, sig);
                }
                assert!(b.verify());
            }
        });
        let zebra = per_signature(rounds * size, || {
            for r in 0..rounds {
                let mut b = batch::Verifier::new();
                for (key, message, sig) in (0..size).map(|j| nth(r + j)) {
                    b.queue((
                        VerificationKeyBytes::from(key.to_bytes()),
                        *sig,
                        &message[..],
                    ));
                }
                assert!(b.verify(rand::rngs::OsRng).is_ok());
            }
        });
        println!("batch of {size:>2} under distinct keys: {ours:6.2} µs per signature (ed25519-zebra {zebra:6.2})");
    }
    let ours = per_signature(SIGNATURES, || {
        for (key, message, sig) in (0..SIGNATURES).map(nth) {
            assert!(verify_one(key, message, sig));
        }
    });
    let zebra = per_signature(SIGNATURES, || {
        for (key, message, sig) in (0..SIGNATURES).map(nth) {
            let vk = VerificationKey::try_from(key.to_bytes()).expect("a key");
            assert!(vk.verify(sig, message).is_ok());
        }
    });
    println!("one alone: {ours:6.2} µs per signature (ed25519-zebra {zebra:6.2})");
}

/// Microseconds per signature of `run`, which checks `count` signatures.
fn per_signature(count: usize, run: impl FnOnce()) -> f64 {
    let t = Instant::now();
    run();
    t.elapsed().as_secs_f64() * 1e6 / count as f64
}
