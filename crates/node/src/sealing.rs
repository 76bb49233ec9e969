//! Sealed payloads at this node: its encryption keys, opening the sealed entries it is a reader
//! of as they arrive, and sealing its own restricted entries to their readers.
//!
//! A node that is no reader (a hub relaying between two agencies) verifies, stores and forwards
//! the envelope without ever holding the payload; a reader opens it before the store sees it,
//! so the index holds the plaintext and the log the envelope (`intelmesh_store` keeps what it
//! opened to beside it).

use std::sync::Arc;

use intelmesh_core::opened::OpenFailure;
use intelmesh_core::sealed::{DecryptionKeys, EncKeyId, OpenError};
use intelmesh_core::sign::ReaderKeys;
use intelmesh_core::verify::verify_entry;
use intelmesh_core::{OrgId, VerifiedEntry};
use intelmesh_store::reopen::Mark;
use rayon::prelude::*;

use crate::config::NodeConfig;
use crate::metrics::Refusal;
use crate::state::{NodeError, NodeState};

/// How long after a key change the marked entries are tried a second time: longer than a
/// batch takes from being opened to being stored.
const REOPEN_AGAIN_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Marked entries read, checked and opened at a time by [`NodeState::reopen_sealed`].
const REOPENED_AT_ONCE: usize = 1024;

/// The key id an entry was sealed to for this node, when it did not open for want of that key.
fn missing_key(f: &OpenFailure) -> Option<EncKeyId> {
    match f {
        OpenFailure::Open {
            error: OpenError::NoKey(id),
            ..
        } => Some(*id),
        _ => None,
    }
}

/// Whether an entry did not open for want of a key this node may hold later (sealed to a key
/// id it does not hold now).
fn for_lack_of_key(f: &OpenFailure) -> bool {
    missing_key(f).is_some()
}

/// The encryption keys the config names (none without `encryption_key`).
pub(crate) fn load_decryption(cfg: &NodeConfig) -> Result<DecryptionKeys, NodeError> {
    match &cfg.encryption_key {
        None => Ok(DecryptionKeys::default()),
        Some(path) => crate::encryption_keys::load(path)
            .map_err(|e| NodeError::EncryptionKey(format!("{e:#}"))),
    }
}

