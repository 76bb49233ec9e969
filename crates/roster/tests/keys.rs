//! What a roster lets nodes do: verify keys by seq (through core's `KeyRegistry`), admit peers,
//! withdraw assertions, apply policy.

mod common;

use common::*;
use ed25519_dalek::SigningKey;
use intelmesh_core::verify::{KeyLookup, KeyRegistry};
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{sign_replacement, sign_rotation, RequestError};
use intelmesh_roster::model::CERT_BACKDATE_MS;
use intelmesh_roster::{ActionError, ProposeError};
use intelmesh_roster::{MemberRole, Policy, Presented, Refusal, Roster};
use pb::action::Action as A;

fn lookup(roster: &Roster, origin: &str, key: &SigningKey, seq: u64) -> KeyLookup {
    roster
        .key_set()
        .key(&org(origin), &KeyId::of(&key.verifying_key()), seq)
}

fn valid(roster: &Roster, origin: &str, key: &SigningKey, seq: u64) -> bool {
    lookup(roster, origin, key, seq) == KeyLookup::Valid(key.verifying_key())
}

fn serial(serial_hex: &str) -> Presented<'_> {
    Presented {
        serial_hex: Some(serial_hex),
        not_before_unix_ms: Some(NOW),
    }
}

fn heads(n: u64) -> impl Fn(&OrgId) -> u64 {
    move |_| n
}

#[test]
fn every_member_key_is_valid_from_its_first_seq() {
    let r = with_agency();
    assert!(valid(&r, "AG", &key(20), 1));
    assert!(valid(&r, "AG", &key(20), 1_000_000));
    assert!(valid(&r, "HUB", &hub_key(), 1));
    assert_eq!(lookup(&r, "AG", &key(21), 1), KeyLookup::Unknown);
    assert_eq!(lookup(&r, "HUB", &key(20), 1), KeyLookup::Unknown);
}

#[test]
fn the_authority_origin_takes_the_hub_keys_for_all_seqs() {
    let r = with_agency();
    let keys = r.key_set();
    assert!(keys.is_authority(&org("FED")));
    assert!(!keys.is_authority(&org("HUB")));
    assert!(valid(&r, "FED", &hub_key(), 1));
    assert!(valid(&r, "FED", &hub_key(), 99));
    // An agency's key never signs the roster log.
    assert_eq!(lookup(&r, "FED", &key(20), 1), KeyLookup::Unknown);
}

/// AG's rotation from key 20 to key 21 at seq 40.
fn rotation_20_to_21_at_40() -> A {
    A::RotateKey(pb::RotateKey {
        request: Some(sign_rotation(&org("AG"), &key(20), &key(21), 40, NOW)),
    })
}

#[test]
fn rotation_ends_the_old_key_and_starts_the_new_one() {
    let v2 = with_agency();
    let rotate = rotation_20_to_21_at_40();
    let v3 = apply(&v2, vec![rotate], &heads(35));
    assert!(valid(&v3, "AG", &key(20), 1));
    assert!(valid(&v3, "AG", &key(20), 40));
    assert_eq!(
        lookup(&v3, "AG", &key(20), 41),
        KeyLookup::OutOfRange {
            first_seq: 1,
            last_seq: Some(40),
            key: key(20).verifying_key(),
        }
    );
    assert!(valid(&v3, "AG", &key(21), 41));
    assert_eq!(
        lookup(&v3, "AG", &key(21), 40),
        KeyLookup::OutOfRange {
            first_seq: 41,
            last_seq: None,
            key: key(21).verifying_key(),
        }
    );
}

#[test]
fn compromise_refuses_entries_after_the_last_good_seq() {
    let v2 = with_agency();
    let report = A::ReportCompromise(pb::ReportCompromise {
        org: "AG".into(),
        public_key: key(20).verifying_key().to_bytes().to_vec(),
        last_good_seq: 12,
        ..Default::default()
    });
    let v3 = apply(&v2, vec![report], &heads(50));
    assert!(valid(&v3, "AG", &key(20), 12));
    assert_eq!(
        lookup(&v3, "AG", &key(20), 13),
        KeyLookup::OutOfRange {
            first_seq: 1,
            last_seq: Some(12),
            key: key(20).verifying_key(),
        }
    );
}

