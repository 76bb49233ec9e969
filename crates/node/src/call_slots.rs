//! Calls one client certificate may have in flight on a listener at once (`[limits]
//! calls_per_client` on the API): each call holds a slot while its handler runs, which is
//! while its request (up to the message size) is received and decoded, and on the API until
//! its answer is sent, so one certificate cannot make the node hold thousands of requests, nor
//! of answers it never reads. A call past its share is answered `RESOURCE_EXHAUSTED` before
//! its body is read.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use prost::bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::conn_slots::{Bounds, Full, Slot, Slots};

/// Calls in flight on one listener, from everyone.
const MAX_CALLS: usize = 16_384;

/// How long a call holds its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// While its handler runs: the federation listener, whose long `Sync` streams send only
    /// what the link's own bounded queue holds.
    WhileHandled,
    /// Until its answer is sent, or dropped: the API. An answer waits in memory for its
    /// client's flow-control window, so a client that never reads would otherwise pin one
    /// answer (up to the message size) per call it makes. Streams that run on (Watch, health
    /// Watch) hold theirs while handled only: they have bounds of their own, and a client's
    /// streams must not take the slots its calls need. Reflection streams, bounded by nothing
    /// else, hold theirs until they end, on either listener.
    UntilAnswered,
}

/// The layer: a slot per call, per client certificate.
#[derive(Clone)]
pub struct CallSlots {
    slots: Arc<Slots<[u8; 32]>>,
    /// What sets the bound, for the refusal's message.
    bound_by: &'static str,
    held: Held,
}

impl CallSlots {
    /// `per_client` calls per certificate, a bound `bound_by` names (a setting), each holding
    /// its slot as `held` says.
    pub fn new(per_client: usize, bound_by: &'static str, held: Held) -> CallSlots {
        CallSlots {
            slots: Slots::new(Bounds {
                per_client,
                total: MAX_CALLS,
            }),
            bound_by,
            held,
        }
    }
}

impl<S> tower::Layer<S> for CallSlots {
    type Service = Slotted<S>;

    fn layer(&self, inner: S) -> Slotted<S> {
        Slotted {
            inner,
            slots: Arc::clone(&self.slots),
            bound_by: self.bound_by,
            held: self.held,
        }
    }
}

#[derive(Clone)]
pub struct Slotted<S> {
    inner: S,
    slots: Arc<Slots<[u8; 32]>>,
    bound_by: &'static str,
    held: Held,
}

/// The digest of the caller's leaf certificate, as the connection's TLS session gave it.
fn client_of<B>(request: &http::Request<B>) -> [u8; 32] {
    let leaf = crate::tls_accept::client_leaf(request);
    leaf.map_or([0; 32], |c| Sha256::digest(c.as_ref()).into())
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Slotted<S>
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
        let slot = match Slots::take(&self.slots, client_of(&request)) {
            Ok(slot) => slot,
            Err(full) => {
                let why = match full {
                    Full::Client(n) => format!(
                        "this client certificate already has {n} calls in flight ({})",
                        self.bound_by
                    ),
                    Full::Listener(n) => format!("{n} calls are already in flight"),
                };
                let status = tonic::Status::resource_exhausted(why);
                return Box::pin(std::future::ready(Ok(status.into_http())));
            }
        };
        let path = request.uri().path();
        let held = match self.held {
            _ if is_reflection(path) => Held::UntilAnswered,
            Held::UntilAnswered if runs_on(path) => Held::WhileHandled,
            held => held,
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let answer = call.await?;
            Ok(match held {
                Held::WhileHandled => answer,
                Held::UntilAnswered => answer.map(|body| {
                    tonic::body::Body::new(Answer {
                        body,
                        slot: Some(slot),
                    })
                }),
            })
        })
    }
}

/// Whether the method at `path` answers with a stream that runs on while its client listens,
/// within bounds of its own (Watch: per service and in all).
fn runs_on(path: &str) -> bool {
    path.ends_with("/Watch")
}

/// Whether `path` is a reflection call: a stream that answers while its client keeps it open,
/// with no bound of its own, so it holds its slot until it ends on every listener.
fn is_reflection(path: &str) -> bool {
    path.contains(".ServerReflection/")
}

/// An answer holding its call's slot until its last frame is taken, or it is dropped.
struct Answer {
    body: tonic::body::Body,
    slot: Option<Slot<[u8; 32]>>,
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            self.slot = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
