//! What the gateway holds for callers is bounded: a request that finds the worker pools busy
//! for [`WAIT_FOR_WORK`] is answered 503 with `Retry-After`, not queued without end (a waiting
//! request holds its connection's stream and counts as activity, so nothing else ends it); and
//! large answers not yet sent hold a share of [`ANSWER_BUDGET_BYTES`] until the client has
//! taken them, so clients that ask for pages and never read cannot fill the node's memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::collections::HashMap;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Body as _, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::https::Connection;

/// Longest a request waits for a worker (pages take tens of milliseconds, a POST of 1,000
/// objects under 100 ms: a wait this long means the gateway is overloaded).
pub(super) const WAIT_FOR_WORK: Duration = Duration::from_secs(10);

/// Seconds a client is told to wait before it tries again.
pub(super) const RETRY_AFTER_SECS: u64 = 5;

/// The `Retry-After` of an answer with this status, in seconds: a busy gateway's, or at most
/// a throttled address's window (its body says how long exactly).
pub(super) fn retry_after(status: StatusCode) -> Option<u64> {
    match status {
        StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
        StatusCode::TOO_MANY_REQUESTS => Some(super::throttle::WINDOW.as_secs()),
        _ => None,
    }
}

/// The pool had no room within [`WAIT_FOR_WORK`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the gateway is busy: try again in {RETRY_AFTER_SECS} s")]
pub struct Busy;

/// A permit of `pool`, waited for at most [`WAIT_FOR_WORK`].
pub(super) async fn permit(pool: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, Busy> {
    permit_within(pool, WAIT_FOR_WORK).await
}

async fn permit_within(
    pool: &Arc<Semaphore>,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, Busy> {
    match tokio::time::timeout(wait, Arc::clone(pool).acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        // A closed pool (never closed here) or no room in time: either way, not now.
        Ok(Err(_)) | Err(_) => Err(Busy),
    }
}

/// Bytes of large answers built and not yet taken by their clients, in all.
pub(super) const ANSWER_BUDGET_BYTES: usize = 128 << 20;

/// Answers at least this large take from the budget; smaller ones are sent as they are.
const HELD_FROM_BYTES: usize = 64 << 10;

/// An answer leaves in pieces this large: the connection takes the next only once it can
/// send, so what waits on a client that stopped reading is the unsent rest, on the budget.
const PIECE_BYTES: usize = 16 << 10;

/// Of the budget, what the answers of one caller (a TAXII user, a certificate's service) may
/// hold: a caller that asks for pages and never reads them makes only its own answers wait.
pub(super) const CALLER_SHARE_BYTES: usize = ANSWER_BUDGET_BYTES / 4;

/// The budget, counted in KiB, and each caller's part of it.
pub(super) struct AnswerBudget {
    total: Arc<Semaphore>,
    total_kib: u32,
    by_caller: Arc<std::sync::Mutex<HashMap<String, u32>>>,
    caller_kib: u32,
}

pub(super) fn answer_budget() -> Arc<AnswerBudget> {
    Arc::new(AnswerBudget::of(ANSWER_BUDGET_BYTES, CALLER_SHARE_BYTES))
}

impl AnswerBudget {
    fn of(bytes: usize, caller_bytes: usize) -> AnswerBudget {
        let kib = |b: usize| u32::try_from(b >> 10).unwrap_or(u32::MAX);
        AnswerBudget {
            total: Arc::new(Semaphore::new(bytes >> 10)),
            total_kib: kib(bytes),
            by_caller: Arc::default(),
            caller_kib: kib(caller_bytes),
        }
    }

    /// A share of `kib` for `caller`'s answer, if both the caller's part and the whole have
    /// room. An answer larger than either waits for all of it, rather than for ever.
    fn take(&self, caller: &str, kib: u32) -> Option<Share> {
        let mut by_caller = self.by_caller.lock().unwrap_or_else(|p| p.into_inner());
        let held = by_caller.get(caller).copied().unwrap_or(0);
        let kib = kib.min(self.total_kib).min(self.caller_kib);
        if held + kib > self.caller_kib {
            return None;
        }
        let permit = Arc::clone(&self.total).try_acquire_many_owned(kib).ok()?;
        by_caller.insert(caller.to_string(), held + kib);
        Some(Share {
            _permit: permit,
            kib,
            caller: caller.to_string(),
            by_caller: Arc::clone(&self.by_caller),
        })
    }
}

/// One answer's part of the budget, given back when dropped.
struct Share {
    _permit: OwnedSemaphorePermit,
    kib: u32,
    caller: String,
    by_caller: Arc<std::sync::Mutex<HashMap<String, u32>>>,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut by_caller = self.by_caller.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = by_caller.get_mut(&self.caller) {
            *held = held.saturating_sub(self.kib);
            if *held == 0 {
                by_caller.remove(&self.caller);
            }
        }
    }
}

/// Middleware: a large answer is sent only with its share of the budget, held until its last
/// piece is taken; without room (in the whole, or in its caller's part), the caller is told
/// the gateway is busy (503). The caller is the one the request authenticated (`audited`).
pub(super) async fn hold_answer(
    State(budget): State<Arc<AnswerBudget>>,
    request: Request,
    next: Next,
) -> Response {
    let note = request
        .extensions()
        .get::<Connection>()
        .map(|c| Arc::clone(&c.note));
    let answer = next.run(request).await;
    let caller = note
        .and_then(|n| {
            let c = crate::audit::lock_note(&n).caller.clone()?;
            Some(format!("{}/{}/{}", c.org, c.role, c.name))
        })
        .unwrap_or_default();
    hold(&budget, &caller, answer).await
}

async fn hold(budget: &AnswerBudget, caller: &str, answer: Response) -> Response {
    // The answer to a POST reports what was already signed: it is never withheld.
    if answer.extensions().get::<NotHeld>().is_some() {
        return answer;
    }
    let Some(size) = answer.body().size_hint().exact().map(|n| n as usize) else {
        return answer;
    };
    if size < HELD_FROM_BYTES {
        return answer;
    }
    let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
    let Some(share) = budget.take(caller, kib) else {
        tracing::warn!(
            bytes = size,
            "TAXII answer not sent: answers in flight hold the budget, or this caller's part"
        );
        return super::answer::error(StatusCode::SERVICE_UNAVAILABLE, "Busy", Busy);
    };
    let (parts, body) = answer.into_parts();
    // Built in memory already: collecting it only takes the one frame out.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return super::answer::error(StatusCode::INTERNAL_SERVER_ERROR, "Server error", "");
    };
    Response::from_parts(parts, Body::new(Pieces::new(bytes, share)))
}

