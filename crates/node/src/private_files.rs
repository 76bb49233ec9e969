//! What keeps a node's files private: the umask it runs under, and the refusal of private key
//! files that other users may read (as ssh refuses them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::NodeConfig;

/// Makes every file and directory the process creates from now on private to its user.
///
/// A node run from a shell inherits its umask, often 022. The store makes what exists private
/// when it opens, but files come later too (sled writes a blob file for each page too large
/// for its log, at any time), and they would be readable by every local user until the next
/// start. Only the node's user ever needs to read what it writes.
pub fn restrict_umask() {
    // SAFETY: umask(2) only replaces the process's file mode mask; it cannot fail and takes
    // no pointers.
    unsafe {
        libc::umask(0o077);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{} is {} (mode {mode:04o}): run `chmod 600 {}`", path.display(), exposure(*mode), path.display())]
    OpenToOthers { path: PathBuf, mode: u32 },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn exposure(mode: u32) -> &'static str {
    if mode & 0o044 != 0 {
        "readable by others"
    } else if mode & 0o022 != 0 {
        "writable by others"
    } else {
        "open to others"
    }
}

/// Refuses a private key file that anyone but its owner may read, write or execute: a key
/// others could read is no longer this node's alone.
pub fn check_key_file(path: &Path) -> Result<(), KeyFileError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyFileError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::OpenToOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// The private key files a node reads, each with the setting that names it.
pub fn key_files(cfg: &NodeConfig) -> Vec<(&'static str, &Path)> {
    let mut files = vec![
        ("signing_key", cfg.signing_key.as_path()),
        ("federation.key", &cfg.federation.key),
        ("api.key", &cfg.api.key),
    ];
    if let Some(admin) = &cfg.admin {
        files.push(("admin.federation_ca_key", &admin.federation_ca_key));
    }
    files
}

/// [`check_key_file`] for each of the node's key files; the first one refused.
pub fn check_key_files(cfg: &NodeConfig) -> Result<(), KeyFileError> {
    key_files(cfg)
        .into_iter()
        .try_for_each(|(_, path)| check_key_file(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_only_key_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("node.key");
        std::fs::write(&key, "key").unwrap();
        let set = |mode| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode));
        for mode in [0o600, 0o400] {
            set(mode).unwrap();
            assert!(check_key_file(&key).is_ok(), "{mode:o}");
        }
        let path = key.display();
        for (mode, text) in [
            (0o644, "readable by others (mode 0644)"),
            (0o640, "readable by others (mode 0640)"),
            (0o620, "writable by others (mode 0620)"),
            (0o601, "open to others (mode 0601)"),
        ] {
            set(mode).unwrap();
            let err = check_key_file(&key).unwrap_err().to_string();
            assert_eq!(err, format!("{path} is {text}: run `chmod 600 {path}`"));
        }
        let missing = check_key_file(&dir.path().join("none.key")).unwrap_err();
        assert!(
            matches!(missing, KeyFileError::Unreadable { .. }),
            "{missing}"
        );
    }
}
