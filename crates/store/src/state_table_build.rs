//! The lookup table's builder: a background thread that copies the index into a new table
//! (`state_table`) when one is due, timed so that a bulk load is seldom slowed by a copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::background::Background;
use crate::kv::Kv;
use crate::state_table::{index_count, remove_stale};

/// When the background builder copies the index.
#[derive(Clone, Debug)]
pub struct StateTableConfig {
    /// No table for an index smaller than this: the block cache holds it.
    pub min_indicators: u64,
    /// A table is copied again once this many of its keys, or an eighth of them if more,
    /// were written since its copy began.
    pub min_stale: usize,
    /// A due build waits for this long without index writes, so it does not slow a bulk
    /// load ...
    pub quiet: Duration,
    /// ... or for this long, whichever comes first.
    pub max_wait: Duration,
    /// A store without index writes for this long copies a table once `min_stale` keys, or a
    /// sixty-fourth of them if more, were written since its copy, not an eighth: lookups of
    /// those keys read the LSM at many times the cost of a table read (14% of the lookups'
    /// CPU at 10M with 5% of the keys written since, `bench scale`), and the writes have
    /// stopped. A sixty-fourth bounds how often a store that writes in bursts copies.
    pub idle_refresh: Duration,
}

impl Default for StateTableConfig {
    fn default() -> StateTableConfig {
        StateTableConfig {
            min_indicators: 100_000,
            min_stale: 10_000,
            quiet: Duration::from_millis(500),
            max_wait: Duration::from_secs(300),
            idle_refresh: Duration::from_secs(5),
        }
    }
}

/// How often the builder looks whether a build is due.
pub(crate) const TICK: Duration = Duration::from_millis(200);

/// How long an index found too small for a table without writes since is not counted again.
const RECOUNT: Duration = Duration::from_secs(10);

/// Starts the thread building `db`'s state table in `dir` whenever `cfg` says one is due;
/// stopped and joined when dropped.
pub(crate) fn keep_built(db: Kv, dir: PathBuf, cfg: StateTableConfig) -> Background {
    Background::spawn(
        "state-table",
        "state table builder not started; lookups read the index",
        move |stopping| run_builder(&db, &dir, &cfg, stopping),
    )
}

fn run_builder(db: &Kv, dir: &Path, cfg: &StateTableConfig, stop: &AtomicBool) {
    // Here rather than in the open: removing a 700 MB file takes a third of a second, which a
    // restart need not wait for. No table of this process exists yet.
    if let Err(e) = remove_stale(dir) {
        tracing::warn!(error = %e, "state table files of an earlier run not removed");
    }
    let tables = db.state_tables();
    let (mut seen_writes, mut last_write) = (tables.writes(), Instant::now());
    let mut due_since: Option<Instant> = None;
    // After a build given up for the writes during it, the next waits for quiet.
    let mut wait_for_quiet = false;
    let mut number = 0u64;
    // The writes count (and when) the index was last found too small for a table: it grows
    // with writes, so it is read again after one, or after `RECOUNT` for a path that wrote
    // without counting (a store per member of a federation, each reading the count five times
    // a second, adds up).
    let mut small_at: Option<(u64, Instant)> = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(TICK);
        let writes = tables.writes();
        if writes != seen_writes {
            (seen_writes, last_write) = (writes, Instant::now());
        }
        let idle = last_write.elapsed() >= cfg.idle_refresh;
        // A table half way to its limit of marks is copied without waiting for quiet: under a
        // long load it was otherwise dropped first (two million keys in 140 s at 14k entries/s,
        // against a wait of up to `max_wait`) and lookups read the LSM until the copy ended.
        let (due, urgent) = match tables.in_force() {
            Some((len, marks)) => (
                marks >= cfg.min_stale.max(len / 8)
                    || (idle && marks >= cfg.min_stale.max(len / 64)),
                marks >= tables.max_marks() / 2,
            ),
            None if small_at.is_some_and(|(w, at)| w == writes && at.elapsed() < RECOUNT) => {
                (false, false)
            }
            None => {
                let big = index_count(db).is_ok_and(|n| n >= cfg.min_indicators);
                small_at = (!big).then(|| (writes, Instant::now()));
                (big, false)
            }
        };
        if !due {
            due_since = None;
            continue;
        }
        let waited = due_since.get_or_insert_with(Instant::now).elapsed();
        let quiet = last_write.elapsed() >= cfg.quiet;
        if !quiet && (wait_for_quiet || (waited < cfg.max_wait && !urgent)) {
            continue;
        }
        number += 1;
        let started = Instant::now();
        match tables.build(db, dir, number, stop) {
            Ok(true) => {
                wait_for_quiet = false;
                tracing::info!(
                    indicators = tables.in_force().map_or(0, |(len, _)| len),
                    ms = started.elapsed().as_millis() as u64,
                    "state table built"
                );
            }
            Ok(false) => wait_for_quiet = true,
            Err(e) => {
                wait_for_quiet = true;
                tracing::warn!(error = %e, "state table not built; lookups read the index");
            }
        }
        due_since = None;
    }
}
