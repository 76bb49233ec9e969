//! Who may call the `Admin` service, checked from the TLS session before a request is read:
//! only an admin certificate of this node's org. The handlers check again (and that the node
//! is a hub); this layer keeps any other certificate from making the node receive and decode
//! an admin request (up to [`MAX_ADMIN_REQUEST_BYTES`]) at all. A refused call is recorded in
//! the audit trail as the handlers record theirs.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use intelmesh_core::OrgId;

use crate::audit::{caller_of_certificate, caller_of_identity, Pending};
use crate::identity::{identity_of, Identity, IdentityError, Role};
use crate::state::NodeState;

/// The largest admin request taken: a proposal whose roster document fits the roster's
/// size limit, a signature, a certificate request are all far smaller.
pub const MAX_ADMIN_REQUEST_BYTES: usize = 256 << 10;

const ADMIN_PATH: &str = "/intelmesh.v1.Admin/";

/// The layer, for the API listener of the node `state`.
#[derive(Clone)]
pub struct AdminGate {
    state: Arc<NodeState>,
}

impl AdminGate {
    pub fn new(state: Arc<NodeState>) -> AdminGate {
        AdminGate { state }
    }
}

impl<S> tower::Layer<S> for AdminGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    state: Arc<NodeState>,
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

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with(ADMIN_PATH) {
            let leaf = crate::tls_accept::client_leaf(&request);
            if let Some(status) = refusal(leaf.as_deref(), &self.state.org) {
                // The method as the handlers name it; a path naming none, bounded.
                let method = crate::api_calls::method_label(request.uri().path());
                let call = Pending {
                    time_ms: intelmesh_core::now_unix_ms(),
                    caller: leaf
                        .as_deref()
                        .map_or_else(|| caller_of_identity(None), caller_of_certificate),
                    method: method.trim_start_matches("intelmesh.v1.").to_string(),
                    values: Vec::new(),
                    code: status.code() as u32,
                    result: format!("{:?}", status.code()),
                };
                let state = Arc::clone(&self.state);
                return Box::pin(async move {
                    state.audit().record(call).await;
                    Ok(status.into_http())
                });
            }
        }
        Box::pin(self.inner.call(request))
    }
}
