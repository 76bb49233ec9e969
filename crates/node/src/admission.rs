//! Who may hold a link with this node, and for how long: the `[[peer]]` list in static mode,
//! the followed roster in roster mode (members it admits, not suspended, removed or holding a
//! revoked certificate; relay = role hub). A link whose peer a new roster version no longer
//! admits is cut at once, and API callers with a revoked certificate are refused.

use intelmesh_core::OrgId;
use intelmesh_roster::{MemberRole, Presented, Refusal};
use tonic::{Request, Status};

use crate::state::NodeState;

/// Why a certificate that ended at `end_unix_ms` is refused.
pub fn certificate_ended(end_unix_ms: i64) -> String {
    let end = crate::cert_facts::utc_text(end_unix_ms / 1000);
    format!("the certificate ended at {end}: ask for a new one")
}

/// What a peer's certificate (its leaf, DER) says that its link is held against: the serial
/// the roster may revoke, when it starts (a compromise report refuses those issued before it)
/// and when it ends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCert {
    pub serial: Option<String>,
    pub not_before_unix_ms: Option<i64>,
    pub not_after_unix_ms: Option<i64>,
}

impl PeerCert {
    /// Of the certificate `der` (one parse; nothing known of one that does not parse).
    pub fn of_leaf(der: &[u8]) -> PeerCert {
        match crate::cert_facts::cert_facts(der) {
            Ok(facts) => PeerCert {
                serial: Some(facts.serial_hex),
                not_before_unix_ms: Some(facts.not_before_unix_ms),
                not_after_unix_ms: Some(facts.not_after_unix_ms),
            },
            Err(_) => PeerCert::default(),
        }
    }

    /// Of the certificate the caller of a tonic request presented.
    pub fn of_caller<T>(request: &Request<T>) -> PeerCert {
        (request.peer_certs())
            .and_then(|certs| certs.first().map(|leaf| PeerCert::of_leaf(leaf.as_ref())))
            .unwrap_or_default()
    }

    /// What the roster judges of it.
    pub fn presented(&self) -> Presented<'_> {
        Presented {
            serial_hex: self.serial.as_deref(),
            not_before_unix_ms: self.not_before_unix_ms,
        }
    }

    /// Resolves when the certificate ends (never for one whose end is unknown): a link, or a
    /// stream, opened before that must not outlive it, since only handshakes check it.
    pub async fn ended(&self) -> i64 {
        let Some(end) = self.not_after_unix_ms else {
            return std::future::pending().await;
        };
        let left = end.saturating_sub(intelmesh_core::now_unix_ms()).max(0);
        tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
        end
    }
}

/// Whether `peer` (presenting `cert`) may hold a federation link now: whether it relays (a
/// hub) if so, why not otherwise.
pub fn admit_peer(state: &NodeState, peer: &OrgId, cert: &PeerCert) -> Result<bool, Status> {
    match state.roster() {
        None => state.peer_config(peer).map(|p| p.relay).ok_or_else(|| {
            Status::permission_denied(format!("{peer} is not a configured peer of {}", state.org))
        }),
        Some(roster) => roster
            .admits_peer(peer, cert.presented())
            .map(|role| role == MemberRole::Hub)
            .map_err(|refusal| Status::permission_denied(refusal.to_string())),
    }
}

/// Resolves when a roster change means `peer` may no longer hold its link (never in static
/// mode), with why. Woken by the roster's watch channel: no polling.
pub async fn refused_later(state: &NodeState, peer: &OrgId, cert: &PeerCert) -> Refusal {
    let Some(mut changes) = state.roster_changes() else {
        return std::future::pending().await;
    };
    loop {
        let refusal = (changes.borrow_and_update())
            .admits_peer(peer, cert.presented())
            .err();
        if let Some(refusal) = refusal {
            return refusal;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Refuses an API caller whose certificate this node or the roster revoked.
pub fn check_api_caller<T>(state: &NodeState, request: &Request<T>) -> Result<(), Status> {
    match request.peer_certs().and_then(|c| c.first().cloned()) {
        Some(leaf) => match refused_certificate(state, leaf.as_ref()) {
            Some(why) => Err(Status::permission_denied(why)),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// Why a caller presenting the certificate `leaf` (DER) is refused: it has ended (handshakes
/// check that; a connection kept open past it does not), this node's config or the roster
/// revoked its serial, or it
/// names another org the roster shut out (suspended, removed, or its key reported compromised
/// with none open: a node's service CA may certify other orgs' services, which read as their
/// org) or whose key was reported compromised after it was issued. `None` when none of these
/// holds.
pub fn refused_certificate(state: &NodeState, leaf: &[u8]) -> Option<String> {
    let cert = PeerCert::of_leaf(leaf);
    if let Some(end) = cert.not_after_unix_ms {
        if end < intelmesh_core::now_unix_ms() {
            return Some(certificate_ended(end));
        }
    }
    let serial = (cert.serial).map(|s| intelmesh_roster::model::normalize_serial(&s));
    let revoked_here = |s: &String| {
        (state.cfg.revoked_serials.iter()).any(|r| crate::config::revoked_serial(r) == *s)
    };
    if let Some(serial) = serial.as_ref().filter(|s| revoked_here(s)) {
        return Some(format!(
            "certificate {serial} is revoked by this node (revoked_serials in its config): ask for a new certificate"
        ));
    }
    let roster = state.roster()?;
    if let Some(serial) = serial.filter(|s| roster.revoked_serials().contains(s)) {
        return Some(format!(
            "certificate {serial} is revoked in roster version {}: ask for a new certificate",
            roster.version()
        ));
    }
    let org = crate::identity::identity_of(leaf).ok()?.org().clone();
    // This node's own services too: their certificates were on the seized node.
    if roster.issued_before_compromise(&org, cert.not_before_unix_ms) {
        return Some(format!(
            "{org}'s key was reported compromised after this certificate was issued (roster version {}): ask for a new certificate",
            roster.version()
        ));
    }
    if org == state.org {
        return None;
    }
    use intelmesh_roster::model::MemberStatus;
    let status = match roster.member_rules(&org)?.status {
        MemberStatus::Active if roster.compromised_without_key(&org) => {
            "shut out (its key reported compromised, none open)"
        }
        MemberStatus::Active => return None,
        MemberStatus::Suspended => "suspended",
        MemberStatus::Removed => "removed",
    };
    Some(format!(
        "{org} is {status} in roster version {}: its services are not served",
        roster.version()
    ))
}
