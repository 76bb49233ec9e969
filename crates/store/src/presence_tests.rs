use super::*;

fn key(i: u64) -> Vec<u8> {
    let mut k = vec![keys::INDEX, 3];
    k.extend_from_slice(format!("host{i}.example").as_bytes());
    k
}

#[test]
fn every_added_key_is_held_as_the_chain_grows() {
    let p = Presence::filled_empty();
    let n = FIRST_CAPACITY * 3 / 2;
    for i in 0..n {
        p.add(&key(i));
    }
    assert_eq!(
        p.filter_count(),
        2,
        "a second filter takes what the first cannot"
    );
    let missed: Vec<u64> = (0..n).filter(|&i| !p.may_hold(&key(i))).collect();
    assert!(
        missed.is_empty(),
        "added but not held: {:?}",
        &missed[..missed.len().min(5)]
    );
}

#[test]
fn a_presence_sized_for_an_index_holds_it_in_one_filter() {
    let n = FIRST_CAPACITY * 3 / 2;
    let p = Presence::sized_for(n);
    p.filled.store(true, Ordering::Release);
    for i in 0..n {
        p.add(&key(i));
    }
    assert_eq!(
        p.filter_count(),
        1,
        "no second filter for the keys it was sized for"
    );
    assert!((0..n).all(|i| p.may_hold(&key(i))));
    // Half full, it answers absent keys better than a full filter's 1%.
    let absent = 100_000;
    let false_positives = (n..n + absent).filter(|&i| p.may_hold(&key(i))).count();
    assert!(
        false_positives < absent as usize / 100,
        "{false_positives} of {absent} absent keys said to be held"
    );
    // An empty or small index starts from the first size, as a new store does.
    let small = Presence::sized_for(10);
    assert_eq!(
        small.keys.filters().map(|f| f.capacity).collect::<Vec<_>>(),
        vec![FIRST_CAPACITY]
    );
}

#[test]
fn readers_never_miss_a_key_added_before_while_the_chain_grows() {
    let p = Arc::new(Presence::filled_empty());
    let added = Arc::new(AtomicU64::new(0));
    // Set once the reader has checked keys: the writer waits for it half way, before the
    // chain grows, so reads and growth overlap however the threads are scheduled.
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let n = FIRST_CAPACITY * 3 / 2;
    let writer = {
        let (p, added, reading) = (Arc::clone(&p), Arc::clone(&added), Arc::clone(&reading));
        std::thread::spawn(move || {
            for i in 0..n {
                if i == FIRST_CAPACITY / 2 {
                    while !reading.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                }
                p.add(&key(i));
                added.store(i + 1, Ordering::Release);
            }
        })
    };
    let mut checked = 0u64;
    while added.load(Ordering::Acquire) < n {
        let upto = added.load(Ordering::Acquire);
        for i in upto.saturating_sub(64)..upto {
            assert!(p.may_hold(&key(i)), "key {i} added, then not held");
            checked += 1;
        }
        if checked > 0 {
            reading.store(true, Ordering::Release);
        }
    }
    writer.join().expect("writer");
    assert_eq!(p.filter_count(), 2, "the chain grew while being read");
    assert!(checked > 0);
}

#[test]
fn a_regrown_filter_holds_the_scanned_keys_and_those_added_meanwhile() {
    let p = Presence::filled_empty();
    let on_disk = FIRST_CAPACITY * 4;
    for i in 0..on_disk {
        p.add(&key(i));
    }
    assert_eq!(p.filter_count(), 3);
    assert!(p.regrowth_due());
    // Abandoned: nothing changes.
    let _ = p.start_regrowth(on_disk);
    p.abandon_regrowth();
    assert_eq!(p.filter_count(), 3);
    let regrowth = p.start_regrowth(on_disk);
    // Added while the scan runs, and (as a writer after the scan read them) twice.
    for i in on_disk..on_disk + 500 {
        p.add(&key(i));
    }
    for i in 0..on_disk + 100 {
        regrowth.add(&key(i));
    }
    p.finish_regrowth(regrowth);
    assert_eq!(p.filter_count(), 1);
    assert!(!p.regrowth_due());
    for i in on_disk + 500..on_disk + 600 {
        p.add(&key(i));
    }
    let missed: Vec<u64> = (0..on_disk + 600)
        .filter(|&i| !p.may_hold(&key(i)))
        .collect();
    assert!(missed.is_empty(), "added, not held: {missed:?}");
    let capacities: Vec<u64> = p.keys.filters().map(|f| f.capacity).collect();
    assert_eq!(capacities, vec![on_disk * REGROWN_ROOM]);
}

