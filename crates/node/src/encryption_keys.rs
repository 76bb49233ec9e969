//! This org's encryption key files: the current key and the older ones kept beside it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use intelmesh_core::sealed::{DecryptionKeys, EncryptionSecret};

/// Writes `secret` to `path`, created 0600, never overwriting, synced.
pub fn write(path: &Path, secret: &EncryptionSecret) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (refusing to overwrite a key)", path.display()))?;
    f.write_all(secret.to_hex().as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The key at `path` and every `<file>.old-<KEYID>` beside it.
pub fn load(path: &Path) -> anyhow::Result<DecryptionKeys> {
    let mut keys = DecryptionKeys::default();
    keys.insert(read(path)?);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(keys);
    };
    let old = format!("{name}.old-");
    for item in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let item = item?;
        if item
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&old))
        {
            keys.insert(read(&item.path())?);
        }
    }
    Ok(keys)
}

fn read(path: &Path) -> anyhow::Result<EncryptionSecret> {
    crate::private_files::check_key_file(path)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading encryption key {}", path.display()))?;
    EncryptionSecret::from_hex(&text).with_context(|| format!("encryption key {}", path.display()))
}
