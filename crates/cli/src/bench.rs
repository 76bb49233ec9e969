//! `intelmesh bench …`: throughput figures on this machine. Each prints a human summary and,
//! as its last line, one JSON object.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Subcommand;
use ed25519_dalek::{Signature, VerifyingKey};
use intelmesh_core::entry::{sha256, signed_message};
use intelmesh_core::verify::VerifyConfig;
use intelmesh_core::{
    Distribution, KeyId, KeyRegistry, OrgId, Signer, StaticKeys, Tlp, VerifiedEntry,
};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{SledStore, Store, StoreConfig};
use prost::bytes::Bytes;
use prost::Message;
use rayon::prelude::*;

#[path = "bench_net.rs"]
mod net;

const ORIGINS: usize = 16;
/// Entries per ed25519 batch check, in the receiving path and in the verify ceiling alike: the
/// node's own chunk size, so the ceiling is the same crypto work without the rest of the path.
const VERIFY_CHUNK: usize = intelmesh_node::state::VERIFY_CHUNK;
/// Batches verified ahead of the one being stored, as a node's link does.
const VERIFY_AHEAD: usize = intelmesh_node::state::VERIFY_AHEAD;

#[derive(Subcommand)]
pub enum Which {
    /// The receiving path for entries from a peer: decode, batch-verify, chain check, durable
    /// append (flush per batch), index update; plus the verify and store ceilings.
    Ingest {
        /// How many signed upserts to generate and ingest.
        #[arg(long, default_value_t = 200_000)]
        updates: usize,
        /// Entries per received batch (one flush each).
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        /// Where to put the stores (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rounds of path and ceilings, alternating; the best of each is reported, so a burst
        /// of load from elsewhere on a shared machine does not skew the ratio.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Propagation latency: a hub and agencies in this process over mutual-TLS gRPC on
    /// 127.0.0.1; one agency gets `Indicators.Submit` calls at a steady rate; latency is from
    /// the call to the entry being durable at every other node.
    Propagate {
        /// Nodes in the federation, hub included (a star: every agency dials the hub).
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Submissions per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// How long to submit.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Submissions per Submit call (one call per tick).
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Catch-up: a node whose store holds `missing` entries from several origins, and an empty
    /// node that links to it; rate until their vectors match, and bytes received per byte of
    /// entries.
    Catchup {
        /// Entries the empty node lacks.
        #[arg(long, default_value_t = 1_000_000)]
        missing: usize,
        /// Origins those entries come from.
        #[arg(long, default_value_t = 16)]
        origins: usize,
        /// Most entries per EntryBatch frame (the nodes' `limits.max_batch_entries`).
        #[arg(long, default_value_t = intelmesh_node::config::Limits::default().max_batch_entries)]
        batch: usize,
        /// Where to put the stores (default: a temporary directory, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print only the JSON line.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Ingest {
            updates,
            batch,
            dir,
            rounds,
            json,
        } => ingest(IngestOpts {
            updates,
            batch,
            dir,
            rounds,
            json,
        }),
        Which::Propagate {
            nodes,
            rate,
            secs,
            batch,
            json,
        } => net::propagate(net::PropagateOpts {
            nodes,
            rate,
            secs,
            batch,
            json,
        }),
        Which::Catchup {
            missing,
            origins,
            batch,
            dir,
            json,
        } => net::catchup(net::CatchupOpts {
            missing,
            origins,
            batch,
            dir,
            json,
        }),
    }
}

struct IngestOpts {
    updates: usize,
    batch: usize,
    dir: Option<PathBuf>,
    rounds: usize,
    json: bool,
}

/// The best figures over the rounds of `bench ingest`.
#[derive(Default)]
struct Best {
    rate: f64,
    cpu_us: f64,
    verify: f64,
    store: f64,
}

fn ingest(o: IngestOpts) -> anyhow::Result<()> {
    if o.updates < ORIGINS {
        bail!("--updates must be at least {ORIGINS} (one per origin)");
    }
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if o.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let tmp = net::bench_dir(o.dir.as_deref())?;
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };

