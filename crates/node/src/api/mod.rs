//! The local API: services for this agency's own tooling, on the API listener only.

mod status;

pub use status::StatusService;
