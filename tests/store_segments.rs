//! The log as stored in segments: range reads and payload fills that cross segment boundaries,
//! batches that continue a half-full segment, reopen, and refusing a store of another layout.
//! The index snapshot: used after a clean close, ignored when stale or damaged.

use intelmesh_core::entry::withheld_stub;
use intelmesh_core::StaticKeys;
use intelmesh_proto::v1 as pb;
use intelmesh_store::{
    verify_store, DiskStore, Fill, IndexSource, Outcome, Store, StoreConfig, StoreError,
};
use intelmesh_tests::store::strip_index;
use intelmesh_tests::{chain, chain_domain, registry, seeded_signer, verified};

/// Applies `entries` in batches of the given sizes, cycling through them.
fn apply_in_batches(
    store: &DiskStore,
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

    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
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
    let reads = |store: &DiskStore| {
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

    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("reopen");
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
fn a_store_of_the_earlier_engine_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // What sled, the engine of layouts up to 5, leaves in a data directory.
    std::fs::write(dir.path().join("conf"), b"segment_size: 8388608\n").unwrap();
    std::fs::write(dir.path().join("db"), b"sled log").unwrap();
    match DiskStore::open(StoreConfig::new(dir.path())) {
        Err(StoreError::Corrupt(msg)) => {
            assert!(msg.contains("earlier build"), "{msg}");
            assert!(msg.contains("catch up from its peers"), "{msg}");
        }
        Err(e) => panic!("expected a layout error, got {e}"),
        Ok(_) => panic!("a store of the earlier engine must not open"),
    }
    assert_eq!(
        std::fs::read(dir.path().join("db")).unwrap(),
        b"sled log",
        "nothing of it is touched"
    );
}

/// Opens the store at `dir`, waiting for a store dropped a moment ago in this process to let go.
fn open(dir: &std::path::Path) -> DiskStore {
    for _ in 0..100 {
        match DiskStore::open(StoreConfig::new(dir)) {
            Err(StoreError::InUse(_)) => std::thread::sleep(std::time::Duration::from_millis(50)),
            other => return other.expect("open store"),
        }
    }
    panic!("the store at {} stays in use", dir.display())
}

#[test]
fn the_index_lives_on_disk_and_a_reopen_rebuilds_nothing() {
    let signer = seeded_signer(3, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (first, head) = chain(&signer, None, 60, 50);
    let digest = {
        let store = open(dir.path());
        assert_eq!(store.index_source(), IndexSource::OnDisk);
        apply_in_batches(&store, &keys, &first, &[25]);
        store.state_digest().unwrap()
    };
    let store = open(dir.path());
    assert_eq!(store.index_source(), IndexSource::OnDisk);
    assert_eq!(store.state_digest().unwrap(), digest);
    assert_eq!(store.indicator_count(), 60);
    // The stored index, its postings and counters equal those rebuilt from the log.
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.indicators, 60);

    let (more, _) = chain(&signer, head, 10, 50);
    apply_in_batches(&store, &keys, &more, &[10]);
    let digest = store.state_digest().unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.index_source(), IndexSource::OnDisk);
    assert_eq!(store.state_digest().unwrap(), digest);
    assert_eq!(store.indicator_count(), 70);
    assert!(store
        .indicator(&chain_domain(&signer, 70))
        .unwrap()
        .is_some());
}