    let t = Instant::now();
    let (signers, wire) = generate(o.updates);
    let mut keys = StaticKeys::default();
    for s in &signers {
        keys.insert(s.org().clone(), s.verifying_key());
    }
    let batches = interleave(&wire, o.batch);
    let wire_bytes = wire.iter().flatten().map(Bytes::len).sum::<usize>() as u64;
    say(format!(
        "generated {} signed upserts from {ORIGINS} origins in {:.1}s ({} MiB on the wire, {} batches)",
        o.updates,
        t.elapsed().as_secs_f64(),
        wire_bytes >> 20,
        batches.len()
    ));
    say(format!(
        "ceilings: ed25519 batch verify on {} threads, {VERIFY_CHUNK} signatures per check; sled batch insert + flush of the same bytes",
        rayon::current_num_threads()
    ));

    let mut best = Best::default();
    for round in 1..=o.rounds {
        let path = tmp.path().join(format!("node-{round}"));
        let node = SledStore::open(StoreConfig::new(&path))?;
        let (cpu, written) = (net::cpu_seconds(), net::written_bytes());
        let rate = measure_receive(&batches, &keys, &node)?;
        let cpu_us = (net::cpu_seconds() - cpu) * 1e6 / o.updates as f64;
        let written = net::written_bytes() - written;
        if round == 1 {
            say(reopen(node, &path)?);
        } else {
            drop(node);
        }
        remove_store(&path)?;
        let raw = tmp.path().join(format!("raw-{round}"));
        let verify = measure_verify(&wire, &keys)?;
        let store = measure_store(&batches, raw.clone())?;
        remove_store(&raw)?;
        say(format!(
            "round {round}: receive path {rate:.0} updates/s ({cpu_us:.1} µs of CPU per update, {} MiB written, {:.1}× the entries' bytes); verify ceiling {verify:.0}/s; store ceiling {store:.0}/s",
            written >> 20,
            written as f64 / wire_bytes as f64
        ));
        if rate > best.rate {
            best.rate = rate;
            best.cpu_us = cpu_us;
        }
        best.verify = best.verify.max(verify);
        best.store = best.store.max(store);
    }
    let store_alone = measure_store_path(&batches, &keys, tmp.path().join("alone"))?;
    say(format!(
        "store path alone (chain check, append, index, flush; pre-verified): {store_alone:.0}/s"
    ));
    let ratio = best.rate / best.verify.min(best.store);
    out!(
        "{}",
        serde_json::json!({
            "bench": "ingest",
            "updates": o.updates,
            "rate": best.rate.round(),
            "verify_ceiling": best.verify.round(),
            "store_ceiling": best.store.round(),
            "ratio": (ratio * 1000.0).round() / 1000.0,
            "cpu_us_per_update": (best.cpu_us * 10.0).round() / 10.0,
            "rounds": o.rounds,
        })
    );
    Ok(())
}

/// Closes the store (writing its index snapshot) and opens it again: what a restart costs.
fn reopen(node: SledStore, path: &std::path::Path) -> anyhow::Result<String> {
    let t = Instant::now();
    drop(node);
    let closed = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reopened = SledStore::open(StoreConfig::new(path))?;
    Ok(format!(
        "closing that store (index snapshot written): {closed:.2}s; reopening it ({} indicators, index from {:?}): {:.2}s",
        reopened.indicator_count(),
        reopened.index_source(),
        t.elapsed().as_secs_f64()
    ))
}

