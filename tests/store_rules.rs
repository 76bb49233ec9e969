//! The chain rules as the disk store applies them: append, duplicate, gap hold and release,
//! equivocation with fork proof, chain break, bounded hold queue, stub then payload, reopen.

use intelmesh_core::chain::ChainError;
use intelmesh_core::entry::withheld_stub;
use intelmesh_core::verify::{verify_batch, verify_entry};
use intelmesh_core::{Indicator, IndicatorType, OrgId, StaticKeys, VerifyConfig};
use intelmesh_store::{verify_store, DiskStore, Outcome, Store, StoreConfig};
use intelmesh_tests::store::fixture;
use intelmesh_tests::{chain, green, registry, seeded_signer, upsert, verified};

fn domain(n: u64) -> Indicator {
    intelmesh_core::indicator::normalize(IndicatorType::Domain, &format!("d{n}.sg-igci.example"))
        .expect("valid")
}

#[test]
fn appends_in_order_and_duplicates_are_idempotent() {
    let f = fixture(7, |c| c);
    let (entries, head) = chain(&f.signer, None, 5, 8);
    let report = f.store.apply(f.verified(entries.clone())).expect("apply");
    assert_eq!(report.outcomes, vec![Outcome::Appended; 5]);
    assert_eq!(f.store.head(f.signer.org()).unwrap(), head);
    let digest = f.store.state_digest().unwrap();

    let again = f
        .store
        .apply(f.verified(entries.clone()))
        .expect("apply again");
    assert_eq!(again.outcomes, vec![Outcome::Duplicate; 5]);
    assert_eq!(
        f.store.state_digest().unwrap(),
        digest,
        "duplicates change nothing"
    );

    let stored = f.store.range(f.signer.org(), 2, 2).unwrap();
    assert_eq!(
        stored,
        entries[1..3].to_vec(),
        "range returns the entries byte for byte"
    );
    let state = f.store.indicator(&domain(3)).unwrap().expect("indexed");
    assert_eq!(state.assertions.len(), 1);
    assert_eq!(state.assertions[0].seq, 3);
}

#[test]
fn a_gap_is_held_until_its_predecessors_arrive() {
    let f = fixture(7, |c| c);
    let (entries, _) = chain(&f.signer, None, 4, 8);
    let late = f.store.apply(f.verified(entries[2..].to_vec())).unwrap();
    assert_eq!(late.outcomes, vec![Outcome::Held, Outcome::Held]);
    assert_eq!(
        f.store.head(f.signer.org()).unwrap(),
        None,
        "held entries are not in the log"
    );
    assert_eq!(f.store.held_count(), 2);

    let early = f.store.apply(f.verified(entries[..2].to_vec())).unwrap();
    assert_eq!(early.outcomes, vec![Outcome::Appended; 2]);
    let org = f.signer.org().clone();
    assert_eq!(early.released, vec![(org.clone(), 3), (org.clone(), 4)]);
    assert_eq!(f.store.vector().unwrap().get(&org), Some(&4));
    assert_eq!(f.store.held_count(), 0);
}

#[test]
fn the_hold_queue_is_bounded() {
    let f = fixture(7, |mut c| {
        c.hold_per_origin = 2;
        c
    });
    let (entries, _) = chain(&f.signer, None, 5, 8);
    let report = f.store.apply(f.verified(entries[2..].to_vec())).unwrap();
    assert_eq!(report.outcomes[..2], [Outcome::Held, Outcome::Held]);
    match &report.outcomes[2] {
        Outcome::Rejected(
            e @ ChainError::HoldQueueFull {
                seq: 5, limit: 2, ..
            },
        ) => {
            assert!(e.to_string().contains("hold queue"), "{e}")
        }
        other => panic!("expected HoldQueueFull, got {other:?}"),
    }
}

#[test]
fn equivocation_keeps_a_fork_proof_and_flags_the_origin() {
    let f = fixture(7, |c| c);
    let (entries, head1) = chain(&f.signer, None, 1, 8);
    f.store.apply(f.verified(entries)).unwrap();
    let (honest, _) =
        f.signer
            .sign_next(head1, 1_700_000_000_002, &green(), &upsert("SG-IGCI", 2, 0));
    let (other, _) = f.signer.sign_next(
        head1,
        1_700_000_000_002,
        &green(),
        &upsert("SG-IGCI", 99, 0),
    );
    f.store.apply(f.verified(vec![honest.clone()])).unwrap();
    let digest = f.store.state_digest().unwrap();

    let report = f.store.apply(f.verified(vec![other.clone()])).unwrap();
    let org = f.signer.org().clone();
    assert_eq!(
        report.outcomes,
        vec![Outcome::Rejected(ChainError::Equivocation {
            origin: org.clone(),
            seq: 2
        })]
    );
    assert_eq!(
        f.store.state_digest().unwrap(),
        digest,
        "the honest state is untouched"
    );
    assert_eq!(f.store.flagged_origins().unwrap(), vec![org]);
    let proofs = f.store.fork_proofs().unwrap();
    assert_eq!(proofs.len(), 1);
    let proof = &proofs[0];
    assert_eq!((proof.origin.as_str(), proof.seq), ("SG-IGCI", 2));
    // The proof is two verifiable signed headers: anyone holding the key can check it.
    for side in [proof.kept.clone(), proof.conflicting.clone()] {
        let side = side.expect("both sides kept");
        verify_entry(
            side,
            &f.keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        )
        .expect("proof side verifies");
    }
    assert_eq!(proof.kept.as_ref().unwrap().header, honest.header);
    assert_eq!(proof.conflicting.as_ref().unwrap().header, other.header);
}

