//! A running node taking a new signing key (see `rotation` for the files and the overlay): the
//! switch under the publish lock, the poll for `<signing_key>.next`, and the same switch done
//! on a stopped node's store by `intelmesh node rotate-key`.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use intelmesh_core::{KeyId, Signer, StaticKeys};
use intelmesh_store::{DiskStore, Store, StoreConfig, StoreError};

use crate::config::NodeConfig;
use crate::rotation::{
    lock, read_key, resume, switch_key, PendingKey, Rotated, RotationError, RotationFiles,
};
use crate::state::{NodeError, NodeState};

impl NodeState {
    /// Signs with `new` from the seq after the current head, without a restart: under the
    /// publish lock, writes the rotation request (old and new key sign it, `last_seq` = head),
    /// keeps the old key, moves `.next` over the configured key, and adds the new key to the
    /// key set as pending until a roster version lists it. Refused in static mode, before the
    /// roster admits the current key, and while an earlier rotation is still pending.
    pub async fn rotate_key(self: &Arc<Self>, new: SigningKey) -> Result<Rotated, NodeError> {
        // To its end even if the caller goes away: the key files must never be switched
        // while this process goes on signing with the old key.
        let me = Arc::clone(self);
        crate::own_entries::run_to_end(async move { me.switch_signing_key(new).await }).await
    }

    async fn switch_signing_key(self: &Arc<Self>, new: SigningKey) -> Result<Rotated, NodeError> {
        let roster = self.roster().ok_or(RotationError::StaticMode)?;
        let files = RotationFiles::of(&self.cfg.signing_key);
        let _own = self.own.lock().await;
        if let Some(p) = lock(&self.pending_key).as_ref() {
            return Err(RotationError::EarlierPending {
                key_id: KeyId::of(&p.new_key),
                first_seq: p.first_seq(),
                request: files.request(),
            }
            .into());
        }
        self.may_sign(self.keys().as_ref())?;
        let old = self.signer();
        let outgoing = Arc::clone(&old);
        let me = Arc::clone(self);
        let next = new.clone();
        let rotated = tokio::task::spawn_blocking(move || -> Result<Rotated, NodeError> {
            let head = me.store.head(&me.org)?.map_or(0, |h| h.seq);
            // The old key ends at the head: a store behind what the node signed would end it
            // before entries it signed, which every peer holds.
            me.own_mark.check(head)?;
            let now = intelmesh_core::now_unix_ms();
            Ok(switch_key(
                &files,
                old.org(),
                old.signing_key(),
                &next,
                head,
                now,
            )?)
        })
        .await
        .map_err(|e| NodeError::Join(e.to_string()))??;
        if let Some(follow) = self.follow() {
            follow.keep_authority_candidate(&outgoing);
        }
        self.set_signer(Signer::new(self.org.clone(), new));
        {
            let mut pending = lock(&self.pending_key);
            let mut keys = StaticKeys::clone(&self.keys());
            rotated.pending.overlay(&mut keys);
            self.set_keys(keys);
            *pending = Some(rotated.pending.clone());
        }
        tracing::warn!(
            old_key = %KeyId::of(&rotated.pending.old_key),
            new_key = %KeyId::of(&rotated.pending.new_key),
            last_seq = rotated.pending.last_seq,
            roster_version = roster.version(),
            request = %rotated.request.display(),
            "signing key rotated: send the request to the hub operators (`admin members rotate-key --request FILE`); peers hold the new entries until the roster lists the key"
        );
        Ok(rotated)
    }

    /// Puts `keys` (a roster's key set) in force with the pending rotation laid over it, and
    /// drops the pending rotation once the roster lists its key.
    pub(crate) fn set_keys_with_pending(&self, mut keys: StaticKeys) {
        let mut pending = lock(&self.pending_key);
        if let Some(p) = pending.as_ref() {
            if !p.overlay(&mut keys) {
                tracing::info!(key = %KeyId::of(&p.new_key), "the roster lists the rotated signing key");
                *pending = None;
            }
        }
        self.set_keys(keys);
    }

    /// The rotation this node made that the roster does not list yet.
    pub fn pending_key(&self) -> Option<PendingKey> {
        lock(&self.pending_key).clone()
    }
}

/// Takes `<signing_key>.next` whenever it appears (roster mode), until the node stops. A key
/// that cannot be taken stays where it is, with the reason logged at ERROR (once per reason).
pub async fn watch(state: Arc<NodeState>) {
    if state.roster().is_none() {
        return;
    }
    let files = RotationFiles::of(&state.cfg.signing_key);
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::key_list::KEY_LIST_POLL) => {}
            _ = state.stopped() => return,
        }
        let next = files.next();
        if !next.exists() {
            continue;
        }
        let taken = match load_next(&files) {
            Ok(key) => state.rotate_key(key).await.map(|_| ()),
            Err(e) => Err(e.into()),
        };
        match taken {
            Ok(()) => last_error.clear(),
            Err(e) => {
                let line = e.to_string();
                if line != last_error {
                    tracing::error!(file = %next.display(), error = %line, "new signing key not taken; it stays where it is");
                    last_error = line;
                }
            }
        }
    }
}

fn load_next(files: &RotationFiles) -> Result<SigningKey, RotationError> {
    let next = files.next();
    crate::private_files::check_key_file(&next).map_err(|e| RotationError::KeyFile {
        path: next.clone(),
        reason: e.to_string(),
    })?;
    read_key(&next)
}

/// Why the switch could not be done on the store itself.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// A node holds the store: it takes `.next` itself.
    #[error("the node is running (its store {0} is in use)")]
    NodeRunning(std::path::PathBuf),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The switch of a stopped node, done with the same code on its store's head: the store is
/// opened (so no node can start meanwhile), the roster followed as the node would, and
/// `.next` taken. [`OfflineError::NodeRunning`] when a node holds the store.
pub async fn rotate_offline(cfg: NodeConfig) -> Result<Rotated, OfflineError> {
    let org = cfg.org_id()?;
    let store_cfg = StoreConfig::new(&cfg.data_dir).owned_by(org.clone());
    let store = tokio::task::spawn_blocking(move || DiskStore::open(store_cfg))
        .await
        .map_err(|e| NodeError::Join(e.to_string()))?
        .map_err(|e| match e {
            StoreError::InUse(path) => OfflineError::NodeRunning(path),
            e => NodeError::Store(e).into(),
        })?;
    if cfg.roster.is_none() {
        return Err(RotationError::StaticMode.into());
    }
    let files = RotationFiles::of(&cfg.signing_key);
    resume(&files, |seq| {
        crate::rotation::signed_after(&store, &org, seq)
    })?;
    let signer = Signer::new(org, read_key(&cfg.signing_key)?);
    let new = load_next(&files)?;
    let state = Arc::new(NodeState::following(cfg, store, signer)?);
    let rotated = state.rotate_key(new).await;
    state.stop();
    rotated.map_err(Into::into)
}
