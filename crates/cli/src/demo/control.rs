//! The demo's control-plane phases on the running federation: a member admitted while
//! everything runs (and no other node's file touched), a member's key rotated without a
//! restart, a member suspended and cut off by every node, each timed from the nodes' own
//! Status answers.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use intelmesh_core::{KeyId, OrgId};
use intelmesh_node::rotation::{request_on_disk, RotationFiles};
use intelmesh_proto::v1 as pb;

use super::enrol::Operators;
use super::{apis, node_mut, submit, DemoNode};
use crate::corpus_sample::SampleValue;
use crate::fleet::Fleet;
use crate::probe::{self, fmt_duration, percentile, ApiNode, PATIENCE};

/// What the summary reports of these phases.
pub(super) struct ControlOutcome {
    pub newcomer: OrgId,
    pub newcomer_caught_up: Duration,
    pub rotated: OrgId,
    pub old_key: KeyId,
    pub new_key: KeyId,
    pub first_new_seq: u64,
    pub suspended: OrgId,
    pub cut_p50: Duration,
    pub cut_max: Duration,
    pub cut_nodes: usize,
}

/// Admits `newcomer` (enrolled from its own request) while the federation runs, checks that
/// no other node's files changed, and times its catch-up and its first batch's spread.
pub(super) async fn admit(
    ops: &Operators,
    newcomer: (&OrgId, &str, &str),
    dir: &Path,
    values: &[SampleValue],
    nodes: &mut Vec<DemoNode>,
    fleet: &mut Fleet,
) -> anyhow::Result<Duration> {
    let (org, name, country) = newcomer;
    let before = snapshot(nodes.iter().map(|n| n.files.dir.as_path()))?;
    let (files, versions) = ops.enrol(org, name, country, dir).await?;
    println!(
        "  {org} ran node init; {} admitted it from its request (roster v{}), {} signed the bundle's certificate record (v{}); node join wrote its node.toml",
        super::enrol::PROPOSER,
        versions[0].version,
        super::enrol::COSIGNER,
        versions[1].version,
    );
    let log = files.dir.join("node.log");
    let started = Instant::now();
    let pid = fleet.spawn(org, &files.config, &log)?;
    nodes.push(DemoNode {
        api: ApiNode::new(files.target()),
        files,
        log,
    });
    let hub = super::org(super::HUB);
    let admitted_in = versions[1].version;
    {
        let [n, h] = super::two_mut(nodes, org, &hub)?;
        probe::wait_ready(&mut n.api, fleet).await?;
        probe::wait_same_vector(&mut n.api, &mut h.api, started, fleet).await?;
    }
    // The roster log is in its store; the versions apply right after.
    wait_one(node_mut(nodes, org)?, fleet, "running its admission", |s| {
        s.roster_version >= admitted_in
    })
    .await?;
    let caught_up = started.elapsed();
    println!(
        "  started {org} (pid {pid}): it dialled the hub from the roster, received the roster log and every member's entries, and ran roster v{admitted_in} with {hub}'s vector {} after its start",
        fmt_duration(caught_up)
    );
    let (origin, seqs, _) = submit(nodes, org, values).await?;
    let seen = probe::wait_seq(
        &mut apis(nodes, |o| o != org),
        &origin,
        *seqs.end(),
        Instant::now(),
        fleet,
    )
    .await?;
    let slowest = seen.values().max().copied().unwrap_or_default();
    println!(
        "  {} values submitted at {org} reached all {} other nodes within {}",
        values.len(),
        seen.len(),
        fmt_duration(slowest)
    );
    let after = snapshot(
        nodes
            .iter()
            .filter(|n| &n.api.org != org)
            .map(|n| n.files.dir.as_path()),
    )?;
    if after != before {
        let changed: Vec<String> = after
            .iter()
            .filter(|(p, bytes)| before.get(*p) != Some(*bytes))
            .map(|(p, _)| p.display().to_string())
            .collect();
        anyhow::bail!(
            "admitting {org} changed other nodes' files: {}",
            changed.join(", ")
        );
    }
    println!(
        "  no other node restarted, and none of their {} files changed (configs, keys, certificates)",
        before.len()
    );
    Ok(caught_up)
}

