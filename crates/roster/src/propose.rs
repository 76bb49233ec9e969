//! Building the next roster version from the current one and the hub operators' admin actions
//! (add, suspend, reinstate, remove, rotate key, report compromise, certificates, authority,
//! hubs, policy); each action leaves a line in the version's `Change` for the audit trail.
//!
//! Key ranges under suspension and reinstatement: a suspension (or removal) ends each open key
//! of the member at the cut-off, the member's head seq at the hub when proposed (never before
//! the key's own start: a key that signed nothing gets the empty range `first - 1`), and marks
//! it `KEY_END_SUSPENSION`. Reinstating reopens exactly the keys so marked; keys ended by a
//! rotation or a compromise report (including one reported while suspended) stay ended.
//! Entries the member signed while suspended become valid once it is reinstated.

use intelmesh_core::entry::InvalidOrgId;
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;
use pb::action::Action as A;
use prost::Message;

use crate::document::{
    check_authority, check_decoded, is_serial, new_member, normalize_serial, parse_key, seq_range,
    DocumentDefect, MemberRole, MemberStatus,
};
use crate::enrolment::{verify_enrolment, verify_rotation, RequestError};
use crate::roster::Roster;

/// Who proposes, why, when, and what the hub knows of each member's log.
pub struct ProposeContext<'a> {
    pub proposed_by: &'a str,
    pub reason: &'a str,
    pub now_unix_ms: i64,
    /// The member's head seq at the hub (0: nothing yet): where suspensions cut its keys, and
    /// the least a rotation may end the old key at.
    pub member_heads: &'a dyn Fn(&OrgId) -> u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("no actions: a new version must change something")]
    NoActions,
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
    #[error("rotation request refused: {0}")]
    Rotation(RequestError),
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
        // Checked after every action, so a defect names the action that made it.
        check_decoded(doc.clone()).map_err(|d| fail(ActionError::Malformed(d)))?;
        lines.push(line);
    }
    doc.version = current.version() + 1;
    doc.prev_hash = current.hash().to_vec();
    doc.issued_at_unix_ms = ctx.now_unix_ms;
    doc.change = Some(pb::Change {
        proposed_by: ctx.proposed_by.to_string(),
        actions: lines,
        reason: ctx.reason.to_string(),
    });
    Ok(doc.encode_to_vec())
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
    }
}

fn apply(
    doc: &mut pb::RosterDocument,
    federation_id: &OrgId,
    action: &pb::Action,
    ctx: &ProposeContext<'_>,
) -> Result<String, ActionError> {
    match action.action.as_ref().ok_or(ActionError::Empty)? {
        A::AddMember(a) => add_member(doc, federation_id, a),
        A::Suspend(a) => suspend(doc, &a.org, ctx),
        A::Reinstate(a) => reinstate(doc, &a.org),
        A::Remove(a) => remove(doc, a, ctx),
        A::RotateKey(a) => rotate_key(doc, a, ctx),
        A::ReportCompromise(a) => report_compromise(doc, a),
        A::RevokeCert(a) => revoke_cert(doc, a, ctx.now_unix_ms),
        A::RecordCert(a) => record_cert(doc, a),
        A::SetAuthority(a) => set_authority(doc, a),
        A::SetHubs(a) => Ok(set_hubs(doc, a)),
        A::SetPolicy(a) => set_policy(doc, a),
    }
}

fn status_of(m: &pb::Member) -> &'static str {
    MemberStatus::from_proto(m.status).map_or("of unknown status", MemberStatus::as_str)
}

fn member<'d>(
    doc: &'d mut pb::RosterDocument,
    org: &str,
) -> Result<(OrgId, &'d mut pb::Member), ActionError> {
    let org = OrgId::parse(org).map_err(ActionError::Org)?;
    match doc.members.iter_mut().find(|m| m.org == org.as_str()) {
        Some(m) => Ok((org, m)),
        None => Err(ActionError::UnknownMember(org)),
    }
}

fn key_id_of(bytes: &[u8]) -> String {
    parse_key(bytes)
        .map(|k| KeyId::of(&k).to_string())
        .unwrap_or_else(|_| hex::encode(bytes))
}

