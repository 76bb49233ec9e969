//! `DiskStore::truncate_origin`, the write a compromise report makes: an origin's entries after
//! a seq leave its log (within a segment, across segments, at every position), the head and the
//! vector move back, held entries beyond it go, the index is the fold of what stays (and a
//! snapshot of before the cut is never used), and the chain continues from the kept head.

use intelmesh_core::entry::header_hash;
use intelmesh_core::{Signer, StaticKeys};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{verify_store, DiskStore, IndexSource, Outcome, Store, StoreConfig};
use intelmesh_tests::{chain, chain_domain, green, registry, seeded_signer, upsert, verified};

fn append_all(store: &DiskStore, keys: &StaticKeys, entries: &[pb::SignedEntry]) {
    let report = store
        .apply(verified(keys, entries.to_vec()))
        .expect("apply");
    assert_eq!(report.outcomes, vec![Outcome::Appended; entries.len()]);
}

fn assert_clean(store: &DiskStore) {
    let check = verify_store(store, None).expect("verify-store runs");
    assert!(check.is_ok(), "{:?}", check.problems);
}

/// Whether the index holds `signer`'s assertion of `chain_domain(signer, n)`.
fn asserted(store: &DiskStore, signer: &Signer, n: u64) -> bool {
    store
        .indicator(&chain_domain(signer, n))
        .expect("index read")
        .is_some_and(|s| {
            s.assertions
                .iter()
                .any(|a| a.origin == signer.org().as_str())
        })
}

#[test]
fn truncation_within_and_across_segments_leaves_the_fold_of_what_stays() {
    let cut = seeded_signer(1, "SG-IGCI");
    let other = seeded_signer(2, "AU-AFP");
    let keys = registry(&[&cut, &other]);
    let dir = tempfile::tempdir().unwrap();
    // About 450 bytes an entry: a dozen entries per segment, so 400 entries span ~30 segments.
    let (entries, _) = chain(&cut, None, 400, 200);
    let (others, _) = chain(&other, None, 50, 200);
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    append_all(&store, &keys, &entries);
    append_all(&store, &keys, &others);
    let indicators_before = store.indicator_count();

    // An entry held for a gap beyond the cut leaves with it.
    let (gap, _) = chain(&cut, None, 405, 200);
    let report = store
        .apply(verified(&keys, vec![gap[403].clone()]))
        .unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Held]);
    assert_eq!(store.held_count(), 1);

    let report = store.truncate_origin(cut.org(), 150).expect("truncate");
    assert_eq!(report.removed, 250);
    assert_eq!(report.held_dropped, 1);
    assert_eq!(store.held_count(), 0);
    let head = store.head(cut.org()).unwrap().expect("a head");
    assert_eq!(head.seq, 150);
    assert_eq!(head.hash, header_hash(&entries[149].header));
    assert_eq!(report.head, Some(head));
    assert_eq!(store.heads().unwrap()[cut.org()], head);
    let vector = store.vector().unwrap();
    assert_eq!(vector[cut.org()], 150, "the cached heads follow the cut");
    assert_eq!(vector[other.org()], 50, "other origins are untouched");
    let log = store.range(cut.org(), 1, 1000).unwrap();
    assert_eq!(
        log,
        entries[..150].to_vec(),
        "entries up to the cut stay as they were"
    );
    assert!(store.range(cut.org(), 151, 10).unwrap().is_empty());
    assert_clean(&store);
    for n in 1..=150 {
        assert!(asserted(&store, &cut, n), "#{n} was kept: still asserted");
    }
    for n in 151..=400 {
        assert!(
            store.indicator(&chain_domain(&cut, n)).unwrap().is_none(),
            "#{n} was removed: its indicator (asserted by it alone) is gone"
        );
    }
    for n in 1..=50 {
        assert!(asserted(&store, &other, n));
    }
    assert_eq!(store.indicator_count(), indicators_before - 250);

    // Nothing beyond the head: a second cut at the same seq removes nothing.
    let again = store.truncate_origin(cut.org(), 150).unwrap();
    assert_eq!((again.removed, again.held_dropped), (0, 0));

    // The chain goes on from the kept head: new entries at #151.. (other payloads).
    let mut after = Vec::new();
    let mut h = Some(head);
    for n in 0..5 {
        let seq = h.map_or(1, |x| x.seq + 1);
        let (e, next) = cut.sign_next(
            h,
            1_700_000_000_000 + seq as i64,
            &green(),
            &upsert(cut.org().as_str(), 151 + n, 0),
        );
        after.push(e);
        h = Some(next);
    }
    append_all(&store, &keys, &after);
    assert_eq!(store.head(cut.org()).unwrap(), h);
    assert!((151..=155).all(|n| asserted(&store, &cut, n)));
    assert!(store.indicator(&chain_domain(&cut, 156)).unwrap().is_none());
    assert_clean(&store);

    // An origin cut to nothing has no head and no log; the chain starts again at #1.
    let gone = store.truncate_origin(other.org(), 0).unwrap();
    assert_eq!(gone.removed, 50);
    assert_eq!(gone.head, None);
    assert_eq!(store.head(other.org()).unwrap(), None);
    assert!(!store.vector().unwrap().contains_key(other.org()));
    assert!(store.range(other.org(), 1, 10).unwrap().is_empty());
    assert!((1..=50).all(|n| store.indicator(&chain_domain(&other, n)).unwrap().is_none()));
    assert_clean(&store);
    append_all(&store, &keys, &others[..3]);
    assert_eq!(store.vector().unwrap()[other.org()], 3);
    assert_clean(&store);
}

