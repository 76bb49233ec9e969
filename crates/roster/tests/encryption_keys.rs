//! Members' encryption keys in the roster: the document rules, which key is current for whom,
//! enrolment with and without a key, and the member-signed request that sets a new one.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use intelmesh_core::sealed::{EncryptionPublic, KeyError};
use intelmesh_core::sign::ReaderKeys;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::document::check_decoded;
use intelmesh_roster::enrolment::{
    sign_encryption_key, verify_encryption_key, verify_enrolment, RequestError,
};
use intelmesh_roster::model::MAX_ENCRYPTION_KEYS;
use intelmesh_roster::{diff, ActionError, DocumentDefect, ProposeError, Roster};

fn heads(n: u64) -> impl Fn(&intelmesh_core::OrgId) -> u64 {
    move |_| n
}
use pb::action::Action as A;

/// Genesis, then version 2 adding `AG` (signing key 20) with encryption key 50.
fn with_keyed_agency() -> Roster {
    let add = A::AddMember(pb::AddMember {
        request: Some(enrolment_with("AG", &key(20), Some(enc_key(50)))),
        role: pb::MemberRole::Agency as i32,
    });
    apply(&genesis(), vec![add], &no_heads)
}

fn set_key(signing: &SigningKey, org_id: &str, new: u8) -> A {
    A::SetEncryptionKey(pb::SetEncryptionKey {
        request: Some(sign_encryption_key(
            &org(org_id),
            signing,
            &enc_key(new),
            NOW,
        )),
    })
}

fn listed(r: &Roster, org_id: &str) -> Vec<(EncryptionPublic, u64)> {
    r.member(&org(org_id))
        .expect("member")
        .encryption_keys
        .iter()
        .map(|k| {
            (
                EncryptionPublic::from_bytes(&k.public_key).expect("checked key"),
                k.since_version,
            )
        })
        .collect()
}

/// `AG`'s encryption key 51, refused when signed with signing key `ended` and listed when signed
/// with `current`: the version that lists it.
fn set_only_by(r: &Roster, ended: u8, current: u8) -> Roster {
    assert!(matches!(
        action_error(try_propose(
            r,
            vec![set_key(&key(ended), "AG", 51)],
            &no_heads
        )),
        ActionError::EncryptionKeyRequest(RequestError::BadSignature { .. })
    ));
    let next = apply(r, vec![set_key(&key(current), "AG", 51)], &no_heads);
    assert_eq!(next.encryption_key(&org("AG")), Some(enc_key(51)));
    next
}

fn action_error(result: Result<Vec<u8>, ProposeError>) -> ActionError {
    match result {
        Err(ProposeError::Action { error, .. }) => error,
        other => panic!("expected an action error, got {other:?}"),
    }
}

/// `with_keyed_agency`'s document edited by `edit`, then checked.
fn defect(edit: impl FnOnce(&mut pb::RosterDocument)) -> DocumentDefect {
    let mut doc = with_keyed_agency().document().clone();
    edit(&mut doc);
    check_decoded(doc).expect_err("the edit makes the document malformed")
}

fn entry(n: u8, since_version: u64) -> pb::EncryptionKey {
    pb::EncryptionKey {
        public_key: enc_key(n).as_bytes().to_vec(),
        since_version,
        reported_compromised: false,
    }
}

#[test]
fn document_refuses_a_key_of_wrong_length_or_small_order() {
    assert_eq!(
        defect(|d| d.members[1].encryption_keys[0].public_key.truncate(31)),
        DocumentDefect::EncryptionKeyInvalid {
            org: org("AG"),
            index: 0,
            error: KeyError::Length(31),
        }
    );
    // The identity point (u = 0) and u = 1 are of small order.
    for point in [[0u8; 32], {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    }] {
        assert_eq!(
            defect(|d| d.members[1].encryption_keys.push(pb::EncryptionKey {
                public_key: point.to_vec(),
                since_version: 2,
                reported_compromised: false,
            })),
            DocumentDefect::EncryptionKeyInvalid {
                org: org("AG"),
                index: 1,
                error: KeyError::SmallOrder,
            }
        );
    }
}

