//! What a member that may not read a RED entry learns from the stub it holds: nothing it can
//! test a guess against. The attacker is a real non-recipient node of the federation; it knows
//! the submission template (every field but the value, as the origin's API built it) and holds
//! a dictionary that contains the value.

use std::collections::BTreeSet;
use std::time::Duration;

use intelmesh_core::entry::{payload_commitment, sha256};
use intelmesh_core::sealed::{seal_to, EncryptionSecret, Reader};
use intelmesh_node::api::submission::{submission, Publisher};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_store::Store;
use intelmesh_tests::api::{dist, submit, upsert};
use intelmesh_tests::bytes_on_disk::found_in_files;
use intelmesh_tests::net::{org, TestNet};
use prost::Message;

const SECRET: &str = "203.0.113.77";

/// Every encoding of a guessed payload the attacker can try against the header: without a
/// nonce, with a zero nonce of any length a signer uses, padded to any length up to the first
/// bucket, hashed plainly (as the old header did) or as a commitment.
fn confirms(guess: &pb::Payload, h: &pb::EntryHeader) -> bool {
    let mut candidates = vec![guess.encode_to_vec()];
    for nonce_len in 16..=18 {
        let mut p = guess.clone();
        p.nonce = vec![0; nonce_len];
        candidates.push(p.encode_to_vec());
        for pad in 1..600 {
            p.padding = vec![0; pad];
            candidates.push(p.encode_to_vec());
        }
    }
    candidates.iter().any(|bytes| {
        payload_commitment(bytes).as_slice() == h.payload_commitment
            || sha256(bytes).as_slice() == h.payload_commitment
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_non_recipient_cannot_confirm_a_guess_from_its_red_stub() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (au, fr) = (org("AU-AFP"), org("FR-OCLCTIC"));
    let mut red = upsert(Ty::Ipv4, SECRET, Tlp::Red, &["apt"]);
    red.distribution = dist(Tlp::Red, &["BR-PF"]);
    let mut client = net.client(&au).await;
    submit(&mut client, vec![red.clone()]).await;
    net.wait_for(&au, 1, Duration::from_secs(20)).await.unwrap();

    let stub = net
        .node(&fr)
        .state()
        .store
        .range(&au, 1, 1)
        .unwrap()
        .remove(0);
    assert!(stub.payload.is_none(), "FR holds only the stub");
    let header = pb::EntryHeader::decode(stub.header.as_ref()).unwrap();

    // The attacker's dictionary holds the value; it builds each guess exactly as AU's API did.
    let members: BTreeSet<_> = net.fed.nodes.keys().cloned().collect();
    let publisher = Publisher {
        org: &au,
        members: &members,
        now: intelmesh_core::now_unix_ms(),
    };
    let dictionary: Vec<String> = (0..=255).map(|i| format!("203.0.113.{i}")).collect();
    assert!(dictionary.iter().any(|d| d == SECRET));
    let confirmed: Vec<&String> = dictionary
        .iter()
        .filter(|guess| {
            let s = pb::Submission {
                value: guess.to_string(),
                ..red.clone()
            };
            confirms(&submission(&s, &publisher).unwrap().payload, &header)
        })
        .collect();
    assert!(confirmed.is_empty(), "guesses confirmed: {confirmed:?}");
    // Sealed to AU and BR: the envelope's length follows from the bucket (512) and its
    // readers, never from the value.
    assert!(header.sealed, "a RED payload is sealed to its readers");
    let readers: Vec<Reader> = [&au, &org("BR-PF")]
        .into_iter()
        .map(|o| Reader {
            org: o.clone(),
            key: EncryptionSecret::generate().public(),
        })
        .collect();
    let envelope_of_a_bucket = seal_to(&au, &[0; 512], &readers).unwrap();
    assert_eq!(
        header.payload_len,
        envelope_of_a_bucket.len() as u64,
        "the length is the envelope of a bucket, not the value's"
    );

    // Nor does the value sit anywhere in FR's data directory.
    let fr_data = &net.fed.nodes[&fr].config.data_dir;
    assert!(!found_in_files(fr_data, SECRET.as_bytes()));
}
