//! The rules between versions: genesis, sequence, link, federation and threshold signatures.

mod common;

use common::*;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{
    genesis_thresholds, roster_hash, sign_document, thresholds, AuthorityKeys, Roster, RosterError,
    Thresholds,
};

#[test]
fn genesis_follows_with_threshold_and_pin() {
    let bytes = genesis_bytes();
    let [a, b, _] = authority_keys();
    let pin = roster_hash(&bytes);
    let roster = Roster::genesis(&sign(&bytes, &[&a, &b]), Some(&pin)).expect("genesis");
    assert_eq!(roster.version(), 1);
    assert_eq!(*roster.hash(), pin);
    assert_eq!(roster.federation_id().as_str(), "FED");
    assert_eq!(roster.signed().document, bytes);
    assert_eq!(roster.members().len(), 1);
    assert_eq!(roster.hubs().len(), 1);
}

#[test]
fn genesis_with_another_pin_is_refused() {
    let [a, b, _] = authority_keys();
    let signed = sign(&genesis_bytes(), &[&a, &b]);
    let pin = [7; 32];
    assert_eq!(
        Roster::genesis(&signed, Some(&pin)),
        Err(RosterError::PinMismatch {
            pinned: pin,
            found: roster_hash(&genesis_bytes())
        })
    );
}

#[test]
fn genesis_under_signed_is_refused() {
    let [a, _, _] = authority_keys();
    let signed = sign(&genesis_bytes(), &[&a]);
    assert_eq!(
        Roster::genesis(&signed, None),
        Err(RosterError::UnderSigned {
            version: 1,
            keys: AuthorityKeys::Current,
            have: 1,
            need: 2
        })
    );
    assert_eq!(
        genesis_thresholds(&signed),
        Ok(Thresholds {
            signed_current: 1,
            needed_current: 2,
            signed_new: 0,
            needed_new: 0
        })
    );
}

#[test]
fn genesis_must_be_version_one_linked_to_nothing() {
    let [a, b, _] = authority_keys();
    let mut doc = decode(&genesis_bytes());
    doc.version = 2;
    let signed = sign(&prost::Message::encode_to_vec(&doc), &[&a, &b]);
    assert_eq!(
        Roster::genesis(&signed, None),
        Err(RosterError::NotGenesis { version: 2 })
    );
    let mut doc = decode(&genesis_bytes());
    doc.prev_hash = vec![1; 32];
    let signed = sign(&prost::Message::encode_to_vec(&doc), &[&a, &b]);
    assert_eq!(
        Roster::genesis(&signed, None),
        Err(RosterError::GenesisPrevHash)
    );
}

#[test]
fn next_version_follows() {
    let v1 = genesis();
    let v2 = v1.next(&edited_next(&v1, |_| {})).expect("v2");
    assert_eq!(v2.version(), 2);
    let v3 = v2.next(&edited_next(&v2, |_| {})).expect("v3");
    assert_eq!(v3.version(), 3);
}

#[test]
fn rollback_is_refused() {
    let v1 = genesis();
    let v2_signed = edited_next(&v1, |_| {});
    let v2 = v1.next(&v2_signed).expect("v2");
    let v3 = v2.next(&edited_next(&v2, |_| {})).expect("v3");
    assert_eq!(
        v3.next(&v2_signed),
        Err(RosterError::Rollback {
            current: 3,
            offered: 2
        })
    );
}

#[test]
fn replay_of_the_current_version_is_refused_and_says_whether_it_differs() {
    let v1 = genesis();
    let v2_signed = edited_next(&v1, |_| {});
    let v2 = v1.next(&v2_signed).expect("v2");
    assert_eq!(
        v2.next(&v2_signed),
        Err(RosterError::Replay {
            version: 2,
            identical: true
        })
    );
    let other = edited_next(&v1, |d| d.issued_at_unix_ms = 5);
    assert_eq!(
        v2.next(&other),
        Err(RosterError::Replay {
            version: 2,
            identical: false
        })
    );
}

#[test]
fn skipped_version_is_refused() {
    let v1 = genesis();
    let v3 = edited_next(&v1, |d| d.version = 3);
    assert_eq!(
        v1.next(&v3),
        Err(RosterError::Skipped {
            current: 1,
            offered: 3
        })
    );
}

#[test]
fn wrong_prev_hash_is_refused() {
    let v1 = genesis();
    let signed = edited_next(&v1, |d| d.prev_hash = vec![9; 32]);
    assert_eq!(
        v1.next(&signed),
        Err(RosterError::PrevHash {
            version: 2,
            expected: *v1.hash(),
            found: [9; 32]
        })
    );
}

#[test]
fn another_federation_is_refused() {
    let v1 = genesis();
    let signed = edited_next(&v1, |d| d.federation_id = "OTHER".into());
    assert_eq!(
        v1.next(&signed),
        Err(RosterError::FederationMismatch {
            ours: org("FED"),
            offered: "OTHER".into()
        })
    );
}

