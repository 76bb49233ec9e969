//! intelmesh's federation roster: the rules every node applies to the signed, versioned
//! document that says who is a member, with which keys and certificates, and who may change it.
//!
//! Nothing here does I/O: documents, signatures and admin actions go in as values and come out
//! as values or as errors that say exactly what is wrong. Nodes follow a [`Roster`] (genesis,
//! then [`Roster::next`]) and verify entries with its [`Roster::key_set`]; hub operators build
//! versions with [`propose`] and sign them with [`sign_document`].

pub mod checkpoint;
pub mod diff;
pub mod document;
pub mod enrolment;
pub mod error;
pub mod genesis;
pub mod hash;
pub mod model;
pub mod policy;
pub mod propose;
pub mod roster;
pub mod thresholds;

pub use checkpoint::{compare_checkpoint, CheckpointVerdict};
pub use diff::diff;
pub use document::{check_document, DocumentDefect};
pub use error::{AuthorityKeys, Refusal, RosterError};
pub use genesis::{build_genesis, GenesisSpec, HubMember};
pub use hash::{roster_hash, sign_document, signature_message};
pub use model::{Authority, AuthorityKey, MemberKey, MemberRole, MemberStatus};
pub use policy::Policy;
pub use propose::{
    propose, ActionError, ProposeContext, ProposeError, MAX_ENROLMENT_REQUEST_AGE_MS,
    ROTATION_LEAD_MAX,
};
pub use roster::{Presented, Roster};
pub use thresholds::{genesis_thresholds, signs, thresholds, Thresholds};
