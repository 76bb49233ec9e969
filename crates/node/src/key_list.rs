//! The key list a node verifies with: replaced whole when its file changes (or a caller hands
//! a new one), and then the entries that waited for a key (see `unverified`) are verified again.
//! A list that lacks the node's own signing key is refused: every member verifies the node's
//! entries with the same list, so signing with an unlisted key would publish entries that no
//! member accepts.

use std::sync::Arc;

use intelmesh_core::verify::{KeyLookup, KeyRegistry};
use intelmesh_core::{StaticKeys, VerifyError};

use crate::state::{own_key_listed, NodeError, NodeState};

impl NodeState {
    /// Replaces the key list (in static mode it must still hold this node's own key; in
    /// roster mode the roster decides, and a node it does not admit yet only cannot publish),
    /// then verifies again the entries that waited for a key. Returns how many of those were
    /// taken in.
    pub async fn replace_keys(self: &Arc<Self>, keys: StaticKeys) -> Result<usize, NodeError> {
        if self.follow().is_none() {
            own_key_listed(&keys, &self.signer())?;
        }
        let members_before = self.keys().members().clone();
        let me = Arc::clone(self);
        let forgot_refusals = tokio::task::spawn_blocking(move || me.install_keys(keys))
            .await
            .map_err(|e| NodeError::Join(e.to_string()))?;
        // A new key list may name a new encryption key of this node (a rotation it made):
        // its files are read again, so what is sealed to the new key opens.
        match self.reload_decryption_keys() {
            Ok(true) => self.reopen_sealed_now_and_later(),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "encryption keys not reloaded; the old ones stay")
            }
        }
        let taken = self.recheck_unverified().await;
        // Held entries the new list dropped count as dropped from the hold queue: links
        // restart (when not done lately) so peers send them again, should a later list let
        // their key sign; after the recheck, as below, so they resend from the new heads.
        self.resend_if_hold_expired();
        // After the recheck, whose take of the queue drops (and notes) what waited past its
        // hour: noted before, those would never be sent again.
        let keys = self.keys();
        let new_member = keys.members().iter().any(|m| !members_before.contains(m));
        let dropped = (self.unverified)
            .clear_dropped(|origin, key| keys.has_key_id(origin, *key), new_member);
        if forgot_refusals && !dropped {
            // Entries refused past their key's end came on links that took the refusal as
            // final: this list lets their key sign them, and only a restart brings them.
            tracing::info!("entries refused for their key's range are signable under the new key list: links restart so peers send them again");
            self.unverified.ask_resend();
        }
        if dropped {
            // After the recheck, so a peer resending from this node's new heads does not send
            // again what the recheck took in.
            tracing::warn!("entries that waited for a key were dropped for lack of room: links restart so peers send them again");
            self.unverified.ask_resend();
        }
        taken
    }

    /// Puts `keys` in force, and drops the held entries (waiting for a gap below them) whose
    /// key they do not let sign at their seq (ended there, or no longer listed): judged under the list in force when they
    /// arrived, once their gap closed they would be appended with no key check (a key the
    /// roster ended, whose thief chained an entry onto the member's next key's). Under the
    /// cut lock, so no apply judged under the old list runs meanwhile, and every one after
    /// sees both the new list and the queue without them.
    /// Whether it lets the key of an entry refused lately for its key's range sign it.
    fn install_keys(&self, keys: StaticKeys) -> bool {
        let _cutting =
            (self.follow()).map(|f| f.cutting.write().unwrap_or_else(|p| p.into_inner()));
        if self.follow().is_none() {
            self.set_keys(keys);
        } else {
            // A rotation of this node's key stays laid over the roster's keys until a version
            // lists the new key.
            self.set_keys_with_pending(keys);
        }
        let now = self.keys();
        let forgot_refusals = self.forget_refused(now.as_ref());
        // Kept only where the list lets the entry's own key sign its seq: a key ended there,
        // or gone from the list (a static list edited), drops it.
        let dropped = self.store.drop_held_where(|e| {
            let h = e.header();
            !matches!(
                now.key(&h.origin, &h.key_id, h.seq),
                KeyLookup::Valid(k) if k.as_bytes() == e.key().as_bytes()
            )
        });
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "dropped entries held for a gap that the new key list does not let their key sign"
            );
        }
        forgot_refusals
    }

    /// Reads the key list file again and applies it if it changed.
    pub async fn reload_keys(self: &Arc<Self>) -> anyhow::Result<Option<usize>> {
        let Some(path) = self.cfg.keys.clone() else {
            anyhow::bail!("no key list file: this node takes its keys from the roster");
        };
        let keys = tokio::task::spawn_blocking(move || crate::keys::load_registry(&path)).await??;
        if keys == *self.keys() {
            return Ok(None);
        }
        let taken = self.replace_keys(keys).await?;
        tracing::info!(
            members = self.keys().members().len(),
            verified_now = taken,
            "key list changed"
        );
        Ok(Some(taken))
    }

    /// Verifies the waiting entries with the current keys; applies those that pass, keeps the
    /// ones whose key is still unknown. Entries proved bad are dropped with a warning.
    pub async fn recheck_unverified(self: &Arc<Self>) -> Result<usize, NodeError> {
        let waiting = self.unverified.take_all();
        if waiting.is_empty() {
            return Ok(0);
        }
        let checked = self.verify_received(waiting).await?;
        for e in &checked.refused {
            tracing::warn!(error = %e, "an entry that waited for its key does not verify");
        }
        self.resend_if_out_of_range(&checked.refused);
        let report = self.apply_checked(checked).await?;
        // A roster version judged ahead of its predecessor here came on no link to restart.
        if report
            .refused
            .iter()
            .any(|e| matches!(e, VerifyError::RosterVersionAhead { .. }))
        {
            self.unverified.ask_resend();
        }
        Ok(report.appended + report.held + report.duplicates)
    }
}

impl NodeState {
    /// Entries that waited for their key and are refused for its seq range may be signable
    /// once this node follows its roster further (a hub made the roster publisher in a version
    /// still to follow, a reinstatement): the peer counted them delivered, so links restart
    /// and peers send them again.
    pub(crate) fn resend_if_out_of_range(&self, refused: &[VerifyError]) {
        let out_of_range = refused
            .iter()
            .any(|e| matches!(e, VerifyError::KeyNotValidAtSeq { .. }));
        if out_of_range {
            tracing::info!("entries that waited for a key are out of its range for now: links restart so peers send them again");
            self.unverified.ask_resend();
        }
    }
}

/// How often the key list file is looked at for changes.
pub const KEY_LIST_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reloads the key list whenever its file changes (size or modification time), until the node
/// stops. A list that does not parse, or lacks this node's own key, is refused with an error in
/// the log and the old list stays.
pub async fn watch(state: Arc<NodeState>) {
    let Some(path) = state.cfg.keys.clone() else {
        return;
    };
    let stamp = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let mut seen = stamp(&path);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(KEY_LIST_POLL) => {}
            _ = state.stopped() => return,
        }
        let now = stamp(&path);
        if now == seen {
            continue;
        }
        seen = now;
        if let Err(e) = state.reload_keys().await {
            tracing::error!(file = %path.display(), error = format!("{e:#}"), "key list not reloaded; the old one stays");
        }
    }
}
