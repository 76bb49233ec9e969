//! How a store is opened: where its data lives, whose it is, what it keeps beside the log
//! (arrival times for TAXII) and the bounds of its hold queue.

use std::path::PathBuf;
use std::time::Duration;

use intelmesh_core::OrgId;

use crate::hold::HoldLimits;
use crate::state_table_build::StateTableConfig;

/// Where and how a store keeps its data.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The data directory: created 0700, its files kept 0600.
    pub path: PathBuf,
    /// The org of the node the store belongs to. A new store records it; a store recorded for
    /// another org is refused (a data directory mixed up between nodes). `None`: any store.
    pub owner: Option<OrgId>,
    /// Block cache size of the key-value space.
    pub cache_bytes: u64,
    /// Most entries held per origin while waiting for predecessors.
    pub hold_per_origin: usize,
    /// Most bytes held across all origins.
    pub hold_total_bytes: usize,
    /// How long an entry is held for its predecessors before it is dropped.
    pub hold_ttl: Duration,
    /// When the read-optimised copy of the index that lookups read is built.
    pub state_table: StateTableConfig,
    /// Whether the store keeps arrival times (see `arrival`).
    pub arrivals: Arrivals,
}

/// Whether a store keeps arrival times: TAXII's collection reads them, and they cost every
/// write two keys per changed record, so a node serving no TAXII does without.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Arrivals {
    /// As the store has them (a new store keeps them): for tools that open a store and must
    /// not change what it keeps.
    #[default]
    AsFound,
    /// Kept: a store without them rebuilds its index once as it opens, to stamp every record.
    Kept,
    /// Not kept: a store with them drops them as it opens.
    NotKept,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            owner: None,
            cache_bytes: 256 << 20,
            hold_per_origin: 4096,
            hold_total_bytes: 64 << 20,
            hold_ttl: Duration::from_secs(15 * 60),
            state_table: StateTableConfig::default(),
            arrivals: Arrivals::AsFound,
        }
    }

    /// The same store, recorded for (or checked against) `org`.
    pub fn owned_by(self, org: OrgId) -> StoreConfig {
        StoreConfig {
            owner: Some(org),
            ..self
        }
    }

    pub(crate) fn hold_limits(&self) -> HoldLimits {
        HoldLimits {
            per_origin: self.hold_per_origin,
            total_bytes: self.hold_total_bytes,
            ttl: self.hold_ttl,
        }
    }
}
