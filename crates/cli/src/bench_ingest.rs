//! `intelmesh bench ingest`: a node's receiving path, measured from outside. A real node runs
//! in this process (`intelmesh_node::start`, provisioned in a temp dir) and the bench is its
//! peer: it sends signed entries over a mutual-TLS `Federation.Sync` stream, in the node's
//! frame size, until the node's progress covers every one. Two ceilings frame the rate:
//! verification alone (the node's own function on all cores) and the store alone (the same
//! entries, verified beforehand, applied in the same batches).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use intelmesh_core::sealed::{DecryptionKeys, EncryptionPublic, EncryptionSecret};
use intelmesh_core::sign::ReaderKeys;
use intelmesh_core::verify::{verify_batch_parallel, VerifyConfig};
use intelmesh_core::{Distribution, OrgId, Signer, StaticKeys, Tlp, VerifiedEntry};
use intelmesh_node::config::Limits;
use intelmesh_node::provision::{loopback_specs, provision, Federation};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, Store, StoreConfig};
use prost::Message;
use rayon::prelude::*;

use super::net::{self, add_members, org, provisioned_keys};
use super::peer::{self, Credentials, Target};
use super::sample_upsert;
use super::sys::{cpu_seconds, written_bytes};

const ORIGINS: usize = 16;
/// Entries per ed25519 batch check: the node's own, so the verify ceiling is the node's crypto.
const VERIFY_CHUNK: usize = intelmesh_node::state::VERIFY_CHUNK;
/// Frames sent ahead of the node's progress. A sending node is held back only by its link's
/// queue (`peer_queue_frames`, 8) and the HTTP/2 window (one message, 8 MiB: about 26 frames of
/// these entries), so the bench keeps about as many in flight and the receiver alone sets the
/// pace. (With 10, the node waited for frames: 68k updates/s against 78k with 40.)
pub(crate) const WINDOW_FRAMES: usize = 32;

/// Options of `bench ingest`.
pub struct IngestOpts {
    pub updates: usize,
    pub batch: usize,
    pub dir: Option<PathBuf>,
    pub rounds: usize,
    /// Also measure RED entries sealed to three recipients.
    pub restricted: bool,
    pub json: bool,
}

/// The federation the rounds run in, and what the peer sends.
struct Bench {
    /// Holds the provisioned federation and the rounds' stores.
    dir: tempfile::TempDir,
    fed: Federation,
    /// The node under measurement.
    receiver: OrgId,
    /// The peer (a hub) whose node certificate the bench presents.
    peer: OrgId,
    keys: StaticKeys,
    frames: Vec<Vec<pb::SignedEntry>>,
    /// Each origin's last seq: what the node's progress must reach.
    heads: BTreeMap<String, u64>,
    entries: usize,
    entry_bytes: u64,
    /// The origins' signing rate (sealing included), on all cores.
    sign_rate: f64,
    /// What the node opens sealed entries with (its provisioned key).
    receiver_keys: Option<DecryptionKeys>,
}

/// One round of the receiving path.
#[derive(Default)]
struct PathRound {
    rate: f64,
    cpu_us: f64,
    written: u64,
}

/// The best figures over the rounds: the fastest round of the path, and each ceiling's best.
#[derive(Default)]
struct Best {
    path: PathRound,
    verify: f64,
    store: f64,
}

pub fn ingest(o: IngestOpts) -> anyhow::Result<()> {
    if o.updates < ORIGINS {
        bail!("--updates must be at least {ORIGINS} (one per origin)");
    }
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if o.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let say = |line: String| {
        if !o.json {
            out!("{line}");
        }
    };
    let runtime = net::runtime()?;
    let open = measure(&o, &runtime, Entries::Open, &say)?;
    let sealed = if o.restricted {
        Some(measure(&o, &runtime, Entries::Sealed, &say)?)
    } else {
        None
    };
    let mut line = open.json(&o);
    if let (Some(sealed), Some(fields)) = (&sealed, line.as_object_mut()) {
        let cut = 1.0 - sealed.best.path.rate / open.best.path.rate;
        say(format!(
            "sealed to 3 recipients: {:.0} updates/s against {:.0} unrestricted ({:.1}% less); the origin signs {:.0}/s sealed against {:.0}/s",
            sealed.best.path.rate,
            open.best.path.rate,
            cut * 100.0,
            sealed.sign_rate,
            open.sign_rate
        ));
        fields.insert("restricted".into(), sealed.json(&o));
        fields.insert(
            "restricted_rate_ratio".into(),
            serde_json::json!(round3(sealed.best.path.rate / open.best.path.rate)),
        );
    }
    out!("{line}");
    Ok(())
}