/// Who already signs with `key`, if anyone.
fn key_holder(doc: &pb::RosterDocument, key: &[u8]) -> Option<String> {
    doc.members
        .iter()
        .find(|m| m.signing_keys.iter().any(|k| k.public_key == key))
        .map(|m| m.org.clone())
}

fn add_member(
    doc: &mut pb::RosterDocument,
    federation_id: &OrgId,
    a: &pb::AddMember,
) -> Result<String, ActionError> {
    let request = a.request.as_ref().ok_or(ActionError::Missing("request"))?;
    let enrolment = verify_enrolment(request).map_err(ActionError::Enrolment)?;
    let org = enrolment.org;
    if org == *federation_id {
        return Err(ActionError::FederationId(org));
    }
    if let Some(m) = doc.members.iter().find(|m| m.org == org.as_str()) {
        return Err(ActionError::AlreadyMember {
            status: status_of(m),
            org,
        });
    }
    let role = MemberRole::from_proto(a.role).ok_or(ActionError::Role(a.role))?;
    let key_id = KeyId::of(&enrolment.signing_key);
    if let Some(holder) = key_holder(doc, enrolment.signing_key.as_bytes()) {
        return Err(ActionError::KeyInUse {
            key_id,
            org: holder,
        });
    }
    let r = &enrolment.request;
    doc.members.push(new_member(
        &org,
        &r.display_name,
        &r.country,
        role,
        &enrolment.signing_key,
    ));
    Ok(format!(
        "add member {org} ({}, {}) as {} with key {key_id}",
        r.display_name,
        if r.country.is_empty() {
            "international"
        } else {
            &r.country
        },
        role.as_str()
    ))
}

/// Ends every open key of `m` at `cut` (or just before its start), marked with `end`; the
/// key ids and ranges, for the action line.
fn end_open_keys(m: &mut pb::Member, cut: u64, end: pb::KeyEnd) -> Vec<String> {
    let mut ended = Vec::new();
    for k in m.signing_keys.iter_mut().filter(|k| k.last_seq.is_none()) {
        let last = cut.max(k.first_seq.saturating_sub(1));
        k.last_seq = Some(last);
        k.ended_by = end as i32;
        ended.push(format!(
            "{} (seqs {})",
            key_id_of(&k.public_key),
            seq_range(k.first_seq, k.last_seq)
        ));
    }
    ended
}

fn ended_line(ended: &[String]) -> String {
    if ended.is_empty() {
        "no open key".to_string()
    } else {
        format!("keys ended: {}", ended.join(", "))
    }
}

fn suspend(
    doc: &mut pb::RosterDocument,
    org: &str,
    ctx: &ProposeContext<'_>,
) -> Result<String, ActionError> {
    let (org, m) = member(doc, org)?;
    match MemberStatus::from_proto(m.status) {
        Some(MemberStatus::Suspended) => return Err(ActionError::AlreadySuspended(org)),
        Some(MemberStatus::Removed) => return Err(ActionError::Removed(org)),
        _ => {}
    }
    let cut = (ctx.member_heads)(&org);
    let ended = end_open_keys(m, cut, pb::KeyEnd::Suspension);
    m.status = pb::MemberStatus::Suspended as i32;
    Ok(format!(
        "suspend {org} at seq {cut}: {}",
        ended_line(&ended)
    ))
}

fn reinstate(doc: &mut pb::RosterDocument, org: &str) -> Result<String, ActionError> {
    let (org, m) = member(doc, org)?;
    match MemberStatus::from_proto(m.status) {
        Some(MemberStatus::Suspended) => {}
        Some(MemberStatus::Removed) => return Err(ActionError::Removed(org)),
        _ => {
            return Err(ActionError::NotSuspended {
                status: status_of(m),
                org,
            })
        }
    }
    let mut reopened = Vec::new();
    for k in m
        .signing_keys
        .iter_mut()
        .filter(|k| k.ended_by == pb::KeyEnd::Suspension as i32)
    {
        k.last_seq = None;
        k.ended_by = pb::KeyEnd::Unspecified as i32;
        reopened.push(format!(
            "{} (seqs {})",
            key_id_of(&k.public_key),
            seq_range(k.first_seq, None)
        ));
    }
    m.status = pb::MemberStatus::Active as i32;
    let keys = if reopened.is_empty() {
        "no key reopened (its keys were ended by rotation or compromise)".to_string()
    } else {
        format!("keys reopened: {}", reopened.join(", "))
    };
    Ok(format!("reinstate {org}: {keys}"))
}

