//! Human diff lines between two versions, and checkpoint verdicts.

mod common;

use common::*;
use intelmesh_core::KeyId;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::checkpoint::{checkpoint_of, CheckpointDefect};
use intelmesh_roster::enrolment::sign_rotation;
use intelmesh_roster::{compare_checkpoint, diff, CheckpointVerdict};
use pb::action::Action as A;

fn id(n: u8) -> String {
    KeyId::of(&key(n).verifying_key()).to_string()
}

#[test]
fn diff_names_each_change() {
    let v1 = genesis();
    let v2 = with_agency();
    assert_eq!(
        diff(v1.document(), v2.document()),
        vec![format!(
            "member AG added: AG agency (AU), agency, active, keys {}",
            id(20)
        )]
    );
    let actions = vec![
        A::RotateKey(pb::RotateKey {
            request: Some(sign_rotation(&org("AG"), &key(20), &key(21), 40, NOW)),
        }),
        // Another hub first: a version keeps an active hub.
        A::AddMember(pb::AddMember {
            request: Some(enrolment("HUB-B", &key(23))),
            role: pb::MemberRole::Hub as i32,
        }),
        A::Suspend(pb::Suspend { org: "HUB".into() }),
        A::RecordCert(pb::RecordCert {
            org: "AG".into(),
            cert: Some(pb::IssuedCert {
                serial: "ab".into(),
                not_after_unix_ms: 5,
            }),
        }),
        A::RevokeCert(pb::RevokeCert {
            serial: "cd".into(),
            reason: "stolen".into(),
        }),
        A::SetHubs(pb::SetHubs {
            hubs: vec![pb::HubAddress {
                org: "HUB".into(),
                address: "h2.example:1".into(),
            }],
        }),
        A::SetPolicy(pb::SetPolicy {
            policy: Some(pb::Policy {
                clock_skew_ms: 1000,
                ..Default::default()
            }),
        }),
    ];
    let v3 = apply(&v2, actions, &|_| 3);
    assert_eq!(
        diff(v2.document(), v3.document()),
        vec![
            format!("member AG: key {} seqs 1.. -> 1..=40", id(20)),
            format!("member AG: key {} added, seqs 41..", id(21)),
            "member AG: certificate ab recorded, not after 5 (unix ms)".to_string(),
            "member HUB: active -> suspended".to_string(),
            format!("member HUB: key {} seqs 1.. -> 1..=3", id(10)),
            format!(
                "member HUB-B added: HUB-B agency (AU), hub, active, keys {}",
                id(23)
            ),
            "certificate cd (no member) revoked: stolen".to_string(),
            "hub address added: HUB at h2.example:1".to_string(),
            "hub address dropped: HUB at hub.example:7443".to_string(),
            "policy: clock skew 300000 -> 1000 ms, checkpoint every 60000 -> 60000 ms, certificate warning 30 -> 30 days".to_string(),
        ]
    );
    let authority = pb::Authority {
        keys: vec![
            pb::AuthorityKey {
                name: "alice".into(),
                public_key: key(1).verifying_key().to_bytes().to_vec(),
            },
            pb::AuthorityKey {
                name: "dave".into(),
                public_key: key(4).verifying_key().to_bytes().to_vec(),
            },
        ],
        threshold: 1,
    };
    let v4 = apply(
        &v3,
        vec![
            A::SetAuthority(pb::SetAuthority {
                authority: Some(authority),
            }),
            A::Remove(pb::Remove {
                org: "AG".into(),
                withdraw: true,
            }),
        ],
        &|_| 50,
    );
    assert_eq!(
        diff(v3.document(), v4.document()),
        vec![
            format!("authority key added: dave ({})", id(4)),
            format!("authority key dropped: bob ({})", id(2)),
            format!("authority key dropped: carol ({})", id(3)),
            "authority threshold: 2 -> 1".to_string(),
            "member AG: active -> removed".to_string(),
            "member AG: assertions withdrawn from every view".to_string(),
            format!("member AG: key {} seqs 41.. -> 41..=50", id(21)),
        ]
    );
    assert!(diff(v4.document(), v4.document()).is_empty());
}

#[test]
fn checkpoint_verdicts() {
    let ours = [1u8; 32];
    assert_eq!(
        compare_checkpoint(Some(&ours), &checkpoint_of(4, &ours)),
        Ok(CheckpointVerdict::Agrees)
    );
    assert_eq!(
        compare_checkpoint(Some(&ours), &checkpoint_of(4, &[2; 32])),
        Ok(CheckpointVerdict::Conflict {
            version: 4,
            ours,
            theirs: [2; 32]
        })
    );
    assert_eq!(
        compare_checkpoint(None, &checkpoint_of(9, &[2; 32])),
        Ok(CheckpointVerdict::Ahead(9))
    );
    assert_eq!(
        compare_checkpoint(
            Some(&ours),
            &pb::RosterCheckpoint {
                version: 4,
                roster_hash: vec![1; 31]
            }
        ),
        Err(CheckpointDefect::HashLength(31))
    );
    assert_eq!(
        compare_checkpoint(
            None,
            &pb::RosterCheckpoint {
                version: 0,
                roster_hash: vec![1; 32]
            }
        ),
        Err(CheckpointDefect::VersionZero)
    );
}

#[test]
fn a_change_of_hub_order_alone_is_named() {
    // The first active hub publishes the roster: reordering moves that role.
    let hub = |org: &str, address: &str| pb::HubAddress {
        org: org.into(),
        address: address.into(),
    };
    let mut before = with_agency().document().clone();
    before.hubs = vec![hub("HUB", "a.example:1"), hub("HUB-B", "b.example:1")];
    let mut after = before.clone();
    after.hubs.reverse();
    assert_eq!(
        diff(&before, &after),
        ["hub order (the first active hub publishes the roster): HUB, HUB-B → HUB-B, HUB"]
    );
    assert_eq!(diff(&before, &before), Vec::<String>::new());
}
