//! What a withheld stub's header tells about its payload's length: nothing that tells one kind
//! of indicator from another. (That no guess of the value can be tested against the header is
//! shown end to end, with a real non-recipient node, in the workspace's `tlp_stubs` test.)

use ed25519_dalek::SigningKey;
use intelmesh_core::{Distribution, OrgId, Signer, Tlp};
use intelmesh_proto::v1 as pb;
use prost::Message;

const NOW: i64 = 1_800_000_000_000;

/// The submission template: every field but the value is known to the attacker.
fn template(ty: pb::IndicatorType, value: &str) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: ty as i32,
                value: value.into(),
            }),
            confidence: 75,
            valid_from_unix_ms: NOW,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn header(stub: &pb::SignedEntry) -> pb::EntryHeader {
    pb::EntryHeader::decode(stub.header.as_ref()).unwrap()
}

#[test]
fn a_restricted_stubs_length_does_not_tell_an_address_from_a_domain() {
    let au = Signer::new(
        OrgId::parse("AU-AFP").unwrap(),
        SigningKey::from_bytes(&[3; 32]),
    );
    let ip = template(pb::IndicatorType::Ipv4, "10.1.2.3");
    let domain = template(
        pb::IndicatorType::Domain,
        "login-verify-account-security-update.example-bank-support.com",
    );
    for tlp in [Tlp::AmberStrict, Tlp::Red] {
        let dist = Distribution {
            tlp,
            recipients: vec![OrgId::parse("BR-PF").unwrap()],
        };
        let a = header(&au.sign_next(None, NOW, &dist, &ip).0);
        let b = header(&au.sign_next(None, NOW, &dist, &domain).0);
        assert_eq!(a.payload_len, b.payload_len, "{tlp}");
        assert_eq!(a.payload_len, 512);
    }
}
