//! Opening sled for a store: a private directory, the segment size, the layout version and the
//! owner, and what a crash may have left behind; errors that say what to do.

use std::path::Path;

use crate::{keys, private_dir, StoreConfig, StoreError};

/// sled's log segment size. sled writes a tree node bigger than a quarter of a segment to a file
/// of its own (a "blob"), and splits a leaf only past 16 values, whatever their size: with the
/// default 512 KiB segments, a leaf of log segments holding entries near the 64 KiB payload cap
/// became a blob, and closing such a store could hang in sled's final flush (seen in the
/// multi-node tests under load). 8 MiB segments keep any leaf of our values (16 values of at most
/// about 70 KiB each) inline.
const SLED_SEGMENT_BYTES: usize = 8 << 20;

/// Opens sled in a private directory and checks (or stamps) its layout version and owner; all
/// under the process's sled write lock, released before anything can drop a half-open store.
pub(crate) fn open_db(cfg: &StoreConfig) -> Result<sled::Db, StoreError> {
    let _one_writer = crate::sled_lock::exclusive();
    private_dir::prepare(&cfg.path)?;
    remove_unfinished_snapshots(&cfg.path)?;
    let db = open_sled(&cfg.path, cfg.cache_bytes)?;
    // sled creates its files with the process's umask; whatever that was, only the owner may
    // read the store.
    private_dir::restrict(&cfg.path)?;
    check_format(&db, cfg)?;
    check_owner(&db, cfg)?;
    Ok(db)
}

/// Stamps a new store with the layout version; refuses one written in another layout.
fn check_format(db: &sled::Db, cfg: &StoreConfig) -> Result<(), StoreError> {
    let found = match db.get(keys::FORMAT)? {
        Some(v) => <[u8; 4]>::try_from(v.as_ref()).ok().map(u32::from_be_bytes),
        None if db.first()?.is_none() => {
            db.insert(keys::FORMAT, &keys::FORMAT_VERSION.to_be_bytes())?;
            db.flush()?;
            return Ok(());
        }
        None => Some(1),
    };
    if found.is_some_and(|v| keys::FORMAT_UPGRADABLE.contains(&v)) {
        upgrade(db, cfg)?;
        return Ok(());
    }
    if found != Some(keys::FORMAT_VERSION) {
        return Err(StoreError::Corrupt(format!(
            "the store at {} has layout version {}, this build reads version {}: \
             move it aside and let the node catch up from its peers",
            cfg.path.display(),
            found.map_or_else(|| "unreadable".to_string(), |v| v.to_string()),
            keys::FORMAT_VERSION
        )));
    }
    Ok(())
}

/// Upgrades a store of an earlier layout (3: index in memory, snapshot file beside sled; 4: no
/// object-id postings): the new layout and the rebuild mark in one batch, so the index is built
/// on disk from the log before the store serves anything, and a crash meanwhile rebuilds it at
/// the next open.
fn upgrade(db: &sled::Db, cfg: &StoreConfig) -> Result<(), StoreError> {
    tracing::info!(path = %cfg.path.display(), "upgrading the store layout: the index is rebuilt from the log");
    let mut batch = sled::Batch::default();
    batch.insert(keys::FORMAT, &keys::FORMAT_VERSION.to_be_bytes());
    crate::index_rebuild::mark(&mut batch);
    db.apply_batch(batch)?;
    db.flush()?;
    let old_snapshot = cfg.path.join("intelmesh-index.snapshot");
    match std::fs::remove_file(&old_snapshot) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            path: old_snapshot,
            source,
        }),
    }
}

/// Records the owner in a new store; refuses a store recorded for another org.
fn check_owner(db: &sled::Db, cfg: &StoreConfig) -> Result<(), StoreError> {
    let Some(owner) = &cfg.owner else {
        return Ok(());
    };
    match db.get(keys::OWNER)? {
        None => {
            db.insert(keys::OWNER, owner.as_str().as_bytes())?;
            db.flush()?;
            Ok(())
        }
        Some(v) if v.as_ref() == owner.as_str().as_bytes() => Ok(()),
        Some(v) => Err(StoreError::OtherOwner {
            path: cfg.path.clone(),
            found: String::from_utf8_lossy(&v).chars().take(80).collect(),
            expected: owner.clone(),
        }),
    }
}

/// How long an open waits for sled's lock before it reports the store in use. Closing a sled
/// database returns before its background writers let go of the file lock, so an open right
/// after a close in the same process (a restart, a rebuild, a test) can find it still held.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the sled database; another process holding it (past [`LOCK_WAIT`]) is
/// [`StoreError::InUse`].
pub(crate) fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match open_sled_once(path, cache_bytes) {
            Err(StoreError::InUse(_)) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

fn open_sled_once(path: &Path, cache_bytes: u64) -> Result<sled::Db, StoreError> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .segment_size(SLED_SEGMENT_BYTES)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(io) if is_lock_held(&io) => StoreError::InUse(path.to_path_buf()),
            // Stores of layout 2 and before used sled's default segment size.
            sled::Error::Unsupported(why) if why.contains("io buffer size") => {
                StoreError::Corrupt(format!(
                    "the store at {} was written in an earlier layout (other sled segments), \
                     this build reads layout version {}: move it aside and let the node catch \
                     up from its peers",
                    path.display(),
                    keys::FORMAT_VERSION
                ))
            }
            e => StoreError::Sled(e),
        })
}

/// Whether sled failed to open because another process holds its lock. sled 0.34 reports
/// that as an `ErrorKind::Other` error whose text names the lock (the `WouldBlock` from flock
/// survives only inside the text), so the text is all there is to go by.
fn is_lock_held(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::WouldBlock
        || io.to_string().starts_with("could not acquire lock on ")
}

/// sled 0.34 writes a snapshot to `snap.<lsn>.generating` and renames it when complete. A kill
/// in between leaves the partial file behind, and on the next open sled takes it for the newest
/// snapshot and refuses to start ("Read corrupted data", sled issues #1527 and #1533). Without
/// the rename it never was a snapshot: removing it lets sled recover from the previous snapshot
/// and its log, which hold everything flushed.
pub(crate) fn remove_unfinished_snapshots(dir: &std::path::Path) -> Result<(), StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Sled(e.into())),
    };
    for entry in entries {
        let path = entry.map_err(|e| StoreError::Sled(e.into()))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %path.display(), "removing a snapshot left unfinished by a crash");
            std::fs::remove_file(&path).map_err(|e| StoreError::Sled(e.into()))?;
        }
    }
    Ok(())
}
