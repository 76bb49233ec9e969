//! The sending half of a link: entries the peer lacks (and this node's entries where the peer
//! showed a split view), payloads it asked for, fork proofs it has not been sent, asks for
//! payloads this node is owed, progress, heartbeats.
//!
//! Every entry batch fits the message cap by bytes as well as by count: entries may carry
//! payloads up to 64 KiB, so a batch capped by count alone could exceed the cap, be refused by
//! the receiver's decoder, and be sent again forever.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intelmesh_core::entry::header_hash;
use intelmesh_core::{Hash, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use prost::Message;

use super::announce::{Announcer, Sent, When};
use super::asked::{serve_asked, Asked};
use super::fan_out;
use super::link::{frame, local, send, LinkError, Outbound};
use super::peer_view::PeerView;
use crate::config::{Limits, Role};
use crate::key_end_cut::CutsSince;
use crate::route::{for_link, LinkReach, Routing};
use crate::state::NodeState;

/// The least time between two rounds of entry and progress frames on one link while appends
/// keep coming, for a node with `links` links up. A hub taking in one entry at a time from
/// each of 190 members would otherwise send each member a frame of one entry and a progress
/// frame per append: 36k of each a second across the mesh, each applied and flushed on its own
/// at the receiver. So the pause grows with the links, keeping a busy node's rounds near
/// [`ROUNDS_PER_SEC`] over all its links (a hub of 190 members: about 240 ms per link, a
/// second or so for an entry to reach every member in all), between [`LINGER_MIN`] (a node
/// of a few links, where a frame per append costs little and latency shows) and
/// [`LINGER_MAX`]. A round after a quiet spell goes at once.
pub(super) fn linger(links: usize) -> Duration {
    let spread = Duration::from_secs(1).mul_f64(links as f64 / ROUNDS_PER_SEC);
    spread.clamp(LINGER_MIN, LINGER_MAX)
}

/// See [`linger`].
const ROUNDS_PER_SEC: f64 = 800.0;
const LINGER_MIN: Duration = Duration::from_millis(20);
const LINGER_MAX: Duration = Duration::from_millis(250);

/// How long an agency lets a relay (hub) peer sit still on another origin, behind this node,
/// before it passes that origin's entries on itself. Every member sends its own entries to
/// every hub and the hubs to each other, so a hub lacking a third origin's entries is almost
/// always about to take them in on another link: an agency passing on at once what one hub
/// relayed made each hub receive every entry once per member (295,693 duplicates at each
/// hub for 1,900 entries in `bench federation`, two hubs and 190 agencies). A hub that stops
/// taking an origin in for this long (a hub link and the origin's own link down) gets it from
/// the agencies, as before.
pub(super) const RELAY_STILL: Duration = Duration::from_secs(5);

/// Room kept in every frame for the frame's own encoding around its entries.
const FRAME_OVERHEAD: usize = 1024;

/// The most bytes of entries one EntryBatch frame carries under `limits` (what a sender must
/// keep to for its frames to be accepted).
pub fn batch_bytes(limits: &Limits) -> usize {
    limits.max_message_bytes.saturating_sub(FRAME_OVERHEAD)
}

/// Entries gathered for one EntryBatch frame, within the link's entry and byte caps.
pub(super) struct Batch {
    pub(super) entries: Vec<pb::SignedEntry>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    /// The soonest an origin held back for the relay ([`RELAY_STILL`]) may go.
    held_back: Option<Duration>,
    /// The highest seq of each origin sent in the batch after what the peer held.
    sent: Sent,
}

/// What an entry adds to an EntryBatch: its encoding, tag and length prefix.
fn cost(e: &pb::SignedEntry) -> usize {
    let n = e.encoded_len();
    n + 1 + prost::encoding::encoded_len_varint(n as u64)
}

impl Batch {
    pub(super) fn new(limits: &Limits) -> Batch {
        Batch {
            entries: Vec::new(),
            bytes: 0,
            max_entries: limits.max_batch_entries,
            max_bytes: batch_bytes(limits),
            held_back: None,
            sent: Sent::new(),
        }
    }

    fn hold_back(&mut self, left: Duration) {
        self.held_back = Some(self.held_back.map_or(left, |h| h.min(left)));
    }

    /// Whether `e` still fits. The message cap is at least 256 KiB and no legal entry comes near
    /// it, so a frame always takes at least one entry.
    pub(super) fn fits(&self, e: &pb::SignedEntry) -> bool {
        self.entries.len() < self.max_entries && self.bytes + cost(e) <= self.max_bytes
    }

    pub(super) fn push(&mut self, e: pb::SignedEntry) {
        self.bytes += cost(&e);
        self.entries.push(e);
    }

    pub(super) fn is_full(&self) -> bool {
        self.entries.len() >= self.max_entries
    }
}

/// A fork proof's identity: origin, seq, hash of the conflicting header.
type ProofKey = (String, u64, Hash);

fn proof_key(p: &pb::ForkProof) -> ProofKey {
    let conflicting = p
        .conflicting
        .as_ref()
        .map_or([0; 32], |c| header_hash(&c.header));
    (p.origin.clone(), p.seq, conflicting)
}

/// Sends what the peer lacks, then waits for local changes; heartbeats while idle.
pub(super) async fn send_loop(
    state: Arc<NodeState>,
    link: LinkReach,
    view: Arc<PeerView>,
    asked: Arc<Asked>,
    announcer: Arc<Announcer>,
    out: Outbound,
) -> Result<(), LinkError> {
    let limits = state.cfg.limits.clone();
    let mut changes = state.subscribe();
    let mut last_sent = Instant::now();
    // When the last round sent entries or progress (see [`linger`]).
    let mut last_round: Option<Instant> = None;
    // What this node asked the peer for on this link; a new link asks again.
    // The number of the last owed payload asked for on this link (see `Wants::added_after`).
    let mut wanted: Option<u64> = None;
    // Fork proofs sent on this link, and the store's proof count when last looked at.
    let mut proofs_sent: BTreeSet<ProofKey> = BTreeSet::new();
    let mut proofs_seen: Option<u64> = None;
    // The wants' revision when this link last asked for everything owed.
    let mut wants_seen: Option<u64> = None;
    let mut cuts_seen = state.follow().map_or(0, |f| f.cuts.count());
    // What this agency last told the hub of its hub links (`fan_out`).
    let tell_relays = link.relay && state.cfg.role != Role::Hub;
    let mut relays_told: Option<Vec<OrgId>> = None;
    // What the peer table last showed of who serves this peer first.
    let mut other_first_shown = false;
    // Hubs hear from each other often enough to tell one gone silent (`fan_out`).
    let heartbeat = if link.relay && state.cfg.role == Role::Hub {
        limits.heartbeat().min(fan_out::HUB_HEARTBEAT)
    } else {
        limits.heartbeat()
    };
    loop {
        if tell_relays {
            let relays = state.peers.relays_up();
            if relays_told.as_ref() != Some(&relays) {
                let orgs = relays.iter().map(OrgId::to_string).collect();
                let told = frame(pb::sync_frame::Frame::Relays(pb::Relays { orgs }));
                send(&out, told, &limits).await?;
                relays_told = Some(relays);
            }
        }
        let round_start = Instant::now();
        changes.borrow_and_update();
        let hold = hold_back(&state, &link, &view);
        if hold.other_hub_first() != other_first_shown {
            other_first_shown = hold.other_hub_first();
            (state.peers)
                .update_known(&link.peer, |s| s.other_hub_serves_first = other_first_shown);
        }
        // The heads sent as entries this round, which its progress frame may leave out.
        let mut sent_round = Sent::new();
        // When to look again at origins held back for a relay, if any were.
        let held_back = loop {
            lower_for_cuts(&state, &view, &mut cuts_seen)?;
            let mut batch = next_batch(&state, &link, &view, &limits, hold.until_still)?;
            if !batch.is_full() {
                serve_asked(&state, &link, &asked, &mut batch)?;
            }
            if batch.entries.is_empty() {
                break batch.held_back;
            }
            // A later batch of the round goes on from where the one before stopped.
            sent_round.append(&mut batch.sent);
            let n = batch.entries.len() as u64;
            let entries = pb::EntryBatch {
                entries: batch.entries,
            };
            let entries = frame(pb::sync_frame::Frame::Entries(entries));
            let bytes = entries.as_ref().map_or(0, |f| f.encoded_len() as u64);
            send(&out, entries, &limits).await?;
            state.peers.update(&link.peer, |s| {
                s.entries_sent += n;
                s.bytes_sent += bytes;
            });
            last_sent = Instant::now();
            last_round = Some(last_sent);
        };
        let count = state.store.fork_count();
        if proofs_seen != Some(count) {
            for evidence in new_proofs(&state, &mut proofs_sent, &limits)? {
                send(
                    &out,
                    frame(pb::sync_frame::Frame::Evidence(evidence)),
                    &limits,
                )
                .await?;
                last_sent = Instant::now();
            }
            proofs_seen = Some(count);
        }
        // The owed set is copied only when it changed since this link last asked all of it:
        // 190 links copying 65,536 keys on every round would cost more than the asks.
        let revision = state.wants.revision();
        if wants_seen != Some(revision) {
            let want = next_want(&state, &mut wanted, limits.max_batch_entries);
            // A full ask may leave more to ask next round; else all is asked until a change.
            let full = want
                .as_ref()
                .is_some_and(|w| w.entries.len() >= limits.max_batch_entries);
            wants_seen = (!full).then_some(revision);
            if let Some(want) = want {
                send(&out, frame(pb::sync_frame::Frame::Want(want)), &limits).await?;
                last_sent = Instant::now();
            }
        }
        // Tell the peer what this node now holds, so it does not send it what arrived by
        // another path.
        if announcer
            .announce_after(&state, &out, &limits, When::Changed, &sent_round)
            .await?
        {
            last_sent = Instant::now();
            last_round = Some(last_sent);
        }
        let wait = heartbeat.saturating_sub(last_sent.elapsed());
        // Appends that follow closely on a round wait for the next one, together (after the
        // last round that sent something); so does a wake by the peer's asks or view, after
        // the last round whatever it sent: else a peer could start a round (a walk of its open
        // asks) with every frame it sends.
        let since = tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    return Err(LinkError::ShuttingDown);
                }
                last_round
            }
            () = asked.added.notified() => Some(round_start),
            () = view.changed.notified() => Some(round_start),
            () = sleep_if(held_back.map(|h| hold.recheck.map_or(h, |r| h.min(r)))) => None,
            _ = tokio::time::sleep(wait) => {
                let hb = pb::Heartbeat { sent_at_unix_ms: intelmesh_core::now_unix_ms() };
                send(&out, frame(pb::sync_frame::Frame::Heartbeat(hb)), &limits).await?;
                last_sent = Instant::now();
                None
            }
        };
        if let Some(at) = since {
            let pause = linger(state.peers.connected_count());
            tokio::time::sleep(pause.saturating_sub(at.elapsed())).await;
        }
    }
}

