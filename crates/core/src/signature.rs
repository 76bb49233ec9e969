//! The one signature rule: what every path that checks a signature accepts (a link's batches,
//! the node's own entries before they are stored, `verify-store`, fork proofs), so that no two
//! nodes, and no two batches, ever disagree about an entry.
//!
//! ed25519 implementations differ at the edges. ed25519-dalek's batch check is cofactorless with
//! weights derived from the batch, while its single check (`verify_strict`) compares encodings:
//! a signature whose R has a small-order part, made with the origin's real key, passed one and
//! failed the other depending on what else was in its batch, and an honest store then failed
//! `verify-store`. The rule here is:
//!
//! 1. Refuse, before any curve arithmetic, what no honest signer produces: an R that is not a
//!    canonical encoding, an R of small order, an S not reduced mod l, a key of small order
//!    ([`check_components`]).
//! 2. Then the ZIP-215 equation `[8][s]B = [8]R + [8][k]A` (`zip215`, which gives
//!    ed25519-zebra's verdicts), for which batch and single verification agree on every input,
//!    in every batch.

use std::sync::OnceLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, VerifyingKey};

use crate::zip215;

/// Why a signature was refused before the verification equation was tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureDefect {
    #[error("R is not a canonical point encoding")]
    RNotCanonical,
    #[error("R is a point of small order")]
    RSmallOrder,
    #[error("S is not reduced modulo the group order")]
    SNotCanonical,
    #[error("the signing key is a point of small order")]
    WeakKey,
}

/// Checks what can be checked of a signature without the message: the same for every path.
pub fn check_components(sig: &Signature, key: &VerifyingKey) -> Result<(), SignatureDefect> {
    let r = sig.r_bytes();
    if !is_canonical_y(r) {
        return Err(SignatureDefect::RNotCanonical);
    }
    if small_order_encodings().contains(r) {
        return Err(SignatureDefect::RSmallOrder);
    }
    if Option::<Scalar>::from(Scalar::from_canonical_bytes(*sig.s_bytes())).is_none() {
        return Err(SignatureDefect::SNotCanonical);
    }
    if is_small_order_key(key) {
        return Err(SignatureDefect::WeakKey);
    }
    Ok(())
}

/// Whether `key`'s point is of small order. A key with a canonical y is looked up among
/// [`small_order_encodings`], which lists every such encoding of a small-order point; a key
/// encoded with a non-canonical y (38 encodings) is checked on the point. That check
/// (`VerifyingKey::is_weak`) inverts a field element: made for every entry of a frame whose
/// entries come from many origins, it was 1.3% of a federation's CPU.
fn is_small_order_key(key: &VerifyingKey) -> bool {
    let bytes = key.as_bytes();
    match is_canonical_y(bytes) {
        true => small_order_encodings().contains(bytes),
        false => key.is_weak(),
    }
}

/// Whether the y coordinate of an encoded point (sign bit aside) is below p = 2^255 - 19.
fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let top = bytes[31] & 0x7f;
    !(top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[0] >= 0xed)
}

/// Every canonical-y encoding of a point of small order: the eight torsion points, and for the
/// two with x = 0 also the encoding with the sign bit set (a non-canonical sign that
/// decompression accepts).
fn small_order_encodings() -> &'static [[u8; 32]] {
    static ENCODINGS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    ENCODINGS.get_or_init(|| {
        let mut out = Vec::with_capacity(10);
        for point in EIGHT_TORSION {
            let bytes = point.compress().to_bytes();
            out.push(bytes);
            let mut flipped = bytes;
            flipped[31] ^= 0x80;
            // Flipping the sign of a point with x != 0 gives its negation, another torsion
            // point already listed; with x = 0 it gives a second encoding of the same point.
            if !out.contains(&flipped)
                && curve25519_dalek::edwards::CompressedEdwardsY(flipped)
                    .decompress()
                    .is_some_and(|p| p == point)
            {
                out.push(flipped);
            }
        }
        out
    })
}

