//! Tests of sealing: round trips, who can open, and every way an envelope can be wrong.

use super::*;
use crate::payload::PAD_BUCKETS;

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

struct Party {
    org: OrgId,
    keys: DecryptionKeys,
    public: EncryptionPublic,
}

fn party(name: &str) -> Party {
    let secret = EncryptionSecret::generate();
    let public = secret.public();
    let mut keys = DecryptionKeys::default();
    keys.insert(secret);
    Party {
        org: org(name),
        keys,
        public,
    }
}

fn reader(p: &Party) -> Reader {
    Reader {
        org: p.org.clone(),
        key: p.public,
    }
}

fn padded() -> Vec<u8> {
    vec![0x5a; PAD_BUCKETS[0]]
}

#[test]
fn the_origin_and_each_recipient_open_the_same_plaintext() {
    let (au, br, fr) = (party("AU-AFP"), party("BR-PF"), party("FR-OCLCTIC"));
    let recipients = [br.org.clone(), fr.org.clone()];
    let sealed = seal_to(&au.org, &padded(), &[reader(&au), reader(&br), reader(&fr)]).unwrap();
    for p in [&au, &br, &fr] {
        let opened = open(&au.org, &recipients, &p.org, &sealed, &p.keys).unwrap();
        assert_eq!(opened, padded(), "{}", p.org);
    }
    assert!(
        !sealed.windows(16).any(|w| w == &padded()[..16]),
        "the plaintext does not show in the envelope"
    );
}

#[test]
fn a_non_reader_and_a_wrong_key_cannot_open() {
    let (au, br, hub) = (party("AU-AFP"), party("BR-PF"), party("SG-IGCI"));
    let recipients = [br.org.clone()];
    let sealed = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    assert_eq!(
        open(&au.org, &recipients, &hub.org, &sealed, &hub.keys),
        Err(OpenError::NotAReader(hub.org.clone()))
    );
    // The hub pretending to be BR-PF with its own keys: the wrap names BR-PF's key id.
    assert_eq!(
        open(&au.org, &recipients, &br.org, &sealed, &hub.keys),
        Err(OpenError::NoKey(br.public.id()))
    );
}

#[test]
fn old_keys_still_open_what_was_sealed_to_them() {
    let au = party("AU-AFP");
    let mut br = party("BR-PF");
    let recipients = [br.org.clone()];
    let before = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    let rotated = EncryptionSecret::generate();
    br.public = rotated.public();
    br.keys.insert(rotated);
    let after = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    assert!(open(&au.org, &recipients, &br.org, &before, &br.keys).is_ok());
    assert!(open(&au.org, &recipients, &br.org, &after, &br.keys).is_ok());
    let mut only_new = DecryptionKeys::default();
    only_new.insert(EncryptionSecret::from_hex(&br.keys.by_id[&br.public.id()].to_hex()).unwrap());
    assert!(matches!(
        open(&au.org, &recipients, &br.org, &before, &only_new),
        Err(OpenError::NoKey(_))
    ));
}

#[test]
fn an_envelope_moved_to_another_origin_does_not_open() {
    let (au, br) = (party("AU-AFP"), party("BR-PF"));
    let sealed = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    // BR-PF re-signs AU-AFP's envelope as its own entry to AU-AFP: the readers match, the
    // origin bound into the key derivation does not.
    assert_eq!(
        open(
            &br.org,
            std::slice::from_ref(&au.org),
            &br.org,
            &sealed,
            &br.keys
        ),
        Err(OpenError::Unwrap)
    );
}

#[test]
fn a_swapped_content_key_is_caught_by_the_commitment() {
    let (au, br) = (party("AU-AFP"), party("BR-PF"));
    let recipients = [br.org.clone()];
    let one = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    let other = seal_to(&au.org, &vec![1; 512], &[reader(&au), reader(&br)]).unwrap();
    // A dishonest origin gives BR-PF another content key than the one committed to.
    let mut env = pb::SealedPayload::decode(one.as_slice()).unwrap();
    let theirs = pb::SealedPayload::decode(other.as_slice()).unwrap();
    env.readers[1] = theirs.readers[1].clone();
    let forged = env.encode_to_vec();
    assert_eq!(
        open(&au.org, &recipients, &br.org, &forged, &br.keys),
        Err(OpenError::KeyCommitment)
    );
    assert!(open(&au.org, &recipients, &au.org, &forged, &au.keys).is_ok());
}

#[test]
fn a_flipped_ciphertext_byte_does_not_decrypt() {
    let (au, br) = (party("AU-AFP"), party("BR-PF"));
    let sealed = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    let mut env = pb::SealedPayload::decode(sealed.as_slice()).unwrap();
    env.ciphertext[3] ^= 1;
    assert_eq!(
        open(
            &au.org,
            std::slice::from_ref(&br.org),
            &br.org,
            &env.encode_to_vec(),
            &br.keys
        ),
        Err(OpenError::Decrypt)
    );
}

