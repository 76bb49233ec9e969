//! A peer's frames as a link's receive loop takes them: each screened against the caps before
//! anything costly is done with it, entry batches verified, all read ahead of the loop by a
//! task of their own so that verification overlaps the apply of the batch before.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::link::{local, AbortOnDrop, LinkError, MAX_PROOFS_PER_FRAME};
use crate::config::MAX_BATCH_ENTRIES;
use crate::metrics::Refusal;
use crate::state::{Checked, NodeState, VERIFY_AHEAD};

/// A frame from the peer, with an entry batch already verified.
pub(super) enum Received {
    Hello,
    Heartbeat,
    Progress(pb::Progress),
    Batch(Checked),
    Want(pb::Want),
    Evidence(pb::ForkEvidence),
    Relays(Vec<OrgId>),
}

/// Reads one frame: its encoded size, and what it holds, verifying entry batches (the batch
/// cap is checked first, so an oversized batch costs no verification).
async fn prepare(
    state: Arc<NodeState>,
    max_batch: usize,
    item: Result<pb::SyncFrame, Status>,
) -> Result<Option<(Received, u64)>, LinkError> {
    let item = item.inspect_err(|status| {
        // tonic refuses a message over the cap before decoding it.
        if matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ) {
            state.metrics.refused(Refusal::Size, 1);
        }
    });
    let Some(f) = item.map_err(LinkError::Stream)?.frame else {
        return Ok(None);
    };
    // The oneof's size is the frame's encoded size (a SyncFrame holds nothing else).
    let bytes = f.encoded_len() as u64;
    let screened = screen(f, max_batch).inspect_err(|e| {
        if matches!(
            e,
            LinkError::BatchTooLarge { .. }
                | LinkError::TooManyProofs { .. }
                | LinkError::WantTooLarge { .. }
        ) {
            state.metrics.refused(Refusal::Size, 1);
        }
    })?;
    let received = match screened {
        Screened::Hello(_) => Received::Hello,
        Screened::Heartbeat => Received::Heartbeat,
        Screened::Progress(p) => Received::Progress(p),
        Screened::Want(w) => Received::Want(w),
        Screened::Evidence(e) => Received::Evidence(e),
        Screened::Relays(r) => Received::Relays(r),
        // No honest sender sends an empty batch: it earns no work and no acknowledgement
        // (each would otherwise cost a verify task and a progress frame, for two bytes).
        Screened::Entries(entries) if entries.is_empty() => Received::Heartbeat,
        Screened::Entries(entries) => {
            Received::Batch(state.verify_received(entries).await.map_err(local)?)
        }
    };
    Ok(Some((received, bytes)))
}

/// A received frame whose counts are within the caps, entry batches not verified yet.
#[derive(Debug)]
pub enum Screened {
    Hello(pb::Hello),
    Heartbeat,
    Progress(pb::Progress),
    Want(pb::Want),
    Evidence(pb::ForkEvidence),
    Entries(Vec<pb::SignedEntry>),
    Relays(Vec<OrgId>),
}

/// Checks a frame's counts against the caps before anything costly is done with it.
pub fn screen(f: pb::sync_frame::Frame, max_batch: usize) -> Result<Screened, LinkError> {
    Ok(match f {
        pb::sync_frame::Frame::Hello(h) => Screened::Hello(h),
        pb::sync_frame::Frame::Heartbeat(_) => Screened::Heartbeat,
        pb::sync_frame::Frame::Progress(p) => Screened::Progress(p),
        // An honest sender asks for at most its batch's worth at a time (`sender::next_want`),
        // and no node's batch is larger than this.
        pb::sync_frame::Frame::Want(w) if w.entries.len() > MAX_BATCH_ENTRIES => {
            return Err(LinkError::WantTooLarge {
                count: w.entries.len(),
                max: MAX_BATCH_ENTRIES,
            })
        }
        pb::sync_frame::Frame::Want(w) => Screened::Want(w),
        pb::sync_frame::Frame::Evidence(e) => {
            if e.proofs.len() > MAX_PROOFS_PER_FRAME {
                return Err(LinkError::TooManyProofs {
                    count: e.proofs.len(),
                    max: MAX_PROOFS_PER_FRAME,
                });
            }
            Screened::Evidence(e)
        }
        pb::sync_frame::Frame::Relays(r) => Screened::Relays(super::fan_out::relays_of(r)),
        pb::sync_frame::Frame::Entries(batch) => {
            let count = batch.entries.len();
            if count > max_batch {
                return Err(LinkError::BatchTooLarge {
                    count,
                    max: max_batch,
                });
            }
            Screened::Entries(batch.entries)
        }
    })
}

/// The peer's frames, read and prepared (entry batches verified) by a task of their own: up
/// to [`VERIFY_AHEAD`] being verified and as many verified, waiting for the receive loop,
/// which applies the batches waiting in one write. Reading in the receive loop itself
/// stalled the pipeline: while a batch was applied nothing read the stream, so the next
/// batches were neither decoded nor verified until the apply was done (the loop waited on
/// verification for half its time in `bench ingest`). The task ends with the link.
pub(super) fn read_ahead<S>(state: Arc<NodeState>, inbound: S) -> ReadAhead
where
    S: Stream<Item = Result<pb::SyncFrame, Status>> + Unpin + Send + 'static,
{
    let max_batch = state.cfg.limits.max_batch_entries;
    let (tx, rx) = mpsc::channel(VERIFY_AHEAD);
    let task = tokio::spawn(async move {
        let mut frames = inbound
            .map(|item| prepare(Arc::clone(&state), max_batch, item))
            .buffered(VERIFY_AHEAD);
        while let Some(prepared) = frames.next().await {
            let failed = prepared.is_err();
            if tx.send(prepared).await.is_err() || failed {
                return;
            }
        }
    });
    ReadAhead {
        prepared: rx,
        _task: AbortOnDrop(task),
    }
}

/// Prepared frames, and the task preparing them (stopped when this is dropped).
pub(super) struct ReadAhead {
    pub(super) prepared: mpsc::Receiver<Result<Option<(Received, u64)>, LinkError>>,
    _task: AbortOnDrop<()>,
}
