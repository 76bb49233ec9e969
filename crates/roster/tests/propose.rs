//! Admin actions: each kind applied (with its audit line) and each refusal naming the action and
//! the reason; enrolment and rotation requests whose signatures do not verify.

mod common;

use common::*;
use intelmesh_core::KeyId;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{
    sign_enrolment, sign_rotation, verify_enrolment, verify_rotation, EnrolmentDetails,
    RequestError,
};
use intelmesh_roster::propose::ActionError;
use intelmesh_roster::{check_document, DocumentDefect, MemberStatus, ProposeError, Roster};
use pb::action::Action as A;
use prost::Message as _;

#[path = "propose/refused_versions.rs"]
mod refused_versions;

fn refusal(current: &Roster, actions: Vec<A>) -> (usize, &'static str, ActionError) {
    match try_propose(current, actions, &no_heads) {
        Err(ProposeError::Action { index, kind, error }) => (index, kind, error),
        other => panic!("expected an action refusal, got {other:?}"),
    }
}

fn lines(r: &Roster) -> Vec<String> {
    r.document().change.clone().unwrap_or_default().actions
}

fn suspend(o: &str) -> A {
    A::Suspend(pb::Suspend { org: o.into() })
}

#[test]
fn proposal_links_to_the_current_version_and_records_the_change() {
    let v1 = genesis();
    let bytes = try_propose(&v1, vec![add_agency("AG", &key(20))], &no_heads).expect("proposal");
    let doc = check_document(&bytes).expect("well-formed").document;
    assert_eq!(doc.version, 2);
    assert_eq!(doc.prev_hash, v1.hash().to_vec());
    assert_eq!(doc.issued_at_unix_ms, NOW);
    let change = doc.change.expect("change");
    assert_eq!(
        (change.proposed_by.as_str(), change.reason.as_str()),
        ("alice", "test")
    );
    assert_eq!(
        change.actions,
        vec![format!(
            "add member AG (AG agency, AU) as agency with key {}",
            KeyId::of(&key(20).verifying_key())
        )]
    );
    assert_eq!(
        try_propose(&v1, vec![], &no_heads),
        Err(ProposeError::NoActions)
    );
}

#[test]
fn add_member_refusals() {
    let v2 = with_agency();
    assert_eq!(
        refusal(&v2, vec![add_agency("AG", &key(22))]),
        (
            1,
            "add member",
            ActionError::AlreadyMember {
                org: org("AG"),
                status: "active"
            }
        )
    );
    assert_eq!(
        refusal(&v2, vec![add_agency("FED", &key(22))]).2,
        ActionError::FederationId(org("FED"))
    );
    assert_eq!(
        refusal(&v2, vec![add_agency("NEW", &key(20))]).2,
        ActionError::KeyInUse {
            key_id: KeyId::of(&key(20).verifying_key()),
            org: "AG".into()
        }
    );
    let mut no_role = add_agency("NEW", &key(22));
    if let A::AddMember(a) = &mut no_role {
        a.role = 0;
    }
    assert_eq!(refusal(&v2, vec![no_role]).2, ActionError::Role(0));
    assert_eq!(
        refusal(&v2, vec![A::AddMember(pb::AddMember::default())]).2,
        ActionError::Missing("request")
    );
}

