//! Hub high availability: two hubs and three agencies, every agency linked with both hubs and
//! the hubs with each other. One hub is SIGKILLed (a child process) while the agencies keep
//! submitting: every acknowledged entry still reaches every surviving node through the other
//! hub, a submit made after the kill reaches the other agencies within 5 s, and the killed hub,
//! started again on its data directory, catches up to identical vectors and state digests.
//! Both modes: static (`[[peer]]` lists naming both hubs) and roster (both hubs in the genesis;
//! the one killed is the roster log's publisher, and the other refuses to publish).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use intelmesh_core::{Distribution, OrgId, Tlp};
use intelmesh_node::config::{Limits, Role};
use intelmesh_node::federation::fan_out::sends_first;
use intelmesh_node::provision::{loopback_specs_hubs, star_links, ProvisionedNode};
use intelmesh_node::state::NodeError;
use intelmesh_node::RunningNode;
use intelmesh_store::Store;
use intelmesh_tests::net::{domain_upsert, fast_limits, green, org, TestNet};
use intelmesh_tests::process::NodeProcess;
use intelmesh_tests::roster_net::{peer, RosterNet};

/// The binary that runs a node in a child process (`tests/support/node_process.rs`).
const NODE_PROCESS: &str = env!("CARGO_BIN_EXE_node-process");
const HUBS: [&str; 2] = ["HUB-A", "HUB-B"];
const AGENCIES: [&str; 3] = ["AU-AFP", "BR-PF", "FR-OCLCTIC"];
/// What the federation promises once a hub is lost: agencies exchange through the other.
const FAILOVER: Duration = Duration::from_secs(5);
/// Patience for set-up and catch-up, which this test does not measure.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_mode_agencies_carry_on_through_the_other_hub() {
    let specs = loopback_specs_hubs(&HUBS, &AGENCIES).expect("ports");
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &fast_limits());
    let (killed, survivor) = (org(HUBS[0]), org(HUBS[1]));
    let child = NodeProcess::spawn(NODE_PROCESS, &net.fed.nodes[&killed]).await;
    for o in std::iter::once(&survivor).chain(agencies().iter()) {
        net.start(o).await;
    }
    let hub = net.fed.nodes[&killed].clone();
    kill_a_hub_mid_sync(&net.running, child, &hub, &survivor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roster_mode_agencies_carry_on_when_the_publishing_hub_dies() {
    let mut net = RosterNet::provisioned_hubs(&HUBS, &AGENCIES, &fast_limits());
    let (publisher, other) = (org(HUBS[0]), org(HUBS[1]));
    net.start(&publisher).await;
    net.start(&other).await;
    let agencies = agencies();
    net.admit_all(&agencies.iter().collect::<Vec<_>>()).await;
    net.wait_status(&other, PATIENCE, |s| s.roster_version == 2)
        .await
        .expect("the second hub follows the roster log the first publishes");

    // One roster log: the second hub relays it and will not sign a version of its own.
    let refused = net
        .node(&other)
        .state()
        .publish_roster(net.next_version(|_| {}))
        .await;
    match refused {
        Err(NodeError::NotRosterPublisher { publisher: p, .. }) => assert_eq!(p, "HUB-A"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(r) => panic!("the second hub published roster version {}", r.version()),
    }
    let fed = net.roster(&other).federation_id().clone();
    let log = |at: &OrgId| net.node(at).state().store.range(&fed, 1, 8).expect("log");
    assert_eq!(
        log(&publisher),
        log(&other),
        "both hubs hold the one roster log"
    );

    // While the publisher is down, the agencies start: they take the roster log from the other
    // hub, and their status lists the publisher, not reached yet.
    net.stop(&publisher).await;
    for a in &agencies {
        net.start(a).await;
    }
    for a in &agencies {
        net.wait_status(a, PATIENCE, |s| {
            s.roster_version == 2
                && peer(s, &other).is_some_and(|p| p.connected)
                && peer(s, &publisher).is_some_and(|p| !p.connected)
        })
        .await
        .expect("each agency follows the roster through the second hub and lists both hubs");
    }
    // The publisher comes back as a child process the test can kill, on the same store.
    let child = NodeProcess::spawn(NODE_PROCESS, &net.fed.nodes[&publisher]).await;
    let hub = net.fed.nodes[&publisher].clone();
    kill_a_hub_mid_sync(&net.running, child, &hub, &other).await;
}

/// A hub that hangs (SIGSTOP) is lost without its links showing it: they stay up, silent, until
/// `dead_after_ms` (10 s by default, kept here) cuts them. The agencies it served first still
/// get each other's entries within the 5 s the federation promises, from the other hub, which
/// takes them once it has not heard the hung one for `fan_out::HUB_SILENT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agencies_carry_on_when_a_hub_hangs_with_its_links_up() {
    let specs = loopback_specs_hubs(&HUBS, &AGENCIES).expect("ports");
    let limits = Limits {
        heartbeat_ms: Limits::default().heartbeat_ms,
        dead_after_ms: Limits::default().dead_after_ms,
        stall_after_ms: Limits::default().stall_after_ms,
        ..fast_limits()
    };
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &limits);
    let (hung, survivor) = (org(HUBS[0]), org(HUBS[1]));
    let child = NodeProcess::spawn(NODE_PROCESS, &net.fed.nodes[&hung]).await;
    for o in std::iter::once(&survivor).chain(agencies().iter()) {
        net.start(o).await;
    }
    let nodes = &net.running;
    all_linked(nodes, [&hung, &survivor]).await;
    let agencies = agencies();
    let served_by_hung: Vec<&OrgId> = (agencies.iter())
        .filter(|a| sends_first(&hung, std::slice::from_ref(&survivor), a))
        .collect();
    assert!(
        !served_by_hung.is_empty(),
        "{hung} serves some agency first"
    );

    child.pause();
    let at = Instant::now();
    let mut published = Vec::new();
    for from in &agencies {
        let domain = format!("while-hung.{}.example", from.as_str().to_ascii_lowercase());
        let seq = nodes[from]
            .state()
            .publish(vec![(green(), domain_upsert(&domain))])
            .await
            .expect("publish while a hub hangs")[0];
        published.push((from, seq));
    }
    let (published, agencies) = (&published, &agencies);
    let took = eventually(FAILOVER, || async move {
        let missing: Vec<String> = (published.iter())
            .flat_map(|(from, seq)| {
                (agencies.iter())
                    .filter(move |a| *a != *from && held(&nodes[*a], from) < *seq)
                    .map(move |a| format!("{from}#{seq} at {a}"))
            })
            .collect();
        (!missing.is_empty()).then(|| format!("missing {missing:?}"))
    })
    .await;
    let since_pause = at.elapsed();
    // The premise: nothing showed the hub gone in that time.
    let cut: Vec<&OrgId> = (nodes.keys())
        .filter(|n| !nodes[*n].state().peers.is_connected(&hung))
        .collect();
    child.resume();
    took.expect("the agencies exchange through the other hub while one hangs");
    assert!(since_pause < FAILOVER, "{since_pause:?}");
    assert!(
        cut.is_empty(),
        "links to the hung hub ended early at {cut:?}"
    );
}