#[test]
fn document_refuses_a_key_listed_twice() {
    assert_eq!(
        defect(|d| d.members[0].encryption_keys.push(entry(50, 2))),
        DocumentDefect::EncryptionKeyReused {
            key_id: enc_key(50).id(),
            first: org("HUB"),
            second: org("AG"),
        }
    );
    assert_eq!(
        defect(|d| d.members[1].encryption_keys.push(entry(50, 2))),
        DocumentDefect::EncryptionKeyReused {
            key_id: enc_key(50).id(),
            first: org("AG"),
            second: org("AG"),
        }
    );
}

#[test]
fn document_refuses_more_than_eight_keys() {
    let mut doc = with_keyed_agency().document().clone();
    doc.members[1].encryption_keys = (60..68).map(|n| entry(n, 2)).collect();
    assert!(check_decoded(doc.clone()).is_ok(), "eight keys are allowed");
    doc.members[1].encryption_keys.push(entry(68, 2));
    assert_eq!(
        check_decoded(doc).expect_err("nine keys"),
        DocumentDefect::TooManyEncryptionKeys {
            org: org("AG"),
            count: 9,
            max: MAX_ENCRYPTION_KEYS,
        }
    );
}

#[test]
fn current_key_only_for_active_members() {
    let v2 = with_keyed_agency();
    assert_eq!(v2.encryption_key(&org("AG")), Some(enc_key(50)));
    assert_eq!(ReaderKeys::current(&v2, &org("AG")), Some(enc_key(50)));
    // A member enrolled without one (the hub of the common genesis) is valid but gets none.
    assert_eq!(v2.encryption_key(&org("HUB")), None);
    assert_eq!(v2.encryption_key(&org("NOBODY")), None);

    let suspended = apply(
        &v2,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &no_heads,
    );
    assert_eq!(suspended.encryption_key(&org("AG")), None);
    // The only keyed member suspended, the federation still seals: nothing restricted goes
    // to a relay in clear, and a reader without a key is refused.
    assert!(suspended.key_set().seals());
    assert!(!genesis().key_set().seals(), "no key ever listed");
    let reinstated = apply(
        &suspended,
        vec![A::Reinstate(pb::Reinstate { org: "AG".into() })],
        &no_heads,
    );
    assert_eq!(reinstated.encryption_key(&org("AG")), Some(enc_key(50)));
    let removed = apply(
        &reinstated,
        vec![A::Remove(pb::Remove {
            org: "AG".into(),
            withdraw: false,
        })],
        &no_heads,
    );
    assert_eq!(removed.encryption_key(&org("AG")), None);
    // Its keys stay listed (history), only nothing new is sealed to it.
    assert_eq!(listed(&removed, "AG"), vec![(enc_key(50), 2)]);
}

#[test]
fn enrolment_lists_the_key_from_the_admitting_version() {
    let v2 = with_keyed_agency();
    assert_eq!(listed(&v2, "AG"), vec![(enc_key(50), 2)]);
    let line = &v2.document().change.as_ref().expect("change").actions[0];
    assert!(
        line.ends_with(&format!("and encryption key {}", enc_key(50).id())),
        "{line}"
    );
    let verified =
        verify_enrolment(&enrolment_with("AG", &key(20), Some(enc_key(50)))).expect("verifies");
    assert_eq!(verified.encryption_key, Some(enc_key(50)));
}

#[test]
fn enrolment_without_a_key_is_admitted_without_one() {
    let v2 = with_agency();
    assert!(listed(&v2, "AG").is_empty());
    assert_eq!(v2.encryption_key(&org("AG")), None);
    let verified = verify_enrolment(&enrolment("AG", &key(20))).expect("verifies");
    assert_eq!(verified.encryption_key, None);
}

