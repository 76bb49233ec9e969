//! What the demo and the benches ask node processes over their local APIs, always with a
//! deadline: is it up, are its links up, has an entry reached it, do all nodes agree. While
//! waiting they check that the node processes are still alive, so a crash is reported at once
//! with its log.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use tonic::transport::Channel;

use crate::conn::{connect, rpc_error, Target};
use crate::fleet::Fleet;

/// How long any one wait may take before the caller gives up.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// Bound on one API call, so a hung node cannot stall the demo.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(2);

/// A node's API, connected on first use.
pub struct ApiNode {
    pub org: OrgId,
    pub target: Target,
    channel: Option<Channel>,
}

impl ApiNode {
    pub fn new(target: Target) -> ApiNode {
        ApiNode {
            org: target.org.clone(),
            target,
            channel: None,
        }
    }

    /// Forgets the connection (after the node restarted).
    pub fn reset(&mut self) {
        self.channel = None;
    }

    async fn channel(&mut self) -> anyhow::Result<Channel> {
        if let Some(c) = &self.channel {
            return Ok(c.clone());
        }
        let c = connect(&self.target).await?;
        self.channel = Some(c.clone());
        Ok(c)
    }

    pub async fn status(&mut self) -> anyhow::Result<pb::StatusResponse> {
        self.status_unless_slow()
            .await?
            .with_context(|| format!("Status at {} took over {CALL_TIMEOUT:?}", self.org))
    }

    /// Status, or `None` when the node took over [`CALL_TIMEOUT`] to answer (a node busy
    /// catching up may; the caller decides whether to ask again).
    pub async fn status_unless_slow(&mut self) -> anyhow::Result<Option<pb::StatusResponse>> {
        let mut client = NodeStatusClient::new(self.channel().await?);
        let call = client.status(pb::StatusRequest {});
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Ok(None),
            Ok(answer) => Ok(Some(
                answer
                    .map_err(|s| rpc_error(&self.target, "Status", s))?
                    .into_inner(),
            )),
        }
    }

    pub async fn indicators(&mut self) -> anyhow::Result<IndicatorsClient<Channel>> {
        Ok(IndicatorsClient::new(self.channel().await?))
    }
}

pub fn seq_of(status: &pb::StatusResponse, origin: &OrgId) -> u64 {
    status.vector.get(origin.as_str()).copied().unwrap_or(0)
}