fn agencies() -> Vec<OrgId> {
    AGENCIES.iter().map(|a| org(a)).collect()
}

/// The failover, the same in both modes. `nodes` run in this process: the `survivor` hub and
/// the agencies; `child` runs the other hub (`hub`'s files), linked with all of them.
async fn kill_a_hub_mid_sync(
    nodes: &BTreeMap<OrgId, RunningNode>,
    child: NodeProcess,
    hub: &ProvisionedNode,
    survivor: &OrgId,
) {
    let killed = &hub.spec.org;
    let agencies: Vec<OrgId> = nodes.keys().filter(|o| *o != survivor).cloned().collect();
    let agencies = &agencies;
    all_linked(nodes, [killed, survivor]).await;

    let submitters = Submitters::start(nodes, agencies);
    // Mid-sync: the hub holds some of every agency's entries, and more are on their way.
    let running = &child;
    eventually(PATIENCE, || async move {
        let s = match running.status().await {
            Ok(s) => s,
            Err(e) => return Some(e),
        };
        let short: Vec<&OrgId> = agencies
            .iter()
            .filter(|a| s.vector.get(a.as_str()).copied().unwrap_or(0) < 10)
            .collect();
        (!short.is_empty()).then(|| format!("{killed} has few entries of {short:?}"))
    })
    .await
    .expect("the hub takes in the agencies' entries");
    child.kill();

    // Right after the kill, each agency's next entry reaches the other agencies in time, in
    // full: TLP:RED for them, so only relays (the surviving hub) may carry it there.
    for from in agencies {
        let others: Vec<&RunningNode> = agencies
            .iter()
            .filter(|a| *a != from)
            .map(|a| &nodes[a])
            .collect();
        let red = Distribution {
            tlp: Tlp::Red,
            recipients: others.iter().map(|n| n.org().clone()).collect(),
        };
        let domain = format!("after-kill.{}.example", from.as_str().to_ascii_lowercase());
        let seq = nodes[from]
            .state()
            .publish(vec![(red, domain_upsert(&domain))])
            .await
            .expect("publish after the kill")[0];
        let others = &others;
        eventually(FAILOVER, || async move {
            let missing: Vec<&OrgId> = others
                .iter()
                .filter(|n| !holds_in_full(n, from, seq))
                .map(|n| n.org())
                .collect();
            (!missing.is_empty()).then(|| format!("{from}#{seq} not in full at {missing:?}"))
        })
        .await
        .expect(
            "an entry submitted after the kill reaches the other agencies through the other hub",
        );
    }

    // Status shows each hub link: the lost one down, the other up.
    eventually(PATIENCE, || async move {
        let wrong: Vec<&OrgId> = agencies
            .iter()
            .filter(|a| {
                let n = &nodes[*a];
                listed(n, killed) != Some(false) || listed(n, survivor) != Some(true)
            })
            .collect();
        (!wrong.is_empty()).then(|| format!("hub links misreported at {wrong:?}"))
    })
    .await
    .expect("status lists the lost hub as down and the other as up");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = submitters.stop().await;
    for (origin, seq) in &acked {
        assert!(*seq >= 10, "{origin} kept submitting ({seq} acknowledged)");
        eventually(PATIENCE, || async move {
            let behind: Vec<&OrgId> = nodes
                .values()
                .filter(|n| held(n, origin) < *seq)
                .map(|n| n.org())
                .collect();
            (!behind.is_empty()).then(|| format!("{origin}#{seq} not at {behind:?}"))
        })
        .await
        .expect("every acknowledged entry reaches every surviving node");
    }
    let surviving = converged(nodes).await;

    // The killed hub, started on what the kill left of its store, catches up to the surviving
    // hub's vector and state digest (the agencies' differs: they read the RED entries, which
    // the hubs only carry sealed).
    let child = NodeProcess::spawn(NODE_PROCESS, hub).await;
    let restarted = &child;
    eventually(PATIENCE, || async move {
        let Some(ours) = converged_now(nodes) else {
            return Some("the surviving nodes differ".to_string());
        };
        let theirs = match restarted.status().await {
            Ok(s) => s,
            Err(e) => return Some(e),
        };
        let vector: BTreeMap<String, u64> = theirs.vector.into_iter().collect();
        (vector != ours.0 || theirs.state_digest != ours.1)
            .then(|| format!("{killed} at {vector:?}, the others at {:?}", ours.0))
    })
    .await
    .expect("the restarted hub reaches the same vector and state digest");
    for (origin, seq) in &acked {
        assert!(surviving.0[origin.as_str()] >= *seq);
    }
    let s = child.status().await.expect("status of the restarted hub");
    assert!(s.flagged_origins.is_empty(), "{:?}", s.flagged_origins);
    for n in nodes.values() {
        let flagged = n.state().store.flagged_origins().expect("flags");
        assert!(flagged.is_empty(), "{} flags {flagged:?}", n.org());
    }
}

