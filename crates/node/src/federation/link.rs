//! One peer link, the same on both ends: hello, then each side streams what the other lacks in
//! (origin, seq) order, acknowledges what it made durable, and stays live.
//!
//! The sender half wakes on every local change (an own entry, or one received on any link) and
//! sends, per origin, the range between what the peer holds and what this node holds. So one
//! mechanism gives both catch-up after an outage and live forwarding; and since receivers dedupe
//! by (origin, seq), cyclic topologies deliver each entry once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::{Stream, StreamExt};
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

use super::asked::{serve_asked, Asked};
use crate::route::{for_link, LinkReach};
use crate::state::{header_of, Checked, NodeState, VERIFY_AHEAD};
use crate::wants::EntryKey;

/// How a link ended badly. Each maps to the gRPC status the other side is told.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("peer sent no hello within {0:?}")]
    NoHello(std::time::Duration),
    #[error("first frame must be a hello")]
    HelloExpected,
    #[error("hello says {claimed} but the certificate says {certified}")]
    HelloMismatch { claimed: String, certified: OrgId },
    #[error("peer sent a second hello")]
    SecondHello,
    #[error("peer sent {count} entries in one batch, more than the {max} allowed")]
    BatchTooLarge { count: usize, max: usize },
    #[error("peer sent an entry that fails verification: {0}")]
    Forged(intelmesh_core::VerifyError),
    #[error("nothing heard from the peer for {0:?}")]
    Dead(std::time::Duration),
    #[error("peer did not take queued frames for {0:?}")]
    Stalled(std::time::Duration),
    #[error("peer closed the stream")]
    Closed,
    #[error("stream error: {0}")]
    Stream(Status),
    #[error("local failure: {0}")]
    Local(String),
}

impl LinkError {
    pub fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            LinkError::HelloMismatch { .. } => Status::permission_denied(msg),
            LinkError::BatchTooLarge { .. } => Status::resource_exhausted(msg),
            LinkError::Forged(_) | LinkError::HelloExpected | LinkError::SecondHello => {
                Status::invalid_argument(msg)
            }
            LinkError::NoHello(_) | LinkError::Dead(_) | LinkError::Stalled(_) => {
                Status::deadline_exceeded(msg)
            }
            LinkError::Stream(s) => s.clone(),
            LinkError::Closed => Status::cancelled(msg),
            LinkError::Local(_) => Status::internal(msg),
        }
    }
}

pub type Outbound = mpsc::Sender<Result<pb::SyncFrame, Status>>;

fn to_wire(v: &intelmesh_store::VersionVector) -> pb::VersionVector {
    pb::VersionVector {
        heads: v.iter().map(|(o, s)| (o.to_string(), *s)).collect(),
    }
}

fn frame(f: pb::sync_frame::Frame) -> Result<pb::SyncFrame, Status> {
    Ok(pb::SyncFrame { frame: Some(f) })
}

/// Runs a link until it fails or the peer leaves. `peer` is the org its certificate names.
pub async fn run_link<S>(
    state: Arc<NodeState>,
    peer: OrgId,
    relay: bool,
    mut inbound: S,
    out: Outbound,
) -> Result<(), LinkError>
where
    S: Stream<Item = Result<pb::SyncFrame, Status>> + Unpin + Send,
{
    let limits = state.cfg.limits.clone();
    let local = |e: &dyn std::fmt::Display| LinkError::Local(e.to_string());
    let hello = pb::Hello {
        org_id: state.org.to_string(),
        roster_version: state.cfg.roster_version,
        vector: Some(to_wire(&state.vector().map_err(|e| local(&e))?)),
        reaches: reaches(&state),
    };
    send(&out, frame(pb::sync_frame::Frame::Hello(hello)), &limits).await?;

    let first = tokio::time::timeout(limits.dead_after(), inbound.next())
        .await
        .map_err(|_| LinkError::NoHello(limits.dead_after()))?;
    let hello_bytes = match &first {
        Some(Ok(f)) => f.encoded_len() as u64,
        _ => 0,
    };
    let peer_hello = match first {
        Some(Ok(pb::SyncFrame {
            frame: Some(pb::sync_frame::Frame::Hello(h)),
        })) => h,
        Some(Ok(_)) => return Err(LinkError::HelloExpected),
        Some(Err(s)) => return Err(LinkError::Stream(s)),
        None => return Err(LinkError::Closed),
    };
    if peer_hello.org_id != peer.as_str() {
        return Err(LinkError::HelloMismatch {
            claimed: peer_hello.org_id.chars().take(80).collect(),
            certified: peer,
        });
    }
    let peer_vector: BTreeMap<String, u64> = peer_hello
        .vector
        .map(|v| v.heads.into_iter().collect())
        .unwrap_or_default();
    state.peers.update(&peer, |p| {
        p.vector = peer_vector.clone();
        p.bytes_received += hello_bytes;
    });
    let known = Arc::new(Mutex::new(peer_vector));
    tracing::info!(%peer, "link up");

    let link = LinkReach {
        peer: peer.clone(),
        relay,
    };
    let asked = Arc::new(Asked::default());
    let mut sender = AbortOnDrop(tokio::spawn(send_loop(
        Arc::clone(&state),
        link,
        Arc::clone(&known),
        Arc::clone(&asked),
        out.clone(),
    )));
    tokio::select! {
        r = receive_loop(&state, &peer, &mut inbound, &out, &known, &asked) => r,
        r = &mut sender.0 => match r {
            Ok(r) => r,
            Err(e) => Err(LinkError::Local(e.to_string())),
        },
        _ = state.stopped() => Err(LinkError::Local("node is shutting down".into())),
    }
}