fn remove(
    doc: &mut pb::RosterDocument,
    a: &pb::Remove,
    ctx: &ProposeContext<'_>,
) -> Result<String, ActionError> {
    let (org, m) = member(doc, &a.org)?;
    if MemberStatus::from_proto(m.status) == Some(MemberStatus::Removed) {
        return Err(ActionError::Removed(org));
    }
    let cut = (ctx.member_heads)(&org);
    let ended = end_open_keys(m, cut, pb::KeyEnd::Removal);
    m.status = pb::MemberStatus::Removed as i32;
    m.withdrawn = a.withdraw;
    let hubs_before = doc.hubs.len();
    doc.hubs.retain(|h| h.org != org.as_str());
    let mut line = format!("remove {org} at seq {cut}: {}", ended_line(&ended));
    if a.withdraw {
        line.push_str("; its assertions are withdrawn from every view");
    }
    if doc.hubs.len() != hubs_before {
        line.push_str("; its hub addresses are dropped");
    }
    Ok(line)
}

fn rotate_key(
    doc: &mut pb::RosterDocument,
    a: &pb::RotateKey,
    ctx: &ProposeContext<'_>,
) -> Result<String, ActionError> {
    let request = a.request.as_ref().ok_or(ActionError::Missing("request"))?;
    let rotation = verify_rotation(request).map_err(ActionError::Rotation)?;
    let (old_id, new_id) = (KeyId::of(&rotation.old_key), KeyId::of(&rotation.new_key));
    if let Some(holder) = key_holder(doc, rotation.new_key.as_bytes()) {
        return Err(ActionError::KeyInUse {
            key_id: new_id,
            org: holder,
        });
    }
    let head = (ctx.member_heads)(&rotation.org);
    let (org, m) = member(doc, rotation.org.as_str())?;
    if MemberStatus::from_proto(m.status) != Some(MemberStatus::Active) {
        return Err(ActionError::NotActive {
            status: status_of(m),
            org,
        });
    }
    let last_seq = rotation.last_seq;
    let new_first = last_seq
        .checked_add(1)
        .ok_or(ActionError::LastSeqTooLarge(last_seq))?;
    let old = m
        .signing_keys
        .iter_mut()
        .find(|k| k.last_seq.is_none() && k.public_key == rotation.old_key.as_bytes())
        .ok_or_else(|| ActionError::OldKeyNotCurrent {
            org: org.clone(),
            key_id: old_id,
        })?;
    let known = head.max(old.first_seq.saturating_sub(1));
    if last_seq < known {
        return Err(ActionError::LastSeqBehind {
            org,
            last_seq,
            known,
        });
    }
    old.last_seq = Some(last_seq);
    old.ended_by = pb::KeyEnd::Rotation as i32;
    m.signing_keys.push(pb::MemberKey {
        public_key: rotation.new_key.to_bytes().to_vec(),
        first_seq: new_first,
        last_seq: None,
        ended_by: pb::KeyEnd::Unspecified as i32,
    });
    Ok(format!(
        "rotate key of {org}: {old_id} ends at seq {last_seq}, {new_id} signs from seq {new_first}"
    ))
}

fn report_compromise(
    doc: &mut pb::RosterDocument,
    a: &pb::ReportCompromise,
) -> Result<String, ActionError> {
    let (org, m) = member(doc, &a.org)?;
    let unknown = || ActionError::UnknownKey {
        org: org.clone(),
        key_id: key_id_of(&a.public_key),
    };
    let key_id = parse_key(&a.public_key)
        .map(|key| KeyId::of(&key))
        .map_err(|_| unknown())?;
    let k = m
        .signing_keys
        .iter_mut()
        .find(|k| k.public_key == a.public_key)
        .ok_or_else(unknown)?;
    if a.last_good_seq < k.first_seq.saturating_sub(1) {
        return Err(ActionError::BeforeFirstSeq {
            org,
            key_id,
            first_seq: k.first_seq,
        });
    }
    if let Some(last_seq) = k.last_seq.filter(|last| a.last_good_seq > *last) {
        return Err(ActionError::NotShortening {
            org,
            key_id,
            last_seq,
            requested: a.last_good_seq,
        });
    }
    k.last_seq = Some(a.last_good_seq);
    k.ended_by = pb::KeyEnd::Compromise as i32;
    Ok(format!(
        "report compromise of key {key_id} of {org}: valid for seqs {} only; later entries under it are refused",
        seq_range(k.first_seq, k.last_seq)
    ))
}