impl NodeState {
    /// This org's encryption keys as they are now.
    pub fn decryption_keys(&self) -> Arc<DecryptionKeys> {
        Arc::clone(&self.decryption.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Reads the key files again (after a rotation put a new key in place); says whether they
    /// hold other keys than before (what did not open may open now: [`Self::reopen_sealed`]).
    pub fn reload_decryption_keys(&self) -> Result<bool, NodeError> {
        let keys = load_decryption(&self.cfg)?;
        let mut held = self.decryption.write().unwrap_or_else(|p| p.into_inner());
        let ids = |k: &DecryptionKeys| k.ids().cloned().collect::<Vec<_>>();
        let changed = ids(&held) != ids(&keys);
        *held = Arc::new(keys);
        Ok(changed)
    }

    /// Opens, with the keys this node holds now, the sealed entries it reads that did not
    /// open when they came (its key missing or unreadable then: the store marked them), and
    /// folds them into the index; returns how many opened. One that still does not open
    /// stays marked, for the next keys. Run at start and when the key files hold new keys,
    /// never on what a peer sends (each call reads every mark).
    pub fn reopen_sealed(&self) -> Result<usize, NodeError> {
        let keys = self.decryption_keys();
        let registry = self.keys();
        let cfg = intelmesh_core::VerifyConfig::at(intelmesh_core::now_unix_ms());
        let (mut after, mut opened) = (None::<(OrgId, u64)>, 0);
        loop {
            if self.is_stopping() {
                break;
            }
            let from = after.as_ref().map(|(o, s)| (o, *s));
            let (marked, last) = self.store.unopened(from, REOPENED_AT_ONCE)?;
            let (now_open, never): (Vec<Option<VerifiedEntry>>, Vec<Option<Mark>>) = marked
                .into_par_iter()
                .filter_map(|u| {
                    let mark = (u.origin.clone(), u.seq);
                    let entry = verify_entry(u.raw, registry.as_ref(), &cfg).ok()?;
                    Some(match entry.open_as(&self.org, &keys) {
                        Ok(e) => (Some(e), None),
                        // Sealed to a key this node may hold later: tried again then.
                        Err(f) if for_lack_of_key(&f.1) => (None, None),
                        // An envelope that opens with no key: its mark is dropped, so a
                        // member sending such entries does not make every later try longer.
                        Err(_) => (None, Some(mark)),
                    })
                })
                .unzip();
            let never: Vec<Mark> = never.into_iter().flatten().collect();
            self.store.forget_unopened(&never)?;
            opened += (self.store).apply_opened(now_open.into_iter().flatten().collect())?;
            match last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        if opened > 0 {
            tracing::info!(opened, "sealed entries that did not open before opened now");
            self.bump();
        }
        Ok(opened)
    }

    /// [`Self::reopen_sealed`] on a blocking thread, its failure logged: for async callers
    /// that read new keys.
    pub fn reopen_sealed_in_background(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = me.reopen_sealed() {
                tracing::warn!(error = %e, "sealed entries that did not open before were not tried again");
            }
        });
    }

    /// [`Self::reopen_sealed_in_background`] now and once more a little later: a batch
    /// opened with the keys held before a key change may be stored (and its entries marked)
    /// only after the first pass read the marks.
    pub fn reopen_sealed_now_and_later(self: &Arc<Self>) {
        self.reopen_sealed_in_background();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(REOPEN_AGAIN_AFTER) => me.reopen_sealed_in_background(),
                _ = me.stopped() => {}
            }
        });
    }

    /// Opens, on all cores, the sealed entries of `good` this node is a reader of. One it
    /// cannot open stays in the batch unopened (it is a valid link of its origin's chain,
    /// which every relay accepted) and is logged and counted.
    pub(crate) fn open_received(self: &Arc<Self>, good: Vec<VerifiedEntry>) -> Vec<VerifiedEntry> {
        if !good.iter().any(|e| e.is_sealed() && e.is_reader(&self.org)) {
            return good;
        }
        let keys = self.decryption_keys();
        let opened: Vec<Result<VerifiedEntry, Box<(VerifiedEntry, OpenFailure)>>> = good
            .into_par_iter()
            .map(|e| e.open_as(&self.org, &keys))
            .collect();
        // Sealed to a key this node does not hold yet: its operator rotated the key and the
        // roster listing it reached the sender first (the node rereads its files only when it
        // follows that version). Reread once for the batch, every such entry opens; kept
        // unopened, it would stay so for good. Only for the key the roster lists for this
        // node: a key id anyone may make up must not make every batch read the key files (one
        // the roster lists later is read when this node follows that version).
        let listed = self.keys().current(&self.org).map(|k| k.id());
        let any_listed_missing = opened.iter().any(|r| {
            r.as_ref()
                .is_err_and(|f| listed.is_some() && missing_key(&f.1) == listed)
        });
        // Keys new since the marked entries were tried may open them too: tried in the
        // background, once per change of the key files (a peer's batch alone changes nothing
        // there).
        let any_missing = opened
            .iter()
            .any(|r| r.as_ref().is_err_and(|f| for_lack_of_key(&f.1)));
        let keys = match any_listed_missing.then(|| self.reload_decryption_keys()) {
            Some(Ok(changed)) => {
                if changed {
                    self.reopen_sealed_in_background();
                }
                Some(self.decryption_keys())
            }
            // Keys read again meanwhile (this node followed the version listing its new key
            // while the batch was being opened): tried again with them.
            _ if any_missing && !Arc::ptr_eq(&keys, &self.decryption_keys()) => {
                Some(self.decryption_keys())
            }
            _ => None,
        };
        opened
            .into_iter()
            .map(|r| match (r, &keys) {
                (Ok(e), _) => e,
                (Err(failed), Some(keys)) if for_lack_of_key(&failed.1) => {
                    self.open_one(failed.0, keys)
                }
                (Err(failed), _) => self.kept_unopened(*failed),
            })
            .collect()
    }

    /// Opens one entry with `keys`; kept unopened if it does not open.
    fn open_one(&self, entry: VerifiedEntry, keys: &DecryptionKeys) -> VerifiedEntry {
        entry
            .open_as(&self.org, keys)
            .unwrap_or_else(|failed| self.kept_unopened(*failed))
    }

    /// An entry that does not open, logged and counted: a valid link of its origin's chain,
    /// which every relay accepted, kept without what it would open to.
    fn kept_unopened(&self, failed: (VerifiedEntry, OpenFailure)) -> VerifiedEntry {
        let (entry, why) = failed;
        // Sealed to a key id the roster does not list for this node: anyone may send those,
        // as many as they like, so they are counted (and logged at debug), not a warning each.
        let listed = self.keys().current(&self.org).map(|k| k.id());
        match missing_key(&why) {
            Some(id) if Some(id) != listed => {
                tracing::debug!(error = %why, "a sealed entry for this node is sealed to a key it does not hold; kept unopened")
            }
            _ => {
                // At most a line per interval: a member may send such entries by the thousand.
                let gate =
                    crate::rotation::lock(&self.unopened_lines).pass(1, std::time::Instant::now());
                if let Some(count) = gate {
                    tracing::warn!(error = %why, count, "a sealed entry for this node does not open; kept unopened (count: since the last such line)")
                }
            }
        }
        self.metrics.refused(Refusal::Unopened, 1);
        entry
    }

    /// Opens this node's own sealed entries (just signed): a failure is a bug, not the
    /// network's doing, and stops the publication.
    pub(crate) fn open_own(
        &self,
        entries: Vec<VerifiedEntry>,
    ) -> Result<Vec<VerifiedEntry>, NodeError> {
        let keys = self.decryption_keys();
        entries
            .into_par_iter()
            .map(|e| {
                e.open_as(&self.org, &keys)
                    .map_err(|f| NodeError::OwnOpen(f.1))
            })
            .collect()
    }
}