#[test]
fn a_batch_is_answered_as_each_key_alone_across_a_chain() {
    let p = Presence::filled_empty();
    let held = FIRST_CAPACITY * 4;
    for i in 0..held {
        p.add(&key(i));
    }
    assert_eq!(p.filter_count(), 3, "keys in every filter of a chain");
    // Held keys from each filter, interleaved with absent ones.
    let asked: Vec<Vec<u8>> = (0..held + 2_000).step_by(7).map(key).collect();
    let each: Vec<bool> = asked.iter().map(|k| p.may_hold(k)).collect();
    assert_eq!(p.may_hold_each(&asked), each);
    assert!(each[..(held as usize / 7)].iter().all(|h| *h));
    assert!(each.iter().any(|h| !*h), "some absent key is told absent");
    let unfilled = Presence::default();
    assert_eq!(unfilled.may_hold_each(&asked[..3]), vec![true; 3]);
}

#[test]
fn absent_keys_are_mostly_answered_not_held() {
    let p = Presence::filled_empty();
    for i in 0..FIRST_CAPACITY {
        p.add(&key(i));
    }
    let probes = 200_000;
    let false_positives = (0..probes)
        .filter(|i| p.may_hold(&key(FIRST_CAPACITY + i)))
        .count();
    let rate = false_positives as f64 / probes as f64;
    assert!(rate < 0.02, "false positive rate {rate} at capacity");
}

/// The index key of the canonical CIDR block `v`.
fn cidr(v: &str) -> Vec<u8> {
    let mut k = vec![keys::INDEX, IndicatorType::Cidr.code()];
    k.extend_from_slice(v.as_bytes());
    k
}

/// `p`'s answer for each of `blocks`.
fn held_of(p: &Presence, blocks: &[BlockBits]) -> Vec<bool> {
    let mut held = vec![true; blocks.len()];
    p.may_hold_blocks(blocks, &mut held);
    held
}

#[test]
fn a_cidr_key_adds_its_block_and_other_keys_add_none() {
    let p = Presence::filled_empty();
    p.add(&cidr("10.1.0.0/16"));
    p.add(&cidr("2001:db8::/32"));
    p.add(&key(7));
    let bits = |v: &str| BlockBits::of_cidr(v).expect("a block");
    assert_eq!(
        held_of(&p, &[bits("10.1.0.0/16"), bits("2001:db8::/32")]),
        vec![true, true]
    );
    let others: Vec<BlockBits> = (0..=255u8)
        .map(|i| bits(&format!("10.{i}.0.0/24")))
        .collect();
    let absent = held_of(&p, &others).into_iter().filter(|h| *h).count();
    assert!(absent < 10, "{absent} of 256 absent blocks said held");
    assert!(
        p.may_hold(&cidr("10.1.0.0/16")),
        "the key itself is held too"
    );
    let unfilled = Presence::default();
    assert_eq!(
        held_of(&unfilled, &[bits("10.9.0.0/16"), bits("10.8.0.0/16")]),
        vec![true, true]
    );
}

#[test]
fn before_it_is_filled_everything_may_be_held() {
    let p = Presence::default();
    assert!(p.may_hold(&key(1)));
    p.add(&key(2));
    assert!(
        p.may_hold(&key(3)),
        "unfilled: a key on disk may not be added yet"
    );
    p.filled.store(true, Ordering::Release);
    assert!(p.may_hold(&key(2)));
}

#[test]
fn a_block_outside_every_listed_sixteen_is_never_held_and_shorter_ones_ask_the_filter() {
    let p = Presence::filled_empty();
    let bits = |v: &str| BlockBits::of_cidr(v).expect("a block");
    p.add(&cidr("10.1.2.0/24"));
    p.add(&cidr("2001:db8::/32"));
    p.add(&cidr("172.16.0.0/12"));
    // Every other /16 of either family is told exactly, whatever the filter would say.
    let elsewhere: Vec<BlockBits> = (0..=255u8)
        .filter(|i| *i != 1)
        .flat_map(|i| {
            [
                bits(&format!("10.{i}.2.0/24")),
                bits(&format!("10.{i}.0.0/16")),
                bits(&format!("2001:{i:x}::/32")),
            ]
        })
        .collect();
    assert!(held_of(&p, &elsewhere).iter().all(|held| !held));
    // Held blocks are held, in their /16 or shorter than /16.
    assert_eq!(
        held_of(
            &p,
            &[
                bits("10.1.2.0/24"),
                bits("2001:db8::/32"),
                bits("172.16.0.0/12"),
            ]
        ),
        vec![true, true, true]
    );
    // A block in a listed /16 and one shorter than /16 are the filter's to tell, mostly not held.
    let asked: Vec<BlockBits> = (0..=255u8)
        .map(|i| bits(&format!("10.1.{i}.0/24")))
        .filter(|b| *b != bits("10.1.2.0/24"))
        .chain((0..=127u8).map(|i| bits(&format!("{}.0.0.0/8", i + 1))))
        .collect();
    let said_held = held_of(&p, &asked).into_iter().filter(|h| *h).count();
    assert!(said_held < 12, "{said_held} of {} said held", asked.len());
}