/// What the bench sends: GREEN upserts, or RED ones sealed to the node and two others.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entries {
    Open,
    Sealed,
}

/// The rounds of one kind of entries, and what they showed.
struct Measured {
    best: Best,
    entries: usize,
    entry_bytes: u64,
    /// The origins' signing rate (sealing included), on all cores.
    sign_rate: f64,
}

impl Measured {
    fn json(&self, o: &IngestOpts) -> serde_json::Value {
        let b = &self.best;
        let ratio = b.path.rate / b.verify.min(b.store);
        serde_json::json!({
            "bench": "ingest",
            "path": "federation_sync_mtls",
            "updates": self.entries,
            "batch": o.batch,
            "rate": b.path.rate.round(),
            "verify_ceiling": b.verify.round(),
            "store_ceiling": b.store.round(),
            "ratio": round3(ratio),
            "cpu_us_per_update": (b.path.cpu_us * 10.0).round() / 10.0,
            "written_per_entry_byte": (b.path.written as f64 / self.entry_bytes.max(1) as f64 * 100.0).round() / 100.0,
            "sign_rate": self.sign_rate.round(),
            "rounds": o.rounds,
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prepares the entries of `kind` and runs the rounds: path and ceilings, alternating.
fn measure(
    o: &IngestOpts,
    runtime: &tokio::runtime::Runtime,
    kind: Entries,
    say: &dyn Fn(String),
) -> anyhow::Result<Measured> {
    let t = Instant::now();
    let b = prepare(o, kind)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    say(format!(
        "generated {} signed {} from {ORIGINS} origins, in publications of {PUBLICATION}, in {:.1}s ({:.0} signed/s; {:.1} MiB of entries; {} EntryBatch frames of up to {} entries)",
        b.entries,
        match kind {
            Entries::Open => "GREEN upserts",
            Entries::Sealed => "RED upserts, each sealed to its origin and 3 recipients (the node and two others), one encapsulation per reader per publication",
        },
        t.elapsed().as_secs_f64(),
        b.sign_rate,
        b.entry_bytes as f64 / (1 << 20) as f64,
        b.frames.len(),
        o.batch
    ));
    say(format!(
        "path: the bench, as peer {}, sends the frames over mutual-TLS Federation.Sync on 127.0.0.1 to node {} (intelmesh_node::start, this process), at most {WINDOW_FRAMES} frames ahead of its progress; timed from the first frame to the progress frame that covers every entry. Sender and node share this machine's {cores} cores.",
        b.peer, b.receiver
    ));
    say(format!(
        "ceilings: verification alone (verify_batch_parallel, the node's function, on {} threads, {VERIFY_CHUNK} signatures per check{}); the store alone (DiskStore::apply of the same entries verified beforehand, in the same batches)",
        rayon::current_num_threads(),
        if kind == Entries::Sealed { ", then opening each envelope" } else { "" }
    ));

    let mut best = Best::default();
    for round in 1..=o.rounds {
        let data = b.dir.path().join(format!("receiver-{round}"));
        let path = runtime.block_on(receive(&b, &data))?;
        let reopened = if round == 1 {
            Some(reopen(&data)?)
        } else {
            None
        };
        remove_store(&data)?;
        let (verify, verified) = measure_verify(&b)?;
        let store_dir = b.dir.path().join(format!("store-{round}"));
        let store = measure_store(&b, verified, &store_dir)?;
        remove_store(&store_dir)?;
        say(format!(
            "round {round}: node received {:.0} updates/s ({:.1} µs of CPU per update, sender included; {} MiB written, {:.1}× the entries' bytes); verify ceiling {verify:.0}/s; store ceiling {store:.0}/s",
            path.rate,
            path.cpu_us,
            path.written >> 20,
            path.written as f64 / b.entry_bytes as f64
        ));
        if let Some(line) = reopened {
            say(line);
        }
        if path.rate > best.path.rate {
            best.path = path;
        }
        best.verify = best.verify.max(verify);
        best.store = best.store.max(store);
    }
    let ratio = best.path.rate / best.verify.min(best.store);
    say(format!(
        "best: {:.0} updates/s, {:.3} of the lower ceiling ({})",
        best.path.rate,
        ratio,
        if best.verify <= best.store {
            "verification"
        } else {
            "store"
        }
    ));
    Ok(Measured {
        entries: b.entries,
        entry_bytes: b.entry_bytes,
        sign_rate: b.sign_rate,
        best,
    })
}

/// Provisions the receiver and its hub peer, adds the origins to the key list, and signs and
/// cuts the entries.
fn prepare(o: &IngestOpts, kind: Entries) -> anyhow::Result<Bench> {
    let dir = net::bench_dir(o.dir.as_deref())?;
    let specs = loopback_specs("HUB", &["RECEIVER"])?;
    let (peer, receiver) = (org("HUB")?, org("RECEIVER")?);
    let limits = Limits {
        max_batch_entries: o.batch,
        ..Limits::default()
    };
    // The hub dials: the receiver only accepts, so it never dials a hub that is not running.
    let fed = provision(
        dir.path(),
        &specs,
        &[(peer.clone(), receiver.clone())],
        &limits,
    )?;
    let signers: Vec<Signer> = (0..ORIGINS)
        .map(|i| Ok(Signer::generate(org(&format!("BENCH-{i:02}"))?)))
        .collect::<anyhow::Result<_>>()?;
    let (sealing, receiver_keys) = match kind {
        Entries::Open => (None, None),
        Entries::Sealed => {
            let (readers, keys) = sealing_keys(&fed, &receiver, &signers)?;
            (Some(readers), Some(keys))
        }
    };
    let t = Instant::now();
    let logs = generate(&signers, o.updates, sealing.as_ref())?;
    let sign_rate = o.updates as f64 / t.elapsed().as_secs_f64();
    add_members(provisioned_keys(&fed.nodes[&receiver].config)?, &signers)?;
    let mut keys = StaticKeys::default();
    for s in &signers {
        keys.insert(s.org().clone(), s.verifying_key());
    }
    let heads = signers
        .iter()
        .zip(&logs)
        .map(|(s, log)| (s.org().to_string(), log.len() as u64))
        .collect();
    let entries = logs.iter().map(Vec::len).sum();
    let entry_bytes = logs.iter().flatten().map(|e| e.encoded_len() as u64).sum();
    // The node's own sender's cap, so the frames are the ones a peer node would send.
    let max_bytes = intelmesh_node::federation::batch_bytes(&limits);
    let frames = cut_frames(&logs, o.batch, max_bytes);
    Ok(Bench {
        dir,
        fed,
        receiver,
        peer,
        keys,
        frames,
        heads,
        entries,
        entry_bytes,
        sign_rate,
        receiver_keys,
    })
}

/// The sealing side of the sealed entries: every origin, the receiver and two other recipients
/// with an encryption key (the receiver's as provisioned), and the receiver's keys to open
/// them with.
fn sealing_keys(
    fed: &Federation,
    receiver: &OrgId,
    signers: &[Signer],
) -> anyhow::Result<(StaticKeys, DecryptionKeys)> {
    let path = fed.nodes[receiver]
        .config
        .encryption_key
        .clone()
        .context("the receiver was provisioned without an encryption key")?;
    let receiver_keys = intelmesh_node::encryption_keys::load(&path)?;
    let receiver_public = EncryptionSecret::from_hex(&std::fs::read_to_string(&path)?)
        .context("the receiver's encryption key")?
        .public();
    let mut readers = StaticKeys::default();
    let mut add = |org: OrgId, key: EncryptionPublic| {
        readers.insert(org.clone(), Signer::generate(org.clone()).verifying_key());
        readers.set_encryption_key(org, key);
    };
    add(receiver.clone(), receiver_public);
    for other in SEALED_TO_OTHERS {
        add(org(other)?, EncryptionSecret::generate().public());
    }
    for s in signers {
        add(s.org().clone(), EncryptionSecret::generate().public());
    }
    Ok((readers, receiver_keys))
}

/// The recipients of the sealed entries besides the node under measurement.
const SEALED_TO_OTHERS: [&str; 2] = ["SEALED-TO-1", "SEALED-TO-2"];

/// Entries per publication when the bench signs: one `Submit` of an import's size. A sealed
/// publication encapsulates once per reader, so this sets how often a reader decapsulates.
const PUBLICATION: usize = 500;

/// Signs `n` upserts spread over `signers`, each origin's chain on its own core, in
/// publications of [`PUBLICATION`] entries: GREEN, or RED for the receiver and two others,
/// sealed with `sealing`'s keys.
fn generate(
    signers: &[Signer],
    n: usize,
    sealing: Option<&StaticKeys>,
) -> anyhow::Result<Vec<Vec<pb::SignedEntry>>> {
    let dist = match sealing {
        None => Distribution {
            tlp: Tlp::Green,
            recipients: vec![],
        },
        Some(_) => Distribution {
            tlp: Tlp::Red,
            recipients: std::iter::once(org("RECEIVER"))
                .chain(SEALED_TO_OTHERS.iter().map(|o| org(o)))
                .collect::<anyhow::Result<_>>()?,
        },
    };
    let now = intelmesh_core::now_unix_ms();
    let seal = sealing.map(|k| k as &dyn ReaderKeys);
    signers
        .par_iter()
        .enumerate()
        .map(|(o, signer)| {
            let count = n / ORIGINS + usize::from(o < n % ORIGINS);
            let items: Vec<(Distribution, pb::Payload)> = (0..count)
                .map(|i| (dist.clone(), sample_upsert((i * ORIGINS + o) as u64)))
                .collect();
            let mut head = None;
            let mut log = Vec::with_capacity(count);
            for publication in items.chunks(PUBLICATION) {
                let (entries, next) = signer.sign_chain_sealing(head, now, publication, seal)?;
                head = next;
                log.extend(entries);
            }
            Ok(log)
        })
        .collect()
}

/// Cuts the origins' logs into frames as a relaying hub sends them: runs of every origin in
/// turn, at most `max_entries` entries and `max_bytes` encoded entry bytes per frame.
pub(crate) fn cut_frames(
    logs: &[Vec<pb::SignedEntry>],
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Vec<pb::SignedEntry>> {
    let run = (max_entries / logs.len().max(1)).max(1);
    let longest = logs.iter().map(Vec::len).max().unwrap_or(0);
    let in_turn = (0..longest.div_ceil(run)).flat_map(|r| {
        logs.iter()
            .flat_map(move |log| log.iter().skip(r * run).take(run))
    });
    let mut frames = Vec::new();
    let (mut frame, mut bytes) = (Vec::new(), 0);
    for entry in in_turn {
        // As a repeated field of the batch: tag, length, entry.
        let len = entry.encoded_len();
        let field = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
        if !frame.is_empty() && (frame.len() == max_entries || bytes + field > max_bytes) {
            frames.push(std::mem::take(&mut frame));
            bytes = 0;
        }
        frame.push(entry.clone());
        bytes += field;
    }
    if !frame.is_empty() {
        frames.push(frame);
    }
    frames
}

/// Starts the receiver on a fresh store at `data`, feeds it every frame as its peer, and stops
/// it.
async fn receive(b: &Bench, data: &Path) -> anyhow::Result<PathRound> {
    let mut cfg = b.fed.nodes[&b.receiver].config.clone();
    cfg.data_dir = data.to_path_buf();
    let limits = cfg.limits.clone();
    let node = intelmesh_node::start(cfg)
        .await
        .with_context(|| format!("starting node {}", b.receiver))?;
    let peer_cfg = &b.fed.nodes[&b.peer].config;
    let target = Target {
        addr: node.federation_addr,
        org: &b.receiver,
        server_ca: &b.fed.federation_ca,
    };
    let me = Credentials {
        org: &b.peer,
        cert: &peer_cfg.federation.cert,
        key: &peer_cfg.federation.key,
    };
    let fed = async {
        let held = BTreeMap::new();
        let mut link = peer::open(&target, &me, limits.max_message_bytes, &held).await?;
        let (cpu, written) = (cpu_seconds(), written_bytes());
        let window = WINDOW_FRAMES * limits.max_batch_entries;
        let frames = futures::stream::iter(b.frames.iter().cloned());
        let fed = link.feed(frames, &b.heads, window, |_| ()).await?;
        Ok::<_, anyhow::Error>((fed, cpu_seconds() - cpu, written_bytes() - written))
    }
    .await;
    // The bench closed its end: once the node has too, it stops and closes its store (writing
    // the index snapshot) with no link cut short.
    let closed = Instant::now();
    while node
        .state()
        .peers
        .snapshot()
        .get(&b.peer)
        .is_some_and(|p| p.connected)
        && closed.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.shutdown().await;
    let (elapsed, cpu, written) = fed?;
    Ok(PathRound {
        rate: b.entries as f64 / elapsed.as_secs_f64(),
        cpu_us: cpu * 1e6 / b.entries as f64,
        written,
    })
}

/// Opens the receiver's store again after the node stopped: what a restart costs.
fn reopen(data: &Path) -> anyhow::Result<String> {
    let t = Instant::now();
    let store = DiskStore::open(StoreConfig::new(data))?;
    Ok(format!(
        "reopening the node's store after it stopped ({} indicators, index from {:?}): {:.2}s",
        store.indicator_count(),
        store.index_source(),
        t.elapsed().as_secs_f64()
    ))
}

fn remove_store(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))
}

/// The node's verification of the same entries alone, on all cores; returns the rate and the
/// verified entries (for the store ceiling).
fn measure_verify(b: &Bench) -> anyhow::Result<(f64, Vec<VerifiedEntry>)> {
    let raws: Vec<pb::SignedEntry> = b.frames.iter().flatten().cloned().collect();
    let cfg = VerifyConfig::at(intelmesh_core::now_unix_ms());
    let t = Instant::now();
    let results = verify_batch_parallel(raws, &b.keys, &cfg, VERIFY_CHUNK);
    let verified = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .context("a bench entry does not verify")?;
    let verified = match &b.receiver_keys {
        None => verified,
        Some(keys) => verified
            .into_par_iter()
            .map(|e| e.open_as(&b.receiver, keys).map_err(|f| f.1))
            .collect::<Result<Vec<_>, _>>()
            .context("a bench entry does not open")?,
    };
    let secs = t.elapsed().as_secs_f64();
    Ok((verified.len() as f64 / secs, verified))
}

/// The store's part of the path alone: `DiskStore::apply` (chain checks, segment writes, flush,
/// index) of the entries verified beforehand, in the frames' batches, on a fresh store.
fn measure_store(b: &Bench, verified: Vec<VerifiedEntry>, path: &Path) -> anyhow::Result<f64> {
    let store = DiskStore::open(StoreConfig::new(path).owned_by(b.receiver.clone()))?;
    let mut entries = verified.into_iter();
    let batches: Vec<Vec<VerifiedEntry>> = b
        .frames
        .iter()
        .map(|f| entries.by_ref().take(f.len()).collect())
        .collect();
    let t = Instant::now();
    let mut appended = 0;
    for batch in batches {
        appended += store.apply(batch)?.appended();
    }
    let secs = t.elapsed().as_secs_f64();
    if appended != b.entries {
        bail!("only {appended} of {} entries were appended", b.entries);
    }
    Ok(b.entries as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_every_entry_once_in_seq_order_within_both_caps() {
        let signers: Vec<Signer> = (0..ORIGINS)
            .map(|i| Signer::generate(org(&format!("BENCH-{i:02}")).expect("org")))
            .collect();
        let logs = generate(&signers, ORIGINS * 4, None).expect("entries");
        let largest = logs.iter().flatten().map(|e| e.encoded_len()).max();
        let max_bytes = 5 * (largest.expect("entries") + 3);
        let frames = cut_frames(&logs, 32, max_bytes);
        assert!(
            frames.len() > 2,
            "the byte cap, not the entry cap, must cut these frames"
        );
        for f in &frames {
            assert!(f.len() <= 32);
            let bytes = pb::EntryBatch { entries: f.clone() }.encoded_len();
            assert!(bytes <= max_bytes, "a frame of {bytes} bytes");
        }
        let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for e in frames.concat() {
            let h = pb::EntryHeader::decode(e.header.as_ref()).expect("header");
            seqs.entry(h.origin).or_default().push(h.seq);
        }
        assert_eq!(seqs.len(), signers.len());
        for (origin, s) in seqs {
            assert_eq!(s, vec![1, 2, 3, 4], "{origin}");
        }
    }
}
