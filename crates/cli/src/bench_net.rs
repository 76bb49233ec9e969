//! `intelmesh bench propagate` and `intelmesh bench catchup`: real nodes in this process
//! (`intelmesh_node::start`), provisioned in a temp dir, talking mutual-TLS gRPC on 127.0.0.1.
//! Each prints human lines (unless `--json`) and ends with one JSON line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use intelmesh_core::verify::{verify_batch_parallel, VerifyConfig};
use intelmesh_core::{Distribution, Head, OrgId, Signer, StaticKeys, Tlp};
use intelmesh_node::config::{Limits, Role};
use intelmesh_node::provision::{free_loopback_addr, provision, Federation, NodeSpec};
use intelmesh_node::{NodeState, RunningNode};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_store::{DiskStore, Store, StoreConfig};
use prost::Message;
use rayon::prelude::*;

use super::sample_upsert;
use super::sys::cpu_seconds;

/// How long a bench waits for links to come up or for data to arrive before it gives up.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// A fresh directory for a bench's stores, inside `dir` (created if missing) when given, named
/// `intelmesh-bench-…` (not hidden: a bench may keep it).
pub(crate) fn bench_dir(dir: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let named = tempfile::Builder::new().prefix("intelmesh-bench-").clone();
    match dir {
        Some(d) => std::fs::create_dir_all(d)
            .and_then(|()| named.tempdir_in(d))
            .with_context(|| format!("creating a bench directory in {}", d.display())),
        None => named.tempdir().context("creating the bench directory"),
    }
}

/// A hub (`HUB`) and `agencies` agencies (`AGENCY-001`, ...) on free loopback ports.
pub(crate) fn hub_and_agencies(agencies: usize) -> anyhow::Result<Vec<NodeSpec>> {
    hubs_and_agencies(1, agencies)
}

/// `hubs` hubs (`HUB` if one, else `HUB-1`, `HUB-2`, ...) and `agencies` agencies
/// (`AGENCY-001`, ...) on free loopback ports, hubs first.
pub(crate) fn hubs_and_agencies(hubs: usize, agencies: usize) -> anyhow::Result<Vec<NodeSpec>> {
    let hub_names: Vec<String> = match hubs {
        1 => vec!["HUB".to_string()],
        _ => (1..=hubs).map(|i| format!("HUB-{i}")).collect(),
    };
    let agency_names = (1..=agencies).map(|i| format!("AGENCY-{i:03}"));
    let roles = std::iter::repeat_n(Role::Hub, hubs).chain(std::iter::repeat(Role::Agency));
    hub_names
        .into_iter()
        .chain(agency_names)
        .zip(roles)
        .map(|(name, role)| {
            Ok(NodeSpec {
                org: org(&name)?,
                role,
                federation: free_loopback_addr()?,
                api: free_loopback_addr()?,
                taxii: None,
            })
        })
        .collect()
}

pub(crate) fn org(name: &str) -> anyhow::Result<OrgId> {
    OrgId::parse(name).with_context(|| format!("bench org id {name}"))
}

/// Adds the public keys of `signers` to the key registry file at `registry`: members whose
/// entries the bench signs itself, with no node of their own.
/// The key list file of a provisioned (static-mode) node.
pub(crate) fn provisioned_keys(cfg: &intelmesh_node::NodeConfig) -> anyhow::Result<&Path> {
    cfg.keys
        .as_deref()
        .context("a provisioned node has a key list file")
}

pub(crate) fn add_members(registry: &Path, signers: &[Signer]) -> anyhow::Result<()> {
    let mut text = std::fs::read_to_string(registry)
        .with_context(|| format!("reading the key registry {}", registry.display()))?;
    let public: Vec<_> = signers
        .iter()
        .map(|s| (s.org().clone(), s.verifying_key()))
        .collect();
    text.push_str(&intelmesh_node::keys::registry_toml(
        public.iter().map(|(o, k)| (o, k)),
    ));
    std::fs::write(registry, text)
        .with_context(|| format!("writing the key registry {}", registry.display()))
}

