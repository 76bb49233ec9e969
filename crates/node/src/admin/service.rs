//! The `Admin` gRPC service: checks the caller is an operator of this hub (an admin
//! certificate of its org) and calls the plain functions of the other `admin` modules.

use std::sync::Arc;

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::admin_server::Admin;
use tonic::{Request, Response, Status};

use super::{audit, bundle, health, parse_org, proposals, roster_log, AdminError};
use crate::config::Role as NodeRole;
use crate::identity::{require_role, Identity, Role};
use crate::state::NodeState;

pub struct AdminService {
    state: Arc<NodeState>,
    /// One proposal change at a time: two signatures completing a threshold together must
    /// not publish twice.
    writes: tokio::sync::Mutex<()>,
}

impl AdminService {
    pub fn new(state: Arc<NodeState>) -> AdminService {
        AdminService {
            state,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The operator calling, as `ORG/NAME`; refused unless an admin certificate of this hub
    /// that the roster does not revoke.
    fn operator<T>(&self, request: &Request<T>) -> Result<String, Status> {
        crate::admission::check_api_caller(&self.state, request)?;
        let Identity::Admin { org, name } = require_role(request, Role::Admin, "Admin")? else {
            return Err(Status::internal("an admin certificate names no admin"));
        };
        if self.state.cfg.role != NodeRole::Hub {
            return Err(AdminError::NotHub(self.state.org.clone()).to_status());
        }
        if org != self.state.org {
            return Err(Status::permission_denied(format!(
                "Admin needs an admin certificate of {}; this one is of {org}",
                self.state.org
            )));
        }
        Ok(format!("{org}/{name}"))
    }

    /// Runs a store-reading function off the async threads.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&NodeState) -> Result<R, AdminError> + Send + 'static,
    ) -> Result<Response<R>, Status> {
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map(Response::new)
            .map_err(|e| e.to_status())
    }
}

/// The calls' work; [`Admin`] records each in the audit trail around it.
impl AdminService {
    async fn list_members_call(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.operator(&request)?;
        let roster = proposals::current_roster(&self.state).map_err(|e| e.to_status())?;
        Ok(Response::new(pb::ListMembersResponse {
            roster_version: roster.version(),
            members: roster.members().to_vec(),
        }))
    }

    async fn propose_call(
        &self,
        request: Request<pb::ProposeRequest>,
    ) -> Result<Response<pb::Proposal>, Status> {
        let by = self.operator(&request)?;
        let _one = self.writes.lock().await;
        let request = request.into_inner();
        self.blocking(move |state| proposals::propose(state, request, &by))
            .await
    }

    async fn get_proposal_call(
        &self,
        request: Request<pb::ProposalRef>,
    ) -> Result<Response<pb::Proposal>, Status> {
        self.operator(&request)?;
        let id = request.into_inner().id;
        self.blocking(move |state| proposals::get(state, &id)).await
    }

    async fn list_proposals_call(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        self.operator(&request)?;
        self.blocking(|state| {
            proposals::list(state).map(|proposals| pb::ListProposalsResponse { proposals })
        })
        .await
    }

    async fn sign_proposal_call(
        &self,
        request: Request<pb::SignProposalRequest>,
    ) -> Result<Response<pb::Proposal>, Status> {
        self.operator(&request)?;
        let _one = self.writes.lock().await;
        let pb::SignProposalRequest { id, signature } = request.into_inner();
        let signature =
            signature.ok_or_else(|| Status::invalid_argument("signature is missing"))?;
        proposals::sign(&self.state, &id, signature)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn publish_call(
        &self,
        request: Request<pb::ProposalRef>,
    ) -> Result<Response<pb::Proposal>, Status> {
        self.operator(&request)?;
        let _one = self.writes.lock().await;
        proposals::publish(&self.state, &request.into_inner().id)
            .await
            .map(Response::new)
            .map_err(|e| e.to_status())
    }

    async fn withdraw_proposal_call(
        &self,
        request: Request<pb::ProposalRef>,
    ) -> Result<Response<pb::WithdrawProposalResponse>, Status> {
        let by = self.operator(&request)?;
        let _one = self.writes.lock().await;
        let id = request.into_inner().id;
        self.blocking(move |state| {
            proposals::withdraw(state, &id, &by).map(|()| pb::WithdrawProposalResponse {})
        })
        .await
    }

    async fn get_roster_call(
        &self,
        request: Request<pb::GetRosterRequest>,
    ) -> Result<Response<pb::SignedRoster>, Status> {
        self.operator(&request)?;
        let version = request.into_inner().version;
        self.blocking(move |state| {
            let roster = proposals::current_roster(state)?;
            if version == 0 {
                return Ok(roster.signed().clone());
            }
            roster_log::stored_version(state.store.as_ref(), roster.federation_id(), version)?
                .ok_or(AdminError::NoSuchVersion(version))
        })
        .await
    }

    async fn issue_bundle_call(
        &self,
        request: Request<pb::IssueBundleRequest>,
    ) -> Result<Response<pb::EnrolmentBundle>, Status> {
        self.operator(&request)?;
        let pb::IssueBundleRequest { org, days } = request.into_inner();
        self.blocking(move |state| bundle::issue_bundle(state, &parse_org("org", &org)?, days))
            .await
    }

    async fn federation_status_call(
        &self,
        request: Request<pb::FederationStatusRequest>,
    ) -> Result<Response<pb::FederationStatusResponse>, Status> {
        self.operator(&request)?;
        self.blocking(health::federation_status).await
    }

    async fn audit_call(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        self.operator(&request)?;
        let request = request.into_inner();
        self.blocking(move |state| audit::audit(state, &request))
            .await
    }
}

/// Each Admin method records its call (no values: its requests name orgs and proposals, not
/// indicators; what it names and made go in the result, `audited`) around the work of its
/// `_call` method.
macro_rules! audited {
    ($($name:ident $work:ident $method:literal $req:ty => $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Admin for AdminService {
            $(
                async fn $name(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    // Every admin call is answered after its record is written: most change
                    // the roster, and all are rare.
                    use super::audited::{About as _, Came as _};
                    let call = (self.state.audit().begin(&request, $method, Vec::new()))
                        .changing()
                        .about(&request.get_ref().about());
                    let outcome = self.$work(request).await;
                    call.end_described(outcome, |answer| answer.get_ref().came()).await
                }
            )*
        }
    };
}

audited! {
    list_members list_members_call "Admin/ListMembers" pb::ListMembersRequest => pb::ListMembersResponse;
    propose propose_call "Admin/Propose" pb::ProposeRequest => pb::Proposal;
    get_proposal get_proposal_call "Admin/GetProposal" pb::ProposalRef => pb::Proposal;
    list_proposals list_proposals_call "Admin/ListProposals" pb::ListProposalsRequest => pb::ListProposalsResponse;
    sign_proposal sign_proposal_call "Admin/SignProposal" pb::SignProposalRequest => pb::Proposal;
    publish publish_call "Admin/Publish" pb::ProposalRef => pb::Proposal;
    withdraw_proposal withdraw_proposal_call "Admin/WithdrawProposal" pb::ProposalRef => pb::WithdrawProposalResponse;
    get_roster get_roster_call "Admin/GetRoster" pb::GetRosterRequest => pb::SignedRoster;
    issue_bundle issue_bundle_call "Admin/IssueBundle" pb::IssueBundleRequest => pb::EnrolmentBundle;
    federation_status federation_status_call "Admin/FederationStatus" pb::FederationStatusRequest => pb::FederationStatusResponse;
    audit audit_call "Admin/Audit" pb::AuditRequest => pb::AuditResponse;
}
