//! One signature rule on every path: a signature is accepted alone exactly when it is accepted
//! in any batch, whatever else the batch holds and wherever it sits.

use ed25519_dalek::{Signature, SigningKey};
use intelmesh_core::entry::signed_message;
use intelmesh_core::signature::craft;
use intelmesh_core::verify::{verify_batch, verify_batch_parallel, verify_entry, SignatureDefect};
use intelmesh_core::{Distribution, OrgId, Signer, StaticKeys, Tlp, VerifyConfig, VerifyError};
use intelmesh_proto::v1 as pb;
use rand::seq::SliceRandom;
use rand::SeedableRng;

const NOW: i64 = 1_800_000_000_000;

fn signer(org: &str, seed: u8) -> Signer {
    Signer::new(
        OrgId::parse(org).unwrap(),
        SigningKey::from_bytes(&[seed; 32]),
    )
}

fn upsert(value: &str) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: value.into(),
            }),
            confidence: 50,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn green() -> Distribution {
    Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    }
}

/// An honest entry of `s` at seq 1, with its signature replaced by `forge(message)`.
fn crafted(s: &Signer, value: &str, forge: impl Fn(&[u8]) -> Signature) -> pb::SignedEntry {
    let (mut entry, _) = s.sign_next(None, NOW, &green(), &upsert(value));
    entry.signature = forge(&signed_message(&entry.header))
        .to_bytes()
        .to_vec()
        .into();
    entry
}

/// What each path says about `odd`: alone, and in 64 batches of honest entries of two origins
/// (shuffled, so its position and company vary), on one thread and spread over several.
fn verdicts(odd: &pb::SignedEntry, keys: &StaticKeys, honest: &[pb::SignedEntry]) -> Vec<bool> {
    let cfg = VerifyConfig::at(NOW);
    let mut out = vec![verify_entry(odd.clone(), keys, &cfg).is_ok()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..64 {
        let mut batch: Vec<pb::SignedEntry> = honest.iter().take(1 + round % 40).cloned().collect();
        batch.push(odd.clone());
        batch.shuffle(&mut rng);
        let at = batch.iter().position(|e| e == odd).unwrap();
        let results = if round % 2 == 0 {
            verify_batch(batch, keys, &cfg)
        } else {
            verify_batch_parallel(batch, keys, &cfg, 8)
        };
        for (i, r) in results.iter().enumerate() {
            if i != at {
                assert!(
                    r.is_ok(),
                    "an honest entry was refused next to the crafted one: {r:?}"
                );
            }
        }
        out.push(results[at].is_ok());
    }
    out
}

fn setup() -> (Signer, StaticKeys, Vec<pb::SignedEntry>) {
    let s = signer("AU-AFP", 1);
    let other = signer("BR-PF", 2);
    let mut keys = StaticKeys::default();
    keys.insert(s.org().clone(), s.verifying_key());
    keys.insert(other.org().clone(), other.verifying_key());
    let honest = (0..40)
        .map(|i| {
            let who = if i % 2 == 0 { &s } else { &other };
            who.sign_next(None, NOW, &green(), &upsert(&format!("h{i}.example")))
                .0
        })
        .collect();
    (s, keys, honest)
}

#[test]
fn a_small_order_r_is_refused_on_every_path() {
    let (s, keys, honest) = setup();
    let odd = crafted(&s, "small.example", |m| {
        craft::small_order_r(s.signing_key(), m)
    });
    assert!(verdicts(&odd, &keys, &honest).iter().all(|ok| !ok));
    assert_eq!(
        verify_entry(odd, &keys, &VerifyConfig::at(NOW)).unwrap_err(),
        VerifyError::MalformedSignature {
            origin: s.org().clone(),
            seq: 1,
            defect: SignatureDefect::RSmallOrder
        }
    );
}

#[test]
fn a_non_canonical_s_is_refused_on_every_path() {
    let (s, keys, honest) = setup();
    let (good, _) = s.sign_next(None, NOW, &green(), &upsert("s.example"));
    let sig = Signature::from_slice(&good.signature).unwrap();
    let odd = pb::SignedEntry {
        signature: craft::non_canonical_s(&sig).to_bytes().to_vec().into(),
        ..good
    };
    assert!(verdicts(&odd, &keys, &honest).iter().all(|ok| !ok));
    assert!(matches!(
        verify_entry(odd, &keys, &VerifyConfig::at(NOW)),
        Err(VerifyError::MalformedSignature {
            defect: SignatureDefect::SNotCanonical,
            ..
        })
    ));
}

#[test]
fn an_r_with_a_small_order_part_gets_one_verdict_everywhere() {
    let (s, keys, honest) = setup();
    for nonce in 0..4 {
        let odd = crafted(&s, &format!("mixed{nonce}.example"), |m| {
            craft::mixed_order_r(s.signing_key(), m, nonce)
        });
        let v = verdicts(&odd, &keys, &honest);
        assert!(
            v.iter().all(|ok| *ok == v[0]),
            "paths disagree on a mixed-order R: {v:?}"
        );
    }
}

#[test]
fn honest_and_bad_signatures_are_told_apart_in_any_batch() {
    let (s, keys, honest) = setup();
    let (mut bad, _) = s.sign_next(None, NOW, &green(), &upsert("bad.example"));
    let mut sig = bad.signature.to_vec();
    sig[40] ^= 1;
    bad.signature = sig.into();
    assert!(verdicts(&bad, &keys, &honest).iter().all(|ok| !ok));
}
