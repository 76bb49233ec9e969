//! Counting the API's gRPC calls by method and status code, as a tower layer around the API
//! server, for `intelmesh_api_calls_total`.
//!
//! The status of a call is in the response headers when the call fails at once (a
//! "trailers-only" response) and in the trailers otherwise, after the last message of a
//! stream; the body is watched for them. The method label is bounded: a path that names no
//! method of the node's services counts as `other`, so callers cannot grow the label set.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use prost::Message;

use crate::state::NodeState;

/// The paths (`/package.Service/Method`) of every method the API listener serves.
fn known_methods() -> &'static BTreeSet<String> {
    static KNOWN: OnceLock<BTreeSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let sets = [
            intelmesh_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ];
        let mut known = BTreeSet::new();
        for bytes in sets {
            // Compiled into the binary by the proto build: decoding cannot meet other bytes.
            let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = service.name.unwrap_or_default();
                    for method in service.method {
                        let m = method.name.unwrap_or_default();
                        known.insert(format!("/{package}.{name}/{m}"));
                    }
                }
            }
        }
        known
    })
}

/// The method label of a request path: the path without its leading `/`, or `other`.
pub fn method_label(path: &str) -> &'static str {
    match known_methods().get(path) {
        Some(known) => known.trim_start_matches('/'),
        None if path.starts_with("/grpc.reflection.") => "reflection",
        None => "other",
    }
}

/// The name of a gRPC status code, as in the gRPC specification.
fn code_label(code: &[u8]) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .and_then(|n| NAMES.get(n).copied())
        .unwrap_or("UNKNOWN")
}

/// The layer: counts every call of the service it wraps in `state`'s metrics.
#[derive(Clone)]
pub struct CountCalls {
    state: Arc<NodeState>,
}

impl CountCalls {
    pub fn new(state: Arc<NodeState>) -> CountCalls {
        CountCalls { state }
    }
}

impl<S> tower::Layer<S> for CountCalls {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    state: Arc<NodeState>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Body + Send + 'static,
{
    type Response = http::Response<CountedBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = method_label(request.uri().path());
        let state = Arc::clone(&self.state);
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let pending = match response.headers().get("grpc-status") {
                Some(code) => {
                    state.metrics.api_call(method, code_label(code.as_bytes()));
                    None
                }
                None => Some(Pending { state, method }),
            };
            Ok(response.map(|body| CountedBody {
                inner: Box::pin(body),
                pending,
            }))
        })
    }
}

/// A call whose status comes in the trailers.
struct Pending {
    state: Arc<NodeState>,
    method: &'static str,
}

impl Pending {
    fn count(self, code: &'static str) {
        self.state.metrics.api_call(self.method, code);
    }
}

/// The response body, counting the call when its trailers (or its end) pass.
pub struct CountedBody<RB> {
    inner: Pin<Box<RB>>,
    pending: Option<Pending>,
}

impl<RB: Body> Body for CountedBody<RB> {
    type Data = RB::Data;
    type Error = RB::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    let code = code_label(code.as_bytes());
                    if let Some(p) = self.pending.take() {
                        p.count(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(p) = self.pending.take() {
                    p.count("UNKNOWN");
                }
            }
            Poll::Ready(None) => {
                // Ended without a status: the server sent none (an HTTP-level failure).
                if let Some(p) = self.pending.take() {
                    p.count("UNKNOWN");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<RB> Drop for CountedBody<RB> {
    fn drop(&mut self) {
        // The client went away before the status was sent.
        if let Some(p) = self.pending.take() {
            p.count("CANCELLED");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_of_the_services_are_labels_and_anything_else_is_other() {
        assert_eq!(
            method_label("/intelmesh.v1.Indicators/Lookup"),
            "intelmesh.v1.Indicators/Lookup"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "grpc.health.v1.Health/Check"
        );
        assert_eq!(method_label("/intelmesh.v1.Indicators/Nope"), "other");
        assert_eq!(method_label("/x/8.8.8.8"), "other");
    }

    #[test]
    fn codes_are_named_and_garbage_is_unknown() {
        assert_eq!(code_label(b"0"), "OK");
        assert_eq!(code_label(b"7"), "PERMISSION_DENIED");
        assert_eq!(code_label(b"16"), "UNAUTHENTICATED");
        assert_eq!(code_label(b"99"), "UNKNOWN");
        assert_eq!(code_label(b"x"), "UNKNOWN");
    }
}
