//! Admin actions on members: add (from a verified enrolment request), suspend, reinstate,
//! remove, rotate a key (from a verified rotation request), report a key compromise, set the
//! encryption key (from a request signed by the member's current signing key).

use intelmesh_core::sealed::EncryptionPublic;
use intelmesh_core::{KeyId, OrgId};
use intelmesh_proto::v1 as pb;

use super::{key_holder, key_id_of, member, status_of, ActionError, ProposeContext};
use crate::enrolment::{
    encryption_key_org, verify_encryption_key, verify_enrolment, verify_replacement,
    verify_rotation,
};
use crate::model::{
    encryption_key, encryption_key_holder, encryption_key_label, new_member, parse_key, seq_range,
    MemberRole, MemberStatus, CERT_BACKDATE_MS, MAX_ENCRYPTION_KEYS,
};

/// Refuses an encryption key some member (this one included) already lists: one key, one
/// reader, and a key never comes back once rotated out.
fn encryption_key_unused(
    doc: &pb::RosterDocument,
    key: &EncryptionPublic,
) -> Result<(), ActionError> {
    match encryption_key_holder(doc, key.as_bytes()) {
        Some(holder) => Err(ActionError::EncryptionKeyInUse {
            key_id: key.id(),
            org: holder.to_string(),
        }),
        None => Ok(()),
    }
}

/// How old an enrolment request may be when it is proposed: long enough for an agency's
/// application to be weighed, short enough that a request turned down, withdrawn or forgotten
/// cannot bring in keys its owner may have discarded or leaked since.
pub const MAX_ENROLMENT_REQUEST_AGE_MS: i64 = 90 * DAY_MS;

pub(super) fn add_member(
    doc: &mut pb::RosterDocument,
    federation_id: &OrgId,
    a: &pb::AddMember,
    now_unix_ms: i64,
) -> Result<String, ActionError> {
    let request = a.request.as_ref().ok_or(ActionError::Missing("request"))?;
    let enrolment = verify_enrolment(request).map_err(ActionError::Enrolment)?;
    let org = enrolment.org;
    let created_at = enrolment.request.created_at_unix_ms;
    if let Err((age_days, max_days)) = fresh(created_at, now_unix_ms, MAX_ENROLMENT_REQUEST_AGE_MS)
    {
        return Err(ActionError::StaleEnrolment {
            org,
            age_days,
            max_days,
        });
    }
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
    if let Some(problem) = crate::enrolment::naming_problem(&r.display_name, &r.country) {
        return Err(ActionError::Naming(problem));
    }
    let mut added = new_member(
        &org,
        &r.display_name,
        &r.country,
        role,
        &enrolment.signing_key,
    );
    let mut encryption = String::new();
    if let Some(key) = &enrolment.encryption_key {
        encryption_key_unused(doc, key)?;
        added.encryption_keys = vec![encryption_key(key, doc.version + 1)];
        encryption = format!(" and encryption key {}", key.id());
    }
    doc.members.push(added);
    Ok(format!(
        "add member {org} ({}, {}) as {} with key {key_id}{encryption}",
        r.display_name,
        if r.country.is_empty() {
            "international"
        } else {
            &r.country
        },
        role.as_str()
    ))
}

/// Makes the request's key the member's current encryption key (listed from the version being
/// proposed: `doc` still carries the current version's number), dropping the oldest beyond
/// [`MAX_ENCRYPTION_KEYS`]. Signed by the member's current (open) signing key, so only an
/// active member can ask.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Whether a request made at `created_at` is at most `max_ms` old at `now`, and not dated
/// ahead by more than a clock's error (it would stay fresh for ever); if not, its age and the
/// most allowed, in days.
fn fresh(created_at: i64, now: i64, max_ms: i64) -> Result<(), (i64, i64)> {
    let age_ms = now.saturating_sub(created_at);
    match (-DAY_MS..=max_ms).contains(&age_ms) {
        true => Ok(()),
        false => Err((age_ms / DAY_MS, max_ms / DAY_MS)),
    }
}

/// How old an encryption key request may be when it is proposed.
pub const MAX_ENCRYPTION_REQUEST_AGE_MS: i64 = 7 * DAY_MS;

