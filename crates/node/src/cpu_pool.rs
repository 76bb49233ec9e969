//! The process's pool for parallel CPU work (checking signatures, sealing, TAXII's signing),
//! named and run at a lower scheduling priority than the store's one writer.
//!
//! Why: every entry a node takes in is applied by one store write at a time, while its
//! signatures are checked frames ahead on every core. With both at the same priority the
//! writer lost its core to the checkers: ingesting into a 10M-indicator store, the writer was
//! off its core, preempted, for 54% of the time it held the store (6.8 ms per preemption,
//! `perf record -e sched:sched_switch` in `bench scale`), mostly by the pool's threads, which
//! had inherited the name of the first blocking thread that used them. A checker at a lower
//! priority still gets every core the writer leaves (its waits on fsync, the gaps between
//! batches). Measured: ingest into an empty store and a 190-member federation gained (`bench
//! scale` at empty 46–55k to 50–57k entries/s; `bench federation` converged in 2.7 s against
//! 2.9–3.9 s); ingest at 10M did not, its cores being taken by the engine's merges.

/// The niceness of the pool's threads: the kernel gives a thread at 0 about nine times the
/// share of one at 10 when both are runnable. An unprivileged process may always lower its
/// own threads' priority.
const NICENESS: libc::c_int = 10;

/// Builds the global pool (once per process: later calls, as from a second node in one
/// test process, find it built and leave it).
pub fn start() {
    let built = builder().build_global();
    if built.is_ok() {
        tracing::debug!(niceness = NICENESS, "parallel CPU pool started");
    }
}

fn builder() -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("cpu-{i}"))
        .start_handler(|_| lower_own_priority())
}

/// Lowers the calling thread's priority (on Linux niceness is per thread).
fn lower_own_priority() {
    // SAFETY: gettid and setpriority only read their arguments; a failure is reported by the
    // return value and leaves the thread as it was.
    let failed = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS) != 0
    };
    if failed {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "a CPU pool thread keeps its priority"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_threads_run_at_the_lower_priority() {
        // A pool of its own: the global one may have been started by another test first.
        let pool = super::builder().num_threads(2).build().expect("pool built");
        let niceness: Vec<libc::c_int> = pool.broadcast(|_| {
            // SAFETY: reads the calling thread's niceness.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        });
        assert_eq!(niceness.len(), 2);
        assert!(
            niceness.iter().all(|n| *n == super::NICENESS),
            "niceness of the pool's threads: {niceness:?}"
        );
    }
}
