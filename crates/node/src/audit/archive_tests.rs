//! Archiving a trail's earliest files on a real disk: both parts check, the node's trail opens
//! and chains on, an archive continues in the same directory, an interrupted one is finished,
//! and what does not fit (a broken trail, another trail's archive) moves nothing.

use super::super::trail::tests::{call, seqs};
use super::super::trail::{read_start, trail_files, Trail};
use super::*;
use intelmesh_audit::Call;

/// Appends calls `from..to` to the trail in `dir` (files of about two records), synced.
fn write(dir: &Path, from: i64, to: i64) {
    let mut t = Trail::open(dir, 600).unwrap();
    let calls: Vec<Call> = (from..to).map(call).collect();
    t.append(&calls).unwrap();
    t.sync().unwrap();
}

/// The archive in `to` and the trail in `dir` hold records 1 to `last` between them, each
/// once, in order.
fn assert_whole(to: &Path, dir: &Path, last: u64) {
    let (archived, kept) = (seqs(to), seqs(dir));
    assert_eq!(
        archived.iter().chain(&kept).copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<u64>>()
    );
}

/// Copies the archived `files` from `to` back into the trail in `dir`: what a run stopped
/// before removing its copies from the trail leaves there.
fn copy_back(to: &Path, dir: &Path, files: &[u64]) {
    for n in files {
        std::fs::copy(to.join(file_name(*n)), dir.join(file_name(*n))).unwrap();
    }
}

#[test]
fn the_earliest_files_move_and_both_parts_check() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, to) = (tmp.path().join("audit"), tmp.path().join("archive"));
    write(&dir, 1, 11);
    let before = trail_files(&dir).unwrap();
    assert!(before.len() >= 4, "{before:?}");
    let moved = archive(&dir, &to, 2).unwrap().expect("files to move");
    assert_eq!(moved.files, before[..before.len() - 2]);
    assert_eq!(trail_files(&dir).unwrap(), before[before.len() - 2..]);
    assert_eq!(trail_files(&to).unwrap(), moved.files);
    // Together they hold every record once, in order.
    assert_eq!(seqs(&to).last().copied(), Some(moved.start.after.seq));
    assert_whole(&to, &dir, 10);
    assert_eq!(read_start(&dir).unwrap(), Some(moved.start));
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&to), 0o700);
    assert_eq!(mode(&to.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&to.join(file_name(moved.files[0]))), 0o600);

    // The node opens the trail kept and chains on; the next archive continues the first.
    write(&dir, 11, 17);
    assert_eq!(seqs(&dir).last().copied(), Some(16));
    let again = archive(&dir, &to, 1).unwrap().expect("more files to move");
    assert_eq!(again.files[0], moved.files.last().unwrap() + 1);
    assert_whole(&to, &dir, 16);
    // Nothing more to move: the last file holding a record stays.
    assert_eq!(archive(&dir, &to, 1).unwrap(), None);
}

#[test]
fn an_archive_interrupted_after_its_start_is_finished_and_read_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, to) = (tmp.path().join("audit"), tmp.path().join("archive"));
    write(&dir, 1, 9);
    let moved = archive(&dir, &to, 1).unwrap().expect("files to move");
    // As if the run stopped before removing its copies from the trail.
    copy_back(&to, &dir, &moved.files);
    let kept = seqs(&dir);
    assert_eq!(kept.first().copied(), Some(moved.start.after.seq + 1));
    write(&dir, 9, 13);
    assert!(archive(&dir, &to, 1).unwrap().is_some());
    let files = trail_files(&dir).unwrap();
    assert!(files.iter().all(|n| !moved.files.contains(n)), "{files:?}");
    assert_whole(&to, &dir, 12);
}

#[test]
fn a_broken_trail_or_a_foreign_archive_moves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, to) = (tmp.path().join("audit"), tmp.path().join("archive"));
    write(&dir, 1, 9);
    let files = trail_files(&dir).unwrap();

    // Another node's trail archived into `to` before.
    let other = tmp.path().join("other");
    write(&other, 1, 9);
    archive(&other, &to, 1)
        .unwrap()
        .expect("the other's files move");
    let err = archive(&dir, &to, 1).unwrap_err();
    assert!(matches!(err, ArchiveError::NotThisArchive { .. }), "{err}");
    assert_eq!(trail_files(&dir).unwrap(), files);
    assert_eq!(read_start(&dir).unwrap(), None);

    // An archive that does not end where this trail begins: a later run went elsewhere.
    let fresh = tmp.path().join("fresh");
    archive(&dir, &fresh, 3).unwrap().expect("files to move");
    write(&dir, 9, 13);
    archive(&dir, &tmp.path().join("later"), 2)
        .unwrap()
        .expect("files to move");
    let kept = trail_files(&dir).unwrap();
    let err = archive(&dir, &fresh, 1).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::NotThisArchive { why, .. } if why.contains("ends with")),
        "{err}"
    );
    assert_eq!(trail_files(&dir).unwrap(), kept);
    // An archive damaged since (its first file removed): not written on.
    let later = tmp.path().join("later");
    let first = trail_files(&later).unwrap()[0];
    std::fs::remove_file(later.join(file_name(first))).unwrap();
    let err = archive(&dir, &later, 1).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::NotThisArchive { why, .. } if why.contains("does not check out")),
        "{err}"
    );
    assert_eq!(trail_files(&dir).unwrap(), kept);

    // A record edited in the trail: nothing moves, the files stay as evidence.
    let path = dir.join(file_name(kept[0]));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\"OK\"", "\"KO\"", 1)).unwrap();
    let err = archive(&dir, &tmp.path().join("third"), 1).unwrap_err();
    assert!(matches!(err, ArchiveError::Broken { .. }), "{err}");
    assert_eq!(trail_files(&dir).unwrap(), kept);
    assert!(!tmp.path().join("third").exists());
}

