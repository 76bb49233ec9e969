//! Certificate generation (rcgen): federation and service CAs, node, service and admin
//! certificates, each with a real validity period and a random serial.
//!
//! Identity lives in a URI SAN, `spiffe://intelmesh/org/<ORG>/node` for a node,
//! `spiffe://intelmesh/org/<ORG>/service/<NAME>` for a local service and
//! `spiffe://intelmesh/org/<ORG>/admin/<NAME>` for a hub operator, so the org a peer claims
//! is the one its CA vouched for. Node certificates also carry the DNS name
//! `<org>.node.intelmesh` that dialers verify, so a node cannot pose as another.

use std::path::Path;

use anyhow::Context;
use intelmesh_core::OrgId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::cert_facts::unix_now_secs;

/// What a CA vouches for. Written into its certificate as a URI SAN
/// (`spiffe://intelmesh/ca/federation`, `spiffe://intelmesh/ca/service/<ORG>`), so that a CA
/// file given in the other's place is caught before the node starts (`crate::preflight`):
/// with the federation CA as `api.client_ca`, any member's node could call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaRole {
    /// The federation's CA: it certifies every member's node for the federation listeners.
    Federation,
    /// A member's service CA: its node's API certificate and the services that call that API.
    Service(OrgId),
}

impl CaRole {
    pub fn uri(&self) -> String {
        match self {
            CaRole::Federation => format!("{CA_URI_PREFIX}federation"),
            CaRole::Service(org) => format!("{CA_URI_PREFIX}service/{org}"),
        }
    }

    /// Reads a role from a URI SAN; `None` for URIs that are not CA roles.
    pub fn from_uri(uri: &str) -> Option<CaRole> {
        match uri.strip_prefix(CA_URI_PREFIX)? {
            "federation" => Some(CaRole::Federation),
            rest => OrgId::parse(rest.strip_prefix("service/")?)
                .ok()
                .map(CaRole::Service),
        }
    }

    fn default_name(&self) -> String {
        match self {
            CaRole::Federation => "intelmesh federation CA".to_string(),
            CaRole::Service(org) => format!("{org} service CA"),
        }
    }
}

impl std::fmt::Display for CaRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaRole::Federation => f.write_str("the federation CA"),
            CaRole::Service(org) => write!(f, "the service CA of {org}"),
        }
    }
}

const CA_URI_PREFIX: &str = "spiffe://intelmesh/ca/";

/// Days a node, service or admin certificate is valid unless the issuer says otherwise.
pub const DEFAULT_LEAF_DAYS: u32 = 365;
/// Most days a member's node certificate from a bundle is valid (as public TLS certificates
/// are bounded): one admin alone issues bundles, and a certificate issued in other hands must
/// not outlive a year of renewals; a revocation names serials, not keys.
pub const MAX_BUNDLE_DAYS: u32 = 397;
/// Days a CA certificate is valid: ten years, since replacing a CA means re-issuing everything.
pub const CA_DAYS: u32 = 3650;
/// How far back a certificate's validity starts, so a verifier whose clock runs a little behind
/// the issuer's accepts it at once. The roster's compromise cut-off counts on it.
const BACKDATE_SECS: i64 = intelmesh_roster::model::CERT_BACKDATE_MS / 1000;

/// The period a certificate is valid for, from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub days: u32,
    /// Seconds instead of days, for certificates that must end while a test watches.
    seconds: Option<u32>,
}

impl Validity {
    pub fn days(days: u32) -> Validity {
        Validity {
            days,
            seconds: None,
        }
    }

    /// A certificate that ends `seconds` from now (what happens to connections open when a
    /// certificate ends is tested with it; operators issue for days).
    pub fn seconds(seconds: u32) -> Validity {
        Validity {
            days: 0,
            seconds: Some(seconds),
        }
    }

