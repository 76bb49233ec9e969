//! Health and reflection on both gRPC listeners, refused to a certificate the node refuses
//! elsewhere (`admission::refused_certificate`: ended, revoked, or of an org shut out). Their
//! handlers check no caller, and the federation listener's own service judges only `Sync`: a
//! revoked member's certificate still completes handshakes, and must not be served there.

use std::sync::Arc;

use crate::admission::refused_certificate;
use crate::call_gate::{CallGate, Refusal};
use crate::state::NodeState;

/// The paths this gate judges: the services that check no caller themselves.
const PROBE_PATHS: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The layer, for a listener of the node `state`.
pub fn gate(state: Arc<NodeState>) -> CallGate {
    CallGate::new(state, &PROBE_PATHS, judge)
}

/// A probe by a certificate the node refuses elsewhere is refused; one with none passes (the
/// handshake already asked for one where the listener needs it).
fn judge(state: &NodeState, _path: &str, leaf: Option<&[u8]>) -> Option<Refusal> {
    let why = refused_certificate(state, leaf?)?;
    Some(Refusal {
        status: tonic::Status::permission_denied(why),
        audit: None,
    })
}
