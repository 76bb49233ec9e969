//! Dialing configured peers: connect over mutual TLS, run the link, and on failure retry with
//! exponential backoff and jitter. A restarted peer resumes from the vector in its hello.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_proto::v1::federation_client::FederationClient;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::Endpoint;

use super::link::run_link;
use crate::pki::node_dns_name;
use crate::state::NodeState;
use crate::tls::client_config;

/// Spawns one dialer per peer with a `dial` address; they run until the node stops.
pub fn dial_peers(state: &Arc<NodeState>) -> Vec<tokio::task::JoinHandle<()>> {
    state
        .cfg
        .peer
        .iter()
        .filter_map(|p| {
            let addr = p.dial?;
            let org = OrgId::parse(&p.org).ok()?;
            Some(tokio::spawn(dial_loop(
                Arc::clone(state),
                org,
                addr,
                p.relay,
            )))
        })
        .collect()
}

async fn dial_loop(state: Arc<NodeState>, peer: OrgId, addr: SocketAddr, relay: bool) {
    let limits = state.cfg.limits.clone();
    let mut backoff = Duration::from_millis(limits.backoff_min_ms);
    let max = Duration::from_millis(limits.backoff_max_ms);
    loop {
        let started = Instant::now();
        let error = match dial_once(&state, &peer, addr, relay).await {
            Ok(()) => "peer closed the link".to_string(),
            Err(e) => e,
        };
        tracing::info!(%peer, %addr, error = %error, "link down; redialing");
        // A link that lived a while was healthy: start the backoff over.
        if started.elapsed() > max {
            backoff = Duration::from_millis(limits.backoff_min_ms);
        }
        let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(max);
    }
}

async fn dial_once(
    state: &Arc<NodeState>,
    peer: &OrgId,
    addr: SocketAddr,
    relay: bool,
) -> Result<(), String> {
    let f = &state.cfg.federation;
    let tls = client_config(&f.client_ca, &f.cert, &f.key, &node_dns_name(peer))
        .map_err(|e| format!("{e:#}"))?;
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let max = state.cfg.limits.max_message_bytes;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (tx, rx) = mpsc::channel(state.cfg.limits.peer_queue_frames);
    // The request stream carries frames only; errors we would report end the stream instead.
    let outbound = ReceiverStream::new(rx).map_while(Result::ok);
    if !state.peers.connect(peer, addr.to_string()) {
        return Err(format!("a link with {peer} is already up"));
    }
    let result = async {
        let response = client
            .sync(outbound)
            .await
            .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
        run_link(
            Arc::clone(state),
            peer.clone(),
            relay,
            response.into_inner(),
            tx,
        )
        .await
        .map_err(|e| e.to_string())
    }
    .await;
    state.peers.disconnect(peer, result.as_ref().err().cloned());
    result
}
