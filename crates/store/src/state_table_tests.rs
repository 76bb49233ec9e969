use std::time::{Duration, Instant};

use prost::Message;

use super::*;
use crate::background::Background;
use crate::index::decode_state;
use crate::kv::Batch;
use crate::presence::Presence;
use crate::state_table_build::{keep_built, StateTableConfig, TICK};
use crate::state_table_file::{reduce, FILE_PREFIX};

fn key(i: u64) -> Vec<u8> {
    let mut k = vec![keys::INDEX, 3];
    k.extend_from_slice(format!("host{i}.example").as_bytes());
    k
}

/// A state with every field a full state carries, `version` in its confidence.
fn state(i: u64, version: u32) -> pb::IndicatorState {
    pb::IndicatorState {
        indicator: Some(pb::IndicatorRef {
            r#type: 3,
            value: format!("host{i}.example"),
        }),
        assertions: vec![pb::OriginAssertion {
            origin: format!("ORG-{}", i % 7),
            seq: i + 1,
            revoked: i.is_multiple_of(5),
            confidence: version,
            distribution: Some(pb::Distribution {
                tlp: 2,
                recipients: vec!["ORG-1".into()],
            }),
            issued_at_unix_ms: 1_700_000_000_000,
            valid_from_unix_ms: 1_600_000_000_000,
            valid_until_unix_ms: i.is_multiple_of(3).then_some(1_900_000_000_000),
            tags: vec!["phishing".into()],
            threat_types: vec!["c2".into()],
            description: "a long description no lookup reads".repeat(4),
            external_references: Vec::new(),
            revoke_reason: String::new(),
            first_issued_at_unix_ms: 1_690_000_000_000,
        }],
        sightings: vec![pb::OriginSightings {
            origin: "ORG-3".into(),
            count: 4,
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 2,
            last_seq: 9,
            distribution: Some(pb::Distribution {
                tlp: 1,
                recipients: Vec::new(),
            }),
        }],
    }
}

fn put(db: &Kv, range: std::ops::Range<u64>, version: u32) {
    let mut batch = Batch::default();
    for i in range {
        batch.insert(key(i), state(i, version).encode_to_vec());
    }
    db.apply_batch(batch).expect("batch applied");
}

fn open(dir: &Path, max_marks: usize) -> Kv {
    crate::open::open_kv(dir, 1 << 20)
        .expect("kv opened")
        .with_state_tables(StateTables::new(max_marks))
}

fn build(db: &Kv, dir: &Path, number: u64) -> bool {
    db.state_tables()
        .build(db, dir, number, &AtomicBool::new(false))
        .expect("table built")
}

/// A space holding `keys` states at version 1, with a table built over them.
fn with_table(keys: u64, max_marks: usize) -> (tempfile::TempDir, Kv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), max_marks);
    put(&db, 0..keys, 1);
    assert!(build(&db, dir.path(), 1));
    (dir, db)
}

fn table_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir read")
        .map(|d| {
            d.expect("dirent")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.starts_with(FILE_PREFIX))
        .collect();
    names.sort();
    names
}

#[test]
fn reduce_keeps_what_a_verdict_rests_on_and_drops_the_rest() {
    let full = state(3, 80);
    let r = reduce(&full);
    assert_eq!(r.indicator, None);
    let (a, fa) = (&r.assertions[0], &full.assertions[0]);
    assert_eq!(
        (&a.origin, a.seq, a.revoked, a.confidence, &a.distribution),
        (
            &fa.origin,
            fa.seq,
            fa.revoked,
            fa.confidence,
            &fa.distribution
        )
    );
    assert_eq!(
        (a.valid_from_unix_ms, a.valid_until_unix_ms),
        (fa.valid_from_unix_ms, fa.valid_until_unix_ms)
    );
    assert!(a.tags.is_empty() && a.threat_types.is_empty() && a.description.is_empty());
    assert_eq!(r.sightings[0].origin, "ORG-3");
    assert_eq!(r.sightings[0].distribution, full.sightings[0].distribution);
    assert_eq!(r.sightings[0].count, 0);
    assert!(r.encoded_len() < full.encoded_len() / 2);
}

#[test]
fn a_built_table_answers_every_key_and_knows_what_is_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1000);
    put(&db, 0..3000, 1);
    let tables = db.state_tables();
    assert_eq!(tables.lookup(&key(1)).expect("lookup"), Answer::AskLsm);
    assert!(build(&db, dir.path(), 1));
    assert_eq!(tables.in_force(), Some((3000, 0)));
    for i in 0..3000 {
        assert_eq!(
            tables.lookup(&key(i)).expect("lookup"),
            Answer::Found(reduce(&state(i, 1))),
            "key {i}"
        );
    }
    for i in 3000..3100 {
        assert_eq!(tables.lookup(&key(i)).expect("lookup"), Answer::Absent);
    }
    // Not an index key of this store at all.
    assert_eq!(tables.lookup(b"").expect("lookup"), Answer::Absent);
}

