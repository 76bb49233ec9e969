//! The local API: services for this agency's own tooling, on the API listener only.

mod idempotency;
mod indicators;
mod indicators_audited;
pub mod lookup;
mod lookup_call;
mod query;
pub mod status;
pub mod stix;
pub mod submission;
pub mod view;
mod watch_feed;
mod watches;
mod wider;

#[cfg(test)]
pub(crate) mod test_values;

pub use crate::read_shares::{READS_AT_ONCE, READS_PER_CALLER};
pub use indicators::audience_rejudge;
pub use indicators::IndicatorsService;
pub use status::StatusService;
