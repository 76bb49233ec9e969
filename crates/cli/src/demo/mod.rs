//! `intelmesh demo`: a hub and agencies as separate local processes sharing real indicators.
//! It builds the federation as operators would (genesis, each agency enrolled from its own
//! request, see `enrol`), submits through agencies' APIs and measures how fast each batch
//! reaches every other node, SIGKILLs one agency, submits more elsewhere, restarts it and
//! times its catch-up; then, live, admits a new member, rotates a key and suspends a member
//! (`control`); and ends by checking that all active nodes hold identical vectors and state
//! digests. Every figure it prints comes from the nodes' own APIs.

mod blind;
mod control;
mod enrol;
mod handover;
mod readback;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use intelmesh_core::{OrgId, Tlp};
use intelmesh_node::config::Limits;
use intelmesh_proto::v1 as pb;

use crate::corpus_sample::SampleValue;
use crate::fleet::Fleet;
use crate::probe::{self, fmt_duration, percentile, ApiNode, PATIENCE};
use crate::usage;
use enrol::{NodeFiles, Operators};

const HUB: &str = "SG-IGCI";
/// Agencies: org id, name, country. The one after the last of `--agencies` joins while the
/// federation runs.
const AGENCIES: [(&str, &str, &str); 8] = [
    ("AU-AFP", "Australian Federal Police", "AU"),
    ("BR-PF", "Policia Federal", "BR"),
    ("FR-OCLCTIC", "OCLCTIC", "FR"),
    ("DE-BKA", "Bundeskriminalamt", "DE"),
    ("JP-NPA", "National Police Agency", "JP"),
    ("NL-NHTCU", "National High Tech Crime Unit", "NL"),
    ("CA-RCMP", "Royal Canadian Mounted Police", "CA"),
    ("ZA-SAPS", "South African Police Service", "ZA"),
];

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Leave the federation running at the end (detached), with DIR/endpoints.json for the
    /// client commands and DIR/pids to stop it. On failure the nodes are stopped anyway.
    #[arg(long)]
    pub keep: bool,
    /// Directory for the federation (new or empty). Default: a temporary directory, removed
    /// at the end unless --keep or the demo fails (then it holds the node logs).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Number of agencies besides the hub at the start (one more joins while it runs).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=7))]
    pub agencies: u8,
    /// The threat-intel corpus (a folder with lists/amnesty and lists/eset). Default:
    /// ../shared/corpus if found, else a built-in sample.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Use the built-in sample even when the corpus is present.
    #[arg(long, conflicts_with = "corpus")]
    pub builtin_sample: bool,
    /// Indicators per Submit call.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub batch: u32,
}

/// One node of the demo: its files and its API.
struct DemoNode {
    api: ApiNode,
    files: NodeFiles,
    log: PathBuf,
}

