//! Durable storage of the per-origin logs and the state derived from them.
//!
//! [`Store`] is what the node programs against; [`DiskStore`] keeps the logs (in segments, see
//! `segment`), heads, fork proofs and signing keys in one ordered key-value space on disk (an
//! LSM tree, see `kv`) under prefixed keys (see `keys`), so one batch of entries is one atomic
//! `apply_batch`, durable before anyone can read it: an entry
//! is reported appended only once it is on disk. The indicator index is derived from the log
//! and written in the same batch (see `index_write`), with postings for queries by tag, origin
//! and time (see `postings`).

mod apply;
pub mod arrival;
mod background;
mod check;
mod disk_store;
mod group_commit;
mod hold;
mod huge_pages;
mod index;
mod index_rebuild;
mod index_refold;
mod index_write;
mod keys;
mod kv;
mod open;
mod postings;
mod presence;
mod private_dir;
pub mod receipt;
pub mod reopen;
mod segment;
mod select;
mod state_record;
mod state_sum;
mod state_table;
mod state_table_build;
mod state_table_file;
mod store_config;
mod tail_cache;
mod truncate;
mod write;
mod write_lock;

use std::collections::BTreeMap;
use std::time::Duration;

use intelmesh_core::chain::ChainError;
use intelmesh_core::containment::{BlockBits, PrefixLengths};
use intelmesh_core::{Hash, Head, Indicator, OrgId, VerifiedEntry};
use intelmesh_proto::v1 as pb;

pub use apply::MAX_FORK_PROOFS_PER_ORIGIN;
pub use check::{verify_store, StoreCheck};
pub use disk_store::{Arrivals, DiskStore, IndexSource, StoreConfig};
pub use index::{first_issued, merge_payload, MAX_SLOTS_PER_ORIGIN};
pub use postings::Selection;
pub use reopen::Unopened;
pub use select::Selected;
pub use state_table_build::StateTableConfig;
pub use truncate::TruncateReport;

/// Head seq per origin: what a node holds, and what it tells peers in its hello.
pub type VersionVector = BTreeMap<OrgId, u64>;

/// What became of one entry handed to [`Store::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Durably appended to its origin's log.
    Appended,
    /// Already stored: nothing changed.
    Duplicate,
    /// Was stored as a withheld stub; its payload is now stored too.
    PayloadFilled,
    /// Its predecessors are missing; kept in memory until they arrive. Not durable yet.
    Held,
    /// Verified, but refused by the chain rules.
    Rejected(ChainError),
}

/// The result of one [`Store::apply`]: an outcome per input entry, in input order, plus the
/// entries held by earlier calls that this call made durable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub outcomes: Vec<Outcome>,
    pub released: Vec<(OrgId, u64)>,
    /// Where the write's time went.
    pub timings: ApplyTimings,
}

/// Where one write's time went, in the order the phases run. Every write to a store runs
/// them one at a time under its write lock, so their sum is how long the store was closed to
/// other writers (with `lock_wait`, how long the caller waited for it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyTimings {
    /// Waiting for the store's write lock (another write was running).
    pub lock_wait: Duration,
    /// Chain decisions: heads and log reads, the hold queue, log segments and fork proofs.
    pub placing: Duration,
    /// Reading the stored states the batch changes and folding the updates into them.
    pub index_read: Duration,
    /// Encoding the new states, their postings and the index's counters into the batch.
    pub index_write: Duration,
    /// The engine's atomic, durable commit (journal written and fsynced, memtable inserts).
    pub commit: Duration,
}

impl ApplyTimings {
    /// Each phase with its name, for reporting.
    pub fn phases(&self) -> [(&'static str, Duration); 5] {
        [
            ("lock_wait", self.lock_wait),
            ("placing", self.placing),
            ("index_read", self.index_read),
            ("index_write", self.index_write),
            ("commit", self.commit),
        ]
    }
}

impl ApplyReport {
    /// Every (origin, seq) that this call made durable, whether given now or held before.
    pub fn appended(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Appended))
            .count()
            + self.released.len()
    }
}

/// A stub the store completed with its full entry. Numbered from 1 in the order they were
/// made, so a watcher can follow fills as it follows the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fill {
    pub n: u64,
    pub origin: OrgId,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Engine(#[from] fjall::Error),
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The write this batch was grouped with (`group_commit`) failed; nothing of it is stored.
    #[error("the store's write of this batch with others failed: {0}")]
    Grouped(String),
    /// A cut left the index to rebuild and the last try failed: reads of the index and writes
    /// wait for the next.
    #[error("the index is being rebuilt after a cut and its last try failed: reads of the index and writes wait for the next try, within 10 s")]
    RebuildPending,
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the store at {} is in use by another process (a running node?): stop the node first", .0.display())]
    InUse(std::path::PathBuf),
    #[error("the store at {} belongs to {found}, not {expected}: is data_dir the right one for this node?", path.display())]
    OtherOwner {
        path: std::path::PathBuf,
        found: String,
        expected: OrgId,
    },
}

