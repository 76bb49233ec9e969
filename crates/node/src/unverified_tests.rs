use super::*;

fn entry(n: usize) -> pb::SignedEntry {
    entry_marked(n, 0)
}

/// An entry of `n` header bytes, told apart from others of that size by `mark`.
fn entry_marked(n: usize, mark: u8) -> pb::SignedEntry {
    let mut header = vec![0; n];
    if let Some(first) = header.first_mut() {
        *first = mark;
    }
    pb::SignedEntry {
        header: header.into(),
        signature: vec![0; 64].into(),
        payload: None,
    }
}

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

#[test]
fn a_waiting_entry_does_not_keep_the_frame_it_came_in() {
    // As decoded from a frame: every field a slice of the frame's one buffer.
    let frame = prost::bytes::Bytes::from(vec![5u8; 1 << 20]);
    let sliced = pb::SignedEntry {
        header: frame.slice(0..100),
        signature: frame.slice(100..164),
        payload: Some(frame.slice(200..300)),
    };
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 2,
        total_bytes: 2000,
    };
    q.add(org("AU"), 1, KeyId([1; 8]), sliced.clone(), &limits, true);
    let kept = q.take_all();
    assert_eq!(kept, [sliced]);
    let in_frame = frame.as_ptr_range();
    let fields = [&kept[0].header, &kept[0].signature];
    for field in fields.into_iter().chain(kept[0].payload.as_ref()) {
        assert!(
            !in_frame.contains(&field.as_ptr()),
            "a field still points into the frame"
        );
    }
}

#[test]
fn bounded_per_origin_and_in_bytes_and_says_what_was_dropped() {
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 2,
        total_bytes: 2000,
    };
    let k = KeyId([1; 8]);
    let kept = |new_key| Added::Kept { new_key };
    let add = |origin: &str, seq, n| q.add(org(origin), seq, k, entry(n), &limits, true);
    assert_eq!(add("AU", 1, 100), kept(true));
    assert_eq!(add("AU", 2, 100), kept(false));
    assert_eq!(add("AU", 2, 100), kept(false));
    let dropped = |first| Added::Dropped { first };
    // Past the entries of one origin.
    assert_eq!(add("AU", 3, 100), dropped(true));
    assert_eq!(add("AU", 4, 100), dropped(false));
    assert_eq!(add("BR", 1, 100), kept(true));
    // Past FR's share of the bytes (a quarter: 500).
    assert_eq!(add("FR", 1, 400), kept(true));
    assert_eq!(add("FR", 2, 100), dropped(true));
    // Past the queue's bytes.
    assert_eq!(add("CA", 1, 400), kept(true));
    assert_eq!(add("DE", 1, 400), kept(true));
    assert_eq!(add("NL", 1, 400), dropped(true));
    assert_eq!(q.len(), 6);
    let rows = q.summary();
    let row = |o: &str| {
        let r = rows.iter().find(|r| r.origin == o).unwrap();
        (r.entries, r.dropped)
    };
    assert_eq!(row("AU"), (2, true));
    assert_eq!(row("FR"), (1, true));
    assert_eq!(row("NL"), (0, true));
    assert_eq!(q.take_all().len(), 6);
    assert!(q.is_empty());
    assert_eq!(add("FR", 2, 100), kept(true));
}

#[test]
fn one_origin_takes_at_most_its_share_and_unlisted_origins_share_one() {
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 100,
        total_bytes: 4000,
    };
    let k = KeyId([1; 8]);
    let add = |origin: &str, seq, member| q.add(org(origin), seq, k, entry(400), &limits, member);
    // A member's share is a quarter of the bytes (two entries of 400 and their signatures).
    assert!(matches!(add("AU", 1, true), Added::Kept { .. }));
    assert!(matches!(add("AU", 2, true), Added::Kept { .. }));
    assert!(matches!(add("AU", 3, true), Added::Dropped { .. }));
    // Made-up origins, each new, share one quarter between them.
    assert!(matches!(add("X1", 1, false), Added::Kept { .. }));
    assert!(matches!(add("X2", 1, false), Added::Kept { .. }));
    assert!(matches!(add("X3", 1, false), Added::Dropped { .. }));
    // Room is left for the other members.
    assert!(matches!(add("BR", 1, true), Added::Kept { .. }));
    assert!(matches!(add("CA", 1, true), Added::Kept { .. }));
    assert_eq!(q.len(), 6);
    // The made-up origins' drops name no row, and restart links only once the list gains
    // a member.
    let made_up: Vec<(String, bool)> = (q.summary().into_iter())
        .filter(|r| r.origin.starts_with('X'))
        .map(|r| (r.origin, r.dropped))
        .collect();
    assert_eq!(made_up, [("X1".into(), false), ("X2".into(), false)]);
    assert!(
        !q.clear_dropped(|_, _| false, false),
        "no key came, no member joined"
    );
    assert!(q.clear_dropped(|_, _| false, true), "a member joined");
    assert!(!q.clear_dropped(|_, _| false, true), "counted once");
    assert!(q.clear_dropped(|_, _| true, false), "AU's key came");
    // Taken out and kept again (a recheck): shares start over.
    assert_eq!(q.take_all().len(), 6);
    assert!(matches!(add("AU", 3, true), Added::Kept { .. }));
}

