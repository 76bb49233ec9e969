//! What keeps a node's files private: the umask it runs under, and the refusal of private key
//! files that other users may read (as ssh refuses them).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::NodeConfig;

/// Makes every file and directory the process creates from now on private to its user.
///
/// A node run from a shell inherits its umask, often 022. The store makes what exists private
/// when it opens, but files come later too (the store's engine writes a new table or journal
/// file whenever a memtable fills), and they would be readable by every local user until the next
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
/// others could read is no longer this node's alone. One exception: a systemd credential
/// (`LoadCredential=`, a file directly in `$CREDENTIALS_DIRECTORY`) may show the group's read
/// bit, because systemd grants the service's user read access through an ACL, whose mask
/// appears as the group bits (0440); that directory is the service's alone.
pub fn check_key_file(path: &Path) -> Result<(), KeyFileError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| KeyFileError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?
        .permissions()
        .mode()
        & 0o777;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY");
    if !mode_is_private(
        mode,
        in_directory(path, credentials.as_deref().map(Path::new)),
    ) {
        return Err(KeyFileError::OpenToOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Owner-only, or, for a systemd credential, owner and the group's read bit (the ACL mask).
fn mode_is_private(mode: u32, systemd_credential: bool) -> bool {
    let allowed = if systemd_credential { 0o040 } else { 0 };
    mode & 0o077 & !allowed == 0
}

/// Whether `path` is directly in `dir` (an absolute directory), both as the file system
/// resolves them.
fn in_directory(path: &Path, dir: Option<&Path>) -> bool {
    let Some(dir) = dir.filter(|d| d.is_absolute()) else {
        return false;
    };
    let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let parent = resolve(path).parent().map(Path::to_path_buf);
    parent.is_some_and(|p| p == resolve(dir))
}

/// The private key files a node reads, each with the setting that names it.
pub fn key_files(cfg: &NodeConfig) -> Vec<(&'static str, &Path)> {
    let mut files = vec![
        ("signing_key", cfg.signing_key.as_path()),
        ("federation.key", &cfg.federation.key),
        ("api.key", &cfg.api.key),
    ];
    if let Some(key) = &cfg.encryption_key {
        files.push(("encryption_key", key));
    }
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
        // systemd credentials may show the group's read bit (an ACL's mask), nothing more.
        assert!(mode_is_private(0o440, true) && mode_is_private(0o400, true));
        for mode in [0o460, 0o450, 0o444, 0o441] {
            assert!(!mode_is_private(mode, true), "{mode:o}");
        }
        assert!(!mode_is_private(0o440, false));
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        let inside = creds.join("node.key");
        std::fs::write(&inside, "key").unwrap();
        assert!(in_directory(&inside, Some(&creds)));
        assert!(
            !in_directory(&key, Some(&creds)),
            "a sibling directory's file"
        );
        assert!(
            !in_directory(&inside, Some(Path::new("creds"))),
            "a relative directory"
        );
        assert!(!in_directory(&inside, None));
        let missing = check_key_file(&dir.path().join("none.key")).unwrap_err();
        assert!(
            matches!(missing, KeyFileError::Unreadable { .. }),
            "{missing}"
        );
    }
}
