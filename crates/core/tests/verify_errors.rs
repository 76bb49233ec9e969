//! Every way verification refuses an entry, from crafted input; and that good entries pass.

mod common;

use ed25519_dalek::SigningKey;
use intelmesh_core::entry::{
    payload_commitment, signed_message, MAX_PAYLOAD_BYTES, MAX_RECIPIENTS, ZERO_HASH,
};
use intelmesh_core::verify::{
    verify_batch, verify_batch_parallel, verify_entry, HeaderDefect, PayloadDefect,
};
use intelmesh_core::{Distribution, Signer, StaticKeys, Tlp, VerifyConfig, VerifyError};
use intelmesh_proto::v1 as pb;
use prost::Message;

use common::{keys_of, signer};

const NOW: i64 = 1_800_000_000_000;

fn green() -> Distribution {
    Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    }
}

fn domain_upsert(value: &str) -> Vec<u8> {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: value.into(),
            }),
            confidence: 90,
            ..Default::default()
        })),
        nonce: vec![7; 16],
        ..Default::default()
    }
    .encode_to_vec()
}

/// A payload as signers seal it: with a nonce.
fn with_nonce(body: pb::payload::Body) -> pb::Payload {
    pb::Payload {
        body: Some(body),
        nonce: vec![7; 16],
        ..Default::default()
    }
}

fn good(s: &Signer) -> pb::SignedEntry {
    s.sign_raw(1, ZERO_HASH, NOW, &green(), domain_upsert("evil.example"))
}

fn header_of(s: &Signer, seq: u64, prev: Vec<u8>, payload: &[u8]) -> pb::EntryHeader {
    pb::EntryHeader {
        origin: s.org().to_string(),
        seq,
        prev_hash: prev,
        payload_commitment: payload_commitment(payload).to_vec(),
        payload_len: payload.len() as u64,
        issued_at_unix_ms: NOW,
        key_id: s.key_id().0.to_vec(),
        distribution: Some(green().to_proto()),
        sealed: false,
    }
}

fn check(entry: pb::SignedEntry, keys: &StaticKeys) -> Result<(), VerifyError> {
    verify_entry(entry, keys, &VerifyConfig::at(NOW)).map(|_| ())
}

#[test]
fn good_entry_verifies_and_exposes_its_parts() {
    let s = signer("SG-IGCI", 1);
    let keys = keys_of(&[&s]);
    let v = verify_entry(good(&s), &keys, &VerifyConfig::at(NOW)).expect("verifies");
    assert_eq!(v.header().origin.as_str(), "SG-IGCI");
    assert_eq!(v.header().seq, 1);
    assert_eq!(
        v.payload().expect("has payload").indicator.value(),
        "evil.example"
    );
}

#[test]
fn oversized_header_is_refused_before_decoding() {
    let s = signer("SG-IGCI", 1);
    let mut e = good(&s);
    e.header = vec![0u8; 4097].into();
    assert_eq!(
        check(e, &keys_of(&[&s])),
        Err(VerifyError::HeaderTooLarge {
            len: 4097,
            max: 4096
        })
    );
}

#[test]
fn undecodable_header_is_malformed() {
    let s = signer("SG-IGCI", 1);
    let mut e = good(&s);
    e.header = vec![0xff, 0xff, 0xff].into();
    assert!(matches!(
        check(e, &keys_of(&[&s])),
        Err(VerifyError::MalformedHeader { .. })
    ));
}

