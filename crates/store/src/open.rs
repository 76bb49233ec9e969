//! Opening the key-value space of a store: a private directory, the layout version and the
//! owner; errors that say what to do.

use std::path::Path;

use crate::kv::Kv;
use crate::{keys, private_dir, StoreConfig, StoreError};

/// Opens the key-value space in a private directory and checks (or stamps) its layout version
/// and owner.
pub(crate) fn open_db(cfg: &StoreConfig) -> Result<Kv, StoreError> {
    private_dir::prepare(&cfg.path)?;
    let db = open_kv(&cfg.path, cfg.cache_bytes)?;
    // The engine creates its files with the process's umask; whatever that was, only the owner
    // may read the store.
    private_dir::restrict(&cfg.path)?;
    check_format(&db, cfg)?;
    check_owner(&db, cfg)?;
    Ok(db)
}

/// Stamps a new store with the layout version; refuses one written in another layout.
fn check_format(db: &Kv, cfg: &StoreConfig) -> Result<(), StoreError> {
    let found = match db.get(keys::FORMAT)? {
        Some(v) => <[u8; 4]>::try_from(v.as_ref()).ok().map(u32::from_be_bytes),
        None if db.is_empty()? => {
            db.insert(keys::FORMAT, keys::FORMAT_VERSION.to_be_bytes())?;
            return Ok(());
        }
        None => Some(1),
    };
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

/// Records the owner in a new store; refuses a store recorded for another org.
fn check_owner(db: &Kv, cfg: &StoreConfig) -> Result<(), StoreError> {
    let Some(owner) = &cfg.owner else {
        return Ok(());
    };
    match db.get(keys::OWNER)? {
        None => {
            db.insert(keys::OWNER, owner.as_str().as_bytes())?;
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

/// How long an open waits for the store's lock before it reports the store in use: a store
/// closed a moment ago in the same process (a restart, a test) lets go once its last reader
/// has dropped it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the key-value space; another process holding it (past [`LOCK_WAIT`]) is
/// [`StoreError::InUse`]. A store of the earlier engine (sled, layouts up to 5) is refused with
/// what to do.
pub(crate) fn open_kv(path: &Path, cache_bytes: u64) -> Result<Kv, StoreError> {
    if path.join("conf").is_file() && path.join("db").exists() {
        return Err(StoreError::Corrupt(format!(
            "the store at {} was written by an earlier build (sled engine, layout 5 or before), \
             this build reads layout version {}: move it aside and let the node catch up from \
             its peers",
            path.display(),
            keys::FORMAT_VERSION
        )));
    }
    let started = std::time::Instant::now();
    loop {
        match crate::kv::clear_unfinished_creation(path).and_then(|()| Kv::open(path, cache_bytes))
        {
            Err(StoreError::InUse(_)) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}
