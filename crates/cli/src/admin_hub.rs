//! The hub's `Admin` service as the admin commands call it: the connection, a roster
//! version, and proposing and signing roster changes (`--reason`, `--sign-with`).

use std::path::PathBuf;

use clap::Args;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::admin_client::AdminClient;
use intelmesh_roster::sign_document;
use prost::Message;
use tonic::transport::Channel;

use crate::conn::{connect, request, rpc_error, ConnectArgs, Target};
use crate::usage;

// How a proposing command proposes: the reason and the keys to sign with at once. (A plain
// comment: a doc comment here would become the help text of every command that flattens it.)
#[derive(Args, Debug)]
pub(crate) struct ProposeOpts {
    /// Why (recorded in the roster for the audit trail).
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
    /// Authority key files to sign the proposal with now.
    #[arg(long = "sign-with", value_name = "KEYFILE")]
    pub(crate) sign_with: Vec<PathBuf>,
}

/// A connection to the hub's Admin service.
pub(crate) struct Hub {
    pub(crate) target: Target,
    channel: Channel,
}

impl Hub {
    pub(crate) async fn open(conn: &ConnectArgs) -> anyhow::Result<Hub> {
        let target = conn.target()?;
        let channel = connect(&target).await?;
        Ok(Hub { target, channel })
    }

    pub(crate) fn client(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    pub(crate) fn error(&self, what: &str, status: tonic::Status) -> anyhow::Error {
        rpc_error(&self.target, what, status)
    }

    pub(crate) async fn roster(&self, version: u64) -> anyhow::Result<pb::RosterDocument> {
        let signed = self.signed_roster(version).await?;
        Ok(pb::RosterDocument::decode(signed.document.as_slice())?)
    }

    async fn signed_roster(&self, version: u64) -> anyhow::Result<pb::SignedRoster> {
        Ok(self
            .client()
            .get_roster(request(&self.target, pb::GetRosterRequest { version }))
            .await
            .map_err(|s| self.error("GetRoster", s))?
            .into_inner())
    }

    /// Proposes `actions`, prints what the version changes, signs with each `--sign-with`.
    pub(crate) async fn propose(
        &self,
        actions: Vec<pb::Action>,
        opts: &ProposeOpts,
    ) -> anyhow::Result<pb::Proposal> {
        let mut proposal = self
            .client()
            .propose(request(
                &self.target,
                pb::ProposeRequest {
                    actions,
                    reason: opts.reason.clone(),
                },
            ))
            .await
            .map_err(|s| self.error("Propose", s))?
            .into_inner();
        self.print_changes(&proposal).await?;
        // What the hub noted of the version as proposed: once published it notes nothing.
        let noted = proposal.notices.clone();
        for key in &opts.sign_with {
            proposal = self.sign(&proposal, key).await?;
        }
        if proposal.notices.is_empty() {
            for notice in &noted {
                out!("  note: {notice}");
            }
        }
        print_standing(&proposal);
        Ok(proposal)
    }

    pub(crate) async fn print_changes(&self, proposal: &pb::Proposal) -> anyhow::Result<()> {
        let doc = document(proposal)?;
        let base = self.signed_roster(doc.version.saturating_sub(1)).await?;
        // The changes shown are against the version the hub sends as the base; the proposal
        // must chain onto exactly that one, or what is signed is not what was shown.
        if intelmesh_roster::roster_hash(&base.document).as_slice() != doc.prev_hash.as_slice() {
            anyhow::bail!(
                "proposal {} does not chain onto the roster version {} the hub sends: its changes cannot be shown, so it is not signed",
                proposal.id,
                doc.version.saturating_sub(1)
            );
        }
        let previous = pb::RosterDocument::decode(base.document.as_slice())?;
        out!("proposal {} (roster version {}):", proposal.id, doc.version);
        for line in intelmesh_roster::diff(&previous, &doc) {
            out!("  {}", intelmesh_interop::text::printable(&line));
        }
        Ok(())
    }

    pub(crate) async fn sign(
        &self,
        proposal: &pb::Proposal,
        key: &std::path::Path,
    ) -> anyhow::Result<pb::Proposal> {
        let key = crate::enrol_cmd::load_authority_key(key)
            .map_err(|e| usage(format!("--key {}: {e:#}", key.display())))?;
        let signed = proposal
            .roster
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the hub sent a proposal without its roster"))?;
        let signature = sign_document(&signed.document, &key, intelmesh_core::now_unix_ms());
        Ok(self
            .client()
            .sign_proposal(request(
                &self.target,
                pb::SignProposalRequest {
                    id: proposal.id.clone(),
                    signature: Some(signature),
                },
            ))
            .await
            .map_err(|s| self.error("SignProposal", s))?
            .into_inner())
    }
}

fn document(proposal: &pb::Proposal) -> anyhow::Result<pb::RosterDocument> {
    let signed = proposal
        .roster
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the hub sent a proposal without its roster"))?;
    Ok(pb::RosterDocument::decode(signed.document.as_slice())?)
}

pub(crate) fn print_standing(p: &pb::Proposal) {
    if p.published {
        out!("proposal {}: published", p.id);
    } else if !p.stale.is_empty() {
        out!("proposal {}: stale: {}", p.id, p.stale);
    } else {
        let mut line = format!(
            "proposal {}: pending, {} of {} current authority signatures",
            p.id, p.signed_current, p.needed_current
        );
        if p.needed_new > 0 {
            line.push_str(&format!(", {} of {} new", p.signed_new, p.needed_new));
        }
        out!("{line}");
        for notice in &p.notices {
            out!("  note: {notice}");
        }
    }
}
