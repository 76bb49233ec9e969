//! Connecting to a node's local API as a service (mutual TLS with a service certificate).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use tonic::transport::{Channel, Endpoint};

/// A channel to `node`'s API at `addr`, presenting `cert`/`key`, trusting `ca`.
pub async fn api_channel(
    addr: SocketAddr,
    node: &OrgId,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Channel> {
    crate::tls::install_crypto_provider();
    let tls = crate::tls::client_config(ca, cert, key, &crate::pki::node_dns_name(node))?;
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?)
}

pub type Indicators = IndicatorsClient<Channel>;
