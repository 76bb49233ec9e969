//! `NodeStatus`: own vector, state digest, peers and their lag.

use std::sync::Arc;

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::node_status_server::NodeStatus;
use intelmesh_store::Store;
use tonic::{Request, Response, Status};

use crate::identity::{require_role, Role};
use crate::state::NodeState;

pub struct StatusService {
    pub state: Arc<NodeState>,
}

/// The status as plain data, for the service and for in-process callers.
pub fn status(state: &NodeState) -> Result<pb::StatusResponse, intelmesh_store::StoreError> {
    let vector = state.store.vector()?;
    let peers = state
        .peers
        .snapshot()
        .into_iter()
        .map(|(org, p)| {
            let lag = vector
                .iter()
                .map(|(o, seq)| seq.saturating_sub(p.vector.get(o.as_str()).copied().unwrap_or(0)))
                .sum();
            pb::PeerStatus {
                org_id: org.to_string(),
                connected: p.connected,
                address: p.address,
                lag,
                last_heard_unix_ms: p.last_heard_unix_ms,
                last_error: p.last_error,
                entries_sent: p.entries_sent,
                entries_received: p.entries_received,
            }
        })
        .collect();
    Ok(pb::StatusResponse {
        org_id: state.org.to_string(),
        vector: vector.iter().map(|(o, s)| (o.to_string(), *s)).collect(),
        peers,
        state_digest: hex::encode(state.store.state_digest()?),
        flagged_origins: state
            .store
            .flagged_origins()?
            .iter()
            .map(ToString::to_string)
            .collect(),
        held_entries: state.store.held_count() as u64,
        unverified: state.unverified.summary(),
        fork_proofs: state.store.fork_count(),
    })
}

#[tonic::async_trait]
impl NodeStatus for StatusService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        require_role(&request, Role::Service, "NodeStatus")?;
        let state = Arc::clone(&self.state);
        let response = tokio::task::spawn_blocking(move || status(&state))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(response))
    }
}
