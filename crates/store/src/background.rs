//! `Background`: a store's low-priority helper thread (the presence filter's fill, the lookup
//! table's builder), told to stop and joined when dropped, so a closed store releases its files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Runs `work` on a thread named `name` at the lowest priority; `work` should return soon
    /// once the flag it is given is set. If no thread can be started, logs `what` is not
    /// running and why.
    pub(crate) fn spawn(
        name: &str,
        what: &str,
        work: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                lower_priority();
                work(&stopping);
            });
        match thread {
            Ok(t) => Background {
                stop,
                thread: Some(t),
            },
            Err(e) => {
                tracing::warn!(error = %e, "{what}");
                Background { stop, thread: None }
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The helpers yield the cores to the node they belong to: at a restart they are starting,
/// and until a helper is done reads are merely as slow as without it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain FFI call with no pointers; on Linux, PRIO_PROCESS with id 0 sets the nice
    // value of the calling thread alone.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}
