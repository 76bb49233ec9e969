//! Entries signed as batches: each verifies alone, as a stub and among others; nothing outside
//! the batch, and no entry moved within it, passes for signed.

mod common;

use intelmesh_core::batch_tree::{path_in, signature_field, PathDefect, SIGNATURE_BYTES};
use intelmesh_core::entry::withheld_stub;
use intelmesh_core::sign::BATCH_LEAVES;
use intelmesh_core::verify::{verify_batch, verify_batch_parallel, verify_entry, HeaderDefect};
use intelmesh_core::{Distribution, Signer, Tlp, VerifyConfig, VerifyError};
use intelmesh_proto::v1 as pb;

use common::{keys_of, signer};

const NOW: i64 = 1_800_000_000_000;

fn items(n: usize) -> Vec<(Distribution, pb::Payload)> {
    (0..n)
        .map(|i| {
            let tlp = if i % 4 == 0 { Tlp::Red } else { Tlp::Green };
            let payload = pb::Payload {
                body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
                    indicator: Some(pb::IndicatorRef {
                        r#type: pb::IndicatorType::Domain as i32,
                        value: format!("d{i}.example"),
                    }),
                    confidence: 60,
                    ..Default::default()
                })),
                ..Default::default()
            };
            let recipients = vec![];
            (Distribution { tlp, recipients }, payload)
        })
        .collect()
}

fn published(s: &Signer, n: usize) -> Vec<pb::SignedEntry> {
    s.sign_chain(None, NOW, &items(n)).0
}

/// The entry's batch path, if it has one.
fn path(e: &pb::SignedEntry) -> Option<pb::BatchPath> {
    path_in(&e.signature).expect("a well-formed signature field")
}

/// `e` with its signature and `path` (none: signed as itself).
fn with_path(e: &pb::SignedEntry, path: Option<&pb::BatchPath>) -> pb::SignedEntry {
    let signature: [u8; SIGNATURE_BYTES] = e.signature[..SIGNATURE_BYTES].try_into().unwrap();
    pb::SignedEntry {
        signature: signature_field(&signature, path).into(),
        ..e.clone()
    }
}

fn is_bad_signature(r: &Result<intelmesh_core::VerifiedEntry, VerifyError>) -> bool {
    matches!(r, Err(VerifyError::BadSignature { .. }))
}

#[test]
fn a_large_publication_is_signed_once_per_batch_and_each_entry_verifies_alone_and_as_a_stub() {
    let s = signer("AU-AFP", 3);
    let keys = keys_of(&[&s]);
    let cfg = VerifyConfig::at(NOW);
    let n = 2 * BATCH_LEAVES + 6;
    let entries = published(&s, n);
    assert_eq!(entries.len(), n);
    let mut signatures: Vec<_> = entries
        .iter()
        .map(|e| e.signature[..SIGNATURE_BYTES].to_vec())
        .collect();
    signatures.dedup();
    assert_eq!(signatures.len(), 3, "batches of {BATCH_LEAVES}, then 6");
    for (i, e) in entries.iter().enumerate() {
        let path = path(e).expect("a batch path");
        assert_eq!(path.index as usize, i % BATCH_LEAVES);
        assert!(path.siblings.len() <= 5);
        assert!(
            e.signature.len() <= SIGNATURE_BYTES + 174,
            "{}",
            e.signature.len()
        );
        let v = verify_entry(e.clone(), &keys, &cfg).unwrap_or_else(|e| panic!("{i}: {e}"));
        assert_eq!(v.header().seq, i as u64 + 1);
        verify_entry(withheld_stub(e), &keys, &cfg).unwrap_or_else(|e| panic!("stub {i}: {e}"));
    }
    for r in verify_batch_parallel(entries.clone(), &keys, &cfg, 7) {
        assert!(r.is_ok(), "{r:?}");
    }
    for e in published(&s, BATCH_LEAVES - 1) {
        assert_eq!(
            e.signature.len(),
            SIGNATURE_BYTES,
            "a smaller publication is signed entry by entry"
        );
        verify_entry(e, &keys, &cfg).expect("an entry signed alone verifies");
    }
}

