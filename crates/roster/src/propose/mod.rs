//! Building the next roster version from the current one and the hub operators' admin actions
//! (add, suspend, reinstate, remove, rotate key, report compromise, certificates, authority,
//! hubs, policy, encryption key); each action leaves a line in the version's `Change` for the audit trail.
//!
//! Key ranges under suspension and reinstatement: a suspension (or removal) ends each open key
//! of the member at the cut-off, the member's head seq at the hub when proposed (never before
//! the key's own start: a key that signed nothing gets the empty range `first - 1`), and marks
//! it `KEY_END_SUSPENSION`. Reinstating reopens exactly the keys so marked; keys ended by a
//! rotation or a compromise report (including one reported while suspended) stay ended.
//! Entries the member signed while suspended become valid once it is reinstated.

use intelmesh_core::entry::{InvalidOrgId, MAX_PAYLOAD_BYTES};
use intelmesh_core::sealed::EncKeyId;
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use pb::action::Action as A;
use prost::Message;

use crate::document::{check_decoded, DocumentDefect};
use crate::enrolment::RequestError;
use crate::model::{parse_key, MemberStatus};
use crate::roster::Roster;

mod members;
pub use members::{MAX_ENROLMENT_REQUEST_AGE_MS, ROTATION_LEAD_MAX};
mod settings;

use members::{
    add_member, reinstate, remove, report_compromise, rotate_key, set_encryption_key, suspend,
};
use settings::{record_cert, revoke_cert, set_authority, set_hubs, set_policy};

/// Who proposes, why, when, and what the hub knows of each member's log.
pub struct ProposeContext<'a> {
    pub proposed_by: &'a str,
    pub reason: &'a str,
    pub now_unix_ms: i64,
    /// The member's head seq at the hub (0: nothing yet): where suspensions cut its keys, and
    /// the least a rotation may end the old key at.
    pub member_heads: &'a dyn Fn(&OrgId) -> u64,
}

/// Most actions one proposal may carry: enough to enrol a whole federation at once, while the
/// document is checked again after each action (so a defect names the action that made it).
pub const MAX_ACTIONS: usize = 1024;

/// Room kept in a roster log entry's payload for each authority signature, and for the payload's
/// own framing: a version travels as one entry, whose payload is at most `MAX_PAYLOAD_BYTES`.
const SIGNATURE_ROOM: usize = 128;
const PAYLOAD_FRAMING_ROOM: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("no actions: a new version must change something")]
    NoActions,
    #[error("the actions change nothing in the roster: there is no new version to sign")]
    NoChange,
    #[error(
        "{actions} actions: one proposal may carry at most {max}; split them over several versions"
    )]
    TooManyActions { actions: usize, max: usize },
    #[error("the new version would leave no active hub with a key not reported stolen: no one could publish a later version (not even one reinstating a hub); keep or add another hub first, or give the hub a replacement key")]
    NoActiveHub,
    #[error("the new version would be {bytes} bytes, over the {max} bytes a roster version may have (with room for its signatures) to travel in the roster log")]
    DocumentTooLarge { bytes: usize, max: usize },
    #[error("action {index} ({kind}): {error}")]
    Action {
        /// Position in the list given, from 1.
        index: usize,
        kind: &'static str,
        error: ActionError,
    },
}