/// Sleeps for `d`, or forever if there is none.
async fn sleep_if(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Lowers what the peer is believed to hold of each origin this node cut since the sender
/// last looked (see `CutLog`); past the log's length, of every origin, to this node's heads.
fn lower_for_cuts(state: &NodeState, view: &PeerView, seen: &mut u64) -> Result<(), LinkError> {
    let Some(follow) = state.follow() else {
        return Ok(());
    };
    match follow.cuts.since(seen) {
        CutsSince::Cuts(cuts) => {
            for (origin, kept_through) in cuts {
                view.lower(&origin, kept_through);
            }
        }
        CutsSince::Overflow => {
            for (origin, head) in state.store.heads().map_err(local)?.iter() {
                view.lower(origin, head.seq);
            }
        }
    }
    Ok(())
}

/// The payloads this node is owed that it has not asked this peer for yet: those added to
/// the owed set after the last one asked (`asked`, its number, moved on).
fn next_want(state: &NodeState, asked: &mut Option<u64>, max: usize) -> Option<pb::Want> {
    let ask = state.wants.added_after(*asked, max);
    let (last, _) = ask.last()?;
    *asked = Some(*last);
    let ask = ask.into_iter().map(|(_, key)| key);
    Some(pb::Want {
        entries: ask
            .into_iter()
            .map(|(origin, seq)| pb::EntryRef {
                origin: origin.to_string(),
                seq,
            })
            .collect(),
    })
}

/// The fork proofs of the store not sent on this link yet, in frames within the byte cap.
fn new_proofs(
    state: &NodeState,
    sent: &mut BTreeSet<ProofKey>,
    limits: &Limits,
) -> Result<Vec<pb::ForkEvidence>, LinkError> {
    let budget = limits.max_message_bytes.saturating_sub(FRAME_OVERHEAD);
    let mut frames: Vec<pb::ForkEvidence> = Vec::new();
    let mut bytes = 0;
    for proof in state.store.fork_proofs().map_err(local)? {
        if !sent.insert(proof_key(&proof)) {
            continue;
        }
        let size = proof.encoded_len() + 8;
        let start_new = match frames.last() {
            None => true,
            Some(f) => f.proofs.len() >= super::link::MAX_PROOFS_PER_FRAME || bytes + size > budget,
        };
        if start_new {
            frames.push(pb::ForkEvidence::default());
            bytes = 0;
        }
        bytes += size;
        if let Some(f) = frames.last_mut() {
            f.proofs.push(proof);
        }
    }
    Ok(frames)
}

/// Which other origins' entries wait before they go to the peer of `link`, as of this round.
struct Hold {
    /// Held back until the peer has sat still behind on the origin this long.
    until_still: Option<Duration>,
    /// At a hub, for an agency another hub it still hears serves first (`fan_out`): when to
    /// look again at whether that hub has gone silent, if anything is held back.
    recheck: Option<Duration>,
}

impl Hold {
    /// At a hub: the peer is an agency another hub serves first.
    fn other_hub_first(&self) -> bool {
        self.recheck.is_some()
    }
}

/// An agency holds back from a hub ([`RELAY_STILL`]); a hub from an agency another hub it
/// still hears serves first ([`fan_out::serve`]). Worked out once a round.
fn hold_back(state: &NodeState, link: &LinkReach, view: &PeerView) -> Hold {
    if state.cfg.role != Role::Hub {
        return Hold {
            until_still: link.relay.then_some(RELAY_STILL),
            recheck: None,
        };
    }
    let serve = if link.relay {
        fan_out::Serve::AtOnce
    } else {
        let hubs = fan_out::sharing(&state.peers.relays_up(), view.relays().as_deref());
        fan_out::serve(&state.org, &hubs, &link.peer, |hub| {
            state.peers.relay_unheard_for(hub)
        })
    };
    match serve {
        fan_out::Serve::AtOnce => Hold {
            until_still: None,
            recheck: None,
        },
        fan_out::Serve::AfterStill { still, recheck } => Hold {
            until_still: Some(still),
            recheck: Some(recheck),
        },
    }
}

/// Entries the peer lacks, within the frame's caps: first this node's entries where the peer
/// showed a split view, then per origin the range after what the peer holds, in seq order,
/// routed for the link, other origins held back as `hold_back` says ([`Hold`]). Marks them as
/// known to the peer (it will have them, or the link breaks
/// and the next hello tells the truth).
fn next_batch(
    state: &NodeState,
    link: &LinkReach,
    view: &PeerView,
    limits: &Limits,
    hold_back: Option<Duration>,
) -> Result<Batch, LinkError> {
    let heads = state.store.heads().map_err(local)?;
    let mut batch = Batch::new(limits);
    for (origin, seq) in view.split_views(&heads) {
        if let Some(e) = state.store.range(&origin, seq, 1).map_err(local)?.pop() {
            let r = routing(&e, &origin)?;
            let routed = for_link(e, &origin, &r, link);
            if batch.fits(&routed) {
                tracing::warn!(peer = %link.peer, %origin, seq, "peer holds another entry at this seq: sending ours so both can prove the fork");
                batch.push(routed);
            }
        }
    }
    // The roster log first: a joining node learns the keys before the entries signed with
    // them, which would otherwise wait (bounded) in its unverified queue.
    let authority = state.keys().authority().cloned();
    let mut behind = view.behind(&heads);
    if let Some(at) = behind
        .iter()
        .position(|(o, _, _)| Some(*o) == authority.as_ref())
    {
        let roster_log = behind.remove(at);
        behind.insert(0, roster_log);
    }
    let now = Instant::now();
    for (origin, have, head) in behind {
        if batch.is_full() {
            break;
        }
        if let Some(still) = hold_back.filter(|_| *origin != state.org) {
            if let Err(left) = view.stalled(origin, now, still) {
                batch.hold_back(left);
                continue;
            }
        }
        let take = (limits.max_batch_entries - batch.entries.len()).min((head - have) as usize);
        let entries = state.store.range(origin, have + 1, take).map_err(local)?;
        let mut last = have;
        let mut full = false;
        for e in entries {
            let r = routing(&e, origin)?;
            let routed = for_link(e, origin, &r, link);
            if !batch.fits(&routed) {
                full = true;
                break;
            }
            last = r.seq;
            batch.push(routed);
        }
        view.raise(origin, last);
        if last > have {
            batch.sent.insert(origin.clone(), last);
        }
        if full {
            break;
        }
    }
    Ok(batch)
}

fn routing(e: &pb::SignedEntry, origin: &OrgId) -> Result<Routing, LinkError> {
    Routing::of(e)
        .ok_or_else(|| LinkError::Local(format!("stored entry of {origin} does not decode")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_between_rounds_grows_with_the_links_within_its_bounds() {
        assert_eq!(linger(0), LINGER_MIN);
        assert_eq!(linger(5), LINGER_MIN, "a demo's hub keeps its latency");
        let hub = linger(190);
        assert!(
            hub > Duration::from_millis(200) && hub < LINGER_MAX,
            "{hub:?}"
        );
        assert!(linger(100) < hub);
        assert_eq!(linger(100_000), LINGER_MAX);
    }
}
