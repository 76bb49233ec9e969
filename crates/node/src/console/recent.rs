//! The console's last snapshot, shared by the pages asked for while it is fresh: a snapshot's
//! health rows read up to `admin::health::RECENT_SCAN_CAP` headers per member, and every open
//! console polls every two seconds, so each poll making its own would grow with the tabs open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A value made for a key, served again while fresh and made for that same key.
pub struct Recent<K, T> {
    fresh_for: Duration,
    last: Mutex<Option<Made<K, T>>>,
    /// Values made so far: a caller that waited for another's making takes its value, however
    /// long the making took.
    made: AtomicU64,
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
            made: AtomicU64::new(0),
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
        let before = self.made.load(Ordering::Acquire);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(made) = last.as_ref() {
            let fresh = now.saturating_duration_since(made.at) < self.fresh_for;
            let made_meanwhile = self.made.load(Ordering::Acquire) != before;
            if made.key == key && (fresh || made_meanwhile) {
                return Ok(Arc::clone(&made.value));
            }
        }
        let value = Arc::new(make()?);
        *last = Some(Made {
            at: now,
            key,
            value: Arc::clone(&value),
        });
        self.made.fetch_add(1, Ordering::Release);
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

    #[test]
    fn a_caller_that_waited_for_a_slow_making_takes_its_value() {
        let recent: Arc<Recent<u64, u32>> = Arc::new(Recent::new(Duration::from_millis(1)));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
        let maker = {
            let recent = Arc::clone(&recent);
            std::thread::spawn(move || {
                recent.get_or_make(1, Instant::now(), || {
                    started_tx.send(()).unwrap();
                    finish_rx.recv().unwrap();
                    Ok::<_, ()>(7)
                })
            })
        };
        started_rx.recv().unwrap();
        let (asking_tx, asking_rx) = std::sync::mpsc::channel();
        let waiter = {
            let recent = Arc::clone(&recent);
            std::thread::spawn(move || {
                // Asked long after the making began: stale by its age, taken all the same.
                let asked = Instant::now() + Duration::from_secs(10);
                asking_tx.send(()).unwrap();
                recent.get_or_make(1, asked, || Ok::<_, ()>(99))
            })
        };
        // The waiter is then blocked on the making (nothing else runs between its message and
        // its call).
        asking_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        finish_tx.send(()).unwrap();
        assert_eq!(*maker.join().unwrap().unwrap(), 7);
        assert_eq!(*waiter.join().unwrap().unwrap(), 7);
    }
}