#[test]
fn an_archive_stopped_before_the_trails_start_is_made_again_by_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, to) = (tmp.path().join("audit"), tmp.path().join("archive"));
    write(&dir, 1, 9);
    let files = trail_files(&dir).unwrap();
    // As if a first run stopped after copying (and writing the archive's head), before the
    // trail's start: the copies and a head are there, the trail is whole.
    let moved = archive(&dir, &to, 1).unwrap().expect("files to move");
    copy_back(&to, &dir, &moved.files);
    std::fs::remove_file(dir.join(super::super::trail::START_FILE)).unwrap();
    assert_eq!(trail_files(&dir).unwrap(), files);
    write(&dir, 9, 13);
    let moved = archive(&dir, &to, 1).unwrap().expect("files to move");
    assert_eq!(moved.files[0], 1);
    assert_whole(&to, &dir, 12);
}

#[test]
fn copies_left_in_the_trail_go_only_if_the_archive_holds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, to) = (tmp.path().join("audit"), tmp.path().join("archive"));
    write(&dir, 1, 9);
    let moved = archive(&dir, &to, 1).unwrap().expect("files to move");
    copy_back(&to, &dir, &moved.files);
    // Another directory: it does not hold them, so they stay.
    let elsewhere = tmp.path().join("elsewhere");
    let err = archive(&dir, &elsewhere, 1).unwrap_err();
    assert!(matches!(err, ArchiveError::NotThisArchive { .. }), "{err}");
    for n in &moved.files {
        assert!(dir.join(file_name(*n)).exists(), "{n} kept");
    }
    // A start naming a file past every file: every file is a "copy left", and none goes.
    let start_path = dir.join(super::super::trail::START_FILE);
    let far = intelmesh_audit::Start {
        file: 999_999,
        ..moved.start
    };
    let real = std::fs::read(&start_path).unwrap();
    std::fs::write(&start_path, far.encode()).unwrap();
    let all = trail_files(&dir).unwrap();
    assert!(archive(&dir, &elsewhere, 1).is_err());
    assert_eq!(trail_files(&dir).unwrap(), all, "nothing removed");
    std::fs::write(&start_path, real).unwrap();
    // The archive they went to: removed, and nothing else to move.
    assert_eq!(archive(&dir, &to, 1).unwrap(), None);
    for n in &moved.files {
        assert!(!dir.join(file_name(*n)).exists(), "{n} removed");
    }
    assert_eq!(seqs(&dir).first().copied(), Some(moved.start.after.seq + 1));
}

#[test]
fn only_files_before_a_durable_record_move() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, to) = (tmp.path().join("audit"), tmp.path().join("archive"));
    write(&dir, 1, 5);
    let durable_files = trail_files(&dir).unwrap();
    // Written to the OS, not synced: the head stays at seq 4.
    let mut t = Trail::open(&dir, 600).unwrap();
    t.append(&(5..13).map(call).collect::<Vec<_>>()).unwrap();
    drop(t);
    assert_eq!(read_head(&dir).unwrap().map(|h| h.seq), Some(4));
    let all = trail_files(&dir).unwrap();
    assert!(all.len() > durable_files.len() + 1, "{all:?}");
    let moved = archive(&dir, &to, 1).unwrap().expect("files to move");
    // The first file kept begins with a record the head covers.
    assert!(moved.start.after.seq < 4, "{moved:?}");
    assert!(moved.files.len() < all.len() - 1, "{moved:?} of {all:?}");
}

#[test]
fn the_trails_own_directory_or_a_second_run_at_once_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    write(&dir, 1, 9);
    let files = trail_files(&dir).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    let written_otherwise = tmp.path().join("x").join("..").join("audit");
    for to in [dir.clone(), link, written_otherwise] {
        let err = archive(&dir, &to, 1).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::NotThisArchive { why, .. } if why.contains("own directory")),
            "{}: {err}",
            to.display()
        );
        assert_eq!(trail_files(&dir).unwrap(), files);
    }
    let to = tmp.path().join("archive");
    let running = lock_exclusive(&dir).unwrap();
    let err = archive(&dir, &to, 1).unwrap_err();
    assert!(matches!(err, ArchiveError::Busy(_)), "{err}");
    assert!(!to.exists());
    drop(running);
    assert!(archive(&dir, &to, 1).unwrap().is_some());
}
