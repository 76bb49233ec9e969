//! Sealed entries from signing to reading: what every node checks, what a reader opens, and
//! what each kind of tampering is refused as.

use ed25519_dalek::SigningKey;
use intelmesh_core::entry::ZERO_HASH;
use intelmesh_core::opened::OpenFailure;
use intelmesh_core::sealed::{DecryptionKeys, EncryptionSecret, OpenError};
use intelmesh_core::verify::{
    read_stored, read_stored_opened, verify_entry, HeaderDefect, PayloadDefect,
};
use intelmesh_core::{Distribution, OrgId, Signer, StaticKeys, Tlp, VerifyConfig, VerifyError};
use intelmesh_proto::v1 as pb;
use prost::Message;

const NOW: i64 = 1_700_000_000_000;

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

fn upsert(value: &str) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: value.into(),
            }),
            confidence: 90,
            ..Default::default()
        })),
        ..Default::default()
    }
}

struct World {
    signer: Signer,
    keys: StaticKeys,
    secrets: Vec<(OrgId, DecryptionKeys)>,
}

/// AU-AFP signs; AU-AFP, BR-PF and FR-OCLCTIC have encryption keys; SG-IGCI (the hub) none.
fn world() -> World {
    let signer = Signer::new(org("AU-AFP"), SigningKey::from_bytes(&[3; 32]));
    let mut keys = StaticKeys::default();
    keys.insert(org("AU-AFP"), signer.verifying_key());
    let mut secrets = Vec::new();
    for name in ["AU-AFP", "BR-PF", "FR-OCLCTIC"] {
        let secret = EncryptionSecret::generate();
        if name != "AU-AFP" {
            let other = SigningKey::generate(&mut rand::rngs::OsRng);
            keys.insert(org(name), other.verifying_key());
        }
        keys.set_encryption_key(org(name), secret.public());
        let mut own = DecryptionKeys::default();
        own.insert(secret);
        secrets.push((org(name), own));
    }
    World {
        signer,
        keys,
        secrets,
    }
}

fn keys_of<'a>(w: &'a World, name: &str) -> &'a DecryptionKeys {
    &w.secrets
        .iter()
        .find(|(o, _)| o.as_str() == name)
        .unwrap()
        .1
}

fn red_to(recipients: &[&str]) -> Distribution {
    Distribution {
        tlp: Tlp::Red,
        recipients: recipients.iter().map(|r| org(r)).collect(),
    }
}

#[test]
fn restricted_items_are_sealed_and_every_reader_opens_them() {
    let w = world();
    let green = Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    };
    let strict = Distribution {
        tlp: Tlp::AmberStrict,
        recipients: vec![org("BR-PF"), org("FR-OCLCTIC")],
    };
    let values = [
        "open.example",
        "red-one.example",
        "strict.example",
        "red-two.example",
    ];
    let items = vec![
        (green, upsert("open.example")),
        (red_to(&["BR-PF"]), upsert("red-one.example")),
        (strict, upsert("strict.example")),
        (red_to(&["BR-PF"]), upsert("red-two.example")),
    ];
    let (entries, _) = w
        .signer
        .sign_chain_sealing(None, NOW, &items, Some(&w.keys))
        .unwrap();
    let cfg = VerifyConfig::at(NOW);
    let sealed: Vec<bool> = entries
        .iter()
        .map(|e| pb::EntryHeader::decode(e.header.as_ref()).unwrap().sealed)
        .collect();
    assert_eq!(sealed, vec![false, true, true, true]);
    for (i, e) in entries.iter().enumerate() {
        // Any node (the hub: no encryption key) verifies the chain; only GREEN reads.
        let v = verify_entry(e.clone(), &w.keys, &cfg).unwrap();
        assert_eq!(v.payload().is_some(), i == 0, "entry {i} at a non-reader");
        for reader in ["AU-AFP", "BR-PF", "FR-OCLCTIC"] {
            let opened = v
                .clone()
                .open_as(&org(reader), keys_of(&w, reader))
                .unwrap();
            let may = i == 0 || reader != "FR-OCLCTIC" || i == 2;
            assert_eq!(opened.payload().is_some(), may, "entry {i} at {reader}");
            if let (true, Some(p)) = (i > 0, opened.payload()) {
                assert_eq!(p.indicator.value(), values[i]);
                // What the store keeps beside the envelope reads back as the same payload.
                let (_, again) = read_stored_opened(e, opened.opened()).unwrap();
                assert_eq!(again.as_ref(), opened.payload());
                let (_, without) = read_stored(e).unwrap();
                assert_eq!(
                    without, None,
                    "without what it opened to, a sealed entry is a stub"
                );
            }
        }
    }
}