pub(super) fn set_encryption_key(
    doc: &mut pb::RosterDocument,
    a: &pb::SetEncryptionKey,
    now_unix_ms: i64,
) -> Result<String, ActionError> {
    let request = a.request.as_ref().ok_or(ActionError::Missing("request"))?;
    let org = encryption_key_org(request).map_err(ActionError::EncryptionKeyRequest)?;
    let since_version = doc.version + 1;
    let (org, m) = member(doc, org.as_str())?;
    if MemberStatus::from_proto(m.status) != Some(MemberStatus::Active) {
        return Err(ActionError::NotActive {
            status: status_of(m),
            org,
        });
    }
    let current = m
        .signing_keys
        .iter()
        .rev()
        .find(|k| k.last_seq.is_none())
        .and_then(|k| parse_key(&k.public_key).ok())
        .ok_or_else(|| ActionError::NoOpenKey(org.clone()))?;
    let verified =
        verify_encryption_key(request, &current).map_err(ActionError::EncryptionKeyRequest)?;
    // Only listed keys are checked for reuse (at most `MAX_ENCRYPTION_KEYS` per member): a
    // request must be recent, or one whose key was rotated out long ago (and may have leaked
    // since) could be proposed again.
    let created_at = verified.request.created_at_unix_ms;
    if let Err((age_days, max_days)) = fresh(created_at, now_unix_ms, MAX_ENCRYPTION_REQUEST_AGE_MS)
    {
        return Err(ActionError::StaleRequest {
            org,
            age_days,
            max_days,
        });
    }
    encryption_key_unused(doc, &verified.new_key)?;
    let (_, m) = member(doc, org.as_str())?;
    m.encryption_keys
        .push(encryption_key(&verified.new_key, since_version));
    let excess = m.encryption_keys.len().saturating_sub(MAX_ENCRYPTION_KEYS);
    let dropped: Vec<String> = m
        .encryption_keys
        .drain(..excess)
        .map(|k| encryption_key_label(&k.public_key))
        .collect();
    let mut line = format!(
        "set encryption key of {org}: {} is current from version {since_version}",
        verified.new_key.id()
    );
    if !dropped.is_empty() {
        line.push_str(&format!("; oldest dropped: {}", dropped.join(", ")));
    }
    Ok(line)
}

/// How far past the hub's head of a member a rotation may end the member's old key: what an
/// honest node signed that has not reached the hub yet.
pub const ROTATION_LEAD_MAX: u64 = 10_000;

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

