//! Calls one client certificate may have in flight on the API at once (`[limits]
//! calls_per_client`): each call holds a slot while its handler runs, which is while its
//! request (up to the message size) is received and decoded, so one certificate cannot make
//! the node hold thousands of requests at once. A call past its share is answered
//! `RESOURCE_EXHAUSTED` before its body is read.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};

use crate::conn_slots::{Bounds, Full, Slots};

/// Calls in flight on one listener, from everyone.
const MAX_CALLS: usize = 16_384;

/// The layer: a slot per call, per client certificate.
#[derive(Clone)]
pub struct CallSlots {
    slots: Arc<Slots<[u8; 32]>>,
    /// What sets the bound, for the refusal's message.
    bound_by: &'static str,
}

impl CallSlots {
    /// `per_client` calls per certificate, a bound `bound_by` names (a setting).
    pub fn new(per_client: usize, bound_by: &'static str) -> CallSlots {
        CallSlots {
            slots: Slots::new(Bounds {
                per_client,
                total: MAX_CALLS,
            }),
            bound_by,
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
        }
    }
}

#[derive(Clone)]
pub struct Slotted<S> {
    inner: S,
    slots: Arc<Slots<[u8; 32]>>,
    bound_by: &'static str,
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
        let call = self.inner.call(request);
        Box::pin(async move {
            let _slot = slot;
            call.await
        })
    }
}
