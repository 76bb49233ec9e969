//! The encryption key files: created private and never overwritten, old keys loaded beside the
//! current one, and a rotation that loses nothing wherever it stops.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ids(keys: &DecryptionKeys) -> Vec<EncKeyId> {
    keys.ids().copied().collect()
}

fn sorted(mut v: Vec<EncKeyId>) -> Vec<EncKeyId> {
    v.sort();
    v
}

#[test]
fn generate_writes_a_private_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let public = generate(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(current_public(&path).unwrap(), public);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim().len(), 64, "64 hex digits");
    let again = generate(&path).unwrap_err();
    assert!(
        format!("{again:#}").contains("refusing to overwrite a key"),
        "{again:#}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[test]
fn load_refuses_a_key_open_to_others_and_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    generate(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load(&path).unwrap_err();
    assert!(format!("{e:#}").contains("readable by others"), "{e:#}");

    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "not a key\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = load(&bad).unwrap_err();
    assert!(format!("{e:#}").contains("bad.key"), "{e:#}");
}

#[test]
fn rotate_keeps_the_old_key_beside_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let first = generate(&path).unwrap();
    let second = rotate(&path).unwrap();
    assert_ne!(first, second);
    assert_eq!(current_public(&path).unwrap(), second);
    let old = old_path(&path, &first.id());
    assert_eq!(current_public(&old).unwrap(), first);
    assert_eq!(mode(&old), 0o600);
    assert_eq!(mode(&path), 0o600);
    assert!(!next_path(&path).exists());
    let third = rotate(&path).unwrap();
    let keys = load(&path).unwrap();
    assert_eq!(
        sorted(ids(&keys)),
        sorted(vec![first.id(), second.id(), third.id()])
    );
    // Files that only look alike are not keys of this one.
    std::fs::write(dir.path().join("encryption.keyring"), "x").unwrap();
    assert_eq!(ids(&load(&path).unwrap()).len(), 3);
}

#[test]
fn load_refuses_an_old_key_open_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let first = generate(&path).unwrap();
    rotate(&path).unwrap();
    let old = old_path(&path, &first.id());
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = load(&path).unwrap_err();
    assert!(
        format!("{e:#}").contains(&old.display().to_string()),
        "{e:#}"
    );
}

/// A rotation stopped after each step: `<file>` always holds the old or the new key, every key
/// that was ever current still loads, and running the rotation again completes it.
#[test]
fn rotate_survives_a_crash_after_every_step() {
    // Stopped after step 1 (.next written): the old key is current, a rerun replaces .next.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let old = generate(&path).unwrap();
    let staged = stage_next(&path).unwrap();
    assert_eq!(current_public(&path).unwrap(), old);
    assert_eq!(ids(&load(&path).unwrap()), vec![old.id()]);
    let new = rotate(&path).unwrap();
    assert_ne!(new, staged, "the stale staged key is replaced");
    assert_eq!(current_public(&path).unwrap(), new);
    assert_eq!(
        sorted(ids(&load(&path).unwrap())),
        sorted(vec![old.id(), new.id()])
    );

    // Stopped after step 2 (old key copied): still the old key, loaded once; a rerun keeps
    // the copy and completes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let old = generate(&path).unwrap();
    stage_next(&path).unwrap();
    assert_eq!(keep_current(&path).unwrap(), old.id());
    assert_eq!(current_public(&path).unwrap(), old);
    assert_eq!(ids(&load(&path).unwrap()), vec![old.id()]);
    let new = rotate(&path).unwrap();
    assert_eq!(current_public(&path).unwrap(), new);
    assert_eq!(current_public(&old_path(&path, &old.id())).unwrap(), old);
    assert_eq!(
        sorted(ids(&load(&path).unwrap())),
        sorted(vec![old.id(), new.id()])
    );

    // Stopped after step 3: done.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let old = generate(&path).unwrap();
    let staged = stage_next(&path).unwrap();
    keep_current(&path).unwrap();
    assert_eq!(install_next(&path).unwrap(), staged);
    assert_eq!(current_public(&path).unwrap(), staged);
    assert_eq!(
        sorted(ids(&load(&path).unwrap())),
        sorted(vec![old.id(), staged.id()])
    );
}

#[test]
fn keep_current_refuses_an_old_file_holding_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let current = generate(&path).unwrap();
    let other = dir.path().join("other.key");
    generate(&other).unwrap();
    std::fs::rename(&other, old_path(&path, &current.id())).unwrap();
    let e = keep_current(&path).unwrap_err();
    assert!(format!("{e:#}").contains("does not hold key"), "{e:#}");
    assert_eq!(current_public(&path).unwrap(), current);
}

#[test]
fn a_copy_a_kill_left_half_written_is_no_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let first = generate(&path).unwrap();
    rotate(&path).unwrap();
    // As `durable::create_new` names its temporary file beside the copy it makes.
    let leftover = dir.path().join(format!(
        "encryption.key.old-{}.4242-00000000deadbeef.tmp",
        first.id()
    ));
    std::fs::write(&leftover, "0123").unwrap();
    std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o600)).unwrap();
    let keys = load(&path).expect("the node starts");
    assert_eq!(old_files(&path).unwrap().len(), 1, "the kept copy only");
    drop(keys);
}