/// Why one admin action cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("the action is empty")]
    Empty,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0}")]
    Org(InvalidOrgId),
    #[error("enrolment request refused: {0}")]
    Enrolment(RequestError),
    #[error("enrolment request refused: {0}")]
    Naming(String),
    #[error("rotation request refused: {0}")]
    Rotation(RequestError),
    #[error("encryption key request refused: {0}")]
    EncryptionKeyRequest(RequestError),
    #[error("the enrolment request of {org} is dated {age_days} days ago, outside the {max_days} a request is good for: ask the agency for a new one (its keys may have been discarded, or leaked, since)")]
    StaleEnrolment {
        org: OrgId,
        age_days: i64,
        max_days: i64,
    },
    #[error("the encryption key request for {org} is dated {age_days} days ago, outside the {max_days} a request is good for: ask the member for a new one (an old request could bring back a key rotated out)")]
    StaleRequest {
        org: OrgId,
        age_days: i64,
        max_days: i64,
    },
    #[error("{org} is {status}: a replacement key would give it an open key. Report the compromise without one now; to list one, put in one proposal the report, the reinstatement, then the report again with the replacement (a reinstatement alone does not reopen a key reported compromised)")]
    ReplacementWhileNotActive { org: OrgId, status: &'static str },
    #[error("encryption key {key_id} is already listed for {org}; a new key is needed")]
    EncryptionKeyInUse { key_id: EncKeyId, org: String },
    #[error("{0} has no open signing key to check the request with")]
    NoOpenKey(OrgId),
    #[error("replacement key refused: {0}")]
    Replacement(RequestError),
    #[error("{org} still has an open signing key besides the compromised one: rotate that one instead of sending a replacement")]
    ReplacementWhileOpen { org: OrgId },
    #[error("{0} is not a member")]
    UnknownMember(OrgId),
    #[error("{0} is the federation id; a member needs another org id")]
    FederationId(OrgId),
    #[error("{org} is already a member ({status})")]
    AlreadyMember { org: OrgId, status: &'static str },
    #[error("role {0} is not hub or agency")]
    Role(i32),
    #[error("{0} is already suspended")]
    AlreadySuspended(OrgId),
    #[error("{org} is {status}, not suspended")]
    NotSuspended { org: OrgId, status: &'static str },
    #[error("{0} is removed; removal is final")]
    Removed(OrgId),
    #[error("{org} is {status}; only an active member can rotate its key")]
    NotActive { org: OrgId, status: &'static str },
    #[error("key {key_id} is not the current (open) signing key of {org}")]
    OldKeyNotCurrent { org: OrgId, key_id: KeyId },
    #[error("the old key would end at seq {last_seq}, but it must sign at least up to {known} (entries of {org} the hub already holds, or the key's start)")]
    LastSeqBehind {
        org: OrgId,
        last_seq: u64,
        known: u64,
    },
    #[error("the old key would end at seq {0}: no seq follows it for the new key")]
    LastSeqTooLarge(u64),
    #[error("the old key would end at seq {last_seq}, more than {} past the {head} entries of {org} the hub holds: wait until the hub has caught up with {org}, then propose the rotation again", members::ROTATION_LEAD_MAX)]
    LastSeqAhead {
        org: OrgId,
        last_seq: u64,
        head: u64,
    },
    #[error("key {key_id} is already a signing key of {org}")]
    KeyInUse { key_id: KeyId, org: String },
    #[error("{org} has no signing key {key_id}")]
    UnknownKey { org: OrgId, key_id: String },
    #[error("key {key_id} of {org} already ends at seq {last_seq}; a compromise report can only end it earlier, not at {requested}")]
    NotShortening {
        org: OrgId,
        key_id: KeyId,
        last_seq: u64,
        requested: u64,
    },
    #[error("key {key_id} of {org} starts at seq {first_seq}; the last good seq cannot be before {}", .first_seq - 1)]
    BeforeFirstSeq {
        org: OrgId,
        key_id: KeyId,
        first_seq: u64,
    },
    #[error("serial {0:?} is not a certificate serial (hex, up to 40 digits)")]
    Serial(String),
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("certificate {serial} is already recorded for {org}")]
    CertAlreadyRecorded { serial: String, org: String },
    #[error("certificate {0} is revoked")]
    CertRevoked(String),
    #[error("the resulting roster would be malformed: {0}")]
    Malformed(DocumentDefect),
}

/// The document bytes of the version after `current` with `actions` applied in order (unsigned:
/// authority keys sign it with [`crate::sign_document`]).
pub fn propose(
    current: &Roster,
    actions: &[pb::Action],
    ctx: &ProposeContext<'_>,
) -> Result<Vec<u8>, ProposeError> {
    if actions.is_empty() {
        return Err(ProposeError::NoActions);
    }
    if actions.len() > MAX_ACTIONS {
        return Err(ProposeError::TooManyActions {
            actions: actions.len(),
            max: MAX_ACTIONS,
        });
    }
    let mut doc = current.document().clone();
    let federation_id = current.federation_id();
    let mut lines = Vec::with_capacity(actions.len());
    for (i, action) in actions.iter().enumerate() {
        let fail = |error| ProposeError::Action {
            index: i + 1,
            kind: kind(action),
            error,
        };
        let line = apply(&mut doc, federation_id, action, ctx).map_err(fail)?;
        // A document past the payload limit can never be published: stop before checking it.
        let bytes = doc.encoded_len();
        if bytes > MAX_PAYLOAD_BYTES {
            return Err(ProposeError::DocumentTooLarge {
                bytes,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        // Checked after every action, so a defect names the action that made it.
        check_decoded(doc.clone()).map_err(|d| fail(ActionError::Malformed(d)))?;
        lines.push(line);
    }
    // A version that changes nothing would still need every authority's signature.
    let mut unchanged = doc.clone();
    let before = current.document();
    unchanged.version = before.version;
    unchanged.prev_hash.clone_from(&before.prev_hash);
    unchanged.issued_at_unix_ms = before.issued_at_unix_ms;
    unchanged.change.clone_from(&before.change);
    if unchanged == *before {
        return Err(ProposeError::NoChange);
    }
    // An active hub with a key not reported stolen: the one the next version can come from.
    let active_hub = doc.members.iter().any(|m| {
        m.role == pb::MemberRole::Hub as i32
            && m.status == pb::MemberStatus::Active as i32
            && m.signing_keys
                .iter()
                .any(|k| k.ended_by != pb::KeyEnd::Compromise as i32)
    });
    if !active_hub {
        return Err(ProposeError::NoActiveHub);
    }
    doc.version = current.version() + 1;
    doc.prev_hash = current.hash().to_vec();
    doc.issued_at_unix_ms = ctx.now_unix_ms;
    doc.change = Some(pb::Change {
        proposed_by: ctx.proposed_by.to_string(),
        actions: lines,
        reason: ctx.reason.to_string(),
    });
    let bytes = doc.encode_to_vec();
    // Signed by the current authority keys and, for an authority change, the new ones.
    let signers = authority_keys(current.document()) + authority_keys(&doc);
    let max = MAX_PAYLOAD_BYTES.saturating_sub(PAYLOAD_FRAMING_ROOM + signers * SIGNATURE_ROOM);
    if bytes.len() > max {
        return Err(ProposeError::DocumentTooLarge {
            bytes: bytes.len(),
            max,
        });
    }
    Ok(bytes)
}

fn authority_keys(doc: &pb::RosterDocument) -> usize {
    doc.authority.as_ref().map_or(0, |a| a.keys.len())
}

/// The action's name as operators type it.
pub fn kind(action: &pb::Action) -> &'static str {
    match &action.action {
        None => "empty",
        Some(A::AddMember(_)) => "add member",
        Some(A::Suspend(_)) => "suspend",
        Some(A::Reinstate(_)) => "reinstate",
        Some(A::Remove(_)) => "remove",
        Some(A::RotateKey(_)) => "rotate key",
        Some(A::ReportCompromise(_)) => "report compromise",
        Some(A::RevokeCert(_)) => "revoke certificate",
        Some(A::RecordCert(_)) => "record certificate",
        Some(A::SetAuthority(_)) => "set authority",
        Some(A::SetHubs(_)) => "set hubs",
        Some(A::SetPolicy(_)) => "set policy",
        Some(A::SetEncryptionKey(_)) => "set encryption key",
    }
}

fn apply(
    doc: &mut pb::RosterDocument,
    federation_id: &OrgId,
    action: &pb::Action,
    ctx: &ProposeContext<'_>,
) -> Result<String, ActionError> {
    match action.action.as_ref().ok_or(ActionError::Empty)? {
        A::AddMember(a) => add_member(doc, federation_id, a, ctx.now_unix_ms),
        A::Suspend(a) => suspend(doc, &a.org, ctx),
        A::Reinstate(a) => reinstate(doc, &a.org),
        A::Remove(a) => remove(doc, a, ctx),
        A::RotateKey(a) => rotate_key(doc, a, ctx),
        A::ReportCompromise(a) => report_compromise(doc, a, ctx.now_unix_ms),
        A::RevokeCert(a) => revoke_cert(doc, a, ctx.now_unix_ms),
        A::RecordCert(a) => record_cert(doc, a),
        A::SetAuthority(a) => set_authority(doc, a),
        A::SetHubs(a) => Ok(set_hubs(doc, a)),
        A::SetPolicy(a) => set_policy(doc, a),
        A::SetEncryptionKey(a) => set_encryption_key(doc, a, ctx.now_unix_ms),
    }
}

pub(super) fn status_of(m: &pb::Member) -> &'static str {
    MemberStatus::from_proto(m.status).map_or("of unknown status", MemberStatus::as_str)
}

pub(super) fn member<'d>(
    doc: &'d mut pb::RosterDocument,
    org: &str,
) -> Result<(OrgId, &'d mut pb::Member), ActionError> {
    let org = OrgId::parse(org).map_err(ActionError::Org)?;
    match doc.members.iter_mut().find(|m| m.org == org.as_str()) {
        Some(m) => Ok((org, m)),
        None => Err(ActionError::UnknownMember(org)),
    }
}

pub(super) fn key_id_of(bytes: &[u8]) -> String {
    parse_key(bytes)
        .map(|k| KeyId::of(&k).to_string())
        .unwrap_or_else(|_| hex::encode(bytes))
}

/// Who already signs with `key`, if anyone.
pub(super) fn key_holder(doc: &pb::RosterDocument, key: &[u8]) -> Option<String> {
    doc.members
        .iter()
        .find(|m| m.signing_keys.iter().any(|k| k.public_key == key))
        .map(|m| m.org.clone())
}