/// The node's durable state.
pub trait Store: Send + Sync {
    /// Applies verified entries in (origin, seq) order, atomically, and flushes before
    /// returning: every [`Outcome::Appended`] is durable when this returns `Ok`.
    fn apply(&self, batch: Vec<VerifiedEntry>) -> Result<ApplyReport, StoreError>;
    fn head(&self, origin: &OrgId) -> Result<Option<Head>, StoreError>;
    /// Every origin's head: seq and header hash. Shared: every link reads them after every
    /// append, and copying 190 heads for each was a hub's largest cost in `bench federation`.
    fn heads(&self) -> Result<std::sync::Arc<BTreeMap<OrgId, Head>>, StoreError>;
    fn vector(&self) -> Result<VersionVector, StoreError>;
    /// Up to `limit` entries of `origin` from `from_seq` on, as stored (stubs stay stubs).
    fn range(
        &self,
        origin: &OrgId,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<pb::SignedEntry>, StoreError>;
    fn indicator(&self, indicator: &Indicator) -> Result<Option<pb::IndicatorState>, StoreError>;
    /// When one record of `indicator`'s state (an [`arrival::Slot`]) last changed at this node,
    /// in µs of this node's clock; `None` when the index holds no such record.
    fn arrival(
        &self,
        indicator: &Indicator,
        slot: &arrival::Slot,
    ) -> Result<Option<i64>, StoreError>;
    /// Each of `indicators`' states as a lookup needs it, in order: at least what its verdict,
    /// confidence and origins rest on (each assertion's origin, seq, distribution, revocation,
    /// confidence and validity; who saw it under which distribution); descriptions, tags,
    /// references and sighting counts may be left out. Asked many at once, so a store can
    /// read its filters and tables for all of them together.
    fn lookup_states(
        &self,
        indicators: &[&Indicator],
    ) -> Result<Vec<Option<pb::IndicatorState>>, StoreError> {
        indicators.iter().map(|i| self.indicator(i)).collect()
    }
    /// Up to `limit` indicator states of `selection` in its order, each with the position to
    /// resume after it; from the first when `after` is `None`. Reads an ordered range of the
    /// index's postings: a page costs what it returns. By tag, origin or type, and of the whole
    /// index, only states with a record `reader` may read are candidates: what is withheld from
    /// it costs it nothing it could time or count.
    fn select(
        &self,
        selection: &Selection,
        reader: &OrgId,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Selected>, StoreError>;
    fn fork_proofs(&self) -> Result<Vec<pb::ForkProof>, StoreError>;
    /// How many fork proofs of `origin` the store keeps (at most
    /// [`MAX_FORK_PROOFS_PER_ORIGIN`]).
    fn fork_proof_count(&self, origin: &OrgId) -> Result<usize, StoreError>;
    /// Origins caught equivocating.
    fn flagged_origins(&self) -> Result<Vec<OrgId>, StoreError>;
    /// SHA-256 over the heads and the indicator index: equal on two nodes iff they hold the
    /// same logs and derived the same state.
    fn state_digest(&self) -> Result<Hash, StoreError>;
    /// Up to `limit` payload fills after the `after`th, in order.
    fn fills_after(&self, after: u64, limit: usize) -> Result<Vec<Fill>, StoreError>;
    /// How many payload fills the store has made.
    fn fill_count(&self) -> u64;
    /// The prefix lengths of the CIDR blocks in the index, so containment lookups probe only
    /// those (see `intelmesh_core::containment`).
    fn prefix_lengths(&self) -> PrefixLengths;
    /// Clears `held[i]` where the index certainly holds no CIDR block `blocks[i]`, so a
    /// containment lookup need not read it (see `intelmesh_core::containment::HeldBlocks`).
    fn may_hold_blocks(&self, blocks: &[BlockBits], held: &mut [bool]) {
        let _ = (blocks, held);
    }
    /// What `origin`'s sealed entry `seq` opened to at this node, if this node is one of its
    /// readers and opened it (see `intelmesh_core::opened`).
    fn opened(&self, origin: &OrgId, seq: u64) -> Result<Option<Vec<u8>>, StoreError>;
}