/// The first entry of AU-AFP: RED for BR-PF, sealed.
fn red_for_br(w: &World) -> pb::SignedEntry {
    let dist = red_to(&["BR-PF"]);
    let signed = w
        .signer
        .sign_next_sealing(None, NOW, &dist, &upsert("x.example"), &w.keys);
    signed.unwrap().0
}

#[test]
fn a_reader_without_the_key_keeps_the_entry_unopened() {
    let w = world();
    let entry = red_for_br(&w);
    let v = verify_entry(entry, &w.keys, &VerifyConfig::at(NOW)).unwrap();
    let failed = v
        .open_as(&org("BR-PF"), keys_of(&w, "FR-OCLCTIC"))
        .unwrap_err();
    let (kept, why) = *failed;
    assert!(kept.payload().is_none());
    assert!(matches!(
        why,
        OpenFailure::Open {
            error: OpenError::NoKey(_),
            ..
        }
    ));
}

#[test]
fn tampered_sealed_entries_are_refused_by_every_node() {
    let w = world();
    let entry = red_for_br(&w);
    let cfg = VerifyConfig::at(NOW);
    // A relay flipping a ciphertext byte: the header's commitment no longer matches.
    let mut flipped = entry.clone();
    let mut bytes = flipped.payload.clone().unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    flipped.payload = Some(bytes.into());
    assert!(matches!(
        verify_entry(flipped, &w.keys, &cfg),
        Err(VerifyError::PayloadCommitmentMismatch { .. })
    ));
    // An origin signing an envelope that names the wrong readers, or a sealed CLEAR entry.
    let plain = intelmesh_core::payload::seal(&upsert("y.example"), true);
    let readers: Vec<_> = ["AU-AFP", "FR-OCLCTIC"]
        .iter()
        .map(|o| intelmesh_core::sealed::Reader {
            org: org(o),
            key: intelmesh_core::sign::ReaderKeys::current(&w.keys, &org(o)).unwrap(),
        })
        .collect();
    let wrong = intelmesh_core::sealed::seal_to(&org("AU-AFP"), &plain, &readers).unwrap();
    let mut header = pb::EntryHeader::decode(entry.header.as_ref()).unwrap();
    header.payload_commitment = intelmesh_core::entry::payload_commitment(&wrong).to_vec();
    header.payload_len = wrong.len() as u64;
    header.prev_hash = ZERO_HASH.to_vec();
    let signed = w.signer.sign_header(header.encode_to_vec(), Some(wrong));
    assert!(matches!(
        verify_entry(signed, &w.keys, &cfg),
        Err(VerifyError::InvalidPayload {
            defect: PayloadDefect::Envelope(_),
            ..
        })
    ));
    let mut clear = pb::EntryHeader::decode(entry.header.as_ref()).unwrap();
    clear.distribution = Some(pb::Distribution {
        tlp: pb::Tlp::Clear as i32,
        recipients: vec![],
    });
    let signed = w.signer.sign_header(
        clear.encode_to_vec(),
        entry.payload.clone().map(|p| p.to_vec()),
    );
    assert!(matches!(
        verify_entry(signed, &w.keys, &cfg),
        Err(VerifyError::InvalidHeader {
            defect: HeaderDefect::SealedUnrestricted,
            ..
        })
    ));
}

#[test]
fn a_reader_with_no_key_cannot_be_sealed_to() {
    let w = world();
    let refused = w.signer.sign_next_sealing(
        None,
        NOW,
        &red_to(&["SG-IGCI"]),
        &upsert("x.example"),
        &w.keys,
    );
    assert_eq!(
        refused.err(),
        Some(intelmesh_core::sealed::SealError::NoKey(org("SG-IGCI")))
    );
}