fn under_signed(have: u32, keys: AuthorityKeys, need: u32) -> Result<Roster, RosterError> {
    Err(RosterError::UnderSigned {
        version: 2,
        keys,
        have,
        need,
    })
}

#[test]
fn k_minus_one_signatures_are_refused() {
    let v1 = genesis();
    let mut signed = edited_next(&v1, |_| {});
    signed.signatures.truncate(1);
    assert_eq!(v1.next(&signed), under_signed(1, AuthorityKeys::Current, 2));
}

#[test]
fn one_key_signing_twice_counts_once() {
    let v1 = genesis();
    let mut signed = edited_next(&v1, |_| {});
    let [a, _, _] = authority_keys();
    signed.signatures = vec![
        sign_document(&signed.document, &a, NOW),
        sign_document(&signed.document, &a, NOW + 1),
    ];
    assert_eq!(v1.next(&signed), under_signed(1, AuthorityKeys::Current, 2));
}

#[test]
fn signatures_by_other_keys_or_forged_do_not_count() {
    let v1 = genesis();
    let mut signed = edited_next(&v1, |_| {});
    signed.signatures.truncate(1);
    // The hub's key, a stranger's key, a bob signature over another time, and garbage.
    signed
        .signatures
        .push(sign_document(&signed.document, &hub_key(), NOW));
    signed
        .signatures
        .push(sign_document(&signed.document, &key(99), NOW));
    let [_, b, _] = authority_keys();
    let mut moved = sign_document(&signed.document, &b, NOW);
    moved.signed_at_unix_ms += 1;
    signed.signatures.push(moved);
    let mut short = sign_document(&signed.document, &b, NOW);
    short.signature.truncate(63);
    signed.signatures.push(short);
    signed.signatures.push(pb::RosterSignature::default());
    assert_eq!(v1.next(&signed), under_signed(1, AuthorityKeys::Current, 2));
}

/// A version handing the authority to keys 4, 5 (threshold 2), signed by `keys`.
fn authority_rotation(v1: &Roster, keys: &[u8]) -> pb::SignedRoster {
    let mut signed = edited_next(v1, |d| {
        d.authority = Some(pb::Authority {
            keys: [4u8, 5]
                .iter()
                .map(|n| pb::AuthorityKey {
                    name: format!("op{n}"),
                    public_key: key(*n).verifying_key().to_bytes().to_vec(),
                })
                .collect(),
            threshold: 2,
        })
    });
    signed.signatures = keys
        .iter()
        .map(|n| sign_document(&signed.document, &key(*n), NOW))
        .collect();
    signed
}

#[test]
fn authority_rotation_needs_both_thresholds() {
    let v1 = genesis();
    let only_old = authority_rotation(&v1, &[1, 2]);
    assert_eq!(v1.next(&only_old), under_signed(0, AuthorityKeys::New, 2));
    let only_new = authority_rotation(&v1, &[4, 5]);
    assert_eq!(
        v1.next(&only_new),
        under_signed(0, AuthorityKeys::Current, 2)
    );
    let one_new = authority_rotation(&v1, &[1, 2, 4]);
    assert_eq!(v1.next(&one_new), under_signed(1, AuthorityKeys::New, 2));
    assert_eq!(
        thresholds(&v1, &one_new),
        Ok(Thresholds {
            signed_current: 2,
            needed_current: 2,
            signed_new: 1,
            needed_new: 2
        })
    );
    assert!(!thresholds(&v1, &one_new).expect("counts").is_complete());
    let both = authority_rotation(&v1, &[1, 2, 4, 5]);
    assert!(thresholds(&v1, &both).expect("counts").is_complete());
    let v2 = v1.next(&both).expect("both thresholds met");
    // From now on the new keys alone govern.
    let mut v3 = edited_next(&v2, |_| {});
    v3.signatures = vec![
        sign_document(&v3.document, &key(4), NOW),
        sign_document(&v3.document, &key(5), NOW),
    ];
    assert_eq!(v2.next(&v3).map(|r| r.version()), Ok(3));
}

#[test]
fn threshold_change_alone_needs_the_new_threshold_too() {
    let v1 = genesis();
    let signed = edited_next(&v1, |d| {
        if let Some(a) = d.authority.as_mut() {
            a.threshold = 3;
        }
    });
    assert_eq!(v1.next(&signed), under_signed(2, AuthorityKeys::New, 3));
}

#[test]
fn renaming_an_authority_key_is_not_an_authority_change() {
    let v1 = genesis();
    let signed = edited_next(&v1, |d| {
        if let Some(a) = d.authority.as_mut() {
            a.keys[0].name = "alice (new laptop)".into();
        }
    });
    assert_eq!(
        thresholds(&v1, &signed).map(|t| (t.signed_new, t.needed_new)),
        Ok((0, 0))
    );
    assert!(v1.next(&signed).is_ok());
}