/// Ends the sender half whenever the link ends, however it ends (even if the link's own
/// future is dropped mid-way).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The orgs this node relays to: itself, and all its peers if it is a hub.
fn reaches(state: &NodeState) -> Vec<String> {
    let mut r = vec![state.org.to_string()];
    if state.cfg.role == crate::config::Role::Hub {
        r.extend(state.cfg.peer.iter().map(|p| p.org.clone()));
    }
    r
}

async fn send(
    out: &Outbound,
    item: Result<pb::SyncFrame, Status>,
    limits: &crate::config::Limits,
) -> Result<(), LinkError> {
    match tokio::time::timeout(limits.stall_after(), out.send(item)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(LinkError::Closed),
        Err(_) => Err(LinkError::Stalled(limits.stall_after())),
    }
}

/// A frame from the peer, with an entry batch already verified.
enum Received {
    Hello,
    Heartbeat,
    Progress(pb::Progress),
    Batch(Checked),
    Want(pb::Want),
}

/// Reads one frame: its encoded size, and what it holds, verifying entry batches (the batch
/// cap is checked first, so an oversized batch costs no verification).
async fn prepare(
    state: Arc<NodeState>,
    max_batch: usize,
    item: Result<pb::SyncFrame, Status>,
) -> Result<Option<(Received, u64)>, LinkError> {
    let Some(f) = item.map_err(LinkError::Stream)?.frame else {
        return Ok(None);
    };
    // The oneof's size is the frame's encoded size (a SyncFrame holds nothing else).
    let bytes = f.encoded_len() as u64;
    let received = match f {
        pb::sync_frame::Frame::Hello(_) => Received::Hello,
        pb::sync_frame::Frame::Heartbeat(_) => Received::Heartbeat,
        pb::sync_frame::Frame::Progress(p) => Received::Progress(p),
        pb::sync_frame::Frame::Want(w) => Received::Want(w),
        pb::sync_frame::Frame::Evidence(_) => Received::Heartbeat,
        pb::sync_frame::Frame::Entries(batch) => {
            let count = batch.entries.len();
            if count > max_batch {
                return Err(LinkError::BatchTooLarge {
                    count,
                    max: max_batch,
                });
            }
            let checked = state
                .verify_received(batch.entries)
                .await
                .map_err(|e| LinkError::Local(e.to_string()))?;
            Received::Batch(checked)
        }
    };
    Ok(Some((received, bytes)))
}

