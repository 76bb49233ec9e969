//! Dialing configured peers: connect over mutual TLS to exactly the peer configured (see
//! [`crate::connect`]), run the link, and on failure log why (WARN) and retry with exponential
//! backoff and jitter. A restarted peer resumes from the vector in its hello.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_proto::v1::federation_client::FederationClient;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::link::run_link;
use super::link_error_line;
use crate::connect::{error_line, node_channel, ChannelOptions};
use crate::state::NodeState;
use crate::tls::client_for;

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
        match dial_once(&state, &peer, addr, relay).await {
            Ok(()) => tracing::info!(%peer, %addr, "peer closed the link; redialing"),
            Err(Failed::ShutDown(reason)) => {
                if state.is_stopping() {
                    return;
                }
                tracing::info!(%peer, %addr, %reason, "peer stopped; redialing");
                state.peers.update(&peer, |s| s.last_error = reason);
            }
            Err(Failed::Error(error)) => {
                tracing::warn!(%peer, %addr, %error, "link down; redialing");
                // A link that ended was recorded by `disconnect`; this also covers dials that
                // never got that far.
                state.peers.update(&peer, |s| s.last_error = error);
            }
        }
        // A link that lived a while was healthy: start the backoff over.
        if started.elapsed() > max {
            backoff = Duration::from_millis(limits.backoff_min_ms);
        }
        let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 2);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(max);
    }
}

/// Why a dial or the link over it ended, as one line ([`error_line`]) for the log and the peer's
/// `last_error`.
enum Failed {
    /// One of the two nodes is stopping: an orderly end.
    ShutDown(String),
    Error(String),
}

impl From<String> for Failed {
    fn from(line: String) -> Failed {
        Failed::Error(line)
    }
}

/// One connection and the link over it.
async fn dial_once(
    state: &Arc<NodeState>,
    peer: &OrgId,
    addr: SocketAddr,
    relay: bool,
) -> Result<(), Failed> {
    let f = &state.cfg.federation;
    let within = state.cfg.limits.connect_timeout();
    // One deadline for the whole set-up: TCP, TLS (in the connector) and the stream opening.
    let deadline = tokio::time::Instant::now() + within;
    let tls = client_for(peer, &f.client_ca, &f.cert, &f.key).map_err(|e| format!("{e:#}"))?;
    let options = ChannelOptions {
        deadline: within,
        window: Some(state.cfg.limits.flow_window()),
    };
    let channel = node_channel(addr, tls, options)
        .await
        .map_err(|e| error_line(&e))?;
    let max = state.cfg.limits.max_message_bytes;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (tx, rx) = mpsc::channel(state.cfg.limits.peer_queue_frames);
    // The request stream carries frames only; errors we would report end the stream instead.
    let outbound = ReceiverStream::new(rx).map_while(Result::ok);
    if !state.peers.connect(peer, addr.to_string()) {
        return Err(format!("a link with {peer} is already up").into());
    }
    let result = async {
        let response = tokio::time::timeout_at(deadline, client.sync(outbound))
            .await
            .map_err(|_| format!("{peer} at {addr} did not open the link within {within:?}"))?
            .map_err(|s| Failed::Error(error_line(&s)))?;
        run_link(
            Arc::clone(state),
            peer.clone(),
            relay,
            response.into_inner(),
            tx,
        )
        .await
        .map_err(|e| {
            let line = link_error_line(&e);
            if e.is_shutdown() {
                Failed::ShutDown(line)
            } else {
                Failed::Error(line)
            }
        })
    }
    .await;
    let line = match &result {
        Err(Failed::ShutDown(l) | Failed::Error(l)) => Some(l.clone()),
        Ok(()) => None,
    };
    state.peers.disconnect(peer, line);
    result
}
