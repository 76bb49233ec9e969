//! Moving a trail's earliest files into an archive (`intelmesh audit archive`), so the trail
//! does not grow without end and its history can go to other storage, and both parts still
//! check: the archive is a trail of its own (files, `head`, the audit key, and a `start` of its
//! own if the trail had one) that ends at the last record moved, and the trail kept begins
//! after that record (its `start`).
//!
//! Run beside the node: a file moves only if it comes before the last file holding a record
//! (the node writes only the last) and the next file's first record is durable (in the trail's
//! head), so a power loss never leaves the trail kept without a record its head names. Nothing
//! is removed before the trail has checked out, and each step is durable before the next:
//! the files are copied and the archive checked before the trail kept gets its `start`, and
//! only then are the files removed. A run stopped anywhere is finished by the next into the
//! same archive (copies there of files still in the trail are made again, copies left in the
//! trail of files archived are removed once found identical in the archive).
//!
//! A `start` is no proof: whoever can write the audit directory can cut the trail's first
//! records and write one (as they could rewrite the whole trail, which only a last hash kept
//! elsewhere shows). The archive is: `intelmesh audit verify --archive DIR` checks that it
//! ends where the trail kept begins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use intelmesh_audit::{file_name, Checker, Head, Start};

use super::trail::{
    check_files, read, read_by_file, read_head, read_start, trail_files, TrailError, HEAD_FILE,
    KEY_FILE, START_FILE,
};
use crate::durable;

/// What an archive moved.
#[derive(Debug, PartialEq, Eq)]
pub struct Archived {
    /// The trail files moved, by number.
    pub files: Vec<u64>,
    /// Where the trail kept now begins (its first record follows `start.after`).
    pub start: Start,
}