#[test]
fn a_wrong_prev_hash_is_a_chain_break() {
    let f = fixture(7, |c| c);
    let (entries, _) = chain(&f.signer, None, 1, 8);
    f.store.apply(f.verified(entries)).unwrap();
    let broken = f.signer.sign_raw(
        2,
        [9; 32],
        1_700_000_000_002,
        &green(),
        intelmesh_core::payload::seal(&upsert("SG-IGCI", 2, 0), false),
    );
    let report = f.store.apply(f.verified(vec![broken])).unwrap();
    let org = OrgId::parse("SG-IGCI").unwrap();
    let expected = ChainError::ChainBreak {
        origin: org.clone(),
        seq: 2,
    };
    assert_eq!(report.outcomes, vec![Outcome::Rejected(expected.clone())]);
    assert!(
        expected.to_string().starts_with("SG-IGCI#2: chain break"),
        "{expected}"
    );
    assert_eq!(f.store.vector().unwrap().get(&org), Some(&1));
}

#[test]
fn a_stub_keeps_the_chain_and_its_payload_can_fill_in_later() {
    let f = fixture(7, |c| c);
    let (entries, _) = chain(&f.signer, None, 2, 8);
    let stubs: Vec<_> = entries.iter().map(withheld_stub).collect();
    let report = f.store.apply(f.verified(stubs)).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Appended; 2]);
    assert_eq!(
        f.store.indicator(&domain(1)).unwrap(),
        None,
        "a stub reveals nothing"
    );

    let report = f.store.apply(f.verified(vec![entries[0].clone()])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::PayloadFilled]);
    assert!(f.store.indicator(&domain(1)).unwrap().is_some());
    assert_eq!(f.store.indicator(&domain(2)).unwrap(), None);
    assert!(verify_store(&f.store, Some(&f.keys)).unwrap().is_ok());
}