/// Waits until each of `nodes` has its links with both `hubs` up (but with itself).
async fn all_linked(nodes: &BTreeMap<OrgId, RunningNode>, hubs: [&OrgId; 2]) {
    eventually(PATIENCE, || async move {
        let down: Vec<String> = nodes
            .iter()
            .flat_map(|(at, n)| {
                hubs.into_iter()
                    .filter(move |h| *h != at && !n.state().peers.is_connected(h))
                    .map(move |h| format!("{at} to {h}"))
            })
            .collect();
        (!down.is_empty()).then(|| format!("links down: {down:?}"))
    })
    .await
    .expect("every agency links with both hubs, and the hubs with each other");
}

/// Agencies publishing one entry after another until stopped, each counting what its node
/// acknowledged (`publish` returned: durable at the origin).
struct Submitters {
    stop: Arc<AtomicBool>,
    tasks: Vec<(OrgId, tokio::task::JoinHandle<u64>)>,
}

impl Submitters {
    fn start(nodes: &BTreeMap<OrgId, RunningNode>, agencies: &[OrgId]) -> Submitters {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = agencies
            .iter()
            .map(|a| {
                let state = Arc::clone(nodes[a].state());
                let stop = Arc::clone(&stop);
                let task = tokio::spawn(async move {
                    let mut last = 0;
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let domain =
                            format!("c{n}.{}.example", state.org.as_str().to_ascii_lowercase());
                        let seqs = state
                            .publish(vec![(green(), domain_upsert(&domain))])
                            .await
                            .expect("the agency acknowledges its submission");
                        last = seqs.into_iter().max().unwrap_or(last);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    last
                });
                (a.clone(), task)
            })
            .collect();
        Submitters { stop, tasks }
    }