#[test]
fn every_cut_position_keeps_the_log_whole_and_the_chain_continuable() {
    let signer = seeded_signer(3, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&signer, None, 40, 600);
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    append_all(&store, &keys, &entries);
    // Each position from the tail down to 0, segment boundaries among them: cut, check, and
    // log the same entries again (they chain onto the kept head as before).
    for keep in (0..40u64).rev() {
        let report = store.truncate_origin(signer.org(), keep).unwrap();
        assert_eq!(report.removed, 40 - keep, "cut at #{keep}");
        assert_eq!(
            store.head(signer.org()).unwrap().map(|h| (h.seq, h.hash)),
            keep.checked_sub(1)
                .map(|i| (keep, header_hash(&entries[i as usize].header)))
        );
        assert_eq!(
            store.range(signer.org(), 1, 100).unwrap(),
            entries[..keep as usize].to_vec()
        );
        assert_clean(&store);
        assert!(store
            .indicator(&chain_domain(&signer, keep + 1))
            .unwrap()
            .is_none());
        append_all(&store, &keys, &entries[keep as usize..]);
        assert_clean(&store);
    }
}

#[test]
fn a_cut_index_stays_exact_across_a_reopen() {
    let signer = seeded_signer(4, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&signer, None, 60, 200);
    {
        let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
        append_all(&store, &keys, &entries);
        store.truncate_origin(signer.org(), 20).unwrap();
        assert_clean(&store);
    }
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(
        store.index_source(),
        IndexSource::OnDisk,
        "the cut finished its rebuild: nothing is left to redo"
    );
    assert_eq!(store.vector().unwrap()[signer.org()], 20);
    assert!(asserted(&store, &signer, 20));
    assert!((21..=60).all(|n| store
        .indicator(&chain_domain(&signer, n))
        .unwrap()
        .is_none()));
    assert_clean(&store);
}

