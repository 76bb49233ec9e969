//! Who is on the other end of a TLS connection: the org and role named in its certificate,
//! and which role each gRPC service requires.

use intelmesh_core::OrgId;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::pki::CaRole;

/// What a certificate says its holder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Node(OrgId),
    Service {
        org: OrgId,
        name: String,
    },
    /// A hub operator (`spiffe://intelmesh/org/<ORG>/admin/<NAME>`), issued by the hub's
    /// service CA.
    Admin {
        org: OrgId,
        name: String,
    },
}

impl Identity {
    pub fn org(&self) -> &OrgId {
        match self {
            Identity::Node(org) | Identity::Service { org, .. } | Identity::Admin { org, .. } => {
                org
            }
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Identity::Node(_) => Role::Node,
            Identity::Service { .. } => Role::Service,
            Identity::Admin { .. } => Role::Admin,
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(org) => write!(f, "the node of {org}"),
            Identity::Service { org, name } => write!(f, "service {org}/{name}"),
            Identity::Admin { org, name } => write!(f, "admin {org}/{name}"),
        }
    }
}

/// The kind of holder a certificate names; each gRPC service admits exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A member's node: `Federation` only.
    Node,
    /// A local service of the node's org: `Indicators` and `NodeStatus` only.
    Service,
    /// A hub operator: `Admin` only, on a hub.
    Admin,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Node => "node",
            Role::Service => "service",
            Role::Admin => "admin",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("certificate does not parse: {0}")]
    Unparsable(String),
    #[error("certificate has no spiffe://intelmesh/org/... URI naming its org")]
    NoIdentity,
    #[error("certificate names an invalid org id: {0}")]
    BadOrg(String),
    #[error("certificate names a service or admin {0:?}: a name is 1-63 letters, digits, '-', '_' or '.'")]
    BadName(String),
}

/// Whether `name` may name a service or an admin: 1-63 of letters, digits, `-`, `_` and `.`.
/// Names are shown and kept beside others (`org/name`, a TAXII user's `user:name`), so none
/// may hold a separator or pass for another kind of caller.
pub fn valid_leaf_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Reads the identity from a DER certificate (the leaf the peer presented).
pub fn identity_of(der: &[u8]) -> Result<Identity, IdentityError> {
    for uri in uri_names(der)? {
        if let Some(id) = parse_uri(&uri)? {
            return Ok(id);
        }
    }
    Err(IdentityError::NoIdentity)
}

/// What a CA certificate says it is for (see [`CaRole`]); `None` for a CA made without the
/// mark (before it existed, or by other tools).
pub fn ca_role_of(der: &[u8]) -> Result<Option<CaRole>, IdentityError> {
    Ok(uri_names(der)?.iter().find_map(|uri| CaRole::from_uri(uri)))
}

/// The URI subject alternative names of a DER certificate.
fn uri_names(der: &[u8]) -> Result<Vec<String>, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

fn parse_uri(uri: &str) -> Result<Option<Identity>, IdentityError> {
    let Some(rest) = uri.strip_prefix("spiffe://intelmesh/org/") else {
        return Ok(None);
    };
    let mut parts = rest.splitn(3, '/');
    let org = parts.next().unwrap_or_default();
    let org = OrgId::parse(org).map_err(|e| IdentityError::BadOrg(e.to_string()))?;
    match (parts.next(), parts.next()) {
        (Some("node"), None) => Ok(Some(Identity::Node(org))),
        (Some("service" | "admin"), Some(name)) if !valid_leaf_name(name) => {
            Err(IdentityError::BadName(name.chars().take(80).collect()))
        }
        (Some("service"), Some(name)) => Ok(Some(Identity::Service {
            org,
            name: name.to_string(),
        })),
        (Some("admin"), Some(name)) => Ok(Some(Identity::Admin {
            org,
            name: name.to_string(),
        })),
        _ => Ok(None),
    }
}

/// The identity of the caller of a tonic request, from its TLS client certificate.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Identity, IdentityError> {
    let certs = request.peer_certs().ok_or(IdentityError::NoCertificate)?;
    let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
    identity_of(leaf.as_ref())
}