thread_local! {
    /// Signatures this thread checked one by one ([`verify_one`]).
    static CHECKED_ALONE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Verifies one signature (components already checked).
pub fn verify_one(key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
    CHECKED_ALONE.with(|n| n.set(n.get() + 1));
    zip215::verify(key, message, sig)
}

/// How many signatures this thread has checked one by one: what a test reads to show that a
/// signature many entries share is checked once.
pub fn checked_alone() -> u64 {
    CHECKED_ALONE.with(std::cell::Cell::get)
}

/// Signatures checked together; [`Batch::verify`] is true iff every one would pass
/// [`verify_one`] (up to a 2^-128 chance of accepting a bad one, the usual batch bound).
#[derive(Default)]
pub struct Batch(zip215::Batch);

impl Batch {
    pub fn queue(&mut self, key: &VerifyingKey, message: &[u8], sig: &Signature) {
        self.0.queue(key, message, sig);
    }

    pub fn verify(self) -> bool {
        // The weights come from the thread's CSPRNG (seeded from the OS, reseeded as it goes):
        // drawing each from the OS was a system call per signature.
        self.0.is_empty() || self.0.verify(&mut rand::thread_rng())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn small_order_encodings_are_all_small_order_points() {
        let list = small_order_encodings();
        assert_eq!(
            list.len(),
            10,
            "8 points, two of them with a second sign encoding"
        );
        for bytes in list {
            let p = CompressedEdwardsY(*bytes).decompress().expect("decodes");
            assert!(p.is_small_order());
        }
    }

    #[test]
    fn canonical_y_boundary() {
        let mut p_minus_1 = [0xff; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        assert!(is_canonical_y(&p_minus_1));
        let mut p = p_minus_1;
        p[0] = 0xed;
        assert!(!is_canonical_y(&p));
        p[31] |= 0x80;
        assert!(!is_canonical_y(&p), "the sign bit does not matter");
    }

    #[test]
    fn an_honest_signature_passes_alone_and_in_a_batch() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let sig = key.sign(b"hello");
        let vk = key.verifying_key();
        assert_eq!(check_components(&sig, &vk), Ok(()));
        assert!(verify_one(&vk, b"hello", &sig));
        assert!(!verify_one(&vk, b"hellp", &sig));
        let mut b = Batch::default();
        b.queue(&vk, b"hello", &sig);
        assert!(b.verify());
        let mut b = Batch::default();
        b.queue(&vk, b"hellp", &sig);
        assert!(!b.verify());
    }

    #[test]
    fn small_order_keys_are_told_from_their_encoding_as_on_the_point() {
        // Every encoding with a non-canonical y (y = p + 0 ..= p + 18, either sign bit), every
        // listed small-order encoding, and keys of honest signers.
        let mut encodings: Vec<[u8; 32]> = Vec::new();
        for extra in 0u8..19 {
            for sign in [0u8, 0x80] {
                let mut y = [0xff; 32];
                y[0] = 0xed + extra;
                y[31] = 0x7f | sign;
                encodings.push(y);
            }
        }
        encodings.extend_from_slice(small_order_encodings());
        for seed in 0..64u8 {
            encodings.push(
                SigningKey::from_bytes(&[seed; 32])
                    .verifying_key()
                    .to_bytes(),
            );
        }
        let (mut weak, mut keys) = (0, 0);
        for bytes in &encodings {
            let Ok(key) = VerifyingKey::from_bytes(bytes) else {
                continue;
            };
            keys += 1;
            assert_eq!(is_small_order_key(&key), key.is_weak(), "{bytes:02x?}");
            weak += usize::from(key.is_weak());
        }
        // The ten listed, and those of the non-canonical encodings that decode (y = p and
        // y = p + 1 are 0 and 1, points of small order, both signs decoding).
        assert_eq!(weak, 10 + 4);
        assert!(keys >= weak + 64);
    }
}

/// Signatures no honest signer makes, made with a real key: for tests that every path treats
/// them alike.
#[cfg(any(test, feature = "test-support"))]
pub mod craft {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::edwards::EdwardsPoint;
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signature, SigningKey};

    fn challenge(r: &[u8; 32], key: &SigningKey, message: &[u8]) -> Scalar {
        crate::zip215::challenge_of(r, key.verifying_key().as_bytes(), message)
    }

    fn signature(r: &EdwardsPoint, s: Scalar) -> Signature {
        encoded_signature(r.compress().to_bytes(), s)
    }

    fn encoded_signature(r: [u8; 32], s: Scalar) -> Signature {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r);
        bytes[32..].copy_from_slice(&s.to_bytes());
        Signature::from_bytes(&bytes)
    }

    /// R is a point of order 8 and s = k·x: passes the cofactored equation, fails the
    /// cofactorless one, and passed a cofactorless batch check one time in eight.
    pub fn small_order_r(key: &SigningKey, message: &[u8]) -> Signature {
        small_order_r_encoded(key, message, EIGHT_TORSION[1].compress().to_bytes())
    }

    /// [`small_order_r`] with R given by its encoding `r`, canonical or not, and k taken over
    /// those bytes: passes the cofactored equation only where R is hashed as sent.
    pub fn small_order_r_encoded(key: &SigningKey, message: &[u8], r: [u8; 32]) -> Signature {
        let k = challenge(&r, key, message);
        encoded_signature(r, k * key.to_scalar())
    }

    /// R = r·B + T with T of order 8 (so R has a small-order part, but not small order).
    pub fn mixed_order_r(key: &SigningKey, message: &[u8], nonce: u64) -> Signature {
        let r = Scalar::from(nonce.wrapping_add(12_345));
        let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1];
        let k = challenge(&big_r.compress().to_bytes(), key, message);
        signature(&big_r, r + k * key.to_scalar())
    }

    /// The same signature with S + l in place of S: the same scalar mod l, not reduced.
    pub fn non_canonical_s(sig: &Signature) -> Signature {
        // s + l is still < 2^256 for any reduced s, and encodes the same scalar mod l.
        // The group order l = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let l: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let s = sig.s_bytes();
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(l[i]) + carry;
            sum[i] = v as u8;
            carry = v >> 8;
        }
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(sig.r_bytes());
        bytes[32..].copy_from_slice(&sum);
        Signature::from_bytes(&bytes)
    }
}
