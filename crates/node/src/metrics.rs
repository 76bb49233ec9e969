//! Prometheus metrics and the orchestrator's probes: `/metrics`, `/livez` and `/readyz` on the
//! plain-HTTP listener of `[metrics]`.
//!
//! Two kinds of figures. Events (API calls, refused entries, verify and apply latencies, the
//! store's write time by phase, TLS handshakes refused) are counted as they happen in
//! [`Metrics`], which `NodeState` owns. Facts (links, lag, store size, roster version,
//! certificate ends) are read from the node at each scrape, from the same sources as `status`,
//! so the two never disagree. Labels are bounded: peers and origins are members (the key list
//! or roster bounds them), methods are the API's own, reasons a fixed set; never an indicator
//! value or a caller's name.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use intelmesh_store::ApplyTimings;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::NodeState;

#[path = "metrics_endpoint.rs"]
mod endpoint;
pub use endpoint::Endpoint;

type Shared = axum::extract::State<Arc<NodeState>>;

/// Why an entry was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its signature, header or payload does not verify.
    Verification,
    /// It breaks its origin's chain (a fork, a gap the rules refuse).
    Chain,
    /// Its key may not sign it at that seq (ended by the roster, or a compromise cut).
    KeyEnded,
    /// Issued later than this node's clock allows (its origin's clock, or a relay's, runs
    /// ahead): refused, and the link restarts so it comes again.
    FromFuture,
    /// A peer asked for a payload its TLP view may not carry (a Want answered with nothing).
    Tlp,
    /// A frame or batch over the limits.
    Size,
    /// A sealed entry addressed to this node that it could not open (no key for it, or its
    /// origin sealed something that does not open): kept in the chain, read as a stub.
    Unopened,
}

impl Refusal {
    const ALL: [Refusal; 7] = [
        Refusal::Verification,
        Refusal::Chain,
        Refusal::KeyEnded,
        Refusal::FromFuture,
        Refusal::Tlp,
        Refusal::Size,
        Refusal::Unopened,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::Verification => "verification",
            Refusal::Chain => "chain",
            Refusal::KeyEnded => "key_ended",
            Refusal::FromFuture => "from_future",
            Refusal::Tlp => "tlp",
            Refusal::Size => "size",
            Refusal::Unopened => "unopened",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    pub(crate) method: &'static str,
    pub(crate) code: &'static str,
}

/// A TAXII request: the route's template (bounded by the router), the method, the status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaxiiLabels {
    route: String,
    method: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    certificate: String,
    org: String,
}

/// The event counters and histograms of one node.
#[derive(Debug)]
pub struct Metrics {
    pub(crate) api_calls: Family<CallLabels, Counter>,
    taxii_requests: Family<TaxiiLabels, Counter>,
    refused: Family<ReasonLabel, Counter>,
    verify_seconds: Histogram,
    verified: Counter,
    held_already: Counter,
    audit_unrecorded: Counter,
    apply_seconds: Histogram,
    store_write_seconds: Family<PhaseLabel, Counter<f64, AtomicU64>>,
    handshakes_refused: Family<ListenerLabel, Counter>,
    connections_refused: Family<ListenerLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        // 100 µs to about 6.5 s: a batch of one entry to a full batch on a loaded machine.
        let buckets = || Histogram::new(exponential_buckets(0.0001, 2.0, 17));
        let metrics = Metrics {
            api_calls: Family::default(),
            taxii_requests: Family::default(),
            refused: Family::default(),
            verify_seconds: buckets(),
            verified: Counter::default(),
            held_already: Counter::default(),
            audit_unrecorded: Counter::default(),
            apply_seconds: buckets(),
            store_write_seconds: Family::default(),
            handshakes_refused: Family::default(),
            connections_refused: Family::default(),
        };
        // Every known label set from 0, so `rate()` and alerts see a series from the start
        // rather than none until the first event.
        for why in Refusal::ALL {
            drop(metrics.refused.get_or_create(&ReasonLabel {
                reason: why.label(),
            }));
        }
        for (phase, _) in ApplyTimings::default().phases() {
            drop(
                metrics
                    .store_write_seconds
                    .get_or_create(&PhaseLabel { phase }),
            );
        }
        for listener in ["federation", "api", "taxii", "console"] {
            drop(
                metrics
                    .handshakes_refused
                    .get_or_create(&ListenerLabel { listener }),
            );
        }
        for listener in ["federation", "api"] {
            drop(
                metrics
                    .connections_refused
                    .get_or_create(&ListenerLabel { listener }),
            );
        }
        metrics
    }
}

impl Metrics {
    pub fn refused(&self, why: Refusal, n: usize) {
        if n > 0 {
            self.refused
                .get_or_create(&ReasonLabel {
                    reason: why.label(),
                })
                .inc_by(n as u64);
        }
    }

    /// One refusal of a caller who proved no identity left out of the audit trail (past
    /// `audit::ANONYMOUS_REFUSALS_PER_MINUTE`).
    pub fn audit_refusal_unrecorded(&self) {
        self.audit_unrecorded.inc();
    }