/// The caller of `service`, if its certificate has the `needed` role: UNAUTHENTICATED when it
/// names nobody, PERMISSION_DENIED (naming both roles) when it names another role.
pub fn require_role<T>(
    request: &tonic::Request<T>,
    needed: Role,
    service: &str,
) -> Result<Identity, tonic::Status> {
    let id = caller(request).map_err(|e| {
        tonic::Status::unauthenticated(format!(
            "{service} needs a certificate of role {needed}: {e}"
        ))
    })?;
    if id.role() != needed {
        return Err(tonic::Status::permission_denied(format!(
            "{service} needs a certificate of role {needed}; {id} presented one of role {}",
            id.role()
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    fn der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        p.contents
    }

    #[test]
    fn node_and_service_certificates_name_their_org() {
        let ca = Ca::generate(&CaRole::Federation).unwrap();
        let org = OrgId::parse("SG-IGCI").unwrap();
        let node = ca.issue_node(&org).unwrap();
        assert_eq!(
            identity_of(&der(&node.cert_pem)),
            Ok(Identity::Node(org.clone()))
        );
        let svc = ca.issue_service(&org, "soc").unwrap();
        assert_eq!(
            identity_of(&der(&svc.cert_pem)),
            Ok(Identity::Service {
                org: org.clone(),
                name: "soc".into()
            })
        );
        let admin = ca
            .issue_admin(&org, "alice", crate::pki::Validity::default())
            .unwrap();
        let admin_id = identity_of(&der(&admin.cert_pem)).unwrap();
        assert_eq!(
            admin_id,
            Identity::Admin {
                org,
                name: "alice".into()
            }
        );
        assert_eq!(admin_id.role(), Role::Admin);
        assert_eq!(
            identity_of(&der(ca.cert_pem())),
            Err(IdentityError::NoIdentity)
        );
        assert!(matches!(
            identity_of(b"garbage"),
            Err(IdentityError::Unparsable(_))
        ));
    }

    #[test]
    fn a_ca_certificate_says_what_it_is_for_and_leaves_say_nothing() {
        let org = OrgId::parse("SG-IGCI").unwrap();
        for role in [CaRole::Federation, CaRole::Service(org.clone())] {
            let ca = Ca::generate(&role).unwrap();
            assert_eq!(ca_role_of(&der(ca.cert_pem())), Ok(Some(role)));
            let leaf = ca.issue_node(&org).unwrap();
            assert_eq!(ca_role_of(&der(&leaf.cert_pem)), Ok(None));
        }
        assert_eq!(
            CaRole::from_uri("spiffe://intelmesh/ca/service/bad org"),
            None
        );
        assert_eq!(CaRole::from_uri("spiffe://intelmesh/ca/other"), None);
    }

    #[test]
    fn uris_outside_the_scheme_are_ignored_or_refused() {
        assert_eq!(parse_uri("https://example.com/"), Ok(None));
        assert_eq!(parse_uri("spiffe://intelmesh/org/SG-IGCI/other"), Ok(None));
        assert!(matches!(
            parse_uri("spiffe://intelmesh/org/bad org/node"),
            Err(IdentityError::BadOrg(_))
        ));
        // A name that would pass for a TAXII user's (`user:soc`), hold a separator, or be
        // empty names no caller.
        for name in ["user:soc", "a/b", "", "sp ace", &"x".repeat(64)] {
            for role in ["service", "admin"] {
                let uri = format!("spiffe://intelmesh/org/SG-IGCI/{role}/{name}");
                let got = parse_uri(&uri);
                assert!(
                    matches!(got, Err(IdentityError::BadName(_))),
                    "{uri}: {got:?}"
                );
            }
        }
        assert_eq!(
            parse_uri("spiffe://intelmesh/org/SG-IGCI/service/soc-tool_1.b"),
            Ok(Some(Identity::Service {
                org: OrgId::parse("SG-IGCI").unwrap(),
                name: "soc-tool_1.b".into()
            }))
        );
    }
}
