//! The console's last snapshot, shared by the pages asked for while it is fresh: a snapshot's
//! health rows read up to `admin::health::RECENT_SCAN_CAP` headers per member, and every open
//! console polls every two seconds, so each poll making its own would grow with the tabs open.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A value made for a key, served again while fresh and made for that same key.
pub struct Recent<K, T> {
    fresh_for: Duration,
    last: Mutex<Option<Made<K, T>>>,
}

struct Made<K, T> {
    at: Instant,
    key: K,
    value: Arc<T>,
}

impl<K: PartialEq, T> Recent<K, T> {
    pub fn new(fresh_for: Duration) -> Recent<K, T> {
        Recent {
            fresh_for,
            last: Mutex::new(None),
        }
    }

    /// The value made for `key` less than `fresh_for` before `now`; else `make`'s, kept
    /// (an error is not). Callers wait for one another, so concurrent polls make one value.
    pub fn get_or_make<E>(
        &self,
        key: K,
        now: Instant,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(made) = last.as_ref() {
            if made.key == key && now.saturating_duration_since(made.at) < self.fresh_for {
                return Ok(Arc::clone(&made.value));
            }
        }
        let value = Arc::new(make()?);
        *last = Some(Made {
            at: now,
            key,
            value: Arc::clone(&value),
        });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_made_again_once_stale_or_for_another_key_and_errors_are_not_kept() {
        let recent: Recent<u64, u32> = Recent::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let made = std::cell::Cell::new(0);
        let make = || -> Result<u32, String> {
            made.set(made.get() + 1);
            Ok(made.get())
        };
        assert_eq!(*recent.get_or_make(7, t0, make).unwrap(), 1);
        let soon = t0 + Duration::from_millis(999);
        assert_eq!(*recent.get_or_make(7, soon, make).unwrap(), 1);
        // A new roster version is never shown from an older one's snapshot.
        assert_eq!(*recent.get_or_make(8, soon, make).unwrap(), 2);
        let later = soon + Duration::from_secs(1);
        assert_eq!(*recent.get_or_make(8, later, make).unwrap(), 3);
        let failed = recent.get_or_make(8, later + Duration::from_secs(2), || {
            Err::<u32, _>("store".to_string())
        });
        assert_eq!(failed.unwrap_err(), "store");
        assert_eq!(*recent.get_or_make(8, later, make).unwrap(), 3);
        assert_eq!(made.get(), 3);
    }
}
