//! Each caller's share of the node's blocking reads (Lookup chunks, Query pages, Watch steps):
//! the blocking pool is shared with applying received entries and publishing, so reads queue
//! for a permit; and one service keeping many calls or streams going may hold only a few of
//! them, so it cannot take every permit and starve the others. A wait that goes on too long is
//! a clear `RESOURCE_EXHAUSTED`, not a call hanging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// Blocking reads that run at once, for all callers together.
pub const READS_AT_ONCE: usize = 16;
/// Of those, what one caller (a service certificate) may hold.
pub const READS_PER_CALLER: usize = 4;
/// Longest wait for a permit.
const PATIENCE: Duration = Duration::from_secs(30);
/// Callers remembered before idle ones are forgotten.
const REMEMBERED: usize = 1024;

/// The permits; cheap to share.
pub struct ReadShares {
    all: Arc<Semaphore>,
    callers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A read's permits, its caller's and the node's, given back when dropped.
pub struct ReadPermit {
    _caller: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl Default for ReadShares {
    fn default() -> ReadShares {
        ReadShares {
            all: Arc::new(Semaphore::new(READS_AT_ONCE)),
            callers: Mutex::new(HashMap::new()),
        }
    }
}

impl ReadShares {
    /// Waits for a permit of `caller` (its org and name) and then of the node.
    pub async fn acquire(&self, caller: &str) -> Result<ReadPermit, Status> {
        let mine = self.share_of(caller);
        let busy = |what: &str| {
            Status::resource_exhausted(format!(
                "{what} for {} s: retry later, or keep fewer calls and streams going at once",
                PATIENCE.as_secs()
            ))
        };
        let own = tokio::time::timeout(PATIENCE, mine.acquire_owned())
            .await
            .map_err(|_| {
                busy(&format!(
                    "this caller's {READS_PER_CALLER} reads at once were all taken"
                ))
            })?
            .map_err(|e| Status::internal(e.to_string()))?;
        let all = tokio::time::timeout(PATIENCE, Arc::clone(&self.all).acquire_owned())
            .await
            .map_err(|_| busy("the node's reads were all taken"))?
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(ReadPermit {
            _caller: own,
            _all: all,
        })
    }

    fn share_of(&self, caller: &str) -> Arc<Semaphore> {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        if callers.len() >= REMEMBERED && !callers.contains_key(caller) {
            // An idle share is one nobody holds or waits on: forgetting it loses nothing.
            callers.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(
            callers
                .entry(caller.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(READS_PER_CALLER))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_caller_holds_its_share_and_no_more_while_others_still_read() {
        let shares = ReadShares::default();
        let mut held = Vec::new();
        for _ in 0..READS_PER_CALLER {
            held.push(
                shares
                    .acquire("AU-AFP/soc")
                    .await
                    .expect("within its share"),
            );
        }
        let over = shares.acquire("AU-AFP/soc").await;
        let Err(status) = over else {
            panic!("a fifth read of one caller waits, then is refused");
        };
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(
            status.message().contains("this caller's 4 reads"),
            "{status:?}"
        );
        // Another caller reads meanwhile.
        let other = shares.acquire("AU-AFP/firewall").await;
        assert!(other.is_ok());
        drop(held.pop());
        assert!(
            shares.acquire("AU-AFP/soc").await.is_ok(),
            "a permit given back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_node_wide_permits_bound_every_caller_together() {
        let shares = ReadShares::default();
        let mut held = Vec::new();
        for i in 0..READS_AT_ONCE {
            held.push(shares.acquire(&format!("ORG-{i}/svc")).await.expect("free"));
        }
        let Err(status) = shares.acquire("NZ-POL/svc").await else {
            panic!("the node's permits are all taken");
        };
        assert!(status.message().contains("the node's reads"), "{status:?}");
    }
}
