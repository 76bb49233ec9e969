//! What changed between two roster documents, as lines people read (`admin roster diff`, and the
//! review of a proposal before signing it).

use std::collections::{BTreeMap, BTreeSet};

use intelmesh_core::KeyId;
use intelmesh_proto::v1 as pb;

use crate::model::{encryption_key_label, parse_key, seq_range, MemberRole, MemberStatus};
use crate::policy::Policy;

/// Human lines for every difference from `a` to `b`, in a stable order: authority, members,
/// certificates, hubs, policy, CA certificates.
pub fn diff(a: &pb::RosterDocument, b: &pb::RosterDocument) -> Vec<String> {
    let mut out = Vec::new();
    if a.federation_id != b.federation_id {
        out.push(format!(
            "federation id: {} -> {}",
            a.federation_id, b.federation_id
        ));
    }
    diff_authority(a.authority.as_ref(), b.authority.as_ref(), &mut out);
    diff_members(&a.members, &b.members, &mut out);
    diff_revoked(&a.revoked, &b.revoked, &mut out);
    diff_hubs(&a.hubs, &b.hubs, &mut out);
    let (pa, pb_) = (
        Policy::from_proto(a.policy.as_ref()),
        Policy::from_proto(b.policy.as_ref()),
    );
    if pa != pb_ {
        out.push(format!(
            "policy: clock skew {} -> {} ms, checkpoint every {} -> {} ms, certificate warning {} -> {} days",
            pa.clock_skew_ms, pb_.clock_skew_ms, pa.checkpoint_interval_ms, pb_.checkpoint_interval_ms,
            pa.cert_warn_days, pb_.cert_warn_days
        ));
    }
    let (ca_a, ca_b): (BTreeSet<_>, BTreeSet<_>) = (
        a.ca_certs_pem.iter().collect(),
        b.ca_certs_pem.iter().collect(),
    );
    let (added, dropped) = (
        ca_b.difference(&ca_a).count(),
        ca_a.difference(&ca_b).count(),
    );
    if added > 0 {
        out.push(format!("federation CA certificates: {added} added"));
    }
    if dropped > 0 {
        out.push(format!("federation CA certificates: {dropped} dropped"));
    }
    out
}

fn key_label(bytes: &[u8]) -> String {
    parse_key(bytes)
        .map(|k| KeyId::of(&k).to_string())
        .unwrap_or_else(|_| format!("<invalid {}>", hex::encode(bytes)))
}

fn diff_authority(a: Option<&pb::Authority>, b: Option<&pb::Authority>, out: &mut Vec<String>) {
    let (a, b) = (
        a.cloned().unwrap_or_default(),
        b.cloned().unwrap_or_default(),
    );
    let names = |x: &pb::Authority| -> BTreeMap<Vec<u8>, String> {
        x.keys
            .iter()
            .map(|k| (k.public_key.clone(), k.name.clone()))
            .collect()
    };
    let (na, nb) = (names(&a), names(&b));
    for (key, name) in &nb {
        match na.get(key) {
            None => out.push(format!("authority key added: {name} ({})", key_label(key))),
            Some(old) if old != name => out.push(format!(
                "authority key {} renamed: {old} -> {name}",
                key_label(key)
            )),
            Some(_) => {}
        }
    }
    for (key, name) in &na {
        if !nb.contains_key(key) {
            out.push(format!(
                "authority key dropped: {name} ({})",
                key_label(key)
            ));
        }
    }
    if a.threshold != b.threshold {
        out.push(format!(
            "authority threshold: {} -> {}",
            a.threshold, b.threshold
        ));
    }
}

fn role(v: i32) -> &'static str {
    MemberRole::from_proto(v).map_or("unknown role", MemberRole::as_str)
}

fn status(v: i32) -> &'static str {
    MemberStatus::from_proto(v).map_or("unknown status", MemberStatus::as_str)
}

