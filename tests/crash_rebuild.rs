//! A rebuild of the on-disk index (after a compromise cut) killed at random moments: the next open finishes it, and the index equals the one
//! the store held before, states, postings and counters (checked by `verify_store`).
//!
//! Reproduce a run with `INTELMESH_CRASH_SEED=<seed printed below>`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use intelmesh_store::{verify_store, DiskStore, IndexSource, Store, StoreConfig};
use intelmesh_tests::store::strip_index;
use intelmesh_tests::{chain, registry, seeded_signer, verified, ORIGINS};
use rand::{Rng, SeedableRng};

const CYCLES: u64 = 6;
const ENTRIES_PER_ORIGIN: u64 = 2000;

#[test]
fn a_killed_rebuild_is_finished_by_the_next_open() {
    let seed: u64 = std::env::var("INTELMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("crash-rebuild seed: {seed} (set INTELMESH_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let signers: Vec<_> = ORIGINS.iter().map(|o| seeded_signer(seed, o)).collect();
    let keys = registry(&signers.iter().collect::<Vec<_>>());
    let digest = {
        let store = DiskStore::open(StoreConfig::new(dir.path())).expect("open");
        for s in &signers {
            let (entries, _) = chain(s, None, ENTRIES_PER_ORIGIN, 20);
            for part in entries.chunks(1000) {
                store.apply(verified(&keys, part.to_vec())).expect("apply");
            }
        }
        store.state_digest().expect("digest")
    };
    // How long one whole rebuild takes here, so the kills land inside it.
    strip_index(dir.path(), true);
    let t = Instant::now();
    drop(DiskStore::open(StoreConfig::new(dir.path())).expect("open"));
    let rebuild_ms = (t.elapsed().as_millis() as u64).max(20);
    println!(
        "one rebuild of {} indicators: {rebuild_ms} ms",
        3 * ENTRIES_PER_ORIGIN
    );

    let mut cut_short = 0;
    for cycle in 0..CYCLES {
        strip_index(dir.path(), true);
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .args(["--open", dir.path().to_str().expect("utf-8 temp path")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash-writer");
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..rebuild_ms)));
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap child");
        let mut said = String::new();
        BufReader::new(stdout).read_line(&mut said).ok();
        let store = DiskStore::open(StoreConfig::new(dir.path()))
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): reopen failed: {e}"));
        // A child that said OPEN had finished the rebuild. One that did not may have been
        // killed inside it (this open finishes it) or just after it became durable, before
        // the child could say so (this open finds the index whole).
        if said.trim() == "OPEN" {
            assert_eq!(
                store.index_source(),
                IndexSource::OnDisk,
                "cycle {cycle} (seed {seed}): the child's rebuild was complete"
            );
        } else if store.index_source() == IndexSource::Rebuilt {
            cut_short += 1;
        }
        assert_eq!(
            store.state_digest().expect("digest"),
            digest,
            "cycle {cycle} (seed {seed}): the index differs from before"
        );
        assert_eq!(store.indicator_count(), 3 * ENTRIES_PER_ORIGIN as usize);
        let check = verify_store(&store, Some(&keys)).expect("verify-store runs");
        assert!(
            check.is_ok(),
            "cycle {cycle} (seed {seed}): {:?}",
            check.problems
        );
    }
    println!("crash-rebuild: {CYCLES} kills, {cut_short} cut a rebuild short");
    assert!(cut_short > 0, "no kill landed inside a rebuild");
}
