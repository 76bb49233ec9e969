//! Dialing configured peers: connect over mutual TLS to exactly the peer configured (see
//! [`crate::connect`]), run the link, and on failure log why (WARN) and retry with exponential
//! backoff and jitter. A restarted peer resumes from the vector in its hello.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_proto::v1::federation_client::FederationClient;
use intelmesh_roster::Roster;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::link::run_link;
use super::link_error_line;
use crate::config::Role;
use crate::connect::{error_line, node_channel, ChannelOptions};
use crate::state::NodeState;
use crate::tls::client_for;

/// Spawns one dialer per peer with a `dial` address (static mode), or the task that dials the
/// roster's hubs (roster mode); they run until the node stops.
pub fn dial_peers(state: &Arc<NodeState>) -> Vec<tokio::task::JoinHandle<()>> {
    if state.roster().is_some() {
        return vec![tokio::spawn(dial_hubs(Arc::clone(state)))];
    }
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
                addr.to_string(),
                p.relay,
            )))
        })
        .collect()
}

/// The hubs this node dials under `roster`: every active hub with an address, except itself;
/// a hub dials only the hubs whose org sorts after its own, so two hubs hold one link.
fn hubs_to_dial(state: &NodeState, roster: &Roster) -> BTreeMap<OrgId, String> {
    let hub = state.cfg.role == Role::Hub;
    roster
        .hubs()
        .into_iter()
        .filter_map(|h| Some((OrgId::parse(&h.org).ok()?, h.address.clone())))
        .filter(|(org, _)| *org != state.org && (!hub || *org > state.org))
        .collect()
}

/// Roster mode: keeps one dialer per hub of the followed roster, adding and ending dialers as
/// roster versions change the hubs.
async fn dial_hubs(state: Arc<NodeState>) {
    let Some(mut changes) = state.roster_changes() else {
        return;
    };
    let mut dialers: BTreeMap<OrgId, (String, AbortOnDrop)> = BTreeMap::new();
    loop {
        let roster = Arc::clone(&changes.borrow_and_update());
        let wanted = hubs_to_dial(&state, &roster);
        let gone: Vec<OrgId> = dialers
            .iter()
            .filter(|(org, (addr, _))| wanted.get(*org) != Some(addr))
            .map(|(org, _)| org.clone())
            .collect();
        for org in gone {
            // The dialer's link (if up) is marked down as its task is dropped, which is waited
            // for: a new dialer for the same hub (a new address) would otherwise find it still
            // up. An inbound link with the same peer is not touched.
            if let Some((_, mut task)) = dialers.remove(&org) {
                task.0.abort();
                let _ = (&mut task.0).await;
            }
            state.peers.not_dialed(
                &org,
                format!(
                    "not dialed: no longer a hub at this address in roster version {}",
                    roster.version()
                ),
            );
        }
        for (org, addr) in wanted {
            if dialers.contains_key(&org) {
                continue;
            }
            tracing::info!(hub = %org, %addr, version = roster.version(), "dialing a hub of the roster");
            // Listed in status from now on, up or not: with two hubs an operator must see the
            // one that is down, not only the one that works.
            state.peers.update(&org, |s| {
                if !s.connected {
                    s.address = addr.clone();
                }
            });
            let task = tokio::spawn(dial_loop(
                Arc::clone(&state),
                org.clone(),
                addr.clone(),
                true,
            ));
            dialers.insert(org, (addr, AbortOnDrop(task)));
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = state.stopped() => return,
        }
    }
}

/// Ends a dialer when it is dropped (its hub left the roster, or the dial set task ended).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn dial_loop(state: Arc<NodeState>, peer: OrgId, addr: String, relay: bool) {
    let limits = state.cfg.limits.clone();
    let mut backoff = Duration::from_millis(limits.backoff_min_ms);
    let max = Duration::from_millis(limits.backoff_max_ms);
    loop {
        let started = Instant::now();
        match dial_once(&state, &peer, &addr, relay).await {
            Ok(()) => tracing::warn!(%peer, %addr, "link down: the peer closed it; redialing"),
            Err(Failed::ShutDown(reason)) => {
                if state.is_stopping() {
                    return;
                }
                tracing::warn!(%peer, %addr, %reason, "link down: the peer stopped; redialing");
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
    address: &str,
    relay: bool,
) -> Result<(), Failed> {
    let addr = resolve(address).await?;
    let f = &state.cfg.federation;
    let within = state.cfg.limits.connect_timeout();
    // One deadline for the whole set-up: TCP, TLS (in the connector) and the stream opening.
    let deadline = tokio::time::Instant::now() + within;
    let tls = client_for(peer, &f.client_ca, &f.cert, &f.key).map_err(|e| format!("{e:#}"))?;
    let options = ChannelOptions {
        deadline: within,
        window: Some(state.cfg.limits.flow_window()),
    };
    let presented = std::sync::Arc::clone(&tls.presented);
    let channel = node_channel(addr, tls, options)
        .await
        .map_err(|e| error_line(&e))?;
    // The accepting side checks our certificate against the roster; we check theirs (a
    // revoked hub certificate in other hands must not be dialled into).
    let cert = presented.lock().unwrap_or_else(|p| p.into_inner()).clone();
    crate::admission::admit_peer(state, peer, &cert)
        .map_err(|s| Failed::Error(format!("{peer} at {addr}: {}", s.message())))?;
    let max = state.cfg.limits.max_message_bytes;
    let mut client = FederationClient::new(channel)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let (tx, rx) = mpsc::channel(state.cfg.limits.peer_queue_frames);
    // The request stream carries frames only; errors we would report end the stream instead.
    let (shut_out, cut) = super::link::ShutOut::new();
    let outbound =
        futures::StreamExt::take_until(ReceiverStream::new(rx).map_while(Result::ok), cut);
    let Some(up) = super::link::LinkUp::open(state, peer, addr.to_string(), relay) else {
        return Err(format!("a link with {peer} is already up").into());
    };
    let result = async {
        let response = tokio::time::timeout_at(deadline, client.sync(outbound))
            .await
            .map_err(|_| format!("{peer} at {addr} did not open the link within {within:?}"))?
            .map_err(|s| Failed::Error(error_line(&s)))?;
        // The peer answered the stream: it took the link.
        up.established();
        let linked = run_link(
            Arc::clone(state),
            peer.clone(),
            relay,
            cert,
            response.into_inner(),
            tx,
        )
        .await;
        shut_out.after(&linked);
        linked.map_err(|e| {
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
    up.end(line);
    result
}

/// The first address `address` (`host:port`) names.
async fn resolve(address: &str) -> Result<SocketAddr, Failed> {
    if let Ok(addr) = address.parse() {
        return Ok(addr);
    }
    let mut found = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
    found
        .next()
        .ok_or_else(|| Failed::Error(format!("{address} resolves to no address")))
}