#[test]
fn header_defects_are_named() {
    let s = signer("SG-IGCI", 1);
    let keys = keys_of(&[&s]);
    let payload = domain_upsert("evil.example");
    let base = || header_of(&s, 1, ZERO_HASH.to_vec(), &payload);
    let cases: Vec<(pb::EntryHeader, HeaderDefect)> = vec![
        (
            header_of(&s, 0, ZERO_HASH.to_vec(), &payload),
            HeaderDefect::ZeroSeq,
        ),
        (
            header_of(&s, 2, vec![1; 31], &payload),
            HeaderDefect::PrevHashLength(31),
        ),
        (
            header_of(&s, 1, vec![1; 32], &payload),
            HeaderDefect::FirstEntryHasPrev,
        ),
        (
            pb::EntryHeader {
                key_id: vec![1, 2, 3],
                ..base()
            },
            HeaderDefect::KeyIdLength(3),
        ),
        (
            pb::EntryHeader {
                payload_commitment: vec![0; 5],
                ..base()
            },
            HeaderDefect::PayloadCommitmentLength(5),
        ),
        (
            pb::EntryHeader {
                distribution: Some(pb::Distribution {
                    tlp: pb::Tlp::Red as i32,
                    recipients: vec![],
                }),
                ..base()
            },
            HeaderDefect::UnpaddedRestricted(payload.len() as u64),
        ),
        (
            pb::EntryHeader {
                distribution: None,
                ..base()
            },
            HeaderDefect::Tlp,
        ),
        (
            pb::EntryHeader {
                payload_len: 1 << 20,
                ..base()
            },
            HeaderDefect::PayloadLenOverCap(1 << 20),
        ),
        (
            pb::EntryHeader {
                issued_at_unix_ms: i64::MIN,
                ..base()
            },
            HeaderDefect::IssuedBeforeEpoch(i64::MIN),
        ),
        (
            pb::EntryHeader {
                distribution: Some(pb::Distribution {
                    tlp: pb::Tlp::Green as i32,
                    recipients: vec!["BR-PF".into()],
                }),
                ..base()
            },
            HeaderDefect::RecipientsUnrestricted,
        ),
        (
            // A header names at most MAX_RECIPIENTS readers, each costing every indexing node
            // keys: 65 short made-up ids fit in a header easily.
            pb::EntryHeader {
                distribution: Some(pb::Distribution {
                    tlp: pb::Tlp::Red as i32,
                    recipients: (0..=MAX_RECIPIENTS).map(|i| format!("X{i}")).collect(),
                }),
                ..base()
            },
            HeaderDefect::TooManyRecipients(MAX_RECIPIENTS + 1),
        ),
    ];
    for (header, defect) in cases {
        let e = s.sign_header(header.encode_to_vec(), Some(payload.clone()));
        match check(e, &keys) {
            Err(VerifyError::InvalidHeader { defect: got, .. }) => assert_eq!(got, defect),
            other => panic!("expected {defect:?}, got {other:?}"),
        }
    }
    for (header, what) in [
        (
            pb::EntryHeader {
                origin: "bad origin".into(),
                ..base()
            },
            "origin",
        ),
        (
            pb::EntryHeader {
                distribution: Some(pb::Distribution {
                    tlp: pb::Tlp::Red as i32,
                    recipients: vec!["no spaces".into()],
                }),
                ..base()
            },
            "recipient",
        ),
    ] {
        let e = s.sign_header(header.encode_to_vec(), Some(payload.clone()));
        let err = check(e, &keys).expect_err(what);
        assert!(matches!(
            err,
            VerifyError::InvalidHeader {
                defect: HeaderDefect::Origin(_) | HeaderDefect::Recipient(_),
                ..
            }
        ));
        assert!(err.to_string().contains("invalid"), "{err}");
    }
}

#[test]
fn short_signature_is_refused() {
    let s = signer("SG-IGCI", 1);
    let mut e = good(&s);
    e.signature = vec![0; 10].into();
    assert!(matches!(
        check(e, &keys_of(&[&s])),
        Err(VerifyError::InvalidHeader {
            defect: HeaderDefect::SignatureLength(10),
            ..
        })
    ));
}

#[test]
fn payload_binding_is_checked() {
    let s = signer("SG-IGCI", 1);
    let keys = keys_of(&[&s]);
    let org = s.org().clone();

    let mut too_big = good(&s);
    too_big.payload = Some(vec![0; MAX_PAYLOAD_BYTES + 1].into());
    assert_eq!(
        check(too_big, &keys),
        Err(VerifyError::PayloadTooLarge {
            origin: org.clone(),
            seq: 1,
            len: MAX_PAYLOAD_BYTES + 1,
            max: MAX_PAYLOAD_BYTES
        })
    );

    let mut longer = good(&s);
    let mut bytes = longer.payload.clone().unwrap().to_vec();
    let declared = bytes.len() as u64;
    bytes.push(0);
    longer.payload = Some(bytes.into());
    assert_eq!(
        check(longer, &keys),
        Err(VerifyError::PayloadLengthMismatch {
            origin: org.clone(),
            seq: 1,
            declared,
            actual: declared + 1
        })
    );

    let mut tampered = good(&s);
    let mut bytes = tampered.payload.clone().unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    tampered.payload = Some(bytes.into());
    let err = check(tampered, &keys).expect_err("tampered payload");
    assert_eq!(
        err,
        VerifyError::PayloadCommitmentMismatch {
            origin: org,
            seq: 1
        }
    );
    assert_eq!(
        err.to_string(),
        "SG-IGCI#1: payload does not match the header's commitment"
    );
}