    fn apply(&self, params: &mut CertificateParams) -> anyhow::Result<()> {
        if let Some(seconds) = self.seconds {
            let now = unix_now_secs();
            params.not_before = asn1_time(now - BACKDATE_SECS)?.to_datetime();
            params.not_after = asn1_time(now + i64::from(seconds))?.to_datetime();
            params.serial_number = Some(random_serial());
            return Ok(());
        }
        if self.days == 0 {
            anyhow::bail!("a certificate must be valid for at least one day (--days)");
        }
        if self.days > CA_DAYS {
            anyhow::bail!(
                "a certificate may be valid for at most {CA_DAYS} days (a CA's ten years), not {} (--days)",
                self.days
            );
        }
        let now = unix_now_secs();
        params.not_before = asn1_time(now - BACKDATE_SECS)?.to_datetime();
        params.not_after = asn1_time(now + i64::from(self.days) * 86_400)?.to_datetime();
        params.serial_number = Some(random_serial());
        Ok(())
    }
}

impl Default for Validity {
    fn default() -> Validity {
        Validity::days(DEFAULT_LEAF_DAYS)
    }
}

/// Whether the certificate `cert_pem` certifies the key of `key_pem` (a PEM private key): a
/// certificate installed beside a key it does not match would fail every handshake.
pub fn cert_matches_key(cert_pem: &str, key_pem: &str) -> anyhow::Result<bool> {
    let key = KeyPair::from_pem(key_pem).context("not a PEM private key")?;
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("certificate does not parse: {e}"))?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// Through x509-parser's time type, which converts to the one rcgen takes.
fn asn1_time(unix_secs: i64) -> anyhow::Result<x509_parser::time::ASN1Time> {
    x509_parser::time::ASN1Time::from_timestamp(unix_secs)
        .map_err(|e| anyhow::anyhow!("certificate time {unix_secs}: {e}"))
}

/// 16 random bytes, positive: serials must differ even for one key certified twice (a renewal
/// from the same request), or revoking one would revoke both.
fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // High bit clear (DER integers are signed) and the next one set, so every serial has
    // exactly 16 bytes and 32 hex digits: no leading zero for tools to drop or keep.
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    rcgen::SerialNumber::from_slice(&bytes)
}

/// A certificate authority able to issue certificates.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    key_pem: String,
}

/// A certificate and its private key, PEM encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A node's key pair and its request to have the public half certified, PEM encoded.
pub struct Requested {
    pub csr_pem: String,
    pub key_pem: String,
}

/// A new node key pair for `org` and a certificate request for it. The member keeps the key;
/// the CA holder signs the request ([`Ca::sign_node_request`]), so the key never travels.
pub fn request_node(org: &OrgId) -> anyhow::Result<Requested> {
    let key = KeyPair::generate()?;
    let csr = node_params(org)?.serialize_request(&key)?;
    Ok(Requested {
        csr_pem: csr.pem()?,
        key_pem: key.serialize_pem(),
    })
}

