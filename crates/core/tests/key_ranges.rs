//! Keys valid by seq (rotation, compromise, suspension cut-offs) and control entries (roster
//! versions only in the authority's log, checkpoints only elsewhere, both public).

use ed25519_dalek::SigningKey;
use intelmesh_core::verify::{verify_entry, PayloadDefect};
use intelmesh_core::{
    Control, Distribution, Head, OrgId, SeqRange, Signer, StaticKeys, Tlp, VerifyConfig,
    VerifyError,
};
use intelmesh_proto::v1 as pb;

const NOW: i64 = 1_800_000_000_000;

fn signer(org: &str, seed: u8) -> Signer {
    Signer::new(
        OrgId::parse(org).unwrap(),
        SigningKey::from_bytes(&[seed; 32]),
    )
}

fn clear() -> Distribution {
    Distribution {
        tlp: Tlp::Clear,
        recipients: vec![],
    }
}

fn upsert() -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: "evil.example".into(),
            }),
            confidence: 90,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Entries 1..=n of one origin, each signed by the signer `key_for(seq)` picks.
fn chain<'a>(n: u64, key_for: impl Fn(u64) -> &'a Signer) -> Vec<pb::SignedEntry> {
    let mut head: Option<Head> = None;
    (1..=n)
        .map(|seq| {
            let (e, h) = key_for(seq).sign_next(head, NOW, &clear(), &upsert());
            head = Some(h);
            e
        })
        .collect()
}

/// A key list holding `old`'s key for seqs 1 to 3 only.
fn ended_after_three(old: &Signer) -> StaticKeys {
    let mut keys = StaticKeys::default();
    keys.insert_range(
        old.org().clone(),
        old.verifying_key(),
        SeqRange {
            first: 1,
            last: Some(3),
        },
    );
    keys
}

fn verdict(entry: &pb::SignedEntry, keys: &StaticKeys) -> Result<(), VerifyError> {
    verify_entry(entry.clone(), keys, &VerifyConfig::at(NOW)).map(|_| ())
}

#[test]
fn a_rotated_key_verifies_its_own_range_and_nothing_after() {
    let old = signer("FR-ANSSI", 1);
    let new = signer("FR-ANSSI", 2);
    let mut keys = StaticKeys::default();
    let org = old.org().clone();
    keys.insert_range(
        org.clone(),
        old.verifying_key(),
        SeqRange {
            first: 1,
            last: Some(3),
        },
    );
    keys.insert_range(
        org,
        new.verifying_key(),
        SeqRange {
            first: 4,
            last: None,
        },
    );
    let honest = chain(6, |seq| if seq <= 3 { &old } else { &new });
    for e in &honest {
        assert_eq!(verdict(e, &keys), Ok(()));
    }
    // Whoever holds the old key cannot sign past its end, nor the new key before its start.
    let stolen = chain(5, |_| &old);
    let err = verdict(&stolen[4], &keys).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::KeyNotValidAtSeq {
                seq: 5,
                first_seq: 1,
                last_seq: Some(3),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_origin_fault() && !err.is_unverifiable_yet());
    assert!(err.to_string().contains("may sign only seqs 1..3"), "{err}");
    let early = chain(2, |_| &new);
    assert!(matches!(
        verdict(&early[1], &keys),
        Err(VerifyError::KeyNotValidAtSeq {
            first_seq: 4,
            last_seq: None,
            ..
        })
    ));
}

#[test]
fn an_entry_naming_an_ended_key_is_the_origins_fault_only_if_the_origin_signed_it() {
    let old = signer("FR-ANSSI", 1);
    let keys = ended_after_three(&old);
    let signed = chain(5, |_| &old);
    // Anyone can name the ended key at seq 5 and put any signature beside it: that is the
    // sender's forgery, not the origin's fault, however the header reads.
    let mut forged = signed[4].clone();
    forged.signature = vec![7u8; 64].into();
    let err = verdict(&forged, &keys).unwrap_err();
    assert!(
        matches!(err, VerifyError::BadSignature { seq: 5, .. }),
        "{err}"
    );
    assert!(!err.is_origin_fault() && !err.is_unverifiable_yet());
    // Signed by the ended key: the origin's.
    let err = verdict(&signed[4], &keys).unwrap_err();
    assert!(err.is_origin_fault(), "{err}");
}