/// Marks an answer [`hold_answer`] lets through whatever the budget holds.
#[derive(Clone, Copy, Debug)]
pub(super) struct NotHeld;

/// An answer's bytes, given out a piece at a time, holding its share of the budget until
/// the last piece is taken (or the answer is dropped).
struct Pieces {
    rest: Bytes,
    permit: Option<Share>,
}

impl Pieces {
    fn new(rest: Bytes, permit: Share) -> Pieces {
        Pieces {
            rest,
            permit: Some(permit),
        }
    }
}

impl http_body::Body for Pieces {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self.permit = None;
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(PIECE_BYTES);
        let piece = self.rest.split_to(n);
        if self.rest.is_empty() {
            self.permit = None;
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_answer_holds_its_share_until_taken_and_none_is_sent_without_room() {
        let budget = AnswerBudget::of(300 << 10, 300 << 10);
        let text = "x".repeat(200 << 10);
        let answer = |text: &str| Response::new(Body::from(text.to_string()));
        let held = hold(&budget, "a", answer(&text)).await;
        assert_eq!(held.status(), StatusCode::OK);
        assert_eq!(budget.total.available_permits(), 100, "200 KiB held");
        // No room for a second: the caller is told the gateway is busy.
        let refused = hold(&budget, "b", answer(&text)).await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(refused.headers().contains_key("retry-after"));
        // The answer to a POST passes whatever the budget holds.
        let mut posted = answer(&text);
        posted.extensions_mut().insert(NotHeld);
        let posted = hold(&budget, "a", posted).await;
        assert_eq!(posted.status(), StatusCode::OK);
        // Small answers pass whatever the budget holds.
        let small = hold(&budget, "a", answer("{}")).await;
        assert_eq!(small.status(), StatusCode::OK);
        // Taken whole, in pieces, the share is given back.
        let mut body = held.into_body();
        let mut taken = Vec::new();
        let mut pieces = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= PIECE_BYTES);
            taken.extend_from_slice(&data);
            pieces += 1;
        }
        assert_eq!(taken, text.as_bytes());
        assert!(pieces > 1);
        assert_eq!(budget.total.available_permits(), 300);
        assert!(budget.by_caller.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_caller_that_never_reads_holds_only_its_part_of_the_budget() {
        let budget = AnswerBudget::of(1000 << 10, 250 << 10);
        let text = "x".repeat(100 << 10);
        let answer = || Response::new(Body::from(text.clone()));
        let stalled: Vec<Response> = vec![
            hold(&budget, "reader", answer()).await,
            hold(&budget, "reader", answer()).await,
        ];
        assert!(stalled.iter().all(|r| r.status() == StatusCode::OK));
        let third = hold(&budget, "reader", answer()).await;
        assert_eq!(
            third.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "past its part"
        );
        let other = hold(&budget, "analyst", answer()).await;
        assert_eq!(other.status(), StatusCode::OK, "others are served");
        drop(stalled);
        let again = hold(&budget, "reader", answer()).await;
        assert_eq!(again.status(), StatusCode::OK, "its part came back");
    }

    #[tokio::test]
    async fn a_full_pool_answers_busy_after_the_wait_and_serves_once_freed() {
        let pool = Arc::new(Semaphore::new(1));
        let held = permit(&pool).await.unwrap();
        let wait = Duration::from_millis(20);
        assert_eq!(permit_within(&pool, wait).await.err(), Some(Busy));
        drop(held);
        assert!(permit_within(&pool, wait).await.is_ok());
    }
}
