//! Moving a trail's earliest files into an archive (`intelmesh audit archive`), so the trail
//! does not grow without end and its history can go to other storage, and both parts still
//! check: the archive is a trail of its own (files, `head`, the audit key, and a `start` of its
//! own if the trail had one) that ends at the last record moved, and the trail kept begins
//! after that record (its `start`).
//!
//! Run beside the node: only files before the last one holding a record move, and the node
//! writes only the last. Each step is durable before the next, so an interrupted archive
//! leaves both parts checking: the files are copied and the archive checked before the kept
//! trail's `start` is written, and the copies left in the trail after that are removed by the
//! next run (and skipped by every read meanwhile).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use intelmesh_audit::{file_name, parse_line, Head, Start};

use super::trail::{
    read, read_head, read_start, trail_files, TrailError, HEAD_FILE, KEY_FILE, START_FILE,
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
    #[error(transparent)]
    Trail(#[from] TrailError),
    #[error(transparent)]
    File(#[from] durable::FileError),
}

/// Moves the files of the trail in `dir` that come before its last `keep_files` (at least one)
/// and before the last file holding a record into the archive `to`, which must be empty or
/// hold this trail's files up to the first moved. `None` when nothing is to move.
pub fn archive(dir: &Path, to: &Path, keep_files: usize) -> Result<Option<Archived>, ArchiveError> {
    let start = read_start(dir)?;
    // Copies an interrupted run left: archived already (the start is written after them).
    for n in trail_files(dir)? {
        if start.is_some_and(|s| n < s.file) {
            durable::remove(&dir.join(file_name(n)))?;
        }
    }
    read(dir, |_| {}).map_err(|source| ArchiveError::Broken {
        dir: dir.to_path_buf(),
        source: Box::new(source),
    })?;
    let numbers = trail_files(dir)?;
    let last_held = last_holding_a_record(dir, &numbers)?;
    let movable: Vec<u64> = numbers[..numbers.len().saturating_sub(keep_files.max(1))]
        .iter()
        .copied()
        .filter(|n| last_held.is_some_and(|l| *n < l))
        .collect();
    let Some(&last_moved) = movable.last() else {
        return Ok(None);
    };
    let first_kept = last_moved + 1;
    let new_start = Start {
        file: first_kept,
        after: before_first_record(&dir.join(file_name(first_kept)))?,
    };
    prepare(to, dir, start, movable[0])?;
    for &n in &movable {
        let bytes = std::fs::read(dir.join(file_name(n))).map_err(io(dir, n))?;
        durable::replace(&to.join(file_name(n)), &bytes, 0o600)?;
    }
    durable::replace(
        &to.join(HEAD_FILE),
        new_start.after.encode().as_bytes(),
        0o600,
    )?;
    let archived = read(to, |_| {}).map_err(|source| ArchiveError::CopyBroken {
        to: to.to_path_buf(),
        source: Box::new(source),
    })?;
    if archived.last != new_start.after {
        return Err(ArchiveError::CopyBroken {
            to: to.to_path_buf(),
            source: Box::new(TrailError::Bad {
                path: to.join(HEAD_FILE),
                why: format!(
                    "the archive ends at seq {}, the trail kept begins after seq {}",
                    archived.last.seq, new_start.after.seq
                ),
            }),
        });
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

/// Readies `to` for the files from `first_moved` on of the trail in `dir` (which begins where
/// `start` says): created (0700) with the trail's key and start if new, else checked to hold
/// this trail up to just before them.
fn prepare(
    to: &Path,
    dir: &Path,
    start: Option<Start>,
    first_moved: u64,
) -> Result<(), ArchiveError> {
    let refuse = |why: String| ArchiveError::NotThisArchive {
        to: to.to_path_buf(),
        why,
    };
    std::fs::create_dir_all(to).map_err(|e| refuse(e.to_string()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| refuse(e.to_string()))?;
    }
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
    let theirs = trail_files(to)?;
    let Some(&last) = theirs.last() else {
        // A new archive begins where the trail did.
        if let Some(start) = start {
            durable::replace(&to.join(START_FILE), start.encode().as_bytes(), 0o600)?;
        }
        return Ok(());
    };
    // Checked whole before anything is added to it: a damaged archive is not written on.
    read(to, |_| {}).map_err(|e| refuse(format!("it does not check out ({e})")))?;
    if last + 1 != first_moved {
        return Err(refuse(format!(
            "its last file is {}, and the first to move is {}: give the archive this trail's \
             files went to before, or an empty directory",
            file_name(last),
            file_name(first_moved)
        )));
    }
    let ends_at = read_head(to)?;
    let begins_after = start.map(|s| s.after);
    if ends_at != begins_after {
        return Err(refuse(format!(
            "it ends at seq {}, and the trail kept begins after seq {}",
            ends_at.map_or(0, |h| h.seq),
            begins_after.map_or(0, |h| h.seq)
        )));
    }
    Ok(())
}

/// The last of `numbers` whose file holds a whole record (a line ended by its newline).
fn last_holding_a_record(dir: &Path, numbers: &[u64]) -> Result<Option<u64>, TrailError> {
    for &n in numbers.iter().rev() {
        let bytes = std::fs::read(dir.join(file_name(n))).map_err(io(dir, n))?;
        if bytes.contains(&b'\n') {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// The record before the first of the file at `path` (checked by [`read`] already), as the
/// first record names it: its seq and hash.
fn before_first_record(path: &Path) -> Result<Head, TrailError> {
    let bad = |why: String| TrailError::Bad {
        path: path.to_path_buf(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|source| TrailError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(|e| bad(e.to_string()))?;
    let sealed = parse_line(line.trim_end_matches('\n')).map_err(|e| bad(e.to_string()))?;
    let hash = hex::decode(&sealed.record.prev)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| bad("the first record's prev is not a hash".into()))?;
    Ok(Head {
        seq: sealed.record.seq.saturating_sub(1),
        hash,
    })
}

fn io(dir: &Path, n: u64) -> impl FnOnce(std::io::Error) -> TrailError {
    let path = dir.join(file_name(n));
    move |source| TrailError::Io { path, source }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
