//! Certificate generation (rcgen): federation and service CAs, node and service certificates.
//!
//! Identity lives in a URI SAN, `spiffe://intelmesh/org/<ORG>/node` for a node and
//! `spiffe://intelmesh/org/<ORG>/service/<NAME>` for a local service, so the org a peer claims
//! is the one its CA vouched for. Node certificates also carry the DNS name
//! `<org>.node.intelmesh` that dialers verify, so a node cannot pose as another.

use std::path::Path;

use anyhow::Context;
use intelmesh_core::OrgId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

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

impl Ca {
    /// A new self-signed CA, e.g. "intelmesh federation CA".
    pub fn generate(common_name: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "intelmesh");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
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

    /// Writes `NAME.pem` and `NAME.key` (0600) into `dir`.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<()> {
        write_pem(&dir.join(format!("{name}.pem")), &self.cert_pem, false)?;
        write_pem(&dir.join(format!("{name}.key")), &self.key_pem, true)
    }

    /// A node certificate for `org`: server and client auth, for federation or API serving.
    pub fn issue_node(&self, org: &OrgId) -> anyhow::Result<Issued> {
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
        self.sign(params)
    }

    /// A client certificate for a local service of `org` named `name`.
    pub fn issue_service(&self, org: &OrgId, name: &str) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .subject_alt_names
            .push(SanType::URI(service_uri(org, name).try_into()?));
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{org}/{name}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> anyhow::Result<Issued> {
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

/// Writes a PEM file; private ones are created 0600 from the start.
pub fn write_pem(path: &Path, pem: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    Ok(())
}
