//! The data directory is private to the node's user: created 0700, every file in it 0600,
//! whatever the umask of the process that runs the node (outside the systemd unit it is often
//! 022, which made the store world-readable).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::StoreError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the directory 0700 (with any missing parents), or makes an existing one 0700.
pub(crate) fn prepare(dir: &Path) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    set_mode(dir, 0o700)
}

/// Makes every file under `dir` 0600 and every directory 0700 (symbolic links are left alone).
pub(crate) fn restrict(dir: &Path) -> Result<(), StoreError> {
    set_mode(dir, 0o700)?;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        restrict_entry(&entry.map_err(io(dir))?.path())?;
    }
    Ok(())
}

/// [`restrict`] for one entry of a directory being walked. The engine's background work,
/// started by the open (flushing what a crash left in the journal, compacting), deletes
/// journals and tables meanwhile: an entry gone since it was listed is skipped, not a failed
/// start.
fn restrict_entry(path: &Path) -> Result<(), StoreError> {
    let vanished = |e: &StoreError| matches!(e, StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    let restricted = std::fs::symlink_metadata(path)
        .map_err(io(path))
        .and_then(|meta| {
            if meta.is_dir() {
                restrict(path)
            } else if meta.is_file() {
                set_mode(path, 0o600)
            } else {
                Ok(())
            }
        });
    match restricted {
        Err(e) if vanished(&e) => Ok(()),
        other => other,
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), StoreError> {
    let current = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777;
    if current != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_made_private_and_one_gone_since_listed_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("journal");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(dir.path().join("tables")).unwrap();
        restrict(dir.path()).expect("restricted");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("tables")), 0o700);
        // Deleted by the engine between the listing and its turn.
        assert!(restrict_entry(&dir.path().join("compacted-away")).is_ok());
        assert!(restrict_entry(&dir.path().join("gone/with/its/dir")).is_ok());
    }
}