async fn receive_loop<S>(
    state: &Arc<NodeState>,
    peer: &OrgId,
    inbound: &mut S,
    out: &Outbound,
    known: &Mutex<BTreeMap<String, u64>>,
    asked: &Asked,
) -> Result<(), LinkError>
where
    S: Stream<Item = Result<pb::SyncFrame, Status>> + Unpin + Send,
{
    let limits = state.cfg.limits.clone();
    let mut frames = inbound
        .map(|item| prepare(Arc::clone(state), limits.max_batch_entries, item))
        .buffered(VERIFY_AHEAD);
    loop {
        let next = tokio::time::timeout(limits.dead_after(), frames.next())
            .await
            .map_err(|_| LinkError::Dead(limits.dead_after()))?;
        let (received, bytes) = match next {
            None => return Ok(()),
            Some(r) => match r? {
                None => continue,
                Some(x) => x,
            },
        };
        state.peers.update(peer, |p| {
            p.last_heard_unix_ms = intelmesh_core::now_unix_ms();
            p.bytes_received += bytes;
        });
        match received {
            Received::Hello => return Err(LinkError::SecondHello),
            Received::Heartbeat => {}
            Received::Want(w) => asked.add(w),
            Received::Progress(p) => {
                let v: BTreeMap<String, u64> = p
                    .vector
                    .map(|v| v.heads.into_iter().collect())
                    .unwrap_or_default();
                raise(&mut lock(known), &v);
                state.peers.update(peer, |s| s.vector = v);
            }
            Received::Batch(checked) => {
                // The peer holds what it just sent: never echo it back, even before its next
                // progress frame says so.
                let sent: BTreeMap<String, u64> =
                    checked.good.iter().fold(BTreeMap::new(), |mut m, e| {
                        let h = e.header();
                        let seq = m.entry(h.origin.to_string()).or_insert(0);
                        *seq = (*seq).max(h.seq);
                        m
                    });
                raise(&mut lock(known), &sent);
                let report = state
                    .apply_checked(checked)
                    .await
                    .map_err(|e| LinkError::Local(e.to_string()))?;
                state
                    .peers
                    .update(peer, |s| s.entries_received += report.appended as u64);
                for e in &report.chain_rejected {
                    // A fork or chain break is the origin's doing, not necessarily this
                    // peer's: keep the link, the fork proof is stored.
                    tracing::warn!(%peer, error = %e, "entry refused by chain rules");
                }
                if let Some(e) = report.refused.into_iter().next() {
                    return Err(LinkError::Forged(e));
                }
                let vector = state
                    .vector()
                    .map_err(|e| LinkError::Local(e.to_string()))?;
                let progress = pb::Progress {
                    vector: Some(to_wire(&vector)),
                };
                send(
                    out,
                    frame(pb::sync_frame::Frame::Progress(progress)),
                    &limits,
                )
                .await?;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Raises each origin in `known` to at least its value in `v`.
fn raise(known: &mut BTreeMap<String, u64>, v: &BTreeMap<String, u64>) {
    for (o, s) in v {
        let e = known.entry(o.clone()).or_insert(0);
        *e = (*e).max(*s);
    }
}

/// Sends what the peer lacks, then waits for local changes; heartbeats while idle.
async fn send_loop(
    state: Arc<NodeState>,
    link: LinkReach,
    known: Arc<Mutex<BTreeMap<String, u64>>>,
    asked: Arc<Asked>,
    out: Outbound,
) -> Result<(), LinkError> {
    let limits = state.cfg.limits.clone();
    let max = limits.max_batch_entries;
    let mut changes = state.subscribe();
    let mut last_sent = Instant::now();
    let mut announced = intelmesh_store::VersionVector::new();
    // What this node asked the peer for on this link; a new link asks again.
    let mut wanted: BTreeSet<EntryKey> = BTreeSet::new();
    loop {
        changes.borrow_and_update();
        loop {
            let mut batch = next_batch(&state, &link, &known, max)?;
            if batch.len() < max {
                batch.extend(serve_asked(&state, &link, &asked, max - batch.len())?);
            }
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let entries = pb::EntryBatch { entries: batch };
            send(
                &out,
                frame(pb::sync_frame::Frame::Entries(entries)),
                &limits,
            )
            .await?;
            state.peers.update(&link.peer, |s| s.entries_sent += n);
            last_sent = Instant::now();
        }
        let owed = state.wants.snapshot();
        wanted.retain(|k| owed.contains(k));
        let ask: Vec<EntryKey> = owed.difference(&wanted).take(max).cloned().collect();
        if !ask.is_empty() {
            wanted.extend(ask.iter().cloned());
            let want = pb::Want {
                entries: ask
                    .into_iter()
                    .map(|(origin, seq)| pb::EntryRef {
                        origin: origin.to_string(),
                        seq,
                    })
                    .collect(),
            };
            send(&out, frame(pb::sync_frame::Frame::Want(want)), &limits).await?;
            last_sent = Instant::now();
        }
        // Tell the peer what this node now holds, so it does not send it what arrived by
        // another path.
        let vector = state
            .vector()
            .map_err(|e| LinkError::Local(e.to_string()))?;
        if vector != announced {
            let progress = pb::Progress {
                vector: Some(to_wire(&vector)),
            };
            send(
                &out,
                frame(pb::sync_frame::Frame::Progress(progress)),
                &limits,
            )
            .await?;
            announced = vector;
            last_sent = Instant::now();
        }
        let wait = limits.heartbeat().saturating_sub(last_sent.elapsed());
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return Err(LinkError::Local("node is shutting down".into()));
                }
            }
            () = asked.added.notified() => {}
            _ = tokio::time::sleep(wait) => {
                let hb = pb::Heartbeat { sent_at_unix_ms: intelmesh_core::now_unix_ms() };
                send(&out, frame(pb::sync_frame::Frame::Heartbeat(hb)), &limits).await?;
                last_sent = Instant::now();
            }
        }
    }
}

/// Up to `max` entries the peer lacks, origin by origin in seq order, routed for the link.
/// Marks them as known to the peer (it will have them, or the link breaks and the next hello
/// tells the truth).
fn next_batch(
    state: &NodeState,
    link: &LinkReach,
    known: &Mutex<BTreeMap<String, u64>>,
    max: usize,
) -> Result<Vec<pb::SignedEntry>, LinkError> {
    let local = state
        .vector()
        .map_err(|e| LinkError::Local(e.to_string()))?;
    let mut known = lock(known);
    let mut batch = Vec::new();
    for (origin, head) in &local {
        let have = known.get(origin.as_str()).copied().unwrap_or(0);
        if have >= *head || batch.len() >= max {
            continue;
        }
        let take = (max - batch.len()).min((*head - have) as usize);
        let entries = state
            .store
            .range(origin, have + 1, take)
            .map_err(|e| LinkError::Local(e.to_string()))?;
        let mut last = have;
        for e in entries {
            let Some(h) = header_of(&e) else {
                return Err(LinkError::Local(format!(
                    "stored entry of {origin} does not decode"
                )));
            };
            last = h.seq;
            batch.push(for_link(e, &h, link));
        }
        known.insert(origin.to_string(), last);
    }
    Ok(batch)
}
