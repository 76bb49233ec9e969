//! The ZIP-215 verification equation `[8][s]B = [8]R + [8][k]A`, alone and batched, over
//! signing keys already decoded: a key's point was decompressed when the key was read, and is
//! not decompressed again for each signature (ed25519-zebra takes key bytes and decompresses
//! them once per signature, or once per key in a batch, which at a node receiving entries of
//! many origins is once per signature: half of its point decompressions). Accepts exactly what
//! ed25519-zebra accepts, alone and in any batch (the tests compare them).

use std::collections::HashMap;
use std::iter::once;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::{CryptoRng, Rng};
use sha2::{Digest, Sha512};

/// k = H(R ‖ A ‖ M) mod l, with A as the key's own encoding.
fn challenge(key: &VerifyingKey, message: &[u8], sig: &Signature) -> Scalar {
    challenge_of(sig.r_bytes(), key.as_bytes(), message)
}

/// k = H(R ‖ A ‖ M) mod l over R's and A's encodings as given (also what `signature::craft`
/// signs with).
pub(crate) fn challenge_of(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
    let digest = Sha512::new()
        .chain_update(r)
        .chain_update(key)
        .chain_update(message)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&digest);
    Scalar::from_bytes_mod_order_wide(&wide)
}

/// R as a point and s as a scalar; none if R does not decode or s is not reduced mod l.
fn decoded(sig: &Signature) -> Option<(EdwardsPoint, Scalar)> {
    let r = CompressedEdwardsY(*sig.r_bytes()).decompress()?;
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes()))?;
    Some((r, s))
}

/// Whether `sig` satisfies the equation for `key` and `message`.
pub fn verify(key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
    holds(&key.to_edwards(), challenge(key, message, sig), sig)
}

/// The equation for key point `a` and challenge `k`.
fn holds(a: &EdwardsPoint, k: Scalar, sig: &Signature) -> bool {
    let Some((r, s)) = decoded(sig) else {
        return false;
    };
    // R' = [s]B - [k]A; the equation holds iff [8](R - R') is the identity.
    let r_prime = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s);
    (r - r_prime).mul_by_cofactor().is_identity()
}

/// Signatures checked with one multiscalar multiplication: with random 128-bit weights z_i,
/// `[8]([-Σ z_i s_i]B + Σ [z_i]R_i + Σ_A [Σ_{i under A} z_i k_i]A) = 0`, the terms of
/// signatures under one key gathered into one.
#[derive(Default)]
pub struct Batch {
    /// Each distinct key (by encoding) with the challenges and signatures queued under it.
    keys: Vec<(EdwardsPoint, Vec<(Scalar, Signature)>)>,
    slot_of: HashMap<[u8; 32], usize>,
}

impl Batch {
    pub fn queue(&mut self, key: &VerifyingKey, message: &[u8], sig: &Signature) {
        let k = challenge(key, message, sig);
        let keys = &mut self.keys;
        let slot = *self.slot_of.entry(*key.as_bytes()).or_insert_with(|| {
            keys.push((key.to_edwards(), Vec::new()));
            keys.len() - 1
        });
        self.keys[slot].1.push((k, *sig));
    }

    /// A key is listed only with a signature queued under it.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True iff every queued signature would pass [`verify`] (an empty batch passes), up to
    /// a 2^-128 chance of passing a bad one, the usual batch bound; `rng` draws the weights.
    pub fn verify(self, rng: &mut (impl Rng + CryptoRng)) -> bool {
        if let [(a, sigs)] = &self.keys[..] {
            if let [(k, sig)] = &sigs[..] {
                // One signature: the double-base multiplication with the base point's
                // precomputed table costs about four fifths of a multiscalar one of three.
                return holds(a, *k, sig);
            }
        }
        let signatures = self.keys.iter().map(|(_, sigs)| sigs.len()).sum();
        let mut b_coeff = Scalar::ZERO;
        let mut a_coeffs = Vec::with_capacity(self.keys.len());
        let mut r_coeffs = Vec::with_capacity(signatures);
        let mut rs = Vec::with_capacity(signatures);
        for (_, sigs) in &self.keys {
            let mut a_coeff = Scalar::ZERO;
            for (k, sig) in sigs {
                let Some((r, s)) = decoded(sig) else {
                    return false;
                };
                let z = Scalar::from(rng.gen::<u128>());
                b_coeff -= z * s;
                rs.push(r);
                r_coeffs.push(z);
                a_coeff += z * k;
            }
            a_coeffs.push(a_coeff);
        }
        let check = EdwardsPoint::vartime_multiscalar_mul(
            once(&b_coeff).chain(&a_coeffs).chain(&r_coeffs),
            once(&ED25519_BASEPOINT_POINT)
                .chain(self.keys.iter().map(|(a, _)| a))
                .chain(&rs),
        );
        check.mul_by_cofactor().is_identity()
    }
}

