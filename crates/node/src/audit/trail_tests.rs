//! The trail's files on a real disk: reopening continues the chain, a torn last line is cut,
//! files rotate by size, and a trail cut behind its head is refused at open.

use super::*;
use intelmesh_audit::Caller;

/// A call at time `i` (also the archive's tests').
pub(in crate::audit) fn call(i: i64) -> Call {
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

/// The seqs of the trail in `dir`, checked.
pub(in crate::audit) fn seqs(dir: &Path) -> Vec<u64> {
    let mut all = Vec::new();
    read(dir, |r| all.push(r.seq)).unwrap();
    all
}

#[test]
fn a_reopened_trail_chains_on_and_rotates_by_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut t = Trail::open(&dir, 700).unwrap();
    t.append(&[call(1), call(2), call(3)]).unwrap();
    t.sync().unwrap();
    drop(t);
    let mut t = Trail::open(&dir, 700).unwrap();
    t.append(&[call(4), call(5)]).unwrap();
    t.sync().unwrap();
    assert_eq!(seqs(&dir), [1, 2, 3, 4, 5]);
    assert!(trail_files(&dir).unwrap().len() >= 2);
    assert_eq!(read_head(&dir).unwrap().map(|h| h.seq), Some(5));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(file_name(1))), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // The same key on every open.
    let key = load_key(&dir).unwrap();
    assert_eq!(key.digest(None, "1.2.3.4"), t.key().digest(None, "1.2.3.4"));
}

/// A trail in `root/audit` with records 1 and 2, synced and closed; its directory and file.
fn two_records(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = root.join("audit");
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    t.append(&[call(1), call(2)]).unwrap();
    t.sync().unwrap();
    drop(t);
    let path = dir.join(file_name(1));
    (dir, path)
}

#[test]
fn a_torn_last_line_is_cut_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, path) = two_records(tmp.path());
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"{\"seq\":3,\"time_ms\":").unwrap();
    drop(f);
    // Read meanwhile: a line being written is left out.
    assert_eq!(seqs(&dir), [1, 2]);
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    t.append(&[call(3)]).unwrap();
    t.sync().unwrap();
    assert_eq!(seqs(&dir), [1, 2, 3]);
}

#[test]
fn a_trail_behind_its_head_or_without_it_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, path) = two_records(tmp.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let first_line = text.lines().next().unwrap();
    std::fs::write(&path, format!("{first_line}\n")).unwrap();
    let err = Trail::open(&dir, 1 << 20).err().unwrap().to_string();
    assert!(
        err.contains("head records seq 2 but the trail ends at seq 1"),
        "{err}"
    );
    std::fs::remove_file(dir.join(HEAD_FILE)).unwrap();
    let err = Trail::open(&dir, 1 << 20).err().unwrap().to_string();
    assert!(err.contains("head file is missing"), "{err}");
}

#[test]
fn a_failed_write_leaves_the_chain_on_its_last_written_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    t.append(&[call(1), call(2)]).unwrap();
    // A full disk: every write fails with ENOSPC.
    let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
    let kept = std::mem::replace(&mut t.file, full);
    assert!(matches!(t.append(&[call(3)]), Err(TrailError::Io { .. })));
    t.file = kept;
    t.append(&[call(4)]).unwrap();
    t.sync().unwrap();
    // The record after the failure chains onto the last one written: no gap, no edit.
    let mut times = Vec::new();
    read(&dir, |r| times.push((r.seq, r.time_ms))).expect("an unbroken chain");
    assert_eq!(times, [(1, 1), (2, 2), (3, 4)]);
}

/// A failed sync may have lost what was written since the last one, and the next sync would
/// not say so: the trail takes nothing more, and its head stays on the last synced record.
#[test]
fn after_a_failed_sync_nothing_is_written_and_the_head_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    t.append(&[call(1), call(2)]).unwrap();
    t.sync().unwrap();
    // A file that cannot be synced (fsync on /dev/null is EINVAL): a write-back error.
    let unsyncable = OpenOptions::new().append(true).open("/dev/null").unwrap();
    let kept = std::mem::replace(&mut t.file, unsyncable);
    t.append(&[call(3)]).unwrap();
    assert!(matches!(t.sync(), Err(TrailError::Io { .. })));
    t.file = kept;
    assert!(matches!(
        t.append(&[call(4)]),
        Err(TrailError::SyncFailed { .. })
    ));
    assert!(matches!(t.sync(), Err(TrailError::SyncFailed { .. })));
    drop(t);
    // Opened again (a restart), the trail goes on from its last synced record.
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    t.append(&[call(5)]).unwrap();
    t.sync().unwrap();
    let mut times = Vec::new();
    read(&dir, |r| times.push((r.seq, r.time_ms))).expect("an unbroken chain");
    assert_eq!(times, [(1, 1), (2, 2), (3, 5)]);
}

#[test]
fn a_head_torn_by_a_crash_falls_back_to_the_slot_before() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    for i in 1..=2 {
        t.append(&[call(i)]).unwrap();
        t.sync().unwrap();
    }
    drop(t);
    // The slot written last (seq 2) torn in the middle of its hash.
    let path = dir.join(HEAD_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = String::from_utf8_lossy(&bytes).find("\"seq\":2,").unwrap();
    bytes[at + 30..at + 60].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_head(&dir).unwrap().map(|h| h.seq), Some(1));
    // The trail reaches the head left: it opens and chains on.
    let mut t = Trail::open(&dir, 1 << 20).unwrap();
    t.append(&[call(3)]).unwrap();
    t.sync().unwrap();
    assert_eq!(seqs(&dir), [1, 2, 3]);
    assert_eq!(read_head(&dir).unwrap().map(|h| h.seq), Some(3));
    assert!(!dir.join("head.tmp").exists());
}