#[test]
fn malformed_envelopes_are_refused_with_their_defect() {
    let (au, br, fr) = (party("AU-AFP"), party("BR-PF"), party("FR-OCLCTIC"));
    let recipients = [br.org.clone()];
    let good = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    let env = pb::SealedPayload::decode(good.as_slice()).unwrap();
    assert!(check_envelope(&au.org, &recipients, &good).is_ok());
    let edit = |f: &dyn Fn(&mut pb::SealedPayload)| {
        let mut e = env.clone();
        f(&mut e);
        check_envelope(&au.org, &recipients, &e.encode_to_vec())
    };
    assert_eq!(edit(&|e| e.suite = 2), Err(EnvelopeDefect::Suite(2)));
    assert!(matches!(
        edit(&|e| {
            e.readers.pop();
        }),
        Err(EnvelopeDefect::Readers { .. })
    ));
    assert!(matches!(
        edit(&|e| {
            let dup = e.readers[1].clone();
            e.readers.push(dup);
        }),
        Err(EnvelopeDefect::Readers { .. })
    ));
    assert!(matches!(
        edit(&|e| e.readers[1].org = fr.org.to_string()),
        Err(EnvelopeDefect::Readers { .. })
    ));
    assert_eq!(
        edit(&|e| e.readers[0].encapsulated.truncate(31)),
        Err(EnvelopeDefect::FieldLength {
            field: "encapsulated",
            len: 31,
            expected: 32
        })
    );
    assert!(matches!(
        edit(&|e| e.key_commitment.clear()),
        Err(EnvelopeDefect::FieldLength {
            field: "key_commitment",
            ..
        })
    ));
    assert_eq!(
        edit(&|e| e.ciphertext.truncate(500)),
        Err(EnvelopeDefect::CiphertextLength(500))
    );
    assert!(matches!(
        check_envelope(&au.org, &recipients, b"\xff\xff\xff"),
        Err(EnvelopeDefect::Undecodable(_))
    ));
}

#[test]
fn sealing_refuses_what_it_cannot_do() {
    let (au, br) = (party("AU-AFP"), party("BR-PF"));
    assert_eq!(
        seal_to(&au.org, &vec![0; MAX_SEALED_PLAINTEXT + 1], &[reader(&au)]),
        Err(SealError::TooLarge {
            len: MAX_SEALED_PLAINTEXT + 1,
            max: MAX_SEALED_PLAINTEXT
        })
    );
    assert_eq!(
        seal_to(&au.org, &padded(), &[reader(&au), reader(&br), reader(&br)]),
        Err(SealError::DuplicateReader(br.org.clone()))
    );
}

#[test]
fn keys_read_back_and_small_order_points_are_refused() {
    let secret = EncryptionSecret::generate();
    let again = EncryptionSecret::from_hex(&secret.to_hex()).unwrap();
    assert_eq!(again.public(), secret.public());
    assert!(!format!("{secret:?}").contains(&secret.to_hex().trim()[..16]));
    assert_eq!(
        EncryptionPublic::from_bytes(&[0; 32]),
        Err(KeyError::SmallOrder)
    );
    let mut one = [0; 32];
    one[0] = 1;
    assert_eq!(
        EncryptionPublic::from_bytes(&one),
        Err(KeyError::SmallOrder)
    );
    assert_eq!(
        EncryptionPublic::from_bytes(&[9; 31]),
        Err(KeyError::Length(31))
    );
    assert!(EncryptionPublic::from_bytes(secret.public().as_bytes()).is_ok());
    assert_eq!(
        EncryptionSecret::from_hex("zz").err(),
        Some(KeyError::NotHex)
    );
}

#[test]
fn one_encapsulation_per_reader_serves_a_whole_batch() {
    let (au, br) = (party("AU-AFP"), party("BR-PF"));
    let recipients = [br.org.clone()];
    let plains: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 512]).collect();
    let batch = seal_batch(&au.org, &plains, &[reader(&au), reader(&br)]).unwrap();
    let encaps: BTreeSet<Vec<u8>> = batch
        .iter()
        .map(|b| {
            pb::SealedPayload::decode(b.as_slice()).unwrap().readers[1]
                .encapsulated
                .clone()
        })
        .collect();
    assert_eq!(
        encaps.len(),
        1,
        "BR-PF's encapsulation is shared by the batch"
    );
    for (sealed, plain) in batch.iter().zip(&plains) {
        assert_eq!(
            &open(&au.org, &recipients, &br.org, sealed, &br.keys).unwrap(),
            plain
        );
    }
    assert_eq!(
        br.keys.sessions().len(),
        1,
        "one decapsulation for five envelopes"
    );
    let other = seal_to(&au.org, &padded(), &[reader(&au), reader(&br)]).unwrap();
    assert!(open(&au.org, &recipients, &br.org, &other, &br.keys).is_ok());
    assert_eq!(
        br.keys.sessions().len(),
        2,
        "another publication, another session"
    );
}

#[test]
fn sessions_stay_bounded() {
    let sessions = Sessions::default();
    let origin = org("AU-AFP");
    for n in 0..=MAX_SESSIONS as u32 {
        let mut enc = [0u8; 32];
        enc[..4].copy_from_slice(&n.to_be_bytes());
        let session = Session {
            wrap_key: Zeroizing::new([1; KEY_LEN]),
        };
        sessions.put((origin.clone(), EncKeyId([0; 8]), enc), session);
        assert!(sessions.len() <= MAX_SESSIONS);
    }
    assert_eq!(sessions.len(), 1, "full: started over");
}
