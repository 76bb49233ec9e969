//! One peer link, the same on both ends: hello, then each side streams what the other lacks in
//! (origin, seq) order, acknowledges what it made durable, passes on fork proofs, and stays
//! live. This module holds the hello and the receiving half; `sender` the sending half.
//!
//! The sender half wakes on every local change (an own entry, or one received on any link) and
//! sends, per origin, the range between what the peer holds and what this node holds. So one
//! mechanism gives both catch-up after an outage and live forwarding; and since receivers dedupe
//! by (origin, seq), cyclic topologies deliver each entry once.
//!
//! What ends a link is what proves the peer wrong: an entry or fork proof that fails
//! verification under a key this node knows, an oversized batch, a second hello, silence. An
//! entry signed with a key this node does not know yet proves nothing: it waits (see
//! `unverified`) and the link carries on, so one entry never cuts an origin off.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use intelmesh_core::chain::ChainError;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

use super::announce::{Announcer, Style, When};
use super::asked::Asked;
use super::heard::Heard;
use super::inbound::{read_ahead, Received};
pub use super::inbound::{screen, Screened};
pub use super::link_error::LinkError;
use super::peer_view::{read_vector, to_wire, PeerView, Reported};
use super::sender::send_loop;
use crate::admission::{refused_later, PeerCert};
use crate::log_gate::LineGate;
use crate::metrics::Refusal;
use crate::peer_table::update_or_default;
use crate::route::LinkReach;
use crate::state::{NodeState, VERIFY_AHEAD};

/// Most fork proofs taken from one Evidence frame (each costs two signature checks).
pub const MAX_PROOFS_PER_FRAME: usize = intelmesh_proto::shape::MAX_FRAME_PROOFS;

pub type Outbound = mpsc::Sender<Result<pb::SyncFrame, Status>>;

/// A link marked up in the peer table, marked down when it ends: by [`LinkUp::end`], or when
/// dropped without it (its task panicked, or was aborted: a dialer the roster ended). Left
/// marked up, the peer could never link again ("already up") until a restart. Only this link
/// is marked down, never a newer one of the same peer.
pub(super) struct LinkUp {
    state: Arc<NodeState>,
    peer: OrgId,
    link: u64,
    /// The peer is a hub: its link going up or down changes which agencies a hub sends to
    /// first (`fan_out`), so every sender looks again.
    relay: bool,
    ended: bool,
}

impl LinkUp {
    /// Takes `peer`'s one link, at `address` ([`LinkUp::established`] marks it up); `None`
    /// if a link with it is already up or being opened. `relay`: the peer is a hub.
    pub(super) fn open(
        state: &Arc<NodeState>,
        peer: &OrgId,
        address: String,
        relay: bool,
    ) -> Option<LinkUp> {
        let link = state.peers.connect(peer, address)?;
        Some(LinkUp {
            state: Arc::clone(state),
            peer: peer.clone(),
            link,
            relay,
            ended: false,
        })
    }

    /// The peer took the link: it shows as connected from now on.
    pub(super) fn established(&self) {
        (self.state.peers).established(&self.peer, self.link, self.relay);
        self.wake_senders();
    }

    /// The link ended, with `error` if it failed.
    pub(super) fn end(mut self, error: Option<String>) {
        self.ended = true;
        self.state.peers.disconnect(&self.peer, self.link, error);
        self.wake_senders();
    }

    fn wake_senders(&self) {
        if self.relay {
            self.state.bump();
        }
    }
}

impl Drop for LinkUp {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // A dialer stopped (the node stopping, its hub gone from the roster) is an ordinary
        // end, whose reason was recorded by whoever stopped it; a panic is not.
        let why = std::thread::panicking().then(|| {
            tracing::warn!(peer = %self.peer, "a link's task failed");
            "the link's task ended abnormally (see the log)".to_string()
        });
        self.state.peers.disconnect(&self.peer, self.link, why);
        self.wake_senders();
    }
}