#[test]
fn a_state_of_forty_origins_reads_back_whole_beside_short_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1000);
    // Forty origins: a reduced state of about 1.5 KB, beside short ones.
    let mut wide = state(7, 1);
    wide.assertions = (0..40)
        .map(|o| pb::OriginAssertion {
            origin: format!("ORG-{o:03}"),
            ..wide.assertions[0].clone()
        })
        .collect();
    let mut batch = Batch::default();
    for i in 0..10 {
        let s = if i == 7 { wide.clone() } else { state(i, 1) };
        batch.insert(key(i), s.encode_to_vec());
    }
    db.apply_batch(batch).expect("batch applied");
    assert!(build(&db, dir.path(), 1));
    let reduced = reduce(&wide);
    let tables = db.state_tables();
    assert_eq!(
        tables.lookup(&key(7)).expect("lookup"),
        Answer::Found(reduced)
    );
    for i in [6, 8] {
        assert_eq!(
            tables.lookup(&key(i)).expect("lookup"),
            Answer::Found(reduce(&state(i, 1)))
        );
    }
}

#[test]
fn keys_written_after_the_copy_are_read_from_the_lsm() {
    let (_dir, db) = with_table(100, 1000);
    put(&db, 10..20, 2);
    put(&db, 100..101, 2);
    let tables = db.state_tables();
    for i in (10..20).chain(100..101) {
        assert_eq!(tables.lookup(&key(i)).expect("lookup"), Answer::AskLsm);
    }
    assert_eq!(
        tables.lookup(&key(5)).expect("lookup"),
        Answer::Found(reduce(&state(5, 1)))
    );
    assert_eq!(tables.in_force(), Some((100, 11)));
    // A removal is a write too.
    let mut batch = Batch::default();
    batch.remove(key(50));
    db.apply_batch(batch).expect("removed");
    assert_eq!(tables.lookup(&key(50)).expect("lookup"), Answer::AskLsm);
    // Writes of other keys than the index's mark nothing.
    db.insert(b"Mcount".to_vec(), 7u64.to_be_bytes().to_vec())
        .expect("count written");
    assert_eq!(tables.in_force(), Some((100, 12)));
}

#[test]
fn a_batch_with_marked_keys_among_others_answers_each_key_its_own() {
    // Every third key written since the copy: in a batch, each marked key sits before
    // unmarked ones, whose answers must not shift onto their neighbours.
    let (_dir, db) = with_table(300, 1000);
    for i in (0..300).step_by(3) {
        put(&db, i..i + 1, 2);
    }
    let asked: Vec<u64> = (0..300).chain(300..310).rev().collect();
    let keys: Vec<Vec<u8>> = asked.iter().map(|i| key(*i)).collect();
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let answers = db.state_tables().lookup_many(&refs).expect("lookup");
    assert_eq!(answers.len(), asked.len());
    for (i, answer) in asked.iter().zip(answers) {
        let expected = match i {
            300.. => Answer::Absent,
            i if i.is_multiple_of(3) => Answer::AskLsm,
            i => Answer::Found(reduce(&state(*i, 1))),
        };
        assert_eq!(answer, expected, "key {i}");
    }
}

#[test]
fn past_its_limit_of_marks_the_table_is_dropped_and_a_new_build_replaces_it() {
    let (dir, db) = with_table(200, 50);
    assert_eq!(table_files(dir.path()), vec!["state-table.1"]);
    put(&db, 0..51, 2);
    let tables = db.state_tables();
    assert_eq!(tables.in_force(), None);
    assert_eq!(tables.lookup(&key(100)).expect("lookup"), Answer::AskLsm);
    assert!(
        table_files(dir.path()).is_empty(),
        "a dropped table's file is removed"
    );
    assert!(build(&db, dir.path(), 2));
    assert_eq!(
        tables.lookup(&key(3)).expect("lookup"),
        Answer::Found(reduce(&state(3, 2)))
    );
    assert!(build(&db, dir.path(), 3));
    assert_eq!(table_files(dir.path()), vec!["state-table.3"]);
}

#[test]
fn a_build_told_to_stop_leaves_no_table_and_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1_000_000);
    put(&db, 0..(2 * STOP_CHECK_EVERY), 1);
    let stopped = db
        .state_tables()
        .build(&db, dir.path(), 1, &AtomicBool::new(true))
        .expect("build ran");
    assert!(!stopped);
    assert_eq!(db.state_tables().in_force(), None);
    assert!(table_files(dir.path()).is_empty());
}

