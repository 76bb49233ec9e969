//! One origin's signer and a fresh store in a temp dir, for the store rule tests.

use intelmesh_core::verify::verify_batch;
use intelmesh_core::{Signer, StaticKeys, VerifiedEntry, VerifyConfig};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{SledStore, StoreConfig};

use crate::{registry, seeded_signer};

pub struct Fixture {
    pub signer: Signer,
    pub keys: StaticKeys,
    _dir: tempfile::TempDir,
    pub store: SledStore,
}

/// A store opened with `cfg` applied to the default config, and the signer of `SG-IGCI` whose
/// key derives from `seed`.
pub fn fixture(seed: u64, cfg: impl FnOnce(StoreConfig) -> StoreConfig) -> Fixture {
    let signer = seeded_signer(seed, "SG-IGCI");
    let keys = registry(&[&signer]);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(cfg(StoreConfig::new(dir.path()))).expect("open store");
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

/// Removes every index key from a closed store, as a store of layout 3 (index in memory) or a
/// rebuild cut short by a crash leaves it.
pub fn strip_index(dir: &std::path::Path, layout: Option<u32>, mark_rebuild: bool) {
    // sled's background flusher may hold the closed store's lock for a moment.
    let db = (0..100)
        .find_map(|_| {
            let db = sled::Config::new().path(dir).segment_size(8 << 20).open();
            if db.is_err() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            db.ok()
        })
        .expect("the closed store opens");
    let index_keys: Vec<_> = db
        .iter()
        .keys()
        .map(|k| k.unwrap())
        .filter(|k| matches!(k.first(), Some(b'I' | b'Q' | b'M')))
        .collect();
    assert!(!index_keys.is_empty());
    for k in index_keys {
        db.remove(k).unwrap();
    }
    if let Some(v) = layout {
        db.insert(b"V", &v.to_be_bytes()).unwrap();
    }
    if mark_rebuild {
        db.insert(b"Mrebuild", &[][..]).unwrap();
    }
    db.flush().unwrap();
}
