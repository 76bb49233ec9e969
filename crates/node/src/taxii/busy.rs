//! Bounded waits for the gateway's worker pools: a request that finds the pool busy for
//! [`WAIT_FOR_WORK`] is answered 503 with `Retry-After`, not queued without end (a waiting
//! request holds its connection's stream and counts as activity, so nothing else ends it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a request waits for a worker (pages take tens of milliseconds, a POST of 1,000
/// objects under 100 ms: a wait this long means the gateway is overloaded).
pub(super) const WAIT_FOR_WORK: Duration = Duration::from_secs(10);

/// Seconds a client is told to wait before it tries again.
pub(super) const RETRY_AFTER_SECS: u64 = 5;

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

/// A permit of a borrowed pool, waited for at most [`WAIT_FOR_WORK`].
pub(super) async fn borrowed_permit(
    pool: &Semaphore,
) -> Result<tokio::sync::SemaphorePermit<'_>, Busy> {
    match tokio::time::timeout(WAIT_FOR_WORK, pool.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) | Err(_) => Err(Busy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