#[test]
fn enrolment_with_a_malformed_key_is_refused() {
    let signed_with = |bytes: Vec<u8>| {
        // Re-sign the edited request so that only the key is wrong.
        use prost::Message;
        let mut signed = enrolment("AG", &key(20));
        let mut request =
            pb::EnrolmentRequest::decode(signed.request.as_slice()).expect("request decodes");
        request.encryption_key = bytes;
        signed.request = request.encode_to_vec();
        let mut msg = intelmesh_roster::enrolment::ENROLMENT_CONTEXT.to_vec();
        msg.extend_from_slice(&signed.request);
        use ed25519_dalek::Signer as _;
        signed.signature = key(20).sign(&msg).to_bytes().to_vec();
        signed
    };
    assert_eq!(
        verify_enrolment(&signed_with(vec![9; 31])),
        Err(RequestError::EncryptionKey(KeyError::Length(31)))
    );
    assert_eq!(
        verify_enrolment(&signed_with(vec![0; 32])),
        Err(RequestError::EncryptionKey(KeyError::SmallOrder))
    );
    let add = A::AddMember(pb::AddMember {
        request: Some(signed_with(vec![0; 32])),
        role: pb::MemberRole::Agency as i32,
    });
    assert_eq!(
        action_error(try_propose(&genesis(), vec![add], &no_heads)),
        ActionError::Enrolment(RequestError::EncryptionKey(KeyError::SmallOrder))
    );
}

#[test]
fn enrolment_with_a_key_already_listed_is_refused() {
    let v2 = with_keyed_agency();
    let add = A::AddMember(pb::AddMember {
        request: Some(enrolment_with("AG2", &key(22), Some(enc_key(50)))),
        role: pb::MemberRole::Agency as i32,
    });
    assert_eq!(
        action_error(try_propose(&v2, vec![add], &no_heads)),
        ActionError::EncryptionKeyInUse {
            key_id: enc_key(50).id(),
            org: "AG".into(),
        }
    );
}

#[test]
fn set_encryption_key_with_the_current_signing_key() {
    let v2 = with_keyed_agency();
    let v3 = apply(&v2, vec![set_key(&key(20), "AG", 51)], &no_heads);
    assert_eq!(listed(&v3, "AG"), vec![(enc_key(50), 2), (enc_key(51), 3)]);
    assert_eq!(v3.encryption_key(&org("AG")), Some(enc_key(51)));
    let line = &v3.document().change.as_ref().expect("change").actions[0];
    assert_eq!(
        line,
        &format!(
            "set encryption key of AG: {} is current from version 3",
            enc_key(51).id()
        )
    );
    assert_eq!(
        diff(v2.document(), v3.document()),
        vec![
            format!(
                "member AG: encryption key {} listed from version 3",
                enc_key(51).id()
            ),
            format!(
                "member AG: current encryption key {} -> {}",
                enc_key(50).id(),
                enc_key(51).id()
            ),
        ]
    );
    // A member enrolled without a key gets its first one the same way.
    let v3 = apply(&with_agency(), vec![set_key(&key(20), "AG", 52)], &no_heads);
    assert_eq!(v3.encryption_key(&org("AG")), Some(enc_key(52)));
}

#[test]
fn set_encryption_key_after_a_signing_key_rotation_needs_the_new_signing_key() {
    let v2 = with_keyed_agency();
    let rotate = A::RotateKey(pb::RotateKey {
        request: Some(intelmesh_roster::enrolment::sign_rotation(
            &org("AG"),
            &key(20),
            &key(21),
            0,
            NOW,
        )),
    });
    let v3 = apply(&v2, vec![rotate], &no_heads);
    set_only_by(&v3, 20, 21);
}

