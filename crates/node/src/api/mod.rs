//! The local API: services for this agency's own tooling, on the API listener only.

mod idempotency;
mod indicators;
pub mod status;
pub mod submission;
pub mod view;

pub use indicators::IndicatorsService;
pub use status::StatusService;