fn serial(raw: &str) -> Result<String, ActionError> {
    let serial = normalize_serial(raw);
    if !is_serial(&serial) {
        return Err(ActionError::Serial(raw.to_string()));
    }
    Ok(serial)
}

fn revoke_cert(
    doc: &mut pb::RosterDocument,
    a: &pb::RevokeCert,
    now_unix_ms: i64,
) -> Result<String, ActionError> {
    let serial = serial(&a.serial)?;
    if doc.revoked.iter().any(|r| r.serial == serial) {
        return Err(ActionError::AlreadyRevoked(serial));
    }
    let org = doc
        .members
        .iter()
        .find(|m| m.certificates.iter().any(|c| c.serial == serial))
        .map(|m| m.org.clone())
        .unwrap_or_default();
    let line = format!(
        "revoke certificate {serial} ({}): {}",
        if org.is_empty() {
            "not recorded for any member"
        } else {
            &org
        },
        a.reason
    );
    doc.revoked.push(pb::RevokedCert {
        serial,
        org,
        reason: a.reason.clone(),
        revoked_at_unix_ms: now_unix_ms,
    });
    Ok(line)
}

fn record_cert(doc: &mut pb::RosterDocument, a: &pb::RecordCert) -> Result<String, ActionError> {
    let cert = a.cert.as_ref().ok_or(ActionError::Missing("cert"))?;
    let serial = serial(&cert.serial)?;
    if doc.revoked.iter().any(|r| r.serial == serial) {
        return Err(ActionError::CertRevoked(serial));
    }
    if let Some(holder) = doc
        .members
        .iter()
        .find(|m| m.certificates.iter().any(|c| c.serial == serial))
    {
        return Err(ActionError::CertAlreadyRecorded {
            serial,
            org: holder.org.clone(),
        });
    }
    let (org, m) = member(doc, &a.org)?;
    if MemberStatus::from_proto(m.status) == Some(MemberStatus::Removed) {
        return Err(ActionError::Removed(org));
    }
    m.certificates.push(pb::IssuedCert {
        serial: serial.clone(),
        not_after_unix_ms: cert.not_after_unix_ms,
    });
    Ok(format!(
        "record certificate {serial} of {org}, not after {} (unix ms)",
        cert.not_after_unix_ms
    ))
}

fn set_authority(
    doc: &mut pb::RosterDocument,
    a: &pb::SetAuthority,
) -> Result<String, ActionError> {
    let authority = a
        .authority
        .as_ref()
        .ok_or(ActionError::Missing("authority"))?;
    let checked = check_authority(Some(authority)).map_err(ActionError::Malformed)?;
    let names: Vec<String> = checked
        .keys
        .iter()
        .map(|k| format!("{} ({})", k.name, k.id()))
        .collect();
    doc.authority = Some(authority.clone());
    Ok(format!(
        "set authority: {} of {}: {}",
        checked.threshold,
        checked.keys.len(),
        names.join(", ")
    ))
}

fn set_hubs(doc: &mut pb::RosterDocument, a: &pb::SetHubs) -> String {
    doc.hubs = a.hubs.clone();
    let hubs: Vec<String> = a
        .hubs
        .iter()
        .map(|h| format!("{} at {}", h.org, h.address))
        .collect();
    if hubs.is_empty() {
        "set hubs: none".to_string()
    } else {
        format!("set hubs: {}", hubs.join(", "))
    }
}

fn set_policy(doc: &mut pb::RosterDocument, a: &pb::SetPolicy) -> Result<String, ActionError> {
    let policy = a.policy.ok_or(ActionError::Missing("policy"))?;
    doc.policy = Some(policy);
    let p = crate::policy::Policy::from_proto(Some(&policy));
    Ok(format!(
        "set policy: clock skew {} ms, checkpoint every {} ms, certificate warning {} days",
        p.clock_skew_ms, p.checkpoint_interval_ms, p.cert_warn_days
    ))
}
