//! Health and reflection on both gRPC listeners, refused to a certificate the node refuses
//! elsewhere (`admission::refused_certificate`: ended, revoked, or of an org shut out). Their
//! handlers check no caller, and the federation listener's own service judges only `Sync`: a
//! revoked member's certificate still completes handshakes, and must not be served there.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::admission::refused_certificate;
use crate::state::NodeState;

/// The paths this gate judges: the services that check no caller themselves.
const PROBE_PATHS: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The layer, for a listener of the node `state`.
#[derive(Clone)]
pub struct ProbeGate {
    state: Arc<NodeState>,
}

impl ProbeGate {
    pub fn new(state: Arc<NodeState>) -> ProbeGate {
        ProbeGate { state }
    }
}

impl<S> tower::Layer<S> for ProbeGate {
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
        let path = request.uri().path();
        if PROBE_PATHS.iter().any(|p| path.starts_with(p)) {
            let leaf = crate::tls_accept::client_leaf(&request);
            if let Some(why) = leaf.and_then(|l| refused_certificate(&self.state, l.as_ref())) {
                let status = tonic::Status::permission_denied(why);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        Box::pin(self.inner.call(request))
    }
}
