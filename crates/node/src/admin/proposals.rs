//! Roster proposals: built from the current version and admin actions, signed one authority
//! key at a time, published once the thresholds are met (automatically on the signature that
//! completes them, or by an explicit `Publish`).

use std::sync::Arc;

use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{roster_hash, thresholds, ProposeContext, Roster, Thresholds};
use intelmesh_store::Store;

use super::book::{self, Kept};
use super::roster_log::stored_version;
use super::AdminError;
use crate::state::NodeState;

/// The roster this hub follows, or why there is none.
pub fn current_roster(state: &NodeState) -> Result<Arc<Roster>, AdminError> {
    state.roster().ok_or(AdminError::NotFollowing)
}

fn proposals_dir(state: &NodeState) -> std::path::PathBuf {
    book::dir(&state.cfg.data_dir)
}

/// Most proposals pending at once. Each is kept on disk with the request it was built from, and
/// listing or bundling reads them all: an operator (or a departed one's script) proposing in a
/// loop must not fill the hub's disk.
pub const MAX_PENDING: usize = 64;

/// Most proposals one operator may have pending: an operator whose certificate is stolen
/// cannot fill the hub's room for everyone else's.
pub const MAX_PENDING_PER_OPERATOR: usize = 8;

/// Builds the next version from `request` and keeps it as a pending proposal. Suspensions cut
/// members' keys at their head in this hub's store. The same document proposed again is the
/// same proposal, with the signatures it already has.
pub fn propose(
    state: &NodeState,
    request: pb::ProposeRequest,
    proposed_by: &str,
) -> Result<pb::Proposal, AdminError> {
    let current = current_roster(state)?;
    // Read before: a suspension cuts keys at the head, so a read error must fail the proposal,
    // not read as "nothing yet" (which would cut every entry of the member).
    let known = state.store.heads()?;
    let heads = |org: &OrgId| known.get(org).map_or(0, |h| h.seq);
    let document = intelmesh_roster::propose(
        &current,
        &request.actions,
        &ProposeContext {
            proposed_by,
            reason: &request.reason,
            now_unix_ms: intelmesh_core::now_unix_ms(),
            member_heads: &heads,
        },
    )?;
    let dir = proposals_dir(state);
    let id = book::id_of(&document);
    let kept = match book::load(&dir, &id) {
        Ok(existing) => existing,
        Err(AdminError::UnknownProposal(_)) => {
            let pending = forget_stale(state, &current)?;
            if pending.len() >= MAX_PENDING {
                return Err(AdminError::Precondition(format!(
                    "{} proposals are pending, the most this hub keeps: publish one, or withdraw those not wanted (`intelmesh admin roster withdraw --proposal ID`)",
                    pending.len()
                )));
            }
            let own = pending.iter().filter(|p| p.as_str() == proposed_by).count();
            if own >= MAX_PENDING_PER_OPERATOR {
                return Err(AdminError::Precondition(format!(
                    "{proposed_by} has {own} proposals pending, the most one operator may: publish one, or withdraw those not wanted (`intelmesh admin roster withdraw --proposal ID`)"
                )));
            }
            let kept = Kept {
                id,
                request,
                roster: pb::SignedRoster {
                    document,
                    signatures: Vec::new(),
                },
            };
            book::save(&dir, &kept)?;
            kept
        }
        Err(e) => return Err(e),
    };
    view(state, &current, &kept)
}

pub fn get(state: &NodeState, id: &str) -> Result<pb::Proposal, AdminError> {
    let current = current_roster(state)?;
    view(state, &current, &book::load(&proposals_dir(state), id)?)
}

pub fn list(state: &NodeState) -> Result<Vec<pb::Proposal>, AdminError> {
    let current = current_roster(state)?;
    book::list(&proposals_dir(state))?
        .iter()
        .map(|kept| view(state, &current, kept))
        .collect()
}

