//! A layer that judges calls to some gRPC paths by the caller's TLS certificate before the
//! request is read, and answers a refused one with its status (after writing the audit record
//! the judge gives, if any). `admin_gate` and `probe_gate` are its judges.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::audit::Pending;
use crate::state::NodeState;

/// A call refused: the status answered, and the audit record written first, if any.
pub(crate) struct Refusal {
    pub status: tonic::Status,
    pub audit: Option<Pending>,
}

/// Judges a call to `path` by the client's leaf certificate: `None` lets it through.
pub(crate) type Judge = fn(&NodeState, &str, Option<&[u8]>) -> Option<Refusal>;

/// The layer, for a listener of the node `state`: calls to `paths` (prefixes) are judged.
#[derive(Clone)]
pub struct CallGate {
    state: Arc<NodeState>,
    paths: &'static [&'static str],
    judge: Judge,
}

impl CallGate {
    pub(crate) fn new(
        state: Arc<NodeState>,
        paths: &'static [&'static str],
        judge: Judge,
    ) -> CallGate {
        CallGate {
            state,
            paths,
            judge,
        }
    }
}

impl<S> tower::Layer<S> for CallGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: CallGate,
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
        if self.gate.paths.iter().any(|p| path.starts_with(p)) {
            let leaf = crate::tls_accept::client_leaf(&request);
            if let Some(refused) = (self.gate.judge)(&self.gate.state, path, leaf.as_deref()) {
                let state = Arc::clone(&self.gate.state);
                return Box::pin(async move {
                    if let Some(call) = refused.audit {
                        state.audit().record(call).await;
                    }
                    Ok(refused.status.into_http())
                });
            }
        }
        Box::pin(self.inner.call(request))
    }
}
