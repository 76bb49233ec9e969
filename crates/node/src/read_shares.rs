//! Each caller's share of a listener's blocking reads (the API's Lookup chunks, Query pages
//! and Watch steps; the TAXII gateway's pages and plans): the blocking pool is shared with
//! applying received entries and publishing, so reads queue for a permit; and one caller
//! keeping many requests going may hold only a few of them, so it cannot take every permit
//! and starve the others. A wait that goes on too long is a clear refusal, not a request
//! hanging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The API's blocking reads that run at once, for all callers together.
pub const READS_AT_ONCE: usize = 16;
/// Of those, what one API caller (a service certificate) may hold.
pub const READS_PER_CALLER: usize = 4;
/// The API's longest wait for a permit.
const API_PATIENCE: Duration = Duration::from_secs(30);
/// Callers remembered before idle ones are forgotten.
const REMEMBERED: usize = 1024;

/// How many reads run at once, and how long one waits for its turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub at_once: usize,
    pub per_caller: usize,
    pub patience: Duration,
}

/// The API's bounds.
pub const API: Bounds = Bounds {
    at_once: READS_AT_ONCE,
    per_caller: READS_PER_CALLER,
    patience: API_PATIENCE,
};

/// Why a read got no permit in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Shortage {
    #[error("this caller's {0} reads at once were all taken for {1} s: retry later, or keep fewer calls and streams going at once")]
    Caller(usize, u64),
    #[error("the node's reads were all taken for {0} s: retry later")]
    Node(u64),
}

impl From<Shortage> for tonic::Status {
    fn from(s: Shortage) -> tonic::Status {
        tonic::Status::resource_exhausted(s.to_string())
    }
}

/// The permits; cheap to share.
pub struct ReadShares {
    bounds: Bounds,
    all: Arc<Semaphore>,
    callers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A read's permits, its caller's and the node's, given back when dropped.
pub struct ReadPermit {
    _caller: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl Default for ReadShares {
    /// The API's shares.
    fn default() -> ReadShares {
        ReadShares::new(API)
    }
}

impl ReadShares {
    pub fn new(bounds: Bounds) -> ReadShares {
        ReadShares {
            bounds,
            all: Arc::new(Semaphore::new(bounds.at_once)),
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a permit of `caller` (a name no other caller has: its org, kind and name)
    /// and then of the node.
    pub async fn acquire(&self, caller: &str) -> Result<ReadPermit, Shortage> {
        let mine = self.share_of(caller);
        let Bounds {
            per_caller,
            patience,
            ..
        } = self.bounds;
        let secs = patience.as_secs();
        // One deadline for both waits: a read waits at most `patience` in all.
        let deadline = tokio::time::Instant::now() + patience;
        // Neither semaphore is ever closed: an error is as good as no permit in time.
        let own = tokio::time::timeout_at(deadline, mine.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(Shortage::Caller(per_caller, secs))?;
        let all = tokio::time::timeout_at(deadline, Arc::clone(&self.all).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(Shortage::Node(secs))?;
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
        let per_caller = self.bounds.per_caller;
        Arc::clone(
            callers
                .entry(caller.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(per_caller))),
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
        assert_eq!(
            over.err(),
            Some(Shortage::Caller(READS_PER_CALLER, 30)),
            "a fifth read of one caller waits, then is refused"
        );
        let status = tonic::Status::from(Shortage::Caller(READS_PER_CALLER, 30));
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
        assert_eq!(
            shares.acquire("NZ-POL/svc").await.err(),
            Some(Shortage::Node(30)),
            "the node's permits are all taken"
        );
    }
}