/// An enrolment request is good for 90 days: one turned down, withdrawn or forgotten cannot
/// bring in keys its owner may have discarded or leaked since; one dated ahead neither.
#[test]
fn an_old_or_future_enrolment_request_is_refused() {
    use intelmesh_roster::MAX_ENROLMENT_REQUEST_AGE_MS;
    const DAY: i64 = 24 * 60 * 60 * 1000;
    let v1 = genesis();
    let dated = |at: i64| {
        let details = EnrolmentDetails {
            org: org("AG"),
            display_name: "AG agency".into(),
            country: "AU".into(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"
                .into(),
            encryption_key: None,
        };
        A::AddMember(pb::AddMember {
            request: Some(sign_enrolment(&details, &key(20), at)),
            role: pb::MemberRole::Agency as i32,
        })
    };
    assert_eq!(
        refusal(&v1, vec![dated(NOW - MAX_ENROLMENT_REQUEST_AGE_MS - DAY)]).2,
        ActionError::StaleEnrolment {
            org: org("AG"),
            age_days: 91,
            max_days: 90
        }
    );
    assert!(matches!(
        refusal(&v1, vec![dated(NOW + 2 * DAY)]).2,
        ActionError::StaleEnrolment { age_days: -2, .. }
    ));
    let v2 = apply(
        &v1,
        vec![dated(NOW - MAX_ENROLMENT_REQUEST_AGE_MS)],
        &no_heads,
    );
    assert!(v2.member(&org("AG")).is_some());
}

#[test]
fn forged_enrolment_proof_is_refused() {
    let v1 = genesis();
    // The request names key 20 but is signed by key 21: no proof of possession.
    let mut request = enrolment("AG", &key(20));
    request.signature = enrolment("AG", &key(21)).signature;
    let expected = RequestError::BadSignature {
        which: "signing key's",
        key_id: KeyId::of(&key(20).verifying_key()),
    };
    assert_eq!(verify_enrolment(&request), Err(expected.clone()));
    let action = A::AddMember(pb::AddMember {
        request: Some(request),
        role: pb::MemberRole::Agency as i32,
    });
    assert_eq!(
        refusal(&v1, vec![action]),
        (1, "add member", ActionError::Enrolment(expected))
    );
    // Altered after signing.
    let mut altered = enrolment("AG", &key(20));
    altered.request.push(0);
    assert!(verify_enrolment(&altered).is_err());
}

#[test]
fn rotation_with_a_wrong_old_key_signature_is_refused() {
    let v2 = with_agency();
    let mut request = sign_rotation(&org("AG"), &key(20), &key(21), 5, NOW);
    // Signed by a stranger in place of the old key.
    request.signature = sign_rotation(&org("AG"), &key(30), &key(21), 5, NOW).signature;
    let expected = RequestError::BadSignature {
        which: "old key's",
        key_id: KeyId::of(&key(20).verifying_key()),
    };
    assert_eq!(verify_rotation(&request), Err(expected.clone()));
    let action = A::RotateKey(pb::RotateKey {
        request: Some(request),
    });
    assert_eq!(
        refusal(&v2, vec![action]),
        (1, "rotate key", ActionError::Rotation(expected))
    );
    let mut no_new_proof = sign_rotation(&org("AG"), &key(20), &key(21), 5, NOW);
    no_new_proof.new_key_signature = no_new_proof.signature.clone();
    assert!(matches!(
        verify_rotation(&no_new_proof),
        Err(RequestError::BadSignature {
            which: "new key's",
            ..
        })
    ));
    assert_eq!(
        verify_rotation(&sign_rotation(&org("AG"), &key(20), &key(20), 5, NOW)),
        Err(RequestError::SameKey)
    );
}

#[test]
fn rotation_refusals() {
    let v2 = with_agency();
    let rotate = |old: u8, new: u8, last: u64| {
        A::RotateKey(pb::RotateKey {
            request: Some(sign_rotation(&org("AG"), &key(old), &key(new), last, NOW)),
        })
    };
    // Not the member's key.
    assert_eq!(
        refusal(&v2, vec![rotate(30, 21, 5)]).2,
        ActionError::OldKeyNotCurrent {
            org: org("AG"),
            key_id: KeyId::of(&key(30).verifying_key())
        }
    );
    // Behind what the hub holds.
    let heads = |_: &intelmesh_core::OrgId| 9;
    assert_eq!(
        try_propose(&v2, vec![rotate(20, 21, 5)], &heads),
        Err(ProposeError::Action {
            index: 1,
            kind: "rotate key",
            error: ActionError::LastSeqBehind {
                org: org("AG"),
                last_seq: 5,
                known: 9
            }
        })
    );
    // The new key is someone's already.
    assert_eq!(
        refusal(&v2, vec![rotate(20, 10, 5)]).2,
        ActionError::KeyInUse {
            key_id: KeyId::of(&hub_key().verifying_key()),
            org: "HUB".into()
        }
    );
    // The old key is no longer the open one after a first rotation.
    assert_eq!(
        refusal(&v2, vec![rotate(20, 21, 5), rotate(20, 22, 9)]),
        (
            2,
            "rotate key",
            ActionError::OldKeyNotCurrent {
                org: org("AG"),
                key_id: KeyId::of(&key(20).verifying_key())
            }
        )
    );
    assert_eq!(
        refusal(&v2, vec![suspend("AG"), rotate(20, 21, 5)]).2,
        ActionError::NotActive {
            org: org("AG"),
            status: "suspended"
        }
    );
}

#[test]
fn suspend_reinstate_remove_and_their_refusals() {
    let v2 = with_agency();
    let v3 = apply(&v2, vec![suspend("AG")], &|_| 7);
    assert_eq!(
        v3.member_rules(&org("AG")).map(|m| m.status),
        Some(MemberStatus::Suspended)
    );
    assert_eq!(
        lines(&v3),
        vec![format!(
            "suspend AG at seq 7: keys ended: {} (seqs 1..=7)",
            KeyId::of(&key(20).verifying_key())
        )]
    );
    assert_eq!(
        refusal(&v3, vec![suspend("AG")]).2,
        ActionError::AlreadySuspended(org("AG"))
    );
    assert_eq!(
        refusal(&v2, vec![A::Reinstate(pb::Reinstate { org: "AG".into() })]).2,
        ActionError::NotSuspended {
            org: org("AG"),
            status: "active"
        }
    );
    assert_eq!(
        refusal(&v2, vec![suspend("NOBODY")]).2,
        ActionError::UnknownMember(org("NOBODY"))
    );
    assert!(matches!(
        refusal(&v2, vec![suspend("ag")]).2,
        ActionError::Org(_)
    ));
    let v4 = apply(
        &v3,
        vec![A::Reinstate(pb::Reinstate { org: "AG".into() })],
        &no_heads,
    );
    assert_eq!(
        lines(&v4),
        vec![format!(
            "reinstate AG: keys reopened: {} (seqs 1..)",
            KeyId::of(&key(20).verifying_key())
        )]
    );
    let remove = |withdraw| {
        A::Remove(pb::Remove {
            org: "AG".into(),
            withdraw,
        })
    };
    let v5 = apply(&v4, vec![remove(false)], &|_| 11);
    assert!(v5.withdrawn_orgs().is_empty());
    assert_eq!(
        refusal(&v5, vec![remove(true)]).2,
        ActionError::Removed(org("AG"))
    );
    assert_eq!(
        refusal(&v5, vec![suspend("AG")]).2,
        ActionError::Removed(org("AG"))
    );
    assert_eq!(
        refusal(&v5, vec![A::Reinstate(pb::Reinstate { org: "AG".into() })]).2,
        ActionError::Removed(org("AG"))
    );
}

#[test]
fn removing_a_hub_drops_its_addresses() {
    let v1 = genesis();
    // Another hub first: a version leaves at least one active hub.
    let second_hub = A::AddMember(pb::AddMember {
        request: Some(enrolment("HUB-B", &key(21))),
        role: pb::MemberRole::Hub as i32,
    });
    let v2 = apply(
        &v1,
        vec![
            second_hub,
            A::Remove(pb::Remove {
                org: "HUB".into(),
                withdraw: false,
            }),
        ],
        &no_heads,
    );
    assert!(v2.document().hubs.is_empty());
    assert!(
        lines(&v2)[1].ends_with("; its hub addresses are dropped"),
        "{:?}",
        lines(&v2)
    );
}

#[test]
fn report_compromise_refusals() {
    let v2 = with_agency();
    let report = |k: u8, last| {
        A::ReportCompromise(pb::ReportCompromise {
            org: "AG".into(),
            public_key: key(k).verifying_key().to_bytes().to_vec(),
            last_good_seq: last,
            ..Default::default()
        })
    };
    assert!(matches!(
        refusal(&v2, vec![report(21, 3)]).2,
        ActionError::UnknownKey { .. }
    ));
    assert_eq!(
        refusal(&v2, vec![report(20, 3), report(20, 4)]).2,
        ActionError::NotShortening {
            org: org("AG"),
            key_id: KeyId::of(&key(20).verifying_key()),
            last_seq: 3,
            requested: 4
        }
    );
    // Shortening again is allowed.
    let v3 = apply(&v2, vec![report(20, 3), report(20, 2)], &no_heads);
    assert_eq!(
        v3.member_rules(&org("AG")).map(|m| m.keys[0].last_seq),
        Some(Some(2))
    );
}

#[test]
fn certificates_record_and_revoke() {
    let v2 = with_agency();
    let record = |serial: &str| {
        A::RecordCert(pb::RecordCert {
            org: "AG".into(),
            cert: Some(pb::IssuedCert {
                serial: serial.into(),
                not_after_unix_ms: NOW,
            }),
        })
    };
    let revoke = |serial: &str| {
        A::RevokeCert(pb::RevokeCert {
            serial: serial.into(),
            reason: "lost".into(),
        })
    };
    let v3 = apply(&v2, vec![record("0A:BC"), revoke("abc")], &no_heads);
    assert_eq!(
        v3.member(&org("AG"))
            .map(|m| m.certificates[0].serial.clone()),
        Some("abc".into())
    );
    assert_eq!(v3.document().revoked[0].org, "AG");
    assert_eq!(
        lines(&v3),
        vec![
            format!("record certificate abc of AG, not after {NOW} (unix ms)"),
            "revoke certificate abc (AG): lost".to_string()
        ]
    );
    assert_eq!(
        refusal(&v3, vec![revoke("ABC")]).2,
        ActionError::AlreadyRevoked("abc".into())
    );
    assert_eq!(
        refusal(&v3, vec![record("abc")]).2,
        ActionError::CertRevoked("abc".into())
    );
    assert_eq!(
        refusal(&v3, vec![record("d"), record("d")]).2,
        ActionError::CertAlreadyRecorded {
            serial: "d".into(),
            org: "AG".into()
        }
    );
    assert_eq!(
        refusal(&v3, vec![revoke("xyz")]).2,
        ActionError::Serial("xyz".into())
    );
}

#[test]
fn authority_hubs_and_policy() {
    let v1 = genesis();
    let authority = pb::Authority {
        keys: vec![pb::AuthorityKey {
            name: "dave".into(),
            public_key: key(4).verifying_key().to_bytes().to_vec(),
        }],
        threshold: 1,
    };
    let set_authority = A::SetAuthority(pb::SetAuthority {
        authority: Some(authority.clone()),
    });
    let bytes = try_propose(&v1, vec![set_authority], &no_heads).expect("proposal");
    let doc = check_document(&bytes).expect("well-formed").document;
    assert_eq!(doc.authority, Some(authority));
    assert_eq!(
        doc.change.expect("change").actions,
        vec![format!(
            "set authority: 1 of 1: dave ({})",
            KeyId::of(&key(4).verifying_key())
        )]
    );
    let bad = A::SetAuthority(pb::SetAuthority {
        authority: Some(pb::Authority {
            keys: vec![],
            threshold: 1,
        }),
    });
    assert_eq!(
        refusal(&v1, vec![bad]).2,
        ActionError::Malformed(DocumentDefect::Threshold {
            threshold: 1,
            keys: 0
        })
    );
    let hubs = |o: &str| {
        A::SetHubs(pb::SetHubs {
            hubs: vec![pb::HubAddress {
                org: o.into(),
                address: "h2.example:7443".into(),
            }],
        })
    };
    let v2 = apply(&v1, vec![hubs("HUB")], &no_heads);
    assert_eq!(
        lines(&v2),
        vec!["set hubs: HUB at h2.example:7443".to_string()]
    );
    let v3 = apply(&v2, vec![add_agency("AG", &key(20))], &no_heads);
    assert_eq!(
        refusal(&v3, vec![hubs("AG")]),
        (
            1,
            "set hubs",
            ActionError::Malformed(DocumentDefect::HubNotHubMember {
                org: "AG".into(),
                address: "h2.example:7443".into()
            })
        )
    );
    let policy = A::SetPolicy(pb::SetPolicy {
        policy: Some(pb::Policy {
            clock_skew_ms: 1000,
            checkpoint_interval_ms: 5000,
            cert_warn_days: 10,
        }),
    });
    let v4 = apply(&v3, vec![policy], &no_heads);
    assert_eq!(
        lines(&v4),
        vec![
            "set policy: clock skew 1000 ms, checkpoint every 5000 ms, certificate warning 10 days"
                .to_string()
        ]
    );
    assert_eq!(
        refusal(&v4, vec![A::SetPolicy(pb::SetPolicy { policy: None })]).2,
        ActionError::Missing("policy")
    );
}

#[test]
fn an_empty_action_is_refused() {
    let v1 = genesis();
    let ctx = intelmesh_roster::ProposeContext {
        proposed_by: "alice",
        reason: "",
        now_unix_ms: NOW,
        member_heads: &no_heads,
    };
    assert_eq!(
        intelmesh_roster::propose(&v1, &[pb::Action { action: None }], &ctx),
        Err(ProposeError::Action {
            index: 1,
            kind: "empty",
            error: ActionError::Empty
        })
    );
}

#[test]
fn a_proposal_of_too_many_actions_is_refused_before_any_is_applied() {
    let v2 = with_agency();
    let actions = vec![suspend("AG"); intelmesh_roster::propose::MAX_ACTIONS + 1];
    assert_eq!(
        try_propose(&v2, actions, &no_heads),
        Err(ProposeError::TooManyActions {
            actions: intelmesh_roster::propose::MAX_ACTIONS + 1,
            max: intelmesh_roster::propose::MAX_ACTIONS,
        })
    );
}
