//! The hold queue and fork proofs against a hostile origin: held entries leave the queue as soon
//! as the log reaches their seq (whatever they turn out to be), expire, and two different held
//! entries at one seq are a fork; fork proofs are capped per origin and the flag keeps the first
//! seq found.

use std::time::Duration;

use intelmesh_core::chain::ChainError;
use intelmesh_core::verify::verify_batch;
use intelmesh_core::VerifyConfig;
use intelmesh_core::{Head, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{Outcome, Store, MAX_FORK_PROOFS_PER_ORIGIN};
use intelmesh_tests::store::{fixture, Fixture};
use intelmesh_tests::{chain, green, registry, seeded_signer, upsert};

/// Another entry after `head` than the chain's own (a different payload).
fn fork_after(f: &Fixture, head: Option<Head>, n: u64) -> (pb::SignedEntry, Head) {
    let seq = head.map_or(1, |h| h.seq + 1);
    f.signer.sign_next(
        head,
        1_700_000_000_000 + seq as i64,
        &green(),
        &upsert("SG-IGCI", 1000 + n, 0),
    )
}

fn org() -> OrgId {
    OrgId::parse("SG-IGCI").unwrap()
}

#[test]
fn a_held_entry_the_log_passed_leaves_the_queue_and_frees_its_room() {
    let f = fixture(11, |mut c| {
        c.hold_per_origin = 1;
        c
    });
    let (first, head1) = chain(&f.signer, None, 1, 0);
    f.store.apply(f.verified(first)).unwrap();
    // Version x of #2 and its successor #3; only #3 arrives (held).
    let (x2, hx2) = fork_after(&f, head1, 1);
    let (x3, _) = fork_after(&f, Some(hx2), 2);
    let report = f.store.apply(f.verified(vec![x3])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Held]);
    // Version y of #2 arrives and is logged: the held #3 does not follow it (a signed chain
    // break, proven) and leaves the queue.
    let (y2, hy2) = fork_after(&f, head1, 3);
    assert_ne!(x2.header, y2.header);
    let report = f.store.apply(f.verified(vec![y2])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Appended]);
    assert_eq!(
        f.store.held_count(),
        0,
        "the passed entry still counts against the cap"
    );
    assert_eq!(f.store.flagged_at(&org()).unwrap(), Some(3));
    assert_eq!(f.store.fork_proofs().unwrap().len(), 1);
    // The room is free again: a new gap entry is held.
    let (y3, hy3) = fork_after(&f, Some(hy2), 4);
    let (y4, _) = fork_after(&f, Some(hy3), 5);
    let report = f.store.apply(f.verified(vec![y4])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Held]);
    let report = f.store.apply(f.verified(vec![y3])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Appended]);
    assert_eq!(report.released, vec![(org(), 4)]);
}

#[test]
fn two_different_held_entries_at_one_seq_are_a_fork() {
    let f = fixture(11, |c| c);
    let (first, head1) = chain(&f.signer, None, 1, 0);
    f.store.apply(f.verified(first)).unwrap();
    let (a2, ha2) = fork_after(&f, head1, 1);
    let (_, hb2) = fork_after(&f, head1, 2);
    let (a3, _) = fork_after(&f, Some(ha2), 3);
    let (b3, _) = fork_after(&f, Some(hb2), 4);
    let report = f.store.apply(f.verified(vec![a3.clone()])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Held]);
    let report = f.store.apply(f.verified(vec![b3.clone()])).unwrap();
    assert_eq!(
        report.outcomes,
        vec![Outcome::Rejected(ChainError::Equivocation {
            origin: org(),
            seq: 3
        })]
    );
    let proofs = f.store.fork_proofs().unwrap();
    assert_eq!(proofs.len(), 1);
    assert_eq!(proofs[0].kept.as_ref().unwrap().header, a3.header);
    assert_eq!(proofs[0].conflicting.as_ref().unwrap().header, b3.header);
    assert!(proofs[0].kept.as_ref().unwrap().payload.is_none());
    assert_eq!(f.store.held_count(), 1, "the first one is still held");
    // The first to close the gap wins, as in the log.
    let report = f.store.apply(f.verified(vec![a2])).unwrap();
    assert_eq!(report.released, vec![(org(), 3)]);
}

