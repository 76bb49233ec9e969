//! What operators should know before they sign a proposal, worked out from the current
//! roster's document, the proposed one, and the hub's ledger of certificates it issued.

use std::collections::BTreeSet;

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::model::normalize_serial;

/// For each member whose certificate the proposed version revokes, the member's other
/// certificates it leaves admitted: those the roster lists, unexpired at `now_unix_ms`, and
/// those `ledger` says this hub issued to it, that the version does not revoke (a serial
/// the roster ties to no member is the member's `issued_to` names). Every
/// bundle and renewal certifies the member's one enrolment key anew, so a thief holding the
/// node's files may hold any of them and go on linking as the member.
pub fn left_admitted(
    current: &pb::RosterDocument,
    proposed: &pb::RosterDocument,
    now_unix_ms: i64,
    ledger: impl Fn(&OrgId) -> Vec<String>,
    issued_to: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let revoked_before: BTreeSet<String> = (current.revoked.iter())
        .map(|r| normalize_serial(&r.serial))
        .collect();
    let revoked: BTreeSet<String> = (proposed.revoked.iter())
        .map(|r| normalize_serial(&r.serial))
        .collect();
    let holder = |serial: &str| {
        proposed
            .members
            .iter()
            .find(|m| (m.certificates.iter()).any(|c| normalize_serial(&c.serial) == serial))
    };
    let orgs: BTreeSet<String> = (proposed.revoked.iter())
        .filter(|r| !revoked_before.contains(&normalize_serial(&r.serial)))
        .filter_map(|r| match r.org.as_str() {
            "" => (holder(&normalize_serial(&r.serial)).map(|m| m.org.clone()))
                .or_else(|| issued_to(&r.serial)),
            org => Some(org.to_string()),
        })
        .collect();
    let mut notices = Vec::new();
    for org in orgs {
        let listed = (proposed.members.iter().find(|m| m.org == org))
            .into_iter()
            .flat_map(|m| &m.certificates)
            .filter(|c| c.not_after_unix_ms > now_unix_ms)
            .map(|c| normalize_serial(&c.serial));
        let issued = OrgId::parse(&org)
            .map(|o| ledger(&o))
            .unwrap_or_default()
            .into_iter()
            .map(|s| normalize_serial(&s));
        let left: BTreeSet<String> = listed
            .chain(issued)
            .filter(|s| !revoked.contains(s))
            .collect();
        if !left.is_empty() {
            notices.push(format!(
                "{org} keeps certificates this version does not revoke: serial {}. Each \
                 certifies the same enrolment key; whoever holds one links as {org}. Revoke \
                 them too, or report the compromise of {org}'s key (which refuses every \
                 certificate issued before the report).",
                left.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    notices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::issued::tests::revoked;

    fn member(org: &str, certs: &[(&str, i64)]) -> pb::Member {
        pb::Member {
            org: org.into(),
            certificates: certs
                .iter()
                .map(|(s, until)| pb::IssuedCert {
                    serial: s.to_string(),
                    not_after_unix_ms: *until,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_revocation_names_the_members_other_live_certificates() {
        let members = vec![
            member("AU-AFP", &[("0a", 100), ("0b", 100), ("0c", 5)]),
            member("BR-PF", &[("1a", 100)]),
        ];
        let current = pb::RosterDocument {
            members: members.clone(),
            revoked: vec![revoked("1a", "BR-PF")],
            ..Default::default()
        };
        // AU's "0A" revoked (spelt otherwise, its org left for the roster to tell); BR's was
        // revoked before.
        let proposed = pb::RosterDocument {
            members,
            revoked: vec![revoked("1a", "BR-PF"), revoked("0A", "")],
            ..Default::default()
        };
        let ledger = |o: &OrgId| match o.as_str() {
            "AU-AFP" => vec!["0d".to_string(), "0a".to_string()],
            _ => vec!["1b".to_string()],
        };
        let nobody = |_: &str| None;
        let notices = left_admitted(&current, &proposed, 10, ledger, nobody);
        assert_eq!(notices.len(), 1, "{notices:?}");
        // 0c expired; 0a is the one revoked; 0d comes from the ledger.
        assert!(notices[0].starts_with("AU-AFP keeps"), "{}", notices[0]);
        assert!(notices[0].contains("serial b, d."), "{}", notices[0]);
        // Revoking every live one leaves nothing to say.
        let all = pb::RosterDocument {
            revoked: ["0a", "0b", "0d"]
                .iter()
                .map(|s| revoked(s, "AU-AFP"))
                .collect(),
            ..proposed.clone()
        };
        assert!(left_admitted(&current, &all, 10, ledger, nobody).is_empty());
        assert!(left_admitted(&current, &current, 10, ledger, nobody).is_empty());
        // A serial the roster ties to no member: the ledger tells whose it was.
        let unlisted = pb::RosterDocument {
            revoked: vec![revoked("0e", "")],
            ..current.clone()
        };
        let issued_to = |s: &str| (s == "0e").then(|| "AU-AFP".to_string());
        let notices = left_admitted(&current, &unlisted, 10, ledger, issued_to);
        assert!(notices[0].contains("serial a, b, d."), "{notices:?}");
    }
}
