//! One sled write at a time in the whole process.
//!
//! sled 0.34 guards all its trees with one lock per process: `apply_batch` takes it exclusively;
//! reads, the background flusher and `flush` take it shared, and `flush` keeps it while it waits
//! for the log to reach disk, which can take another flusher's turn. With two stores in one
//! process (the multi-node tests, the benches), a batch of one store queued behind the flush of
//! another, every later reader queued behind the batch, and the flush waited forever for a
//! flusher among those readers: every node of the process hung (seen under load, diagnosed with
//! gdb). Serializing what takes or waits under that lock (batches with their flush, opening and
//! closing a store) removes the cycle; a node is one store per process, where applies were
//! serialized already, so it costs nothing there.

use std::sync::{Mutex, MutexGuard};

static SLED_WRITES: Mutex<()> = Mutex::new(());

/// Held while applying a batch and flushing it, or opening or closing a store.
pub(crate) fn exclusive() -> MutexGuard<'static, ()> {
    // The mutex guards no data: a panic while it was held leaves nothing to repair.
    SLED_WRITES.lock().unwrap_or_else(|p| p.into_inner())
}
