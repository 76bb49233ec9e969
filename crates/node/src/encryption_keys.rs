//! This org's encryption key files: the current X25519 key (`encryption_key` in the config,
//! hex, 0600), the older keys kept beside it as `<file>.old-<KEYID>` to open what was sealed to
//! them before a rotation, and the rotation that moves from one to the next without a moment
//! where `<file>` is missing or a key is lost.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use intelmesh_core::sealed::{DecryptionKeys, EncKeyId, EncryptionPublic, EncryptionSecret};

use crate::private_files::check_key_file;

/// `<file><suffix>` beside `path`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Where the key with id `id` is kept once a rotation replaced it.
pub fn old_path(path: &Path, id: &EncKeyId) -> PathBuf {
    sibling(path, &format!(".old-{id}"))
}

/// Where a rotation writes the new key before it replaces the current one.
pub fn next_path(path: &Path) -> PathBuf {
    sibling(path, ".next")
}

/// Writes `secret` to `path`: created 0600 from the start, never over an existing file, synced.
pub fn write(path: &Path, secret: &EncryptionSecret) -> anyhow::Result<()> {
    crate::keys::write_secret(path, secret.to_hex().as_bytes())
}

/// Makes renames and new names in `path`'s directory durable.
fn sync_dir(path: &Path) -> anyhow::Result<()> {
    Ok(crate::durable::sync_parent(path)?)
}

/// Generates a new key into `path` (0600, never overwriting); returns its public half.
pub fn generate(path: &Path) -> anyhow::Result<EncryptionPublic> {
    let secret = EncryptionSecret::generate();
    write(path, &secret)?;
    sync_dir(path)?;
    Ok(secret.public())
}

/// Reads one key file, refusing it if others may read it.
fn read_secret(path: &Path) -> anyhow::Result<EncryptionSecret> {
    check_key_file(path)?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading encryption key {}", path.display()))?,
    );
    EncryptionSecret::from_hex(text.trim())
        .with_context(|| format!("encryption key {}", path.display()))
}

/// The public half of the key in `path`: what the roster lists as this org's current key.
pub fn current_public(path: &Path) -> anyhow::Result<EncryptionPublic> {
    read_secret(path).map(|s| s.public())
}

/// The old keys kept beside `path` (`<file>.old-*`), in name order.
fn old_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!(
        "{}.old-",
        path.file_name()
            .with_context(|| format!("{} names no file", path.display()))?
            .to_string_lossy()
    );
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let item = item.with_context(|| format!("listing {}", dir.display()))?;
        // `<file>.old-<KEYID>` only: a copy being written under a temporary name beside it
        // (`durable::create_new`), left by a kill, is no key.
        let name = item.file_name().to_string_lossy().into_owned();
        let id = name.strip_prefix(&prefix).unwrap_or_default();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push(item.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Every key this org can open envelopes with: the current one in `path` and each old one
/// beside it. Any of them open to group or others is refused, as the current one is.
pub fn load(path: &Path) -> anyhow::Result<DecryptionKeys> {
    let mut keys = DecryptionKeys::default();
    keys.insert(read_secret(path)?);
    for old in old_files(path)? {
        keys.insert(read_secret(&old)?);
    }
    Ok(keys)
}

/// Rotation step 1: a new key in `<file>.next`. A `.next` left by a rotation that crashed
/// before step 3 is replaced: it was never installed, so nothing was sealed to it.
pub fn stage_next(path: &Path) -> anyhow::Result<EncryptionPublic> {
    let next = next_path(path);
    match std::fs::remove_file(&next) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", next.display())),
    }
    generate(&next)
}

/// Rotation step 2: a copy of the current key as `<file>.old-<KEYID>`, so that `<file>` itself
/// is never missing. A copy already there from a crashed rotation is kept if it holds the key.
pub fn keep_current(path: &Path) -> anyhow::Result<EncKeyId> {
    let current = read_secret(path)?;
    let id = current.public().id();
    let old = old_path(path, &id);
    if old.exists() {
        if read_secret(&old)?.public().id() != id {
            bail!(
                "{} does not hold key {id} its name says: move it aside and rotate again",
                old.display()
            );
        }
        return Ok(id);
    }
    write(&old, &current)?;
    sync_dir(path)?;
    Ok(id)
}

/// Rotation step 3: `<file>.next` renamed over `<file>` (atomic: `<file>` holds the old key
/// or the new one, never neither).
pub fn install_next(path: &Path) -> anyhow::Result<EncryptionPublic> {
    let next = next_path(path);
    let public = current_public(&next)?;
    std::fs::rename(&next, path)
        .with_context(|| format!("renaming {} to {}", next.display(), path.display()))?;
    sync_dir(path)?;
    Ok(public)
}

/// Replaces the key in `path` with a new one, keeping the old one beside it; returns the new
/// public key (for the request that lists it in the roster).
pub fn rotate(path: &Path) -> anyhow::Result<EncryptionPublic> {
    // The current key must be readable before anything is written.
    current_public(path)?;
    stage_next(path)?;
    keep_current(path)?;
    install_next(path)
}

#[cfg(test)]
#[path = "encryption_keys_tests.rs"]
mod tests;