#[test]
fn writes_racing_a_build_never_leave_a_stale_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1_000_000);
    put(&db, 0..20_000, 1);
    let writing = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut version = 2;
            while writing.load(Ordering::Acquire) {
                let from = u64::from(version * 37 % 19_000);
                put(&db, from..from + 50, version);
                version += 1;
            }
        });
        for number in 1..=3 {
            assert!(build(&db, dir.path(), number));
        }
        writing.store(false, Ordering::Release);
    });
    let tables = db.state_tables();
    for i in 0..20_000 {
        if let Answer::Found(s) = tables.lookup(&key(i)).expect("lookup") {
            let stored =
                decode_state(&db.get(key(i)).expect("read").expect("held")).expect("state");
            assert_eq!(s, reduce(&stored), "key {i}");
        }
    }
}

/// Writes the states of `keys` 500 to a batch.
fn put_in_batches(db: &Kv, keys: std::ops::Range<u64>) {
    for from in keys.clone().step_by(500) {
        put(db, from..(from + 500).min(keys.end), 1);
    }
}

/// A space whose presence filter is filled (every key written goes into its chain), holding
/// the states of `keys`.
fn with_presence(keys: std::ops::Range<u64>) -> (tempfile::TempDir, Kv, Arc<Presence>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1_000_000);
    let presence = Arc::clone(db.presence());
    presence.mark_filled();
    put_in_batches(&db, keys);
    (dir, db, presence)
}

#[test]
fn a_build_regrows_a_long_presence_chain_with_every_key_written_meanwhile() {
    let before = 14_000;
    let (dir, db, presence) = with_presence(0..before);
    let long = presence.filter_count();
    assert!(long >= 3, "{long} filters: not long enough to regrow");
    let written = AtomicU64::new(before);
    let writing = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Up to what the regrown filter has room for beyond the keys before.
            let mut from = 1_000_000;
            while writing.load(Ordering::Acquire) && from < 1_020_000 {
                put(&db, from..from + 50, 1);
                from += 50;
                written.fetch_add(50, Ordering::Release);
            }
        });
        assert!(build(&db, dir.path(), 1));
        writing.store(false, Ordering::Release);
    });
    assert_eq!(presence.filter_count(), 1, "one filter asked per miss");
    assert!(!presence.regrowth_due());
    let during = written.load(Ordering::Acquire) - before;
    assert!(during > 0, "nothing written during the build");
    let missed: Vec<u64> = (0..before)
        .chain(1_000_000..1_000_000 + during)
        .filter(|&i| !presence.may_hold(&key(i)))
        .collect();
    assert!(missed.is_empty(), "written, not held: {missed:?}");
    // And what is written after it is in place.
    put(&db, 5_000_000..5_000_100, 1);
    assert!((5_000_000..5_000_100).all(|i| presence.may_hold(&key(i))));
    let absent = (9_000_000..9_010_000u64)
        .filter(|&i| presence.may_hold(&key(i)))
        .count();
    assert!(absent < 100, "{absent} of 10,000 absent keys said held");
}

#[test]
fn stale_files_of_an_earlier_process_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("state-table.7"), b"left by a crash").expect("written");
    std::fs::write(dir.path().join("other"), b"kept").expect("written");
    remove_stale(dir.path()).expect("removed");
    assert!(table_files(dir.path()).is_empty());
    assert!(dir.path().join("other").exists());
}

/// A space holding ten states and their count, as the index writes it.
fn ten_counted() -> (tempfile::TempDir, Kv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1000);
    put(&db, 0..10, 1);
    db.insert(keys::INDEX_COUNT.to_vec(), 10u64.to_be_bytes().to_vec())
        .expect("count written");
    (dir, db)
}

#[test]
fn the_builder_clears_what_an_earlier_process_left_then_builds_once_due() {
    let (dir, db) = ten_counted();
    // The name this process's first build takes: a build would fail to create it.
    std::fs::write(dir.path().join("state-table.1"), b"left by a crash").expect("written");
    let cfg = StateTableConfig {
        min_indicators: 10,
        quiet: Duration::ZERO,
        ..StateTableConfig::default()
    };
    let _builder = keep_built(db.clone(), dir.path().to_path_buf(), cfg);
    let start = Instant::now();
    while db.state_tables().in_force().is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "no table built");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        db.state_tables().lookup(&key(7)).expect("lookup"),
        Answer::Found(reduce(&state(7, 1)))
    );
    assert_eq!(table_files(dir.path()), vec!["state-table.1"]);
}

#[test]
fn the_builder_builds_nothing_below_its_minimum() {
    let (dir, db) = ten_counted();
    let cfg = StateTableConfig {
        min_indicators: 11,
        quiet: Duration::ZERO,
        ..StateTableConfig::default()
    };
    let builder = keep_built(db.clone(), dir.path().to_path_buf(), cfg);
    std::thread::sleep(TICK * 5);
    drop(builder);
    assert_eq!(db.state_tables().in_force(), None);
    assert!(table_files(dir.path()).is_empty());
}

