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
        let path = entry.map_err(io(dir))?.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            restrict(&path)?;
        } else if meta.is_file() {
            set_mode(&path, 0o600)?;
        }
    }
    Ok(())
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