/// What the summary reports.
struct Outcome {
    shared: usize,
    latency_p50: Duration,
    latency_max: Duration,
    batches: usize,
    victim: OrgId,
    missed: u64,
    catch_up: Duration,
    vector: String,
    digest: String,
    control: control::ControlOutcome,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (dir, tmp) = prepare_dir(args.dir.as_deref())?;
    let mut fleet = Fleet::new(args.keep)?;
    let mut nodes = Vec::new();
    let result = tokio::select! {
        r = demo(&args, &dir, &mut fleet, &mut nodes) => Some(r),
        signal = interrupted() => {
            println!("\n{signal}: stopping the node processes");
            None
        }
    };
    match result {
        None => {
            drop(fleet);
            Ok(ExitCode::from(crate::EXIT_INTERRUPTED))
        }
        Some(Err(e)) => {
            drop(fleet);
            // The logs are what explains a failure: keep them.
            let kept = tmp.map_or(dir.clone(), tempfile::TempDir::keep);
            Err(e.context(format!("demo failed (node logs in {})", kept.display())))
        }
        Some(Ok(outcome)) => {
            handover::summary(&outcome, &nodes);
            if args.keep {
                let kept = tmp.map_or(dir.clone(), tempfile::TempDir::keep);
                handover::keep(fleet, &kept, &nodes)?;
            } else {
                // A node's shutdown waits for its API connections to close: close ours first.
                for n in &mut nodes {
                    n.api.reset();
                }
                fleet.terminate_all(Duration::from_secs(8)).await;
                println!(
                    "stopped the {} node processes{}",
                    nodes.len(),
                    if tmp.is_some() {
                        " and removed the temporary directory (--keep leaves them running)"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The federation directory, absolute (node configs name files by absolute path, and the
/// nodes run from the current directory), and the temporary directory guard if we made one.
fn prepare_dir(dir: Option<&Path>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("intelmesh-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
        Some(d) => {
            if d.exists() {
                let mut entries = std::fs::read_dir(d)
                    .map_err(|e| usage(format!("--dir {}: {e}", d.display())))?;
                if entries.next().is_some() {
                    return Err(usage(format!(
                        "--dir {} is not empty: give a new or empty directory",
                        d.display()
                    )));
                }
            }
            std::fs::create_dir_all(d).map_err(|e| usage(format!("--dir {}: {e}", d.display())))?;
            let abs = d
                .canonicalize()
                .with_context(|| format!("resolving {}", d.display()))?;
            Ok((abs, None))
        }
    }
}

async fn interrupted() -> &'static str {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        // Without a SIGTERM handler, Ctrl-C still works.
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Short timers, so links come up and a restarted node reconnects within the demo's patience.
fn demo_limits() -> Limits {
    Limits {
        heartbeat_ms: 500,
        dead_after_ms: 5_000,
        stall_after_ms: 5_000,
        backoff_min_ms: 50,
        backoff_max_ms: 1_000,
        ..Limits::default()
    }
}

async fn demo(
    args: &DemoArgs,
    dir: &Path,
    fleet: &mut Fleet,
    nodes: &mut Vec<DemoNode>,
) -> anyhow::Result<Outcome> {
    let agencies = &AGENCIES[..usize::from(args.agencies)];
    let names: Vec<&str> = agencies.iter().map(|a| a.0).collect();
    println!(
        "intelmesh demo: hub {HUB} and agencies {}, each a separate process on 127.0.0.1",
        names.join(", ")
    );
    println!("  directory {}", dir.display());

    println!("\n0. the federation, built as its operators and agencies build it");
    let ops = Operators::init(dir, &org(HUB), demo_limits()).await?;
    nodes.push(start_node(fleet, ops.hub().clone())?);
    // The operators' commands go to the hub's Admin service.
    probe::wait_ready(&mut nodes[0].api, fleet).await?;
    let start = Instant::now();
    let mut roster_version = 1;
    for (id, name, country) in agencies {
        let (files, versions) = ops.enrol(&org(id), name, country, dir).await?;
        roster_version = versions[1].version;
        println!(
            "  {id}: node init (its keys stay in {}); {} proposed its admission from the request, {} signed: v{} published; its certificate (30 days) recorded in v{}; node join",
            files.dir.display(),
            enrol::PROPOSER,
            enrol::COSIGNER,
            versions[0].version,
            versions[1].version
        );
        nodes.push(start_node(fleet, files)?);
    }
    for n in nodes.iter_mut() {
        probe::wait_ready(&mut n.api, fleet).await?;
    }
    let ready = start.elapsed();
    probe::wait_linked(&mut apis(nodes, |_| true), fleet).await?;
    let what = format!("roster v{roster_version} running");
    probe::wait_each(&mut apis(nodes, |_| true), start, fleet, &what, |s| {
        s.roster_version >= roster_version
    })
    .await?;
    println!(
        "  all {} nodes answer Status {} after the first enrolment began; every link up and roster v{roster_version} running everywhere after {}",
        nodes.len(),
        fmt_duration(ready),
        fmt_duration(start.elapsed())
    );

    let sample = if args.builtin_sample {
        crate::corpus_sample::builtin()
    } else {
        crate::corpus_sample::load(args.corpus.as_deref())?
    };
    println!("\nindicators: {}", sample.description);
    let split = (sample.values.len() * 3 / 4).max(1);
    let (first, second) = sample.values.split_at(split);
    let batch = args.batch as usize;

    // Phase 1: batches at each agency in turn, timed until every other node holds them.
    let submitters: Vec<OrgId> = agencies.iter().map(|a| org(a.0)).collect();
    println!(
        "\n1. propagation: {} values in batches of {batch}, submitted at {} in turn",
        first.len(),
        names.join(", ")
    );
    let mut per_node: BTreeMap<OrgId, Vec<Duration>> = BTreeMap::new();
    let mut to_all = Vec::new();
    let mut submit_times = Vec::new();
    for (i, chunk) in first.chunks(batch).enumerate() {
        let at = &submitters[i % submitters.len()];
        let (origin, seqs, took) = submit(nodes, at, chunk).await?;
        submit_times.push(took);
        let since = Instant::now();
        let seen = probe::wait_seq(
            &mut apis(nodes, |o| o != at),
            &origin,
            *seqs.end(),
            since,
            fleet,
        )
        .await?;
        let line: Vec<String> = seen
            .iter()
            .map(|(o, d)| format!("{o} {}", fmt_duration(*d)))
            .collect();
        println!(
            "  batch {:>2}: {origin}#{}..{} ({} values) visible at {}",
            i + 1,
            seqs.start(),
            seqs.end(),
            chunk.len(),
            line.join(", ")
        );
        to_all.extend(seen.values().max().copied());
        for (o, d) in seen {
            per_node.entry(o).or_default().push(d);
        }
    }
    println!(
        "  time from Submit returning to the entries being durable at each node (Status vector):"
    );
    for (o, v) in &per_node {
        println!(
            "    {:<11} p50 {:>9}  max {:>9}  ({} batches)",
            o.as_str(),
            fmt_duration(percentile(v, 50)),
            fmt_duration(percentile(v, 100)),
            v.len()
        );
    }
    println!(
        "    at every other node: p50 {}, max {}; Submit itself (sign + durable append): p50 {}",
        fmt_duration(percentile(&to_all, 50)),
        fmt_duration(percentile(&to_all, 100)),
        fmt_duration(percentile(&submit_times, 50))
    );
    readback::spot_check(nodes, first, &submitters, batch).await?;

    // Phase 2: a crash, updates while it is down, a restart and its catch-up.
    let victim = submitters[submitters.len() - 1].clone();
    let writer = submitters[0].clone();
    println!("\n2. crash and catch-up");
    let before = node_mut(nodes, &victim)?.api.status().await?;
    fleet.kill(&victim)?;
    node_mut(nodes, &victim)?.api.reset();
    println!(
        "  killed {victim} with SIGKILL; it held {}",
        crate::render::vector_text(&before.vector)
    );
    let mut last = None;
    for chunk in second.chunks(batch) {
        let (origin, seqs, _) = submit(nodes, &writer, chunk).await?;
        last = Some((origin, *seqs.end()));
    }
    let (origin, seq) = last.context("no values left for phase 2")?;
    let since = Instant::now();
    probe::wait_seq(
        &mut apis(nodes, |o| o != &writer && o != &victim),
        &origin,
        seq,
        since,
        fleet,
    )
    .await?;
    println!(
        "  submitted {} more at {writer} (up to {origin}#{seq}); the running nodes hold them",
        second.len()
    );
    let hub = org(HUB);
    let reference = node_mut(nodes, &hub)?.api.status().await?;
    let missed = probe::lag(&before.vector, &reference.vector);
    let restart = Instant::now();
    let pid = {
        let n = node_mut(nodes, &victim)?;
        fleet.spawn(&victim, &n.files.config, &n.log)?
    };
    let answered = probe::wait_ready(&mut node_mut(nodes, &victim)?.api, fleet).await?;
    let catch_up = {
        let [v, h] = two_mut(nodes, &victim, &hub)?;
        probe::wait_same_vector(&mut v.api, &mut h.api, restart, fleet).await?
    };
    println!(
        "  restarted {victim} (pid {pid}), {missed} entries behind: it answered Status after {} and matched {hub}'s vector {} after the restart",
        fmt_duration(answered),
        fmt_duration(catch_up)
    );

    // Phases 3 to 5: the control plane, live.
    let (id, name, country) = AGENCIES[agencies.len()];
    let newcomer = org(id);
    println!("\n3. a new member while everything runs");
    let newcomer_caught_up = control::admit(
        &ops,
        (&newcomer, name, country),
        dir,
        &first[..batch.min(first.len())],
        nodes,
        fleet,
    )
    .await?;
    let rotated = submitters[0].clone();
    println!("\n4. a key rotation without a restart");
    // Values another agency asserted in phase 1: new to this origin.
    let others = first.chunks(batch).nth(1).unwrap_or(second);
    let (old_key, new_key, first_new_seq) =
        control::rotate(&ops, &rotated, others, nodes, fleet).await?;
    let suspended = submitters[submitters.len() - 1].clone();
    println!("\n5. a suspension");
    let cut = control::suspend(&ops, &suspended, nodes, fleet).await?;
    let (cut_p50, cut_max) = control::cut_figures(&cut);

    // Phase 6: every active node's own account of what it holds.
    println!("\n6. convergence of the active members");
    let all = probe::wait_converged(&mut apis(nodes, |o| o != &suspended), fleet).await?;
    for s in &all {
        println!(
            "  {:<11} {}  digest {}  flagged {}  held {}",
            s.org_id,
            crate::render::vector_text(&s.vector),
            s.state_digest,
            s.flagged_origins.len(),
            s.held_entries
        );
    }
    let digest = &all[0].state_digest;
    if let Some(odd) = all.iter().find(|s| &s.state_digest != digest) {
        anyhow::bail!(
            "state digests differ: {} has {} but {} has {}",
            all[0].org_id,
            digest,
            odd.org_id,
            odd.state_digest
        );
    }
    if let Some(s) = all
        .iter()
        .find(|s| !s.flagged_origins.is_empty() || s.held_entries > 0)
    {
        anyhow::bail!(
            "{} flags {:?} and holds {} entries back; expected neither",
            s.org_id,
            s.flagged_origins,
            s.held_entries
        );
    }

    // Phase 7: restricted data the hub relays but cannot read.
    println!("\n7. a RED share through the hub, which cannot read it");
    let others: Vec<OrgId> = submitters
        .iter()
        .filter(|o| **o != rotated && **o != suspended)
        .cloned()
        .collect();
    blind::red_share(nodes, &rotated, &newcomer, &hub, &others).await?;
    Ok(Outcome {
        shared: sample.values.len(),
        latency_p50: percentile(&to_all, 50),
        latency_max: percentile(&to_all, 100),
        batches: to_all.len(),
        victim,
        missed,
        catch_up,
        vector: crate::render::vector_text(&all[0].vector),
        digest: digest.clone(),
        control: control::ControlOutcome {
            newcomer,
            newcomer_caught_up,
            rotated,
            old_key,
            new_key,
            first_new_seq,
            suspended,
            cut_p50,
            cut_max,
            cut_nodes: cut.len(),
        },
    })
}

/// Starts `files`' node as a child process and prints where it listens.
fn start_node(fleet: &mut Fleet, files: NodeFiles) -> anyhow::Result<DemoNode> {
    let log = files.dir.join("node.log");
    let pid = fleet.spawn(&files.org, &files.config, &log)?;
    println!(
        "  started {:<11} pid {pid:<7} federation {} api {}  log {}",
        files.org.as_str(),
        files.federation,
        files.api,
        log.display()
    );
    Ok(DemoNode {
        api: ApiNode::new(files.target()),
        files,
        log,
    })
}

fn org(name: &str) -> OrgId {
    // The names are constants above, all valid ids.
    OrgId::parse(name).unwrap_or_else(|_| unreachable!("invalid built-in org id {name}"))
}

fn node_mut<'a>(nodes: &'a mut [DemoNode], o: &OrgId) -> anyhow::Result<&'a mut DemoNode> {
    nodes
        .iter_mut()
        .find(|n| &n.api.org == o)
        .with_context(|| format!("no node {o}"))
}

fn two_mut<'a>(
    nodes: &'a mut [DemoNode],
    a: &OrgId,
    b: &OrgId,
) -> anyhow::Result<[&'a mut DemoNode; 2]> {
    let ia = nodes.iter().position(|n| &n.api.org == a);
    let ib = nodes.iter().position(|n| &n.api.org == b);
    match (ia, ib) {
        (Some(ia), Some(ib)) if ia != ib => nodes
            .get_disjoint_mut([ia, ib])
            .map_err(|e| anyhow::anyhow!("{e}")),
        _ => anyhow::bail!("need two distinct nodes {a} and {b}"),
    }
}

/// The APIs of the nodes whose org passes `keep`.
fn apis(nodes: &mut [DemoNode], keep: impl Fn(&OrgId) -> bool) -> Vec<&mut ApiNode> {
    nodes
        .iter_mut()
        .map(|n| &mut n.api)
        .filter(|a| keep(&a.org))
        .collect()
}

/// A GREEN upsert of the raw value; the node normalizes it and fills the body's indicator.
fn demo_submission(v: &SampleValue) -> pb::Submission {
    pb::Submission {
        r#type: v.ty.to_proto() as i32,
        value: v.raw.clone(),
        distribution: Some(pb::Distribution {
            tlp: Tlp::Green.to_proto() as i32,
            recipients: Vec::new(),
        }),
        body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
            confidence: 80,
            tags: vec![v.source.clone(), "intelmesh-demo".to_string()],
            ..Default::default()
        })),
    }
}

/// Submits `values` at `at`; returns the origin, the seqs assigned and how long Submit took.
async fn submit(
    nodes: &mut [DemoNode],
    at: &OrgId,
    values: &[SampleValue],
) -> anyhow::Result<(OrgId, std::ops::RangeInclusive<u64>, Duration)> {
    let node = node_mut(nodes, at)?;
    let mut client = node.api.indicators().await?;
    let request = pb::SubmitRequest {
        submissions: values.iter().map(demo_submission).collect(),
        ..Default::default()
    };
    let start = Instant::now();
    let response = tokio::time::timeout(PATIENCE, client.submit(request))
        .await
        .with_context(|| format!("Submit at {at} took over {PATIENCE:?}"))?
        .map_err(|s| crate::conn::rpc_error(&node.api.target, "Submit", s))?
        .into_inner();
    let took = start.elapsed();
    let assigned = &response.assigned;
    let (Some(first), Some(last)) = (assigned.first(), assigned.last()) else {
        anyhow::bail!("Submit at {at} assigned nothing to {} values", values.len());
    };
    if assigned.len() != values.len() || assigned.iter().any(|a| a.origin != at.as_str()) {
        anyhow::bail!(
            "Submit at {at} of {} values assigned {} entries (origins {:?})",
            values.len(),
            assigned.len(),
            assigned
                .iter()
                .map(|a| a.origin.as_str())
                .collect::<Vec<_>>()
        );
    }
    Ok((at.clone(), first.seq..=last.seq, took))
}
