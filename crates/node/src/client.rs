//! Connecting to a node's local API as a service (mutual TLS with a service certificate).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use tonic::transport::Channel;

/// How long TCP connect and TLS handshake to the API may take together.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);

/// A channel to `node`'s API at `addr`, presenting `cert`/`key`, trusting `ca`. The server must
/// certify exactly `node`'s node identity, as a dialing peer checks ([`crate::connect`]).
pub async fn api_channel(
    addr: SocketAddr,
    node: &OrgId,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<Channel> {
    crate::tls::install_crypto_provider();
    let tls = crate::tls::client_for(node, ca, cert, key)?;
    api_channel_with(addr, tls).await
}

/// [`api_channel`] with the client's TLS config already made (a caller that reports a bad
/// certificate or key apart from a node it cannot reach).
pub async fn api_channel_with(
    addr: SocketAddr,
    tls: crate::tls::NodeTls,
) -> anyhow::Result<Channel> {
    let options = crate::connect::ChannelOptions {
        deadline: CONNECT_DEADLINE,
        window: None,
    };
    Ok(crate::connect::node_channel(addr, tls, options).await?)
}

pub type Indicators = IndicatorsClient<Channel>;
