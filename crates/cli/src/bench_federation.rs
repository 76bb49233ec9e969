//! `intelmesh bench federation`: one or more hubs and M agencies, each a node process
//! (`intelmesh run --config`, provisioned as the other benches' nodes, run as the demo runs
//! them), every agency submitting through its own API at a steady rate. Measured: the time
//! from the last submit answered to every node holding the same logs (read from the hubs'
//! Status: its vector at the target and every peer's reported vector equal to it; then every
//! node's own Status must show one vector and one state digest), and each process's memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use intelmesh_core::{OrgId, Tlp};
use intelmesh_node::config::{Limits, Role};
use intelmesh_node::provision::{provision, Federation, NodeSpec};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::net::{self, hubs_and_agencies, percentile, round2, PATIENCE};
use super::shapes;
use super::sys::{mib, process_cpu_seconds, raise_open_files_limit, ProcMem};
use crate::conn::Target;
use crate::fleet::Fleet;
use crate::probe::{self, ApiNode};

/// Options of `bench federation`.
pub struct FederationOpts {
    /// Agencies besides the hubs.
    pub members: usize,
    pub hubs: usize,
    /// Submissions per second at each agency.
    pub rate: f64,
    pub secs: u64,
    pub json: bool,
}

/// How often, while waiting, the bench says what the mesh still waits for.
const SAY_EVERY: Duration = Duration::from_secs(1);
/// How often the hubs are asked whether the mesh has converged. A hub's answer walks every
/// member's vector: asked every 5 ms, the bench's own calls took a share of the hubs' CPU in
/// the very seconds it timed. 20 ms is still under 1% of the goal.
const POLL: Duration = Duration::from_millis(20);

pub fn federation(o: FederationOpts) -> anyhow::Result<()> {
    if o.members < 2 {
        return Err(crate::usage("--members must be at least 2"));
    }
    if !(1..=8).contains(&o.hubs) {
        return Err(crate::usage("--hubs must be 1 to 8"));
    }
    if !(o.rate.is_finite() && o.rate > 0.0 && o.rate <= 1000.0) {
        return Err(crate::usage(
            "--rate must be a number of submissions per second above 0 and at most 1000",
        ));
    }
    if o.secs == 0 {
        return Err(crate::usage("--secs must be at least 1"));
    }
    // Each node process and this one's API connections take descriptors.
    raise_open_files_limit()?;
    // The nodes are spawned from this thread (see `Fleet`): the future runs on it.
    net::runtime()?.block_on(federation_async(o))
}

/// Short reconnect backoff: agencies start while the hubs come up. Every node dials from
/// 127.0.0.1, so the hubs take all their handshakes from one address.
fn bench_limits() -> Limits {
    Limits {
        backoff_min_ms: 50,
        backoff_max_ms: 1_000,
        handshakes_per_address: 1024,
        ..Limits::default()
    }
}

fn api_node(fed: &Federation, org: &OrgId) -> ApiNode {
    let p = &fed.nodes[org];
    ApiNode::new(Target {
        org: org.clone(),
        addr: p.spec.api,
        ca: p.api_ca.clone(),
        cert: p.client_cert.clone(),
        key: p.client_key.clone(),
        timeout: Duration::from_secs(30),
    })
}

/// Every agency dials every hub, and each hub dials the hubs listed before it: one link per
/// pair that shares entries (with one hub, a star).
fn hub_links(specs: &[NodeSpec]) -> Vec<(OrgId, OrgId)> {
    let hubs: Vec<&OrgId> = specs
        .iter()
        .filter(|s| s.role == Role::Hub)
        .map(|s| &s.org)
        .collect();
    let mut links = Vec::new();
    for (i, hub) in hubs.iter().enumerate() {
        links.extend(hubs[..i].iter().map(|h| ((*hub).clone(), (*h).clone())));
    }
    for agency in specs.iter().filter(|s| s.role != Role::Hub) {
        links.extend(hubs.iter().map(|h| (agency.org.clone(), (*h).clone())));
    }
    links
}

/// What one agency's submitter did.
struct Submitted {
    origin: OrgId,
    last_seq: u64,
    last_answer: Instant,
    call_ms: Vec<f64>,
}