    /// One received batch: `verified` entries checked in `took`, `held_already` taken as
    /// duplicates without a check.
    pub fn verified_batch(&self, took: Duration, verified: usize, held_already: usize) {
        self.verify_seconds.observe(took.as_secs_f64());
        self.verified.inc_by(verified as u64);
        self.held_already.inc_by(held_already as u64);
    }

    pub fn applied_batch(&self, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
    }

    /// One write to the store (received entries, the node's own, roster changes), by phase.
    pub fn store_written(&self, timings: &ApplyTimings) {
        for (phase, took) in timings.phases() {
            self.store_write_seconds
                .get_or_create(&PhaseLabel { phase })
                .inc_by(took.as_secs_f64());
        }
    }

    /// A TLS handshake refused or timed out on `listener` ("federation", "api", "taxii",
    /// "console").
    pub fn handshake_refused(&self, listener: &'static str) {
        self.handshakes_refused
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    /// A connection on `listener` ("federation", "api") closed after its handshake: its
    /// client certificate held its share of connections, or the listener was full.
    pub fn connection_refused(&self, listener: &'static str) {
        self.connections_refused
            .get_or_create(&ListenerLabel { listener })
            .inc();
    }

    pub(crate) fn api_call(&self, method: &'static str, code: &'static str) {
        self.api_calls
            .get_or_create(&CallLabels { method, code })
            .inc();
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "intelmesh_api_calls",
            "Calls to the node's gRPC API by method and gRPC status code",
            self.api_calls.clone(),
        );
        r.register(
            "intelmesh_taxii_requests",
            "Requests to the TAXII gateway by route, method and HTTP status",
            self.taxii_requests.clone(),
        );
        r.register(
            "intelmesh_entries_refused",
            "Entries refused, by reason: received ones that fail verification, chain or key rules or exceed the size limits, and payloads a peer asked for that its TLP view may not carry",
            self.refused.clone(),
        );
        r.register(
            "intelmesh_verify_duration_seconds",
            "Time to verify one received batch of entries",
            self.verify_seconds.clone(),
        );
        r.register(
            "intelmesh_entries_verified",
            "Received entries whose signatures were checked",
            self.verified.clone(),
        );
        r.register(
            "intelmesh_entries_held_already",
            "Received entries this node held already, byte for byte: taken as duplicates without a signature check",
            self.held_already.clone(),
        );
        r.register(
            "intelmesh_audit_refusals_unrecorded",
            "Refusals of callers who proved no identity left out of the audit trail, past 30 a minute per source or 600 in all",
            self.audit_unrecorded.clone(),
        );
        r.register(
            "intelmesh_apply_duration_seconds",
            "Time to apply one verified batch durably (flush included)",
            self.apply_seconds.clone(),
        );
        r.register(
            "intelmesh_store_write_seconds",
            "Time spent writing to the store, by phase (lock_wait, placing, index_read, index_write, commit); writes run one at a time, so the rate of the sum is the share of time the store was closed to other writers",
            self.store_write_seconds.clone(),
        );
        r.register(
            "intelmesh_tls_handshakes_refused",
            "TLS handshakes refused or timed out, by listener (and connections closed before their handshake because their address had limits.handshakes_per_address under way)",
            self.handshakes_refused.clone(),
        );
        r.register(
            "intelmesh_connections_refused",
            "Connections closed after their TLS handshake because their client certificate already held limits.connections_per_client open connections (or the listener its most), by listener",
            self.connections_refused.clone(),
        );
    }
}

/// The TAXII router's layer: counts each request by its route's template (`other` when no
/// route matched, so paths chosen by callers never become labels), method and status.
pub(crate) async fn count_taxii(
    axum::extract::State(state): Shared,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = matched.map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let method = match *request.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        _ => "other",
    };
    let response = next.run(request).await;
    let code = response.status().as_u16();
    state
        .metrics
        .taxii_requests
        .get_or_create(&TaxiiLabels {
            route,
            method,
            code,
        })
        .inc();
    response
}

/// A gauge family filled from `(label, value)` pairs.
fn gauges<L, V>(values: impl IntoIterator<Item = (L, V)>) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    V: TryInto<i64>,
{
    let family = Family::<L, Gauge>::default();
    for (label, value) in values {
        family
            .get_or_create(&label)
            .set(value.try_into().unwrap_or(i64::MAX));
    }
    family
}

/// A counter family filled from totals kept elsewhere (per-link counts in the peer table).
fn totals<L>(values: impl IntoIterator<Item = (L, u64)>) -> Family<L, Counter>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Counter>::default();
    for (label, value) in values {
        family.get_or_create(&label).inc_by(value);
    }
    family
}

fn gauge(value: impl TryInto<i64>) -> Gauge {
    let g = Gauge::default();
    g.set(value.try_into().unwrap_or(i64::MAX));
    g
}

