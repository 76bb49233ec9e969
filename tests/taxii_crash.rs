//! A node SIGKILLed while a TAXII feed posts to it (the node a child process, the feed Python's
//! requests, the library under taxii2-client): every object the gateway acknowledged is in the
//! collection after the restart, and posting every envelope again, the one the kill cut off
//! included, succeeds whole, lists each value once and signs each value once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use intelmesh_node::provision::{free_loopback_addr, loopback_specs, star_links, ProvisionedNode};
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::process::NodeProcess;
use intelmesh_tests::taxii::{gateway_at, patterns, python, run_tool, script, Gateway};

/// The binary that runs a node in a child process (`tests/support/node_process.rs`).
const NODE_PROCESS: &str = env!("CARGO_BIN_EXE_node-process");
/// Objects per envelope, and envelopes the feed may post: it is stopped by the kill long before.
const SIZE: usize = 100;
const ENVELOPES: usize = 1_000;
/// Envelopes acknowledged before the kill.
const ACKED_BEFORE_KILL: usize = 6;
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_acknowledged_before_a_kill_are_in_the_collection_after_it() {
    let mut specs = loopback_specs("SG-IGCI", &["AU-AFP"]).expect("ports");
    for s in &mut specs {
        s.taxii = Some(free_loopback_addr().expect("port"));
    }
    let net = TestNet::provisioned(&specs, &star_links(&specs), &fast_limits());
    let au = org("AU-AFP");
    let node = &net.fed.nodes[&au];
    let child = NodeProcess::spawn(NODE_PROCESS, node).await;
    let g = gateway_of(node).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("feed.log");

    // The feed posts until the kill cuts it off.
    let posting = feed(&g, 0, ENVELOPES, &log);
    wait_for_acks(&log, ACKED_BEFORE_KILL).await;
    child.kill();
    let cut = finish(posting).await;
    let lost = cut["lost"]
        .as_u64()
        .unwrap_or_else(|| panic!("the kill cut the feed off: {cut}")) as usize;
    let before_kill = acked(&log);
    assert!(before_kill.len() >= ACKED_BEFORE_KILL, "{before_kill:?}");
    eprintln!(
        "{} envelopes acknowledged before the kill; the feed lost envelope {lost}",
        before_kill.len()
    );
    for (i, successes) in &before_kill {
        assert_eq!(*successes, SIZE, "envelope {i} acknowledged in part");
    }

    // Every acknowledged object survived the kill.
    let child = NodeProcess::spawn(NODE_PROCESS, node).await;
    let held = values_read(&g).await;
    for (i, _) in &before_kill {
        for value in values_of(*i) {
            assert!(held.contains(&value), "{value} was acknowledged, then lost");
        }
    }

    // The feed again, from the first envelope to the one cut off: each succeeds whole, and
    // what the node held already is not signed again.
    let again_log = dir.path().join("again.log");
    let again = finish(feed(&g, 0, lost + 1, &again_log)).await;
    assert!(again["lost"].is_null(), "{again}");
    let again = acked(&again_log);
    assert_eq!(again.len(), lost + 1, "{again:?}");
    assert!(again.iter().all(|(_, s)| *s == SIZE), "{again:?}");
    let all: BTreeSet<String> = (0..=lost).flat_map(values_of).collect();
    let read = read_all(&g).await;
    let read_patterns = patterns(&read);
    assert_eq!(read_patterns.len(), all.len(), "each value listed once");
    assert_eq!(values_in(&read_patterns), all);
    let status = child.status().await.expect("status");
    assert_eq!(
        status.vector.get("AU-AFP").copied(),
        Some(all.len() as u64),
        "each value signed once"
    );
}

async fn gateway_of(node: &ProvisionedNode) -> Gateway {
    let addr = node.config.taxii.as_ref().expect("[taxii]").listen;
    gateway_at(node, addr).await
}

/// Starts `tests/taxii/feed.py` posting envelopes `first..first+count`, answers logged to `log`.
fn feed(g: &Gateway, first: usize, count: usize, log: &Path) -> Child {
    Command::new(python())
        .arg(script("feed.py"))
        .arg(&g.collection)
        .arg(&g.ca)
        .args([&g.writer.0, &g.writer.1])
        .args([first.to_string(), count.to_string(), SIZE.to_string()])
        .arg(log)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs")
}

/// The feed's report once it has ended.
async fn finish(feed: Child) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || feed.wait_with_output())
        .await
        .expect("joins")
        .expect("the feed ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "feed failed: {}\n{stdout}",
        out.status
    );
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

async fn wait_for_acks(log: &Path, n: usize) {
    let start = Instant::now();
    while acked(log).len() < n {
        assert!(
            start.elapsed() < PATIENCE,
            "the feed acknowledged fewer than {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Envelopes the log says were acknowledged, with their success counts.
fn acked(log: &Path) -> Vec<(usize, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            (words.next() == Some("ack")).then_some(())?;
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect()
}

fn values_of(i: usize) -> Vec<String> {
    (0..SIZE)
        .map(|j| format!("f{i}-{j}.crash.example"))
        .collect()
}

async fn read_all(g: &Gateway) -> serde_json::Value {
    let read = run_tool(g, &["read", &g.collection, "--limit", "1000"], &g.writer).await;
    assert_eq!(read["status"], 200, "{read}");
    read
}

async fn values_read(g: &Gateway) -> BTreeSet<String> {
    values_in(&patterns(&read_all(g).await))
}

/// The domain each `[domain-name:value = '…']` pattern names.
fn values_in(patterns: &[String]) -> BTreeSet<String> {
    patterns
        .iter()
        .filter_map(|p| p.split('\'').nth(1).map(str::to_string))
        .collect()
}
