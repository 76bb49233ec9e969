//! Federation: the gRPC `Federation` service (accepting links), the dialer (opening them), the
//! link protocol both run, and serving a peer's payload asks.

mod asked;
mod dial;
pub mod link;
pub mod peer_view;
mod sender;
mod service;

pub use dial::dial_peers;
pub use service::FederationService;