fn node_params(org: &OrgId) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(vec![node_dns_name(org), "localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::URI(node_uri(org).try_into()?));
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    params
        .distinguished_name
        .push(DnType::CommonName, org.as_str());
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}

impl Ca {
    /// A new self-signed CA for `role`, named after it.
    pub fn generate(role: &CaRole) -> anyhow::Result<Ca> {
        Ca::generate_named(role, &role.default_name())
    }

    /// A new self-signed CA for `role`, with the common name `common_name`.
    pub fn generate_named(role: &CaRole, common_name: &str) -> anyhow::Result<Ca> {
        Ca::generate_with(Some(role), common_name)
    }

    /// A new self-signed CA that records no role (as CAs made before roles were recorded):
    /// `run --check` can then only compare it with the other CA file, not name its role.
    pub fn generate_unmarked(common_name: &str) -> anyhow::Result<Ca> {
        Ca::generate_with(None, common_name)
    }

    fn generate_with(role: Option<&CaRole>, common_name: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        if let Some(role) = role {
            params
                .subject_alt_names
                .push(SanType::URI(role.uri().try_into()?));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "intelmesh");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Validity::days(CA_DAYS).apply(&mut params)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            key_pem,
        })
    }

    /// Loads a CA written by [`Ca::write`].
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Ca> {
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("reading CA certificate {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("reading CA key {}", key.display()))?;
        let key_pair = KeyPair::from_pem(&key_pem).context("CA key is not a PEM key pair")?;
        // Certificates signed by another key would not chain to the CA every peer trusts.
        let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("CA certificate {} is not PEM: {e}", cert.display()))?;
        let parsed = block.parse_x509().map_err(|e| {
            anyhow::anyhow!("CA certificate {} does not parse: {e}", cert.display())
        })?;
        if parsed.public_key().subject_public_key.data.as_ref()
            != rcgen::PublicKeyData::der_bytes(&key_pair)
        {
            anyhow::bail!(
                "CA key {} is not the key of CA certificate {}: give the key made with that certificate",
                key.display(),
                cert.display()
            );
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key_pair)
            .context("CA certificate does not parse")?;
        Ok(Ca {
            cert_pem,
            issuer,
            key_pem,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `NAME.key` (0600, never over an existing file: a CA key replaced is every
    /// certificate it issued orphaned) and `NAME.pem` into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        crate::keys::write_secret(&dir.join(format!("{name}.key")), self.key_pem.as_bytes())?;
        write_pem(&dir.join(format!("{name}.pem")), &self.cert_pem, false)
    }

    /// A node certificate for `org`, valid for [`DEFAULT_LEAF_DAYS`]: server and client auth,
    /// for federation or API serving.
    pub fn issue_node(&self, org: &OrgId) -> anyhow::Result<Issued> {
        self.issue_node_for(org, Validity::default())
    }

    /// A node certificate for `org` valid for `validity`.
    pub fn issue_node_for(&self, org: &OrgId, validity: Validity) -> anyhow::Result<Issued> {
        self.sign(node_params(org)?, validity)
    }

    /// Certifies the key of a node's request ([`request_node`]) as a node of `org`. What the
    /// certificate says comes from `org`, the CA holder's decision, never from the request: only
    /// its public key is used. A request made for another org is refused as a likely mix-up.
    pub fn sign_node_request(
        &self,
        org: &OrgId,
        csr_pem: &str,
        validity: Validity,
    ) -> anyhow::Result<String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .context("not a certificate request signed by its own key (PEM)")?;
        let asked = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .map(dn_text);
        if asked.as_deref() != Some(org.as_str()) {
            anyhow::bail!(
                "the request is for {}, not {org}",
                asked.unwrap_or_else(|| "no org (it has no common name)".into())
            );
        }
        let mut params = node_params(org)?;
        validity.apply(&mut params)?;
        Ok(params.signed_by(&csr.public_key, &self.issuer)?.pem())
    }

    /// A client certificate for a local service of `org` named `name`, valid for
    /// [`DEFAULT_LEAF_DAYS`].
    pub fn issue_service(&self, org: &OrgId, name: &str) -> anyhow::Result<Issued> {
        self.issue_service_for(org, name, Validity::default())
    }

    /// A client certificate for a local service of `org` named `name`, valid for `validity`.
    pub fn issue_service_for(
        &self,
        org: &OrgId,
        name: &str,
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        check_leaf_name(name)?;
        self.sign(client_params(&service_uri(org, name), org, name)?, validity)
    }

    /// A client certificate for hub operator `name` of `org`: it may call the hub's `Admin`
    /// service and nothing else (issued by the hub's service CA, so only that hub accepts it).
    pub fn issue_admin(
        &self,
        org: &OrgId,
        name: &str,
        validity: Validity,
    ) -> anyhow::Result<Issued> {
        check_leaf_name(name)?;
        self.sign(client_params(&admin_uri(org, name), org, name)?, validity)
    }

    fn sign(&self, mut params: CertificateParams, validity: Validity) -> anyhow::Result<Issued> {
        validity.apply(&mut params)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `NAME.pem` and `NAME.key` (0600) into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        write_pem(&dir.join(format!("{name}.pem")), &self.cert_pem, false)?;
        write_pem(&dir.join(format!("{name}.key")), &self.key_pem, true)
    }
}

fn client_params(uri: &str, org: &OrgId, name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .subject_alt_names
        .push(SanType::URI(uri.to_string().try_into()?));
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{org}/{name}"));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// A service or admin name is the last part of its identity URI: one path segment.
fn check_leaf_name(name: &str) -> anyhow::Result<()> {
    if !crate::identity::valid_leaf_name(name) {
        anyhow::bail!("name {name:?}: use 1-63 characters of letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

fn dn_text(v: &DnValue) -> String {
    match v {
        DnValue::Utf8String(s) => s.clone(),
        DnValue::PrintableString(s) => s.as_str().to_string(),
        other => format!("{other:?}"),
    }
}

/// The DNS name a dialer expects in a node's certificate.
pub fn node_dns_name(org: &OrgId) -> String {
    format!(
        "{}.node.intelmesh",
        org.as_str().to_ascii_lowercase().replace('_', "-")
    )
}

pub fn node_uri(org: &OrgId) -> String {
    format!("spiffe://intelmesh/org/{org}/node")
}

pub fn service_uri(org: &OrgId, name: &str) -> String {
    format!("spiffe://intelmesh/org/{org}/service/{name}")
}

pub fn admin_uri(org: &OrgId, name: &str) -> String {
    format!("spiffe://intelmesh/org/{org}/admin/{name}")
}

/// Writes a PEM file; private ones are created 0600 from the start, public ones 0644 whatever
/// the umask (the node's own user reads what root wrote).
pub fn write_pem(path: &Path, pem: &str, private: bool) -> anyhow::Result<()> {
    // Replaced whole: `node join` writes the certificate a node is using over the old one.
    match private {
        true => crate::durable::replace(path, pem.as_bytes(), 0o600)?,
        false => crate::durable::replace_public(path, pem.as_bytes())?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{identity_of, Identity};

    fn der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        p.contents
    }

    fn org(name: &str) -> OrgId {
        OrgId::parse(name).unwrap()
    }

    #[test]
    fn a_signed_request_certifies_the_members_own_key_for_its_org() {
        let ca = Ca::generate(&CaRole::Federation).unwrap();
        let request = request_node(&org("AU-AFP")).unwrap();
        let cert = der(&ca
            .sign_node_request(&org("AU-AFP"), &request.csr_pem, Validity::default())
            .unwrap());
        assert_eq!(identity_of(&cert), Ok(Identity::Node(org("AU-AFP"))));
        let (_, x509) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let key = KeyPair::from_pem(&request.key_pem).unwrap();
        assert_eq!(
            x509.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw(),
            "the certificate holds the key the member kept"
        );
        let ca_der = der(ca.cert_pem());
        let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        assert!(x509.verify_signature(Some(ca_x509.public_key())).is_ok());
    }

    #[test]
    fn requests_for_another_org_damaged_or_not_requests_are_refused() {
        let ca = Ca::generate(&CaRole::Federation).unwrap();
        let request = request_node(&org("AU-AFP")).unwrap();
        let err = ca
            .sign_node_request(&org("BR-PF"), &request.csr_pem, Validity::default())
            .unwrap_err();
        assert_eq!(err.to_string(), "the request is for AU-AFP, not BR-PF");

        // One character of the signed body changed: the request's own signature fails.
        let body_at = request.csr_pem.find('\n').unwrap() + 40;
        let mut damaged = request.csr_pem.clone().into_bytes();
        damaged[body_at] = if damaged[body_at] == b'A' { b'B' } else { b'A' };
        let damaged = String::from_utf8(damaged).unwrap();
        for bad in [damaged.as_str(), "", "not a request", ca.cert_pem()] {
            let err = ca
                .sign_node_request(&org("AU-AFP"), bad, Validity::default())
                .unwrap_err();
            assert!(
                err.to_string().starts_with("not a certificate request"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_ca_loads_only_with_its_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let (one, other) = (
            Ca::generate(&CaRole::Federation).unwrap(),
            Ca::generate(&CaRole::Federation).unwrap(),
        );
        one.write(dir.path(), "one").unwrap();
        other.write(dir.path(), "other").unwrap();
        let path = |name: &str| dir.path().join(name);
        assert!(Ca::load(&path("one.pem"), &path("one.key")).is_ok());
        let err = Ca::load(&path("one.pem"), &path("other.key"))
            .err()
            .expect("another CA's key");
        assert!(
            err.to_string().contains("is not the key of CA certificate"),
            "{err}"
        );
    }
}
