//! Fork proofs: made from two entries an origin signed, checked by anyone with its keys.

mod common;

use intelmesh_core::entry::withheld_stub;
use intelmesh_core::evidence::{chain_break, check, equivocation, EvidenceError, ForkKind};
use intelmesh_core::verify::{verify_entry, VerifyConfig};
use intelmesh_core::{Distribution, SeqRange, StaticKeys, Tlp, VerifiedEntry};
use intelmesh_proto::v1 as pb;

use common::{keys_of as keys, signer};

const NOW: i64 = 1_800_000_000_000;

fn red() -> Distribution {
    Distribution {
        tlp: Tlp::Red,
        recipients: vec![],
    }
}

fn sighting(value: &str) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Sighting(pb::Sighting {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: value.into(),
            }),
            seen_at_unix_ms: NOW,
            count: 1,
        })),
        ..Default::default()
    }
}

fn verified(e: &pb::SignedEntry, k: &StaticKeys) -> VerifiedEntry {
    verify_entry(e.clone(), k, &VerifyConfig::at(NOW)).unwrap()
}

#[test]
fn an_equivocation_proof_checks_and_carries_no_payload() {
    let s = signer("AU-AFP", 1);
    let k = keys(&[&s]);
    let (a, _) = s.sign_next(None, NOW, &red(), &sighting("a.example"));
    let (b, _) = s.sign_next(None, NOW, &red(), &sighting("b.example"));
    let proof = equivocation(&a, &verified(&b, &k), NOW);
    assert!(proof.kept.as_ref().unwrap().payload.is_none());
    assert!(proof.conflicting.as_ref().unwrap().payload.is_none());
    let fork = check(proof.clone(), &k)
        .expect("valid proof")
        .fork()
        .clone();
    assert_eq!(fork.kind, ForkKind::Equivocation);
    assert_eq!((fork.origin.as_str(), fork.seq), ("AU-AFP", 1));

    // The same entry twice is no conflict.
    let same = equivocation(&a, &verified(&a, &k), NOW);
    assert!(matches!(
        check(same, &k),
        Err(EvidenceError::NoConflict { .. })
    ));
}

#[test]
fn a_signed_chain_break_is_evidence_too() {
    let s = signer("AU-AFP", 1);
    let k = keys(&[&s]);
    let (first, _) = s.sign_next(None, NOW, &red(), &sighting("a.example"));
    let (other_first, other_head) = s.sign_next(None, NOW, &red(), &sighting("b.example"));
    let (second_of_other, _) = s.sign_next(Some(other_head), NOW, &red(), &sighting("c.example"));
    let proof = chain_break(&first, &verified(&second_of_other, &k), NOW);
    let fork = check(proof, &k).expect("valid proof").fork().clone();
    assert_eq!((fork.kind, fork.seq), (ForkKind::ChainBreak, 2));

    // A successor that does link is no evidence.
    let linked = chain_break(&other_first, &verified(&second_of_other, &k), NOW);
    assert!(matches!(
        check(linked, &k),
        Err(EvidenceError::NoConflict { .. })
    ));
}

#[test]
fn proofs_that_do_not_hold_up_are_refused_with_the_reason() {
    let s = signer("AU-AFP", 1);
    let other = signer("BR-PF", 2);
    let k = keys(&[&s, &other]);
    let (a, _) = s.sign_next(None, NOW, &red(), &sighting("a.example"));
    let (b, _) = s.sign_next(None, NOW, &red(), &sighting("b.example"));
    let good = equivocation(&a, &verified(&b, &k), NOW);

    // Another origin's entry in the proof.
    let (x, _) = other.sign_next(None, NOW, &red(), &sighting("x.example"));
    let mixed = pb::ForkProof {
        kept: Some(withheld_stub(&x)),
        ..good.clone()
    };
    assert!(matches!(
        check(mixed, &k),
        Err(EvidenceError::Mismatch { .. })
    ));

    // A side with a forged signature.
    let mut forged = b.clone();
    let mut sig = forged.signature.to_vec();
    sig[3] ^= 1;
    forged.signature = sig.into();
    let bad = pb::ForkProof {
        conflicting: Some(forged),
        ..good.clone()
    };
    let err = check(bad, &k).unwrap_err();
    assert!(
        matches!(
            err,
            EvidenceError::Entry {
                side: "conflicting",
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_unverifiable_yet());

    // A side missing, a seq that is not the conflicting entry's, an origin not well-formed.
    let missing = pb::ForkProof {
        kept: None,
        ..good.clone()
    };
    assert!(matches!(
        check(missing, &k),
        Err(EvidenceError::Missing { side: "kept", .. })
    ));
    let wrong_seq = pb::ForkProof {
        seq: 7,
        ..good.clone()
    };
    assert!(matches!(
        check(wrong_seq, &k),
        Err(EvidenceError::Mismatch { .. })
    ));
    let bad_origin = pb::ForkProof {
        origin: "au_afp".into(),
        ..good.clone()
    };
    assert!(matches!(
        check(bad_origin, &k),
        Err(EvidenceError::Origin(_))
    ));

    // Keys this node does not hold: cannot be checked yet.
    let err = check(good.clone(), &keys(&[&other])).unwrap_err();
    assert!(err.is_unverifiable_yet(), "{err}");

    // Payloads in a received proof are dropped: a proof passed on never carries one.
    let with_payload = pb::ForkProof {
        kept: Some(a.clone()),
        conflicting: Some(b.clone()),
        ..good
    };
    let checked = check(with_payload, &k).expect("valid proof");
    assert!(checked.proof().kept.as_ref().unwrap().payload.is_none());
    assert!(checked
        .proof()
        .conflicting
        .as_ref()
        .unwrap()
        .payload
        .is_none());
}

#[test]
fn a_proof_past_its_keys_end_is_moot_not_invalid() {
    // A chain break at seq 2, proved while the key was in force; then the roster ends the key
    // at seq 1 (the member rotated, or reported it compromised, at its last good seq).
    let s = signer("AU-AFP", 1);
    let k = keys(&[&s]);
    let (first, _) = s.sign_next(None, NOW, &red(), &sighting("a.example"));
    let (_, other_head) = s.sign_next(None, NOW, &red(), &sighting("b.example"));
    let (second_of_other, _) = s.sign_next(Some(other_head), NOW, &red(), &sighting("c.example"));
    let proof = chain_break(&first, &verified(&second_of_other, &k), NOW);
    assert!(check(proof.clone(), &k).is_ok());

    let mut ended = StaticKeys::default();
    ended.insert_range(
        s.org().clone(),
        s.verifying_key(),
        SeqRange {
            first: 1,
            last: Some(1),
        },
    );
    let err = check(proof, &ended).expect_err("its second entry is past the key's end");
    assert!(err.is_past_key_end(), "{err}");
    assert!(!err.is_unverifiable_yet(), "{err}");

    // A forged proof is not moot: it stays invalid, whatever the key's range.
    let (a, _) = s.sign_next(None, NOW, &red(), &sighting("a.example"));
    let mut forged = equivocation(&a, &verified(&second_of_other, &k), NOW);
    if let Some(c) = forged.conflicting.as_mut() {
        c.signature = vec![0; 64].into();
    }
    let err = check(forged, &k).expect_err("a zeroed signature");
    assert!(!err.is_past_key_end(), "{err}");
}
