//! An intelmesh node: federation links over mutual-TLS gRPC with TLP-aware routing, and the
//! local API for the agency's services. Thin glue over `intelmesh-core` and `intelmesh-store`:
//! services decode requests, call plain functions, encode answers.

pub mod admin;
pub mod admin_gate;
pub mod admission;
pub mod api;
pub mod api_calls;
pub mod audit;
pub mod call_gate;
pub mod call_slots;
pub mod cert_facts;
mod cert_times;
pub mod cert_watch;
pub mod checkpoint;
pub mod client;
pub mod config;
mod conn_slots;
pub mod connect;
pub mod console;
pub mod cpu_pool;
mod crowding;
pub mod durable;
pub mod encryption_keys;
pub mod federation;
pub mod health;
pub mod https;
pub mod identity;
mod key_end_cut;
pub mod key_list;
pub mod keys;
mod log_gate;
pub mod metrics;
mod metrics_hosts;
mod node_error;
pub mod own_entries;
mod own_mark;
pub mod peer_table;
pub mod pki;
pub mod preflight;
pub mod private_files;
mod probe_gate;
pub mod provision;
pub mod provision_roster;
pub mod read_shares;
mod refused_lately;
mod roster_admission;
pub mod roster_follow;
pub mod rotate_key;
pub mod rotation;
pub mod route;
pub mod sealing;
mod seen_lately;
pub mod state;
pub mod taxii;
pub mod tls;
pub mod tls_accept;
pub mod token;
pub mod unverified;
pub mod wants;
pub mod warninglists;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use intelmesh_core::{OrgId, Signer};
use intelmesh_proto::v1::admin_server::AdminServer;
use intelmesh_proto::v1::federation_server::FederationServer;
use intelmesh_proto::v1::indicators_server::IndicatorsServer;
use intelmesh_proto::v1::node_status_server::NodeStatusServer;
use intelmesh_store::{Arrivals, DiskStore, StoreConfig};
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use config::NodeConfig;
pub use state::NodeState;

/// A node that is serving; stop it with [`RunningNode::shutdown`].
pub struct RunningNode {
    pub federation_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// The TAXII gateway's address, when `[taxii]` configures one.
    pub taxii_addr: Option<SocketAddr>,
    /// The metrics and probes listener's address, when `[metrics]` configures one.
    pub metrics_addr: Option<SocketAddr>,
    /// The hub console's address, when `[console]` configures one.
    pub console_addr: Option<SocketAddr>,
    state: Arc<NodeState>,
    stop: tokio::sync::watch::Sender<bool>,
    /// The two gRPC servers, the TAXII gateway and the metrics listener; they end gracefully once `stop` is set.
    servers: Vec<tokio::task::JoinHandle<()>>,
    dialers: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    pub fn org(&self) -> &OrgId {
        &self.state.org
    }

    /// Whether the node is not stopping and none of its listeners has ended: a listener task
    /// ends only on shutdown, so one that ended otherwise means the node no longer serves.
    pub fn serving(&self) -> bool {
        !*self.stop.borrow() && self.servers.iter().all(|t| !t.is_finished())
    }

    /// Stops listeners, dialers and links, and closes the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.state.stop();
        for t in self.dialers {
            t.abort();
            let _ = t.await;
        }
        // Graceful: the servers send GOAWAY and wait for open calls, which end now that the
        // state is stopping (links and watches watch for it). Connection tasks hold the state,
        // so aborting the servers instead would keep the store open.
        for mut t in self.servers {
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
        // Every call has ended: its record is written and synced before the node is gone.
        self.state.audit().close().await;
        // Links spawned by the server hold the state until they notice the stop; the store
        // closes (and the store releases its lock) when the last holder lets go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&self.state) > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&self.state) > 1 {
            tracing::warn!("node state still in use after shutdown");
        }
    }
}

/// Calls one API connection may have open at once.
const MAX_API_STREAMS: u32 = 128;
/// Streams one federation connection may have open at once: its link's `Sync`, and health or
/// reflection calls beside it.
const MAX_FEDERATION_STREAMS: u32 = 8;
/// Calls a member's certificate may have in flight on the federation listener at once, over
/// all its connections: a link or two, and probes. Without it, 64 connections of 8 health
/// calls each, their bodies trickled and never finished, would hold a message each.
const FEDERATION_CALLS_PER_PEER: usize = 8;
/// Largest health or reflection request: each is a few bytes (a service name, a symbol).
const MAX_PROBE_MESSAGE: usize = 16 * 1024;

