//! Property: any delivery order of the same entries, with duplicates and in any batching,
//! leaves a fresh store with the same state digest and version vector.

use intelmesh_core::verify::verify_batch;
use intelmesh_core::{VerifiedEntry, VerifyConfig};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, Store, StoreConfig, VersionVector};
use intelmesh_tests::{chain, registry, seeded_signer, ORIGINS};
use proptest::prelude::*;

fn entries() -> (Vec<pb::SignedEntry>, intelmesh_core::StaticKeys) {
    let signers: Vec<_> = ORIGINS.iter().map(|o| seeded_signer(11, o)).collect();
    let mut all = Vec::new();
    for (i, s) in signers.iter().enumerate() {
        all.extend(chain(s, None, 4 + i as u64 * 2, 4).0);
    }
    (all, registry(&signers.iter().collect::<Vec<_>>()))
}

fn deliver(batches: Vec<Vec<VerifiedEntry>>) -> ([u8; 32], VersionVector) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("open");
    for b in batches {
        store.apply(b).expect("apply");
    }
    assert_eq!(
        store.held_count(),
        0,
        "everything delivered, nothing left waiting"
    );
    (
        store.state_digest().expect("digest"),
        store.vector().expect("vector"),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_order_with_duplicates_converges(
        order in Just((0..18usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0..18usize, 0..10),
        cuts in proptest::collection::vec(1..6usize, 1..20),
    ) {
        let (all, keys) = entries();
        prop_assert_eq!(all.len(), 18);
        let cfg = VerifyConfig::at(intelmesh_core::now_unix_ms());
        let verified: Vec<VerifiedEntry> =
            verify_batch(all, &keys, &cfg).into_iter().map(|r| r.expect("verifies")).collect();

        let reference = deliver(vec![verified.clone()]);

        let mut sequence: Vec<usize> = order;
        for (k, d) in dups.iter().enumerate() {
            sequence.insert((k * 7) % (sequence.len() + 1), *d);
        }
        let mut batches = Vec::new();
        let mut rest = sequence.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap_or(&1)).min(rest.len());
            batches.push(rest[..n].iter().map(|&i| verified[i].clone()).collect());
            rest = &rest[n..];
        }
        let got = deliver(batches);
        prop_assert_eq!(got.0, reference.0, "state digest differs");
        prop_assert_eq!(&got.1, &reference.1);
        prop_assert_eq!(got.1.values().sum::<u64>(), 18);
    }
}