/// Adds one authority signature; publishes when it completes the thresholds. A signature that
/// does not verify under an authority key this version needs is refused: it would only add
/// bytes.
pub async fn sign(
    state: &Arc<NodeState>,
    id: &str,
    signature: pb::RosterSignature,
) -> Result<pb::Proposal, AdminError> {
    let dir = proposals_dir(state);
    let mut kept = book::load(&dir, id)?;
    let current = current_roster(state)?;
    require_pending(state, &current, &kept)?;
    let key = hex::encode(&signature.key_id);
    if kept
        .roster
        .signatures
        .iter()
        .any(|s| s.key_id == signature.key_id)
    {
        return Err(AdminError::AlreadySigned {
            id: id.to_string(),
            key,
        });
    }
    let before = count(&current, &kept.roster)?;
    kept.roster.signatures.push(signature);
    let after = count(&current, &kept.roster)?;
    if after.signed_current == before.signed_current && after.signed_new == before.signed_new {
        return Err(AdminError::BadSignature(format!(
            "the signature of key {key} is not a valid signature of proposal {id} by an authority key it needs: sign this proposal's document with a current authority key (or, for an authority change, a new one)"
        )));
    }
    book::save(&dir, &kept)?;
    if after.is_complete() {
        publish_kept(state, &kept).await?;
    }
    let now = current_roster(state)?;
    view(state, &now, &kept)
}

/// Publishes a proposal that carries the signatures it needs; otherwise says how many are
/// missing.
pub async fn publish(state: &Arc<NodeState>, id: &str) -> Result<pb::Proposal, AdminError> {
    let kept = book::load(&proposals_dir(state), id)?;
    let current = current_roster(state)?;
    require_pending(state, &current, &kept)?;
    let t = count(&current, &kept.roster)?;
    if !t.is_complete() {
        return Err(AdminError::MissingSignatures {
            id: id.to_string(),
            missing: missing(&t),
        });
    }
    publish_kept(state, &kept).await?;
    let now = current_roster(state)?;
    view(state, &now, &kept)
}

async fn publish_kept(state: &Arc<NodeState>, kept: &Kept) -> Result<(), AdminError> {
    let roster = state
        .publish_roster(kept.roster.clone())
        .await
        .map_err(AdminError::Publish)?;
    tracing::info!(proposal = %kept.id, version = roster.version(), "roster version published");
    // The other proposals of this version can no longer be published. Forgetting them is
    // housekeeping: the version is out whether or not it succeeds.
    let state = Arc::clone(state);
    let forgotten = tokio::task::spawn_blocking(move || {
        let current = current_roster(&state)?;
        forget_stale(&state, &current)
    })
    .await;
    if let Ok(Err(e)) = forgotten {
        tracing::warn!(error = %e, "forgetting the proposals the new version made stale");
    }
    Ok(())
}

/// Forgets the proposals that can never be published (another version took their place);
/// returns the proposers of those still pending, one per proposal.
fn forget_stale(state: &NodeState, current: &Roster) -> Result<Vec<String>, AdminError> {
    let dir = proposals_dir(state);
    let mut pending = Vec::new();
    for kept in book::list(&dir)? {
        match standing(state, current, &kept)? {
            Standing::Pending => pending.push(book::proposer_of(&kept.roster)),
            Standing::Stale(_) => {
                book::remove(&dir, &kept.id)?;
                tracing::info!(proposal = %kept.id, "forgot a stale proposal");
            }
            Standing::Published => {}
        }
    }
    Ok(pending)
}

/// Forgets a stale proposal, or a pending one of operator `by`. A published one is kept: the
/// enrolment requests it carries are what members' bundles are signed from. Another
/// operator's pending one is refused: withdrawing others' proposals as they appear would let one operator (or one
/// stolen admin certificate) veto every change the authority's thresholds would approve.
pub fn withdraw(state: &NodeState, id: &str, by: &str) -> Result<(), AdminError> {
    let dir = proposals_dir(state);
    let kept = book::load(&dir, id)?;
    let current = current_roster(state)?;
    let standing = standing(state, &current, &kept)?;
    if let Standing::Published = standing {
        return Err(AdminError::Precondition(format!(
            "proposal {id} is published: it is kept, since the bundles of the members it admitted are signed from the enrolment requests it holds"
        )));
    }
    // A stale one can never be published: anyone may clear it away.
    let proposer = book::proposer_of(&kept.roster);
    if matches!(standing, Standing::Pending) && proposer != by {
        return Err(AdminError::NotProposer {
            id: id.to_string(),
            proposer,
        });
    }
    book::remove(&dir, id)?;
    tracing::info!(proposal = %id, "proposal withdrawn");
    Ok(())
}

fn count(current: &Roster, signed: &pb::SignedRoster) -> Result<Thresholds, AdminError> {
    thresholds(current, signed).map_err(|e| AdminError::Internal(format!("a kept proposal: {e}")))
}

