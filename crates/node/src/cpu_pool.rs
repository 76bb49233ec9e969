//! The process's pool for parallel CPU work (checking signatures, sealing, TAXII's signing),
//! built with named threads.
//!
//! Why: built lazily by its first user, the pool's threads inherited that thread's name
//! (`tokio-rt-worker`), so profiles and `top -H` could not tell signature checks from the
//! runtime's and the store's threads. They are `cpu-N`.
//!
//! Not done, measured: running them below the store's writer (niceness 10). The writer, the
//! serial bottleneck of ingest, was preempted for 54% of its time in the store at 10M (perf
//! sched_switch, `bench scale`), mostly by these threads; at the lower priority ingest at 10M
//! did not gain (the engine's merges took the cores instead) and `bench federation` converged
//! no faster, while a node busy answering lookups would have starved its signature checks.

/// Builds the global pool (once per process: later calls, as from a second node in one
/// test process, find it built and leave it).
pub fn start() {
    if builder().build_global().is_ok() {
        tracing::debug!("parallel CPU pool started");
    }
}

fn builder() -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new().thread_name(|i| format!("cpu-{i}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_threads_are_named() {
        // A pool of its own: the global one may have been started by another test first.
        let pool = super::builder().num_threads(2).build().expect("pool built");
        let mut names: Vec<String> = pool.broadcast(|_| {
            std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string()
        });
        names.sort();
        assert_eq!(names, ["cpu-0", "cpu-1"]);
    }
}