/// Why a trail was not archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The trail does not check out: its files stay where they are, as evidence.
    #[error("the trail in {dir} does not check out, nothing was moved (keep its files as evidence; `intelmesh audit verify` says where it breaks): {source}")]
    Broken {
        dir: PathBuf,
        source: Box<TrailError>,
    },
    /// The archive directory holds another trail, or another part of this one.
    #[error("{to} cannot take these files: {why}")]
    NotThisArchive { to: PathBuf, why: String },
    /// The archive, once written, did not check out: the trail kept is unchanged.
    #[error("the archive in {to} does not check out after copying, the trail kept is unchanged: {source}")]
    CopyBroken {
        to: PathBuf,
        source: Box<TrailError>,
    },
    /// Another archive run holds the trail.
    #[error("another `intelmesh audit archive` is running on the trail in {0}: try again once it is done")]
    Busy(PathBuf),
    #[error(transparent)]
    Trail(#[from] TrailError),
    #[error(transparent)]
    File(#[from] durable::FileError),
}

/// Moves the files of the trail in `dir` that come before its last `keep_files` (at least one)
/// and before the last file holding a record into the archive `to`, which must be empty or
/// hold this trail's files up to the first moved. `None` when nothing is to move (copies an
/// interrupted run left in the trail are removed then too).
pub fn archive(dir: &Path, to: &Path, keep_files: usize) -> Result<Option<Archived>, ArchiveError> {
    // One run at a time: two would each take the other's copies for an interrupted run's.
    let _running = lock_exclusive(dir)?;
    refuse_own_directory(dir, to)?;
    // The whole trail checked, and where each file's first record links to (files holding none
    // are left out): what the files to move, and the start after them, are read from.
    let mut firsts: BTreeMap<u64, Head> = BTreeMap::new();
    read_by_file(dir, |n, r| {
        if firsts.contains_key(&n) {
            return;
        }
        if let Some(hash) = r.prev_hash() {
            let seq = r.seq.saturating_sub(1);
            firsts.insert(n, Head { seq, hash });
        }
    })
    .map_err(|source| ArchiveError::Broken {
        dir: dir.to_path_buf(),
        source: Box::new(source),
    })?;
    let (start, head) = (read_start(dir)?, read_head(dir)?);
    let (left, numbers): (Vec<u64>, Vec<u64>) = trail_files(dir)?
        .into_iter()
        .partition(|n| start.is_some_and(|s| *n < s.file));
    if numbers.is_empty() && !left.is_empty() {
        // A start past every file: the node could not open a trail with none left.
        return Err(ArchiveError::Broken {
            dir: dir.to_path_buf(),
            source: Box::new(TrailError::Bad {
                path: dir.join(START_FILE),
                why: "it names a file after every file of the trail".into(),
            }),
        });
    }
    let movable = movable(&numbers, &firsts, head, keep_files);
    if movable.is_empty() && left.is_empty() {
        return Ok(None);
    }
    let first_of_trail = numbers.first().copied().or(start.map(|s| s.file));
    prepare(
        to,
        dir,
        start,
        (first_of_trail.unwrap_or(1), movable.last().copied()),
    )?;
    // Copies an interrupted run left in the trail: in the archive as they are (`prepare`).
    for n in left {
        durable::remove(&dir.join(file_name(n)))?;
    }
    let Some(&last_moved) = movable.last() else {
        return Ok(None);
    };
    let first_kept = last_moved + 1;
    let new_start = Start {
        file: first_kept,
        // `movable` moves a file only before one holding a record.
        after: firsts[&first_kept],
    };
    for &n in &movable {
        let bytes = std::fs::read(dir.join(file_name(n))).map_err(io(dir, n))?;
        durable::replace(&to.join(file_name(n)), &bytes, 0o600)?;
    }
    durable::replace(
        &to.join(HEAD_FILE),
        new_start.after.encode().as_bytes(),
        0o600,
    )?;
    let copy_broken = |source| ArchiveError::CopyBroken {
        to: to.to_path_buf(),
        source: Box::new(source),
    };
    let archived = read(to, |_| {}).map_err(copy_broken)?;
    if archived.last != new_start.after {
        return Err(copy_broken(TrailError::Bad {
            path: to.join(HEAD_FILE),
            why: format!(
                "the archive ends at seq {}, the trail kept begins after seq {}",
                archived.last.seq, new_start.after.seq
            ),
        }));
    }
    durable::replace(&dir.join(START_FILE), new_start.encode().as_bytes(), 0o600)?;
    for &n in &movable {
        durable::remove(&dir.join(file_name(n)))?;
    }
    Ok(Some(Archived {
        files: movable,
        start: new_start,
    }))
}

/// The files of `numbers` (the trail's, in order) that may move: before its last `keep_files`
/// and the last holding a record, each followed by a file whose first record (`firsts`: the
/// record each file's first links to) the durable `head` covers.
fn movable(
    numbers: &[u64],
    firsts: &BTreeMap<u64, Head>,
    head: Option<Head>,
    keep_files: usize,
) -> Vec<u64> {
    let last_held = firsts.keys().next_back().copied();
    let candidates = &numbers[..numbers.len().saturating_sub(keep_files.max(1))];
    let mut out = Vec::new();
    for (i, &n) in candidates.iter().enumerate() {
        let next = numbers.get(i + 1).and_then(|next| firsts.get(next));
        let (Some(next), Some(last_held), Some(head)) = (next, last_held, head) else {
            break;
        };
        if n >= last_held || next.seq + 1 > head.seq {
            break;
        }
        out.push(n);
    }
    out
}

/// Readies `to` for the files from `first_moved` on of the trail in `dir` (which begins where
/// `start` says): created (0700) with the trail's key and start if new, else checked to hold
/// this trail up to just before them. Copies there of `first_moved` and later files (an
/// interrupted run's) must be the trail's files as they are: those up to `last_moved` stay (to
/// be written again, the same), those past it are removed. Copies left in the trail of files
/// before its start must be in the archive as they are.
fn prepare(
    to: &Path,
    dir: &Path,
    start: Option<Start>,
    (first_moved, last_moved): (u64, Option<u64>),
) -> Result<(), ArchiveError> {
    let refuse = |why: String| ArchiveError::NotThisArchive {
        to: to.to_path_buf(),
        why,
    };
    if !to.exists() {
        // Its name durable before files in it are relied on.
        durable::create_private_dir(to).map_err(|e| refuse(e.to_string()))?;
    }
    // Again once it exists: a path through a directory that did not exist yet (`new/..`) is
    // only known once made.
    refuse_own_directory(dir, to)?;
    let key = std::fs::read(dir.join(KEY_FILE)).map_err(|e| refuse(format!("{KEY_FILE}: {e}")))?;
    match std::fs::read(to.join(KEY_FILE)) {
        Ok(theirs) if theirs != key => {
            return Err(refuse(
                "it holds another trail (another audit key): choose an empty directory".into(),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            durable::replace(&to.join(KEY_FILE), &key, 0o600)?;
        }
        Err(e) => return Err(refuse(format!("{KEY_FILE}: {e}"))),
    }
    let (before, copies): (Vec<u64>, Vec<u64>) =
        trail_files(to)?.into_iter().partition(|n| *n < first_moved);
    for n in trail_files(dir)?.into_iter().filter(|n| *n < first_moved) {
        if !same_file(dir, to, n)? {
            return Err(refuse(format!(
                "{} was archived (the trail begins after it) but is not in this archive as it \
                 is in the trail: give the archive the earlier run went to",
                file_name(n)
            )));
        }
    }
    for &n in &copies {
        if !same_file(dir, to, n)? {
            return Err(refuse(format!(
                "it holds a {} other than the trail's",
                file_name(n)
            )));
        }
    }
    let Some(&last) = before.last() else {
        // A new archive (or one an interrupted first run began) begins where the trail did.
        match start {
            Some(start) => {
                durable::replace(&to.join(START_FILE), start.encode().as_bytes(), 0o600)?
            }
            None => durable::remove(&to.join(START_FILE))?,
        }
        return remove_copies(to, &copies, last_moved);
    };
    let Some(begins) = start.filter(|_| last + 1 == first_moved) else {
        return Err(refuse(format!(
            "it ends with {}, and the trail kept begins with {}: give the archive this trail's \
             files went to before, or an empty directory",
            file_name(last),
            file_name(first_moved)
        )));
    };
    // Its files before the trail kept must check out and end where the trail kept begins (its
    // head may be an interrupted run's, past them).
    let mut checker = Checker::starting(Some(begins.after), read_start(to)?);
    check_files(to, &before, &mut checker, &mut |_, _| {})
        .and_then(|()| checker.finish().map_err(TrailError::from))
        .map_err(|e| refuse(format!("it does not check out ({e})")))
        .and_then(|archived| match archived.last == begins.after {
            true => Ok(()),
            false => Err(refuse(format!(
                "it ends at seq {}, and the trail kept begins after seq {}",
                archived.last.seq, begins.after.seq
            ))),
        })?;
    remove_copies(to, &copies, last_moved)
}

/// Removes the archive's copies of files still in the trail that this run does not move (a
/// stopped run may have moved more); those it moves are written again, the same.
fn remove_copies(to: &Path, copies: &[u64], last_moved: Option<u64>) -> Result<(), ArchiveError> {
    for &n in copies.iter().filter(|n| last_moved.is_none_or(|l| **n > l)) {
        durable::remove(&to.join(file_name(n)))?;
    }
    Ok(())
}

/// An exclusive lock on the trail's directory for one archive run, released when dropped;
/// refused at once if another run holds it.
fn lock_exclusive(dir: &Path) -> Result<std::fs::File, ArchiveError> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).map_err(|source| TrailError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    // SAFETY: flock on a descriptor this function owns, open for the call.
    if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(handle);
    }
    let e = std::io::Error::last_os_error();
    match e.kind() {
        std::io::ErrorKind::WouldBlock => Err(ArchiveError::Busy(dir.to_path_buf())),
        _ => Err(TrailError::Io {
            path: dir.to_path_buf(),
            source: e,
        }
        .into()),
    }
}

/// Refuses `to` if it is the trail's directory `dir` (by device and inode: the same path
/// written otherwise, or a link to it).
fn refuse_own_directory(dir: &Path, to: &Path) -> Result<(), ArchiveError> {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), std::fs::metadata(to)) {
        (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino() => {
            Err(ArchiveError::NotThisArchive {
                to: to.to_path_buf(),
                why: "it is the trail's own directory: give another".into(),
            })
        }
        _ => Ok(()),
    }
}

/// Whether file `n` holds the same bytes in `dir` and in `to` (absent from `to`: no).
fn same_file(dir: &Path, to: &Path, n: u64) -> Result<bool, TrailError> {
    let theirs = match std::fs::read(to.join(file_name(n))) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(to, n)(e)),
    };
    let ours = std::fs::read(dir.join(file_name(n))).map_err(io(dir, n))?;
    Ok(theirs == ours)
}

fn io(dir: &Path, n: u64) -> impl FnOnce(std::io::Error) -> TrailError {
    let path = dir.join(file_name(n));
    move |source| TrailError::Io { path, source }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