#[test]
fn payload_must_be_valid_and_canonical() {
    let s = signer("SG-IGCI", 1);
    let keys = keys_of(&[&s]);
    let signed = |payload: Vec<u8>| s.sign_raw(1, ZERO_HASH, NOW, &green(), payload);

    match check(signed(domain_upsert("EVIL.example.")), &keys) {
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::NotCanonical { canonical, .. },
            ..
        }) => {
            assert_eq!(canonical, "evil.example")
        }
        other => panic!("expected NotCanonical, got {other:?}"),
    }
    assert!(matches!(
        check(signed(domain_upsert("not a domain")), &keys),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::InvalidValue(_),
            ..
        })
    ));
    assert!(matches!(
        check(signed(vec![0xff, 0xff]), &keys),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::Undecodable(_),
            ..
        })
    ));
    assert!(matches!(
        check(
            signed(
                pb::Payload {
                    body: None,
                    nonce: vec![7; 16],
                    ..Default::default()
                }
                .encode_to_vec()
            ),
            &keys
        ),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::MissingBody,
            ..
        })
    ));
    let over_100 = with_nonce(pb::payload::Body::Upsert(pb::IndicatorUpsert {
        indicator: Some(pb::IndicatorRef {
            r#type: pb::IndicatorType::Domain as i32,
            value: "evil.example".into(),
        }),
        confidence: 101,
        ..Default::default()
    }));
    assert!(matches!(
        check(signed(over_100.encode_to_vec()), &keys),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::Confidence(101),
            ..
        })
    ));
    let zero_sighting = with_nonce(pb::payload::Body::Sighting(pb::Sighting {
        indicator: Some(pb::IndicatorRef {
            r#type: pb::IndicatorType::Ipv4 as i32,
            value: "1.2.3.4".into(),
        }),
        seen_at_unix_ms: NOW,
        count: 0,
    }));
    assert!(matches!(
        check(signed(zero_sighting.encode_to_vec()), &keys),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::ZeroCount,
            ..
        })
    ));
    let no_indicator = with_nonce(pb::payload::Body::Revoke(pb::IndicatorRevoke {
        indicator: None,
        reason: String::new(),
    }));
    assert!(matches!(
        check(signed(no_indicator.encode_to_vec()), &keys),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::MissingIndicator,
            ..
        })
    ));
    let unknown_type = with_nonce(pb::payload::Body::Revoke(pb::IndicatorRevoke {
        indicator: Some(pb::IndicatorRef {
            r#type: 42,
            value: "x".into(),
        }),
        reason: String::new(),
    }));
    assert!(matches!(
        check(signed(unknown_type.encode_to_vec()), &keys),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::UnknownType(42),
            ..
        })
    ));
    for nonce in [0, 15, 65] {
        let mut p = pb::Payload::decode(domain_upsert("evil.example").as_slice()).unwrap();
        p.nonce = vec![1; nonce];
        assert_eq!(
            check(signed(p.encode_to_vec()), &keys),
            Err(VerifyError::InvalidPayload {
                origin: s.org().clone(),
                seq: 1,
                defect: PayloadDefect::Nonce(nonce),
            }),
            "nonce of {nonce} bytes"
        );
    }
}

#[test]
fn issued_too_far_in_the_future_is_refused() {
    let s = signer("SG-IGCI", 1);
    let ahead = NOW + VerifyConfig::DEFAULT_SKEW_MS + 1;
    let e = s.sign_raw(1, ZERO_HASH, ahead, &green(), domain_upsert("evil.example"));
    assert!(matches!(
        check(e, &keys_of(&[&s])),
        Err(VerifyError::FromFuture { seq: 1, .. })
    ));
    // Dated ahead under a key not known here: refused for its date, as no signature can be
    // checked (kept waiting for the key, it would be refused for its date then, too late for
    // any link to send it again).
    let stranger = signer("SG-IGCI", 7);
    let unknown = stranger.sign_raw(1, ZERO_HASH, ahead, &green(), domain_upsert("evil.example"));
    assert!(matches!(
        check(unknown, &keys_of(&[&s])),
        Err(VerifyError::FromFuture { seq: 1, .. })
    ));
    // Dated ahead but not signed by the origin: the sender's forgery, not the origin's clock.
    let mut forged = s.sign_raw(1, ZERO_HASH, ahead, &green(), domain_upsert("evil.example"));
    let mut sig = forged.signature.to_vec();
    sig[5] ^= 0x40;
    forged.signature = sig.into();
    assert_eq!(
        check(forged, &keys_of(&[&s])),
        Err(VerifyError::BadSignature {
            origin: s.org().clone(),
            seq: 1
        })
    );
    let e = s.sign_raw(
        1,
        ZERO_HASH,
        NOW + 1000,
        &green(),
        domain_upsert("evil.example"),
    );
    assert_eq!(
        check(e, &keys_of(&[&s])),
        Ok(()),
        "within the skew bound it passes"
    );
}

