//! The hub operators' `Admin` service (hub only, admin certificates only): roster proposals
//! and their signatures, publication, enrolment bundles, the federation's health and the
//! audit trail. `service` is the gRPC glue; the other modules are plain functions over the
//! node's state.
//!
//! Pending proposals live in `DATA_DIR/admin/proposals` (`book`), one file per proposal, 0600,
//! so they survive a restart; published versions live in the roster log like any entry.

pub mod audit;
pub mod audited;
pub mod book;
pub mod bundle;
pub mod health;
pub mod issued;
pub mod notices;
pub mod proposals;
pub mod roster_log;
pub mod service;

pub use service::AdminService;

use intelmesh_core::OrgId;
use intelmesh_store::StoreError;

use crate::state::NodeError;

/// Why an Admin call failed; each variant maps to the gRPC code a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("Admin is served by hubs only; {0} is not a hub")]
    NotHub(OrgId),
    #[error("proposal {id} was proposed by {proposer}: only its proposer may withdraw it (it is forgotten once another version is published)")]
    NotProposer { id: String, proposer: String },
    #[error(
        "this hub runs in static mode (no [roster] in its config): it has no roster to administer"
    )]
    NotFollowing,
    #[error("{0}")]
    Invalid(String),
    #[error("proposal refused: {0}")]
    Propose(#[from] intelmesh_roster::ProposeError),
    #[error("no proposal {0} on this hub (list them with `intelmesh admin roster proposals`)")]
    UnknownProposal(String),
    #[error("proposal {id} can no longer be published: {why}")]
    Stale { id: String, why: String },
    #[error("{0}")]
    BadSignature(String),
    #[error("proposal {id} already carries a signature of authority key {key}")]
    AlreadySigned { id: String, key: String },
    #[error("proposal {id} {missing}: collect them with `intelmesh admin roster sign --proposal {id} --key KEYFILE`")]
    MissingSignatures { id: String, missing: String },
    #[error("roster version {0} is not in this hub's roster log")]
    NoSuchVersion(u64),
    #[error("{0} is not a member of the current roster")]
    UnknownMember(OrgId),
    #[error("{0}")]
    Precondition(String),
    #[error("publishing the roster version failed: {0}")]
    Publish(NodeError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Status;
        let msg = self.to_string();
        match self {
            AdminError::NotHub(_) | AdminError::NotProposer { .. } => {
                Status::permission_denied(msg)
            }
            AdminError::NotFollowing
            | AdminError::Stale { .. }
            | AdminError::MissingSignatures { .. }
            | AdminError::Precondition(_) => Status::failed_precondition(msg),
            AdminError::Invalid(_) | AdminError::Propose(_) | AdminError::BadSignature(_) => {
                Status::invalid_argument(msg)
            }
            AdminError::UnknownProposal(_)
            | AdminError::NoSuchVersion(_)
            | AdminError::UnknownMember(_) => Status::not_found(msg),
            AdminError::AlreadySigned { .. } => Status::already_exists(msg),
            AdminError::Publish(
                NodeError::RosterRefused(_)
                | NodeError::NotRosterPublisher { .. }
                | NodeError::OwnLogBehind { .. },
            ) => Status::failed_precondition(msg),
            AdminError::Publish(NodeError::CutDue) => Status::unavailable(msg),
            AdminError::Publish(_) | AdminError::Store(_) | AdminError::Internal(_) => {
                Status::internal(msg)
            }
        }
    }
}

/// An org id from a request field, or what is wrong with it.
pub(crate) fn parse_org(field: &str, value: &str) -> Result<OrgId, AdminError> {
    OrgId::parse(value).map_err(|e| AdminError::Invalid(format!("{field} {value:?}: {e}")))
}
