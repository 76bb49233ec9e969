//! The TAXII 2.1 gateway: HTTPS on its own listener, served by the node process, over the
//! same store, views and publishing path as the gRPC API.
//!
//! This module binds the listener, served by the shared HTTPS loop of [`crate::https`] (the API
//! listener's certificate; a client certificate from the API's client CA is optional, basic
//! credentials are the alternative). `http` decodes requests and encodes answers around the plain
//! functions of `read` and `write`; the protocol's own rules are `intelmesh_interop::taxii`.

mod answer;
mod audited;
mod auth;
mod body;
mod busy;
pub mod config;
mod http;
pub mod read;
mod segments;
mod statuses;
mod throttle;
pub mod write;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use config::{hash_password, random_password, Permission, TaxiiConfig, TaxiiUser};

use crate::https::{tls_config, ClientCerts, HttpsServer};
use crate::state::NodeState;

/// A bound gateway, ready to serve: the shared HTTPS loop ([`crate::https`]) with client
/// certificates of the API's client CA accepted but not required.
pub struct Gateway(HttpsServer);

impl Gateway {
    /// Binds `[taxii] listen` and prepares TLS; fails with the setting at fault.
    pub async fn bind(
        state: &Arc<NodeState>,
        cfg: &TaxiiConfig,
        tokens: Arc<crate::token::TokenKey>,
    ) -> anyhow::Result<Gateway> {
        let tls = tls_config(&state.cfg.api, ClientCerts::Optional)?;
        Ok(Gateway(
            HttpsServer::bind(
                "taxii",
                "taxii.listen",
                cfg.listen,
                tls,
                http::router(Arc::clone(state), cfg.clone(), tokens),
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
