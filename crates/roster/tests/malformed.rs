//! Every rule of one version: each malformed document is refused with the defect that names it.

mod common;

use common::*;
use intelmesh_core::KeyId;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::document::check_decoded;
use intelmesh_roster::{check_document, DocumentDefect, Roster, RosterError};
use prost::Message;

/// Genesis with AG (agency, key 20) added, edited by `edit`, then checked.
fn defect(edit: impl FnOnce(&mut pb::RosterDocument)) -> DocumentDefect {
    let mut doc = with_agency().document().clone();
    edit(&mut doc);
    check_decoded(doc).expect_err("the edit makes the document malformed")
}

fn member_key(n: u8) -> pb::MemberKey {
    pb::MemberKey {
        public_key: key(n).verifying_key().to_bytes().to_vec(),
        first_seq: 1,
        last_seq: None,
        ended_by: 0,
    }
}

#[test]
fn the_fixture_is_well_formed() {
    assert!(check_decoded(with_agency().document().clone()).is_ok());
}

#[test]
fn undecodable_bytes() {
    assert!(matches!(
        check_document(&[0xff, 0xff, 0xff]),
        Err(DocumentDefect::Undecodable(_))
    ));
}

#[test]
fn malformed_document_is_refused_by_genesis_and_next() {
    let [a, b, _] = authority_keys();
    let mut doc = decode(&genesis_bytes());
    doc.members[0].org = "hub".into();
    let signed = sign(&doc.encode_to_vec(), &[&a, &b]);
    assert!(matches!(
        Roster::genesis(&signed, None),
        Err(RosterError::Malformed(DocumentDefect::MemberOrg {
            index: 0,
            ..
        }))
    ));
    let v1 = genesis();
    let next = edited_next(&v1, |d| d.members[0].org = "hub".into());
    assert!(matches!(
        v1.next(&next),
        Err(RosterError::Malformed(DocumentDefect::MemberOrg {
            index: 0,
            ..
        }))
    ));
}

#[test]
fn federation_id_and_version() {
    assert!(matches!(
        defect(|d| d.federation_id = "fed_1".into()),
        DocumentDefect::FederationId(_)
    ));
    assert_eq!(defect(|d| d.version = 0), DocumentDefect::VersionZero);
    assert_eq!(
        defect(|d| d.prev_hash = vec![0; 31]),
        DocumentDefect::PrevHashLength(31)
    );
}

#[test]
fn bad_org_id() {
    let d = defect(|d| d.members[1].org = "ag_1".into());
    assert!(
        matches!(d, DocumentDefect::MemberOrg { index: 1, .. }),
        "{d}"
    );
}

#[test]
fn duplicate_org() {
    assert_eq!(
        defect(|d| {
            let mut twin = d.members[1].clone();
            twin.signing_keys = vec![member_key(21)];
            d.members.push(twin);
        }),
        DocumentDefect::DuplicateMember(org("AG"))
    );
}

#[test]
fn member_named_as_the_federation() {
    assert_eq!(
        defect(|d| {
            d.members[1].org = "FED".into();
            d.members[1].node_identity = "spiffe://intelmesh/org/FED/node".into();
        }),
        DocumentDefect::MemberIsFederation(org("FED"))
    );
}

#[test]
fn threshold_zero_or_above_the_key_count() {
    let set = |t: u32| {
        move |d: &mut pb::RosterDocument| d.authority.as_mut().map_or((), |a| a.threshold = t)
    };
    assert_eq!(
        defect(set(0)),
        DocumentDefect::Threshold {
            threshold: 0,
            keys: 3
        }
    );
    assert_eq!(
        defect(set(4)),
        DocumentDefect::Threshold {
            threshold: 4,
            keys: 3
        }
    );
    assert_eq!(defect(|d| d.authority = None), DocumentDefect::NoAuthority);
}

#[test]
fn authority_key_length_and_duplicates() {
    assert_eq!(
        defect(|d| d
            .authority
            .as_mut()
            .map_or((), |a| a.keys[1].public_key.truncate(31))),
        DocumentDefect::AuthorityKeyLength {
            index: 1,
            name: "bob".into(),
            len: 31
        }
    );
    assert_eq!(
        defect(|d| d.authority.as_mut().map_or((), |a| {
            let twin = a.keys[0].clone();
            a.keys.push(twin);
        })),
        DocumentDefect::DuplicateAuthorityKey {
            key_id: KeyId::of(&key(1).verifying_key())
        }
    );
}

#[test]
fn member_key_of_31_bytes() {
    assert_eq!(
        defect(|d| d.members[1].signing_keys[0].public_key.truncate(31)),
        DocumentDefect::MemberKeyLength {
            org: org("AG"),
            index: 0,
            len: 31
        }
    );
}

#[test]
fn member_key_not_a_point() {
    // y = 2 is not the y coordinate of any curve point.
    let mut bytes = [0u8; 32];
    bytes[0] = 2;
    assert_eq!(
        defect(|d| d.members[1].signing_keys[0].public_key = bytes.to_vec()),
        DocumentDefect::MemberKeyInvalid {
            org: org("AG"),
            index: 0
        }
    );
}