/// The in-memory filter of held indicators answers "absent" without the disk, so a key missing
/// from it would hide a listed indicator or fold a known one as new: reads and the index stay
/// exact before it is filled (at reopen), while it fills under writes, after, and after a cut.
#[test]
fn reads_stay_exact_while_the_presence_filter_fills_and_after_a_cut() {
    let signer = seeded_signer(5, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, _) = chain(&signer, None, 3000, 0);
    {
        let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
        append_all(&store, &keys, &entries[..2500]);
    }
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    // Written while the filter may still be filling: each write adds its own indicators.
    for part in entries[2500..].chunks(50) {
        append_all(&store, &keys, part);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !store.presence_filled() {
        assert!(std::time::Instant::now() < deadline, "filter never filled");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let missed: Vec<u64> = (1..=3000)
        .filter(|&n| !asserted(&store, &signer, n))
        .collect();
    assert!(missed.is_empty(), "listed but not found: {missed:?}");
    let other = seeded_signer(6, "AU-AFP");
    assert!((1..=3000).all(|n| store.indicator(&chain_domain(&other, n)).unwrap().is_none()));
    assert_eq!(store.indicator_count(), 3000);
    assert_clean(&store);

    store.truncate_origin(signer.org(), 1000).unwrap();
    assert!((1..=1000).all(|n| asserted(&store, &signer, n)));
    assert!((1001..=3000).all(|n| !asserted(&store, &signer, n)));
    // Re-applied after the cut: found again, each counted once.
    append_all(&store, &keys, &entries[1000..1200]);
    assert!((1..=1200).all(|n| asserted(&store, &signer, n)));
    assert_eq!(store.indicator_count(), 1200);
    assert_clean(&store);
}

/// The filter's second chain, of CIDR blocks by their bits, lets a lookup skip a block without
/// reading it, so a block on disk missing from it would hide a listed block: after a reopen,
/// once the pass has filled it, every block written before (and since) is held.
#[test]
fn every_listed_block_is_held_by_the_block_filter_after_a_reopen() {
    use intelmesh_core::containment::BlockBits;
    let signer = seeded_signer(7, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let block = |n: u64| match n % 2 {
        0 => format!("10.{}.{}.0/24", n / 256 % 256, n % 256),
        _ => format!("2001:db8:{:x}::/48", n),
    };
    let mut head = None;
    let mut entries = Vec::new();
    for n in 1..=600u64 {
        let payload = pb::Payload {
            body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(pb::IndicatorRef {
                    r#type: pb::IndicatorType::Cidr as i32,
                    value: block(n),
                }),
                confidence: 50,
                ..Default::default()
            })),
            ..Default::default()
        };
        let (entry, next) =
            signer.sign_next(head, 1_700_000_000_000 + n as i64, &green(), &payload);
        entries.push(entry);
        head = Some(next);
    }
    {
        let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
        append_all(&store, &keys, &entries[..500]);
    }
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    append_all(&store, &keys, &entries[500..]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !store.presence_filled() {
        assert!(std::time::Instant::now() < deadline, "filter never filled");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let bits = |v: &str| BlockBits::of_cidr(v).expect("a canonical block");
    let held_of = |blocks: &[BlockBits]| {
        let mut held = vec![true; blocks.len()];
        store.may_hold_blocks(blocks, &mut held);
        held
    };
    let listed: Vec<String> = (1..=600).map(block).collect();
    let listed_bits: Vec<BlockBits> = listed.iter().map(|b| bits(b)).collect();
    let missed: Vec<&String> = listed
        .iter()
        .zip(held_of(&listed_bits))
        .filter(|(_, held)| !held)
        .map(|(b, _)| b)
        .collect();
    assert!(missed.is_empty(), "listed but not held: {missed:?}");
    let unlisted: Vec<BlockBits> = (0..=255u64)
        .map(|i| bits(&format!("172.16.{i}.0/24")))
        .collect();
    let absent = held_of(&unlisted).into_iter().filter(|held| *held).count();
    assert!(absent < 10, "{absent} of 256 unlisted blocks said held");
}

/// `signer`'s entries after `head` carrying `payloads`, in order.
fn signed(
    signer: &Signer,
    mut head: Option<intelmesh_core::Head>,
    payloads: &[pb::Payload],
) -> Vec<pb::SignedEntry> {
    let mut out = Vec::new();
    for p in payloads {
        let seq = head.map_or(1, |h| h.seq + 1);
        let (e, next) = signer.sign_next(head, 1_700_000_000_000 + seq as i64, &green(), p);
        out.push(e);
        head = Some(next);
    }
    out
}

fn reference(ty: pb::IndicatorType, value: &str) -> Option<pb::IndicatorRef> {
    Some(pb::IndicatorRef {
        r#type: ty as i32,
        value: value.into(),
    })
}

fn asserting(ty: pb::IndicatorType, value: &str, confidence: u32) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: reference(ty, value),
            confidence,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn seeing(value: &str, count: u64) -> pb::Payload {
    pb::Payload {
        body: Some(pb::payload::Body::Sighting(pb::Sighting {
            indicator: reference(pb::IndicatorType::Domain, value),
            seen_at_unix_ms: 1_700_000_000_000,
            count,
        })),
        ..Default::default()
    }
}

/// A cut folds again only what its entries named: the cut origin's records of a value shared
/// with another origin go back to what its kept entries say, the other's stay, a value only
/// cut entries named (a block too) is listed no more. The index is the fold of what stays, and
/// the arrival times of untouched records stay.
#[test]
fn a_cut_folds_again_what_its_entries_named() {
    use pb::IndicatorType::{Cidr, Domain};
    let cut = seeded_signer(1, "SG-IGCI");
    let other = seeded_signer(2, "AU-AFP");
    let keys = registry(&[&cut, &other]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.arrivals = intelmesh_store::Arrivals::Kept;
    let store = DiskStore::open(config).unwrap();
    append_all(
        &store,
        &keys,
        &signed(
            &cut,
            None,
            &[
                asserting(Domain, "shared.example", 10),
                seeing("shared.example", 3),
                asserting(Cidr, "10.9.0.0/16", 50),
                asserting(Domain, "shared.example", 90),
                seeing("shared.example", 100),
                asserting(Domain, "only-cut.example", 90),
            ],
        ),
    );
    append_all(
        &store,
        &keys,
        &signed(
            &other,
            None,
            &[
                asserting(Domain, "shared.example", 70),
                asserting(Domain, "untouched.example", 70),
            ],
        ),
    );
    let shared = intelmesh_core::indicator::normalize(
        intelmesh_core::IndicatorType::Domain,
        "shared.example",
    )
    .unwrap();
    let untouched = intelmesh_core::indicator::normalize(
        intelmesh_core::IndicatorType::Domain,
        "untouched.example",
    )
    .unwrap();
    let block =
        intelmesh_core::indicator::normalize(intelmesh_core::IndicatorType::Cidr, "10.9.0.0/16")
            .unwrap();
    let arrival_of_untouched = || {
        let state = store.indicator(&untouched).unwrap().expect("listed");
        let slot = intelmesh_store::arrival::assertion_slot(&state.assertions[0]);
        store.arrival(&untouched, &slot).unwrap()
    };
    let untouched_arrival = arrival_of_untouched();
    assert!(untouched_arrival.is_some());
    let only_cut = intelmesh_core::indicator::normalize(
        intelmesh_core::IndicatorType::Domain,
        "only-cut.example",
    )
    .unwrap();
    assert!(store.indicator(&only_cut).unwrap().is_some());
    assert_eq!(store.indicator_count(), 4);

    store.truncate_origin(cut.org(), 3).expect("cut");
    assert_clean(&store);
    let state = store.indicator(&shared).unwrap().expect("still listed");
    let of = |origin: &Signer| {
        let a = state
            .assertions
            .iter()
            .find(|a| a.origin == origin.org().as_str());
        a.map(|a| (a.seq, a.confidence))
    };
    assert_eq!(of(&cut), Some((1, 10)), "back to its kept assertion");
    assert_eq!(of(&other), Some((1, 70)), "the other origin's stays");
    let counts: Vec<u64> = state.sightings.iter().map(|s| s.count).collect();
    assert_eq!(counts, vec![3], "the cut sighting's count is gone");
    assert!(store.indicator(&block).unwrap().is_some());
    assert!(
        store.indicator(&only_cut).unwrap().is_none(),
        "named by cut entries alone: no longer listed"
    );
    assert_eq!(store.indicator_count(), 3);
    assert_eq!(
        arrival_of_untouched(),
        untouched_arrival,
        "a record the cut did not touch keeps its arrival time"
    );

    // The block's only record goes: folded again too (its length stays among those a lookup
    // probes, which verify-store takes), and listed no more.
    store.truncate_origin(cut.org(), 2).expect("cut");
    assert_clean(&store);
    assert!(store.indicator(&block).unwrap().is_none());
    assert_eq!(store.indicator_count(), 2);
    assert_eq!(arrival_of_untouched(), untouched_arrival);
}
