//! The `Federation` gRPC service: authenticates the peer by its certificate and hands the
//! stream to [`run_link`].

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::federation_server::Federation;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::link::{run_link, LinkUp, ShutOut};
use super::link_error_line;
use crate::admission::{admit_peer, PeerCert};
use crate::identity::{require_role, Identity, Role};
use crate::state::NodeState;

pub struct FederationService {
    pub state: Arc<NodeState>,
}

#[tonic::async_trait]
impl Federation for FederationService {
    type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SyncFrame, Status>> + Send>>;

    async fn sync(
        &self,
        request: Request<Streaming<pb::SyncFrame>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let state = Arc::clone(&self.state);
        let Identity::Node(peer) = require_role(&request, Role::Node, "Federation")? else {
            return Err(Status::internal("a node certificate names no node"));
        };
        let cert = PeerCert::of_caller(&request);
        let relay = admit_peer(&state, &peer, &cert).inspect_err(|refused| {
            tracing::warn!(%peer, reason = %refused.message(), "federation stream refused");
        })?;
        let address = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let Some(up) = LinkUp::open(&state, &peer, address, relay) else {
            return Err(Status::already_exists(format!(
                "a link with {peer} is already up"
            )));
        };
        // Accepted here: the stream is answered below.
        up.established();
        let (tx, rx) = mpsc::channel(state.cfg.limits.peer_queue_frames);
        // The link's final status travels outside the frame queue: when the link ends because
        // that queue is full (a stalled peer), the status would not fit in it, and the peer
        // would read a clean close after the queued frames instead of why it was cut.
        let (end_tx, end_rx) = oneshot::channel::<Status>();
        let (shut_out, cut) = ShutOut::new();
        let inbound = request.into_inner();
        tokio::spawn(async move {
            let result = run_link(Arc::clone(&state), peer.clone(), relay, cert, inbound, tx).await;
            shut_out.after(&result);
            let error = result.err().map(|e| {
                let line = link_error_line(&e);
                if e.is_shutdown() {
                    tracing::info!(%peer, reason = %line, "link ended");
                } else {
                    tracing::warn!(%peer, error = %line, "link ended");
                }
                // The peer may already be gone; then nobody reads it.
                let _ = end_tx.send(e.to_status());
                line
            });
            up.end(error);
        });
        // Queued frames first, then the error status if the link failed; a link that ended
        // cleanly drops `end_tx` and the stream closes with OK.
        let end = futures::stream::once(end_rx).filter_map(|r| async move { r.ok().map(Err) });
        let frames = ReceiverStream::new(rx).take_until(cut);
        Ok(Response::new(Box::pin(frames.chain(end))))
    }
}
