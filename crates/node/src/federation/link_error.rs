//! How a link ends badly ([`LinkError`]), and the gRPC status each end tells the other side.

use intelmesh_core::evidence::EvidenceError;
use intelmesh_core::OrgId;
use tonic::Status;

/// How a link ended badly. Each maps to the gRPC status the other side is told.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("peer sent no hello within {0:?}")]
    NoHello(std::time::Duration),
    #[error("first frame must be a hello")]
    HelloExpected,
    #[error("hello says {claimed} but the certificate says {certified}")]
    HelloMismatch { claimed: String, certified: OrgId },
    #[error("peer sent a second hello")]
    SecondHello,
    #[error("peer sent {count} entries in one batch, more than the {max} allowed")]
    BatchTooLarge { count: usize, max: usize },
    #[error("peer sent {count} fork proofs in one frame, more than the {max} allowed")]
    TooManyProofs { count: usize, max: usize },
    #[error("peer asked for {count} payloads in one frame, more than the {max} allowed")]
    WantTooLarge { count: usize, max: usize },
    #[error("entries not taken, the link restarts so they come again: {0}")]
    HoldFull(String),
    #[error("peer sent an entry that fails verification: {0}")]
    Forged(intelmesh_core::VerifyError),
    #[error("peer sent a fork proof that does not hold up: {0}")]
    BadEvidence(EvidenceError),
    #[error("nothing heard from the peer for {0:?}")]
    Dead(std::time::Duration),
    #[error("peer did not take queued frames for {0:?}")]
    Stalled(std::time::Duration),
    #[error("peer closed the stream")]
    Closed,
    /// The peer's certificate ended while the link was up (handshakes alone check it).
    #[error("link cut: the peer's certificate ended at {0}")]
    CertificateEnded(String),
    /// A roster version no longer admits the peer.
    #[error("link cut: {0}")]
    NotAdmitted(intelmesh_roster::Refusal),
    #[error("stream error: {0}")]
    Stream(Status),
    #[error("local failure: {0}")]
    Local(String),
    /// This node is stopping: not a failure of the link or of the peer.
    #[error("{SHUTTING_DOWN}")]
    ShuttingDown,
    /// An entry dated past this node's clock and skew: the link restarts (retriable), so it
    /// is sent again, and taken once its time comes.
    #[error("link restarted: an entry is dated ahead of this node's clock: {0}")]
    Early(intelmesh_core::VerifyError),
    /// An entry refused for its key's range, which the roster version followed since allows:
    /// the link restarts (retriable) so the peer sends it again.
    #[error("link restarted: an entry refused under an older roster version is signable under the one followed now: {0}")]
    RosterMoved(intelmesh_core::VerifyError),
    /// A roster version sent before the one it follows: the link restarts (retriable), so the
    /// peer sends it again, after its predecessor, from this node's hello. Only this link:
    /// any member can relay genuine versions out of order.
    #[error("link restarted: {0}")]
    RosterAhead(intelmesh_core::VerifyError),
    /// Entries that waited for a key were dropped for lack of room; the link restarts so the
    /// peer, from this node's hello, sends again what this node lacks.
    #[error("link restarted: entries this node could not keep are to be sent again")]
    Resend,
}

/// What a link ended by a stopping node says (this side's error, and the status the peer reads).
pub const SHUTTING_DOWN: &str = "node is shutting down";

impl LinkError {
    /// Whether the link ended because one of its two nodes is stopping (here, or as the status
    /// the peer sent says): an orderly end, logged as such rather than as a failure.
    pub fn is_shutdown(&self) -> bool {
        match self {
            LinkError::ShuttingDown => true,
            LinkError::Stream(s) => {
                s.code() == tonic::Code::Unavailable && s.message() == SHUTTING_DOWN
            }
            _ => false,
        }
    }
}

impl LinkError {
    pub fn to_status(&self) -> Status {
        let msg = self.to_string();
        match self {
            LinkError::HelloMismatch { .. }
            | LinkError::NotAdmitted(_)
            | LinkError::CertificateEnded(_) => Status::permission_denied(msg),
            LinkError::BatchTooLarge { .. }
            | LinkError::TooManyProofs { .. }
            | LinkError::WantTooLarge { .. } => Status::resource_exhausted(msg),
            LinkError::Forged(_)
            | LinkError::BadEvidence(_)
            | LinkError::HelloExpected
            | LinkError::SecondHello => Status::invalid_argument(msg),
            LinkError::NoHello(_) | LinkError::Dead(_) | LinkError::Stalled(_) => {
                Status::deadline_exceeded(msg)
            }
            LinkError::Stream(s) => s.clone(),
            LinkError::Closed => Status::cancelled(msg),
            LinkError::Local(_) => Status::internal(msg),
            LinkError::ShuttingDown
            | LinkError::Resend
            | LinkError::Early(_)
            | LinkError::RosterAhead(_)
            | LinkError::HoldFull(_)
            | LinkError::RosterMoved(_) => Status::unavailable(msg),
        }
    }
}