/// Drops the frames still queued for a peer once its link ends shut out (a roster version
/// refuses it, or its certificate ended), or its task is dropped (a dialer ended by the roster
/// version that removed its hub): a peer reading slowly on purpose would otherwise collect the
/// whole queue after it. Only [`ShutOut::after`] an ordinary end lets the queue drain. A dialer
/// dropped for an ordinary reason (the node stopping, a hub's address changed) loses its queue
/// too, which costs nothing: the next link's hello says what each side lacks.
pub(super) struct ShutOut(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for ShutOut {
    fn drop(&mut self) {
        if let Some(cut) = self.0.take() {
            let _ = cut.send(());
        }
    }
}

impl ShutOut {
    /// The signal, and what the queue's stream is cut by (`take_until`); never resolves for a
    /// link that ends otherwise, whose queue drains to the end.
    pub(super) fn new() -> (ShutOut, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let cut = async move {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        (ShutOut(Some(tx)), cut)
    }

    /// Cuts the queue if `result` shut the peer out; otherwise lets it drain.
    pub(super) fn after<T>(mut self, result: &Result<T, LinkError>) {
        if !matches!(
            result,
            Err(LinkError::NotAdmitted(_) | LinkError::CertificateEnded(_))
        ) {
            // Dropped unsent: the cut never resolves.
            drop(self.0.take());
        }
    }
}

pub(super) fn local(e: impl std::fmt::Display) -> LinkError {
    LinkError::Local(e.to_string())
}

pub(super) fn frame(f: pb::sync_frame::Frame) -> Result<pb::SyncFrame, Status> {
    Ok(pb::SyncFrame { frame: Some(f) })
}

/// This node's heads as a vector frame body.
pub(super) fn own_vector(state: &NodeState) -> Result<pb::VersionVector, LinkError> {
    Ok(to_wire(state.store.heads().map_err(local)?.as_ref()))
}

/// Runs a link until it fails or the peer leaves (or, in roster mode, until a roster version
/// no longer admits it, or its certificate ends). `peer` is the org its certificate names,
/// `cert` what that certificate says.
pub async fn run_link<S>(
    state: Arc<NodeState>,
    peer: OrgId,
    relay: bool,
    cert: PeerCert,
    mut inbound: S,
    out: Outbound,
) -> Result<(), LinkError>
where
    S: Stream<Item = Result<pb::SyncFrame, Status>> + Unpin + Send + 'static,
{
    let limits = state.cfg.limits.clone();
    // Before the hello: a request to resend made after the hello's vector was read must end
    // this link too.
    let mut resends = state.unverified.resends();
    resends.borrow_and_update();
    let roster = state.roster();
    let hello = pb::Hello {
        org_id: state.org.to_string(),
        roster_version: roster
            .as_ref()
            .map_or(state.cfg.roster_version, |r| r.version()),
        vector: Some(own_vector(&state)?),
        reaches: reaches(&state),
        roster_hash: roster.map(|r| r.hash().to_vec()).unwrap_or_default(),
        progress_changes: true,
        progress_omits_sent: true,
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
            // Quoted and escaped: it is the peer's text, shown in status and logs.
            claimed: format!(
                "{:?}",
                peer_hello.org_id.chars().take(80).collect::<String>()
            ),
            certified: peer,
        });
    }
    let style = Style::of(&peer_hello);
    let view = Arc::new(PeerView::default());
    let reported = read_vector(peer_hello.vector, &state.keys());
    take_in_vector(&state, &peer, &view, &reported, Whole::Hello, hello_bytes);
    state.peers.update(&peer, |p| {
        p.roster_version = peer_hello.roster_version;
        p.roster_hash = peer_hello.roster_hash.into_iter().take(32).collect();
    });
    tracing::info!(%peer, "link up");

    let link = LinkReach {
        peer: peer.clone(),
        relay,
    };
    let asked = Arc::new(Asked::default());
    let announcer = Arc::new(Announcer::new(style));
    let mut sender = AbortOnDrop(tokio::spawn(send_loop(
        Arc::clone(&state),
        link,
        Arc::clone(&view),
        Arc::clone(&asked),
        Arc::clone(&announcer),
        out.clone(),
    )));
    let inbound = Heard::new(inbound, Arc::clone(&state), peer.clone(), relay);
    tokio::select! {
        r = receive_loop(&state, &peer, inbound, &out, &view, &asked, &announcer) => r,
        r = &mut sender.0 => match r {
            Ok(r) => r,
            Err(e) => Err(LinkError::Local(e.to_string())),
        },
        _ = state.stopped() => Err(LinkError::ShuttingDown),
        Ok(()) = resends.changed() => Err(LinkError::Resend),
        end = cert.ended() => Err(LinkError::CertificateEnded(crate::cert_facts::utc_text(end / 1000))),
        refusal = refused_later(&state, &peer, &cert) => {
            tracing::warn!(%peer, %refusal, "roster no longer admits the peer: link cut");
            Err(LinkError::NotAdmitted(refusal))
        }
    }
}

