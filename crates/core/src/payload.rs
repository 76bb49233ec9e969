//! The payload as it travels: a fresh random nonce that makes the header's commitment hiding,
//! and, for restricted levels, padding to a bucket length so the length says nothing.
//!
//! A stub (an entry without its payload) carries the signed header, so whatever the header says
//! of the payload is known to every member. With a plain hash of the payload, a member holding
//! a RED stub could confirm a guess of the value in microseconds (the whole IPv4 space in
//! hours, a domain from a word list). The header therefore commits to the payload bytes, which
//! include at least [`MIN_NONCE_LEN`] random bytes the stub holder never sees, and the length of
//! an AMBER+STRICT or RED payload is always one of [`PAD_BUCKETS`].

use intelmesh_proto::v1 as pb;
use prost::Message;
use rand::RngCore;

use crate::entry::MAX_PAYLOAD_BYTES;

/// Nonce length signers use: 128 bits, enough that no guess can be tested against the
/// commitment.
pub const NONCE_LEN: usize = 16;
/// Shortest nonce a receiver accepts.
pub const MIN_NONCE_LEN: usize = NONCE_LEN;
/// Longest nonce a receiver accepts (a signer may lengthen it by a byte or two to hit a bucket).
pub const MAX_NONCE_LEN: usize = 64;
/// The lengths a restricted payload may have. The smallest holds any single indicator value
/// with a short description, so an IPv4 address and a long domain look the same.
pub const PAD_BUCKETS: [usize; 8] = [
    512,
    1024,
    2 * 1024,
    4 * 1024,
    8 * 1024,
    16 * 1024,
    32 * 1024,
    MAX_PAYLOAD_BYTES,
];

/// Whether `len` is a length a restricted payload may have.
pub fn is_bucket(len: u64) -> bool {
    PAD_BUCKETS.iter().any(|&b| b as u64 == len)
}

/// Encodes `payload` for signing with a fresh nonce; with `restricted`, padded to the smallest
/// bucket that holds it. A payload too big for any bucket is returned unpadded, and receivers
/// refuse it (callers check [`sealed_len`] first).
pub fn seal(payload: &pb::Payload, restricted: bool) -> Vec<u8> {
    let mut rng = rand::rngs::OsRng;
    let mut fresh = |len: usize| {
        let mut nonce = vec![0; len];
        rng.fill_bytes(&mut nonce);
        nonce
    };
    let mut p = payload.clone();
    p.padding.clear();
    p.nonce = fresh(NONCE_LEN);
    if !restricted {
        return p.encode_to_vec();
    }
    if let Some((nonce_len, padding)) = padding_plan(&p) {
        p.nonce = fresh(nonce_len);
        p.padding = vec![0; padding];
    }
    p.encode_to_vec()
}

/// The encoded length [`seal`] gives `payload`.
pub fn sealed_len(payload: &pb::Payload, restricted: bool) -> usize {
    let mut p = payload.clone();
    p.padding.clear();
    p.nonce = vec![0; NONCE_LEN];
    let base = p.encoded_len();
    if !restricted {
        return base;
    }
    match padding_plan(&p) {
        Some((nonce_len, padding)) => {
            p.nonce = vec![0; nonce_len];
            p.padding = vec![0; padding];
            p.encoded_len()
        }
        None => base,
    }
}

/// For a payload holding a [`NONCE_LEN`] nonce and no padding: the nonce length and padding
/// length that bring its encoding to the smallest bucket possible, if any bucket holds it.
///
/// The padding field costs a tag byte and a varint length besides its content, and an empty
/// field is not encoded at all, so some remainders cannot be filled by padding alone (1, 2,
/// 130 and 16387 bytes); one or two more nonce bytes always make them fillable.
fn padding_plan(p: &pb::Payload) -> Option<(usize, usize)> {
    let base = p.encoded_len();
    for &bucket in PAD_BUCKETS.iter().filter(|&&b| b >= base) {
        for extra in 0..=2 {
            let Some(rest) = bucket.checked_sub(base + extra) else {
                continue;
            };
            if let Some(padding) = padding_filling(rest) {
                return Some((NONCE_LEN + extra, padding));
            }
        }
    }
    None
}

/// The padding content length whose field (tag 15, varint length, content) is exactly `rest`
/// bytes; `Some(0)` for no field at all.
fn padding_filling(rest: usize) -> Option<usize> {
    if rest == 0 {
        return Some(0);
    }
    (1..=3).find_map(|len_bytes| {
        let content = rest.checked_sub(1 + len_bytes)?;
        (content > 0 && prost::encoding::encoded_len_varint(content as u64) == len_bytes)
            .then_some(content)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn upsert(value: &str, description_len: usize) -> pb::Payload {
        pb::Payload {
            body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(pb::IndicatorRef {
                    r#type: pb::IndicatorType::Domain as i32,
                    value: value.into(),
                }),
                confidence: 80,
                description: "d".repeat(description_len),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn restricted_payloads_of_different_indicators_have_one_length() {
        let ip = pb::Payload {
            body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(pb::IndicatorRef {
                    r#type: pb::IndicatorType::Ipv4 as i32,
                    value: "10.0.0.1".into(),
                }),
                ..Default::default()
            })),
            ..Default::default()
        };
        let long_domain = upsert(&format!("{}.example", "a".repeat(60)), 0);
        let (a, b) = (seal(&ip, true), seal(&long_domain, true));
        assert_eq!(a.len(), 512);
        assert_eq!(b.len(), 512);
        assert_ne!(
            seal(&ip, false).len(),
            seal(&long_domain, false).len(),
            "unrestricted payloads are not padded"
        );
    }

    #[test]
    fn every_seal_carries_a_fresh_nonce() {
        let p = upsert("c2.example", 0);
        let (a, b) = (seal(&p, false), seal(&p, false));
        assert_ne!(a, b);
        let decoded = pb::Payload::decode(a.as_slice()).unwrap();
        assert_eq!(decoded.nonce.len(), NONCE_LEN);
        assert_eq!(decoded.body, p.body);
    }

    #[test]
    fn awkward_remainders_are_filled() {
        for rest in [0, 1, 2, 3, 129, 130, 131, 16386, 16387, 16388] {
            let filled =
                (0..=2).any(|extra| rest >= extra && padding_filling(rest - extra).is_some());
            assert!(filled, "remainder {rest}");
        }
        assert_eq!(padding_filling(1), None);
        assert_eq!(padding_filling(2), None);
        assert_eq!(padding_filling(130), None);
        assert_eq!(padding_filling(16387), None);
    }

    proptest! {
        #[test]
        fn restricted_seals_are_a_bucket_long_and_decode_to_the_payload(len in 0usize..70_000) {
            let p = upsert("c2.example", len);
            let sealed = seal(&p, true);
            prop_assert_eq!(sealed.len(), sealed_len(&p, true));
            let decoded = pb::Payload::decode(sealed.as_slice()).unwrap();
            prop_assert_eq!(&decoded.body, &p.body);
            prop_assert!(decoded.nonce.len() >= MIN_NONCE_LEN && decoded.nonce.len() <= MAX_NONCE_LEN);
            if sealed.len() <= MAX_PAYLOAD_BYTES {
                prop_assert!(is_bucket(sealed.len() as u64), "{} bytes", sealed.len());
            } else {
                prop_assert!(sealed_len(&p, false) > MAX_PAYLOAD_BYTES, "only what no bucket holds stays unpadded");
            }
        }
    }
}