/// Rotates `at`'s signing key while it runs: its new entries wait at the peers, never
/// cutting a link, until the operators publish the rotation; then every node takes them.
pub(super) async fn rotate(
    ops: &Operators,
    at: &OrgId,
    values: &[SampleValue],
    nodes: &mut [DemoNode],
    fleet: &mut Fleet,
) -> anyhow::Result<(KeyId, KeyId, u64)> {
    let config = node_mut(nodes, at)?.files.config.clone();
    let mut cmd: Vec<OsString> = vec!["node".into(), "rotate-key".into(), "--config".into()];
    cmd.push(config.clone().into());
    ops.cli(&cmd).await?;
    let rotation_files = RotationFiles::of(&node_mut(nodes, at)?.files.dir.join("signing.key"));
    let pending =
        request_on_disk(&rotation_files)?.context("node rotate-key left no rotation request")?;
    let (old, new) = (KeyId::of(&pending.old_key), KeyId::of(&pending.new_key));
    println!(
        "  {at}: node rotate-key; the running node signs with key {new} from seq {} (key {old} signed up to {})",
        pending.first_seq(),
        pending.last_seq
    );
    let (origin, seqs, _) = submit(nodes, at, values).await?;
    let hub = super::org(super::HUB);
    let waiting = wait_one(
        node_mut(nodes, &hub)?,
        fleet,
        "held under the new key",
        |s| {
            s.unverified
                .iter()
                .any(|u| u.origin == at.as_str() && u.key_id == new.to_string() && u.entries > 0)
        },
    )
    .await?;
    let linked = waiting
        .peers
        .iter()
        .any(|p| p.org_id == at.as_str() && p.connected);
    println!(
        "  {} entries signed with the new key wait at {hub} for the roster to list it; the link to {at} stays {}",
        seqs.end() - seqs.start() + 1,
        if linked { "up" } else { "down (!)" }
    );
    let mut request: Vec<OsString> =
        vec!["members".into(), "rotate-key".into(), "--request".into()];
    request.push(rotation_files.request().into());
    let (id, version) = ops.propose(request).await?;
    let start = Instant::now();
    ops.cosign(&id, version).await?;
    let seen = probe::wait_seq(
        &mut apis(nodes, |o| o != at),
        &origin,
        *seqs.end(),
        start,
        fleet,
    )
    .await?;
    println!(
        "  the operators published the rotation (v{version}); every other node verified {origin}#{}..{} within {} of the publishing signature",
        seqs.start(),
        seqs.end(),
        fmt_duration(seen.values().max().copied().unwrap_or_default())
    );
    Ok((old, new, pending.first_seq()))
}

/// Suspends `victim` and times, on every other node, the moment it runs the new version and
/// holds no link with the victim; then shows the victim's own view of its refusal.
pub(super) async fn suspend(
    ops: &Operators,
    victim: &OrgId,
    nodes: &mut [DemoNode],
    fleet: &mut Fleet,
) -> anyhow::Result<BTreeMap<OrgId, Duration>> {
    let mut what: Vec<OsString> = vec!["members".into(), "suspend".into(), victim.as_str().into()];
    what.extend(["--reason".into(), "demo: suspended by the operators".into()]);
    let (id, version) = ops.propose(what).await?;
    let start = Instant::now();
    let cut = |s: &pb::StatusResponse| {
        s.roster_version >= version
            && !s
                .peers
                .iter()
                .any(|p| p.org_id == victim.as_str() && p.connected)
    };
    let mut others = apis(nodes, |o| o != victim);
    let (published, seen) = tokio::join!(
        ops.cosign(&id, version),
        probe::wait_each(&mut others, start, fleet, "the suspension applied", cut)
    );
    let published = published?;
    let seen = seen?;
    println!(
        "  {} proposed the suspension of {victim}, {} signed: v{version} published ({} for the signing command); time from that command's start until each node ran v{version} and held no link with {victim}:",
        super::enrol::PROPOSER,
        super::enrol::COSIGNER,
        fmt_duration(published.took)
    );
    let line: Vec<String> = seen
        .iter()
        .map(|(o, d)| format!("{o} {}", fmt_duration(*d)))
        .collect();
    println!("    {}", line.join(", "));
    let refused = wait_one(node_mut(nodes, victim)?, fleet, "cut off", |s| {
        !s.peers.is_empty() && s.peers.iter().all(|p| !p.connected)
    })
    .await?;
    let reason = refused
        .peers
        .iter()
        .map(|p| format!("{}: {}", p.org_id, p.last_error))
        .collect::<Vec<_>>()
        .join("; ");
    println!("  {victim} itself: no link up; its dials are refused ({reason})");
    let table = ops
        .admin(super::enrol::PROPOSER, vec!["status".into()])
        .await?;
    println!("  the operators' view (intelmesh admin status):");
    for line in table.lines() {
        println!("    {line}");
    }
    Ok(seen)
}

/// The summary figures of a suspension's cut.
pub(super) fn cut_figures(seen: &BTreeMap<OrgId, Duration>) -> (Duration, Duration) {
    let v: Vec<Duration> = seen.values().copied().collect();
    if v.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    (percentile(&v, 50), percentile(&v, 100))
}

/// Polls one node until `done` holds; its last status.
async fn wait_one(
    node: &mut DemoNode,
    fleet: &mut Fleet,
    what: &str,
    done: impl Fn(&pb::StatusResponse) -> bool,
) -> anyhow::Result<pb::StatusResponse> {
    let start = Instant::now();
    loop {
        fleet.check_alive(&node.api.org)?;
        let s = node.api.status().await?;
        if done(&s) {
            return Ok(s);
        }
        if start.elapsed() > PATIENCE {
            anyhow::bail!("{} was not {what} after {PATIENCE:?}", node.api.org);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file under `dirs` but data directories and logs, with its bytes.
fn snapshot<'a>(
    dirs: impl Iterator<Item = &'a Path>,
) -> anyhow::Result<BTreeMap<PathBuf, Vec<u8>>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "data" || name.ends_with(".log") {
                continue;
            }
            if path.is_dir() {
                walk(&path, out)?;
            } else {
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                out.insert(path, bytes);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for d in dirs {
        walk(d, &mut out)?;
    }
    Ok(out)
}
