//! How long a link to a hub has waited on that hub for its next frame: the fan-out's sign of a
//! hub gone silent (`fan_out::HUB_SILENT`).
//!
//! Measured where the link reads its stream, and only while it waits on the peer: when this
//! node is the slow side (its read-ahead full, batches waiting for the store), the peer's
//! frames queue unread, and that peer is busy talking, not silent. Time since the last frame
//! read would count this node's own backlog against the peer.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use intelmesh_core::OrgId;

use crate::state::NodeState;

/// The peer's frame stream, noting in the peer table when the link starts and stops waiting
/// on a relay peer (a link to an agency notes nothing).
pub(super) struct Heard<S> {
    inner: S,
    state: Arc<NodeState>,
    peer: OrgId,
    relay: bool,
    waiting: bool,
}

impl<S> Heard<S> {
    pub(super) fn new(inner: S, state: Arc<NodeState>, peer: OrgId, relay: bool) -> Heard<S> {
        Heard {
            inner,
            state,
            peer,
            relay,
            waiting: false,
        }
    }
}

impl<S: Stream + Unpin> Stream for Heard<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        let waiting = polled.is_pending();
        if this.relay && waiting != this.waiting {
            this.state.peers.relay_waiting(&this.peer, waiting);
        }
        this.waiting = waiting;
        polled
    }
}