/// A member signs one batch (one signature over a hash tree) of entries at seqs its key no
/// longer covers: each is refused as the origin's, and the signature they share is checked
/// once for the whole frame, not once per entry; a forged one among them is still the
/// sender's.
#[test]
fn entries_past_a_keys_range_under_one_batch_signature_cost_one_check() {
    let old = signer("FR-ANSSI", 1);
    let keys = ended_after_three(&old);
    let items: Vec<(Distribution, pb::Payload)> = (0..32).map(|_| (clear(), upsert())).collect();
    let (mut batch, _) = old.sign_chain(None, NOW, &items);
    let mut forged = batch[31].clone();
    forged.signature = vec![7u8; 64].into();
    batch.push(forged);
    let before = intelmesh_core::signature::checked_alone();
    let verdicts = intelmesh_core::verify::verify_batch(batch, &keys, &VerifyConfig::at(NOW));
    let checks = intelmesh_core::signature::checked_alone() - before;
    assert!(verdicts[..3].iter().all(Result::is_ok));
    for v in &verdicts[3..32] {
        let err = v.as_ref().map(|_| ()).expect_err("past the key's range");
        assert!(
            matches!(err, VerifyError::KeyNotValidAtSeq { .. }) && err.is_origin_fault(),
            "{err}"
        );
    }
    assert!(
        matches!(verdicts[32], Err(VerifyError::BadSignature { seq: 32, .. })),
        "{:?}",
        verdicts[32].as_ref().map(|_| ())
    );
    assert_eq!(checks, 2, "the batch's signature once, the forged one once");
}

#[test]
fn an_unknown_key_is_unverifiable_yet_not_out_of_range() {
    let member = signer("FR-ANSSI", 1);
    let keys = StaticKeys::default();
    let err = verdict(&chain(1, |_| &member)[0], &keys).unwrap_err();
    assert!(err.is_unverifiable_yet() && !err.is_origin_fault());
}

fn control(body: pb::payload::Body) -> pb::Payload {
    pb::Payload {
        body: Some(body),
        ..Default::default()
    }
}

fn roster_body() -> pb::payload::Body {
    pb::payload::Body::Roster(pb::SignedRoster {
        document: vec![1, 2, 3],
        signatures: vec![],
    })
}

fn checkpoint_body() -> pb::payload::Body {
    pb::payload::Body::Checkpoint(pb::RosterCheckpoint {
        version: 2,
        roster_hash: vec![9; 32],
    })
}

fn keys_with_authority(authority: &Signer, member: &Signer) -> StaticKeys {
    let mut keys = StaticKeys::default();
    keys.set_authority(authority.org().clone());
    keys.insert(authority.org().clone(), authority.verifying_key());
    keys.insert(member.org().clone(), member.verifying_key());
    keys
}

fn signed(s: &Signer, dist: &Distribution, payload: pb::Payload) -> pb::SignedEntry {
    s.sign_next(None, NOW, dist, &payload).0
}

fn defect(r: Result<(), VerifyError>) -> Option<PayloadDefect> {
    match r {
        Err(VerifyError::InvalidPayload { defect, .. }) => Some(defect),
        _ => None,
    }
}

#[test]
fn roster_versions_travel_only_in_the_authority_log_and_checkpoints_only_outside_it() {
    let authority = signer("INTERPOL", 1);
    let member = signer("FR-ANSSI", 2);
    let keys = keys_with_authority(&authority, &member);

    let roster = signed(&authority, &clear(), control(roster_body()));
    let verified = verify_entry(roster, &keys, &VerifyConfig::at(NOW)).expect("roster entry");
    assert!(matches!(verified.control(), Some(Control::Roster(_))));
    assert!(verified.payload().is_none() && verified.has_payload());

    let checkpoint = signed(&member, &clear(), control(checkpoint_body()));
    let verified = verify_entry(checkpoint, &keys, &VerifyConfig::at(NOW)).expect("checkpoint");
    assert!(matches!(verified.control(), Some(Control::Checkpoint(_))));

    let cases = [
        (
            signed(&member, &clear(), control(roster_body())),
            PayloadDefect::RosterOutsideAuthorityLog,
        ),
        (
            signed(&authority, &clear(), control(checkpoint_body())),
            PayloadDefect::AuthorityLogNotRoster,
        ),
        (
            signed(&authority, &clear(), upsert()),
            PayloadDefect::AuthorityLogNotRoster,
        ),
        (
            signed(
                &member,
                &Distribution {
                    tlp: Tlp::Red,
                    recipients: vec![],
                },
                control(checkpoint_body()),
            ),
            PayloadDefect::RestrictedControl,
        ),
    ];
    for (entry, expected) in cases {
        assert_eq!(defect(verdict(&entry, &keys)), Some(expected));
    }
}

#[test]
fn without_an_authority_a_roster_body_is_refused_everywhere() {
    let member = signer("FR-ANSSI", 2);
    let mut keys = StaticKeys::default();
    keys.insert(member.org().clone(), member.verifying_key());
    let entry = signed(&member, &clear(), control(roster_body()));
    assert_eq!(
        defect(verdict(&entry, &keys)),
        Some(PayloadDefect::RosterOutsideAuthorityLog)
    );
}