/// Waits until `node` answers Status; returns how long that took.
pub async fn wait_ready(node: &mut ApiNode, fleet: &mut Fleet) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        fleet.check_alive(&node.org)?;
        match node.status().await {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) => {
                node.reset();
                if start.elapsed() > PATIENCE {
                    return Err(e.context(format!(
                        "node {} did not answer Status within {PATIENCE:?}",
                        node.org
                    )));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Statuses of all `nodes`, asked concurrently.
pub async fn statuses(nodes: &mut [&mut ApiNode]) -> anyhow::Result<Vec<pb::StatusResponse>> {
    futures::future::join_all(nodes.iter_mut().map(|n| n.status()))
        .await
        .into_iter()
        .collect()
}

/// Waits until every node reports all its configured peers connected.
pub async fn wait_linked(
    nodes: &mut [&mut ApiNode],
    fleet: &mut Fleet,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        fleet.check_all_alive()?;
        let all = statuses(nodes).await?;
        let down: Vec<String> = all
            .iter()
            .flat_map(|s| {
                s.peers
                    .iter()
                    .filter(|p| !p.connected)
                    .map(move |p| format!("{}→{} ({})", s.org_id, p.org_id, p.last_error))
            })
            .collect();
        if down.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > PATIENCE {
            anyhow::bail!("links still down after {PATIENCE:?}: {}", down.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every node in `nodes` holds `origin` up to `seq`; returns, per node, the time
/// from `since` to when it was first seen holding it.
pub async fn wait_seq(
    nodes: &mut [&mut ApiNode],
    origin: &OrgId,
    seq: u64,
    since: Instant,
    fleet: &mut Fleet,
) -> anyhow::Result<BTreeMap<OrgId, Duration>> {
    let what = format!("{origin}#{seq} held");
    wait_each(nodes, since, fleet, &what, |s| seq_of(s, origin) >= seq).await
}

/// Waits until `done` holds for every node's status; returns, per node, the time from `since`
/// to the first answer for which it held.
pub async fn wait_each(
    nodes: &mut [&mut ApiNode],
    since: Instant,
    fleet: &mut Fleet,
    what: &str,
    done: impl Fn(&pb::StatusResponse) -> bool,
) -> anyhow::Result<BTreeMap<OrgId, Duration>> {
    let mut seen = BTreeMap::new();
    let mut rounds = 0u32;
    loop {
        let mut pending: Vec<&mut &mut ApiNode> = nodes
            .iter_mut()
            .filter(|n| !seen.contains_key(&n.org))
            .collect();
        if pending.is_empty() {
            return Ok(seen);
        }
        // Each answer is timed as it arrives, not when the slowest of the round does.
        let answers = futures::future::join_all(pending.iter_mut().map(|n| async {
            let status = n.status().await;
            (status, since.elapsed())
        }))
        .await;
        for (n, (answer, at)) in pending.iter().zip(answers) {
            if done(&answer?) {
                seen.insert(n.org.clone(), at);
            }
        }
        rounds += 1;
        if rounds.is_multiple_of(25) {
            fleet.check_all_alive()?;
        }
        if seen.len() < nodes.len() && since.elapsed() > PATIENCE {
            let missing: Vec<String> = nodes
                .iter()
                .filter(|n| !seen.contains_key(&n.org))
                .map(|n| n.org.to_string())
                .collect();
            anyhow::bail!(
                "{what}: not yet at {} after {PATIENCE:?}",
                missing.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `node` holds the same vector as `reference`; returns the time from `since`.
pub async fn wait_same_vector(
    node: &mut ApiNode,
    reference: &mut ApiNode,
    since: Instant,
    fleet: &mut Fleet,
) -> anyhow::Result<Duration> {
    loop {
        fleet.check_alive(&node.org)?;
        let (a, b) = futures::join!(node.status(), reference.status());
        let (a, b) = (a?, b?);
        if a.vector == b.vector {
            return Ok(since.elapsed());
        }
        if since.elapsed() > PATIENCE {
            anyhow::bail!(
                "{} has not caught up after {PATIENCE:?}: it holds {} while {} holds {}",
                node.org,
                crate::render::vector_text(&a.vector),
                reference.org,
                crate::render::vector_text(&b.vector)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until all nodes report one vector and one state digest, then returns their statuses
/// (after `PATIENCE` with equal vectors, also when digests still differ: the caller says which).
pub async fn wait_converged(
    nodes: &mut [&mut ApiNode],
    fleet: &mut Fleet,
) -> anyhow::Result<Vec<pb::StatusResponse>> {
    let start = Instant::now();
    loop {
        fleet.check_all_alive()?;
        let all = statuses(nodes).await?;
        // The same log everywhere, and the same index built from it: a payload filled into a
        // stub after its entry arrived changes the digest, not the vector.
        let same = |w: &[pb::StatusResponse]| {
            w[0].vector == w[1].vector && w[0].state_digest == w[1].state_digest
        };
        if all.windows(2).all(same) {
            return Ok(all);
        }
        let vectors_agree = all.windows(2).all(|w| w[0].vector == w[1].vector);
        if vectors_agree && start.elapsed() > PATIENCE {
            // The caller names the digests that still differ.
            return Ok(all);
        }
        if start.elapsed() > PATIENCE {
            let vectors: Vec<String> = all
                .iter()
                .map(|s| format!("{}: {}", s.org_id, crate::render::vector_text(&s.vector)))
                .collect();
            anyhow::bail!(
                "vectors still differ after {PATIENCE:?}: {}",
                vectors.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Entries `behind` lacks that `ahead` holds.
pub fn lag(behind: &HashMap<String, u64>, ahead: &HashMap<String, u64>) -> u64 {
    ahead
        .iter()
        .map(|(o, s)| s.saturating_sub(behind.get(o).copied().unwrap_or(0)))
        .sum()
}

/// The nearest-rank percentile `p` (0 to 100) of `values`, which must not be empty.
pub fn percentile(values: &[Duration], p: usize) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    let rank = (p * v.len()).div_ceil(100).max(1);
    v[rank.min(v.len()) - 1]
}

pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let v = ms(&[40, 10, 30, 20]);
        assert_eq!(percentile(&v, 50), Duration::from_millis(20));
        assert_eq!(percentile(&v, 100), Duration::from_millis(40));
        assert_eq!(percentile(&ms(&[7]), 50), Duration::from_millis(7));
    }

    #[test]
    fn lag_counts_missing_entries() {
        let a: HashMap<String, u64> = [("A".into(), 5), ("B".into(), 2)].into();
        let b: HashMap<String, u64> = [("A".into(), 9), ("C".into(), 1)].into();
        assert_eq!(lag(&a, &b), 5);
        assert_eq!(lag(&b, &b), 0);
    }
}
