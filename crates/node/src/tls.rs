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
