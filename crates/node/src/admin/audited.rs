//! What the audit trail records of each `Admin` call besides caller, method and code: the
//! org, proposal or certificate a request names ([`About`]) and what a successful call made
//! ([`Came`]): the version a proposal would publish and whether it did, the serial of the
//! certificate a bundle carries. Reads (members, rosters, status, the trail) say nothing more.

use intelmesh_proto::v1 as pb;
use prost::Message;

/// What an admin request names, for its audit record.
pub trait About {
    fn about(&self) -> String {
        String::new()
    }
}

/// What a successful admin call made, for its audit record.
pub trait Came {
    fn came(&self) -> String {
        String::new()
    }
}

impl About for pb::ListMembersRequest {}
impl About for pb::ListProposalsRequest {}
impl About for pb::GetRosterRequest {}
impl About for pb::FederationStatusRequest {}
impl About for pb::AuditRequest {}
impl Came for pb::ListMembersResponse {}
impl Came for pb::ListProposalsResponse {}
impl Came for pb::SignedRoster {}
impl Came for pb::FederationStatusResponse {}
impl Came for pb::AuditResponse {}
impl Came for pb::WithdrawProposalResponse {}

impl About for pb::ProposeRequest {
    fn about(&self) -> String {
        let kinds: Vec<&str> = (self.actions.iter())
            .map(intelmesh_roster::propose::kind)
            .collect();
        format!("actions: {}", kinds.join(", "))
    }
}

impl About for pb::ProposalRef {
    fn about(&self) -> String {
        format!("proposal {}", self.id)
    }
}

impl About for pb::SignProposalRequest {
    fn about(&self) -> String {
        let key = (self.signature.as_ref()).map_or_else(String::new, |s| hex::encode(&s.key_id));
        format!("proposal {}, signature of key {key}", self.id)
    }
}

impl About for pb::IssueBundleRequest {
    fn about(&self) -> String {
        format!("bundle of {} for {} days", self.org, self.days)
    }
}

impl Came for pb::Proposal {
    fn came(&self) -> String {
        let version = (self.roster.as_ref())
            .and_then(|r| pb::RosterDocument::decode(r.document.as_slice()).ok())
            .map_or(0, |d| d.version);
        let state = if self.published {
            "published".to_string()
        } else if !self.stale.is_empty() {
            "stale".to_string()
        } else {
            format!(
                "pending, signed {} of {}",
                self.signed_current, self.needed_current
            )
        };
        format!("proposal {} of version {version}, {state}", self.id)
    }
}

impl Came for pb::EnrolmentBundle {
    fn came(&self) -> String {
        match crate::cert_facts::cert_facts_pem(&self.node_cert_pem) {
            Ok(facts) => format!("certificate {} of {}", facts.serial_hex, self.org),
            Err(_) => format!("a certificate of {}", self.org),
        }
    }
}