/// Opens the store and starts both listeners and the dialers.
pub async fn start(cfg: NodeConfig) -> anyhow::Result<RunningNode> {
    tls::install_crypto_provider();
    cpu_pool::start();
    private_files::restrict_umask();
    private_files::check_key_files(&cfg)?;
    // An expired (or not yet valid) certificate would be served, and refused by every peer.
    preflight::check_certificate_times(&cfg)?;
    let org = cfg.org_id()?;
    let registry = match (&cfg.roster, &cfg.keys) {
        (Some(_), _) => None,
        (None, Some(path)) => Some(keys::load_registry(path)?),
        (None, None) => {
            anyhow::bail!("keys: no key list file and no [roster] section: give one of them")
        }
    };
    let lists = warninglists::load(&cfg.warninglists)?;
    let store_cfg = StoreConfig {
        state_table: cfg.store.state_table(),
        // Only TAXII's collection reads arrival times; a node serving none does not pay for
        // them (two keys per changed record), and gets them once TAXII is enabled.
        arrivals: match cfg.taxii {
            Some(_) => Arrivals::Kept,
            None => Arrivals::NotKept,
        },
        ..StoreConfig::new(&cfg.data_dir).owned_by(org.clone())
    };
    let store = tokio::task::spawn_blocking(move || DiskStore::open(store_cfg))
        .await?
        .with_context(|| format!("opening store in {}", cfg.data_dir.display()))?;
    if cfg.roster.is_some() {
        // A key rotation a stop interrupted is finished before the key is read, with the store
        // open (no other process switches meanwhile) and against the node's own head.
        let files = rotation::RotationFiles::of(&cfg.signing_key);
        rotation::resume(&files, |seq| rotation::signed_after(&store, &org, seq))?;
    }
    let signing_key = keys::load_signing_key(&cfg.signing_key)?;
    let signer = Signer::new(org, signing_key);
    let state = Arc::new(match registry {
        Some(registry) => NodeState::new(cfg, store, registry, signer)
            .context("checking the signing key against the key list")?,
        None => NodeState::following(cfg, store, signer).context("following the roster")?,
    });
    if !lists.is_empty() {
        tracing::info!(lists = lists.len(), "warninglists loaded");
    }
    state.set_warninglists(lists);
    let tokens = Arc::new(
        token::TokenKey::load_or_create(&state.cfg.data_dir)
            .context("the key paging tokens are sealed under")?,
    );
    let trail = audit::AuditLog::open(&state.cfg.audit, &state.cfg.data_dir).await;
    state.set_audit(trail.context("opening the audit trail")?);
    if state.roster().is_some() {
        state
            .publish_genesis_if_needed()
            .await
            .context("publishing the genesis in the roster log")?;
        tokio::spawn(roster_follow::follow_log(Arc::clone(&state)));
        tokio::spawn(checkpoint::publish_periodically(Arc::clone(&state)));
        tokio::spawn(rotate_key::watch(Arc::clone(&state)));
    }
    // In the background: the scan reads the whole log, and nothing waits on it.
    let scanning = Arc::clone(&state);
    tokio::spawn(async move {
        if let Err(e) = wants::find_wants(&scanning).await {
            tracing::warn!(error = %e, "could not look for stubs owed payloads");
        }
    });
    tokio::spawn(wants::refill_periodically(Arc::clone(&state)));
    tokio::spawn(key_list::watch(Arc::clone(&state)));
    tokio::spawn(cert_watch::warn_periodically(Arc::clone(&state)));
    let (stop, stopped) = tokio::sync::watch::channel(false);

    let cfg = &state.cfg;
    let max = cfg.limits.max_message_bytes;
    let fed_listener = TcpListener::bind(cfg.federation.listen)
        .await
        .with_context(|| format!("binding federation.listen {}", cfg.federation.listen))?;
    let api_listener = TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding api.listen {}", cfg.api.listen))?;
    let federation_addr = fed_listener.local_addr()?;
    let api_addr = api_listener.local_addr()?;

    let (health, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service.max_decoding_message_size(MAX_PROBE_MESSAGE);
    tokio::spawn(health::report(Arc::clone(&state), health));
    // Both versions: grpcio's reflection client, Postman, evans and older grpcurl speak only
    // v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(intelmesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(MAX_PROBE_MESSAGE);
    let reflection_v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(MAX_PROBE_MESSAGE);

    let federation = FederationServer::new(federation::FederationService {
        state: Arc::clone(&state),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let fed_server = Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        // A link is one `Sync` stream; tonic leaves HTTP/2's bound unset, and a peer's streams
        // that never end would each hold memory here.
        .max_concurrent_streams(Some(MAX_FEDERATION_STREAMS))
        // A whole frame may be in flight: with HTTP/2's default 64 KiB windows a peer's 8 MiB
        // frame crossed in many round trips, each waiting for this node's link to read on.
        .initial_stream_window_size(Some(cfg.limits.flow_window()))
        .initial_connection_window_size(Some(cfg.limits.flow_window()))
        .layer(call_slots::CallSlots::new(
            FEDERATION_CALLS_PER_PEER,
            "a member's calls at once on the federation listener",
            call_slots::Held::WhileHandled,
        ))
        .layer(probe_gate::gate(Arc::clone(&state)))
        .add_service(health_service.clone())
        .add_service(reflection_v1.clone())
        .add_service(reflection_v1alpha.clone())
        .add_service(federation)
        .serve_with_incoming_shutdown(
            tls_accept::accepted(
                &state,
                fed_listener,
                tls::server_config(&cfg.federation)?,
                cfg.limits.connect_timeout(),
                "federation",
            ),
            wait_stop(stopped.clone()),
        );

    // A request may decode to a few times the message size the node takes.
    intelmesh_proto::api_shape::allow_decoded(cfg.limits.max_message_bytes.saturating_mul(4));
    // One share of the blocking reads per caller across the API's services.
    let api_reads = Arc::new(read_shares::ReadShares::default());
    let api_server = Server::builder()
        // A connection whose client stopped answering is closed (20 s after an unanswered
        // ping), giving its slot back: each client certificate holds only so many.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        // Calls one connection may have open at once (tonic leaves HTTP/2's bound unset).
        .max_concurrent_streams(Some(MAX_API_STREAMS))
        .layer(api_calls::CountCalls::new(Arc::clone(&state)))
        .layer(call_slots::CallSlots::new(
            cfg.limits.calls_per_client,
            "[limits] calls_per_client",
            call_slots::Held::UntilAnswered,
        ))
        .layer(admin_gate::gate(Arc::clone(&state)))
        .layer(probe_gate::gate(Arc::clone(&state)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            IndicatorsServer::new(api::IndicatorsService {
                tokens: Arc::clone(&tokens),
                watches: Default::default(),
                blocking_reads: Arc::clone(&api_reads),
                state: Arc::clone(&state),
            })
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
        )
        .add_service(
            NodeStatusServer::new(api::StatusService {
                state: Arc::clone(&state),
                blocking_reads: api_reads,
            })
            .max_decoding_message_size(max),
        )
        // On every node, so that a call to an agency is refused saying Admin is for hubs
        // (rather than "unimplemented").
        .add_service(
            AdminServer::new(admin::AdminService::new(Arc::clone(&state)))
                .max_decoding_message_size(admin_gate::MAX_ADMIN_REQUEST_BYTES)
                .max_encoding_message_size(max),
        )
        .serve_with_incoming_shutdown(
            tls_accept::accepted(
                &state,
                api_listener,
                tls::server_config(&cfg.api)?,
                cfg.limits.connect_timeout(),
                "api",
            ),
            wait_stop(stopped.clone()),
        );

    let gateway = match &cfg.taxii {
        Some(t) => Some(taxii::Gateway::bind(&state, t, Arc::clone(&tokens)).await?),
        None => None,
    };
    let taxii_addr = gateway.as_ref().map(|g| g.local_addr()).transpose()?;
    let metrics = match &cfg.metrics {
        Some(m) => Some(metrics::Endpoint::bind(&state, m).await?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(|m| m.local_addr()).transpose()?;
    let console = match &cfg.console {
        Some(c) => Some(console::Console::bind(&state, c).await?),
        None => None,
    };
    let console_addr = console.as_ref().map(|c| c.local_addr()).transpose()?;
    let mut servers = vec![
        tokio::spawn(async move {
            if let Err(e) = fed_server.await {
                tracing::error!(error = %e, "federation server failed");
            }
        }),
        tokio::spawn(async move {
            if let Err(e) = api_server.await {
                tracing::error!(error = %e, "API server failed");
            }
        }),
    ];
    if let Some(gateway) = gateway {
        servers.push(tokio::spawn(gateway.serve(stop.subscribe())));
    }
    if let Some(metrics) = metrics {
        servers.push(tokio::spawn(metrics.serve(stop.subscribe())));
    }
    if let Some(console) = console {
        servers.push(tokio::spawn(console.serve(stop.subscribe())));
    }
    let dialers = federation::dial_peers(&state);
    // What did not open when it came (this node's key missing or unreadable then) may open
    // with the keys read now; in the background (it stops when the node does), so many marks
    // never hold the start back.
    state.reopen_sealed_in_background();
    tracing::info!(org = %state.org, %federation_addr, %api_addr, taxii_addr = ?taxii_addr, metrics_addr = ?metrics_addr, console_addr = ?console_addr, "node started");
    Ok(RunningNode {
        federation_addr,
        api_addr,
        taxii_addr,
        metrics_addr,
        console_addr,
        state,
        stop,
        servers,
        dialers,
    })
}

async fn wait_stop(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
