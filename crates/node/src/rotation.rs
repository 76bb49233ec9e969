//! Rotation of a member's own signing key while its node runs (roster mode): the files next to
//! the configured key, the switch on disk, and the overlay that lets the node verify its own
//! entries under the new key until a roster version lists it.
//!
//! The files, for `signing_key = D/signing.key`:
//! - `D/signing.key.next`: the new key, written by `intelmesh node rotate-key` (0600, never
//!   overwritten); the running node polls for it (`rotate_key::watch`).
//! - `D/signing.key.rotation.pb`: the `SignedRotationRequest` (old and new key sign; `last_seq`
//!   = the node's head when it switched), for the hub operators
//!   (`admin members rotate-key --request FILE`). Written durably before the key moves, so a
//!   crash in between is finished at the next start ([`resume`]).
//! - `D/signing.key.old-<KEYID>`: the old key, kept (0600).
//!
//! Until the roster lists the new key, peers hold the new entries as unverified (they cannot
//! check them yet, which never cuts a link) and take them when the version arrives.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use ed25519_dalek::{SigningKey, VerifyingKey};
use intelmesh_core::verify::SeqRange;
use intelmesh_core::{KeyId, OrgId, Signer, StaticKeys};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::{sign_rotation, verify_rotation, RequestError};
use prost::Message;

use crate::config::NodeConfig;
use crate::durable::with_suffix;

/// The rotation files that go with one configured signing key.
#[derive(Clone, Debug)]
pub struct RotationFiles {
    pub key: PathBuf,
}

impl RotationFiles {
    pub fn of(signing_key: &Path) -> RotationFiles {
        RotationFiles {
            key: signing_key.to_path_buf(),
        }
    }

    /// Where a new key waits for the node to take it.
    pub fn next(&self) -> PathBuf {
        with_suffix(&self.key, ".next")
    }

    /// The rotation request of the last switch.
    pub fn request(&self) -> PathBuf {
        with_suffix(&self.key, ".rotation.pb")
    }

    /// Where the key a switch replaced is kept.
    pub fn old(&self, key_id: KeyId) -> PathBuf {
        with_suffix(&self.key, &format!(".old-{key_id}"))
    }
}

/// Why a rotation cannot be done (yet).
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error("rotation request {path} refused: {error}")]
    Request { path: PathBuf, error: RequestError },
    #[error("{next} already exists: a new key is waiting for the node to take it (remove it to cancel that rotation)")]
    NextExists { next: PathBuf },
    #[error("this node runs in static mode (no [roster]): rotate by adding the new key to every member's key list")]
    StaticMode,
    #[error("the earlier rotation to key {key_id} (from seq {first_seq}) is not in the roster yet: the hub operators must publish it (`admin members rotate-key --request {request}`) before this node rotates again")]
    EarlierPending {
        key_id: KeyId,
        first_seq: u64,
        request: PathBuf,
    },
    #[error("{old} already holds another key than the one being replaced: move it aside")]
    OldKeyClash { old: PathBuf },
    #[error("the key rotation {request} was interrupted, and the store cannot say which key signed after its last seq ({error}): the node does not start on a key that may have ended; repair the store, or move the request aside if the switch failed")]
    Undecided { request: PathBuf, error: String },
}

/// A rotation this node made whose new key the roster does not list yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingKey {
    pub org: OrgId,
    pub old_key: VerifyingKey,
    pub new_key: VerifyingKey,
    /// The last seq the old key signed; the new key signs from the one after it.
    pub last_seq: u64,
}

impl PendingKey {
    /// Puts the rotation into `keys` (the roster's key set) as the roster version that takes
    /// the request will: the new key from `last_seq + 1`, the old key ended at `last_seq`.
    /// Returns `false`, changing nothing, once the roster lists the new key itself: the roster
    /// decides from then on.
    pub fn overlay(&self, keys: &mut StaticKeys) -> bool {
        if keys.holds(&self.org, &self.new_key) {
            return false;
        }
        if let Some(old) = keys.range_of(&self.org, &self.old_key) {
            let last = old.last.map_or(self.last_seq, |l| l.min(self.last_seq));
            keys.insert_range(
                self.org.clone(),
                self.old_key,
                SeqRange {
                    first: old.first,
                    last: Some(last),
                },
            );
        }
        keys.insert_range(
            self.org.clone(),
            self.new_key,
            SeqRange {
                first: self.last_seq.saturating_add(1),
                last: None,
            },
        );
        true
    }

