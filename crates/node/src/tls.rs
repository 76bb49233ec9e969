//! TLS material: server configs that demand client certificates from one CA, and rustls
//! client configs that present ours and accept only the exact node meant (chain to the CA, the
//! node's DNS name, and the org in its certificate's identity).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use intelmesh_core::OrgId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

use crate::config::ListenerConfig;
use crate::identity::{identity_of, Identity};

/// The protocol both ends must agree on in the handshake (ALPN): gRPC runs on HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// Installs ring as the process's rustls provider; later calls are no-ops. Call before any TLS.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The provider for the configs built here: always ring, whatever the process default is.
fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Whether a client must present a certificate of the listener's client CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCerts {
    /// Accepted and checked when presented; the handler decides what else admits a caller.
    Optional,
    /// The handshake fails without one (no request is ever read).
    Required,
}

/// A gRPC listener's TLS: [`listener_config`] with client certificates required, HTTP/2 only
/// (see `tls_accept`, which adds the handshake deadline).
pub fn server_config(l: &ListenerConfig) -> anyhow::Result<rustls::ServerConfig> {
    listener_config(l, ClientCerts::Required, &[ALPN_H2])
}

/// A listener's TLS: its certificate and key, client certificates checked against its
/// `client_ca` (`clients` says whether one is required), and the protocols offered by ALPN.
/// The certificate chain (PEM) in `path`; a file holding none (a key given for the
/// certificate) is named as such.
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(&read(path, "certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("certificate {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "certificate {} holds no certificate (is it the key?)",
            path.display()
        );
    }
    Ok(certs)
}