pub(super) fn suspend(
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

pub(super) fn reinstate(doc: &mut pb::RosterDocument, org: &str) -> Result<String, ActionError> {
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

pub(super) fn remove(
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

pub(super) fn rotate_key(
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
    // A key ended by rotation is past the reach of a later suspension or removal, which end
    // only open keys at the hub's head: were its end far ahead of what the hub holds, its
    // holder could sign on with it after either.
    if last_seq > head.saturating_add(ROTATION_LEAD_MAX) {
        return Err(ActionError::LastSeqAhead {
            org,
            last_seq,
            head,
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

/// Ends the reported key at the last seq the member vouches for, and with it what the thief
/// took from the same node: the member's certificates issued until now are refused (they
/// would let the thief dial in as the member) and its encryption keys are marked (nothing new
/// is sealed to them). A replacement key, if given, signs from the next seq; with it the
/// member asks for a fresh certificate (`pki request-node`) and lists a fresh encryption key.
pub(super) fn report_compromise(
    doc: &mut pb::RosterDocument,
    a: &pb::ReportCompromise,
    now_unix_ms: i64,
) -> Result<String, ActionError> {
    let (org, m) = member(doc, &a.org)?;
    // A suspended or removed member has no open key; a replacement would give it one.
    if !a.replacement_key.is_empty()
        && MemberStatus::from_proto(m.status) != Some(MemberStatus::Active)
    {
        return Err(ActionError::ReplacementWhileNotActive {
            status: status_of(m),
            org,
        });
    }
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
    // A key reported before had its node's credentials cut then: a report that only shortens
    // its range again must not cut those of the node the member has since recovered on.
    let first_report = k.ended_by != pb::KeyEnd::Compromise as i32;
    k.last_seq = Some(a.last_good_seq);
    k.ended_by = pb::KeyEnd::Compromise as i32;
    let mut line = format!(
        "report compromise of key {key_id} of {org}: valid for seqs {} only; later entries under it are refused",
        seq_range(k.first_seq, k.last_seq)
    );
    line.push_str(&end_successors(m, a.last_good_seq));
    if first_report {
        line.push_str(&cut_credentials(m, now_unix_ms));
    }
    if !a.replacement_key.is_empty() {
        let first_seq = a
            .last_good_seq
            .checked_add(1)
            .ok_or(ActionError::LastSeqTooLarge(a.last_good_seq))?;
        let new = verify_replacement(&org, &a.replacement_key, first_seq, &a.replacement_proof)
            .map_err(ActionError::Replacement)?;
        if m.signing_keys.iter().any(|k| k.last_seq.is_none()) {
            return Err(ActionError::ReplacementWhileOpen { org });
        }
        let new_id = KeyId::of(&new);
        if let Some(holder) = key_holder(doc, new.as_bytes()) {
            return Err(ActionError::KeyInUse {
                key_id: new_id,
                org: holder,
            });
        }
        let (_, m) = member(doc, org.as_str())?;
        m.signing_keys.push(pb::MemberKey {
            public_key: new.to_bytes().to_vec(),
            first_seq,
            last_seq: None,
            ended_by: pb::KeyEnd::Unspecified as i32,
        });
        line.push_str(&format!(
            "; replacement key {new_id} signs from seq {first_seq}"
        ));
    }
    Ok(line)
}

/// Ends, before they sign anything, the member's keys that start after `last_good + 1`: a
/// report that moves a key's end back below a successor's start (the thief began earlier than
/// first thought) cuts the log to `last_good`, and what the successors signed chained onto
/// what is cut. Left open, a successor would keep the member from a replacement, yet could
/// never sign `last_good + 1`, and the member could never publish again. What it did, for the
/// action's line.
///
/// They end as superseded (`Rotation`), not as stolen: a hub's successor keeps its right to
/// sign the roster log, and no reinstatement reopens them (a suspension's empty end would be).
fn end_successors(m: &mut pb::Member, last_good: u64) -> String {
    let mut ended = Vec::new();
    for k in m.signing_keys.iter_mut() {
        let later = k.first_seq > last_good.saturating_add(1);
        let signs = k.last_seq.is_none_or(|last| last >= k.first_seq);
        let reopens = k.ended_by == pb::KeyEnd::Suspension as i32;
        if later && (signs || reopens) {
            k.last_seq = Some(k.first_seq - 1);
            k.ended_by = pb::KeyEnd::Rotation as i32;
            ended.push(key_id_of(&k.public_key));
        }
    }
    match ended.is_empty() {
        true => String::new(),
        false => format!(
            "; its later key(s) {} end before signing anything (what they signed chained onto what is cut)",
            ended.join(", ")
        ),
    }
}

/// Cuts what a thief took from the node with a member's key: its certificates issued until
/// now are refused (recorded or not) and its encryption keys marked, so nothing new is sealed
/// to them. What it did, for the action's line.
fn cut_credentials(m: &mut pb::Member, now_unix_ms: i64) -> String {
    // In whole seconds, as certificates state their validity: one the CA signs in the second
    // of the report, backdated as it does, is admitted.
    let from = now_unix_ms.saturating_sub(CERT_BACKDATE_MS) / 1000 * 1000;
    m.certificates_from_unix_ms = m.certificates_from_unix_ms.max(from);
    let mut marked = 0;
    for k in (m.encryption_keys.iter_mut()).filter(|k| !k.reported_compromised) {
        k.reported_compromised = true;
        marked += 1;
    }
    let mut line = "; its certificates issued until now are refused".to_string();
    if marked > 0 {
        line.push_str(&format!(
            " and its {marked} encryption key(s) marked, nothing new sealed to them"
        ));
    }
    line
}
