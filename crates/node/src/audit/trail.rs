//! The trail's files in `DATA_DIR/audit`: `trail-NNNNNN.jsonl` (appended, rotated by size),
//! `head` (the last durable seq and hash, written after each fsync: `super::head_file`), `key` (the
//! node's random audit key, 0600, never logged) and, once its earliest files were archived
//! (`super::archive`), `start` (where the trail kept begins). Writing (`Trail`, on blocking
//! threads only) and reading back with the chain check (`read`, for `intelmesh audit` and
//! tests; read-only, safe while the node writes).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use intelmesh_audit::{
    file_name, file_number, parse_line, seal_into, AuditKey, Break, Call, Checker, Head, Record,
    Start, Summary, KEY_LEN,
};

use super::head_file::{self, HeadFile};

/// The head file's name in the audit directory.
pub const HEAD_FILE: &str = "head";
/// The audit key's file name in the audit directory.
pub const KEY_FILE: &str = "key";
/// The start's file name in the audit directory ([`Start`]).
pub const START_FILE: &str = "start";

/// Why the trail cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum TrailError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Bad { path: PathBuf, why: String },
    /// The trail found at start does not reach its head (or lost it): the node refuses to
    /// write on, since new records would chain onto the cut and hide it.
    #[error("the audit trail in {dir} is broken ({why}); run `intelmesh audit verify`, keep the files as evidence, then move {dir} aside to start a new trail")]
    Tampered { dir: PathBuf, why: String },
    #[error("{0}")]
    Broken(#[from] Break),
    /// A sync of the trail failed: what was written since the last sync may not be on disk,
    /// and a later sync would report success over the loss (the kernel reports a write-back
    /// error once), so nothing is written on, nor the head moved past it.
    #[error("a sync of the audit trail in {} failed earlier ({why}): records written since may not be on disk; no record is written and changes are refused until the node is restarted", dir.display())]
    SyncFailed { dir: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrailError + '_ {
    move |source| TrailError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The node's audit key, created (random, 0600) if the directory has none.
pub fn load_or_create_key(dir: &Path) -> Result<AuditKey, TrailError> {
    let path = dir.join(KEY_FILE);
    if path.exists() {
        return load_key(dir);
    }
    let mut bytes = [0u8; KEY_LEN];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    // Created whole or not at all: an empty key left by a crash would stop every start.
    match crate::durable::create_new(&path, &bytes, 0o600) {
        Ok(()) => Ok(AuditKey::from_bytes(bytes)),
        Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => load_key(dir),
        Err(e) => Err(io(&path)(e.source)),
    }
}

/// The node's audit key, read-only (for searches by value).
pub fn load_key(dir: &Path) -> Result<AuditKey, TrailError> {
    let path = dir.join(KEY_FILE);
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(&path))?;
    let bytes = <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| TrailError::Bad {
        path: path.clone(),
        why: format!("{} bytes, an audit key has {KEY_LEN}", bytes.len()),
    })?;
    Ok(AuditKey::from_bytes(bytes))
}

/// The head file, `None` if there is none.
pub fn read_head(dir: &Path) -> Result<Option<Head>, TrailError> {
    read_optional(dir, HEAD_FILE, head_file::decode)
}

/// The start file, `None` if there is none (the trail begins at its first file).
pub fn read_start(dir: &Path) -> Result<Option<Start>, TrailError> {
    read_optional(dir, START_FILE, Start::decode)
}

