//! The HTTPS serving loop shared by the node's web listeners (the TAXII gateway and the hub
//! console): TLS with the API listener's certificate, client certificates checked against the
//! API's client CA (optional or required), HTTP/1.1 and HTTP/2, a handshake deadline, a cap
//! on open connections and a graceful stop.
//!
//! Each request carries the [`Connection`] it came on (the client's leaf certificate), as an
//! axum extension, so handlers can tell who is calling.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::ListenerConfig;
use crate::state::NodeState;

/// How long open connections get to finish their requests once the node stops.
const DRAIN: Duration = Duration::from_secs(5);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 512;

pub use crate::tls::ClientCerts;

/// What the TLS handshake told about the caller.
#[derive(Clone)]
pub struct Connection {
    /// The client's leaf certificate (DER), when it presented one.
    pub leaf: Option<Arc<Vec<u8>>>,
    /// The current request's note for the audit trail (set per request by an audit layer).
    pub note: crate::audit::Noted,
}

/// TLS with the API listener's certificate and key, client certificates of its client CA,
/// HTTP/2 or HTTP/1.1.
pub fn tls_config(
    api: &ListenerConfig,
    clients: ClientCerts,
) -> anyhow::Result<rustls::ServerConfig> {
    crate::tls::listener_config(api, clients, &[crate::tls::ALPN_H2, b"http/1.1"])
}

/// A bound HTTPS listener, ready to serve.
pub struct HttpsServer {
    /// Names the listener in logs ("TAXII", "console").
    name: &'static str,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    /// For the handshake deadline and the count of refused handshakes.
    state: Arc<NodeState>,
}

impl HttpsServer {
    /// Binds `listen` (`setting` names it in the error) to serve `router` over `tls`.
    pub async fn bind(
        name: &'static str,
        setting: &str,
        listen: SocketAddr,
        tls: rustls::ServerConfig,
        router: axum::Router,
        state: &Arc<NodeState>,
    ) -> anyhow::Result<HttpsServer> {
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {setting} {listen}"))?;
        Ok(HttpsServer {
            name,
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            router,
            state: Arc::clone(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stopped` turns true, then lets open requests finish (for [`DRAIN`]).
    pub async fn serve(self, mut stopped: watch::Receiver<bool>) {
        let name = self.name;
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
                    tracing::warn!(error = %e, "{name} listener could not accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if connections.len() >= MAX_CONNECTIONS {
                tracing::warn!(%peer, "{name} connection refused: {MAX_CONNECTIONS} already open");
                continue;
            }
            let _ = tcp.set_nodelay(true);
            let (acceptor, router, state) = (
                self.acceptor.clone(),
                self.router.clone(),
                Arc::clone(&self.state),
            );
            let deadline = state.cfg.limits.connect_timeout();
            let stopped = stopped.clone();
            connections.spawn(async move {
                let Some(tls) =
                    crate::tls_accept::handshake(&state, &acceptor, tcp, peer, deadline, name)
                        .await
                else {
                    return;
                };
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let service = router.layer(axum::Extension(Connection {
                    leaf: leaf.map(Arc::new),
                    note: Default::default(),
                }));
                serve_connection(name, tls, service, stopped).await;
            });
        }
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            connections.abort_all();
        }
    }
}

async fn serve_connection(
    name: &'static str,
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
                tracing::debug!(error = %e, "{name} connection ended");
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