#[test]
fn held_entries_expire() {
    let f = fixture(11, |mut c| {
        c.hold_ttl = Duration::from_millis(50);
        c
    });
    let (entries, _) = chain(&f.signer, None, 3, 0);
    f.store.apply(f.verified(vec![entries[2].clone()])).unwrap();
    assert_eq!(f.store.held_count(), 1);
    std::thread::sleep(Duration::from_millis(120));
    f.store.apply(Vec::new()).unwrap();
    assert_eq!(f.store.held_count(), 0);
    // Expired means forgotten, not refused: it is taken when it comes again in order.
    let report = f.store.apply(f.verified(entries)).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Appended; 3]);
}

#[test]
fn fork_proofs_are_capped_per_origin_and_the_flag_keeps_the_first_seq() {
    let f = fixture(11, |c| c);
    let (entries, _) = chain(&f.signer, None, 20, 0);
    let heads: Vec<Option<Head>> = std::iter::once(None)
        .chain(entries.iter().enumerate().map(|(i, e)| {
            Some(Head {
                seq: i as u64 + 1,
                hash: intelmesh_core::entry::header_hash(&e.header),
            })
        }))
        .collect();
    f.store.apply(f.verified(entries)).unwrap();
    // The first equivocation found is at #15, then #1..#14.
    let (at15, _) = fork_after(&f, heads[14], 15);
    f.store.apply(f.verified(vec![at15])).unwrap();
    for seq in 1..15u64 {
        let (other, _) = fork_after(&f, heads[seq as usize - 1], seq);
        let report = f.store.apply(f.verified(vec![other])).unwrap();
        assert!(matches!(
            report.outcomes[0],
            Outcome::Rejected(ChainError::Equivocation { .. })
        ));
    }
    assert_eq!(
        f.store.fork_proofs().unwrap().len(),
        MAX_FORK_PROOFS_PER_ORIGIN
    );
    assert_eq!(f.store.fork_count(), MAX_FORK_PROOFS_PER_ORIGIN as u64);
    assert_eq!(f.store.flagged_at(&org()).unwrap(), Some(15));
}

#[test]
fn the_same_fork_twice_in_one_batch_is_one_proof() {
    let f = fixture(11, |c| c);
    let (entries, _) = chain(&f.signer, None, 3, 0);
    let head = Some(Head {
        seq: 2,
        hash: intelmesh_core::entry::header_hash(&entries[1].header),
    });
    f.store.apply(f.verified(entries)).unwrap();
    let (other, _) = fork_after(&f, head, 3);
    f.store
        .apply(f.verified(vec![other.clone(), other]))
        .unwrap();
    assert_eq!(f.store.fork_proofs().unwrap().len(), 1);
    assert_eq!(f.store.fork_count(), 1, "counted once");
}

#[test]
fn one_origins_held_entries_leave_room_for_the_others() {
    // A hold queue of 400 KiB: an origin may take a quarter of it.
    let f = fixture(11, |mut c| {
        c.hold_total_bytes = 400 << 10;
        c
    });
    let other = seeded_signer(12, "BR-PF");
    let keys = registry(&[&f.signer, &other]);
    let verified = |raws: Vec<pb::SignedEntry>| -> Vec<_> {
        verify_batch(
            raws,
            &keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        )
        .into_iter()
        .map(|r| r.expect("fixture entries verify"))
        .collect()
    };
    // SG-IGCI's entries of about 8 KiB each, all after a gap: held until its share is full.
    let (loud, _) = chain(&f.signer, None, 60, 8 << 10);
    let report = f.store.apply(verified(loud[1..].to_vec())).unwrap();
    let held = report
        .outcomes
        .iter()
        .filter(|o| **o == Outcome::Held)
        .count();
    assert!(
        (10..=13).contains(&held),
        "held {held} of 59 (a quarter of 400 KiB)"
    );
    assert!(matches!(
        report.outcomes.last(),
        Some(Outcome::Rejected(ChainError::HoldQueueFull { .. }))
    ));
    // BR-PF's entry after its own gap is still held, then released when the gap closes.
    let (quiet, _) = chain(&other, None, 2, 0);
    let report = f.store.apply(verified(vec![quiet[1].clone()])).unwrap();
    assert_eq!(report.outcomes, vec![Outcome::Held]);
    let report = f.store.apply(verified(vec![quiet[0].clone()])).unwrap();
    assert_eq!(report.released, vec![(OrgId::parse("BR-PF").unwrap(), 2)]);
}