    pub fn first_seq(&self) -> u64 {
        self.last_seq.saturating_add(1)
    }
}

/// A switch done: what to tell the operator.
#[derive(Clone, Debug)]
pub struct Rotated {
    pub pending: PendingKey,
    pub request: PathBuf,
    pub old_key_file: PathBuf,
}

/// Switches the key files from `old` to `new` at `last_seq` (the node's head; the caller holds
/// the publish lock or the store): writes the rotation request durably, keeps the old key, then
/// moves `.next` over the configured key (one rename). A crash before the rename leaves the
/// request and `.next` for [`resume`] to finish.
pub fn switch_key(
    files: &RotationFiles,
    org: &OrgId,
    old: &SigningKey,
    new: &SigningKey,
    last_seq: u64,
    now_unix_ms: i64,
) -> Result<Rotated, RotationError> {
    let request = sign_rotation(org, old, new, last_seq, now_unix_ms);
    write_durably(&files.request(), &request.encode_to_vec(), 0o644)?;
    finish(files, old, new, &request).inspect_err(|_| {
        // Not switched: the node goes on signing with the old key past `last_seq`, so a
        // restart must not finish this switch from the request (the old key would end before
        // entries it signed). The request goes; `.next` stays for the next attempt.
        if let Err(e) = crate::durable::remove(&files.request()) {
            tracing::warn!(path = %files.request().display(), error = %e, "a failed key rotation's request could not be removed: remove it before restarting");
        }
    })
}

/// The steps after the request is on disk; run again by [`resume`] after a crash.
fn finish(
    files: &RotationFiles,
    old: &SigningKey,
    new: &SigningKey,
    request: &pb::SignedRotationRequest,
) -> Result<Rotated, RotationError> {
    let verified = verify_rotation(request).map_err(|error| RotationError::Request {
        path: files.request(),
        error,
    })?;
    let old_file = files.old(KeyId::of(&old.verifying_key()));
    match read_key(&old_file) {
        Ok(kept) if kept.verifying_key() == old.verifying_key() => {}
        Ok(_) => return Err(RotationError::OldKeyClash { old: old_file }),
        Err(_) if old_file.exists() => return Err(RotationError::OldKeyClash { old: old_file }),
        Err(_) => write_durably(&old_file, key_text(old).as_bytes(), 0o600)?,
    }
    let next = files.next();
    std::fs::rename(&next, &files.key).map_err(|source| RotationError::Io {
        path: next.clone(),
        source,
    })?;
    // Switched: the key file holds the new key, so the node must sign with it from here. A
    // rename a crash could still undo is finished again by `resume` (the request stays).
    if let Err(e) = sync_dir(&files.key) {
        tracing::warn!(error = %e, "the key rotation's rename may not be durable yet: a crash now makes the next start finish it again");
    }
    debug_assert_eq!(verified.new_key, new.verifying_key());
    Ok(Rotated {
        pending: PendingKey {
            org: verified.org,
            old_key: verified.old_key,
            new_key: verified.new_key,
            last_seq: verified.last_seq,
        },
        request: files.request(),
        old_key_file: old_file,
    })
}