#[test]
fn key_ranges() {
    assert_eq!(
        defect(|d| d.members[1].signing_keys[0].first_seq = 0),
        DocumentDefect::KeyFirstSeqZero {
            org: org("AG"),
            index: 0
        }
    );
    assert_eq!(
        defect(|d| {
            let k = &mut d.members[1].signing_keys[0];
            k.first_seq = 10;
            k.last_seq = Some(5);
            k.ended_by = pb::KeyEnd::Rotation as i32;
        }),
        DocumentDefect::KeyRange {
            org: org("AG"),
            index: 0,
            first: 10,
            last: 5
        }
    );
    // last = first - 1 is the empty range: a key ended before it signed anything.
    let mut doc = with_agency().document().clone();
    let k = &mut doc.members[1].signing_keys[0];
    k.first_seq = 10;
    k.last_seq = Some(9);
    k.ended_by = pb::KeyEnd::Suspension as i32;
    assert!(check_decoded(doc).is_ok());
    assert_eq!(
        defect(|d| d.members[1].signing_keys[0].last_seq = Some(4)),
        DocumentDefect::KeyEnd {
            org: org("AG"),
            index: 0,
            last_seq: Some(4),
            ended_by: 0
        }
    );
}

#[test]
fn one_key_for_two_members() {
    assert_eq!(
        defect(|d| d.members[1].signing_keys.push(member_key(10))),
        DocumentDefect::KeyReused {
            key_id: KeyId::of(&hub_key().verifying_key()),
            first: org("HUB"),
            second: org("AG")
        }
    );
}

#[test]
fn role_status_country_identity_withdrawn() {
    assert_eq!(
        defect(|d| d.members[1].role = 0),
        DocumentDefect::MemberRole {
            org: org("AG"),
            value: 0
        }
    );
    assert_eq!(
        defect(|d| d.members[1].status = 9),
        DocumentDefect::MemberStatus {
            org: org("AG"),
            value: 9
        }
    );
    assert_eq!(
        defect(|d| d.members[1].country = "aus".into()),
        DocumentDefect::Country {
            org: org("AG"),
            value: "aus".into()
        }
    );
    assert_eq!(
        defect(|d| d.members[1].node_identity = "spiffe://intelmesh/org/HUB/node".into()),
        DocumentDefect::NodeIdentity {
            org: org("AG"),
            found: "spiffe://intelmesh/org/HUB/node".into(),
            expected: "spiffe://intelmesh/org/AG/node".into()
        }
    );
    assert_eq!(
        defect(|d| d.members[1].withdrawn = true),
        DocumentDefect::WithdrawnNotRemoved { org: org("AG") }
    );
}

#[test]
fn hub_address_for_a_non_hub() {
    assert_eq!(
        defect(|d| d.hubs.push(pb::HubAddress {
            org: "AG".into(),
            address: "ag.example:7443".into()
        })),
        DocumentDefect::HubNotHubMember {
            org: "AG".into(),
            address: "ag.example:7443".into()
        }
    );
    assert_eq!(
        defect(|d| d.hubs.push(pb::HubAddress {
            org: "NOBODY".into(),
            address: "x:1".into()
        })),
        DocumentDefect::HubNotHubMember {
            org: "NOBODY".into(),
            address: "x:1".into()
        }
    );
    assert_eq!(
        defect(|d| d.hubs[0].address = "hub.example".into()),
        DocumentDefect::HubAddress {
            org: org("HUB"),
            address: "hub.example".into()
        }
    );
    assert_eq!(
        defect(|d| {
            let twin = d.hubs[0].clone();
            d.hubs.push(twin);
        }),
        DocumentDefect::DuplicateHubAddress {
            org: org("HUB"),
            address: "hub.example:7443".into()
        }
    );
}

#[test]
fn certificates() {
    let cert = |serial: &str| pb::IssuedCert {
        serial: serial.into(),
        not_after_unix_ms: NOW,
    };
    assert!(matches!(
        defect(|d| d.members[1].certificates.push(cert("0A1B"))),
        DocumentDefect::Serial { .. }
    ));
    assert!(matches!(
        defect(|d| d.members[1].certificates.push(cert("0a1b"))),
        DocumentDefect::Serial { .. }
    ));
    assert!(matches!(
        defect(|d| {
            d.members[0].certificates.push(cert("a1b"));
            d.members[1].certificates.push(cert("a1b"));
        }),
        DocumentDefect::DuplicateSerial { .. }
    ));
    assert_eq!(
        defect(|d| d.revoked.push(pb::RevokedCert {
            serial: "a1".into(),
            org: "ag".into(),
            ..Default::default()
        })),
        DocumentDefect::RevokedOrg {
            serial: "a1".into(),
            org: "ag".into()
        }
    );
    assert_eq!(
        defect(|d| d.ca_certs_pem.push("not a certificate".into())),
        DocumentDefect::CaCertificate { index: 1 }
    );
}
