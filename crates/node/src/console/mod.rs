//! The hub console: a read-only HTTPS page for the hub's operators (admin client certificates
//! of the hub's org, required at the handshake) showing the federation at a glance, a member's
//! detail, the roster history with the admin audit, and the same data as JSON, live-updating.
//!
//! `view` builds the view model from the Admin service's plain functions (`admin::health`,
//! `admin::audit`) and the node's status; `page` renders it as HTML; `http` holds the routes
//! and who is admitted; the listener is the shared loop of [`crate::https`].

pub mod config;
mod http;
pub mod page;
mod recent;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use config::ConsoleConfig;
pub use http::{admit, ConsoleError};

use crate::https::{tls_config, ClientCerts, HttpsServer};
use crate::state::NodeState;

/// A bound console, ready to serve.
pub struct Console(HttpsServer);

impl Console {
    /// Binds `[console] listen`; a client certificate of the API's client CA is required.
    pub async fn bind(state: &Arc<NodeState>, cfg: &ConsoleConfig) -> anyhow::Result<Console> {
        let tls = tls_config(&state.cfg.api, ClientCerts::Required)?;
        Ok(Console(
            HttpsServer::bind(
                "console",
                "console.listen",
                cfg.listen,
                tls,
                http::router(Arc::clone(state)),
                state,
            )
            .await?,
        ))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Serves until `stopped` turns true, then lets open requests finish.
    pub async fn serve(self, stopped: watch::Receiver<bool>) {
        self.0.serve(stopped).await
    }
}