/// Takes in a vector the peer reported (hello or progress): what it holds, its head hashes (the
/// sender compares them with this node's), and the peer facts for status.
fn take_in_vector(
    state: &NodeState,
    peer: &OrgId,
    view: &PeerView,
    reported: &Reported,
    whole: Whole,
    frame_bytes: u64,
) {
    if reported.ignored > 0 {
        tracing::debug!(%peer, ignored = reported.ignored, "vector names origins that are not members; ignored");
    }
    view.learn(reported);
    state.peers.update(peer, |p| {
        if let Whole::Hello = whole {
            p.vector.clear();
        }
        // In place where the origin is listed: names are allocated once per link, not once
        // per head of every progress frame.
        for (o, seq) in &reported.heads {
            update_or_default(&mut p.vector, o.as_str(), |held| *held = *seq);
        }
        p.bytes_received += frame_bytes;
    });
}

/// How much of the peer's vector a frame carries: all of it (a hello), or the heads that
/// changed since its last frame (a progress frame, see `announce`).
enum Whole {
    Hello,
    Changes,
}

/// Ends the sender half whenever the link ends, however it ends (even if the link's own
/// future is dropped mid-way).
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The orgs this node relays to: itself, and all its peers (or the roster's members) if it is
/// a hub.
fn reaches(state: &NodeState) -> Vec<String> {
    let mut r = vec![state.org.to_string()];
    if state.cfg.role == crate::config::Role::Hub {
        match state.roster() {
            Some(roster) => r.extend(
                roster
                    .members()
                    .iter()
                    .map(|m| m.org.clone())
                    .filter(|o| *o != state.org.as_str()),
            ),
            None => r.extend(state.cfg.peer.iter().map(|p| p.org.clone())),
        }
    }
    r
}

pub(super) async fn send(
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

async fn receive_loop<S>(
    state: &Arc<NodeState>,
    peer: &OrgId,
    inbound: S,
    out: &Outbound,
    view: &PeerView,
    asked: &Asked,
    announcer: &Announcer,
) -> Result<(), LinkError>
where
    S: Stream<Item = Result<pb::SyncFrame, Status>> + Unpin + Send + 'static,
{
    let limits = state.cfg.limits.clone();
    let mut frames = read_ahead(Arc::clone(state), inbound);
    let mut stashed = None;
    // Refusals of what an origin signed keep the link and cost the peer nothing to cause:
    // their lines are gated, not written per entry.
    let (mut chain_lines, mut origin_lines) = (LineGate::default(), LineGate::default());
    loop {
        let next = match stashed.take() {
            Some(x) => Some(x),
            None => tokio::time::timeout(limits.dead_after(), frames.prepared.recv())
                .await
                .map_err(|_| LinkError::Dead(limits.dead_after()))?,
        };
        let (received, mut bytes) = match next {
            None => return Ok(()),
            Some(r) => match r? {
                None => continue,
                Some(x) => x,
            },
        };
        let received = match received {
            // Batches verified while the one before was applied go into one write: a busy
            // hub took each link's batches one at a time, each waiting for the store's writer
            // and then for a runtime thread (765 ms on average in `bench federation`).
            Received::Batch(mut checked) => {
                let mut n = 1;
                while n < VERIFY_AHEAD {
                    match frames.prepared.try_recv() {
                        Ok(Ok(Some((Received::Batch(more), b)))) if checked.same_keys(&more) => {
                            checked.merge(more);
                            bytes += b;
                            n += 1;
                        }
                        Ok(other) => {
                            stashed = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                Received::Batch(checked)
            }
            other => other,
        };
        state.peers.update(peer, |p| {
            p.last_heard_unix_ms = intelmesh_core::now_unix_ms();
            p.bytes_received += bytes;
        });
        match received {
            Received::Hello => return Err(LinkError::SecondHello),
            Received::Heartbeat => {}
            Received::Want(w) => asked.add(w, &state.keys()),
            Received::Relays(r) => view.set_relays(r),
            Received::Progress(p) => {
                let reported = read_vector(p.vector, &state.keys());
                take_in_vector(state, peer, view, &reported, Whole::Changes, 0);
            }
            Received::Evidence(e) => {
                let report = state.receive_evidence(e.proofs).await.map_err(local)?;
                if report.added > 0 {
                    tracing::warn!(%peer, proofs = report.added, "fork proofs received: origins flagged");
                }
                if let Some(e) = report.invalid.into_iter().next() {
                    return Err(LinkError::BadEvidence(e));
                }
            }
            Received::Batch(checked) => {
                // The peer holds what it just sent: never echo it back, even before its next
                // progress frame says so. Entries that wait for a key count too: the peer has
                // them, this node will take them once it can verify them.
                let mut sent: BTreeMap<&OrgId, u64> = BTreeMap::new();
                let headers = checked
                    .good
                    .iter()
                    .map(|e| (&e.header().origin, e.header().seq))
                    .chain(checked.held_already.iter().map(|(o, s)| (o, *s)));
                // An entry waiting for its key names its origin unchecked: only members count,
                // or made-up names would grow this link's view without bound.
                let keys = state.keys();
                let waiting = checked
                    .unknown_key
                    .iter()
                    .filter(|u| keys.is_member(&u.origin))
                    .map(|u| (&u.origin, u.seq));
                for (origin, seq) in headers.chain(waiting) {
                    let top = sent.entry(origin).or_insert(0);
                    *top = (*top).max(seq);
                }
                for (origin, seq) in &sent {
                    view.raise(origin, *seq);
                }
                // Its vector as shown in status too: a peer that leaves out of its progress
                // frames the heads it sent as entries (`progress_omits_sent`) would otherwise
                // show a lag it does not have.
                state.peers.update(peer, |p| {
                    for (origin, seq) in &sent {
                        update_or_default(&mut p.vector, origin.as_str(), |held| {
                            *held = (*held).max(*seq)
                        });
                    }
                });
                let report = state.apply_checked(checked).await.map_err(local)?;
                state
                    .peers
                    .update(peer, |s| s.entries_received += report.appended as u64);
                state
                    .metrics
                    .refused(Refusal::Chain, report.chain_rejected.len());
                // A fork or chain break is the origin's doing, not necessarily this peer's:
                // keep the link; the store keeps the proof and links pass it on.
                let now = std::time::Instant::now();
                if let (Some(entries), Some(e)) = (
                    chain_lines.pass(report.chain_rejected.len(), now),
                    report.chain_rejected.first(),
                ) {
                    tracing::warn!(%peer, entries, error = %e, "entries refused by chain rules (the first here)");
                }
                let (mut origin_faults, refused): (Vec<_>, Vec<_>) = report
                    .refused
                    .into_iter()
                    .partition(|e| e.is_origin_fault());
                let (early, forged): (Vec<_>, Vec<_>) =
                    refused.into_iter().partition(|e| e.is_from_future());
                state
                    .metrics
                    .refused(Refusal::KeyEnded, origin_faults.len());
                state.metrics.refused(Refusal::FromFuture, early.len());
                state.metrics.refused(Refusal::Verification, forged.len());
                // A key the roster ended: the relay may have forwarded it under an older roster
                // in good faith. The entry is refused; the link stays, unless the roster this
                // node follows now lets the key sign it (below).
                if let (Some(entries), Some(e)) = (
                    origin_lines.pass(origin_faults.len(), now),
                    origin_faults.first(),
                ) {
                    tracing::warn!(%peer, entries, error = %e, "entries refused for what their origin signed, not for this peer's doing (the first here)");
                }
                // Refused lately already, and logged then: judged as before, said once.
                if !report.refused_again.is_empty() {
                    state
                        .metrics
                        .refused(Refusal::KeyEnded, report.refused_again.len());
                    tracing::debug!(%peer, entries = report.refused_again.len(), "entries refused again for what their origin signed");
                    origin_faults.extend(report.refused_again);
                }
                if let Some(e) = forged.into_iter().next() {
                    return Err(LinkError::Forged(e));
                }
                // No room to hold entries for their predecessors: the link restarts, so the
                // peer sends them again from this node's hello (it counts them delivered).
                if let Some(e) = report
                    .chain_rejected
                    .iter()
                    .find(|e| matches!(e, ChainError::HoldQueueFull { .. }))
                {
                    return Err(LinkError::HoldFull(e.to_string()));
                }
                // Dated past this node's clock: a relay whose clock runs ahead took it in good
                // faith. The link restarts (retriable), so the peer sends it again from this
                // node's hello; the sender counts what it sent as delivered, so a link kept up
                // would never send it again and the origin's later entries would wait behind it.
                if let Some(e) = early.into_iter().next() {
                    return Err(LinkError::Early(e));
                }
                if let Some(e) = origin_faults
                    .iter()
                    .find(|e| matches!(e, intelmesh_core::VerifyError::RosterVersionAhead { .. }))
                {
                    return Err(LinkError::RosterAhead(e.clone()));
                }
                if let Some(e) = state
                    .signable_once_followed(&origin_faults)
                    .await
                    .map_err(local)?
                {
                    return Err(LinkError::RosterMoved(e));
                }
                announcer
                    .announce(state, out, &limits, When::Always)
                    .await?;
            }
        }
    }
}
