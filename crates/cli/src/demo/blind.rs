//! The demo's RED share through the hub: one agency submits RED indicators for another, the
//! recipient reads them, the hub and the other agencies cannot, and the hub's data directory
//! holds no byte of the values (the demo searches it, and the recipient's, to show the search
//! finds them where they are).

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use intelmesh_core::OrgId;
use intelmesh_node::config::NodeConfig;
use intelmesh_proto::v1 as pb;

use super::{node_mut, DemoNode};
use crate::probe::{fmt_duration, PATIENCE};

/// Values no sample holds: an address of TEST-NET-3 and a name under `.example`.
const VALUES: [(pb::IndicatorType, &str); 2] = [
    (pb::IndicatorType::Ipv4, "203.0.113.201"),
    (
        pb::IndicatorType::Domain,
        "bilateral-red.intelmesh-demo.example",
    ),
];

/// Shares [`VALUES`] as RED from `origin` to `recipient` and checks who can read them: the
/// recipient through its API; not the hub nor `others`; and not one byte of them under the hub's
/// data directory.
pub(super) async fn red_share(
    nodes: &mut [DemoNode],
    origin: &OrgId,
    recipient: &OrgId,
    hub: &OrgId,
    others: &[OrgId],
) -> anyhow::Result<()> {
    let submissions = VALUES
        .iter()
        .map(|(ty, value)| pb::Submission {
            r#type: *ty as i32,
            value: value.to_string(),
            distribution: Some(pb::Distribution {
                tlp: pb::Tlp::Red as i32,
                recipients: vec![recipient.to_string()],
            }),
            body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
                confidence: 90,
                tags: vec!["bilateral".into(), "intelmesh-demo".into()],
                ..Default::default()
            })),
        })
        .collect();
    let at = node_mut(nodes, origin)?;
    let target = at.api.target.clone();
    let assigned = at
        .api
        .indicators()
        .await?
        .submit(pb::SubmitRequest {
            submissions,
            ..Default::default()
        })
        .await
        .map_err(|s| crate::conn::rpc_error(&target, "Submit", s))?
        .into_inner()
        .assigned;
    let seqs: Vec<u64> = assigned.iter().map(|a| a.seq).collect();
    let start = Instant::now();
    while !reads_all(node_mut(nodes, recipient)?).await? {
        if start.elapsed() > PATIENCE {
            anyhow::bail!("{recipient} did not read the RED values within {PATIENCE:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    println!(
        "  {origin} submitted {} RED values for {recipient} only (#{:?}), sealed to the two of them (HPKE): {recipient} reads them {} later",
        VALUES.len(),
        seqs,
        fmt_duration(start.elapsed())
    );
    for other in std::iter::once(hub).chain(others) {
        if reads_any(node_mut(nodes, other)?).await? {
            anyhow::bail!("{other}'s API shows a RED value meant for {recipient} only");
        }
    }
    let names: Vec<&str> = std::iter::once(hub)
        .chain(others)
        .map(OrgId::as_str)
        .collect();
    println!("  the APIs of {} show nothing of them", names.join(", "));

    let hub_data = data_dir(node_mut(nodes, hub)?)?;
    let recipient_data = data_dir(node_mut(nodes, recipient)?)?;
    let at_hub = search(&hub_data)?;
    let at_recipient = search(&recipient_data)?;
    if at_hub.found > 0 {
        anyhow::bail!(
            "{hub}'s data directory {} holds {} of the RED values in plain text",
            hub_data.display(),
            at_hub.found
        );
    }
    if at_recipient.found < VALUES.len() {
        anyhow::bail!(
            "the search found {} of the {} values at {recipient}, which reads them: the search is broken",
            at_recipient.found,
            VALUES.len()
        );
    }
    println!(
        "  {hub} holds only ciphertext: {} files ({:.1} MiB) under {} searched byte for byte for the {} values: none found (the same search under {recipient}'s data directory finds all {})",
        at_hub.files,
        at_hub.bytes as f64 / (1 << 20) as f64,
        hub_data.display(),
        VALUES.len(),
        at_recipient.found
    );
    Ok(())
}

async fn gets(node: &mut DemoNode) -> anyhow::Result<Vec<bool>> {
    let target = node.api.target.clone();
    let mut client = node.api.indicators().await?;
    let mut seen = Vec::new();
    for (ty, value) in VALUES {
        let got = client
            .get(pb::GetRequest {
                r#type: ty as i32,
                value: value.to_string(),
            })
            .await
            .map_err(|s| crate::conn::rpc_error(&target, "Get", s))?
            .into_inner();
        seen.push(got.state.is_some_and(|s| !s.assertions.is_empty()));
    }
    Ok(seen)
}

async fn reads_all(node: &mut DemoNode) -> anyhow::Result<bool> {
    Ok(gets(node).await?.iter().all(|s| *s))
}

async fn reads_any(node: &mut DemoNode) -> anyhow::Result<bool> {
    Ok(gets(node).await?.iter().any(|s| *s))
}

fn data_dir(node: &DemoNode) -> anyhow::Result<std::path::PathBuf> {
    let cfg = NodeConfig::load(&node.files.config)
        .with_context(|| format!("reading {}", node.files.config.display()))?;
    Ok(cfg.data_dir)
}

/// What a search of a directory found.
#[derive(Default)]
struct Search {
    files: usize,
    bytes: u64,
    /// How many of [`VALUES`] some file contains.
    found: usize,
}

fn search(dir: &Path) -> anyhow::Result<Search> {
    let mut s = Search::default();
    let mut seen = [false; VALUES.len()];
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for item in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = item?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            s.files += 1;
            s.bytes += bytes.len() as u64;
            for (i, (_, value)) in VALUES.iter().enumerate() {
                let needle = value.as_bytes();
                seen[i] |= bytes.windows(needle.len()).any(|w| w == needle);
            }
        }
    }
    s.found = seen.iter().filter(|f| **f).count();
    Ok(s)
}