/// At start, before the signing key is read and with the store open (so no other process
/// switches meanwhile): finishes a switch a crash interrupted (the request names the configured
/// key as old and `.next` as new). Returns whether it did. `signed_after(seq)` is the key id
/// that signed the node's own entry at `seq + 1` in its store, if it holds one (an error when
/// the store cannot tell: [`RotationError::Undecided`], the request stays): by the old key,
/// the switch failed and the node signed on with the old key (the request's removal a crash
/// undid), and finishing it would end the old key before entries it signed, so the request is
/// removed instead; by the new key, the switch was done and a crash undid its rename.
pub fn resume(
    files: &RotationFiles,
    signed_after: impl Fn(u64) -> Result<Option<KeyId>, String>,
) -> Result<bool, RotationError> {
    let next = files.next();
    if !next.exists() {
        return Ok(false);
    }
    let Some(request) = read_request(files)? else {
        return Ok(false);
    };
    let current = read_key(&files.key)?;
    let new = read_key(&next)?;
    let verified = verify_rotation(&request).map_err(|error| RotationError::Request {
        path: files.request(),
        error,
    })?;
    if verified.old_key != current.verifying_key() || verified.new_key != new.verifying_key() {
        return Ok(false);
    }
    match signed_after(verified.last_seq) {
        Err(error) => {
            return Err(RotationError::Undecided {
                request: files.request(),
                error,
            })
        }
        Ok(None) => {}
        Ok(Some(k)) if k == KeyId::of(&new.verifying_key()) => {}
        Ok(Some(k)) if k == KeyId::of(&current.verifying_key()) => {
            crate::durable::remove(&files.request())?;
            tracing::warn!(request = %files.request().display(), last_seq = verified.last_seq, "removed a key rotation request the old key signed past: that switch failed, and the node signed on with the old key");
            return Ok(false);
        }
        Ok(Some(other)) => {
            tracing::warn!(request = %files.request().display(), last_seq = verified.last_seq, key = %other, "a key rotation request left as it is: a key of neither side signed the entry after its last seq");
            return Ok(false);
        }
    }
    finish(files, &current, &new, &request)?;
    tracing::warn!(request = %files.request().display(), last_seq = verified.last_seq, "finished a key rotation interrupted by a stop");
    Ok(true)
}

/// The key id that signed `org`'s entry at `seq + 1` in `store`, if it holds one (see
/// [`resume`]); an error when the store cannot be read or the entry not decoded.
pub fn signed_after(
    store: &intelmesh_store::DiskStore,
    org: &OrgId,
    seq: u64,
) -> Result<Option<KeyId>, String> {
    let next = seq.checked_add(1).ok_or("seq past the end")?;
    let found = intelmesh_store::Store::range(store, org, next, 1).map_err(|e| e.to_string())?;
    let Some(entry) = found.into_iter().next() else {
        return Ok(None);
    };
    let header = crate::state::header_of(&entry).ok_or("a logged header does not decode")?;
    let id = <[u8; 8]>::try_from(header.key_id.as_slice()).map_err(|_| "a key id of 8 bytes")?;
    Ok(Some(KeyId(id)))
}

/// The rotation whose new key is `signer`'s, if its request is on disk (a restart between the
/// switch and the roster version that lists the key).
pub fn pending_at_start(
    cfg: &NodeConfig,
    signer: &Signer,
) -> Result<Option<PendingKey>, RotationError> {
    let files = RotationFiles::of(&cfg.signing_key);
    // A request for another key is an old one whose rotation the roster took long ago.
    Ok(request_on_disk(&files)?
        .filter(|p| p.org == *signer.org() && p.new_key == signer.verifying_key()))
}

/// The old key of `pending`, as the switch kept it, if it is still there.
pub fn kept_old_key(
    cfg: &NodeConfig,
    pending: &PendingKey,
) -> Result<Option<SigningKey>, RotationError> {
    let path = RotationFiles::of(&cfg.signing_key).old(KeyId::of(&pending.old_key));
    if !path.exists() {
        return Ok(None);
    }
    let key = read_key(&path)?;
    Ok((key.verifying_key() == pending.old_key).then_some(key))
}

/// The rotation the request file on disk describes, checked (both signatures), if any.
pub fn request_on_disk(files: &RotationFiles) -> Result<Option<PendingKey>, RotationError> {
    let Some(request) = read_request(files)? else {
        return Ok(None);
    };
    let v = verify_rotation(&request).map_err(|error| RotationError::Request {
        path: files.request(),
        error,
    })?;
    Ok(Some(PendingKey {
        org: v.org,
        old_key: v.old_key,
        new_key: v.new_key,
        last_seq: v.last_seq,
    }))
}

/// A fresh key staged with [`stage_next_key`]; returns its public half.
pub fn stage_new_key(files: &RotationFiles) -> Result<VerifyingKey, RotationError> {
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    stage_next_key(files, &new)?;
    Ok(new.verifying_key())
}