fn remove_store(path: &std::path::Path) -> anyhow::Result<()> {
    std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// Signs `n` upserts spread over the origins, each origin's chain on its own core.
fn generate(n: usize) -> (Vec<Signer>, Vec<Vec<Bytes>>) {
    let signers: Vec<Signer> = (0..ORIGINS)
        .map(|i| Signer::generate(OrgId::parse(&format!("BENCH-{i:02}")).expect("valid org id")))
        .collect();
    let dist = Distribution {
        tlp: Tlp::Green,
        recipients: vec![],
    };
    let now = intelmesh_core::now_unix_ms();
    let wire = signers
        .par_iter()
        .enumerate()
        .map(|(o, signer)| {
            let count = n / ORIGINS + usize::from(o < n % ORIGINS);
            let mut head = None;
            (0..count)
                .map(|i| {
                    let payload = sample_upsert((i * ORIGINS + o) as u64);
                    let (entry, next) = signer.sign_next(head, now, &dist, &payload);
                    head = Some(next);
                    Bytes::from(entry.encode_to_vec())
                })
                .collect()
        })
        .collect();
    (signers, wire)
}

/// A realistic upsert; `n` picks the type and makes the value unique.
fn sample_upsert(n: u64) -> pb::Payload {
    let (ty, value) = match n % 4 {
        0 => (
            pb::IndicatorType::Ipv4,
            Ipv4Addr::from(0x0B00_0000 + n as u32).to_string(),
        ),
        1 => (pb::IndicatorType::Domain, format!("c2-{n}.bad-example.com")),
        2 => (
            pb::IndicatorType::Sha256,
            hex::encode(sha256(&n.to_be_bytes())),
        ),
        _ => (
            pb::IndicatorType::Url,
            format!("http://drop-{n}.bad-example.net/gate.php"),
        ),
    };
    pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: ty as i32,
                value,
            }),
            confidence: 80,
            valid_from_unix_ms: 1_700_000_000_000,
            valid_until_unix_ms: Some(1_900_000_000_000),
            tags: vec!["botnet".into(), format!("campaign-{}", n % 97)],
            threat_types: vec!["c2".into()],
            description: "observed beaconing in incident response".into(),
            external_references: vec![],
        })),
        ..Default::default()
    }
}

/// Cuts the origins' logs into peer batches: each batch holds the next run of every origin.
/// Entries are `Bytes`, as tonic hands them to the node: decoding one shares its buffer.
fn interleave(wire: &[Vec<Bytes>], batch: usize) -> Vec<Vec<Bytes>> {
    let per_origin = (batch / wire.len()).max(1);
    let longest = wire.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest.div_ceil(per_origin))
        .map(|b| {
            wire.iter()
                .flat_map(|log| log.iter().skip(b * per_origin).take(per_origin))
                .cloned()
                .collect()
        })
        .collect()
}

/// Decodes and verifies on all cores, up to [`VERIFY_AHEAD`] batches ahead, while a store
/// thread appends the batches in order: the shape of a node's link.
fn measure_receive(
    batches: &[Vec<Bytes>],
    keys: &StaticKeys,
    store: &SledStore,
) -> anyhow::Result<f64> {
    let total: usize = batches.iter().map(Vec::len).sum();
    let t = Instant::now();
    let (tx, rx) = sync_channel::<Vec<VerifiedEntry>>(1);
    let appended = std::thread::scope(|s| -> anyhow::Result<usize> {
        let writer = std::thread::Builder::new()
            .name("store".into())
            .spawn_scoped(s, move || -> anyhow::Result<usize> {
                let mut appended = 0;
                for batch in rx {
                    appended += store.apply(batch)?.appended();
                }
                Ok(appended)
            })?;
        let cfg = VerifyConfig::at(intelmesh_core::now_unix_ms());
        let cfg = &cfg;
        rayon::in_place_scope(|scope| {
            let mut pending = VecDeque::with_capacity(VERIFY_AHEAD);
            let mut unread = batches.iter();
            loop {
                while pending.len() < VERIFY_AHEAD {
                    let Some(batch) = unread.next() else { break };
                    let (done, verified) = sync_channel(1);
                    scope.spawn(move |_| {
                        let _ = done.send(verify_received(batch, keys, cfg));
                    });
                    pending.push_back(verified);
                }
                let Some(next) = pending.pop_front() else {
                    break;
                };
                // A closed channel means the store thread stopped; its error is reported below.
                let Ok(verified) = next.recv() else { break };
                if tx.send(verified).is_err() {
                    break;
                }
            }
            drop(tx);
        });
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("store thread panicked"))?
    })?;
    let secs = t.elapsed().as_secs_f64();
    if appended != total {
        bail!("only {appended} of {total} entries were appended");
    }
    Ok(total as f64 / secs)
}

