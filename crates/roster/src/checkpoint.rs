//! Comparing a member's roster checkpoint with the roster log this node holds: how a hub that
//! shows different rosters to different members is caught.

use intelmesh_core::Hash;
use intelmesh_proto::v1 as pb;

/// What a member's checkpoint says about the roster this node follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointVerdict {
    /// Same hash at that version.
    Agrees,
    /// Two different rosters at one version: the authority (or the hub) showed a split view.
    Conflict {
        version: u64,
        ours: Hash,
        theirs: Hash,
    },
    /// The member follows a version this node does not have yet.
    Ahead(u64),
}

/// Why a checkpoint cannot be compared at all (the member's node made a malformed one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointDefect {
    #[error("checkpoint of version 0: versions start at 1")]
    VersionZero,
    #[error("checkpoint hash has {0} bytes, not 32")]
    HashLength(usize),
}

/// Compares `checkpoint` with `own_hash_at_version`, the hash of this node's roster log at the
/// checkpoint's version (`None` when its log does not reach that version).
pub fn compare_checkpoint(
    own_hash_at_version: Option<&Hash>,
    checkpoint: &pb::RosterCheckpoint,
) -> Result<CheckpointVerdict, CheckpointDefect> {
    if checkpoint.version == 0 {
        return Err(CheckpointDefect::VersionZero);
    }
    let theirs: Hash = checkpoint
        .roster_hash
        .as_slice()
        .try_into()
        .map_err(|_| CheckpointDefect::HashLength(checkpoint.roster_hash.len()))?;
    Ok(match own_hash_at_version {
        None => CheckpointVerdict::Ahead(checkpoint.version),
        Some(ours) if *ours == theirs => CheckpointVerdict::Agrees,
        Some(ours) => CheckpointVerdict::Conflict {
            version: checkpoint.version,
            ours: *ours,
            theirs,
        },
    })
}

/// The checkpoint a node following `version` with `hash` publishes.
pub fn checkpoint_of(version: u64, hash: &Hash) -> pb::RosterCheckpoint {
    pb::RosterCheckpoint {
        version,
        roster_hash: hash.to_vec(),
    }
}