/// The one-line file `name` of `dir` decoded, `None` if there is none.
fn read_optional<T>(
    dir: &Path,
    name: &str,
    decode: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, TrailError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text)
            .map(Some)
            .map_err(|why| TrailError::Bad { path, why }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// The trail files in `dir`, by number.
pub fn trail_files(dir: &Path) -> Result<Vec<u64>, TrailError> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if let Some(n) = entry.file_name().to_str().and_then(file_number) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Reads the whole trail with the chain check, handing each record to `each`; stops at the
/// first break. A last line without its newline is one being written: it is left out.
pub fn read(dir: &Path, mut each: impl FnMut(&Record)) -> Result<Summary, TrailError> {
    read_by_file(dir, |_, r| each(r))
}

/// [`read`], each record handed over with the number of its file.
pub(crate) fn read_by_file(
    dir: &Path,
    mut each: impl FnMut(u64, &Record),
) -> Result<Summary, TrailError> {
    // The head first: what the trail holds later is never behind it.
    let head = read_head(dir)?;
    let start = read_start(dir)?;
    let mut checker = Checker::starting(head, start);
    // Files before the start are copies an interrupted archive has yet to remove.
    let kept: Vec<u64> = trail_files(dir)?
        .into_iter()
        .filter(|n| start.is_none_or(|s| *n >= s.file))
        .collect();
    check_files(dir, &kept, &mut checker, &mut each)?;
    Ok(checker.finish()?)
}

/// Feeds the files `numbers` of `dir` to `checker`, line by line, each record to `each` with
/// its file's number.
pub(crate) fn check_files(
    dir: &Path,
    numbers: &[u64],
    checker: &mut Checker,
    each: &mut impl FnMut(u64, &Record),
) -> Result<(), TrailError> {
    for &n in numbers {
        checker.file(n)?;
        let path = dir.join(file_name(n));
        let mut reader = BufReader::new(File::open(&path).map_err(io(&path))?);
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io(&path))? == 0 {
                break;
            }
            if line.pop() != Some(b'\n') {
                break;
            }
            number += 1;
            let text = String::from_utf8_lossy(&line);
            each(n, &checker.line(number, &text)?);
        }
    }
    Ok(())
}

/// The last complete record of the trail's last non-empty file, cutting off a torn last line
/// (a crash in the middle of a write, never synced, so never in the head).
fn last_record(dir: &Path, numbers: &[u64]) -> Result<Option<Head>, TrailError> {
    for &n in numbers.iter().rev() {
        let path = dir.join(file_name(n));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            tracing::warn!(file = %path.display(), bytes = bytes.len() - complete, "audit trail: cutting a torn last line (a crash while writing it)");
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            f.set_len(complete as u64).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
        }
        let text = String::from_utf8_lossy(&bytes[..complete]);
        if let Some(last) = text.lines().last() {
            let sealed = parse_line(last).map_err(|e| TrailError::Tampered {
                dir: dir.to_path_buf(),
                why: format!("the last line of {}: {e}", file_name(n)),
            })?;
            return Ok(Some(Head {
                seq: sealed.record.seq,
                hash: sealed.hash,
            }));
        }
    }
    Ok(None)
}

/// The trail being written: its current file, what it holds, and the head last made durable.
pub struct Trail {
    dir: PathBuf,
    key: AuditKey,
    max_file_bytes: u64,
    file: File,
    number: u64,
    size: u64,
    /// The last record written (flushed to the OS, maybe not yet synced).
    last: Head,
    /// Whether a failed write's bytes could not be cut yet.
    torn: bool,
    /// Whether `head` lags `last`.
    unsynced: bool,
    head: HeadFile,
    /// Whether a file was started since the last sync: its name is durable once the
    /// directory is synced, which must come before a head naming a record in it.
    new_file: bool,
    /// Why a sync failed, if one did: the trail then takes nothing more.
    sync_failed: Option<String>,
}