#[test]
fn set_encryption_key_signed_by_another_key_is_refused() {
    let v2 = with_keyed_agency();
    let error = action_error(try_propose(
        &v2,
        vec![set_key(&key(30), "AG", 51)],
        &no_heads,
    ));
    assert_eq!(
        error,
        ActionError::EncryptionKeyRequest(RequestError::BadSignature {
            which: "current signing key's",
            key_id: intelmesh_core::KeyId::of(&key(20).verifying_key()),
        })
    );
    // The hub's key cannot set the agency's encryption key either.
    assert!(matches!(
        action_error(try_propose(
            &v2,
            vec![set_key(&hub_key(), "AG", 51)],
            &no_heads
        )),
        ActionError::EncryptionKeyRequest(RequestError::BadSignature { .. })
    ));
    // A signature over the request for another org does not carry over.
    let mut moved = sign_encryption_key(&org("AG"), &key(20), &enc_key(51), NOW);
    moved.signature = sign_encryption_key(&org("HUB"), &key(20), &enc_key(51), NOW).signature;
    assert!(verify_encryption_key(&moved, &key(20).verifying_key()).is_err());
}

#[test]
fn set_encryption_key_refuses_a_key_already_listed() {
    let v2 = with_keyed_agency();
    // Its own current key, and another member's.
    assert_eq!(
        action_error(try_propose(
            &v2,
            vec![set_key(&key(20), "AG", 50)],
            &no_heads
        )),
        ActionError::EncryptionKeyInUse {
            key_id: enc_key(50).id(),
            org: "AG".into(),
        }
    );
    let v3 = apply(&v2, vec![set_key(&hub_key(), "HUB", 51)], &no_heads);
    assert_eq!(
        action_error(try_propose(
            &v3,
            vec![set_key(&key(20), "AG", 51)],
            &no_heads
        )),
        ActionError::EncryptionKeyInUse {
            key_id: enc_key(51).id(),
            org: "HUB".into(),
        }
    );
}

#[test]
fn set_encryption_key_refused_for_a_suspended_member() {
    let v2 = with_keyed_agency();
    let v3 = apply(
        &v2,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &no_heads,
    );
    assert_eq!(
        action_error(try_propose(
            &v3,
            vec![set_key(&key(20), "AG", 51)],
            &no_heads
        )),
        ActionError::NotActive {
            org: org("AG"),
            status: "suspended",
        }
    );
}

#[test]
fn set_encryption_key_drops_the_oldest_beyond_eight() {
    let mut r = with_keyed_agency();
    for n in 51..=57 {
        r = apply(&r, vec![set_key(&key(20), "AG", n)], &no_heads);
    }
    assert_eq!(listed(&r, "AG").len(), MAX_ENCRYPTION_KEYS);
    assert_eq!(listed(&r, "AG")[0], (enc_key(50), 2));
    let before = r.clone();
    r = apply(&r, vec![set_key(&key(20), "AG", 58)], &no_heads);
    let keys = listed(&r, "AG");
    assert_eq!(keys.len(), MAX_ENCRYPTION_KEYS);
    assert_eq!(keys[0], (enc_key(51), 3));
    assert_eq!(keys[7], (enc_key(58), r.version()));
    assert_eq!(r.encryption_key(&org("AG")), Some(enc_key(58)));
    let line = &r.document().change.as_ref().expect("change").actions[0];
    assert!(
        line.ends_with(&format!("; oldest dropped: {}", enc_key(50).id())),
        "{line}"
    );
    assert!(diff(before.document(), r.document()).contains(&format!(
        "member AG: encryption key {} dropped",
        enc_key(50).id()
    )));
}

#[test]
fn genesis_hub_with_an_encryption_key() {
    let mut spec = spec();
    spec.hub_members[0].encryption_key = Some(enc_key(40));
    let bytes = intelmesh_roster::build_genesis(&spec, NOW).expect("valid genesis");
    let [a, b, _] = authority_keys();
    let r = Roster::genesis(&sign(&bytes, &[&a, &b]), None).expect("follows");
    assert_eq!(r.encryption_key(&org("HUB")), Some(enc_key(40)));
    assert_eq!(listed(&r, "HUB"), vec![(enc_key(40), 1)]);
}

