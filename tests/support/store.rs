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
