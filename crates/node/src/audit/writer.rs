//! The audit trail's one writer task: takes queued calls in batches, digests their values and
//! writes them on a blocking thread, syncs at least every second, and records a gap when
//! calls could not be written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use intelmesh_audit::{AuditKey, Call, Caller};
use tokio::sync::mpsc;

use super::trail::{Trail, TrailError};
use super::{Msg, Pending, Value, BATCH, SYNC_EVERY};

/// What the writer needs beside the trail: where to open it again after its task failed, and
/// the flag that says its writes fail.
pub(super) struct Writer {
    pub(super) failing: Arc<std::sync::atomic::AtomicBool>,
    pub(super) unqueued: Arc<std::sync::atomic::AtomicU64>,
    pub(super) dir: PathBuf,
    pub(super) max: u64,
    /// The key the trail was opened with, which calls digest under too: a trail opened again
    /// with another key (its file replaced under the running node) is not written to.
    pub(super) key: Arc<AuditKey>,
}

/// The record that says how many calls before it could not be written: the chain runs on
/// over the gap, so without it the loss would not show.
fn gap(lost: u64) -> Pending {
    Pending {
        time_ms: intelmesh_core::now_unix_ms(),
        caller: Caller::default(),
        method: "audit/unrecorded".into(),
        values: Vec::new(),
        code: tonic::Code::DataLoss as u32,
        result: format!(
            "{lost} calls before this record were not recorded: the trail could not be written"
        ),
    }
}

/// Takes queued calls in batches: digests and writes each batch on a blocking thread, and
/// syncs within [`SYNC_EVERY`] of the first unsynced write, and before closing.
pub(super) async fn write_loop(trail: Trail, mut rx: mpsc::Receiver<Msg>, writer: Writer) {
    let mut trail = Some(trail);
    // Calls not recorded since the last write that succeeded.
    let mut lost: u64 = 0;
    // When opening the trail again last failed: tried again at most every 10 s (each try
    // reads its last file through).
    let mut reopen_failed: Option<tokio::time::Instant> = None;
    let mut queued = Vec::with_capacity(BATCH);
    let mut sync_at: Option<tokio::time::Instant> = None;
    loop {
        let wake = sync_at.unwrap_or_else(|| tokio::time::Instant::now() + SYNC_EVERY);
        let n = tokio::select! {
            n = rx.recv_many(&mut queued, BATCH) => n,
            _ = tokio::time::sleep_until(wake), if sync_at.is_some() => {
                sync_at = None;
                // What a failed sync wrote may be lost: changes are refused from now on (the
                // trail takes nothing more), not from the next batch on.
                if !on_trail(&mut trail, |t| t.sync()).await {
                    (writer.failing).store(true, std::sync::atomic::Ordering::Release);
                }
                continue;
            }
        };
        let mut closing = None;
        let (mut changes, mut calls) = (Vec::new(), Vec::with_capacity(n));
        let mut waiting = Vec::new();
        for msg in queued.drain(..) {
            match msg {
                Msg::Call(p, Some(done)) => {
                    changes.push(p);
                    waiting.push(done);
                }
                Msg::Call(p, None) => calls.push(p),
                Msg::Close(done) => closing = Some(done),
            }
        }
        // Calls whose answers wait go first, and are told before the rest of the batch (a
        // lookup's thousands of digests) is written.
        for mut batch in [changes, calls] {
            if batch.is_empty() {
                continue;
            }
            let retry = reopen_failed.is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
            if trail.is_none() && retry {
                // Its task failed (a panic): opened again from its files, as at start.
                let (dir, max) = (writer.dir.clone(), writer.max);
                trail = tokio::task::spawn_blocking(move || Trail::open(&dir, max))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .filter(|t| {
                        let same = t.key().same_as(&writer.key);
                        if !same {
                            tracing::error!("audit trail not opened again: its key file changed under the running node, so the digests calls made would not match it; restart the node");
                        }
                        same
                    });
                reopen_failed = trail.is_none().then(tokio::time::Instant::now);
            }
            let count = batch.len() as u64;
            lost += (writer.unqueued).swap(0, std::sync::atomic::Ordering::AcqRel);
            if lost > 0 {
                batch.insert(0, gap(lost));
            }
            let written = on_trail(&mut trail, move |t| {
                let sealed: Vec<Call> = batch.into_iter().map(|p| digested(t, p)).collect();
                t.append(&sealed)
            })
            .await;
            lost = if written { 0 } else { lost + count };
            (writer.failing).store(!written, std::sync::atomic::Ordering::Release);
            sync_at.get_or_insert_with(|| tokio::time::Instant::now() + SYNC_EVERY);
            // Written, or its failure logged: either way the callers go on.
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
        }
        if n == 0 || closing.is_some() {
            on_trail(&mut trail, |t| t.sync()).await;
            if let Some(done) = closing {
                let _ = done.send(());
            }
            return;
        }
    }
}

fn digested(t: &Trail, p: Pending) -> Call {
    Call {
        time_ms: p.time_ms,
        caller: p.caller,
        method: p.method,
        values: p.values.len() as u64,
        digests: p
            .values
            .into_iter()
            .map(|v| match v {
                Value::Raw(ty, raw) => t.key().raw_digest(ty, &raw),
                Value::Canonical(c) => t.key().value_digest(&c),
                Value::Digested(d) => d,
            })
            .collect(),
        code: p.code,
        result: p.result,
    }
}

/// Runs `f` on the trail on a blocking thread; a failure is logged at ERROR (the records it
/// concerned are lost, loudly), and the trail is kept for the next batch.
async fn on_trail(
    slot: &mut Option<Trail>,
    f: impl FnOnce(&mut Trail) -> Result<(), TrailError> + Send + 'static,
) -> bool {
    let Some(mut trail) = slot.take() else {
        return false;
    };
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut trail);
        (trail, r)
    })
    .await
    {
        Ok((trail, r)) => {
            *slot = Some(trail);
            match r {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "audit trail write failed: records of API calls are lost (counted in the next record written); changes are refused until a write succeeds");
                    false
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "audit trail writer failed: the trail is opened again for the next calls");
            false
        }
    }
}