/// Puts `new` where the node looks for it: created 0600 under another name, then linked in
/// place, so the node never reads half a key and an earlier waiting key is never overwritten.
pub fn stage_next_key(files: &RotationFiles, new: &SigningKey) -> Result<PathBuf, RotationError> {
    let next = files.next();
    if next.exists() {
        return Err(RotationError::NextExists { next });
    }
    let staging = with_suffix(&next, ".partial");
    let _ = std::fs::remove_file(&staging);
    write_durably(&staging, key_text(new).as_bytes(), 0o600)?;
    let linked = std::fs::hard_link(&staging, &next);
    let _ = std::fs::remove_file(&staging);
    match linked {
        Ok(()) => Ok(next),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(RotationError::NextExists { next })
        }
        Err(source) => Err(RotationError::Io { path: next, source }),
    }
}

fn read_request(files: &RotationFiles) -> Result<Option<pb::SignedRotationRequest>, RotationError> {
    let path = files.request();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RotationError::Io { path, source }),
    };
    pb::SignedRotationRequest::decode(bytes.as_slice())
        .map(Some)
        .map_err(|e| RotationError::Request {
            path,
            error: RequestError::Undecodable(e.to_string()),
        })
}

/// Reads a key file in the format of `keys::write_private`.
pub fn read_key(path: &Path) -> Result<SigningKey, RotationError> {
    crate::keys::load_signing_key(path).map_err(|e| RotationError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("{e:#}"),
    })
}

fn key_text(key: &SigningKey) -> String {
    format!("{}\n", hex::encode(key.to_bytes()))
}

