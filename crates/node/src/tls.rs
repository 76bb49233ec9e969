//! TLS material for tonic: server configs that demand client certificates from one CA, and
//! client configs that present ours and verify the server's name.

use std::path::Path;

use anyhow::Context;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::ListenerConfig;

/// Installs ring as the process's rustls provider; later calls are no-ops. Call before any TLS.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// A listener that accepts only clients whose certificate chains to `client_ca`.
pub fn server_config(l: &ListenerConfig) -> anyhow::Result<ServerTlsConfig> {
    let identity = Identity::from_pem(read(&l.cert, "certificate")?, read(&l.key, "key")?);
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(Certificate::from_pem(read(&l.client_ca, "client CA")?)))
}

/// A client presenting `cert`/`key`, trusting `server_ca`, expecting `server_name`.
pub fn client_config(
    server_ca: &Path,
    cert: &Path,
    key: &Path,
    server_name: &str,
) -> anyhow::Result<ClientTlsConfig> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(server_ca, "CA certificate")?))
        .identity(Identity::from_pem(
            read(cert, "certificate")?,
            read(key, "key")?,
        ))
        .domain_name(server_name))
}

/// A rustls client presenting `cert`/`key` and trusting only `server_ca`, speaking HTTP/2: for
/// connectors that run the handshake themselves (see `client`).
pub fn client_rustls(
    server_ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |path: &Path, what: &str| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_slice_iter(&read(path, what)?)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what} {}: not PEM certificates", path.display()))?;
        anyhow::ensure!(
            !certs.is_empty(),
            "{what} {}: no certificate in it",
            path.display()
        );
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem(server_ca, "CA certificate")? {
        roots
            .add(ca)
            .with_context(|| format!("CA certificate {}", server_ca.display()))?;
    }
    let chain = pem(cert, "certificate")?;
    let private = PrivateKeyDer::from_pem_slice(&read(key, "key")?)
        .with_context(|| format!("key {}: not a PEM private key", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, private)
        .with_context(|| format!("certificate {} and key {}", cert.display(), key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
