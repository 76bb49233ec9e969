//! `intelmesh bench scale`: a node holding N real-shaped indicators, measured from outside.
//! The node is a child process (`intelmesh run --config`, provisioned as the demo's are); the
//! bench is its peer and fills its store through the node's own ingest path (signed entries
//! from several origins over a mutual-TLS `Federation.Sync` stream, in the node's frame size,
//! signed on all cores while they are sent). Then, in the same run: memory while it serves
//! bulk lookups over its API, disk per byte of entries, ingest rate at full against at empty,
//! and a SIGKILL and restart: time until the API answers and the node federates again, and the
//! restarted process's peak memory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use intelmesh_core::OrgId;
use intelmesh_node::config::Limits;
use intelmesh_node::provision::{loopback_specs, provision, Federation, ProvisionedNode};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use tonic::transport::Channel;

use super::ingest::WINDOW_FRAMES;
use super::load::{sign_streaming, sign_whole, Signed, Stream};
use super::lookup::{self, Found};
use super::net::{self, add_members, org, provisioned_keys, round2};
use super::peer::{self, Credentials, PeerLink, Target};
use super::store_share::{gauge, metrics_text, WriteClock};
use super::sys::{cpu_seconds, dir_bytes, mib, process_cpu_seconds, settle, ProcMem};
use crate::fleet::Fleet;

/// Origins of the load, and of each probe.
const ORIGINS: usize = 16;
/// Probes at empty and at full; the best of each counts (as `bench ingest` takes the best
/// round), so a burst of load from elsewhere on a shared machine does not decide the ratio.
const PROBE_ROUNDS: u64 = 3;
/// Fewest indicators: enough for the probes and a load between them.
pub(crate) const MIN_INDICATORS: u64 = 100_000;
/// How long the node may take to come up (a restart rebuilds an in-memory index from the
/// log: about a minute per ten million entries) or a frame to be answered.
const START_PATIENCE: Duration = Duration::from_secs(600);
/// How long the lookups wait for the node's lookup table to cover its index.
const TABLE_PATIENCE: Duration = Duration::from_secs(120);
/// How often memory is sampled while the node serves lookups or restarts.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Options of `bench scale`.
pub struct ScaleOpts {
    pub indicators: u64,
    pub lookups: usize,
    pub lookup_clients: usize,
    pub dir: Option<PathBuf>,
    pub json: bool,
}

/// Entries per probe: a twenty-fifth of the indicators, within bounds that keep a probe long
/// enough to time (the node verifies four frames ahead of the one it applies: a probe of a
/// few frames never fills that pipeline, and measured half the rate) and the probes a small
/// part of a large load.
fn probe_size(indicators: u64) -> u64 {
    (indicators / 25).clamp(8_000, 100_000)
}

pub fn scale(o: ScaleOpts) -> anyhow::Result<()> {
    if o.indicators < MIN_INDICATORS {
        return Err(crate::usage(format!(
            "--indicators must be at least {MIN_INDICATORS}"
        )));
    }
    if o.lookups == 0 || o.lookup_clients == 0 {
        return Err(crate::usage(
            "--lookups and --lookup-clients must be at least 1",
        ));
    }
    // The node is spawned from this thread (see `Fleet`): the future runs on it.
    net::runtime()?.block_on(scale_async(o))
}

/// The node under measurement and how to reach it (its process is in a [`Fleet`]).
struct Node<'a> {
    fed: &'a Federation,
    me: &'a ProvisionedNode,
    feeder: &'a ProvisionedNode,
    limits: Limits,
}

