//! The log as stored in segments: range reads and payload fills that cross segment boundaries,
//! batches that continue a half-full segment, reopen, and refusing a store of another layout.
//! The index snapshot: used after a clean close, ignored when stale or damaged.

use intelmesh_core::entry::withheld_stub;
use intelmesh_core::StaticKeys;
use intelmesh_proto::v1 as pb;
use intelmesh_store::{
    verify_store, Fill, IndexSource, Outcome, SledStore, Store, StoreConfig, StoreError,
};
use intelmesh_tests::{chain, chain_domain, registry, seeded_signer, verified};

/// Applies `entries` in batches of the given sizes, cycling through them.
fn apply_in_batches(
    store: &SledStore,
    keys: &StaticKeys,
    entries: &[pb::SignedEntry],
    sizes: &[usize],
) {
    let mut rest = entries;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            return;
        }
        let (now, later) = rest.split_at((*size).min(rest.len()));
        let report = store.apply(verified(keys, now.to_vec())).expect("apply");
        assert_eq!(report.outcomes, vec![Outcome::Appended; now.len()]);
        rest = later;
    }
}

#[test]
fn range_reads_and_payload_fills_cross_segment_boundaries() {
    let full_origin = seeded_signer(1, "AU-AFP");
    let stub_origin = seeded_signer(2, "BR-PF");
    let keys = registry(&[&full_origin, &stub_origin]);
    let dir = tempfile::tempdir().unwrap();
    // About 450 bytes an entry: a few dozen segments per origin.
    let (full, _) = chain(&full_origin, None, 400, 200);
    let (withheld, _) = chain(&stub_origin, None, 100, 200);
    let stubs: Vec<_> = withheld.iter().map(withheld_stub).collect();

    let store = SledStore::open(StoreConfig::new(dir.path())).unwrap();
    // Uneven batches: most of them continue the segment the previous one left half full.
    apply_in_batches(&store, &keys, &full, &[1, 3, 50, 7, 139, 200]);
    apply_in_batches(&store, &keys, &stubs, &[33]);
    // Payloads arrive later for entries deep inside stored segments.
    let fills = vec![
        withheld[36].clone(),
        withheld[37].clone(),
        withheld[98].clone(),
    ];
    let report = store.apply(verified(&keys, fills)).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::PayloadFilled; 3]);

    let mut expected_stub_log = stubs.clone();
    for i in [36, 37, 98] {
        expected_stub_log[i] = withheld[i].clone();
    }
    let reads = |store: &SledStore| {
        for (from, limit) in [
            (1, 1000),
            (13, 5),
            (14, 30),
            (250, 1000),
            (400, 1),
            (401, 5),
            (0, 3),
        ] {
            let first = (from as usize).max(1) - 1;
            let want: Vec<_> = full.iter().skip(first).take(limit).cloned().collect();
            let got = store.range(full_origin.org(), from, limit).unwrap();
            assert_eq!(
                got, want,
                "range({from}, {limit}) returns the entries byte for byte"
            );
        }
        assert_eq!(
            store.range(stub_origin.org(), 1, 1000).unwrap(),
            expected_stub_log
        );
        assert_eq!(
            store.range(stub_origin.org(), 37, 2).unwrap(),
            withheld[36..38].to_vec()
        );
        assert!(store
            .indicator(&chain_domain(&stub_origin, 37))
            .unwrap()
            .is_some());
        assert!(store
            .indicator(&chain_domain(&stub_origin, 99))
            .unwrap()
            .is_some());
        assert_eq!(
            store.indicator(&chain_domain(&stub_origin, 40)).unwrap(),
            None,
            "still a stub"
        );
        assert!(store
            .indicator(&chain_domain(&full_origin, 400))
            .unwrap()
            .is_some());
        // The fills are recorded in order, for watchers, and survive a reopen.
        let fill = |n, seq| Fill {
            n,
            origin: stub_origin.org().clone(),
            seq,
        };
        assert_eq!(store.fill_count(), 3);
        assert_eq!(
            store.fills_after(0, 10).unwrap(),
            vec![fill(1, 37), fill(2, 38), fill(3, 99)]
        );
        assert_eq!(store.fills_after(1, 1).unwrap(), vec![fill(2, 38)]);
        assert_eq!(store.fills_after(3, 10).unwrap(), vec![]);
    };
    reads(&store);
    let digest = store.state_digest().unwrap();
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(
        (check.entries, check.stubs, check.indicators),
        (500, 97, 403)
    );
    drop(store);

    let store = SledStore::open(StoreConfig::new(dir.path())).expect("reopen");
    reads(&store);
    assert_eq!(
        store.state_digest().unwrap(),
        digest,
        "the index rebuilt on open is the same"
    );
    // The reopened store goes on appending after its last segment.
    let (more, _) = chain(&full_origin, store.head(full_origin.org()).unwrap(), 5, 200);
    apply_in_batches(&store, &keys, &more, &[5]);
    assert_eq!(store.range(full_origin.org(), 399, 10).unwrap().len(), 7);
    assert!(verify_store(&store, Some(&keys)).unwrap().is_ok());
}

