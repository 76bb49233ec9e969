//! One origin's signer and a fresh store in a temp dir, for the store rule tests.

use intelmesh_core::verify::verify_batch;
use intelmesh_core::{Signer, StaticKeys, VerifiedEntry, VerifyConfig};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, StoreConfig};

use crate::{registry, seeded_signer};

pub struct Fixture {
    pub signer: Signer,
    pub keys: StaticKeys,
    _dir: tempfile::TempDir,
    pub store: DiskStore,
}

/// A store opened with `cfg` applied to the default config, and the signer of `SG-IGCI` whose
/// key derives from `seed`.
pub fn fixture(seed: u64, cfg: impl FnOnce(StoreConfig) -> StoreConfig) -> Fixture {
    let signer = seeded_signer(seed, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = DiskStore::open(cfg(StoreConfig::new(dir.path()))).expect("open store");
    Fixture {
        signer,
        keys,
        _dir: dir,
        store,
    }
}

impl Fixture {
    /// `raws`, verified with the fixture's keys (they must verify).
    pub fn verified(&self, raws: Vec<pb::SignedEntry>) -> Vec<VerifiedEntry> {
        verify_batch(
            raws,
            &self.keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        )
        .into_iter()
        .map(|r| r.expect("fixture entries verify"))
        .collect()
    }
}

/// Removes every index key from a closed store, as a rebuild cut short by a crash leaves it
/// (with the rebuild mark when `mark_rebuild`), or as damage `verify_store` must find.
pub fn strip_index(dir: &std::path::Path, mark_rebuild: bool) {
    // A store dropped a moment ago in this process lets go of its lock once its last reader has.
    let db = (0..100)
        .find_map(|_| {
            let db = fjall::Database::builder(dir).open();
            if db.is_err() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            db.ok()
        })
        .expect("the closed store opens");
    let space = db
        .keyspace("store", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let index_keys: Vec<_> = space
        .iter()
        .map(|g| g.key().unwrap())
        .filter(|k| matches!(k.first(), Some(b'I' | b'Q' | b'M')))
        .collect();
    assert!(!index_keys.is_empty());
    for k in index_keys {
        space.remove(k).unwrap();
    }
    if mark_rebuild {
        space.insert(b"Mrebuild", []).unwrap();
    }
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}