#[test]
fn a_rebuild_cut_short_is_finished_at_the_next_open() {
    let signer = seeded_signer(5, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&signer, None, 40, 50);
    let digest = {
        let store = open(dir.path());
        apply_in_batches(&store, &keys, &entries, &[40]);
        store.state_digest().unwrap()
    };
    strip_index(dir.path(), true);
    let store = open(dir.path());
    assert_eq!(store.index_source(), IndexSource::Rebuilt);
    assert_eq!(store.state_digest().unwrap(), digest);
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

#[test]
fn verify_store_reports_an_index_that_differs_from_the_log() {
    let signer = seeded_signer(6, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&signer, None, 20, 50);
    {
        let store = open(dir.path());
        apply_in_batches(&store, &keys, &entries, &[20]);
    }
    // No rebuild mark: the damage stays until verify-store finds it.
    strip_index(dir.path(), false);
    let store = open(dir.path());
    let check = verify_store(&store, Some(&keys)).unwrap();
    let problems = check.problems.join("\n");
    assert!(problems.contains("index differs"), "{problems}");
    assert!(problems.contains("postings differ"), "{problems}");
    assert!(
        problems.contains("stored counters differ from the rebuilt index: it counts"),
        "{problems}"
    );
}

/// Range reads of an origin's tail (answered from the tail as last written) follow every
/// write: appends, a payload filled into the tail, a cut, and a new chain after the cut; the
/// same reads after a reopen (all from the store) agree.
#[test]
fn range_reads_of_the_tail_follow_fills_and_cuts() {
    let origin = seeded_signer(3, "AU-AFP");
    let keys = registry(&[&origin]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&origin, None, 30, 60);
    let stubs: Vec<_> = entries.iter().map(withheld_stub).collect();
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    apply_in_batches(&store, &keys, &stubs, &[1, 4, 25]);
    assert_eq!(
        store.range(origin.org(), 28, 10).unwrap(),
        stubs[27..].to_vec()
    );
    // The last entry's payload comes: the tail read shows it.
    let report = store
        .apply(verified(&keys, vec![entries[29].clone()]))
        .unwrap();
    assert_eq!(report.outcomes, vec![Outcome::PayloadFilled]);
    let mut log = stubs.clone();
    log[29] = entries[29].clone();
    assert_eq!(
        store.range(origin.org(), 29, 10).unwrap(),
        log[28..].to_vec()
    );
    // Cut back to 25: nothing past it is read.
    store.truncate_origin(origin.org(), 25).unwrap();
    assert_eq!(
        store.range(origin.org(), 20, 100).unwrap(),
        log[19..25].to_vec()
    );
    assert!(store.range(origin.org(), 26, 10).unwrap().is_empty());
    // Another chain from 26 on: read as written.
    let head = store.head(origin.org()).unwrap();
    let (after, _) = chain(&origin, head, 3, 61);
    apply_in_batches(&store, &keys, &after, &[2, 1]);
    let mut now = log[..25].to_vec();
    now.extend(after.iter().cloned());
    assert_eq!(
        store.range(origin.org(), 24, 100).unwrap(),
        now[23..].to_vec()
    );
    assert_eq!(store.range(origin.org(), 1, 100).unwrap(), now);
    drop(store);
    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("reopen");
    assert_eq!(
        store.range(origin.org(), 24, 100).unwrap(),
        now[23..].to_vec()
    );
    assert_eq!(store.range(origin.org(), 1, 100).unwrap(), now);
}

/// A read of the head just written finds it: while one thread appends entry by entry, another
/// reads the head from the store and the log from that seq on, and never finds the log shorter
/// than the head (the tail as last cached must not answer for a head written after it).
#[test]
fn a_range_read_from_a_head_just_written_finds_it() {
    let origin = seeded_signer(4, "AU-AFP");
    let keys = registry(&[&origin]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&origin, None, 300, 40);
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let short_reads = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut short = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let Some(head) = store.head(origin.org()).unwrap() else {
                    continue;
                };
                if store.range(origin.org(), head.seq, 1).unwrap().is_empty() {
                    short.push(head.seq);
                }
            }
            short
        });
        apply_in_batches(&store, &keys, &entries, &[1]);
        done.store(true, std::sync::atomic::Ordering::Release);
        reader.join().unwrap()
    });
    assert_eq!(
        short_reads,
        Vec::<u64>::new(),
        "heads read with no entry at them"
    );
}

#[test]
fn entries_that_trickle_in_do_not_rewrite_a_full_segment_each_and_a_batch_fills_its_own() {
    let origin = seeded_signer(1, "AU-AFP");
    let keys = registry(&[&origin]);
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    // About 450 bytes an entry: three fit under the 1 KiB a stored tail is extended to, and
    // thirteen in a 6 KiB segment.
    let (trickled, head) = chain(&origin, None, 60, 200);
    apply_in_batches(&store, &keys, &trickled, &[1]);
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.segments, 20, "one entry a write: segments of three");

    let (batched, _) = chain(&origin, head, 130, 200);
    apply_in_batches(&store, &keys, &batched, &[130]);
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert!(
        (29..=31).contains(&check.segments),
        "one write of 130 entries fills segments of the target size: {} in all",
        check.segments
    );
    let all = store.range(origin.org(), 1, 1000).unwrap();
    assert_eq!(all, [trickled, batched].concat(), "read back byte for byte");
}
