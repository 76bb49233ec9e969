//! Admin actions on the federation's settings: certificates recorded and revoked, the
//! authority, hub addresses, policy.

use intelmesh_proto::v1 as pb;

use super::{member, ActionError};
use crate::document::check_authority;
use crate::model::{is_serial, normalize_serial, MemberStatus};

fn serial(raw: &str) -> Result<String, ActionError> {
    let serial = normalize_serial(raw);
    if !is_serial(&serial) {
        return Err(ActionError::Serial(raw.to_string()));
    }
    Ok(serial)
}

pub(super) fn revoke_cert(
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

pub(super) fn record_cert(
    doc: &mut pb::RosterDocument,
    a: &pb::RecordCert,
) -> Result<String, ActionError> {
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

pub(super) fn set_authority(
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

pub(super) fn set_hubs(doc: &mut pb::RosterDocument, a: &pb::SetHubs) -> String {
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

pub(super) fn set_policy(
    doc: &mut pb::RosterDocument,
    a: &pb::SetPolicy,
) -> Result<String, ActionError> {
    let policy = a.policy.ok_or(ActionError::Missing("policy"))?;
    doc.policy = Some(policy);
    let p = crate::policy::Policy::from_proto(Some(&policy));
    Ok(format!(
        "set policy: clock skew {} ms, checkpoint every {} ms, certificate warning {} days",
        p.clock_skew_ms, p.checkpoint_interval_ms, p.cert_warn_days
    ))
}