#[test]
fn reopened_store_has_everything_and_verifies() {
    let signer = seeded_signer(7, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    let (entries, head) = chain(&signer, None, 50, 100);
    let digest = {
        let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
        let v = verify_batch(
            entries.clone(),
            &keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        );
        store
            .apply(v.into_iter().map(Result::unwrap).collect())
            .unwrap();
        store.state_digest().unwrap()
    };
    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("reopen");
    assert_eq!(store.state_digest().unwrap(), digest);
    assert_eq!(store.head(signer.org()).unwrap(), head);
    assert_eq!(store.range(signer.org(), 1, 100).unwrap(), entries);
    let check = verify_store(&store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(
        (check.origins, check.entries, check.indicators),
        (1, 50, 50)
    );
    // Verifying against a registry that lacks the key reports every entry.
    let check = verify_store(&store, Some(&StaticKeys::default())).unwrap();
    let unknown = check
        .problems
        .iter()
        .filter(|p| p.contains("unknown signing key"))
        .count();
    assert_eq!(unknown, 50, "{:?}", check.problems);
}

#[test]
fn a_store_creation_cut_short_by_a_crash_does_not_stop_the_next_open() {
    let signer = seeded_signer(7, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().unwrap();
    // What a SIGKILL while the engine creates a store leaves: its lock, a first journal and the
    // keyspaces directory, but not the version marker it writes last.
    std::fs::write(dir.path().join("lock"), b"").unwrap();
    std::fs::write(dir.path().join("0.jnl"), vec![0u8; 4096]).unwrap();
    std::fs::create_dir(dir.path().join("keyspaces")).unwrap();
    let (entries, head) = chain(&signer, None, 20, 10);
    {
        let store = DiskStore::open(StoreConfig::new(dir.path())).expect("open after the crash");
        assert!(store.heads().unwrap().is_empty());
        let v = verify_batch(
            entries.clone(),
            &keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        );
        store
            .apply(v.into_iter().map(Result::unwrap).collect())
            .unwrap();
    }
    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("reopen");
    assert_eq!(store.head(signer.org()).unwrap(), head);
    assert_eq!(store.range(signer.org(), 1, 100).unwrap(), entries);
    assert!(verify_store(&store, None).unwrap().is_ok());
}

#[test]
fn the_heads_after_each_write_are_the_stored_ones_and_earlier_reads_keep_theirs() {
    let sg = seeded_signer(7, "SG-IGCI");
    let au = seeded_signer(8, "AU-AFP");
    let keys = registry(&[&sg, &au]);
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    let verified = |raws| {
        verify_batch(
            raws,
            &keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        )
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
    };
    let stored = |store: &DiskStore| {
        [sg.org(), au.org()]
            .into_iter()
            .filter_map(|o| store.head(o).unwrap().map(|h| (o.clone(), h)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (sg_all, _) = chain(&sg, None, 9, 4);
    let (au_all, _) = chain(&au, None, 6, 4);
    let mut earlier = Vec::new();
    // Writes of one origin, of both, a gap held (no head moves), then its release.
    let writes: Vec<Vec<_>> = vec![
        sg_all[..3].to_vec(),
        [&sg_all[3..5], &au_all[..2]].concat(),
        au_all[3..6].to_vec(),
        au_all[2..3].to_vec(),
        sg_all[5..9].to_vec(),
    ];
    for (i, write) in writes.into_iter().enumerate() {
        let before = store.heads().unwrap();
        let snapshot = (*before).clone();
        earlier.push((before, snapshot));
        store.apply(verified(write)).unwrap();
        assert_eq!(*store.heads().unwrap(), stored(&store), "after write {i}");
    }
    for (i, (held, snapshot)) in earlier.iter().enumerate() {
        assert_eq!(
            **held, *snapshot,
            "heads read before write {i} did not change under it"
        );
    }
    assert_eq!(store.heads().unwrap()[sg.org()].seq, 9);
    assert_eq!(store.heads().unwrap()[au.org()].seq, 6);
}

#[test]
fn a_write_reports_where_its_time_went() {
    let f = fixture(7, |c| c);
    let (entries, _) = chain(&f.signer, None, 50, 8);
    let verified = f.verified(entries);
    let started = std::time::Instant::now();
    let report = f.store.apply(verified).expect("apply");
    let wall = started.elapsed();
    assert_eq!(report.outcomes, vec![Outcome::Appended; 50]);
    let t = report.timings;
    // A durable commit writes and fsyncs the journal; fifty new indicators are encoded.
    assert!(t.commit > std::time::Duration::ZERO, "{t:?}");
    assert!(t.index_write > std::time::Duration::ZERO, "{t:?}");
    let phases: std::time::Duration = t.phases().iter().map(|(_, d)| *d).sum();
    assert!(
        phases <= wall,
        "phases {phases:?} within the call's {wall:?}"
    );
    let names: Vec<&str> = t.phases().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "lock_wait",
            "placing",
            "index_read",
            "index_write",
            "commit"
        ]
    );
}

#[test]
fn a_receipt_is_kept_only_for_a_publication_that_went_in_whole() {
    use intelmesh_store::receipt::Receipt;
    let f = fixture(7, |c| c);
    let (entries, head1) = chain(&f.signer, None, 1, 8);
    f.store.apply(f.verified(entries)).unwrap();
    let sign_second = |n| {
        f.signer
            .sign_next(head1, 1_700_000_000_002, &green(), &upsert("SG-IGCI", n, 0))
            .0
    };
    let receipt = |n: u8| Receipt {
        request: [n; 32],
        at_unix_ms: 1_700_000_000_002,
        answer: vec![n],
    };
    // Peers relayed seq 2 before this node's own store held it: signing seq 2 again makes
    // a fork, the publication fails, and a repeat of its request must not be answered.
    f.store.apply(f.verified(vec![sign_second(2)])).unwrap();
    let report = f
        .store
        .apply_own(
            f.verified(vec![sign_second(99)]),
            b"forked".to_vec(),
            receipt(1),
        )
        .unwrap();
    assert!(matches!(report.outcomes[..], [Outcome::Rejected(_)]));
    assert_eq!(f.store.receipt(b"forked").unwrap(), None);

    let (third, _) = chain(&f.signer, f.store.head(f.signer.org()).unwrap(), 1, 8);
    let report = f
        .store
        .apply_own(f.verified(third), b"whole".to_vec(), receipt(2))
        .unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Appended]);
    assert_eq!(f.store.receipt(b"whole").unwrap(), Some(receipt(2)));
}

/// A cut of the node's own log (a compromise report of its key) may remove what a receipt
/// names: receipts made before it no longer answer repeats, which are then signed again; one
/// made after it does. A cut of another origin's log leaves them be.
#[test]
fn receipts_made_before_a_cut_of_the_own_log_answer_no_more() {
    use intelmesh_store::receipt::Receipt;
    let f = fixture(8, |c| StoreConfig {
        owner: OrgId::parse("SG-IGCI").ok(),
        ..c
    });
    let other = seeded_signer(9, "AU-AFP");
    let keys = registry(&[&f.signer, &other]);
    let before = Receipt {
        request: [1; 32],
        at_unix_ms: intelmesh_core::now_unix_ms() - 1,
        answer: vec![1],
    };
    let (own, _) = chain(&f.signer, None, 3, 8);
    (f.store
        .apply_own(f.verified(own), b"before".to_vec(), before.clone()))
    .unwrap();
    let (theirs, _) = chain(&other, None, 3, 8);
    f.store.apply(verified(&keys, theirs)).unwrap();
    f.store.truncate_origin(other.org(), 1).unwrap();
    assert_eq!(f.store.receipt(b"before").unwrap(), Some(before.clone()));
    f.store.truncate_origin(f.signer.org(), 1).unwrap();
    assert_eq!(f.store.receipt(b"before").unwrap(), None);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (next, _) = chain(&f.signer, f.store.head(f.signer.org()).unwrap(), 1, 8);
    let after = Receipt {
        request: [2; 32],
        at_unix_ms: intelmesh_core::now_unix_ms(),
        answer: vec![2],
    };
    (f.store
        .apply_own(f.verified(next), b"after".to_vec(), after.clone()))
    .unwrap();
    assert_eq!(f.store.receipt(b"after").unwrap(), Some(after));
}

/// Callers applying at once are written together (`group_commit`): each still gets exactly the
/// outcomes of its own entries, in its order, and the store ends as if they had been written one
/// by one: every chain whole, each of two racing copies of one chain appended once.
#[test]
fn concurrent_applies_each_get_their_own_outcomes() {
    let signers: Vec<_> = (0..6)
        .map(|i| seeded_signer(40 + i, &format!("ORG-{i}")))
        .collect();
    let keys = registry(&signers.iter().collect::<Vec<_>>());
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DiskStore::open(StoreConfig::new(dir.path())).expect("open store");
    let verified = |raws| intelmesh_tests::verified(&keys, raws);
    const LEN: u64 = 24;
    let chains: Vec<_> = signers.iter().map(|s| chain(s, None, LEN, 8).0).collect();
    // Six callers, one per origin, in batches of one and two; two more race to apply the
    // first origin's chain again, one entry at a time.
    let outcomes: Vec<Vec<Outcome>> = std::thread::scope(|scope| {
        let mut callers = Vec::new();
        for (i, entries) in chains.iter().enumerate() {
            let (store, verified) = (&store, &verified);
            callers.push(scope.spawn(move || {
                let mut got = Vec::new();
                for part in entries.chunks(1 + i % 2) {
                    let report = store.apply(verified(part.to_vec())).expect("apply");
                    assert_eq!(report.outcomes.len(), part.len(), "one outcome per entry");
                    got.extend(report.outcomes);
                }
                got
            }));
        }
        for _ in 0..2 {
            let (store, verified, entries) = (&store, &verified, &chains[0]);
            callers.push(scope.spawn(move || {
                entries
                    .iter()
                    .flat_map(|e| {
                        let report = store.apply(verified(vec![e.clone()])).expect("apply");
                        assert_eq!(report.outcomes.len(), 1);
                        report.outcomes
                    })
                    .collect()
            }));
        }
        callers
            .into_iter()
            .map(|c| c.join().expect("caller"))
            .collect()
    });
    // The first origin's three callers appended each seq once between them; every other seq of
    // theirs is a duplicate or was held for a gap the others filled.
    let racing = [&outcomes[0], &outcomes[6], &outcomes[7]];
    for (seq, of_seq) in (1..=LEN).zip((0..LEN as usize).map(|i| racing.map(|o| &o[i]))) {
        let appended = of_seq.iter().filter(|o| ***o == Outcome::Appended).count();
        let held = of_seq.iter().filter(|o| ***o == Outcome::Held).count();
        assert!(
            appended + held >= 1 && appended <= 1,
            "seq {seq}: {appended} appended, {held} held"
        );
    }
    for (i, got) in outcomes.iter().enumerate().take(6).skip(1) {
        assert_eq!(got, &vec![Outcome::Appended; LEN as usize], "caller {i}");
    }
    for s in &signers {
        assert_eq!(store.head(s.org()).unwrap().map(|h| h.seq), Some(LEN));
    }
    assert_eq!(store.held_count(), 0);
    assert!(verify_store(&store, Some(&keys)).unwrap().is_ok());
}