impl Trail {
    /// Opens the trail in `dir` (created 0700 if absent) to write on from its last record.
    /// Refuses a trail that falls short of its head or lost it.
    pub fn open(dir: &Path, max_file_bytes: u64) -> Result<Trail, TrailError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let key = load_or_create_key(dir)?;
        let head = read_head(dir)?;
        let numbers = trail_files(dir)?;
        let last = last_record(dir, &numbers)?;
        let tampered = |why: String| TrailError::Tampered {
            dir: dir.to_path_buf(),
            why,
        };
        match (head, last) {
            (None, Some(last)) => {
                return Err(tampered(format!(
                    "the trail reaches seq {} but its head file is missing",
                    last.seq
                )))
            }
            (Some(h), last) if h.seq > last.map_or(0, |l| l.seq) => {
                return Err(tampered(format!(
                    "the head records seq {} but the trail ends at seq {}",
                    h.seq,
                    last.map_or(0, |l| l.seq)
                )))
            }
            (Some(h), Some(last)) if h.seq == last.seq && h.hash != last.hash => {
                return Err(tampered(format!(
                    "the last record, seq {}, is not the one the head records",
                    h.seq
                )))
            }
            _ => {}
        }
        let number = numbers.last().copied().unwrap_or(1);
        let (file, size) = open_append(&dir.join(file_name(number)))?;
        // Without a head there is no record either (refused above): the head is seq 0. The
        // file is written whole, its directory synced, which makes the trail file's name
        // durable too.
        let head_path = dir.join(HEAD_FILE);
        let head_file = HeadFile::create(&head_path, &head.unwrap_or_default()).map_err(|e| {
            TrailError::Io {
                path: e.path,
                source: e.source,
            }
        })?;
        Ok(Trail {
            dir: dir.to_path_buf(),
            key,
            max_file_bytes,
            file,
            number,
            size,
            last: last.unwrap_or_default(),
            unsynced: false,
            torn: false,
            head: head_file,
            new_file: false,
            sync_failed: None,
        })
    }

    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    /// Appends `calls` (rotating to a new file when the current one is full) and flushes them
    /// to the OS; [`Trail::sync`] makes them durable. The chain moves on only over lines
    /// written whole: after a failed write (a full disk) the file is cut back to its last whole
    /// line and the next records chain onto that, so the trail stays verifiable, not marked as
    /// edited for good.
    pub fn append(&mut self, calls: &[Call]) -> Result<(), TrailError> {
        self.check_synced()?;
        let mut out = Vec::new();
        let mut sealed = self.last;
        for call in calls {
            if self.size + out.len() as u64 >= self.max_file_bytes
                && self.size + out.len() as u64 > 0
            {
                self.write_out(&mut out, sealed)?;
                self.rotate()?;
            }
            seal_into(&mut sealed, call, &mut out);
        }
        self.write_out(&mut out, sealed)
    }

    fn current(&self) -> PathBuf {
        self.dir.join(file_name(self.number))
    }

    /// Writes `out`, the lines sealed up to `sealed`; on failure cuts what part of it reached
    /// the file.
    fn write_out(&mut self, out: &mut Vec<u8>, sealed: Head) -> Result<(), TrailError> {
        if out.is_empty() {
            return Ok(());
        }
        // A torn write not cut yet: nothing goes after it until it is, or the next line
        // would be glued to it in the middle of the file.
        if self.torn {
            self.file.set_len(self.size).map_err(io(&self.current()))?;
            self.torn = false;
        }
        if let Err(e) = self.file.write_all(out) {
            self.torn = self.file.set_len(self.size).is_err();
            out.clear();
            return Err(io(&self.current())(e));
        }
        self.last = sealed;
        self.size += out.len() as u64;
        self.unsynced = true;
        out.clear();
        Ok(())
    }

    /// Refuses to go on after a failed sync.
    fn check_synced(&self) -> Result<(), TrailError> {
        match &self.sync_failed {
            Some(why) => Err(TrailError::SyncFailed {
                dir: self.dir.clone(),
                why: why.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Remembers a failed sync (see [`TrailError::SyncFailed`]).
    fn failed_sync(&mut self, e: TrailError) -> TrailError {
        self.sync_failed.get_or_insert_with(|| e.to_string());
        e
    }

    /// Closes the full file (synced) and starts the next; the chain runs on across them.
    fn rotate(&mut self) -> Result<(), TrailError> {
        if let Err(e) = self.file.sync_data() {
            return Err(self.failed_sync(io(&self.current())(e)));
        }
        self.number += 1;
        let path = self.current();
        let (file, size) = open_append(&path)?;
        self.file = file;
        self.size = size;
        self.new_file = true;
        Ok(())
    }

    /// Makes what was written durable, then moves the head to it.
    pub fn sync(&mut self) -> Result<(), TrailError> {
        self.check_synced()?;
        if !self.unsynced {
            return Ok(());
        }
        if let Err(e) = self.file.sync_data() {
            return Err(self.failed_sync(io(&self.current())(e)));
        }
        if self.new_file {
            if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
                return Err(self.failed_sync(io(&self.dir)(e)));
            }
            self.new_file = false;
        }
        self.head
            .write(&self.last)
            .map_err(io(&self.dir.join(HEAD_FILE)))?;
        self.unsynced = false;
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<(File, u64), TrailError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    let size = file.seek(SeekFrom::End(0)).map_err(io(path))?;
    Ok((file, size))
}

#[cfg(test)]
#[path = "trail_tests.rs"]
pub(super) mod tests;
