//! What a withheld stub tells a member that may not read it: nothing it can test a guess
//! against. The attacker holds a RED stub, knows the submission template (every field but the
//! value), and has a dictionary that contains the value.

use ed25519_dalek::SigningKey;
use intelmesh_core::entry::{payload_commitment, sha256, withheld_stub};
use intelmesh_core::verify::{verify_entry, VerifyConfig};
use intelmesh_core::{Distribution, OrgId, Signer, StaticKeys, Tlp};
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

fn red_to(recipient: &str) -> Distribution {
    Distribution {
        tlp: Tlp::Red,
        recipients: vec![OrgId::parse(recipient).unwrap()],
    }
}

fn header(stub: &pb::SignedEntry) -> pb::EntryHeader {
    pb::EntryHeader::decode(stub.header.as_ref()).unwrap()
}

/// Every way of hashing a guessed payload the attacker can think of, with what the header
/// holds: the plain hash (the old header), the commitment without a nonce, with an all-zero
/// nonce, and padded the way restricted payloads are.
fn confirms(guess: &pb::Payload, h: &pb::EntryHeader) -> bool {
    let mut candidates = vec![guess.encode_to_vec()];
    for nonce_len in 16..=18 {
        let mut p = guess.clone();
        p.nonce = vec![0; nonce_len];
        candidates.push(p.encode_to_vec());
        for pad in 0..600 {
            p.padding = vec![0; pad];
            candidates.push(p.encode_to_vec());
        }
    }
    candidates.iter().any(|bytes| {
        payload_commitment(bytes).as_slice() == h.payload_commitment
            || sha256(bytes).as_slice() == h.payload_commitment
    })
}

#[test]
fn a_red_stub_confirms_no_guess_from_a_dictionary_holding_the_value() {
    let au = Signer::new(
        OrgId::parse("AU-AFP").unwrap(),
        SigningKey::from_bytes(&[3; 32]),
    );
    let secret = "203.0.113.77";
    let (full, _) = au.sign_next(
        None,
        NOW,
        &red_to("BR-PF"),
        &template(pb::IndicatorType::Ipv4, secret),
    );
    let stub = withheld_stub(&full);
    let mut keys = StaticKeys::default();
    keys.insert(au.org().clone(), au.verifying_key());
    verify_entry(stub.clone(), &keys, &VerifyConfig::at(NOW)).expect("the stub is a valid entry");
    let h = header(&stub);

    let dictionary: Vec<String> = (0..=255).map(|i| format!("203.0.113.{i}")).collect();
    assert!(dictionary.iter().any(|d| d == secret));
    let confirmed: Vec<&String> = dictionary
        .iter()
        .filter(|d| confirms(&template(pb::IndicatorType::Ipv4, d), &h))
        .collect();
    assert!(confirmed.is_empty(), "guesses confirmed: {confirmed:?}");

    // The payload itself (with its nonce) does match: the commitment binds, it only hides.
    let payload = full.payload.as_ref().unwrap();
    assert_eq!(payload_commitment(payload).as_slice(), h.payload_commitment);
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