impl Node<'_> {
    fn org(&self) -> &OrgId {
        &self.me.spec.org
    }

    fn spawn(&self, fleet: &mut Fleet) -> anyhow::Result<u32> {
        let log = self.me.dir.join("node.log");
        fleet.spawn(&self.me.spec.org, &self.me.config_path, &log)
    }

    async fn api(&self) -> anyhow::Result<Channel> {
        intelmesh_node::client::api_channel(
            self.me.spec.api,
            self.org(),
            &self.me.api_ca,
            &self.me.client_cert,
            &self.me.client_key,
        )
        .await
    }

    /// Asks Status until the node answers; an error if its process exits meanwhile.
    async fn status_when_up(
        &self,
        fleet: &mut Fleet,
        since: Instant,
    ) -> anyhow::Result<pb::StatusResponse> {
        loop {
            fleet.check_alive(self.org())?;
            let answer = async {
                let mut client = NodeStatusClient::new(self.api().await?);
                Ok::<_, anyhow::Error>(client.status(pb::StatusRequest {}).await?.into_inner())
            };
            match answer.await {
                Ok(s) => return Ok(s),
                Err(e) if since.elapsed() > START_PATIENCE => {
                    return Err(e.context(format!("no Status answer after {START_PATIENCE:?}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Opens a `Federation.Sync` link as the feeder peer, retrying until the node takes it.
    async fn link(&self, held: &BTreeMap<String, u64>, since: Instant) -> anyhow::Result<PeerLink> {
        let target = Target {
            addr: self.me.spec.federation,
            org: self.org(),
            server_ca: &self.fed.federation_ca,
        };
        let me = Credentials {
            org: &self.feeder.spec.org,
            cert: &self.feeder.config.federation.cert,
            key: &self.feeder.config.federation.key,
        };
        loop {
            match peer::open(&target, &me, self.limits.max_message_bytes, held).await {
                Ok(link) => return Ok(link),
                Err(e) if since.elapsed() > START_PATIENCE => {
                    return Err(e.context(format!("no link after {START_PATIENCE:?}")))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn window(&self) -> usize {
        WINDOW_FRAMES * self.limits.max_batch_entries
    }
}

/// Sends a pre-signed probe and returns its rate (entries per second).
async fn probe(link: &mut PeerLink, signed: Signed, window: usize) -> anyhow::Result<f64> {
    let frames = futures::stream::iter(signed.frames);
    let took = link.feed(frames, &signed.heads, window, |_| ()).await?;
    Ok(signed.entries as f64 / took.as_secs_f64())
}

/// Samples the node's memory until `stop` fires; returns the sample of the highest RSS seen.
fn sample_rss(
    pid: u32,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<ProcMem> {
    tokio::spawn(async move {
        let mut highest = ProcMem::default();
        loop {
            if let Ok(m) = ProcMem::of(pid) {
                if m.rss_kib > highest.rss_kib {
                    highest = m;
                }
            }
            tokio::select! {
                _ = &mut stop => return highest,
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    })
}

async fn scale_async(o: ScaleOpts) -> anyhow::Result<()> {
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };
    let tmp = net::bench_dir(o.dir.as_deref())?;
    let specs = loopback_specs("HUB", &["FEEDER"])?;
    let (hub, feeder) = (org("HUB")?, org("FEEDER")?);
    let defaults = Limits::default();
    // Every lookup client is a connection of the one service certificate, and the feeder's
    // and the probes' come on top.
    let limits = Limits {
        connections_per_client: defaults.connections_per_client.max(o.lookup_clients + 8),
        calls_per_client: defaults.calls_per_client.max(o.lookup_clients + 8),
        handshakes_per_address: defaults.handshakes_per_address.max(o.lookup_clients + 8),
        ..defaults
    };
    // The feeder (this bench) dials; the node only accepts, so it never dials a peer that
    // is not there.
    let fed = provision(
        tmp.path(),
        &specs,
        &[(feeder.clone(), hub.clone())],
        &limits,
    )?;
    let (me, feeder) = (&fed.nodes[&hub], &fed.nodes[&feeder]);
    // The node's metrics, to read how much of each probe its store's writes took.
    let metrics = intelmesh_node::provision::free_loopback_addr()?;
    let mut config = intelmesh_node::config::NodeConfig::load(&me.config_path)?;
    config.metrics = Some(intelmesh_node::config::MetricsConfig {
        listen: metrics,
        hosts: Vec::new(),
    });
    crate::enrol_cmd::write_config(&me.config_path, &config)?;
    let n = o.indicators;
    let p = probe_size(n);
    let rounds = PROBE_ROUNDS;
    let empty = (0..rounds)
        .map(|k| Stream::new(&format!("EMPTY{k}"), ORIGINS, k * p..(k + 1) * p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let load = Stream::new("LOAD", ORIGINS, rounds * p..n - rounds * p)?;
    let full = (0..rounds)
        .map(|k| {
            let start = n - (rounds - k) * p;
            Stream::new(&format!("FULL{k}"), ORIGINS, start..start + p)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for s in empty.iter().chain(&full).chain([&load]) {
        add_members(provisioned_keys(&me.config)?, &s.signers)?;
    }
    let max_bytes = intelmesh_node::federation::batch_bytes(&limits);
    let max_entries = limits.max_batch_entries;

    let t = Instant::now();
    let sign = |s: &Stream| sign_whole(s, max_entries, max_bytes);
    let empty: Vec<Signed> = empty.iter().map(sign).collect::<anyhow::Result<_>>()?;
    let full: Vec<Signed> = full.iter().map(sign).collect::<anyhow::Result<_>>()?;
    say(format!(
        "{n} indicators: {} probes of {p} slots signed in {:.1}s; the other {} slots are signed while they are sent",
        2 * rounds,
        t.elapsed().as_secs_f64(),
        load.slots.end - load.slots.start
    ));
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut entry_bytes = 0;
    for s in empty.iter().chain(&full) {
        expected.extend(s.heads.clone());
        entry_bytes += s.bytes;
    }
    let load_heads = load.heads();
    expected.extend(load_heads.clone());
    // Sent after the restart, from an origin of its own, to see the node federate again: a
    // sighting of a listed indicator.
    let after = intelmesh_core::Signer::generate(org("RESTART")?);
    let (after_restart, _) = after.sign_next(
        None,
        intelmesh_core::now_unix_ms(),
        &super::load::green(),
        &super::shapes::sighting_payload(0)?,
    );
    let after_heads = BTreeMap::from([(after.org().to_string(), 1)]);
    add_members(provisioned_keys(&me.config)?, std::slice::from_ref(&after))?;

    let mut fleet = Fleet::new(false)?;
    let node = Node {
        fed: &fed,
        me,
        feeder,
        limits: limits.clone(),
    };
    let started = Instant::now();
    let pid = node.spawn(&mut fleet)?;
    node.status_when_up(&mut fleet, started).await?;
    say(format!(
        "node {hub}: pid {pid}, `intelmesh run --config {}`; the bench is its peer {} over mutual-TLS Federation.Sync (frames of up to {max_entries} entries, at most {WINDOW_FRAMES} frames ahead of its progress)",
        me.config_path.display(),
        feeder.spec.org
    ));

    // Ingest at empty and the load over one link, as one peer would send; ingest at full over
    // a new one once the node is idle (it drops a link silent for `dead_after`).
    let mut link = node.link(&BTreeMap::new(), Instant::now()).await?;
    let mut sent: BTreeMap<String, u64> = empty.iter().flat_map(|s| s.heads.clone()).collect();
    let mut at_empty = Vec::new();
    let clock = WriteClock::start(metrics).await?;
    for s in empty {
        at_empty.push(probe(&mut link, s, node.window()).await?);
    }
    let writes_empty = clock.share().await?;
    say(format!(
        "ingest at empty: {rounds} probes of {p} pre-signed entries ({ORIGINS} fresh origins each): {} entries/s",
        rates_text(&at_empty)
    ));
    let load_total: u64 = load_heads.values().sum();
    let (rx, signer) = sign_streaming(load, max_entries, max_bytes);
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    let loading = Instant::now();
    let mut last_said = Instant::now();
    let progress = |covered: u64| {
        if last_said.elapsed() >= Duration::from_secs(5) {
            last_said = Instant::now();
            let rss = ProcMem::of(pid).map_or(0.0, |m| mib(m.rss_kib));
            say(format!(
                "  loading: {covered} of {load_total} entries applied ({:.0}/s), node RSS {rss} MiB",
                covered as f64 / loading.elapsed().as_secs_f64()
            ));
        }
    };
    let load_time = link
        .feed(frames, &load_heads, node.window(), progress)
        .await?;
    let done = signer
        .join()
        .map_err(|_| anyhow::anyhow!("the signing thread panicked"))??;
    entry_bytes += done.bytes;
    let load_rate = done.entries as f64 / load_time.as_secs_f64();
    say(format!(
        "loaded {} entries ({} slots; revocations, sightings and second listings included) in {:.1}s: {load_rate:.0} entries/s, signing included",
        done.entries,
        n - 2 * rounds * p,
        load_time.as_secs_f64()
    ));
    // The load leaves the engine flushing and compacting for a while: the probes time ingest
    // into a large store, not the load's leftover work.
    drop(link);
    sent.extend(load_heads.clone());
    let settled = settle(pid, Duration::from_secs(300)).await?;
    say(format!(
        "the node went idle {:.1}s after the load",
        settled.as_secs_f64()
    ));
    let mut link = node.link(&sent, Instant::now()).await?;
    let mut at_full = Vec::new();
    let clock = WriteClock::start(metrics).await?;
    for s in full {
        at_full.push(probe(&mut link, s, node.window()).await?);
    }
    let writes_full = clock.share().await?;
    drop(link);
    let (empty_rate, full_rate) = (best(&at_empty), best(&at_full));
    let ingest_ratio = full_rate / empty_rate;
    say(format!(
        "ingest at full: {rounds} probes of {p}: {} entries/s; best at full / best at empty = {ingest_ratio:.3}",
        rates_text(&at_full)
    ));
    say(format!(
        "the node's store was writing (one write at a time) {writes_empty} of the probes' time at empty, {writes_full} at full"
    ));

    let loaded = ProcMem::of(pid)?;
    let (disk_busy, _) = dir_bytes(&me.config.data_dir)?;
    let disk_ratio_busy = disk_busy as f64 / entry_bytes as f64;
    say(format!(
        "after loading: node RSS {} MiB (peak while loading {} MiB); data dir {:.1} MiB on disk for {:.1} MiB of encoded entries: {disk_ratio_busy:.2}× (before the engine's background merges are done)",
        mib(loaded.rss_kib),
        mib(loaded.hwm_kib),
        disk_busy as f64 / (1 << 20) as f64,
        entry_bytes as f64 / (1 << 20) as f64
    ));

    // Lookups, with memory sampled while the node serves them, once the node is idle and its
    // lookup table covers the index: a store idle for `idle_refresh` (5 s) copies its table
    // again once the writes since its copy are a sixty-fourth of it, as the probes' are, and a
    // copy during the lookups took a core from them (a third of the rate).
    let waiting = Instant::now();
    let (index_len, table_len) = loop {
        settle(pid, Duration::from_secs(300)).await?;
        let gauges = metrics_text(metrics).await?;
        let index_len = gauge(&gauges, "intelmesh_indicators").unwrap_or(0.0);
        let table_len = gauge(&gauges, "intelmesh_lookup_table_indicators").unwrap_or(0.0);
        if table_len >= index_len || waiting.elapsed() > TABLE_PATIENCE {
            break (index_len, table_len);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let idle_before_lookups = waiting.elapsed();
    let table_share = table_len / index_len.max(1.0);
    say(format!(
        "the node was idle, its lookup table copied, {:.1}s after the probes; the table holds {table_len:.0} of the index's {index_len:.0} indicators",
        idle_before_lookups.as_secs_f64()
    ));
    // What the store keeps once its merges are done: an LSM tree holds overwritten and
    // superseded versions until a compaction drops them, so right after the writes it is larger.
    let (disk, apparent) = dir_bytes(&me.config.data_dir)?;
    let disk_ratio = disk as f64 / entry_bytes as f64;
    say(format!(
        "idle: data dir {:.1} MiB on disk ({:.1} MiB apparent): {disk_ratio:.2}× the encoded entries",
        disk as f64 / (1 << 20) as f64,
        apparent as f64 / (1 << 20) as f64,
    ));
    let calls = lookup::calls(o.lookups, n)?;
    let mut clients = Vec::with_capacity(o.lookup_clients);
    for _ in 0..o.lookup_clients {
        clients.push(lookup::LookupClient::new(node.api().await?));
    }
    let warm = lookup::calls(lookup::MAX_LOOKUPS, n)?;
    lookup::run(warm, clients[..1].to_vec()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let sampler = sample_rss(pid, stopped);
    let (cpu, node_cpu) = (cpu_seconds(), process_cpu_seconds(pid)?);
    let (took, found) = lookup::run(calls, clients).await?;
    let client_cpu = cpu_seconds() - cpu;
    // The node's CPU per value: steadier from run to run than the rate, which moves with
    // whatever else the machine's two cores are doing.
    let node_us_per_value = (process_cpu_seconds(pid)? - node_cpu) * 1e6 / o.lookups as f64;
    let _ = stop.send(());
    let steady = sampler.await.context("the memory sampler failed")?;
    let steady_kib = steady.rss_kib;
    let lookup_rate = o.lookups as f64 / took.as_secs_f64();
    say(format!(
        "lookups: {} values ({}) in calls of {}, {} in flight: {lookup_rate:.0} values/s; found {:.1}% of listed, {:.1}% of unlisted, {:.1}% of addresses inside listed blocks; node RSS while serving: up to {} MiB ({} anonymous, {} of mapped files); the bench's own CPU (building calls, reading answers): {:.2} of the {:.1}s; the node's CPU: {node_us_per_value:.2} µs per value",
        o.lookups,
        lookup::MIX_TEXT,
        lookup::MAX_LOOKUPS,
        o.lookup_clients,
        Found::fraction(found.listed) * 100.0,
        Found::fraction(found.unlisted) * 100.0,
        Found::fraction(found.in_block) * 100.0,
        mib(steady_kib),
        mib(steady.anon_kib),
        mib(steady.file_kib),
        client_cpu / took.as_secs_f64(),
        took.as_secs_f64()
    ));

    // SIGKILL and restart: until the API answers and a new entry over a new link is applied.
    fleet.kill(&hub)?;
    let held = expected.clone();
    expected.extend(after_heads.clone());
    entry_bytes += prost::Message::encoded_len(&after_restart) as u64;
    let restarted = Instant::now();
    let pid = node.spawn(&mut fleet)?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let sampler = sample_rss(pid, stopped);
    let api = async {
        node.status_when_up(&mut fleet, restarted).await?;
        Ok::<_, anyhow::Error>(restarted.elapsed())
    };
    let federates = async {
        let mut link = node.link(&held, restarted).await?;
        let frame = futures::stream::iter([vec![after_restart.clone()]]);
        link.feed(frame, &after_heads, node.window(), |_| ())
            .await?;
        Ok::<_, anyhow::Error>(restarted.elapsed())
    };
    let (api_time, federate_time) = futures::try_join!(api, federates)?;
    let restart_time = api_time.max(federate_time);
    let restart_mem = ProcMem::of(pid)?;
    let _ = stop.send(());
    let restart_rss_kib = sampler.await.context("the memory sampler failed")?.rss_kib;
    say(format!(
        "SIGKILL and restart: Status answered after {:.1} ms, a new entry sent over a new link was applied after {:.1} ms; peak RSS of the new process (VmHWM) {} MiB",
        api_time.as_secs_f64() * 1e3,
        federate_time.as_secs_f64() * 1e3,
        mib(restart_mem.hwm_kib.max(restart_rss_kib))
    ));
    let status = node.status_when_up(&mut fleet, Instant::now()).await?;
    let vector: BTreeMap<String, u64> = status.vector.into_iter().collect();
    if vector != expected {
        bail!("after the restart the node's vector differs from what was sent: {vector:?}");
    }
    say("after the restart the node holds every entry sent (its vector matches)".to_string());
    // The node's clean stop writes its index snapshot; kept only with --dir.
    fleet.terminate_all(Duration::from_secs(120)).await;
    if o.dir.is_some() {
        let kept = tmp.keep();
        say(format!(
            "kept the federation and the node's data in {}",
            kept.display()
        ));
    }

    out!(
        "{}",
        serde_json::json!({
            "bench": "scale",
            "indicators": n,
            "entries": expected.values().sum::<u64>(),
            "rss_steady_mib": mib(steady_kib),
            "rss_steady_anon_mib": mib(steady.anon_kib),
            "rss_steady_file_mib": mib(steady.file_kib),
            "rss_peak_restart_mib": mib(restart_mem.hwm_kib.max(restart_rss_kib)),
            "restart_ms": (restart_time.as_secs_f64() * 1e3).round(),
            "lookup_rate": lookup_rate.round(),
            "disk_ratio": round2(disk_ratio),
            "disk_ratio_before_merges": round2(disk_ratio_busy),
            "ingest_ratio_large_vs_empty": (ingest_ratio * 1000.0).round() / 1000.0,
            "ingest_method": format!("best of {rounds} probes of {p} pre-signed entries at empty (before the load) and at full (after it, once the node is idle, over a new link), same frames and origin count"),
            "idle_after_load_ms": settled.as_millis() as u64,
            "idle_before_lookups_ms": idle_before_lookups.as_millis() as u64,
            "lookup_table_share": (table_share * 1000.0).round() / 1000.0,
            "ingest_rate_empty": empty_rate.round(),
            "ingest_rate_large": full_rate.round(),
            "load_rate": load_rate.round(),
            "store_write_share_empty": writes_empty.json(),
            "store_write_share_full": writes_full.json(),
            "rss_after_load_mib": mib(loaded.rss_kib),
            "rss_peak_load_mib": mib(loaded.hwm_kib),
            "restart_api_ms": (api_time.as_secs_f64() * 1e3).round(),
            "restart_federate_ms": (federate_time.as_secs_f64() * 1e3).round(),
            "disk_bytes": disk,
            "disk_apparent_bytes": apparent,
            "entry_bytes": entry_bytes,
            "lookups": o.lookups,
            "lookup_clients": o.lookup_clients,
            "lookup_client_cpu_share": round2(client_cpu / took.as_secs_f64()),
            "lookup_node_cpu_us_per_value": round2(node_us_per_value),
            "lookup_found": {
                "listed": Found::fraction(found.listed),
                "unlisted": Found::fraction(found.unlisted),
                "in_block": Found::fraction(found.in_block),
            },
        })
    );
    Ok(())
}

fn best(rates: &[f64]) -> f64 {
    rates.iter().copied().fold(0.0, f64::max)
}

fn rates_text(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|r| format!("{r:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
