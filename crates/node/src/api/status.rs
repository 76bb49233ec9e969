//! `NodeStatus`: own vector, state digest, peers and their lag.

use std::collections::BTreeMap;
use std::sync::Arc;

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::node_status_server::NodeStatus;
use intelmesh_store::Store;
use tonic::{Request, Response, Status};

use crate::identity::{require_role, Identity, Role};
use crate::state::NodeState;

pub struct StatusService {
    pub state: Arc<NodeState>,
    /// The API's read shares, which `Indicators` takes from too.
    pub blocking_reads: Arc<crate::read_shares::ReadShares>,
}

/// Whether a status carries the state digest. It sums every state the node holds, so it is a
/// consistent read of the index, which under steady ingest ends by taking the store's write
/// lock; and only the node's own org may have it. So it is read only where it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    Included,
    Withheld,
}

/// The status as plain data, with its state digest, for in-process callers.
pub fn status(state: &NodeState) -> Result<pb::StatusResponse, intelmesh_store::StoreError> {
    status_with(state, Digest::Included)
}

/// The status as plain data, its state digest read only if `digest` says so (else empty).
pub fn status_with(
    state: &NodeState,
    digest: Digest,
) -> Result<pb::StatusResponse, intelmesh_store::StoreError> {
    let vector = state.store.vector()?;
    let peers = state.peers.map(|org, p| pb::PeerStatus {
        org_id: org.to_string(),
        connected: p.connected,
        address: p.address.clone(),
        lag: lag(&vector, &p.vector),
        last_heard_unix_ms: p.last_heard_unix_ms,
        last_error: p.last_error.clone(),
        entries_sent: p.entries_sent,
        entries_received: p.entries_received,
        roster_version: p.roster_version,
        roster_hash: hex::encode(&p.roster_hash),
        other_hub_serves_first: p.connected && p.other_hub_serves_first,
    });
    // The version in force, not the one being taken in: a client that sees a version here
    // finds its keys and cuts in effect.
    let roster = state.roster_in_force();
    let follow = state.follow();
    let now = intelmesh_core::now_unix_ms();
    let readiness = crate::health::of_state(state);
    Ok(pb::StatusResponse {
        roster_version: roster.as_ref().map_or(0, |r| r.version()),
        roster_hash: roster
            .as_ref()
            .map(|r| hex::encode(r.hash()))
            .unwrap_or_default(),
        roster_refused: (state.roster_refused())
            .map(|r| format!("version {}: {}", r.version, r.error))
            .or_else(|| {
                state.roster_pin_refused().map(|seq| {
                    format!("roster log seq {seq}: a received entry is not the one roster.log_pins names (from the enrolment bundle); the real one has not come yet")
                })
            })
            .unwrap_or_default(),
        roster_conflicts: follow
            .map(|f| f.checkpoints.conflicts())
            .unwrap_or_default()
            .into_iter()
            .map(|c| pb::RosterConflict {
                member: c.member.to_string(),
                version: c.version,
                ours: hex::encode(c.ours),
                theirs: hex::encode(c.theirs),
                seq: c.seq,
                seen_at_unix_ms: c.seen_at_unix_ms,
            })
            .collect(),
        roster_ahead: match (follow, &roster) {
            (Some(f), Some(r)) => f
                .checkpoints
                .ahead(r.version())
                .into_iter()
                .map(|(member, version)| pb::RosterAhead {
                    member: member.to_string(),
                    version,
                })
                .collect(),
            _ => Vec::new(),
        },
        stale_members: match (follow, &roster) {
            (Some(f), Some(r)) => f
                .checkpoints
                .stale(r, &state.org, now)
                .iter()
                .map(ToString::to_string)
                .collect(),
            _ => Vec::new(),
        },
        org_id: state.org.to_string(),
        vector: vector.iter().map(|(o, s)| (o.to_string(), *s)).collect(),
        peers,
        state_digest: match digest {
            Digest::Included => hex::encode(state.store.state_digest()?),
            Digest::Withheld => String::new(),
        },
        flagged_origins: state
            .store
            .flagged_origins()?
            .iter()
            .map(ToString::to_string)
            .collect(),
        held_entries: state.store.held_count() as u64,
        payloads_owed: state.wants.len() as u64,
        unverified: state.unverified.summary(),
        fork_proofs: state.store.fork_count(),
        certificate_warnings: crate::cert_watch::of_state(state, now),
        ready: readiness.is_ready(),
        readiness: readiness.line(),
    })
}

/// How many entries `ours` holds past `theirs`, summed over origins. Both are in name order,
/// so they are walked side by side: a hub answers this for every member at every `Status`.
fn lag(ours: &intelmesh_store::VersionVector, theirs: &BTreeMap<String, u64>) -> u64 {
    let mut theirs = theirs.iter().peekable();
    let mut lag = 0u64;
    for (origin, seq) in ours {
        while theirs
            .next_if(|(o, _)| o.as_str() < origin.as_str())
            .is_some()
        {}
        let held = match theirs.peek() {
            Some((o, held)) if o.as_str() == origin.as_str() => **held,
            _ => 0,
        };
        lag = lag.saturating_add(seq.saturating_sub(held));
    }
    lag
}

#[tonic::async_trait]
impl NodeStatus for StatusService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let call = self
            .state
            .audit()
            .begin(&request, "NodeStatus/Status", Vec::new());
        call.end(self.status_call(request).await).await
    }
}

impl StatusService {
    async fn status_call(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let Identity::Service { org, name } = require_role(&request, Role::Service, "NodeStatus")?
        else {
            return Err(Status::internal("a caller not a service passed as one"));
        };
        crate::admission::check_api_caller(&self.state, &request)?;
        let own = org == self.state.org;
        // The digest sums every state this node holds, restricted slots it opened included: a
        // service of another org could test guesses of a value it may not read against it.
        let digest = if own {
            Digest::Included
        } else {
            Digest::Withheld
        };
        // Off the runtime, on the blocking pool that applying entries needs: within the
        // caller's share of the reads, as every other read of the API.
        let permit = self
            .blocking_reads
            .acquire(&format!("{org}/{name}"))
            .await?;
        let state = Arc::clone(&self.state);
        let response = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            status_with(&state, digest)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_sums_what_the_peer_lacks_of_each_origin() {
        let org = |s: &str| intelmesh_core::OrgId::parse(s).expect("org");
        let ours = [(org("AU"), 5), (org("BR"), 3), (org("SG"), 7)].into();
        let theirs = [("AA".to_string(), 9), ("BR".into(), 1), ("SG".into(), 9)].into();
        assert_eq!(lag(&ours, &theirs), 5 + 2);
        assert_eq!(lag(&ours, &BTreeMap::new()), 15);
        assert_eq!(lag(&BTreeMap::new(), &theirs), 0);
    }
}
