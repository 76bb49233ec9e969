//! Archiving a trail's earliest files on a real disk: both parts check, the node's trail opens
//! and chains on, an archive continues in the same directory, an interrupted one is finished,
//! and what does not fit (a broken trail, another trail's archive) moves nothing.

use super::super::trail::{read, read_start, trail_files, Trail};
use super::*;
use intelmesh_audit::{Call, Caller};

fn call(i: i64) -> Call {
    Call {
        time_ms: i,
        caller: Caller {
            org: "SG-IGCI".into(),
            name: "soc".into(),
            role: "service".into(),
        },
        method: "NodeStatus/Status".into(),
        values: 0,
        digests: Vec::new(),
        code: 0,
        result: "OK".into(),
    }
}

/// Appends calls `from..to` to the trail in `dir` (files of about two records), synced.
fn write(dir: &Path, from: i64, to: i64) {
    let mut t = Trail::open(dir, 600).unwrap();
    let calls: Vec<Call> = (from..to).map(call).collect();
    t.append(&calls).unwrap();
    t.sync().unwrap();
}

fn seqs(dir: &Path) -> Vec<u64> {
    let mut all = Vec::new();
    read(dir, |r| all.push(r.seq)).unwrap();
    all
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
    let (archived, kept) = (seqs(&to), seqs(&dir));
    assert_eq!(archived.last().copied(), Some(moved.start.after.seq));
    assert_eq!(
        archived.iter().chain(&kept).copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<u64>>()
    );
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
    let (archived, kept) = (seqs(&to), seqs(&dir));
    assert_eq!(
        archived.iter().chain(&kept).copied().collect::<Vec<_>>(),
        (1..=16).collect::<Vec<u64>>()
    );
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
    for n in &moved.files {
        std::fs::copy(to.join(file_name(*n)), dir.join(file_name(*n))).unwrap();
    }
    let kept = seqs(&dir);
    assert_eq!(kept.first().copied(), Some(moved.start.after.seq + 1));
    write(&dir, 9, 13);
    assert!(archive(&dir, &to, 1).unwrap().is_some());
    let files = trail_files(&dir).unwrap();
    assert!(files.iter().all(|n| !moved.files.contains(n)), "{files:?}");
    let (archived, kept) = (seqs(&to), seqs(&dir));
    assert_eq!(
        archived.iter().chain(&kept).copied().collect::<Vec<_>>(),
        (1..=12).collect::<Vec<u64>>()
    );
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

    // An archive that does not end where this trail begins (its files removed since).
    let fresh = tmp.path().join("fresh");
    let moved = archive(&dir, &fresh, 2).unwrap().expect("files to move");
    std::fs::remove_file(fresh.join(file_name(moved.files[0]))).unwrap();
    write(&dir, 9, 13);
    let kept = trail_files(&dir).unwrap();
    let err = archive(&dir, &fresh, 1).unwrap_err();
    assert!(matches!(err, ArchiveError::NotThisArchive { .. }), "{err}");
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