pub(crate) async fn start_all(
    fed: &Federation,
    orgs: &[OrgId],
) -> anyhow::Result<Vec<RunningNode>> {
    let mut running = Vec::with_capacity(orgs.len());
    for o in orgs {
        let node = intelmesh_node::start(fed.nodes[o].config.clone())
            .await
            .with_context(|| format!("starting node {o}"))?;
        running.push(node);
    }
    Ok(running)
}

/// Waits until every node has a link up with each of its configured peers.
async fn links_up(nodes: &[RunningNode]) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let down: Vec<String> = nodes
            .iter()
            .flat_map(|n| {
                n.state()
                    .peers
                    .snapshot()
                    .into_iter()
                    .filter(|(_, p)| !p.connected)
                    .map(move |(o, _)| format!("{}→{o}", n.org()))
            })
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        if start.elapsed() > PATIENCE {
            bail!("links still down after {PATIENCE:?}: {down:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn shutdown(nodes: Vec<RunningNode>) {
    for n in nodes {
        n.shutdown().await;
    }
}

/// Options of `bench propagate`.
pub struct PropagateOpts {
    /// Agencies besides the hub.
    pub agencies: usize,
    pub rate: u64,
    pub secs: u64,
    pub batch: usize,
    pub json: bool,
}

/// Submits at one agency at a steady rate through `Indicators.Submit` and measures, per entry,
/// the time from the submit call to its durable arrival at every other node.
pub fn propagate(o: PropagateOpts) -> anyhow::Result<()> {
    if o.agencies < 2 {
        bail!("--nodes must be at least 2 (agencies besides the hub: one submits, one receives)");
    }
    if o.rate == 0 || o.secs == 0 || o.batch == 0 {
        bail!("--rate, --secs and --batch must be at least 1");
    }
    runtime()?.block_on(propagate_async(o))
}

/// When each node's head of the submitting origin moved, as (new head, instant).
type Arrivals = Vec<(u64, Instant)>;

async fn propagate_async(o: PropagateOpts) -> anyhow::Result<()> {
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };
    let tmp = bench_dir(None)?;
    let specs = hub_and_agencies(o.agencies)?;
    let links = intelmesh_node::provision::star_links(&specs);
    let fed = provision(tmp.path(), &specs, &links, &Limits::default())?;
    let orgs: Vec<OrgId> = specs.iter().map(|s| s.org.clone()).collect();
    let nodes = start_all(&fed, &orgs).await?;
    links_up(&nodes).await?;
    let source = &nodes[1];
    let origin = source.org().clone();
    say(format!(
        "{} nodes (hub + {} agencies) up over mutual TLS on 127.0.0.1; submitting at {origin}",
        nodes.len(),
        o.agencies
    ));

    // Watchers: each other node records when its head of `origin` moved.
    let (target_tx, target_rx) = tokio::sync::watch::channel(u64::MAX);
    let watchers: Vec<_> = nodes
        .iter()
        .filter(|n| n.org() != &origin)
        .map(|n| {
            let state = Arc::clone(n.state());
            tokio::spawn(watch_head(state, origin.clone(), target_rx.clone()))
        })
        .collect();

    let p = &fed.nodes[&origin];
    let channel = intelmesh_node::client::api_channel(
        source.api_addr,
        &origin,
        &p.api_ca,
        &p.client_cert,
        &p.client_key,
    )
    .await?;
    let client = IndicatorsClient::new(channel);
    let total_calls = (o.rate * o.secs).div_ceil(o.batch as u64);
    let tick = Duration::from_secs_f64(o.batch as f64 / o.rate as f64);
    say(format!(
        "path: Indicators.Submit (gRPC API) → {origin} → hub → every agency; {} calls of {} every {:.1} ms",
        total_calls,
        o.batch,
        tick.as_secs_f64() * 1e3
    ));
    // Open loop: each call runs in its own task so a slow call does not hold back the pace.
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = tokio::task::JoinSet::new();
    let started = Instant::now();
    let cpu = cpu_seconds();
    for call in 0..total_calls {
        interval.tick().await;
        let mut client = client.clone();
        let request = submit_request(call, o.batch);
        calls.spawn(async move {
            let t = Instant::now();
            let r = client.submit(request).await;
            (t, t.elapsed(), r)
        });
    }
    let mut submitted: Vec<(Instant, u64)> = Vec::new();
    let mut submit_ms = Vec::new();
    while let Some(r) = calls.join_next().await {
        let (t, took, r) = r.context("a submit task failed")?;
        let response = r.map_err(|s| anyhow::anyhow!("Submit: {:?}: {}", s.code(), s.message()))?;
        submit_ms.push(took.as_secs_f64() * 1e3);
        submitted.extend(response.into_inner().assigned.iter().map(|a| (t, a.seq)));
    }
    let submit_secs = started.elapsed().as_secs_f64();
    let last = submitted.iter().map(|(_, s)| *s).max().unwrap_or(0);
    target_tx.send_replace(last);

    let mut arrivals: Vec<Arrivals> = Vec::new();
    for w in watchers {
        arrivals.push(w.await.context("a watcher failed")??);
    }
    let cpu = cpu_seconds() - cpu;
    let mut latencies: Vec<f64> = submitted
        .iter()
        .map(|(t, seq)| {
            let everywhere = arrivals
                .iter()
                .map(|a| arrival(a, *seq))
                .max()
                .flatten()
                .unwrap_or(*t);
            everywhere.saturating_duration_since(*t).as_secs_f64() * 1e3
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    submit_ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
    );
    say(format!(
        "{} entries submitted in {submit_secs:.1}s ({:.0}/s); Submit call p50 {:.2} ms, p99 {:.2} ms",
        submitted.len(),
        submitted.len() as f64 / submit_secs,
        percentile(&submit_ms, 0.50),
        percentile(&submit_ms, 0.99)
    ));
    say(format!(
        "submit call → durable at all {} other nodes: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms",
        nodes.len() - 1
    ));
    say(format!(
        "CPU (all nodes and the client, this process): {cpu:.1}s, {:.0} µs per submitted entry",
        cpu * 1e6 / submitted.len().max(1) as f64
    ));
    shutdown(nodes).await;
    out!(
        "{}",
        serde_json::json!({
            "bench": "propagate",
            "agencies": o.agencies,
            "nodes": o.agencies + 1,
            "path": "grpc_submit",
            "count": submitted.len(),
            "rate": (submitted.len() as f64 / submit_secs).round(),
            "p50_ms": round2(p50),
            "p99_ms": round2(p99),
            "max_ms": round2(max),
            "cpu_us_per_entry": (cpu * 1e6 / submitted.len().max(1) as f64).round(),
        })
    );
    Ok(())
}

pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `q` in 0..=1 of sorted values (nearest rank).
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// When the head first reached `seq`.
fn arrival(a: &Arrivals, seq: u64) -> Option<Instant> {
    let i = a.partition_point(|(head, _)| *head < seq);
    a.get(i).map(|(_, t)| *t)
}

/// Records each move of `state`'s head of `origin` until it reaches the target.
async fn watch_head(
    state: Arc<NodeState>,
    origin: OrgId,
    mut target: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Arrivals> {
    let mut changes = state.subscribe();
    let mut out: Arrivals = Vec::new();
    let mut last = 0;
    let mut idle_since = Instant::now();
    loop {
        changes.borrow_and_update();
        let head = state.store.head(&origin)?.map_or(0, |h| h.seq);
        if head > last {
            out.push((head, Instant::now()));
            last = head;
            idle_since = Instant::now();
        }
        if head >= *target.borrow() {
            return Ok(out);
        }
        if idle_since.elapsed() > PATIENCE {
            bail!("{} stuck at {origin}#{head} for {PATIENCE:?}", state.org);
        }
        tokio::select! {
            r = changes.changed() => r.context("node stopped")?,
            r = target.changed() => r.context("bench ended")?,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn submit_request(call: u64, batch: usize) -> pb::SubmitRequest {
    let submissions = (0..batch as u64)
        .map(|i| pb::Submission {
            r#type: pb::IndicatorType::Domain as i32,
            value: format!("c2-{call}-{i}.propagate.example"),
            distribution: Some(pb::Distribution {
                tlp: pb::Tlp::Green as i32,
                recipients: vec![],
            }),
            body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
                confidence: 80,
                valid_from_unix_ms: 1_700_000_000_000,
                tags: vec!["bench".into()],
                threat_types: vec!["c2".into()],
                description: "observed beaconing in incident response".into(),
                ..Default::default()
            })),
        })
        .collect();
    pb::SubmitRequest {
        submissions,
        ..Default::default()
    }
}

/// Options of `bench catchup`.
pub struct CatchupOpts {
    pub missing: usize,
    pub origins: usize,
    pub batch: usize,
    pub dir: Option<PathBuf>,
    pub json: bool,
}

/// Entries signed and applied per round while filling the source store (bounds memory).
const FILL_ROUND: usize = 65_536;

/// A source node holding `missing` entries from several origins; an empty node linked to it;
/// the time until the empty node's vector equals the source's, and the bytes that took.
pub fn catchup(o: CatchupOpts) -> anyhow::Result<()> {
    if o.origins == 0 || o.missing < o.origins {
        bail!("--missing must be at least --origins, and --origins at least 1");
    }
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    runtime()?.block_on(catchup_async(o))
}

async fn catchup_async(o: CatchupOpts) -> anyhow::Result<()> {
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };
    let tmp = bench_dir(o.dir.as_deref())?;
    let (source, fresh) = (org("SOURCE")?, org("FRESH")?);
    let specs = [(&source, Role::Hub), (&fresh, Role::Agency)]
        .into_iter()
        .map(|(org, role)| {
            Ok(NodeSpec {
                org: org.clone(),
                role,
                federation: free_loopback_addr()?,
                api: free_loopback_addr()?,
                taxii: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let limits = Limits {
        max_batch_entries: o.batch,
        ..Limits::default()
    };
    let fed = provision(
        tmp.path(),
        &specs,
        &[(fresh.clone(), source.clone())],
        &limits,
    )?;

    // The origins whose logs the source holds, added to the federation's key registry.
    let signers: Vec<Signer> = (0..o.origins)
        .map(|i| Ok(Signer::generate(org(&format!("ORIGIN-{i:02}"))?)))
        .collect::<anyhow::Result<_>>()?;
    add_members(provisioned_keys(&fed.nodes[&source].config)?, &signers)?;

    let t = Instant::now();
    let data_dir = fed.nodes[&source].config.data_dir.clone();
    let entry_bytes = tokio::task::spawn_blocking({
        let missing = o.missing;
        move || fill(&data_dir, &signers, missing)
    })
    .await??;
    say(format!(
        "source store filled: {} entries from {} origins, {:.1} MiB encoded, in {:.1}s",
        o.missing,
        o.origins,
        entry_bytes as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    ));

    let src = start_all(&fed, std::slice::from_ref(&source)).await?;
    let want = src[0].state().store.vector()?;
    let t = Instant::now();
    let cpu = cpu_seconds();
    let dst = start_all(&fed, std::slice::from_ref(&fresh)).await?;
    let mut last_report = Instant::now();
    loop {
        let have = dst[0].state().store.vector()?;
        if have == want {
            break;
        }
        if t.elapsed() > PATIENCE * 10 {
            bail!("catch-up incomplete after {:?}: {have:?}", t.elapsed());
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            let got: u64 = have.values().sum();
            say(format!(
                "  {:>5.1}s: {got} entries ({:.0}/s)",
                t.elapsed().as_secs_f64(),
                got as f64 / t.elapsed().as_secs_f64()
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let link = dst[0]
        .state()
        .peers
        .snapshot()
        .remove(&source)
        .context("the fresh node has no link state for the source")?;
    let rate = o.missing as f64 / secs;
    let ratio = link.bytes_received as f64 / entry_bytes as f64;
    say(format!(
        "caught up {} entries in {secs:.2}s: {rate:.0} entries/s (batches of up to {})",
        o.missing, o.batch
    ));
    say(format!(
        "CPU (both nodes, this process): {cpu:.1}s, {:.1} µs per entry, {:.2} of {} cores busy on average",
        cpu * 1e6 / o.missing as f64,
        cpu / secs,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    ));
    say(format!(
        "received {:.1} MiB of gRPC messages (protobuf-encoded SyncFrames, without gRPC/HTTP2/TLS framing) for {:.1} MiB of entries: ratio {ratio:.3}",
        link.bytes_received as f64 / (1 << 20) as f64,
        entry_bytes as f64 / (1 << 20) as f64,
    ));
    shutdown(dst).await;
    shutdown(src).await;
    out!(
        "{}",
        serde_json::json!({
            "bench": "catchup",
            "missing": o.missing,
            "origins": o.origins,
            "batch": o.batch,
            "secs": (secs * 1000.0).round() / 1000.0,
            "rate": rate.round(),
            "wire_bytes": link.bytes_received,
            "entry_bytes": entry_bytes,
            "wire_bytes_ratio": (ratio * 1000.0).round() / 1000.0,
            "cpu_us_per_entry": (cpu * 1e7 / o.missing as f64).round() / 10.0,
        })
    );
    Ok(())
}

/// Signs `missing` upserts spread over `signers` (each origin's chain on its own core) and
/// applies them to the store at `data_dir`, a round at a time. Returns their encoded size.
fn fill(data_dir: &Path, signers: &[Signer], missing: usize) -> anyhow::Result<u64> {
    // A small page cache: this store is written once, sequentially, then closed.
    let store = DiskStore::open(StoreConfig {
        cache_bytes: 32 << 20,
        ..StoreConfig::new(data_dir)
    })?;
    let mut keys = StaticKeys::default();
    for s in signers {
        keys.insert(s.org().clone(), s.verifying_key());
    }
    let dist = Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    };
    let n = signers.len();
    let mut heads: Vec<Option<Head>> = vec![None; n];
    let mut done = 0;
    let mut bytes = 0u64;
    while done < missing {
        let round = FILL_ROUND.min(missing - done);
        let now = intelmesh_core::now_unix_ms();
        let signed: Vec<(Vec<pb::SignedEntry>, Option<Head>)> = signers
            .par_iter()
            .zip(heads.par_iter())
            .enumerate()
            .map(|(i, (signer, head))| {
                let count = round / n + usize::from(i < round % n);
                let mut head = *head;
                let entries = (0..count)
                    .map(|_| {
                        let k = head.map_or(1, |h| h.seq + 1) as usize;
                        let payload = sample_upsert((k * n + i) as u64);
                        let (e, next) = signer.sign_next(head, now, &dist, &payload);
                        head = Some(next);
                        e
                    })
                    .collect();
                (entries, head)
            })
            .collect();
        let mut raws = Vec::with_capacity(round);
        for (i, (entries, head)) in signed.into_iter().enumerate() {
            heads[i] = head;
            raws.extend(entries);
        }
        bytes += raws.iter().map(|e| e.encoded_len() as u64).sum::<u64>();
        let cfg = VerifyConfig::at(now);
        let verified =
            verify_batch_parallel(raws, &keys, &cfg, intelmesh_node::state::VERIFY_CHUNK)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .context("a generated entry does not verify")?;
        let appended = store.apply(verified)?.appended();
        if appended != round {
            bail!("only {appended} of {round} generated entries were appended");
        }
        done += round;
    }
    Ok(bytes)
}
