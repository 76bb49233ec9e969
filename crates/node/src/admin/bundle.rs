//! Enrolment bundles: the hub signs an admitted member's certificate request (kept with the
//! proposal that admitted it) with the federation CA its config names, and hands back what
//! the member's node needs to join: certificate, federation CA, genesis and its pin, the
//! current version and the hubs to dial.
//!
//! The certificate's serial and expiry are not written into the roster by the bundle itself
//! (a roster change needs the authority's signatures); the CLI proposes a `RecordCert` action
//! next to it (`intelmesh admin members bundle|renew`), so expiry shows in status everywhere.

use intelmesh_core::entry::header_hash;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::enrolment::verify_enrolment;
use intelmesh_roster::roster_hash;
use intelmesh_store::Store;

use super::proposals::current_roster as current;
use super::roster_log::stored_version;
use super::AdminError;
use super::{book, issued};
use crate::pki::{Ca, Validity, DEFAULT_LEAF_DAYS, MAX_BUNDLE_DAYS};
use crate::state::NodeState;
use intelmesh_roster::model::normalize_serial;

/// The bundle of member `org`, its certificate valid for `days` (0: the default).
pub fn issue_bundle(
    state: &NodeState,
    org: &OrgId,
    days: u32,
) -> Result<pb::EnrolmentBundle, AdminError> {
    let current = current(state)?;
    let member = current
        .member(org)
        .ok_or_else(|| AdminError::UnknownMember(org.clone()))?;
    if member.status != pb::MemberStatus::Active as i32 {
        return Err(AdminError::Precondition(format!(
            "{org} is not active in roster version {}: reinstate it first",
            current.version()
        )));
    }
    // The bundle certifies the key of the enrolment request again. Once a certificate of the
    // member was revoked, that key may be in other hands: certifying it again would readmit
    // whoever holds it.
    // Likewise once one of its signing keys was reported compromised: the node that held it
    // held the certificate request's key too.
    let ledger = issued::dir(&state.cfg.data_dir);
    let kept = book::list(&book::dir(&state.cfg.data_dir))?;
    let why = if issued::revoked_for(&current.document().revoked, org, |serial| {
        issued::issued_to(&ledger, serial)
    })? {
        Some(format!("a certificate of {org} was revoked"))
    } else if (member.signing_keys.iter()).any(|k| k.ended_by == pb::KeyEnd::Compromise as i32) {
        Some(format!("a signing key of {org} was reported compromised"))
    } else {
        // A report or revocation still collecting signatures: a certificate issued now would
        // start after the cut-off the report sets, or certify the revoked certificate's key
        // under a serial the revocation does not name, and so be admitted.
        let members = |serial: &str| -> Result<bool, AdminError> {
            let serial = normalize_serial(serial);
            Ok(
                (member.certificates.iter()).any(|c| normalize_serial(&c.serial) == serial)
                    || issued::issued_to(&ledger, &serial)?.as_deref() == Some(org.as_str()),
            )
        };
        pending_cut(&kept, org, members)?.map(|(id, what)| {
            format!("a {what} of {org} is proposed (proposal {id}; withdraw it if it is wrong)")
        })
    };
    if let Some(why) = why {
        return Err(AdminError::Precondition(format!(
            "{why}, so the key of its enrolment request is not certified again: have {org} make a new key and request (`intelmesh pki request-node`) and sign it with `intelmesh pki sign-node`"
        )));
    }
    // Each bundle signs a certificate and writes a ledger file: bounded per member until the
    // roster records (or revokes) what was issued. One bundle at a time from the count to the
    // ledger, so calls at once cannot all see room.
    static ISSUING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _issuing = crate::rotation::lock(&ISSUING);
    let document = current.document();
    let settled = |serial: &str| {
        let serial = normalize_serial(serial);
        let same = |other: &str| normalize_serial(other) == serial;
        member.certificates.iter().any(|c| same(&c.serial))
            || document.revoked.iter().any(|r| same(&r.serial))
    };
    let pending = issued::unrecorded(&ledger, org, settled)?;
    if pending.len() >= issued::MAX_UNRECORDED {
        return Err(AdminError::Precondition(format!(
            "{} certificates issued to {org} are neither recorded in roster version {} nor revoked ({}): publish their records (the proposals `admin members bundle` made) or revoke them before issuing another",
            pending.len(),
            current.version(),
            pending.join(", ")
        )));
    }
    let csr_pem = admitted_request(&kept, org, &member.signing_keys)?;
    let admin = state.cfg.admin.as_ref().ok_or_else(|| {
        AdminError::Precondition(
            "this hub's config has no [admin] federation_ca_cert and federation_ca_key: the hub cannot sign certificates".into(),
        )
    })?;
    let ca = Ca::load(&admin.federation_ca_cert, &admin.federation_ca_key)
        .map_err(|e| AdminError::Precondition(format!("[admin] federation CA: {e:#}")))?;
    let days = if days == 0 { DEFAULT_LEAF_DAYS } else { days };
    if days > MAX_BUNDLE_DAYS {
        return Err(AdminError::Invalid(format!(
            "days {days}: a bundle's certificate may be valid for at most {MAX_BUNDLE_DAYS} days (renew it before it ends)"
        )));
    }
    let node_cert_pem = ca
        .sign_node_request(org, &csr_pem, Validity::days(days))
        .map_err(|e| AdminError::Invalid(format!("the certificate request of {org}: {e:#}")))?;
    let serial = crate::cert_facts::cert_facts_pem(&node_cert_pem)
        .map_err(|e| AdminError::Internal(format!("the certificate just signed: {e:#}")))?
        .serial_hex;
    // Before the bundle leaves: a revocation of this serial must find its org.
    issued::record(&ledger, &serial, org)?;
    let genesis = stored_version(state.store.as_ref(), current.federation_id(), 1)?
        .ok_or(AdminError::NoSuchVersion(1))?;
    // One version at a time: a roster log entry carries a whole roster.
    let mut roster_log = Vec::new();
    for seq in 1..=current.version() {
        let held = state.store.range(current.federation_id(), seq, 1)?.pop();
        let entry = held.ok_or(AdminError::NoSuchVersion(seq))?;
        roster_log.push(header_hash(&entry.header).to_vec());
    }
    Ok(pb::EnrolmentBundle {
        org: org.to_string(),
        node_cert_pem,
        federation_ca_pem: current.ca_certs_pem().to_vec(),
        genesis_hash: roster_hash(&genesis.document).to_vec(),
        genesis: Some(genesis),
        current: Some(current.signed().clone()),
        hubs: current.hubs().into_iter().cloned().collect(),
        roster_log,
    })
}