/// Bytes of the files under `dir` (the store's data directory).
fn size_on_disk(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => size_on_disk(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Every metric of `state`, in the OpenMetrics text format.
pub fn render(state: &NodeState) -> anyhow::Result<String> {
    let status = crate::api::status::status_with(state, crate::api::status::Digest::Withheld)
        .context("reading the store for metrics")?;
    let now = intelmesh_core::now_unix_ms();
    let mut r = Registry::default();
    state.metrics.register(&mut r);
    let peers = &status.peers;
    let peer = |p: &intelmesh_proto::v1::PeerStatus| PeerLabel {
        peer: p.org_id.clone(),
    };
    r.register(
        "intelmesh_peer_up",
        "1 while the link with the peer is up",
        gauges(peers.iter().map(|p| (peer(p), i64::from(p.connected)))),
    );
    r.register(
        "intelmesh_peer_lag_entries",
        "Entries this node holds beyond the peer's last reported vector",
        gauges(peers.iter().map(|p| (peer(p), p.lag))),
    );
    r.register(
        "intelmesh_peer_last_heard_timestamp_seconds",
        "When the peer was last heard from (Unix time)",
        gauges(peers.iter().map(|p| (peer(p), p.last_heard_unix_ms / 1000))),
    );
    r.register(
        "intelmesh_peer_entries_sent",
        "Entries sent to the peer since this node started",
        totals(peers.iter().map(|p| (peer(p), p.entries_sent))),
    );
    r.register(
        "intelmesh_peer_entries_received",
        "Entries received from the peer since this node started",
        totals(peers.iter().map(|p| (peer(p), p.entries_received))),
    );
    let table = state.peers.snapshot();
    r.register(
        "intelmesh_peer_sent_bytes",
        "Protobuf bytes of the frames sent to the peer since this node started",
        totals(table.iter().map(|(o, p)| {
            let label = PeerLabel {
                peer: o.to_string(),
            };
            (label, p.bytes_sent)
        })),
    );
    r.register(
        "intelmesh_peer_received_bytes",
        "Protobuf bytes of the frames received from the peer since this node started",
        totals(table.iter().map(|(o, p)| {
            let label = PeerLabel {
                peer: o.to_string(),
            };
            (label, p.bytes_received)
        })),
    );
    r.register(
        "intelmesh_origin_head_seq",
        "The last seq held of each origin's log",
        gauges(status.vector.iter().map(|(o, s)| {
            let label = OriginLabel { origin: o.clone() };
            (label, *s)
        })),
    );
    r.register(
        "intelmesh_held_entries",
        "Entries waiting for their predecessors",
        gauge(status.held_entries),
    );
    r.register(
        "intelmesh_payloads_owed",
        "Payloads owed: stubs held of entries this node may read, their payload withheld by a relay",
        gauge(status.payloads_owed),
    );
    r.register(
        "intelmesh_unverified_entries",
        "Entries waiting for their signing key to be known",
        gauge(state.unverified.len()),
    );
    r.register(
        "intelmesh_fork_proofs",
        "Fork proofs held (equivocations and signed chain breaks)",
        gauge(status.fork_proofs),
    );
    r.register(
        "intelmesh_flagged_origins",
        "Origins flagged for a fork",
        gauge(status.flagged_origins.len()),
    );
    r.register(
        "intelmesh_indicators",
        "Indicators in the index",
        gauge(state.store.indicator_count()),
    );
    r.register(
        "intelmesh_index_presence_filled",
        "1 once the in-memory filter of held indicators is complete (filled in the background after a start; until then every read of an indicator goes to disk)",
        gauge(i64::from(state.store.presence_filled())),
    );
    r.register(
        "intelmesh_lookup_table_indicators",
        "Indicators in the lookup table (a compact copy of the index lookups read, rebuilt in the background); 0 while lookups read the index alone",
        gauge(state.store.lookup_table_size().unwrap_or(0)),
    );
    r.register_with_unit(
        "intelmesh_store_size",
        "Bytes of the store's files on disk",
        prometheus_client::registry::Unit::Bytes,
        gauge(size_on_disk(&state.cfg.data_dir)),
    );
    r.register(
        "intelmesh_roster_version",
        "The roster version this node follows (0 in static mode)",
        gauge(status.roster_version),
    );
    r.register(
        "intelmesh_roster_conflicts",
        "Members' checkpoints naming another roster at the same version",
        gauge(status.roster_conflicts.len()),
    );
    r.register(
        "intelmesh_roster_ahead_members",
        "Members whose last roster checkpoint names a newer version than this node follows",
        gauge(status.roster_ahead.len()),
    );
    r.register(
        "intelmesh_stale_members",
        "Members whose last roster checkpoint is older than three periods",
        gauge(status.stale_members.len()),
    );
    r.register(
        "intelmesh_certificate_expiry_days",
        "Days until the certificate ends (negative once ended): this node's own and, in roster mode, each other active member's latest",
        gauges(crate::cert_watch::ends_of_state(state).into_iter().map(
            |(certificate, org, not_after)| {
                let days = not_after.saturating_sub(now).div_euclid(86_400_000);
                (CertLabels { certificate, org }, days)
            },
        )),
    );
    r.register(
        "intelmesh_ready",
        "1 while the node is ready (an agency: linked to at least one hub)",
        gauge(i64::from(status.ready)),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r)?;
    Ok(text)
}