#[test]
fn a_table_half_way_to_its_limit_is_copied_again_without_waiting_for_quiet() {
    let (dir, db) = ten_counted();
    // A table in force before the builder starts (its file is an earlier process's to the
    // builder, which removes it; the open handle still reads).
    assert!(build(&db, dir.path(), 100));
    // Never quiet, never waited out: only the marks can make a copy start.
    let cfg = StateTableConfig {
        min_indicators: 10,
        min_stale: 1,
        quiet: Duration::from_secs(3600),
        max_wait: Duration::from_secs(3600),
        idle_refresh: Duration::from_secs(3600),
    };
    let _builder = keep_built(db.clone(), dir.path().to_path_buf(), cfg);
    put(&db, 10..400, 1);
    std::thread::sleep(TICK * 5);
    assert_eq!(
        db.state_tables().in_force(),
        Some((10, 390)),
        "below half its limit, a due copy waits"
    );
    put(&db, 400..520, 1);
    let start = Instant::now();
    while db.state_tables().in_force().map(|(len, _)| len) != Some(520) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no copy at half the limit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        db.state_tables().lookup(&key(510)).expect("lookup"),
        Answer::Found(reduce(&state(510, 1)))
    );
}

/// A table of 640 keys with 10 written since its copy: far below the eighth that makes a copy
/// due, but at the sixty-fourth an idle store copies for.
fn ten_of_640_written_since(idle_refresh: Duration) -> (tempfile::TempDir, Kv, Background) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path(), 1000);
    put(&db, 0..640, 1);
    db.insert(keys::INDEX_COUNT.to_vec(), 640u64.to_be_bytes().to_vec())
        .expect("count written");
    assert!(build(&db, dir.path(), 100));
    put(&db, 0..10, 2);
    assert_eq!(db.state_tables().in_force(), Some((640, 10)));
    let cfg = StateTableConfig {
        min_indicators: 10,
        min_stale: 1,
        quiet: Duration::ZERO,
        max_wait: Duration::from_secs(3600),
        idle_refresh,
    };
    let builder = keep_built(db.clone(), dir.path().to_path_buf(), cfg);
    (dir, db, builder)
}

#[test]
fn an_idle_store_copies_a_table_a_sixty_fourth_stale() {
    let (_dir, db, _builder) = ten_of_640_written_since(TICK * 2);
    let start = Instant::now();
    while db.state_tables().in_force() != Some((640, 0)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no copy once idle: {:?}",
            db.state_tables().in_force()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        db.state_tables().lookup(&key(3)).expect("lookup"),
        Answer::Found(reduce(&state(3, 2))),
        "the copy holds the states written since the last"
    );
}

#[test]
fn below_an_eighth_a_store_that_is_not_idle_long_enough_keeps_its_table() {
    let (_dir, db, builder) = ten_of_640_written_since(Duration::from_secs(3600));
    std::thread::sleep(TICK * 5);
    drop(builder);
    assert_eq!(db.state_tables().in_force(), Some((640, 10)));
    assert_eq!(
        db.state_tables().lookup(&key(3)).expect("lookup"),
        Answer::AskLsm
    );
}

#[test]
fn lookups_racing_a_build_and_its_regrowth_never_call_a_held_key_absent() {
    // A table over a chain of two filters (too short to regrow), then as many keys again:
    // written since the table's copy (marked), and a chain long enough for the next build to
    // regrow while the lookups run.
    let held = 10_000;
    let (dir, db, presence) = with_presence(0..held);
    assert!(!presence.regrowth_due());
    assert!(build(&db, dir.path(), 1));
    put_in_batches(&db, held..2 * held);
    assert!(presence.regrowth_due());
    let keys: Vec<Vec<u8>> = (0..2 * held).map(key).collect();
    let building = AtomicBool::new(true);
    let mut rounds = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            for number in 2..=4 {
                assert!(build(&db, dir.path(), number));
            }
            building.store(false, Ordering::Release);
        });
        while building.load(Ordering::Acquire) || rounds == 0 {
            rounds += 1;
            for group in keys.chunks(64) {
                let may = presence.may_hold_each(group);
                let refs: Vec<&[u8]> = group.iter().map(Vec::as_slice).collect();
                let answers = db.state_tables().lookup_many(&refs).expect("lookup");
                for ((k, may), answer) in group.iter().zip(may).zip(answers) {
                    assert!(may, "presence: {k:?} held, said absent (round {rounds})");
                    assert!(
                        !matches!(answer, Answer::Absent),
                        "table: {k:?} held, said absent (round {rounds})"
                    );
                }
            }
        }
    });
    assert!(rounds > 1, "the lookups did not overlap the builds");
    assert_eq!(presence.filter_count(), 1, "regrown while the lookups ran");
}
