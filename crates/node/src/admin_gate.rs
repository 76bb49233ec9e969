//! Who may call the `Admin` service, checked from the TLS session before a request is read:
//! only an admin certificate of this node's org. The handlers check again (and that the node
//! is a hub); this layer keeps any other certificate from making the node receive and decode
//! an admin request (up to [`MAX_ADMIN_REQUEST_BYTES`]) at all. A refused call is recorded in
//! the audit trail as the handlers record theirs.

use std::sync::Arc;

use intelmesh_core::OrgId;

use crate::audit::{caller_of_certificate, caller_of_identity, Pending};
use crate::call_gate::{CallGate, Refusal};
use crate::identity::{identity_of, Identity, IdentityError, Role};
use crate::state::NodeState;

/// The largest admin request taken: a proposal whose roster document fits the roster's
/// size limit, a signature, a certificate request are all far smaller.
pub const MAX_ADMIN_REQUEST_BYTES: usize = 256 << 10;

const ADMIN_PATH: &str = "/intelmesh.v1.Admin/";

/// The layer, for the API listener of the node `state`.
pub fn gate(state: Arc<NodeState>) -> CallGate {
    CallGate::new(state, &[ADMIN_PATH], judge)
}

/// An admin call refused, recorded in the audit trail as the handlers record theirs.
fn judge(state: &NodeState, path: &str, leaf: Option<&[u8]>) -> Option<Refusal> {
    let status = refusal(leaf, &state.org)?;
    // The method as the handlers name it; a path naming none, bounded.
    let method = crate::api_calls::method_label(path);
    let call = Pending {
        time_ms: intelmesh_core::now_unix_ms(),
        caller: leaf.map_or_else(|| caller_of_identity(None), caller_of_certificate),
        method: method.trim_start_matches("intelmesh.v1.").to_string(),
        values: Vec::new(),
        code: status.code() as u32,
        result: format!("{:?}", status.code()),
    };
    Some(Refusal {
        status,
        audit: Some(call),
    })
}

/// Why the caller of an admin method is refused, or `None` when it may call.
pub fn refusal(leaf: Option<&[u8]>, org: &OrgId) -> Option<tonic::Status> {
    // Worded as the handlers' own checks (`identity::require_role`, `AdminService::operator`).
    let id = match leaf
        .ok_or(IdentityError::NoCertificate)
        .and_then(identity_of)
    {
        Ok(id) => id,
        Err(e) => {
            return Some(tonic::Status::unauthenticated(format!(
                "Admin needs a certificate of role {}: {e}",
                Role::Admin
            )))
        }
    };
    match id {
        Identity::Admin { org: of, .. } if &of == org => None,
        Identity::Admin { org: of, .. } => Some(tonic::Status::permission_denied(format!(
            "Admin needs an admin certificate of {org}; this one is of {of}"
        ))),
        id => Some(tonic::Status::permission_denied(format!(
            "Admin needs a certificate of role {}; {id} presented one of role {}",
            Role::Admin,
            id.role()
        ))),
    }
}
