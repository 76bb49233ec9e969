//! Authority-log entries judged by the roster's rules before they are stored: a roster
//! version goes in only if it follows the version before it (`Roster::next`: the authority's
//! threshold of signatures, the chain of roster hashes, the federation).
//!
//! An entry's header signature only says that a hub key may sign the authority log. A thief
//! of the publisher hub's signing key (or of one of its keys rotated out, which stay authority
//! keys) could otherwise put a junk version in every store at the next seq: the real version
//! would then be a second entry at that seq, and the roster frozen for good, with no way left
//! to suspend the thief or report the key.

use intelmesh_core::entry::header_hash;
use intelmesh_core::verify::Control;
use intelmesh_core::{VerifiedEntry, VerifyError};
use intelmesh_roster::{roster_hash, Roster};
use intelmesh_store::Store;
use std::sync::Arc;

use crate::roster_follow::{stored_version, Refused};
use crate::state::NodeState;

impl NodeState {
    /// `good` without the authority-log entries the roster's rules refuse (each refusal an
    /// origin fault in `refused`): judged in seq order against the roster at the store's head
    /// of that log (the one followed, moved on by versions stored and not followed yet). An
    /// entry past the next seq cannot be judged yet: `VerifyError::RosterVersionAhead`, on
    /// which the link that sent it restarts, so it is sent again after its predecessor.
    pub(crate) fn refuse_unfollowable_versions(
        &self,
        good: Vec<VerifiedEntry>,
        refused: &mut Vec<VerifyError>,
    ) -> Vec<VerifiedEntry> {
        let Some(follow) = self.follow() else {
            return good;
        };
        let current = follow.current();
        let fed = current.federation_id().clone();
        if !good.iter().any(|e| e.header().origin == fed) {
            return good;
        }
        let Ok(head) = self.store.head(&fed) else {
            return good;
        };
        let followed = current.version();
        let head = head.map_or(0, |h| h.seq).max(followed);
        let mut at = roster_at(self.store.as_ref(), Arc::clone(&current), head);
        let mut next = head + 1;
        // Whether the entry at `next` was refused in this batch.
        let mut refused_next = false;
        let kept = good
            .into_iter()
            .filter(|e| {
                let h = e.header();
                if h.origin != fed {
                    return true;
                }
                if follow.log_pin(h.seq).is_some_and(|pin| header_hash(&e.raw().header) != *pin) {
                    *crate::rotation::lock(&follow.pin_refused) = Some(h.seq);
                    refused_next |= h.seq == next;
                    let reason = format!(
                        "it is not the entry at seq {} that roster.log_pins names (from the enrolment bundle)",
                        h.seq
                    );
                    refused.push(refusal(&fed, h.seq, reason));
                    return false;
                }
                if h.seq > followed && h.seq < next {
                    // Stored already and not followed yet: the store keeps one entry a seq.
                    return true;
                }
                if h.seq > next && at.is_some() && !refused_next {
                    // Not judged, not a fault: the link that sent it restarts and sends it again
                    // after its predecessor (see `federation::link`).
                    refused.push(VerifyError::RosterVersionAhead {
                        origin: fed.clone(),
                        seq: h.seq,
                        next,
                    });
                    return false;
                }
                if h.seq > next {
                    // Past a version refused (here, or stored before this check): sent again,
                    // it would be refused again, so the link is not restarted for it.
                    refused.push(VerifyError::RosterVersionRefused {
                        origin: fed.clone(),
                        seq: h.seq,
                        reason: format!("it follows version {next}, which is not taken"),
                    });
                    return false;
                }
                let verdict = if h.seq <= followed {
                    // A version followed (a new node follows its pinned genesis before the
                    // log's first entry is in): only that version's own entry.
                    match e.control() {
                        Some(Control::Roster(signed))
                            if Some(roster_hash(&signed.document)) == follow.hash_at(h.seq) =>
                        {
                            match self.as_followed(e, &current) {
                                Ok(()) => return true,
                                Err(reason) => Err(reason),
                            }
                        }
                        _ => Err(format!("it is not version {} this node follows", h.seq)),
                    }
                } else {
                    match (&at, e.control()) {
                        (None, _) => Err(
                            "the stored version before it does not follow its own predecessor"
                                .to_string(),
                        ),
                        (Some(r), Some(Control::Roster(signed))) => {
                            r.next(signed).map_err(|error| {
                                let reason = error.to_string();
                                let version = h.seq;
                                *crate::rotation::lock(&follow.rejected) = Some(Refused { version, error });
                                reason
                            })
                        }
                        (Some(_), _) => Err("it carries no roster version".to_string()),
                    }
                };
                match verdict {
                    Ok(roster) => {
                        at = Some(Arc::new(roster));
                        next += 1;
                        true
                    }
                    Err(reason) => {
                        refused_next |= h.seq == next;
                        refused.push(refusal(&fed, h.seq, reason));
                        false
                    }
                }
            })
            .collect();
        kept
    }
}

impl NodeState {
    /// Whether `e`, carrying a version this node follows, is that version's entry: the one
    /// the store holds at its seq, or, for the genesis a new node follows before the log's
    /// first entry is in, one signed by a key of the genesis's roster publisher (the only hub
    /// that puts it in the log). Every hub's key may sign the log's seqs up to the version in
    /// force: another hub's (in other hands) signing the real genesis under a header of its
    /// own, taken first, would have the real entry refused as a second one at seq 1, and the
    /// node stay at the genesis for good.
    fn as_followed(&self, e: &VerifiedEntry, current: &Roster) -> Result<(), String> {
        let h = e.header();
        let held = (self.store.range(&h.origin, h.seq, 1))
            .map_err(|error| format!("the roster log could not be read: {error}"))?;
        if let Some(held) = held.first() {
            return match held.header == e.raw().header {
                true => Ok(()),
                false => Err(format!(
                    "this node holds another entry at version {}",
                    h.seq
                )),
            };
        }
        let by_publisher = (h.seq == 1 && current.version() == 1)
            .then(|| current.roster_publisher())
            .flatten()
            .and_then(|publisher| current.member_rules(&publisher))
            .is_some_and(|m| (m.keys.iter()).any(|k| k.key.as_bytes() == e.key().as_bytes()));
        match by_publisher {
            true => Ok(()),
            false => Err(format!(
                "version {} is signed by a key other than its roster publisher's",
                h.seq
            )),
        }
    }
}

/// An authority-log entry refused before it was stored, logged: a hub key signed it, and the
/// roster's rules (or the pinned log) do not take it.
fn refusal(fed: &intelmesh_core::OrgId, seq: u64, reason: String) -> VerifyError {
    tracing::warn!(origin = %fed, seq, %reason, "roster log entry refused before it was stored: a hub key signed it, the roster's rules do not take it");
    VerifyError::RosterVersionRefused {
        origin: fed.clone(),
        seq,
        reason,
    }
}

/// The roster at version `head` of the authority log: `current` (followed), moved on by the
/// versions stored after it; `None` if one of them does not follow (nothing after it can).
fn roster_at(store: &dyn Store, current: Arc<Roster>, head: u64) -> Option<Arc<Roster>> {
    let fed = current.federation_id().clone();
    let mut at = current;
    while at.version() < head {
        let signed = stored_version(store, &fed, at.version() + 1).ok()??;
        at = Arc::new(at.next(&signed).ok()?);
    }
    Some(at)
}
