//! Federation: the gRPC `Federation` service (accepting links), the dialer (opening them), and
//! the link protocol both run.

mod dial;
pub mod link;
mod service;

pub use dial::dial_peers;
pub use service::FederationService;
