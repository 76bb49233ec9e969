//! The audit trail, read from the signed roster log: for each version who proposed it, what it
//! changed and why, and which authority keys (by their holders' names) signed it and when.

use std::collections::BTreeMap;

use ed25519_dalek::VerifyingKey;
use intelmesh_core::KeyId;
use intelmesh_proto::v1 as pb;
use prost::Message;

use super::proposals::current_roster as current;
use super::roster_log::{document, versions};
use super::AdminError;
use crate::state::NodeState;

/// Versions read from the roster log at a time.
const READ_WINDOW: u64 = 64;
/// An answer stops after the event that takes it past this many encoded bytes, and names the
/// version to ask from next: the whole history in one answer would outgrow the message limit.
pub const AUDIT_PAGE_BYTES: usize = 1 << 20;

/// What an audit asks for: versions from `since_version`, touching `org`, by `operator`; at
/// most about [`AUDIT_PAGE_BYTES`] of them, with where to go on when more remain.
pub fn audit(
    state: &NodeState,
    request: &pb::AuditRequest,
) -> Result<pb::AuditResponse, AdminError> {
    let roster = current(state)?;
    let from = request.since_version.max(1);
    // One version before the first shown: its authority names the signers of the first.
    let mut next = from.saturating_sub(1).max(1);
    let mut previous: Option<pb::RosterDocument> = None;
    let mut events = Vec::new();
    let mut bytes = 0;
    while next <= roster.version() {
        let last = next.saturating_add(READ_WINDOW - 1).min(roster.version());
        let signed = versions(state.store.as_ref(), roster.federation_id(), next, last)?;
        // The log ends at its first missing version: nothing after it is shown.
        let whole = signed.len() as u64 == last - next + 1;
        for s in &signed {
            let doc = document(s)?;
            let names = authority_names(previous.as_ref(), &doc);
            let version = doc.version;
            if version >= from {
                let event = event(&doc, s, &names);
                if matches(&event, &doc, previous.as_ref(), request) {
                    bytes += event.encoded_len();
                    events.push(event);
                }
            }
            previous = Some(doc);
            if bytes > AUDIT_PAGE_BYTES && version < roster.version() {
                return Ok(pb::AuditResponse {
                    events,
                    next_since_version: version + 1,
                });
            }
        }
        if !whole {
            break;
        }
        next = last + 1;
    }
    Ok(pb::AuditResponse {
        events,
        next_since_version: 0,
    })
}

fn event(
    doc: &pb::RosterDocument,
    signed: &pb::SignedRoster,
    names: &BTreeMap<Vec<u8>, (String, VerifyingKey)>,
) -> pb::AuditEvent {
    let change = doc.change.clone().unwrap_or_default();
    // Only signatures that verify name their holder: anyone relaying a version can append
    // signatures under any key id, and the trail must not show an operator who never signed.
    let hash = intelmesh_roster::roster_hash(&signed.document);
    let (signed_by, signed_at_unix_ms) = signed
        .signatures
        .iter()
        .filter_map(|s| {
            let (name, key) = names.get(&s.key_id)?;
            intelmesh_roster::signs(key, &hash, s).then(|| (name.clone(), s.signed_at_unix_ms))
        })
        .unzip();
    pb::AuditEvent {
        version: doc.version,
        issued_at_unix_ms: doc.issued_at_unix_ms,
        proposed_by: change.proposed_by,
        actions: change.actions,
        reason: change.reason,
        signed_by,
        signed_at_unix_ms,
    }
}

/// Key id → holder name and key, for the authority keys that may sign `doc`: those of the
/// version before it, and its own (an authority change is signed by both).
fn authority_names(
    previous: Option<&pb::RosterDocument>,
    doc: &pb::RosterDocument,
) -> BTreeMap<Vec<u8>, (String, VerifyingKey)> {
    let mut names = BTreeMap::new();
    for d in previous.into_iter().chain(std::iter::once(doc)) {
        for k in d.authority.iter().flat_map(|a| &a.keys) {
            let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice()) else {
                continue;
            };
            if let Ok(key) = VerifyingKey::from_bytes(&bytes) {
                names.insert(KeyId::of(&key).0.to_vec(), (k.name.clone(), key));
            }
        }
    }
    names
}

fn matches(
    event: &pb::AuditEvent,
    doc: &pb::RosterDocument,
    previous: Option<&pb::RosterDocument>,
    request: &pb::AuditRequest,
) -> bool {
    let org_ok = request.org.is_empty()
        || event.actions.iter().any(|a| names_org(a, &request.org))
        || member_changed(previous, doc, &request.org);
    let op = &request.operator;
    let operator_ok = op.is_empty()
        || event.proposed_by == *op
        || event.proposed_by.rsplit('/').next() == Some(op.as_str())
        || event.signed_by.iter().any(|s| s == op);
    org_ok && operator_ok
}

/// Whether an action line names `org` as a whole word (so `BR-PF` does not match `BR-PFX`).
fn names_org(line: &str, org: &str) -> bool {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .any(|word| word == org)
}

fn member_changed(
    previous: Option<&pb::RosterDocument>,
    doc: &pb::RosterDocument,
    org: &str,
) -> bool {
    let find = |d: &pb::RosterDocument| d.members.iter().find(|m| m.org == org).cloned();
    previous.map(find).unwrap_or(None) != find(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_org_matches_as_a_whole_word() {
        assert!(names_org("suspend BR-PF (cut-off seq 4)", "BR-PF"));
        assert!(names_org("add agency BR-PF", "BR-PF"));
        assert!(!names_org("add agency BR-PFX", "BR-PF"));
        assert!(!names_org("add agency XBR-PF", "BR-PF"));
    }
}