#[test]
fn a_replacement_key_sent_with_a_compromise_report_signs_after_the_cut_off() {
    let v2 = with_agency();
    let ag = org("AG");
    let replacement = |proof_key: u8, first_seq: u64| {
        A::ReportCompromise(pb::ReportCompromise {
            org: "AG".into(),
            public_key: key(20).verifying_key().to_bytes().to_vec(),
            last_good_seq: 12,
            replacement_key: key(22).verifying_key().to_bytes().to_vec(),
            replacement_proof: sign_replacement(&ag, &key(proof_key), first_seq),
        })
    };
    let v3 = apply(&v2, vec![replacement(22, 13)], &heads(12));
    assert!(valid(&v3, "AG", &key(20), 12));
    assert!(!valid(&v3, "AG", &key(20), 13));
    assert!(valid(&v3, "AG", &key(22), 13));
    assert!(!valid(&v3, "AG", &key(22), 12));
    assert!(v3.document().change.as_ref().unwrap().actions[0].contains("replacement key"));
    // The proof must come from the new key, for this org and this first seq.
    for bad in [replacement(20, 13), replacement(22, 14)] {
        let err = try_propose(&v2, vec![bad], &heads(12)).unwrap_err();
        assert!(
            matches!(
                err,
                ProposeError::Action {
                    error: ActionError::Replacement(RequestError::BadSignature { .. }),
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn a_compromise_report_refuses_the_certificates_issued_before_it() {
    let v2 = with_agency();
    let issued = |not_before_unix_ms| Presented {
        serial_hex: Some("ab"),
        not_before_unix_ms,
    };
    let before = issued(Some(NOW - CERT_BACKDATE_MS - 1));
    assert_eq!(v2.admits_peer(&org("AG"), before), Ok(MemberRole::Agency));
    let v3 = apply(&v2, vec![report_compromise(20, 0, Some(22))], &no_heads);
    let refused = Err(Refusal::CertificateBeforeCompromise {
        org: org("AG"),
        version: 3,
    });
    assert_eq!(v3.admits_peer(&org("AG"), before), refused);
    assert_eq!(
        v3.admits_peer(&org("AG"), issued(None)),
        refused,
        "a certificate of unknown validity may be the thief's"
    );
    // One the federation CA signs from the report's time on (backdated as it does) is admitted.
    for after in [NOW - CERT_BACKDATE_MS, NOW] {
        assert_eq!(
            v3.admits_peer(&org("AG"), issued(Some(after))),
            Ok(MemberRole::Agency)
        );
    }
    assert!(v3.issued_before_compromise(&org("AG"), Some(NOW - CERT_BACKDATE_MS - 1)));
    assert!(
        !v3.issued_before_compromise(&org("HUB"), Some(0)),
        "other members keep theirs"
    );
    let line = &v3.document().change.as_ref().expect("change").actions[0];
    assert!(
        line.contains("; its certificates issued until now are refused"),
        "{line}"
    );
    assert!(
        intelmesh_roster::diff(v2.document(), v3.document()).contains(&format!(
            "member AG: certificates whose validity starts before {} (unix ms) refused",
            NOW - CERT_BACKDATE_MS
        ))
    );
}

#[test]
fn a_suspended_member_gets_no_replacement_key_with_a_compromise_report() {
    let v2 = with_agency();
    let ag = org("AG");
    let v3 = apply(
        &v2,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &heads(12),
    );
    let report = |replacement: bool| {
        A::ReportCompromise(pb::ReportCompromise {
            org: "AG".into(),
            public_key: key(20).verifying_key().to_bytes().to_vec(),
            last_good_seq: 12,
            replacement_key: if replacement {
                key(22).verifying_key().to_bytes().to_vec()
            } else {
                Vec::new()
            },
            replacement_proof: if replacement {
                sign_replacement(&ag, &key(22), 13)
            } else {
                Vec::new()
            },
        })
    };
    let err = try_propose(&v3, vec![report(true)], &heads(12)).unwrap_err();
    assert!(
        matches!(
            err,
            ProposeError::Action {
                error: ActionError::ReplacementWhileNotActive { .. },
                ..
            }
        ),
        "{err}"
    );
    // The report alone is taken; no key of the member is open after it.
    let v4 = apply(&v3, vec![report(false)], &heads(12));
    assert!(!valid(&v4, "AG", &key(20), 13));
    assert!(!valid(&v4, "AG", &key(22), 13));
    // The order the error names: report, reinstate, report with the replacement.
    let reinstate = A::Reinstate(pb::Reinstate { org: "AG".into() });
    let v4 = apply(
        &v3,
        vec![report(false), reinstate, report(true)],
        &heads(12),
    );
    assert!(
        !valid(&v4, "AG", &key(20), 13),
        "the stolen key stays ended"
    );
    assert!(valid(&v4, "AG", &key(22), 13), "the replacement signs on");
}

#[test]
fn suspension_cuts_at_the_hub_head_and_reinstatement_reopens() {
    let v2 = with_agency();
    let v3 = apply(
        &v2,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &heads(30),
    );
    assert!(valid(&v3, "AG", &key(20), 30));
    assert!(!valid(&v3, "AG", &key(20), 31));
    let v4 = apply(
        &v3,
        vec![A::Reinstate(pb::Reinstate { org: "AG".into() })],
        &heads(30),
    );
    assert!(valid(&v4, "AG", &key(20), 31));
    assert_eq!(
        v4.admits_peer(&org("AG"), Presented::default()),
        Ok(MemberRole::Agency)
    );
}

#[test]
fn reinstatement_keeps_a_compromise_reported_while_suspended() {
    let v2 = with_agency();
    let v3 = apply(
        &v2,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &heads(30),
    );
    let report = A::ReportCompromise(pb::ReportCompromise {
        org: "AG".into(),
        public_key: key(20).verifying_key().to_bytes().to_vec(),
        last_good_seq: 20,
        ..Default::default()
    });
    let v4 = apply(&v3, vec![report], &heads(30));
    let v5 = apply(
        &v4,
        vec![A::Reinstate(pb::Reinstate { org: "AG".into() })],
        &heads(30),
    );
    assert!(valid(&v5, "AG", &key(20), 20));
    assert!(!valid(&v5, "AG", &key(20), 21));
}

#[test]
fn suspension_right_after_a_rotation_gives_the_new_key_an_empty_range() {
    let v2 = with_agency();
    let rotate = rotation_20_to_21_at_40();
    let suspend = A::Suspend(pb::Suspend { org: "AG".into() });
    let v3 = apply(&v2, vec![rotate, suspend], &heads(10));
    assert!(valid(&v3, "AG", &key(20), 40));
    assert!(!valid(&v3, "AG", &key(21), 41));
}

/// A rotation ending the old key far past what the hub holds of the member is refused: a
/// suspension later ends only open keys at the hub's head, so the old key would sign on.
#[test]
fn a_rotation_may_not_end_the_old_key_far_past_the_hubs_head() {
    use intelmesh_roster::ROTATION_LEAD_MAX;
    let v2 = with_agency();
    let rotation = |last_seq| {
        vec![A::RotateKey(pb::RotateKey {
            request: Some(sign_rotation(&org("AG"), &key(20), &key(21), last_seq, NOW)),
        })]
    };
    let err = try_propose(&v2, rotation(10 + ROTATION_LEAD_MAX + 1), &heads(10)).unwrap_err();
    assert!(
        matches!(
            err,
            ProposeError::Action {
                error: ActionError::LastSeqAhead { last_seq, head: 10, .. },
                ..
            } if last_seq == 10 + ROTATION_LEAD_MAX + 1
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("wait until the hub has caught up"),
        "{err}"
    );
    let v3 = apply(&v2, rotation(10 + ROTATION_LEAD_MAX), &heads(10));
    let v4 = apply(
        &v3,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &heads(10),
    );
    assert!(!valid(&v4, "AG", &key(20), 11 + ROTATION_LEAD_MAX));
    assert!(!valid(&v4, "AG", &key(21), 11 + ROTATION_LEAD_MAX));
}

#[test]
fn admission_says_why_a_peer_is_refused() {
    let v2 = with_agency();
    assert_eq!(
        v2.admits_peer(&org("HUB"), Presented::default()),
        Ok(MemberRole::Hub)
    );
    assert_eq!(
        v2.admits_peer(&org("NOBODY"), Presented::default()),
        Err(Refusal::NotMember {
            org: org("NOBODY"),
            version: 2
        })
    );
    assert_eq!(
        v2.admits_peer(&org("FED"), Presented::default()),
        Err(Refusal::NotMember {
            org: org("FED"),
            version: 2
        })
    );
    let v3 = apply(
        &v2,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &no_heads,
    );
    assert_eq!(
        v3.admits_peer(&org("AG"), Presented::default()),
        Err(Refusal::Suspended {
            org: org("AG"),
            version: 3
        })
    );
    let remove = A::Remove(pb::Remove {
        org: "AG".into(),
        withdraw: true,
    });
    let v4 = apply(&v3, vec![remove], &no_heads);
    assert_eq!(
        v4.admits_peer(&org("AG"), Presented::default()),
        Err(Refusal::Removed {
            org: org("AG"),
            version: 4
        })
    );
    assert_eq!(v4.withdrawn_orgs(), [org("AG")].into_iter().collect());
}

#[test]
fn a_refused_certificate_is_refused_in_any_spelling() {
    let v2 = with_agency();
    let revoke = A::RevokeCert(pb::RevokeCert {
        serial: "00:AB:CD".into(),
        reason: "key lost".into(),
    });
    let v3 = apply(&v2, vec![revoke], &no_heads);
    assert!(v3.revoked_serials().contains("abcd"));
    for spelling in ["abcd", "ABCD", "00abcd", "ab:cd"] {
        assert_eq!(
            v3.admits_peer(&org("AG"), serial(spelling)),
            Err(Refusal::CertificateRevoked {
                org: org("AG"),
                serial: "abcd".into(),
                version: 3
            }),
            "{spelling}"
        );
    }
    assert_eq!(
        v3.admits_peer(&org("AG"), serial("abce")),
        Ok(MemberRole::Agency)
    );
}

#[test]
fn policy_zeros_take_defaults() {
    let r = genesis();
    assert_eq!(
        r.policy(),
        Policy {
            clock_skew_ms: 5 * 60 * 1000,
            checkpoint_interval_ms: 60 * 1000,
            cert_warn_days: 30
        }
    );
    let set = A::SetPolicy(pb::SetPolicy {
        policy: Some(pb::Policy {
            clock_skew_ms: 1000,
            checkpoint_interval_ms: 0,
            cert_warn_days: 7,
        }),
    });
    let v2 = apply(&r, vec![set], &no_heads);
    assert_eq!(
        v2.policy(),
        Policy {
            clock_skew_ms: 1000,
            checkpoint_interval_ms: 60 * 1000,
            cert_warn_days: 7
        }
    );
}

#[test]
fn a_suspended_hub_is_not_dialled() {
    let r = genesis();
    assert_eq!(r.hubs().len(), 1);
    // With a second (unlisted) hub: a version keeps an active hub.
    let second_hub = A::AddMember(pb::AddMember {
        request: Some(enrolment("HUB-B", &key(31))),
        role: pb::MemberRole::Hub as i32,
    });
    let v2 = apply(
        &r,
        vec![second_hub, A::Suspend(pb::Suspend { org: "HUB".into() })],
        &no_heads,
    );
    assert!(v2.hubs().is_empty());
    assert_eq!(v2.document().hubs.len(), 1);
    assert_eq!(v2.roster_publisher(), Some(org("HUB-B")));
}

#[test]
fn one_hub_publishes_the_roster_log_and_the_authority_can_move_the_role() {
    // A second hub, added and listed after the first: the first keeps publishing.
    let add_hub = A::AddMember(pb::AddMember {
        request: Some(enrolment("HUB-B", &key(30))),
        role: pb::MemberRole::Hub as i32,
    });
    let hub_a = pb::HubAddress {
        org: "HUB".into(),
        address: "hub.example:7443".into(),
    };
    let hub_b = pb::HubAddress {
        org: "HUB-B".into(),
        address: "hub-b.example:7443".into(),
    };
    assert_eq!(genesis().roster_publisher(), Some(org("HUB")));
    let both = apply(
        &genesis(),
        vec![
            add_hub,
            A::SetHubs(pb::SetHubs {
                hubs: vec![hub_a.clone(), hub_b.clone()],
            }),
        ],
        &no_heads,
    );
    assert_eq!(both.hubs().len(), 2, "agencies dial both hubs");
    assert_eq!(both.roster_publisher(), Some(org("HUB")));
    // Both hubs' keys sign for the authority origin up to this version, so what either
    // published verifies; past it, only the publisher's: another hub's key (in other hands)
    // putting anything at the log's next seq would freeze the roster.
    assert!(valid(&both, "FED", &hub_key(), 3));
    assert!(valid(&both, "FED", &key(30), 2));
    assert!(!valid(&both, "FED", &key(30), 3));

    // Reordering the list hands the role over; suspending the publisher does too.
    let moved = apply(
        &both,
        vec![A::SetHubs(pb::SetHubs {
            hubs: vec![hub_b, hub_a],
        })],
        &no_heads,
    );
    assert_eq!(moved.roster_publisher(), Some(org("HUB-B")));
    assert!(valid(&moved, "FED", &key(30), 4));
    assert!(valid(&moved, "FED", &hub_key(), 3));
    assert!(!valid(&moved, "FED", &hub_key(), 4));
    let suspended = apply(
        &both,
        vec![A::Suspend(pb::Suspend { org: "HUB".into() })],
        &no_heads,
    );
    assert_eq!(suspended.roster_publisher(), Some(org("HUB-B")));
    assert!(valid(&suspended, "FED", &key(30), 4));
    assert!(!valid(&suspended, "FED", &hub_key(), 4));
}

/// A key reported again with its end moved back below its successor's start (the thief began
/// earlier than first thought): the successor ends before signing anything, so the member is
/// not left with an open key that can never sign the next seq, and a replacement signs from
/// the seq after the last good one.
#[test]
fn a_report_moving_an_end_below_a_successor_ends_the_successor_and_admits_a_replacement() {
    let v2 = with_agency();
    let rotate = rotation_20_to_21_at_40();
    let v3 = apply(&v2, vec![rotate], &heads(35));
    // Key 20 is found stolen from seq 31 on: 21's entries from 41 chained onto the thief's.
    let v4 = apply(&v3, vec![report_compromise(20, 30, Some(22))], &heads(45));
    assert!(valid(&v4, "AG", &key(20), 30));
    assert!(!valid(&v4, "AG", &key(20), 31));
    assert!(
        !valid(&v4, "AG", &key(21), 41),
        "the successor signs nothing"
    );
    assert!(
        valid(&v4, "AG", &key(22), 31),
        "the replacement signs from 31"
    );
    assert!(valid(&v4, "AG", &key(22), 41));
    let line = &v4.document().change.as_ref().expect("change").actions[0];
    assert!(line.contains("later key(s)"), "{line}");
    // Without a replacement, the member is left with no open key (shut out until one comes),
    // never with one that cannot sign its next seq.
    let v4 = apply(&v3, vec![report_compromise(20, 30, None)], &heads(45));
    let keys = &v4
        .document()
        .members
        .iter()
        .find(|m| m.org == "AG")
        .expect("AG")
        .signing_keys;
    assert!(keys.iter().all(|k| k.last_seq.is_some()), "{keys:?}");
    // A report that keeps the end at the successor's start leaves the successor alone.
    let v4 = apply(&v3, vec![report_compromise(20, 40, None)], &heads(45));
    assert!(valid(&v4, "AG", &key(21), 41));
    // The successor ends as superseded, not as stolen: a later reinstatement of a suspended
    // member does not reopen it (a suspension's empty end would be).
    let suspended = apply(
        &v3,
        vec![A::Suspend(pb::Suspend { org: "AG".into() })],
        &heads(40),
    );
    let reported = apply(
        &suspended,
        vec![report_compromise(20, 30, None)],
        &heads(40),
    );
    let back = apply(
        &reported,
        vec![A::Reinstate(pb::Reinstate { org: "AG".into() })],
        &heads(30),
    );
    assert!(
        !valid(&back, "AG", &key(21), 41),
        "the successor stays ended"
    );
    let keys = &back
        .document()
        .members
        .iter()
        .find(|m| m.org == "AG")
        .expect("AG")
        .signing_keys;
    assert!(
        keys.iter()
            .all(|k| k.ended_by != pb::KeyEnd::Compromise as i32
                || k.public_key == key(20).verifying_key().to_bytes()),
        "only the reported key ends as stolen: {keys:?}"
    );
}