#[test]
fn a_recheck_keeps_the_time_an_entry_first_arrived() {
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 4,
        total_bytes: 10_000,
    };
    let k = KeyId([1; 8]);
    q.add(org("AU"), 1, k, entry(100), &limits, true);
    let first = q.lock().by_origin[&org("AU")]
        .values()
        .next()
        .map(|w| w.since);
    std::thread::sleep(Duration::from_millis(20));
    // Checked again and still unknown: kept again, as it came.
    for e in q.take_all() {
        q.add(org("AU"), 1, k, e, &limits, true);
    }
    let again = q.lock().by_origin[&org("AU")]
        .values()
        .next()
        .map(|w| w.since);
    assert_eq!(again, first);
    // A new entry is timed from now.
    q.add(org("AU"), 2, k, entry(101), &limits, true);
    let times: Vec<Instant> = q.lock().by_origin[&org("AU")]
        .values()
        .map(|w| w.since)
        .collect();
    assert!(times[1] > times[0]);
}

#[test]
fn made_up_entries_at_a_seq_leave_room_for_the_origins_own() {
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 100,
        total_bytes: 100_000,
    };
    let (fake, real) = (KeyId([9; 8]), KeyId([1; 8]));
    // Someone relays a made-up entry at AU's next seq first.
    assert_eq!(
        q.add(org("AU"), 5, fake, entry_marked(100, 1), &limits, true),
        Added::Kept { new_key: true }
    );
    // AU's own entry at that seq, under its new key, still waits.
    assert_eq!(
        q.add(org("AU"), 5, real, entry_marked(100, 2), &limits, true),
        Added::Kept { new_key: true }
    );
    assert_eq!(
        q.add(org("AU"), 5, real, entry_marked(100, 2), &limits, true),
        Added::Kept { new_key: false }
    );
    assert_eq!(q.len(), 2);
    // Claims on one seq are bounded: past them, a new one is dropped and said so.
    for mark in 3..=4 {
        assert_eq!(
            q.add(org("AU"), 5, fake, entry_marked(100, mark), &limits, true),
            Added::Kept { new_key: false }
        );
    }
    assert_eq!(
        q.add(org("AU"), 5, fake, entry_marked(100, 5), &limits, true),
        Added::Dropped { first: true }
    );
    assert_eq!(
        q.add(org("AU"), 6, fake, entry_marked(100, 5), &limits, true),
        Added::Kept { new_key: false }
    );
    let headers: Vec<u8> = q.take_all().iter().map(|e| e.header[0]).collect();
    assert_eq!(headers.len(), 5);
    assert!(
        headers.contains(&2),
        "the origin's own entry is checked again"
    );
}

#[test]
fn an_entry_that_waited_past_its_time_counts_as_dropped_so_it_is_sent_again() {
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 4,
        total_bytes: 10_000,
    };
    q.add(org("AU"), 1, KeyId([1; 8]), entry(100), &limits, true);
    let later = Instant::now() + UNVERIFIED_TTL + Duration::from_secs(120);
    q.lock().expire(later);
    assert!(q.take_all().is_empty());
    assert!(
        q.clear_dropped(|_, _| true, false),
        "the key's arrival restarts the links, so the peer sends it again"
    );
}

#[test]
fn what_was_dropped_is_remembered_for_a_bounded_number_of_origins_and_keys() {
    // A peer choosing a new origin and key id for every entry it sends a full queue.
    let q = Unverified::default();
    let limits = UnverifiedLimits {
        per_origin: 1,
        total_bytes: 800,
    };
    let k = KeyId([1; 8]);
    assert_eq!(
        q.add(org("AU"), 1, k, entry(100), &limits, true),
        Added::Kept { new_key: true }
    );
    let pairs = 10 * SUMMARY_ROWS;
    for i in 0..pairs {
        let origin = org(&format!("X{i}"));
        let key = KeyId((i as u64).to_be_bytes());
        let first = i < SUMMARY_ROWS;
        assert_eq!(
            q.add(origin, 1, key, entry(150), &limits, true),
            Added::Dropped { first }
        );
    }
    let rows = q.summary();
    assert_eq!(rows.len(), SUMMARY_ROWS);
    assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS);
    assert_eq!(q.dropped_elsewhere(), (pairs - SUMMARY_ROWS) as u64);
    let resends = q.resends();
    // A key list holding none of their keys: only those not named restart the links.
    assert!(
        q.clear_dropped(|_, _| false, false),
        "pairs beyond the rows were dropped"
    );
    assert!(
        !q.clear_dropped(|_, _| false, false),
        "none of their keys known: no restart"
    );
    assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS, "still remembered");
    let x3 = org("X3");
    assert!(q.clear_dropped(|o, _| *o == x3, false), "X3's key came");
    assert_eq!(q.lock().dropped.len(), SUMMARY_ROWS - 1);
    assert!(q.clear_dropped(|_, _| true, false), "entries were dropped");
    assert!(!q.clear_dropped(|_, _| true, false), "nothing since");
    assert_eq!(q.dropped_elsewhere(), 0);
    q.ask_resend();
    assert!(resends.has_changed().unwrap());
    assert_eq!(q.summary().len(), 1);
}
