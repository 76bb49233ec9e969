//! The TAXII 2.1 gateway: HTTPS on its own listener, served by the node process, over the
//! same store, views and publishing path as the gRPC API.
//!
//! This module owns the listener: TLS (the API listener's certificate; a client certificate
//! from the API's client CA is optional, basic credentials are the alternative), HTTP/1.1 and
//! HTTP/2, graceful stop. `http` decodes requests and encodes answers around the plain
//! functions of `read` and `write`; the protocol's own rules are `intelmesh_interop::taxii`.

mod audited;
mod auth;
pub mod config;
mod http;
pub mod read;
pub mod write;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use config::{hash_password, random_password, Permission, TaxiiConfig, TaxiiUser};

use crate::config::ListenerConfig;
use crate::state::NodeState;

/// How long open connections get to finish their requests once the node stops.
const DRAIN: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;

/// The gateway's TLS: the API listener's certificate, client certificates of the API's client
/// CA accepted but not required.
fn tls_config(api: &ListenerConfig) -> anyhow::Result<rustls::ServerConfig> {
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading {what} {}", p.display()))
    };
    let certs = CertificateDer::pem_slice_iter(&read(&api.cert, "api.cert")?)
        .collect::<Result<Vec<_>, _>>()
        .context("api.cert")?;
    let key = PrivateKeyDer::from_pem_slice(&read(&api.key, "api.key")?).context("api.key")?;
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(&read(&api.client_ca, "api.client_ca")?) {
        roots
            .add(der.context("api.client_ca")?)
            .context("api.client_ca")?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("client certificate verifier")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("api.cert and api.key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A bound gateway, ready to serve.
pub struct Gateway {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    handshake_deadline: Duration,
}

impl Gateway {
    /// Binds `[taxii] listen` and prepares TLS; fails with the setting at fault.
    pub async fn bind(state: &Arc<NodeState>, cfg: &TaxiiConfig) -> anyhow::Result<Gateway> {
        let tls = tls_config(&state.cfg.api)?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding taxii.listen {}", cfg.listen))?;
        Ok(Gateway {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            router: http::router(Arc::clone(state), cfg.clone()),
            handshake_deadline: state.cfg.limits.connect_timeout(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stopped` turns true, then lets open requests finish (for [`DRAIN`]).
    pub async fn serve(self, mut stopped: watch::Receiver<bool>) {
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stopping(&mut stopped) => break,
            };
            while connections.try_join_next().is_some() {}
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "TAXII listener could not accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if connections.len() >= MAX_CONNECTIONS {
                tracing::warn!(%peer, "TAXII connection refused: {MAX_CONNECTIONS} already open");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            let (acceptor, router, deadline) = (
                self.acceptor.clone(),
                self.router.clone(),
                self.handshake_deadline,
            );
            let stopped = stopped.clone();
            connections.spawn(async move {
                let tls = match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "TAXII TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "TAXII TLS handshake timed out");
                        return;
                    }
                };
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let service = router.layer(axum::Extension(http::Connection {
                    leaf: leaf.map(Arc::new),
                    note: Default::default(),
                }));
                serve_connection(tls, service, stopped).await;
            });
        }
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            connections.abort_all();
        }
    }
}

async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    service: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "TAXII connection ended");
            }
        }
        _ = stopping(&mut stopped) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Returns once the node stops (at once if it has).
async fn stopping(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