    /// Stops them; the last acknowledged seq of each agency.
    async fn stop(self) -> BTreeMap<OrgId, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = BTreeMap::new();
        for (org, task) in self.tasks {
            acked.insert(org, task.await.expect("submitter"));
        }
        acked
    }
}

/// Whether `node` holds `origin`'s entry at `seq` with its payload (not a withheld stub).
fn holds_in_full(node: &RunningNode, origin: &OrgId, seq: u64) -> bool {
    let stored = node.state().store.range(origin, seq, 1).expect("range");
    stored.first().is_some_and(|e| e.payload.is_some())
}

/// Whether `node`'s status lists `peer`, and if so whether its link is up.
fn listed(node: &RunningNode, peer: &OrgId) -> Option<bool> {
    let s = intelmesh_node::api::status::status(node.state()).expect("status");
    let listed = s.peers.iter().find(|p| p.org_id == peer.as_str());
    listed.map(|p| p.connected)
}

fn held(node: &RunningNode, origin: &OrgId) -> u64 {
    node.state()
        .store
        .head(origin)
        .expect("head")
        .map_or(0, |h| h.seq)
}

/// The vector every node shares, and the state digest of the hubs: they hold the agencies'
/// RED entries sealed, so they index none of them and share a digest among themselves.
type Snapshot = (BTreeMap<String, u64>, String);

/// The vector all of `nodes` share now, and their state digests, shared by the agencies (which
/// read each other's RED entries) and by the hubs (which read none), if they are.
fn converged_now(nodes: &BTreeMap<OrgId, RunningNode>) -> Option<Snapshot> {
    let seen = |hub: bool| {
        nodes
            .values()
            .filter(move |n| (n.state().cfg.role == Role::Hub) == hub)
            .map(|n| {
                let store = &n.state().store;
                let vector = store.vector().expect("vector");
                let vector: BTreeMap<String, u64> = vector
                    .into_iter()
                    .map(|(o, s)| (o.to_string(), s))
                    .collect();
                (vector, hex::encode(store.state_digest().expect("digest")))
            })
    };
    let mut agencies = seen(false);
    let first = agencies.next()?;
    if !agencies.all(|s| s == first) {
        return None;
    }
    let mut hubs = seen(true);
    let hub = hubs.next()?;
    (hub.0 == first.0 && hubs.all(|s| s == hub)).then_some(hub)
}

async fn converged(nodes: &BTreeMap<OrgId, RunningNode>) -> Snapshot {
    let mut last = None;
    eventually(PATIENCE, || {
        last = converged_now(nodes);
        let done = last.is_some();
        async move { (!done).then(|| "vectors or digests differ".to_string()) }
    })
    .await
    .expect("the surviving nodes converge");
    last.expect("converged")
}

/// Polls `check` (a complaint, or `None` once it holds) until it holds or `within` has passed.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Result<Duration, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let start = Instant::now();
    loop {
        let Some(complaint) = check().await else {
            return Ok(start.elapsed());
        };
        if start.elapsed() > within {
            return Err(format!("after {within:?}: {complaint}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