/// A kept proposal that reports a key of `org` compromised or revokes one of its certificates
/// (a serial `members` says is `org`'s), if any: its id, and which it is.
fn pending_cut<'k>(
    kept: &'k [book::Kept],
    org: &OrgId,
    members: impl Fn(&str) -> Result<bool, AdminError>,
) -> Result<Option<(&'k str, &'static str)>, AdminError> {
    for k in kept {
        for action in &k.request.actions {
            let what = match &action.action {
                Some(pb::action::Action::ReportCompromise(r)) if r.org == org.as_str() => {
                    "compromise report"
                }
                Some(pb::action::Action::RevokeCert(r)) if members(&r.serial)? => {
                    "revocation of a certificate"
                }
                _ => continue,
            };
            return Ok(Some((k.id.as_str(), what)));
        }
    }
    Ok(None)
}

/// The certificate request of `org`'s enrolment request, from the proposal that admitted it:
/// the one whose signing key the roster holds for `org`.
fn admitted_request(
    kept: &[book::Kept],
    org: &OrgId,
    keys: &[pb::MemberKey],
) -> Result<String, AdminError> {
    for kept in kept.iter().rev() {
        for action in &kept.request.actions {
            let Some(pb::action::Action::AddMember(add)) = &action.action else {
                continue;
            };
            let Some(Ok(verified)) = add.request.as_ref().map(verify_enrolment) else {
                continue;
            };
            let key = verified.signing_key.to_bytes();
            if &verified.org == org && keys.iter().any(|k| k.public_key == key) {
                return Ok(verified.request.csr_pem);
            }
        }
    }
    Err(AdminError::Precondition(format!(
        "this hub holds no enrolment request of {org} (members are admitted on the hub that keeps their request): issue its bundle there"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(id: &str, action: pb::action::Action) -> book::Kept {
        book::Kept {
            id: id.into(),
            request: pb::ProposeRequest {
                actions: vec![pb::Action {
                    action: Some(action),
                }],
                ..Default::default()
            },
            roster: pb::SignedRoster::default(),
        }
    }

    fn revoke(serial: &str) -> pb::action::Action {
        pb::action::Action::RevokeCert(pb::RevokeCert {
            serial: serial.into(),
            reason: "key compromise".into(),
        })
    }

    fn report(org: &str) -> pb::action::Action {
        pb::action::Action::ReportCompromise(pb::ReportCompromise {
            org: org.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_pending_revocation_or_report_of_the_member_stops_its_bundle_and_others_do_not() {
        let au = OrgId::parse("AU-AFP").expect("org");
        let of_au = |serial: &str| Ok(serial == "0a1b");
        type Case = (Vec<book::Kept>, Option<(&'static str, &'static str)>);
        let cases: [Case; 5] = [
            (vec![], None),
            (vec![kept("p1", revoke("ffff"))], None),
            (vec![kept("p1", report("NZ-POL"))], None),
            (
                vec![kept("p1", report("NZ-POL")), kept("p2", revoke("0a1b"))],
                Some(("p2", "revocation of a certificate")),
            ),
            (
                vec![kept("p3", report("AU-AFP"))],
                Some(("p3", "compromise report")),
            ),
        ];
        for (book, expected) in cases {
            assert_eq!(
                pending_cut(&book, &au, of_au).expect("judged"),
                expected,
                "{book:?}"
            );
        }
        let broken = |_: &str| Err(AdminError::Internal("ledger unreadable".into()));
        assert!(pending_cut(&[kept("p1", revoke("0a1b"))], &au, broken).is_err());
    }
}
