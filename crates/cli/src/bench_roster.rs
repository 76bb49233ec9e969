//! `intelmesh bench roster`: how fast a suspension takes effect across the mesh. A hub and N
//! agencies run in this process in roster mode (`intelmesh_node::start`, mutual TLS on
//! 127.0.0.1, a store per node), the agencies enrolled through one roster version of `AddMember`
//! actions; then the hub publishes a version suspending one agency, and each other node's time
//! from publication to refusing it (the version it follows no longer admits the member) is
//! taken when that node's roster watch fires. For the hub, also the time until the suspended
//! member's link is cut.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::SigningKey;
use intelmesh_core::OrgId;
use intelmesh_node::config::{Limits, Role};
use intelmesh_node::provision_roster::{
    add_members, provision_roster, sign_next, RosterFederation, RosterSetup,
};
use intelmesh_node::{NodeState, RunningNode};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use tokio::task::JoinSet;

use super::net::{bench_dir, hub_and_agencies, org, percentile, round2, runtime, PATIENCE};

const OPERATOR: &str = "bench operator";

/// Options of `bench roster`.
pub struct RosterOpts {
    /// Agencies besides the hub.
    pub members: usize,
    pub json: bool,
}

pub fn roster(o: RosterOpts) -> anyhow::Result<()> {
    if o.members < 2 {
        bail!("--members must be at least 2 (one is suspended, the others measured)");
    }
    // Each node holds a few store files, two listeners and its links (both ends of every link
    // are in this process): a couple of thousand descriptors for 190 members.
    super::sys::raise_open_files_limit()?;
    runtime()?.block_on(roster_async(o))
}

async fn roster_async(o: RosterOpts) -> anyhow::Result<()> {
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };
    let tmp = bench_dir(None)?;
    let specs = hub_and_agencies(o.members)?;
    let authority = SigningKey::generate(&mut rand::rngs::OsRng);
    let limits = Limits::default();
    let setup = RosterSetup {
        federation_id: org("BENCH-FED")?,
        authority: &authority,
        limits: &limits,
        // Checkpoints after each roster change only: periodic ones from 191 nodes would be
        // traffic unrelated to the figure.
        policy: pb::Policy {
            checkpoint_interval_ms: 3_600_000,
            ..pb::Policy::default()
        },
        operator: OPERATOR.into(),
    };
    let started = Instant::now();
    let RosterFederation {
        fed, enrolments, ..
    } = tokio::task::block_in_place(|| provision_roster(tmp.path(), &specs, &setup))?;
    say(format!(
        "provisioned a hub and {} agencies in roster mode in {:.1}s",
        o.members,
        started.elapsed().as_secs_f64()
    ));

    // The hub first, with every agency admitted (one version of AddMember actions from their
    // enrolment requests), so each agency's first dial is accepted.
    let hub_org = specs
        .iter()
        .find(|s| s.role == Role::Hub)
        .map(|s| s.org.clone())
        .context("a hub spec")?;
    let hub = intelmesh_node::start(fed.nodes[&hub_org].config.clone())
        .await
        .context("starting the hub")?;
    let admission = sign_next(
        &*hub
            .state()
            .roster()
            .context("the hub runs in roster mode")?,
        &add_members(enrolments.values()),
        &authority,
        OPERATOR,
        &|_| 0,
    )?;
    let admitted = hub.state().publish_roster(admission).await?;
    let t = Instant::now();
    let mut starting = JoinSet::new();
    for s in specs.iter().filter(|s| s.role == Role::Agency) {
        let cfg = fed.nodes[&s.org].config.clone();
        let o = s.org.clone();
        starting.spawn(async move {
            intelmesh_node::start(cfg)
                .await
                .with_context(|| format!("starting {o}"))
        });
    }
    let mut agencies = Vec::with_capacity(o.members);
    while let Some(node) = starting.join_next().await {
        agencies.push(node.context("a node start task failed")??);
    }
    agencies.sort_by(|a, b| a.org().cmp(b.org()));
    say(format!(
        "{} agencies started in {:.1}s",
        agencies.len(),
        t.elapsed().as_secs_f64()
    ));
    settled(&hub, &agencies, admitted.version()).await?;
    say(format!(
        "every agency links to the hub, follows roster version {} and holds every log ({:.1}s after start)",
        admitted.version(),
        t.elapsed().as_secs_f64()
    ));

    // The suspension: one waiter per node, parked on its roster watch before publication.
    let suspended = agencies
        .last()
        .map(|n| n.org().clone())
        .context("an agency")?;
    let mut waiters = JoinSet::new();
    for node in std::iter::once(&hub).chain(agencies.iter()) {
        if node.org() == &suspended {
            continue;
        }
        let mut changes = node
            .state()
            .roster_changes()
            .context("a node in roster mode")?;
        let (who, gone) = (node.org().clone(), suspended.clone());
        waiters.spawn(async move {
            changes
                .wait_for(|r| {
                    r.admits_peer(&gone, intelmesh_roster::Presented::default())
                        .is_err()
                })
                .await
                .map(|_| (who, Instant::now()))
        });
    }
    let hub_cut = tokio::spawn(link_cut(Arc::clone(hub.state()), suspended.clone()));
    tokio::task::yield_now().await;
    let hub_state = Arc::clone(hub.state());
    let head_at_hub = |o: &OrgId| hub_state.store.head(o).ok().flatten().map_or(0, |h| h.seq);
    let suspension = sign_next(
        &*hub
            .state()
            .roster()
            .context("the hub runs in roster mode")?,
        &[pb::Action {
            action: Some(pb::action::Action::Suspend(pb::Suspend {
                org: suspended.to_string(),
            })),
        }],
        &authority,
        OPERATOR,
        &head_at_hub,
    )?;
    let published = Instant::now();
    let version = hub.state().publish_roster(suspension).await?.version();
    let mut latencies = Vec::with_capacity(o.members);
    let deadline = tokio::time::sleep(PATIENCE);
    tokio::pin!(deadline);
    while !waiters.is_empty() {
        tokio::select! {
            r = waiters.join_next() => {
                let Some(r) = r else { break };
                let (_, at) = r.context("a waiter failed")?.context("a node stopped")?;
                latencies.push(at.saturating_duration_since(published).as_secs_f64() * 1e3);
            }
            () = &mut deadline => bail!(
                "{} nodes still admit {suspended} {PATIENCE:?} after version {version} was published",
                waiters.len()
            ),
        }
    }
    let hub_cut_ms = hub_cut
        .await
        .context("the link watcher failed")??
        .saturating_duration_since(published)
        .as_secs_f64()
        * 1e3;
    latencies.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
    );
    say(format!(
        "version {version} suspends {suspended}: publication → refused at each of the {} other nodes: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; hub cut its link after {hub_cut_ms:.1} ms",
        latencies.len()
    ));
    // All at once: one by one, 191 graceful stops take minutes.
    let mut stopping = JoinSet::new();
    for node in agencies.into_iter().chain([hub]) {
        stopping.spawn(node.shutdown());
    }
    while stopping.join_next().await.is_some() {}
    out!(
        "{}",
        serde_json::json!({
            "bench": "roster",
            "members": o.members,
            "p50_ms": round2(p50),
            "p99_ms": round2(p99),
            "max_ms": round2(max),
            "hub_cut_ms": round2(hub_cut_ms),
        })
    );
    Ok(())
}