/// Writes `bytes` to `path` through a temporary file, synced, renamed, and the directory synced.
fn write_durably(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RotationError> {
    crate::durable::replace(path, bytes, mode).map_err(RotationError::from)
}

fn sync_dir(path: &Path) -> Result<(), RotationError> {
    crate::durable::sync_parent(path).map_err(RotationError::from)
}

impl From<crate::durable::FileError> for RotationError {
    fn from(e: crate::durable::FileError) -> RotationError {
        RotationError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change is whole under the lock; a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use intelmesh_core::verify::{KeyLookup, KeyRegistry};

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    /// A node's key file holding `old`, with `new` staged beside it.
    struct Staged {
        _dir: tempfile::TempDir,
        files: RotationFiles,
        org: OrgId,
        old: SigningKey,
        new: SigningKey,
    }

    fn staged() -> Staged {
        let dir = tempfile::tempdir().unwrap();
        let files = RotationFiles::of(&dir.path().join("signing.key"));
        let (old, new) = (key(), key());
        crate::keys::write_private(&files.key, &old).unwrap();
        stage_next_key(&files, &new).unwrap();
        Staged {
            _dir: dir,
            files,
            org: OrgId::parse("SG-IGCI").unwrap(),
            old,
            new,
        }
    }

    /// The switch's request from `old` to `new` at `last_seq`, durable (the step before the
    /// rename).
    fn write_request(
        files: &RotationFiles,
        org: &OrgId,
        (old, new): (&SigningKey, &SigningKey),
        last_seq: u64,
    ) {
        let request = sign_rotation(org, old, new, last_seq, 1);
        write_durably(&files.request(), &request.encode_to_vec(), 0o644).unwrap();
    }

    #[test]
    fn the_overlay_splits_own_keys_at_the_rotation_until_the_roster_lists_the_new_key() {
        let org = OrgId::parse("SG-IGCI").unwrap();
        let (old, new) = (key().verifying_key(), key().verifying_key());
        let mut roster_keys = StaticKeys::default();
        roster_keys.insert_range(org.clone(), old, SeqRange::ALL);
        let pending = PendingKey {
            org: org.clone(),
            old_key: old,
            new_key: new,
            last_seq: 7,
        };

        let mut keys = roster_keys.clone();
        assert!(pending.overlay(&mut keys));
        let (old_id, new_id) = (KeyId::of(&old), KeyId::of(&new));
        assert_eq!(keys.key(&org, &old_id, 7), KeyLookup::Valid(old));
        assert_eq!(keys.key(&org, &new_id, 8), KeyLookup::Valid(new));
        assert!(matches!(
            keys.key(&org, &new_id, 7),
            KeyLookup::OutOfRange { first_seq: 8, .. }
        ));
        assert!(
            matches!(
                keys.key(&org, &old_id, 8),
                KeyLookup::OutOfRange {
                    last_seq: Some(7),
                    ..
                }
            ),
            "the old key ends where the request says, as the roster will end it"
        );
        // Another origin gains nothing.
        let other = OrgId::parse("AU-AFP").unwrap();
        assert_eq!(keys.key(&other, &new_id, 8), KeyLookup::Unknown);

        // Once the roster lists the new key (here with the range the hub gave it), the overlay
        // steps aside and the roster's ranges stand.
        let mut listed = roster_keys.clone();
        listed.insert_range(
            org.clone(),
            old,
            SeqRange {
                first: 1,
                last: Some(7),
            },
        );
        listed.insert_range(
            org.clone(),
            new,
            SeqRange {
                first: 8,
                last: Some(9),
            },
        );
        let before = listed.clone();
        assert!(!pending.overlay(&mut listed));
        assert_eq!(listed, before);
    }

    #[test]
    fn a_switch_interrupted_before_the_key_moves_is_finished_at_start() {
        let Staged {
            _dir,
            files,
            org,
            old,
            new,
        } = staged();
        assert!(matches!(
            stage_next_key(&files, &key()),
            Err(RotationError::NextExists { .. })
        ));
        // The request is durable, then the process stops before the rename.
        write_request(&files, &org, (&old, &new), 4);

        assert!(resume(&files, |_| Ok(None)).unwrap());
        assert_eq!(read_key(&files.key).unwrap(), new);
        assert!(!files.next().exists());
        let kept = files.old(KeyId::of(&old.verifying_key()));
        assert_eq!(read_key(&kept).unwrap(), old);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !resume(&files, |_| Ok(None)).unwrap(),
            "nothing left to finish"
        );
    }

    #[test]
    fn a_request_the_old_key_signed_past_is_removed_at_start_not_finished() {
        let Staged {
            _dir,
            files,
            org,
            old,
            new,
        } = staged();
        // A switch at seq 4 failed; its request's removal was lost, and the node signed on to 6.
        write_request(&files, &org, (&old, &new), 4);

        let old_id = KeyId::of(&old.verifying_key());
        assert!(!resume(&files, |seq| Ok((seq == 4).then_some(old_id))).unwrap());
        assert_eq!(read_key(&files.key).unwrap(), old);
        assert!(!files.request().exists());
        assert!(
            files.next().exists(),
            "the staged key stays for a new attempt"
        );
        write_request(&files, &org, (&old, &new), 4);
        // A store that cannot say which key signed next: nothing is done, and the start stops.
        assert!(matches!(
            resume(&files, |_| Err("disk".into())),
            Err(RotationError::Undecided { .. })
        ));
        assert_eq!(read_key(&files.key).unwrap(), old);
        // A switch done whose rename a crash undid (the new key signed past it): finished.
        let new_id = KeyId::of(&new.verifying_key());
        assert!(resume(&files, |seq| Ok((seq == 4).then_some(new_id))).unwrap());
        assert_eq!(read_key(&files.key).unwrap(), new);
    }

    #[test]
    fn a_switch_that_fails_before_the_key_moves_leaves_nothing_for_a_restart_to_finish() {
        let Staged {
            _dir,
            files,
            org,
            old,
            new,
        } = staged();
        // Another key already where the old one is to be kept: the switch stops there.
        crate::keys::write_private(&files.old(KeyId::of(&old.verifying_key())), &key()).unwrap();
        assert!(matches!(
            switch_key(&files, &org, &old, &new, 4, 1),
            Err(RotationError::OldKeyClash { .. })
        ));
        // The node signs on with the old key; a restart must not end it at seq 4.
        assert!(!files.request().exists());
        assert!(!resume(&files, |_| Ok(None)).unwrap());
        assert_eq!(read_key(&files.key).unwrap(), old);
        assert!(
            files.next().exists(),
            "the staged key stays for the next attempt"
        );
    }
}
