//! The own-log mark: the highest seq this node has signed, kept beside its signing key rather
//! than in its store, and the rule that the node signs nothing while its store holds less of
//! its own log than that.
//!
//! A store moved aside (as a store of an older layout must be), lost with its disk, or
//! restored from an older backup holds less of the node's own log than its peers do. Signing
//! then would put a second, different entry at a seq they already hold, and every member would
//! hold the node's log for a fork, for good. With the mark, the node instead waits for its
//! peers to send its own entries back (they sync every origin's log, its own included).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::state::NodeError;

/// The mark of one node; cheap to check on every publication.
#[derive(Debug)]
pub struct OwnMark {
    path: PathBuf,
    signed: AtomicU64,
    /// Whether a failed write was logged already (a read-only key directory fails every time).
    warned: AtomicBool,
}

impl OwnMark {
    /// The mark of the node whose signing key is at `key` (`signing.key` →
    /// `signing.key.signed`). A missing mark is 0; an unreadable one is 0 too, logged: refusing
    /// to start would stop a node over a file that only guards against a lost store.
    pub fn beside(key: &Path) -> OwnMark {
        let mut name = key.file_name().unwrap_or_default().to_os_string();
        name.push(".signed");
        let path = key.with_file_name(name);
        let signed = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "own-log mark unreadable: taken as 0");
                0
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "own-log mark unreadable: taken as 0");
                0
            }
        };
        OwnMark {
            path,
            signed: AtomicU64::new(signed),
            warned: AtomicBool::new(false),
        }
    }

    /// The highest seq the node is known to have signed.
    pub fn signed(&self) -> u64 {
        self.signed.load(Ordering::Acquire)
    }

    /// Refuses to sign while the store holds the own log only up to `held`, below the mark.
    pub fn check(&self, held: u64) -> Result<(), NodeError> {
        let signed = self.signed();
        if held >= signed {
            return Ok(());
        }
        Err(NodeError::OwnLogBehind {
            held,
            signed,
            mark: self.path.display().to_string(),
        })
    }

    /// Lowers the mark to `seq`: the roster cut the own log there (a compromise report ends
    /// the key everywhere, this node included), and the next entry is signed at `seq + 1`.
    pub fn cut_to(&self, seq: u64) {
        if seq < self.signed() {
            self.write(seq);
        }
    }

    /// Moves the mark to `seq`, once the entries up to it are durable in the store (callers
    /// hold the publish lock, so marks only grow). Written without a sync: after a crash the
    /// store, synced before every acknowledgement, holds at least what a lost write would have
    /// said; the mark matters when the store is gone, long after the OS wrote it.
    pub fn record(&self, seq: u64) {
        if seq > self.signed() {
            self.write(seq);
        }
    }

    fn write(&self, seq: u64) {
        self.signed.store(seq, Ordering::Release);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let written = std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the own-log mark: if this node's store is lost, it may sign a seq its peers hold (a fork)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_behind_the_mark_may_not_sign_until_it_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("signing.key");
        let mark = OwnMark::beside(&key);
        assert_eq!(mark.signed(), 0);
        assert!(mark.check(0).is_ok(), "a node that never signed");
        mark.record(3);
        mark.record(2);
        let again = OwnMark::beside(&key);
        assert_eq!(again.signed(), 3, "kept across a restart, never lowered");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("signing.key.signed")).unwrap(),
            "3\n"
        );
        let err = again.check(0).unwrap_err().to_string();
        assert!(
            err.contains("up to seq 0") && err.contains("up to seq 3"),
            "{err}"
        );
        assert!(again.check(2).is_err());
        assert!(again.check(3).is_ok() && again.check(4).is_ok());
        again.cut_to(1);
        assert_eq!(
            OwnMark::beside(&key).signed(),
            1,
            "a cut of the own log lowers it"
        );
        // An unreadable mark guards nothing, and stops nothing.
        std::fs::write(dir.path().join("signing.key.signed"), "garbage").unwrap();
        assert_eq!(OwnMark::beside(&key).signed(), 0);
    }
}