#[test]
fn an_old_encryption_key_request_is_refused() {
    let v2 = with_keyed_agency();
    // A request made eight days before the proposal: it may name a key rotated out since.
    let old = A::SetEncryptionKey(pb::SetEncryptionKey {
        request: Some(sign_encryption_key(
            &org("AG"),
            &key(20),
            &enc_key(51),
            NOW - 8 * 24 * 3_600_000,
        )),
    });
    let err = action_error(try_propose(&v2, vec![old], &no_heads));
    assert!(
        matches!(
            err,
            ActionError::StaleRequest {
                age_days: 8,
                max_days: 7,
                ..
            }
        ),
        "{err}"
    );
    // Nor one dated days ahead, which would stay fresh for ever.
    let ahead = A::SetEncryptionKey(pb::SetEncryptionKey {
        request: Some(sign_encryption_key(
            &org("AG"),
            &key(20),
            &enc_key(51),
            NOW + 3 * 24 * 3_600_000,
        )),
    });
    let err = action_error(try_propose(&v2, vec![ahead], &no_heads));
    assert!(matches!(err, ActionError::StaleRequest { .. }), "{err}");
    // A fresh one is taken.
    let v3 = apply(&v2, vec![set_key(&key(20), "AG", 51)], &no_heads);
    assert_eq!(listed(&v3, "AG").len(), 2);
}

#[test]
fn a_compromise_report_stops_sealing_to_the_keys_the_thief_may_hold() {
    let v2 = with_keyed_agency();
    let v3 = apply(&v2, vec![report_compromise(20, 0, Some(22))], &no_heads);
    assert_eq!(
        v3.encryption_key(&org("AG")),
        None,
        "the encryption key lived beside the stolen signing key"
    );
    assert_eq!(ReaderKeys::current(&v3, &org("AG")), None);
    // Still listed, as history: only nothing new is sealed to it.
    assert_eq!(listed(&v3, "AG"), vec![(enc_key(50), 2)]);
    let changes = diff(v2.document(), v3.document());
    assert!(
        changes.contains(&format!(
            "member AG: encryption key {} reported compromised, nothing new sealed to it",
            enc_key(50).id()
        )),
        "{changes:?}"
    );
    // The stolen signing key cannot list a key of the thief's; the replacement lists a fresh one.
    set_only_by(&v3, 20, 22);
    // In one proposal, report first: the fresh key stays current and unmarked.
    let at_once = apply(
        &v2,
        vec![
            report_compromise(20, 0, Some(22)),
            set_key(&key(22), "AG", 52),
        ],
        &no_heads,
    );
    assert_eq!(at_once.encryption_key(&org("AG")), Some(enc_key(52)));
    // A key listed just before the report, in the same proposal, is marked with the rest.
    let before = apply(
        &v2,
        vec![
            set_key(&key(20), "AG", 53),
            report_compromise(20, 0, Some(22)),
        ],
        &no_heads,
    );
    assert_eq!(before.encryption_key(&org("AG")), None);
    // The key reported again (its range shortened) cuts nothing of the node recovered since.
    let late = apply(&v2, vec![report_compromise(20, 5, Some(22))], &heads(5));
    let recovered = apply(&late, vec![set_key(&key(22), "AG", 54)], &no_heads);
    // Moved back below the replacement's start, the replacement (whose entries chained onto
    // the thief's) ends and another replaces it; the recovered node's encryption key stays.
    let earlier = apply(
        &recovered,
        vec![report_compromise(20, 3, Some(23))],
        &no_heads,
    );
    assert_eq!(earlier.encryption_key(&org("AG")), Some(enc_key(54)));
    let line = &earlier.document().change.as_ref().expect("change").actions[0];
    assert!(!line.contains("certificates"), "{line}");
    assert!(line.contains("later key(s)"), "{line}");
}
