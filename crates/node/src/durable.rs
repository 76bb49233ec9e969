//! Files replaced whole and durably: the contents synced through a temporary file renamed over
//! the old one, and the directory synced, so that after a crash at any instant the path holds
//! the old file or the new one, and once a call returns, the new one.
//!
//! Without the directory's sync a rename is in the file system's cache only: a crash can bring
//! back the old name (or none) although the caller was told the write was done.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, and on which path.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FileError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Turns an I/O error of `what` on `path` into a [`FileError`] (for `map_err`).
pub(crate) fn failed(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError { what, path, source }
}

/// Replaces `path` with `bytes` (created with `mode`, whatever the umask leaves of it).
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    replace_with(path, bytes, mode, Mode::UnderUmask)
}

/// Replaces `path` with `bytes` readable by everyone (0644 whatever the umask): a public file
/// (a certificate, a genesis) an operator writes as root for the node's own user to read, which
/// root's umask 027 would keep from it.
pub fn replace_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    replace_with(path, bytes, 0o644, Mode::Exactly)
}

/// Replaces `path` with `bytes` with exactly `mode`, whatever the umask: a file whose mode the
/// operator chose (a config edited in place keeps it).
pub fn replace_exact(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    replace_with(path, bytes, mode, Mode::Exactly)
}

/// Whether a file's mode is what the umask leaves of the one asked, or exactly that one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    UnderUmask,
    Exactly,
}

fn replace_with(path: &Path, bytes: &[u8], mode: u32, exactly: Mode) -> Result<(), FileError> {
    let tmp = temporary(path);
    // A temporary file a crash left behind is not reused: it may have another mode.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(failed("creating", &tmp))?;
    let exact = match exactly {
        Mode::Exactly => f.set_permissions(std::fs::Permissions::from_mode(mode)),
        Mode::UnderUmask => Ok(()),
    };
    exact
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .map_err(failed("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(failed("renaming to", path))?;
    sync_parent(path)
}

/// Creates `path` holding `bytes` (with `mode`), never over an existing file (nor through a
/// symlink): written and synced under a temporary name of its own, then linked to `path`, so a
/// crash leaves no file or the whole one, never an empty or partial key. On a file system
/// without hard links (vfat, some network and FUSE mounts) the synced temporary file is
/// renamed over `path` once `path` is found absent instead: a crash still leaves the whole
/// file or none, and only a writer racing between that check and the rename could be
/// overwritten. An existing `path` is an error of kind `AlreadyExists`.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    // Named for this call: two writers of one path must not link each other's bytes.
    let tmp = with_suffix(
        path,
        &format!(".{}-{:016x}.tmp", std::process::id(), rand::random::<u64>()),
    );
    write_synced(&tmp, bytes, mode)?;
    let placed = match std::fs::hard_link(&tmp, path) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
            ) =>
        {
            match std::fs::symlink_metadata(path) {
                Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Renamed, the temporary name is gone: nothing to remove after.
                    return std::fs::rename(&tmp, path)
                        .map_err(failed("creating", path))
                        .inspect_err(|_| {
                            let _ = std::fs::remove_file(&tmp);
                        })
                        .and_then(|()| sync_parent(path));
                }
                Err(e) => Err(e),
            }
        }
        linked => linked,
    };
    let _ = std::fs::remove_file(&tmp);
    placed.map_err(failed("creating", path))?;
    sync_parent(path)
}

/// Creates `path` (never over a file) holding `bytes`, synced.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(failed("creating", path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(failed("writing", path))
}

/// Removes `path` (already gone is fine) and makes the removal durable.
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed("removing", path)(e)),
        _ => sync_parent(path),
    }
}

/// Makes the names created, renamed or removed in `path`'s directory durable.
pub fn sync_parent(path: &Path) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed("syncing directory", dir))
}

/// Creates directory `dir` 0700 with any missing parents, each new one's name made durable in
/// its parent: a file then replaced in it survives a crash with the directories that hold it.
pub fn create_private_dir(dir: &Path) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed("creating", dir))?;
    // From the outermost down: each name is synced in a directory already durable.
    missing.iter().rev().try_for_each(|d| sync_parent(d))
}

/// `path` with `suffix` added to its name (not replacing an extension, which may be meaningful).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn temporary(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_are_made_with_their_parents_0700_and_an_existing_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("admin/proposals");
        create_private_dir(&nested).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&dir.path().join("admin")), 0o700);
        replace(&nested.join("p1"), b"kept", 0o600).unwrap();
        create_private_dir(&nested).unwrap();
        assert_eq!(std::fs::read(nested.join("p1")).unwrap(), b"kept");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        assert!(create_private_dir(&file.join("under")).is_err());
    }

    #[test]
    fn a_replaced_file_holds_the_new_bytes_with_the_mode_asked_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.roster");
        replace(&path, b"old", 0o600).unwrap();
        // A temporary left by a crash, readable by others, is not reused.
        std::fs::write(temporary(&path), b"stale").unwrap();
        std::fs::set_permissions(temporary(&path), std::fs::Permissions::from_mode(0o644)).unwrap();
        replace(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!temporary(&path).exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_created_file_is_whole_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        create_new(&path, b"first", 0o600).unwrap();
        let err = create_new(&path, b"second", 0o600).unwrap_err();
        assert_eq!(err.source.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A symlink where the file would go is not followed.
        let target = dir.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, dir.path().join("l")).unwrap();
        assert!(create_new(&dir.path().join("l"), b"x", 0o600).is_err());
        assert!(!target.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");
    }

    #[test]
    fn removing_twice_is_fine_and_a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        replace(&path, b"x", 0o600).unwrap();
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
        let gone = dir.path().join("nowhere").join("x");
        let err = replace(&gone, b"x", 0o600).unwrap_err();
        assert_eq!(err.what, "creating");
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