#[test]
fn a_store_in_another_layout_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    {
        // An earlier layout: entries under per-seq keys and no layout version.
        let db = sled::open(dir.path()).unwrap();
        db.insert(
            b"LAU-AFP\x00\x00\x00\x00\x00\x00\x00\x00\x01",
            b"old".as_slice(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    match SledStore::open(StoreConfig::new(dir.path())) {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains("earlier layout"), "{msg}");
            assert!(msg.contains("catch up from its peers"), "{msg}");
        }
        Err(e) => panic!("expected a layout error, got {e}"),
        Ok(_) => panic!("an old-layout store must not open"),
    }
}

/// The snapshot file a closing store writes next to its sled files.
const SNAPSHOT: &str = "intelmesh-index.snapshot";

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(StoreConfig::new(dir)).expect("open store")
}

#[test]
fn a_clean_close_leaves_a_snapshot_that_the_next_open_uses() {
    let signer = seeded_signer(3, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (first, head) = chain(&signer, None, 60, 50);
    let digest = {
        let store = open(dir.path());
        assert_eq!(
            store.index_source(),
            IndexSource::Rebuilt,
            "a new store has no snapshot"
        );
        apply_in_batches(&store, &keys, &first, &[25]);
        store.state_digest().unwrap()
    };
    let store = open(dir.path());
    assert_eq!(store.index_source(), IndexSource::Snapshot);
    assert_eq!(store.state_digest().unwrap(), digest);
    // The loaded index equals the one rebuilt from the log.
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.indicators, 60);

    let (more, _) = chain(&signer, head, 10, 50);
    apply_in_batches(&store, &keys, &more, &[10]);
    let digest = store.state_digest().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.index_source(),
        IndexSource::Snapshot,
        "rewritten at the second close"
    );
    assert_eq!(store.state_digest().unwrap(), digest);
    assert!(store
        .indicator(&chain_domain(&signer, 70))
        .unwrap()
        .is_some());
}

#[test]
fn a_stale_or_damaged_snapshot_is_ignored_and_the_index_rebuilt() {
    let signer = seeded_signer(4, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (first, head) = chain(&signer, None, 30, 50);
    {
        let store = open(dir.path());
        apply_in_batches(&store, &keys, &first, &[30]);
    }
    let old_snapshot = std::fs::read(dir.path().join(SNAPSHOT)).expect("written at close");

    // Entries logged after the snapshot, then a crash: the file on disk is the old one.
    let digest = {
        let store = open(dir.path());
        let (more, _) = chain(&signer, head, 5, 50);
        apply_in_batches(&store, &keys, &more, &[5]);
        store.state_digest().unwrap()
    };
    std::fs::write(dir.path().join(SNAPSHOT), &old_snapshot).unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.index_source(),
        IndexSource::Rebuilt,
        "a stale snapshot is not used"
    );
    assert_eq!(store.state_digest().unwrap(), digest);
    assert!(store
        .indicator(&chain_domain(&signer, 35))
        .unwrap()
        .is_some());
    drop(store);

    // A damaged file (one flipped bit inside an index record) is not used either.
    let mut damaged = std::fs::read(dir.path().join(SNAPSHOT)).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    std::fs::write(dir.path().join(SNAPSHOT), &damaged).unwrap();
    let store = open(dir.path());
    assert_eq!(store.index_source(), IndexSource::Rebuilt);
    assert_eq!(store.state_digest().unwrap(), digest);
}