#[cfg(test)]
mod tests {
    //! Verdicts compared with ed25519-zebra's, alone and batched, on honest signatures, wrong
    //! messages and the crafted edge cases of `signature::craft`.
    use super::*;
    use crate::signature::craft;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_dalek::{Signer, SigningKey};
    use ed25519_zebra::{batch, VerificationKey, VerificationKeyBytes};

    /// (key, message, signature) cases: honest ones, ones over another message, and crafted.
    fn cases() -> Vec<(VerifyingKey, Vec<u8>, Signature)> {
        let mut out = Vec::new();
        for seed in 0..6u8 {
            let sk = SigningKey::from_bytes(&[seed.wrapping_mul(37).wrapping_add(1); 32]);
            let vk = sk.verifying_key();
            let message = vec![seed; usize::from(seed) * 7];
            let sig = sk.sign(&message);
            out.push((vk, message.clone(), sig));
            out.push((vk, [&message[..], b"!"].concat(), sig));
            out.push((vk, message.clone(), craft::small_order_r(&sk, &message)));
            out.push((vk, message.clone(), craft::mixed_order_r(&sk, &message, 9)));
            out.push((vk, message.clone(), craft::non_canonical_s(&sig)));
            let mut r_off_curve = sig.to_bytes();
            // y = 2 has no x on the curve.
            r_off_curve[..32].copy_from_slice(&{
                let mut y = [0u8; 32];
                y[0] = 2;
                y
            });
            out.push((vk, message, Signature::from_bytes(&r_off_curve)));
        }
        // R the identity in its two other encodings (x = 0 with the sign bit set, and y = p + 1),
        // with s = k·a over R's bytes as sent: passes only if R is hashed as sent.
        let sk = SigningKey::from_bytes(&[77; 32]);
        let mut p_plus_1 = [0xff; 32];
        p_plus_1[0] = 0xee;
        p_plus_1[31] = 0x7f;
        let mut negative_zero = [0u8; 32];
        negative_zero[0] = 1;
        negative_zero[31] = 0x80;
        for r in [negative_zero, p_plus_1] {
            let message = b"odd R".to_vec();
            let sig = craft::small_order_r_encoded(&sk, &message, r);
            out.push((sk.verifying_key(), message, sig));
        }
        // A key of small order, with a signature of the identity: passes every ZIP-215 check.
        let weak = VerifyingKey::from_bytes(&EIGHT_TORSION[1].compress().to_bytes())
            .expect("a torsion point is a point");
        let mut identity = [0u8; 64];
        identity[0] = 1;
        out.push((weak, b"any".to_vec(), Signature::from_bytes(&identity)));
        out
    }

    fn zebra_one(key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
        VerificationKey::try_from(key.to_bytes()).is_ok_and(|vk| vk.verify(sig, message).is_ok())
    }

    fn zebra_batch(items: &[&(VerifyingKey, Vec<u8>, Signature)]) -> bool {
        let mut b = batch::Verifier::new();
        for (key, message, sig) in items {
            b.queue((
                VerificationKeyBytes::from(key.to_bytes()),
                *sig,
                &message[..],
            ));
        }
        b.verify(rand::rngs::OsRng).is_ok()
    }

    fn ours_batch(items: &[&(VerifyingKey, Vec<u8>, Signature)]) -> bool {
        let mut b = Batch::default();
        for (key, message, sig) in items {
            b.queue(key, message, sig);
        }
        b.verify(&mut rand::thread_rng())
    }

    #[test]
    fn one_signature_gets_zebras_verdict() {
        let cases = cases();
        let passing = cases.iter().filter(|(k, m, s)| verify(k, m, s)).count();
        for (key, message, sig) in &cases {
            assert_eq!(verify(key, message, sig), zebra_one(key, message, sig));
            assert_eq!(
                ours_batch(&[&(*key, message.clone(), *sig)]),
                verify(key, message, sig)
            );
        }
        // Honest, small-order R, mixed-order R (six keys each), the identity as R in two other
        // encodings, and the weak key's identity.
        assert_eq!(passing, 6 * 3 + 2 + 1);
    }

    #[test]
    fn every_pair_and_whole_batches_get_zebras_verdict() {
        let cases = cases();
        for a in &cases {
            for b in &cases {
                let pair = [a, b];
                assert_eq!(ours_batch(&pair), zebra_batch(&pair));
                assert_eq!(
                    ours_batch(&pair),
                    verify(&a.0, &a.1, &a.2) && verify(&b.0, &b.1, &b.2)
                );
            }
        }
        let passing: Vec<_> = cases.iter().filter(|(k, m, s)| verify(k, m, s)).collect();
        assert!(ours_batch(&passing));
        assert!(zebra_batch(&passing));
        let all: Vec<_> = cases.iter().collect();
        assert!(!ours_batch(&all));
        assert!(Batch::default().verify(&mut rand::thread_rng()));
    }
}
