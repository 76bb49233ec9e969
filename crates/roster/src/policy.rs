//! Federation-wide policy as nodes apply it: the document's values, with defaults for zeros.

use intelmesh_proto::v1 as pb;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// How far in the future an entry's issue time may be.
    pub clock_skew_ms: u64,
    /// How often each node publishes a roster checkpoint in its own log.
    pub checkpoint_interval_ms: u64,
    /// Certificates this close to expiry are warned about.
    pub cert_warn_days: u64,
}

impl Policy {
    pub const DEFAULT_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
    pub const DEFAULT_CHECKPOINT_INTERVAL_MS: u64 = 60 * 1000;
    pub const DEFAULT_CERT_WARN_DAYS: u64 = 30;

    /// The policy in force: each zero (or absent) value takes its default.
    pub fn from_proto(policy: Option<&pb::Policy>) -> Policy {
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        let p = policy.cloned().unwrap_or_default();
        Policy {
            clock_skew_ms: or(p.clock_skew_ms, Self::DEFAULT_CLOCK_SKEW_MS),
            checkpoint_interval_ms: or(
                p.checkpoint_interval_ms,
                Self::DEFAULT_CHECKPOINT_INTERVAL_MS,
            ),
            cert_warn_days: or(p.cert_warn_days, Self::DEFAULT_CERT_WARN_DAYS),
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::from_proto(None)
    }
}
