//! The one signature rule through a real link: a signature no honest signer makes (R of small
//! order, made with the origin's real key) is refused whatever else its batch holds, and the
//! store that refused it re-verifies clean (`verify-store` applies the same rule). And entries
//! signed as a batch (one signature over a hash tree) reach every node, in full or as stubs,
//! and verify there.
//!
//! ed25519-dalek's cofactorless batch check accepted such a signature in about one batch in
//! eight, depending on the batch's other entries, after which `verify-store` (strict, alone)
//! reported the honest store broken. 24 batches of varying content make a pass by luck under
//! that rule about a 4% chance.

use std::collections::BTreeMap;

use intelmesh_core::batch_tree::{path_in, SIGNATURE_BYTES};
use intelmesh_core::entry::signed_message;
use intelmesh_core::sign::BATCH_LEAVES;
use intelmesh_core::signature::craft;
use intelmesh_core::{Distribution, Tlp};
use intelmesh_store::{verify_store, Store};
use intelmesh_tests::net::{domain_upsert, org, TestNet};
use intelmesh_tests::raw_peer::{check_status, provisioned_signer, signed_chain, PATIENCE};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_order_r_is_refused_through_a_link_in_any_batch() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au) = (org("SG-IGCI"), org("AU-AFP"));
    net.stop(&au).await;
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let mut head = None;
    let mut logged = Vec::new();
    for round in 0..24u64 {
        let (honest, next) = signed_chain(&signer, head, 1 + round % 3, &format!("r{round}"));
        let (mut odd, _) = signed_chain(&signer, next, 1, &format!("odd{round}"));
        let crafted = craft::small_order_r(signer.signing_key(), &signed_message(&odd[0].header));
        odd[0].signature = crafted.to_bytes().to_vec().into();
        let mut batch = honest.clone();
        batch.insert((round as usize) % (batch.len() + 1), odd.remove(0));

        let mut peer = net.open_as(&hub, &au).await;
        let vector: BTreeMap<String, u64> = head
            .map(|h: intelmesh_core::Head| [("AU-AFP".to_string(), h.seq)].into())
            .unwrap_or_default();
        assert!(peer.hello("AU-AFP", vector).await);
        assert!(peer.entries(batch).await);
        let end = peer.end_status(PATIENCE).await;
        check_status(&end, Code::InvalidArgument, "R is a point of small order")
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        logged.extend(honest);
        head = next;
    }
    let store = &net.node(&hub).state().store;
    assert_eq!(
        store.range(&au, 1, 1000).unwrap(),
        logged,
        "exactly the honest entries"
    );
    let check = verify_store(store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publication_signed_in_batches_verifies_at_every_node_in_full_and_as_stubs() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (au, br, fr) = (org("AU-AFP"), org("BR-PF"), org("FR-OCLCTIC"));
    let count = 2 * BATCH_LEAVES + 6;
    let items = (0..count)
        .map(|i| {
            let distribution = match i % 3 {
                0 => Distribution {
                    tlp: Tlp::Red,
                    recipients: vec![br.clone()],
                },
                _ => Distribution {
                    tlp: Tlp::Green,
                    recipients: vec![],
                },
            };
            (distribution, domain_upsert(&format!("batch{i}.example")))
        })
        .collect();
    let seqs = net.node(&au).state().publish(items).await.unwrap();
    assert_eq!(seqs.len(), count);
    net.wait_for(&au, count as u64, PATIENCE).await.unwrap();
    for at in net.running.keys() {
        let store = &net.node(at).state().store;
        let entries = store.range(&au, 1, count).unwrap();
        assert_eq!(entries.len(), count, "{at} holds the publication");
        let mut signatures: Vec<_> = entries
            .iter()
            .map(|e| e.signature[..SIGNATURE_BYTES].to_vec())
            .collect();
        signatures.dedup();
        assert_eq!(signatures.len(), 3, "{at}: one signature per batch");
        for (i, e) in entries.iter().enumerate() {
            let path = path_in(&e.signature).ok().flatten();
            let path = path.unwrap_or_else(|| panic!("{at}: AU#{} path", i + 1));
            assert_eq!(path.index as usize, i % BATCH_LEAVES);
            let withheld = i % 3 == 0 && *at == fr;
            assert_eq!(e.payload.is_none(), withheld, "{at}: AU#{}", i + 1);
        }
        let check = verify_store(store, None).unwrap();
        assert!(check.is_ok(), "{at}: {:?}", check.problems);
    }
}
