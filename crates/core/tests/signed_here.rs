//! Entries taken as verified because this process signed them (`accept_signed_here`): the
//! same entries `verify_batch` gives for them, and refused for whatever `verify` refuses
//! other than a signature (content, clock, the key in force), or when signed with another key.

mod common;

use intelmesh_core::sign::BATCH_LEAVES;
use intelmesh_core::verify::{accept_signed_here, verify_batch, SeqRange};
use intelmesh_core::{Distribution, StaticKeys, Tlp, VerifiedEntry, VerifyConfig, VerifyError};
use intelmesh_proto::v1 as pb;

use common::{keys_of, signer};

const NOW: i64 = 1_800_000_000_000;

fn items(n: usize) -> Vec<(Distribution, pb::Payload)> {
    (0..n)
        .map(|i| {
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
            let tlp = [Tlp::Green, Tlp::Amber, Tlp::Clear][i % 3];
            let recipients = vec![];
            (Distribution { tlp, recipients }, payload)
        })
        .collect()
}

/// What a test compares of a verified entry: everything the store reads of it.
fn seen(v: &VerifiedEntry) -> (pb::SignedEntry, String, [u8; 32], String) {
    (
        v.raw().clone(),
        format!("{:?}", v.header()),
        *v.hash(),
        format!("{:?}", v.payload()),
    )
}

#[test]
fn entries_signed_here_are_accepted_as_verify_gives_them_in_order() {
    let s = signer("AU-AFP", 3);
    let keys = keys_of(&[&s]);
    let cfg = VerifyConfig::at(NOW);
    // Signed as batches (with paths) and, below a batch's size, entry by entry.
    for n in [2 * BATCH_LEAVES + 5, BATCH_LEAVES - 1, 1] {
        let raws = s.sign_chain(None, NOW, &items(n)).0;
        let accepted = accept_signed_here(raws.clone(), &s.verifying_key(), &keys, &cfg);
        let verified = verify_batch(raws, &keys, &cfg);
        assert_eq!(accepted.len(), n);
        for (i, (a, v)) in accepted.iter().zip(&verified).enumerate() {
            let (a, v) = (a.as_ref().unwrap(), v.as_ref().unwrap());
            assert_eq!(a.header().seq, i as u64 + 1, "in input order");
            assert_eq!(seen(a), seen(v), "entry {i} of {n}");
        }
    }
}

#[test]
fn an_entry_signed_with_a_key_other_than_the_one_given_is_refused() {
    let s = signer("AU-AFP", 3);
    let other = signer("AU-AFP", 4);
    let keys = keys_of(&[&s]);
    let raws = s.sign_chain(None, NOW, &items(3)).0;
    let accepted = accept_signed_here(raws, &other.verifying_key(), &keys, &VerifyConfig::at(NOW));
    for (i, r) in accepted.into_iter().enumerate() {
        assert_eq!(
            r.err(),
            Some(VerifyError::BadSignature {
                origin: s.org().clone(),
                seq: i as u64 + 1
            })
        );
    }
}

#[test]
fn what_verify_refuses_for_its_content_clock_or_key_is_refused_here_too() {
    let s = signer("AU-AFP", 3);
    let cfg = VerifyConfig::at(NOW);
    let mut raws = s.sign_chain(None, NOW, &items(4)).0;
    // A payload changed after signing: the header's commitment no longer holds.
    raws[1].payload = raws[2].payload.clone();
    let accepted = accept_signed_here(raws.clone(), &s.verifying_key(), &keys_of(&[&s]), &cfg);
    let refused: Vec<bool> = accepted.iter().map(Result::is_err).collect();
    assert_eq!(refused, [false, true, false, false]);
    assert!(
        matches!(
            accepted[1],
            Err(VerifyError::PayloadCommitmentMismatch { seq: 2, .. })
        ),
        "{:?}",
        accepted[1]
    );

    // Signed under a key that may sign only the first two seqs.
    let mut ended = StaticKeys::default();
    let range = SeqRange {
        first: 1,
        last: Some(2),
    };
    ended.insert_range(s.org().clone(), s.verifying_key(), range);
    let raws = s.sign_chain(None, NOW, &items(4)).0;
    let accepted = accept_signed_here(raws.clone(), &s.verifying_key(), &ended, &cfg);
    assert!(accepted[..2].iter().all(Result::is_ok));
    for r in &accepted[2..] {
        assert!(
            matches!(r, Err(VerifyError::KeyNotValidAtSeq { .. })),
            "{r:?}"
        );
    }

    // An origin with no key in the list, and entries dated past the allowed skew.
    let unknown = accept_signed_here(
        raws.clone(),
        &s.verifying_key(),
        &StaticKeys::default(),
        &cfg,
    );
    assert!(unknown
        .iter()
        .all(|r| matches!(r, Err(VerifyError::UnknownKey { .. }))));
    let early = VerifyConfig::at(NOW - VerifyConfig::DEFAULT_SKEW_MS - 1);
    let future = accept_signed_here(raws, &s.verifying_key(), &keys_of(&[&s]), &early);
    assert!(future
        .iter()
        .all(|r| matches!(r, Err(VerifyError::FromFuture { .. }))));
}