fn diff_members(a: &[pb::Member], b: &[pb::Member], out: &mut Vec<String>) {
    let by_org = |ms: &[pb::Member]| -> BTreeMap<String, pb::Member> {
        ms.iter().map(|m| (m.org.clone(), m.clone())).collect()
    };
    let (ma, mb) = (by_org(a), by_org(b));
    for (org, new) in &mb {
        let Some(old) = ma.get(org) else {
            let keys: Vec<String> = new
                .signing_keys
                .iter()
                .map(|k| key_label(&k.public_key))
                .collect();
            let encryption: Vec<String> = new
                .encryption_keys
                .iter()
                .map(|k| encryption_key_label(&k.public_key))
                .collect();
            let mut line = format!(
                "member {org} added: {} ({}), {}, {}, keys {}",
                new.display_name,
                new.country,
                role(new.role),
                status(new.status),
                keys.join(", ")
            );
            if !encryption.is_empty() {
                line.push_str(&format!(", encryption keys {}", encryption.join(", ")));
            }
            out.push(line);
            continue;
        };
        diff_member(org, old, new, out);
    }
    for org in ma.keys().filter(|org| !mb.contains_key(*org)) {
        out.push(format!("member {org} dropped from the roster"));
    }
}

fn diff_member(org: &str, old: &pb::Member, new: &pb::Member, out: &mut Vec<String>) {
    if old.status != new.status {
        out.push(format!(
            "member {org}: {} -> {}",
            status(old.status),
            status(new.status)
        ));
    }
    if old.role != new.role {
        out.push(format!(
            "member {org}: role {} -> {}",
            role(old.role),
            role(new.role)
        ));
    }
    if old.withdrawn != new.withdrawn {
        out.push(format!(
            "member {org}: assertions {}",
            if new.withdrawn {
                "withdrawn from every view"
            } else {
                "no longer withdrawn"
            }
        ));
    }
    if (&old.display_name, &old.country) != (&new.display_name, &new.country) {
        out.push(format!(
            "member {org}: {} ({}) -> {} ({})",
            old.display_name, old.country, new.display_name, new.country
        ));
    }
    if old.certificates_from_unix_ms != new.certificates_from_unix_ms {
        out.push(format!(
            "member {org}: certificates whose validity starts before {} (unix ms) refused",
            new.certificates_from_unix_ms
        ));
    }
    if old.node_identity != new.node_identity {
        out.push(format!(
            "member {org}: node identity {} -> {}",
            old.node_identity, new.node_identity
        ));
    }
    let ranges = |m: &pb::Member| -> BTreeMap<Vec<u8>, (u64, Option<u64>)> {
        m.signing_keys
            .iter()
            .map(|k| (k.public_key.clone(), (k.first_seq, k.last_seq)))
            .collect()
    };
    let (ka, kb) = (ranges(old), ranges(new));
    for (key, &(first, last)) in &kb {
        match ka.get(key) {
            None => out.push(format!(
                "member {org}: key {} added, seqs {}",
                key_label(key),
                seq_range(first, last)
            )),
            Some(&(f0, l0)) if (f0, l0) != (first, last) => out.push(format!(
                "member {org}: key {} seqs {} -> {}",
                key_label(key),
                seq_range(f0, l0),
                seq_range(first, last)
            )),
            Some(_) => {}
        }
    }
    for key in ka.keys().filter(|k| !kb.contains_key(*k)) {
        out.push(format!("member {org}: key {} dropped", key_label(key)));
    }
    diff_encryption_keys(org, old, new, out);
    let certs = |m: &pb::Member| -> BTreeMap<String, i64> {
        m.certificates
            .iter()
            .map(|c| (c.serial.clone(), c.not_after_unix_ms))
            .collect()
    };
    let (ca, cb) = (certs(old), certs(new));
    for (serial, not_after) in cb.iter().filter(|(s, _)| !ca.contains_key(*s)) {
        out.push(format!(
            "member {org}: certificate {serial} recorded, not after {not_after} (unix ms)"
        ));
    }
    for serial in ca.keys().filter(|s| !cb.contains_key(*s)) {
        out.push(format!(
            "member {org}: certificate {serial} no longer recorded"
        ));
    }
}