/// What a node does with an entry batch frame: decode the entries, verify them on all cores.
fn verify_received(batch: &[Bytes], keys: &StaticKeys, cfg: &VerifyConfig) -> Vec<VerifiedEntry> {
    let decoded = batch
        .iter()
        .filter_map(|bytes| pb::SignedEntry::decode(bytes.clone()).ok())
        .collect();
    let mut verified = Vec::with_capacity(batch.len());
    verified.extend(
        intelmesh_core::verify::verify_batch_parallel(decoded, keys, cfg, VERIFY_CHUNK)
            .into_iter()
            .filter_map(Result::ok),
    );
    verified
}

/// The store's part of the receiving path on its own, with entries verified beforehand.
fn measure_store_path(
    batches: &[Vec<Bytes>],
    keys: &StaticKeys,
    path: PathBuf,
) -> anyhow::Result<f64> {
    let store = SledStore::open(StoreConfig::new(path))?;
    let cfg = VerifyConfig::at(intelmesh_core::now_unix_ms());
    let verified: Vec<Vec<VerifiedEntry>> = batches
        .iter()
        .map(|b| verify_received(b, keys, &cfg))
        .collect();
    let total: usize = verified.iter().map(Vec::len).sum();
    let t = Instant::now();
    for batch in verified {
        store.apply(batch)?;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

/// Raw ed25519 batch verification of the same signatures on all cores: the crypto ceiling.
fn measure_verify(wire: &[Vec<Bytes>], keys: &StaticKeys) -> anyhow::Result<f64> {
    let mut items: Vec<(Vec<u8>, Signature, VerifyingKey)> = Vec::new();
    for bytes in wire.iter().flatten() {
        let e = pb::SignedEntry::decode(bytes.clone())?;
        let h = pb::EntryHeader::decode(e.header.as_ref())?;
        let org = OrgId::parse(&h.origin)?;
        let key_id = KeyId(h.key_id.as_slice().try_into().context("key id length")?);
        let key = keys
            .key(&org, &key_id)
            .context("bench origin without key")?;
        items.push((
            signed_message(&e.header),
            Signature::from_slice(&e.signature)?,
            key,
        ));
    }
    let t = Instant::now();
    let all_ok = items.par_chunks(VERIFY_CHUNK).all(|chunk| {
        let mut batch = intelmesh_core::signature::Batch::default();
        for (m, s, k) in chunk {
            batch.queue(k, m, s);
        }
        batch.verify()
    });
    let secs = t.elapsed().as_secs_f64();
    if !all_ok {
        bail!("a bench signature failed to verify");
    }
    Ok(items.len() as f64 / secs)
}

/// Raw sled: the same entry bytes, same batches, apply_batch + flush each: the disk ceiling.
fn measure_store(batches: &[Vec<Bytes>], path: PathBuf) -> anyhow::Result<f64> {
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(256 << 20)
        .open()?;
    let total: usize = batches.iter().map(Vec::len).sum();
    let t = Instant::now();
    let mut n: u64 = 0;
    for batch in batches {
        let mut b = sled::Batch::default();
        for bytes in batch {
            n += 1;
            b.insert(&n.to_be_bytes(), bytes.as_ref());
        }
        db.apply_batch(b)?;
        db.flush()?;
    }
    Ok(total as f64 / t.elapsed().as_secs_f64())
}
