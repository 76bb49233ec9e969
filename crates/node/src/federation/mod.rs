//! Federation: the gRPC `Federation` service (accepting links), the dialer (opening them), the
//! link protocol both run, and serving a peer's payload asks.

mod announce;
mod asked;
mod dial;
pub mod fan_out;
mod heard;
mod inbound;
pub mod inspect;
pub mod link;
mod link_error;
pub mod peer_view;
mod sender;
mod service;

pub use asked::Asked;
pub use dial::dial_peers;
pub use sender::batch_bytes;
pub use service::FederationService;

use crate::connect::error_line;
use link::LinkError;

/// Why a link ended, in one line for the log and the peer's `last_error`: a broken stream by
/// its cause, not by the status's debug dump.
fn link_error_line(e: &LinkError) -> String {
    match e {
        LinkError::Stream(status) => error_line(status),
        other => error_line(other),
    }
}