async fn federation_async(o: FederationOpts) -> anyhow::Result<()> {
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };
    let tmp = net::bench_dir(None)?;
    let specs = hubs_and_agencies(o.hubs, o.members)?;
    let t = Instant::now();
    let fed = tokio::task::block_in_place(|| {
        provision(tmp.path(), &specs, &hub_links(&specs), &bench_limits())
    })?;
    let hubs: Vec<OrgId> = specs
        .iter()
        .filter(|s| s.role == Role::Hub)
        .map(|s| s.org.clone())
        .collect();
    let agencies: Vec<OrgId> = specs
        .iter()
        .filter(|s| s.role == Role::Agency)
        .map(|s| s.org.clone())
        .collect();
    say(format!(
        "provisioned {} hub(s) and {} agencies (every agency links to every hub{}) in {:.1}s",
        hubs.len(),
        agencies.len(),
        if hubs.len() > 1 {
            ", hubs to each other"
        } else {
            ""
        },
        t.elapsed().as_secs_f64()
    ));

    let mut fleet = Fleet::new(false)?;
    let mut apis: BTreeMap<OrgId, ApiNode> = BTreeMap::new();
    let started = Instant::now();
    // Hubs first, so the agencies' first dials find them.
    for group in [&hubs, &agencies] {
        for org in group {
            let p = &fed.nodes[org];
            fleet.spawn(org, &p.config_path, &p.dir.join("node.log"))?;
            apis.insert(org.clone(), api_node(&fed, org));
        }
        for org in group {
            let api = apis.get_mut(org).context("an API of each node")?;
            probe::wait_ready(api, &mut fleet).await?;
        }
    }
    let mut all: Vec<&mut ApiNode> = apis.values_mut().collect();
    probe::wait_linked(&mut all, &mut fleet).await?;
    say(format!(
        "{} node processes answer and every link is up {:.1}s after the first started",
        apis.len(),
        started.elapsed().as_secs_f64()
    ));

    // Each agency submits through its own API, its ticks offset so the mesh sees a steady
    // stream rather than bursts.
    let calls = ((o.rate * o.secs as f64).round() as u64).max(1);
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let begin = tokio::time::Instant::now() + Duration::from_millis(200);
    let members = agencies.len() as u64;
    let mut submitters = JoinSet::new();
    for (a, org) in agencies.iter().enumerate() {
        let client = apis
            .get_mut(org)
            .context("an API of each agency")?
            .indicators()
            .await?;
        let offset = period.mul_f64(a as f64 / members as f64);
        let origin = org.clone();
        submitters.spawn(submit(
            client,
            origin,
            a as u64,
            members,
            calls,
            begin + offset,
            period,
        ));
    }
    say(format!(
        "each agency submits {calls} indicators through Indicators.Submit, one every {:.0} ms, for {}s ({:.0} submissions/s over the mesh)",
        period.as_secs_f64() * 1e3,
        o.secs,
        o.rate * members as f64
    ));
    let mut done = Vec::with_capacity(agencies.len());
    while let Some(r) = submitters.join_next().await {
        done.push(r.context("a submitter failed")??);
    }
    let last_submit = done
        .iter()
        .map(|d| d.last_answer)
        .max()
        .context("an agency submitted")?;
    let target: BTreeMap<String, u64> = done
        .iter()
        .map(|d| (d.origin.to_string(), d.last_seq))
        .collect();
    let mut call_ms: Vec<f64> = done
        .iter()
        .flat_map(|d| d.call_ms.iter().copied())
        .collect();
    call_ms.sort_by(f64::total_cmp);

    let converged = converged_at_hubs(&mut apis, &hubs, &target, &mut fleet, &say).await?;
    let converge_ms = converged
        .saturating_duration_since(last_submit)
        .as_secs_f64()
        * 1e3;
    let mut all: Vec<&mut ApiNode> = apis.values_mut().collect();
    let statuses = probe::statuses(&mut all).await?;
    let first = statuses.first().context("a node")?;
    if let Some(odd) = statuses
        .iter()
        .find(|s| s.vector != first.vector || s.state_digest != first.state_digest)
    {
        bail!(
            "after convergence {} holds {} (digest {}) but {} holds {} (digest {})",
            first.org_id,
            crate::render::vector_text(&first.vector),
            first.state_digest,
            odd.org_id,
            crate::render::vector_text(&odd.vector),
            odd.state_digest
        );
    }
    let entries: u64 = target.values().sum();
    say(format!(
        "{entries} entries submitted (Submit p50 {:.1} ms, p99 {:.1} ms); from the last submit answered to every node holding them all: {converge_ms:.0} ms; all {} nodes then report one vector and state digest {}",
        percentile(&call_ms, 0.50),
        percentile(&call_ms, 0.99),
        statuses.len(),
        first.state_digest
    ));

    // What the hubs were sent: each agency's own entries once per hub; the rest is copies
    // of what one hub relayed, passed on to another (`federation::sender::RELAY_STILL`).
    let is_hub = |name: &str| hubs.iter().any(|h| h.as_str() == name);
    let to_hubs: u64 = statuses
        .iter()
        .filter(|s| !is_hub(&s.org_id))
        .flat_map(|s| s.peers.iter())
        .filter(|p| is_hub(&p.org_id))
        .map(|p| p.entries_sent)
        .sum();
    let copies = to_hubs as f64 / (entries * o.hubs as u64).max(1) as f64;
    say(format!(
        "the agencies sent the hubs {to_hubs} entries: {copies:.2} per entry and hub"
    ));
    // What the agencies were sent by the hubs: each other origin's entries once per agency
    // at least; with several hubs the rest are copies an agency already held from another.
    let sent_by_hub: Vec<(&str, u64)> = statuses
        .iter()
        .filter(|s| is_hub(&s.org_id))
        .map(|s| {
            let sent = (s.peers.iter())
                .filter(|p| !is_hub(&p.org_id))
                .map(|p| p.entries_sent)
                .sum();
            (s.org_id.as_str(), sent)
        })
        .collect();
    let to_agencies: u64 = sent_by_hub.iter().map(|(_, n)| n).sum();
    let needed = entries * members.saturating_sub(1);
    let agency_copies = to_agencies as f64 / needed.max(1) as f64;
    say(format!(
        "the hubs sent the agencies {to_agencies} entries ({}): {agency_copies:.2} per entry an agency lacked",
        sent_by_hub
            .iter()
            .map(|(hub, n)| format!("{hub} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut hub_rss = Vec::new();
    let mut rss = Vec::new();
    // CPU each role used from its start to convergence: firmer than `converge_ms`, which
    // varies more between runs of one build than between builds.
    let (mut hub_cpu, mut agency_cpu) = (0.0, 0.0);
    for (org, pid) in fleet.pids() {
        let m = ProcMem::of(pid).with_context(|| format!("memory of node {org}"))?;
        let cpu = process_cpu_seconds(pid).with_context(|| format!("CPU time of node {org}"))?;
        if hubs.contains(&org) {
            hub_rss.push(mib(m.rss_kib));
            hub_cpu += cpu;
        } else {
            agency_cpu += cpu;
        }
        rss.push(mib(m.rss_kib));
    }
    rss.sort_by(f64::total_cmp);
    let (min, median, max) = (
        rss.first().copied().unwrap_or(0.0),
        percentile(&rss, 0.5),
        rss.last().copied().unwrap_or(0.0),
    );
    let hub_max = hub_rss.iter().copied().fold(0.0, f64::max);
    say(format!(
        "RSS per node process (VmRSS): min {min} MiB, median {median} MiB, max {max} MiB; hub {hub_max} MiB; all nodes {:.0} MiB",
        rss.iter().sum::<f64>()
    ));
    say(format!(
        "CPU (user and system) from each node's start to now: the hubs {hub_cpu:.1} s, the agencies {agency_cpu:.1} s"
    ));

    // A node's shutdown waits for its API connections to close: close ours first.
    drop(apis);
    fleet.terminate_all(Duration::from_secs(30)).await;
    out!(
        "{}",
        serde_json::json!({
            "bench": "federation",
            "members": o.members,
            "hubs": o.hubs,
            "nodes": o.members + o.hubs,
            "rate_per_member": o.rate,
            "secs": o.secs,
            "entries": entries,
            "converge_ms": converge_ms.round(),
            "hub_copies_per_entry": round2(copies),
            "agency_copies_per_entry": round2(agency_copies),
            "rss_mib_min": min,
            "rss_mib_median": median,
            "rss_mib_max": max,
            "rss_mib_hub": hub_max,
            "cpu_s_hubs": round2(hub_cpu),
            "cpu_s_agencies": round2(agency_cpu),
            "submit_p50_ms": round2(percentile(&call_ms, 0.50)),
            "submit_p99_ms": round2(percentile(&call_ms, 0.99)),
        })
    );
    Ok(())
}

/// Submits `calls` indicators at `origin`, one per tick from `first`; agency `a` of `members`
/// takes slots `a`, `a + members`, ... so no two submissions anywhere repeat a value.
async fn submit(
    mut client: IndicatorsClient<Channel>,
    origin: OrgId,
    a: u64,
    members: u64,
    calls: u64,
    first: tokio::time::Instant,
    period: Duration,
) -> anyhow::Result<Submitted> {
    let mut ticks = tokio::time::interval_at(first, period);
    // A call that ran long is followed at once: the count per agency stays the same.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut out = Submitted {
        origin: origin.clone(),
        last_seq: 0,
        last_answer: Instant::now(),
        call_ms: Vec::with_capacity(calls as usize),
    };
    for call in 0..calls {
        ticks.tick().await;
        let upsert = shapes::upsert(call * members + a, false)?;
        let indicator = upsert
            .indicator
            .clone()
            .context("an upsert names its indicator")?;
        let request = pb::SubmitRequest {
            submissions: vec![pb::Submission {
                r#type: indicator.r#type,
                value: indicator.value,
                distribution: Some(pb::Distribution {
                    tlp: Tlp::Green.to_proto() as i32,
                    recipients: vec![],
                }),
                body: Some(pb::submission::Body::Upsert(upsert)),
            }],
            ..Default::default()
        };
        let t = Instant::now();
        let answer = client
            .submit(request)
            .await
            .map_err(|s| anyhow::anyhow!("Submit at {origin}: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        out.last_answer = Instant::now();
        out.call_ms.push(t.elapsed().as_secs_f64() * 1e3);
        for assigned in answer.assigned {
            out.last_seq = out.last_seq.max(assigned.seq);
        }
    }
    Ok(out)
}

/// Asks the hubs until each holds `target` and every one of its peers has reported holding
/// what the hub holds (a peer sends its vector after each batch it made durable); returns when
/// that was first seen. The hubs link to every node, so then every node holds the target.
async fn converged_at_hubs(
    apis: &mut BTreeMap<OrgId, ApiNode>,
    hubs: &[OrgId],
    target: &BTreeMap<String, u64>,
    fleet: &mut Fleet,
    say: &dyn Fn(String),
) -> anyhow::Result<Instant> {
    let start = Instant::now();
    let mut rounds = 0u32;
    let mut last_said = Instant::now();
    loop {
        let mut behind = None;
        for hub in hubs {
            let api = apis.get_mut(hub).context("an API of each hub")?;
            // A hub relaying to 190 members on two shared cores may answer late: that is
            // time to convergence too, so it is asked again (within PATIENCE).
            let Some(s) = api.status_unless_slow().await? else {
                behind = Some(format!("{hub} answered Status late"));
                break;
            };
            let lacking: Vec<(&String, u64, u64)> = target
                .iter()
                .map(|(o, seq)| (o, s.vector.get(o).copied().unwrap_or(0), *seq))
                .filter(|(_, held, seq)| held < seq)
                .collect();
            let lagging = s.peers.iter().find(|p| !p.connected || p.lag > 0);
            if let Some((first, held, seq)) = lacking.first() {
                let missing: u64 = lacking.iter().map(|(_, held, seq)| seq - held).sum();
                behind = Some(format!(
                    "{hub} lacks {missing} entries of {} origins ({first} at {held} of {seq})",
                    lacking.len()
                ));
            } else if let Some(p) = lagging {
                behind = Some(format!("{hub}'s peer {} lags by {}", p.org_id, p.lag));
            }
            if behind.is_some() {
                break;
            }
        }
        let Some(why) = behind else {
            return Ok(Instant::now());
        };
        rounds += 1;
        if rounds.is_multiple_of(200) {
            fleet.check_all_alive()?;
        }
        if start.elapsed() > PATIENCE {
            bail!("not converged {PATIENCE:?} after the last submit: {why}");
        }
        if last_said.elapsed() >= SAY_EVERY {
            last_said = Instant::now();
            say(format!(
                "  {:.1}s after the last submit: {why}",
                start.elapsed().as_secs_f64()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