/// "needs 1 more signature of the current authority keys (has 1 of 2)", and of the new ones.
pub fn missing(t: &Thresholds) -> String {
    let part = |signed: u32, needed: u32, which: &str| {
        let more = needed.saturating_sub(signed);
        (more > 0).then(|| {
            format!(
                "{more} more signature{} of the {which} authority keys (has {signed} of {needed})",
                if more == 1 { "" } else { "s" }
            )
        })
    };
    let parts: Vec<String> = [
        part(t.signed_current, t.needed_current, "current"),
        part(t.signed_new, t.needed_new, "new"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "needs no more signatures".to_string()
    } else {
        format!("needs {}", parts.join(" and "))
    }
}

/// Published, stale (another version took its place) or pending.
enum Standing {
    Published,
    Stale(String),
    Pending,
}

fn standing(state: &NodeState, current: &Roster, kept: &Kept) -> Result<Standing, AdminError> {
    let version = book::version_of(&kept.roster);
    if version <= current.version() {
        let stored = stored_version(state.store.as_ref(), current.federation_id(), version)?;
        return Ok(match stored {
            Some(s) if roster_hash(&s.document) == roster_hash(&kept.roster.document) => {
                Standing::Published
            }
            _ => Standing::Stale(format!(
                "version {version} was published from another proposal (the roster is at version {}): propose again",
                current.version()
            )),
        });
    }
    if version != current.version() + 1 {
        return Ok(Standing::Stale(format!(
            "it proposes version {version}, but the roster is at version {}",
            current.version()
        )));
    }
    Ok(Standing::Pending)
}

fn require_pending(state: &NodeState, current: &Roster, kept: &Kept) -> Result<(), AdminError> {
    match standing(state, current, kept)? {
        Standing::Pending => Ok(()),
        Standing::Published => Err(AdminError::Stale {
            id: kept.id.clone(),
            why: "it is already published".into(),
        }),
        Standing::Stale(why) => Err(AdminError::Stale {
            id: kept.id.clone(),
            why,
        }),
    }
}

/// The proposal as the Admin service shows it.
pub fn view(state: &NodeState, current: &Roster, kept: &Kept) -> Result<pb::Proposal, AdminError> {
    let mut proposal = pb::Proposal {
        id: kept.id.clone(),
        roster: Some(kept.roster.clone()),
        ..Default::default()
    };
    match standing(state, current, kept)? {
        Standing::Published => {
            proposal.published = true;
            proposal.signed_current =
                u32::try_from(kept.roster.signatures.len()).unwrap_or(u32::MAX);
        }
        Standing::Stale(why) => proposal.stale = why,
        Standing::Pending => {
            let proposed =
                <pb::RosterDocument as prost::Message>::decode(kept.roster.document.as_slice())
                    .map_err(|e| {
                        AdminError::Internal(format!("a kept proposal does not decode: {e}"))
                    })?;
            let ledger = super::issued::dir(&state.cfg.data_dir);
            // The ledger is read in full; a serial it cannot read is left out of the notice,
            // which is advice, not a check.
            let issued = |org: &OrgId| {
                super::issued::unrecorded(&ledger, org, |_| false).unwrap_or_default()
            };
            proposal.notices = super::notices::left_admitted(
                current.document(),
                &proposed,
                intelmesh_core::now_unix_ms(),
                issued,
                |serial| super::issued::issued_to(&ledger, serial).ok().flatten(),
            );
            let t = count(current, &kept.roster)?;
            proposal.signed_current = t.signed_current;
            proposal.needed_current = t.needed_current;
            proposal.signed_new = t.signed_new;
            proposal.needed_new = t.needed_new;
        }
    }
    Ok(proposal)
}

/// The key id of an authority key file's public half, for messages.
pub fn key_id_hex(key: &ed25519_dalek::VerifyingKey) -> String {
    hex::encode(KeyId::of(key).0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_signatures_are_counted_for_each_authority() {
        let t = Thresholds {
            signed_current: 1,
            needed_current: 2,
            signed_new: 0,
            needed_new: 3,
        };
        assert_eq!(
            missing(&t),
            "needs 1 more signature of the current authority keys (has 1 of 2) and 3 more signatures of the new authority keys (has 0 of 3)"
        );
        let done = Thresholds {
            signed_current: 2,
            needed_current: 2,
            ..Thresholds::default()
        };
        assert_eq!(missing(&done), "needs no more signatures");
    }
}