pub fn listener_config(
    l: &ListenerConfig,
    clients: ClientCerts,
    alpn: &[&[u8]],
) -> anyhow::Result<rustls::ServerConfig> {
    let certs = certificates(&l.cert)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&l.key, "key")?)
        .with_context(|| format!("key {}", l.key.display()))?;
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(&read(&l.client_ca, "client CA")?) {
        let der = der.with_context(|| format!("client CA {}", l.client_ca.display()))?;
        roots
            .add(der)
            .with_context(|| format!("client CA {}", l.client_ca.display()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring());
    let builder = match clients {
        ClientCerts::Optional => builder.allow_unauthenticated(),
        ClientCerts::Required => builder,
    };
    let verifier = builder.build().context("client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .with_context(|| format!("{} and {}", l.cert.display(), l.key.display()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// How to reach one node over TLS: our certificate, and a verifier that accepts only that
/// node's certificate.
#[derive(Clone)]
pub struct NodeTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The node's DNS name (`<org>.node.intelmesh`), sent as SNI and checked by webpki.
    pub server_name: ServerName<'static>,
    pub expected: OrgId,
    /// What the certificate the node presented in the last handshake says (set by the
    /// connector), so the dialer can hold it against the roster's revocations as the
    /// accepting side does.
    pub presented: Arc<std::sync::Mutex<crate::admission::PeerCert>>,
}

/// A client presenting `cert`/`key` that accepts only a certificate chaining to `server_ca`
/// that names `expected`'s node exactly (see [`ExactNode`]).
pub fn client_for(
    expected: &OrgId,
    server_ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<NodeTls> {
    let ca_pem = read(server_ca, "CA certificate")?;
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(&ca_pem) {
        let der = der.with_context(|| format!("CA certificate {}", server_ca.display()))?;
        roots
            .add(der)
            .with_context(|| format!("CA certificate {}", server_ca.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!(
            "CA certificate {} holds no certificate",
            server_ca.display()
        );
    }
    let chain = certificates(cert)?;
    let private = PrivateKeyDer::from_pem_slice(&read(key, "key")?)
        .with_context(|| format!("key {}", key.display()))?;

    let provider = ring();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the server certificate verifier")?;
    let verifier = ExactNode {
        webpki,
        expected: expected.clone(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, private)
        .with_context(|| format!("certificate {} with key {}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    let server_name =
        ServerName::try_from(crate::pki::node_dns_name(expected)).context("the node's DNS name")?;
    Ok(NodeTls {
        config: Arc::new(config),
        server_name,
        expected: expected.clone(),
        presented: Arc::default(),
    })
}

/// The server presented a valid certificate of the federation, but of another node.
#[derive(Debug, thiserror::Error)]
#[error("reached {reached}, expected {expected}")]
pub struct WrongPeer {
    /// What the certificate certifies, e.g. "a node certifying BR-PF".
    pub reached: String,
    pub expected: OrgId,
}

/// webpki's checks (chain to the CA, validity period, key usage, the node's DNS name), and
/// then the identity: the certificate must name exactly `Identity::Node(expected)`, the same
/// reading the acceptor makes of a client. The DNS name alone would not do: it lowercases the
/// org, so it cannot tell apart orgs that differ only in case.
#[derive(Debug)]
struct ExactNode {
    webpki: Arc<WebPkiServerVerifier>,
    expected: OrgId,
}

impl ExactNode {
    /// Ok if `der` certifies the expected node; otherwise the error the handshake fails with.
    fn check_identity(&self, der: &[u8]) -> Result<(), rustls::Error> {
        let reached = match identity_of(der) {
            Ok(Identity::Node(org)) if org == self.expected => return Ok(()),
            Ok(Identity::Node(org)) => format!("a node certifying {org}"),
            Ok(Identity::Service { org, name }) => {
                format!("a service certificate ({org}/{name}), not a node")
            }
            Ok(Identity::Admin { org, name }) => {
                format!("an admin certificate ({org}/{name}), not a node")
            }
            Err(e) => format!("a certificate naming no node ({e})"),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(WrongPeer {
                reached,
                expected: self.expected.clone(),
            })),
        )))
    }
}

impl ServerCertVerifier for ExactNode {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => self.check_identity(end_entity).map(|()| verified),
            // webpki checks the name after the chain: the certificate is the federation's, so
            // saying whom it certifies is more use than "not valid for name".
            Err(rustls::Error::InvalidCertificate(
                e @ (CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. }),
            )) => Err(self
                .check_identity(end_entity)
                .err()
                .unwrap_or(rustls::Error::InvalidCertificate(e))),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Ca;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("pem")
            .to_vec()
    }

    fn verifier(ca: &Ca, expected: &OrgId) -> ExactNode {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(der(ca.cert_pem())))
            .expect("CA");
        ExactNode {
            webpki: WebPkiServerVerifier::builder_with_provider(Arc::new(roots), ring())
                .build()
                .expect("verifier"),
            expected: expected.clone(),
        }
    }

    fn verify(v: &ExactNode, cert_pem: &str, name: &OrgId) -> Result<(), String> {
        let name = ServerName::try_from(crate::pki::node_dns_name(name)).expect("name");
        v.verify_server_cert(
            &CertificateDer::from(der(cert_pem)),
            &[],
            &name,
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(o))) => {
                o.to_string()
            }
            other => other.to_string(),
        })
    }

    fn org(s: &str) -> OrgId {
        OrgId::parse(s).expect("org")
    }

    #[test]
    fn only_the_expected_node_passes() {
        let ca = Ca::generate(&crate::pki::CaRole::Federation).unwrap();
        let hub = org("SG-IGCI");
        let v = verifier(&ca, &hub);
        assert_eq!(
            verify(&v, &ca.issue_node(&hub).unwrap().cert_pem, &hub),
            Ok(())
        );

        // Another member's valid certificate: its name does not match either, but the error
        // says whom the dialer reached.
        let br = ca.issue_node(&org("BR-PF")).unwrap();
        assert_eq!(
            verify(&v, &br.cert_pem, &hub),
            Err("reached a node certifying BR-PF, expected SG-IGCI".into())
        );

        // A service certificate of the expected org is not its node (webpki already refuses
        // it: it is not for server authentication).
        let svc = ca.issue_service(&hub, "soc").unwrap();
        let err = verify(&v, &svc.cert_pem, &hub).unwrap_err();
        assert!(err.contains("extended key usage"), "{err}");

        // Another CA's certificate for the expected node fails the chain, before any name.
        let rogue = Ca::generate_named(&crate::pki::CaRole::Federation, "rogue CA").unwrap();
        let err = verify(&v, &rogue.issue_node(&hub).unwrap().cert_pem, &hub).unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }
}
