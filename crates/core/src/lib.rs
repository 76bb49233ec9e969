//! intelmesh's core: the indicator model, log entries, signing, verification and chain rules.
//!
//! Nothing here does I/O: every function takes plain values and returns plain values, so the
//! protocol rules are tested without sockets or disks. Storage lives in `intelmesh-store`,
//! transport in `intelmesh-node`.

pub mod batch_tree;
pub mod chain;
pub mod containment;
mod content;
pub mod entry;
pub mod evidence;
pub mod indicator;
mod key_registry;
pub mod object_id;
pub mod opened;
pub mod payload;
pub mod sealed;
pub mod sign;
pub mod signature;
pub mod verify;
mod verify_error;
mod zip215;

pub use entry::{Distribution, Hash, Head, KeyId, OrgId, Tlp};
pub use indicator::{Indicator, IndicatorType};
pub use sign::Signer;
pub use verify::{
    Content, Control, KeyLookup, KeyRegistry, SeqRange, StaticKeys, VerifiedEntry, VerifyConfig,
    VerifyError,
};

/// Milliseconds since the Unix epoch, from the system clock. The one clock read of the core,
/// kept here so callers pass plain values to everything else.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