#[test]
fn only_the_entries_a_batch_signed_pass_and_a_bad_one_costs_only_itself() {
    let s = signer("AU-AFP", 3);
    let keys = keys_of(&[&s]);
    let cfg = VerifyConfig::at(NOW);
    let mut entries = published(&s, BATCH_LEAVES);
    let other = published(&s, BATCH_LEAVES);
    // Another publication's header (same origin, same seq) under this batch's signature
    // and path.
    entries[4].header = other[4].header.clone();
    entries[4].payload = other[4].payload.clone();
    let results = verify_batch(entries.clone(), &keys, &cfg);
    for (i, r) in results.iter().enumerate() {
        if i == 4 {
            assert!(is_bad_signature(r), "{r:?}");
        } else {
            assert!(r.is_ok(), "{i}: {r:?}");
        }
    }
    // An entry moved to another leaf, a path from another entry, a batch signature claimed
    // as the header's own, and a header's own signature with a path.
    let good = published(&s, BATCH_LEAVES);
    let mut moved_path = path(&good[2]).unwrap();
    moved_path.index = 3;
    let moved = with_path(&good[2], Some(&moved_path));
    let borrowed = with_path(&good[2], path(&good[3]).as_ref());
    let unbatched = with_path(&good[2], None);
    let single = with_path(&published(&s, 1)[0], path(&good[0]).as_ref());
    for (name, e) in [
        ("moved", moved),
        ("borrowed", borrowed),
        ("unbatched", unbatched),
        ("single", single),
    ] {
        let r = verify_entry(e, &keys, &cfg);
        assert!(is_bad_signature(&r), "{name}: {r:?}");
    }
}

#[test]
fn another_key_cannot_sign_a_batch_for_an_origin() {
    let s = signer("AU-AFP", 3);
    let attacker = signer("AU-AFP", 4);
    let keys = keys_of(&[&s]);
    let cfg = VerifyConfig::at(NOW);
    let mut forged = published(&attacker, BATCH_LEAVES);
    // The attacker's key id is unknown; claim the real key's id instead.
    let real = published(&s, BATCH_LEAVES);
    for (f, r) in forged.iter_mut().zip(&real) {
        f.header = r.header.clone();
        f.payload = r.payload.clone();
    }
    for r in verify_batch(forged, &keys, &cfg) {
        assert!(is_bad_signature(&r), "{r:?}");
    }
}

#[test]
fn a_malformed_path_is_named_in_the_refusal() {
    let s = signer("AU-AFP", 3);
    let keys = keys_of(&[&s]);
    let cfg = VerifyConfig::at(NOW);
    let e = published(&s, BATCH_LEAVES).remove(1);
    let mut longer = path(&e).unwrap();
    longer.siblings.push(vec![0; 32]);
    assert!(matches!(
        verify_entry(with_path(&e, Some(&longer)), &keys, &cfg),
        Err(VerifyError::MalformedBatchPath {
            seq: 2,
            defect: PathDefect::Shape,
            ..
        })
    ));
    let mut huge = path(&e).unwrap();
    huge.size = u32::MAX;
    let err = verify_entry(with_path(&e, Some(&huge)), &keys, &cfg).unwrap_err();
    assert_eq!(err.kind(), "malformed_batch_path");
    assert!(err.to_string().contains("AU-AFP#2"), "{err}");
    // Bytes after the signature that are no path, and a field too long to be one.
    let mut junk = e.clone();
    junk.signature = [&e.signature[..SIGNATURE_BYTES], &[0xff; 7]]
        .concat()
        .into();
    assert!(matches!(
        verify_entry(junk, &keys, &cfg),
        Err(VerifyError::MalformedBatchPath {
            defect: PathDefect::Undecodable,
            ..
        })
    ));
    // The same path padded with an unknown field, or with its index said twice: it would
    // lead to the same root, but a relay must not be able to change an entry's bytes.
    let canonical = path(&e).unwrap();
    let padded = [&e.signature[..], &[0x22, 0x02, 0xab, 0xcd]].concat();
    let twice = [
        &e.signature[..SIGNATURE_BYTES],
        &[0x08, 0x7f][..],
        &prost::Message::encode_to_vec(&canonical),
    ]
    .concat();
    for (name, field) in [("padded", padded), ("index twice", twice)] {
        let mut altered = e.clone();
        altered.signature = field.into();
        let r = verify_entry(altered, &keys, &cfg);
        assert!(
            matches!(
                r,
                Err(VerifyError::MalformedBatchPath {
                    defect: PathDefect::NotCanonical,
                    ..
                })
            ),
            "{name}: {r:?}"
        );
    }
    let mut long = e.clone();
    long.signature = vec![1; SIGNATURE_BYTES + 641].into();
    assert!(matches!(
        verify_entry(long, &keys, &cfg),
        Err(VerifyError::InvalidHeader {
            defect: HeaderDefect::SignatureLength(705),
            ..
        })
    ));
}