/// Encryption keys listed or dropped, and which one is current when that changed.
fn diff_encryption_keys(org: &str, old: &pb::Member, new: &pb::Member, out: &mut Vec<String>) {
    let keys = |m: &pb::Member| -> BTreeSet<Vec<u8>> {
        m.encryption_keys
            .iter()
            .map(|k| k.public_key.clone())
            .collect()
    };
    let (ka, kb) = (keys(old), keys(new));
    for k in new
        .encryption_keys
        .iter()
        .filter(|k| !ka.contains(&k.public_key))
    {
        out.push(format!(
            "member {org}: encryption key {} listed from version {}",
            encryption_key_label(&k.public_key),
            k.since_version
        ));
    }
    for k in old
        .encryption_keys
        .iter()
        .filter(|k| !kb.contains(&k.public_key))
    {
        out.push(format!(
            "member {org}: encryption key {} dropped",
            encryption_key_label(&k.public_key)
        ));
    }
    let marked = |m: &pb::Member| -> BTreeSet<Vec<u8>> {
        (m.encryption_keys.iter())
            .filter(|k| k.reported_compromised)
            .map(|k| k.public_key.clone())
            .collect()
    };
    let already = marked(old);
    for k in marked(new).difference(&already) {
        out.push(format!(
            "member {org}: encryption key {} reported compromised, nothing new sealed to it",
            encryption_key_label(k)
        ));
    }
    let current = |m: &pb::Member| m.encryption_keys.last().map(|k| k.public_key.clone());
    if let (Some(a), Some(b)) = (current(old), current(new)) {
        if a != b {
            out.push(format!(
                "member {org}: current encryption key {} -> {}",
                encryption_key_label(&a),
                encryption_key_label(&b)
            ));
        }
    }
}

fn diff_revoked(a: &[pb::RevokedCert], b: &[pb::RevokedCert], out: &mut Vec<String>) {
    let serials = |rs: &[pb::RevokedCert]| -> BTreeSet<String> {
        rs.iter().map(|r| r.serial.clone()).collect()
    };
    let sa = serials(a);
    for r in b.iter().filter(|r| !sa.contains(&r.serial)) {
        let org = if r.org.is_empty() {
            "no member"
        } else {
            &r.org
        };
        out.push(format!(
            "certificate {} ({org}) revoked: {}",
            r.serial, r.reason
        ));
    }
    let sb = serials(b);
    for serial in sa.difference(&sb) {
        out.push(format!("certificate {serial} no longer revoked"));
    }
}

fn diff_hubs(a: &[pb::HubAddress], b: &[pb::HubAddress], out: &mut Vec<String>) {
    let set = |hs: &[pb::HubAddress]| -> BTreeSet<(String, String)> {
        hs.iter()
            .map(|h| (h.org.clone(), h.address.clone()))
            .collect()
    };
    let (sa, sb) = (set(a), set(b));
    for (org, address) in sb.difference(&sa) {
        out.push(format!("hub address added: {org} at {address}"));
    }
    for (org, address) in sa.difference(&sb) {
        out.push(format!("hub address dropped: {org} at {address}"));
    }
    // The order says which hub publishes the roster (the first active one): a change of it
    // alone moves that role, and must not pass unseen.
    let order = |hs: &[pb::HubAddress]| -> Vec<String> {
        let mut orgs: Vec<String> = Vec::new();
        for h in hs {
            if !orgs.contains(&h.org) {
                orgs.push(h.org.clone());
            }
        }
        orgs
    };
    let (oa, ob) = (order(a), order(b));
    if oa != ob {
        out.push(format!(
            "hub order (the first active hub publishes the roster): {} → {}",
            oa.join(", "),
            ob.join(", ")
        ));
    }
}