#[test]
fn unknown_origin_or_key_is_refused() {
    let s = signer("SG-IGCI", 1);
    let other = signer("FR-OCLCTIC", 2);
    assert!(matches!(
        check(good(&s), &keys_of(&[&other])),
        Err(VerifyError::UnknownKey { .. })
    ));
    // The right org with another key (rotated out, or an attacker's) is unknown too.
    let impostor = signer("SG-IGCI", 3);
    assert!(matches!(
        check(good(&impostor), &keys_of(&[&s])),
        Err(VerifyError::UnknownKey { .. })
    ));
}

#[test]
fn forged_and_tampered_signatures_are_refused() {
    let s = signer("SG-IGCI", 1);
    let keys = keys_of(&[&s]);
    let org = s.org().clone();

    let mut flipped = good(&s);
    let mut sig = flipped.signature.to_vec();
    sig[5] ^= 0x40;
    flipped.signature = sig.into();
    assert_eq!(
        check(flipped, &keys),
        Err(VerifyError::BadSignature {
            origin: org.clone(),
            seq: 1
        })
    );

    // An attacker signs with its own key but claims the victim's origin and key id.
    let attacker = signer("XX-EVIL", 9);
    let payload = domain_upsert("evil.example");
    let header = header_of(&s, 1, ZERO_HASH.to_vec(), &payload).encode_to_vec();
    let forged = attacker.sign_header(header.clone(), Some(payload.clone()));
    assert_eq!(
        check(forged, &keys),
        Err(VerifyError::BadSignature {
            origin: org.clone(),
            seq: 1
        })
    );

    // A signature over the header without the domain-separation prefix does not count.
    use ed25519_dalek::Signer as _;
    let bare = SigningKey::from_bytes(&[1; 32]).sign(&header);
    let e = pb::SignedEntry {
        header: header.clone().into(),
        signature: bare.to_bytes().to_vec().into(),
        payload: Some(payload.into()),
    };
    assert_eq!(
        check(e, &keys),
        Err(VerifyError::BadSignature {
            origin: org,
            seq: 1
        })
    );
    assert_ne!(signed_message(&header), header);
}

#[test]
fn batch_verification_isolates_the_bad_entry() {
    let s = signer("SG-IGCI", 1);
    let keys = keys_of(&[&s]);
    let mut entries: Vec<pb::SignedEntry> = (0..300)
        .map(|i| {
            s.sign_raw(
                1,
                ZERO_HASH,
                NOW,
                &green(),
                domain_upsert(&format!("d{i}.example")),
            )
        })
        .collect();
    let mut sig = entries[137].signature.to_vec();
    sig[0] ^= 1;
    entries[137].signature = sig.into();
    for results in [
        verify_batch(entries.clone(), &keys, &VerifyConfig::at(NOW)),
        verify_batch_parallel(entries, &keys, &VerifyConfig::at(NOW), 64),
    ] {
        assert_eq!(results.len(), 300);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 137, "entry {i}: {r:?}");
        }
        assert!(matches!(
            results[137],
            Err(VerifyError::BadSignature { .. })
        ));
        assert_eq!(
            results[10]
                .as_ref()
                .unwrap()
                .payload()
                .unwrap()
                .indicator
                .value(),
            "d10.example"
        );
    }
}

#[test]
fn withheld_stub_verifies_without_payload() {
    let s = signer("SG-IGCI", 1);
    let stub = intelmesh_core::entry::withheld_stub(&good(&s));
    let v = verify_entry(stub, &keys_of(&[&s]), &VerifyConfig::at(NOW)).expect("stub verifies");
    assert!(v.payload().is_none());
}