/// Waits until every agency links to the hub and follows `version`, the hub has every link,
/// and every node holds what the hub holds (the checkpoints each published on following the
/// version have spread), so the measured version travels on a quiet mesh.
async fn settled(hub: &RunningNode, agencies: &[RunningNode], version: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let hub_vector = hub.state().vector()?;
        let mut behind = Vec::new();
        for a in agencies {
            let s = a.state();
            let linked = s.peers.is_connected(hub.org());
            let following = s.roster().is_some_and(|r| r.version() >= version);
            let vector = s.vector()?;
            let why = if !linked {
                "no link to the hub".to_string()
            } else if !following {
                "on an older roster version".to_string()
            } else if vector != hub_vector {
                format!(
                    "holds {:?}, the hub {:?}",
                    vector_diff(&vector, &hub_vector),
                    vector_diff(&hub_vector, &vector)
                )
            } else {
                continue;
            };
            behind.push(format!("{}: {why}", a.org()));
        }
        let hub_links = hub.state().peers.connected_count();
        if behind.is_empty() && hub_links >= agencies.len() {
            return Ok(());
        }
        if start.elapsed() > PATIENCE {
            bail!(
                "after {PATIENCE:?}: hub has {hub_links} of {} links; not yet linked, following version {version} and in sync: {} agencies (first: {:?})",
                agencies.len(),
                behind.len(),
                behind.first()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The origins where `a` differs from `b`, with `a`'s seq.
fn vector_diff(
    a: &intelmesh_store::VersionVector,
    b: &intelmesh_store::VersionVector,
) -> Vec<(String, u64)> {
    a.iter()
        .filter(|(o, seq)| b.get(*o) != Some(seq))
        .map(|(o, seq)| (o.to_string(), *seq))
        .collect()
}

/// When `state`'s link with `peer` shows disconnected (the peer table has no change signal, so
/// it is asked every millisecond).
async fn link_cut(state: Arc<NodeState>, peer: OrgId) -> anyhow::Result<Instant> {
    let start = Instant::now();
    loop {
        if !state.peers.is_connected(&peer) {
            return Ok(Instant::now());
        }
        if start.elapsed() > PATIENCE {
            bail!("the hub's link with {peer} is still up after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
