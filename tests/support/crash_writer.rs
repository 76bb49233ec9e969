//! Child process of the crash-safety test: appends batches to a store until it is killed.
//!
//! Usage: `crash-writer DIR SEED CYCLE`. Prints `OPEN` once the store is open, then for each
//! batch `BEGIN id origin:seq …` before applying it and `ACK id origin:seq:digest …` once
//! `apply` returned, i.e. once the batch is durable. `crash-writer --open DIR` only opens the
//! store (finishing an index rebuild it finds marked), prints `OPEN` and waits to be killed.
//!
//! The entries mix upserts, revokes and sightings of a few shared indicators under several
//! distributions (restricted ones with their recipients in either order), so the index the
//! test checks has slots whose assertions are replaced and whose sightings add up.

use std::io::Write;

use intelmesh_core::verify::{verify_batch, VerifyConfig};
use intelmesh_core::{Distribution, Head, OrgId, Signer, Tlp};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{DiskStore, Store, StoreConfig};
use intelmesh_tests::{entry_digest, registry, seeded_signer, ORIGINS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Distinct indicators the writer's entries are about: few, so each gets many entries.
const INDICATORS: u64 = 12;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = args.as_slice() {
        anyhow::ensure!(flag == "--open", "usage: crash-writer --open DIR");
        let _store = DiskStore::open(StoreConfig::new(dir))?;
        writeln!(std::io::stdout(), "OPEN")?;
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
    let [_, dir, seed, cycle] = args.as_slice() else {
        anyhow::bail!("usage: crash-writer DIR SEED CYCLE");
    };
    let seed: u64 = seed.parse()?;
    let cycle: u64 = cycle.parse()?;
    let signers: Vec<_> = ORIGINS.iter().map(|o| seeded_signer(seed, o)).collect();
    let keys = registry(&signers.iter().collect::<Vec<_>>());
    let store = DiskStore::open(StoreConfig::new(dir))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN")?;
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed ^ cycle.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for batch_no in 0.. {
        let mut entries = Vec::new();
        for signer in &signers {
            let count = rng.gen_range(0..24);
            let head = store.head(signer.org())?;
            entries.extend(mixed_chain(signer, head, count, &mut rng));
        }
        let id = format!("{cycle}.{batch_no}");
        let names: Vec<String> = entries.iter().map(|e| name_of(e, None)).collect();
        writeln!(out, "BEGIN {id} {}", names.join(" "))?;
        let verified: Vec<_> = verify_batch(
            entries.clone(),
            &keys,
            &VerifyConfig::at(intelmesh_core::now_unix_ms()),
        )
        .into_iter()
        .collect::<Result<_, _>>()?;
        store.apply(verified)?;
        let acks: Vec<String> = entries
            .iter()
            .map(|e| name_of(e, Some(entry_digest(e))))
            .collect();
        writeln!(out, "ACK {id} {}", acks.join(" "))?;
    }
    Ok(())
}

/// `count` entries of `signer` after `head`: each an upsert (padded with up to 1500 bytes of
/// description), a revoke or a sighting of one of the shared indicators, under one of five
/// distributions.
fn mixed_chain(
    signer: &Signer,
    head: Option<Head>,
    count: u64,
    rng: &mut StdRng,
) -> Vec<pb::SignedEntry> {
    let mut head = head;
    let mut out = Vec::new();
    for _ in 0..count {
        let n = head.map_or(1, |h| h.seq + 1);
        let indicator = pb::IndicatorRef {
            r#type: pb::IndicatorType::Domain as i32,
            value: format!("shared-{}.crash.example", rng.gen_range(0..INDICATORS)),
        };
        let body = match rng.gen_range(0..3) {
            0 => pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(indicator),
                confidence: rng.gen_range(0..=100),
                valid_from_unix_ms: 1_700_000_000_000,
                tags: vec![format!("tag-{}", rng.gen_range(0..5))],
                description: "x".repeat(rng.gen_range(0..1500)),
                ..Default::default()
            }),
            1 => pb::payload::Body::Revoke(pb::IndicatorRevoke {
                indicator: Some(indicator),
                reason: format!("reason-{n}"),
            }),
            _ => pb::payload::Body::Sighting(pb::Sighting {
                indicator: Some(indicator),
                seen_at_unix_ms: 1_700_000_000_000 + rng.gen_range(0..1_000_000),
                count: rng.gen_range(1..5),
            }),
        };
        let payload = pb::Payload {
            body: Some(body),
            ..Default::default()
        };
        let distribution = distribution(rng.gen_range(0..5));
        let (entry, next) =
            signer.sign_next(head, 1_700_000_000_000 + n as i64, &distribution, &payload);
        out.push(entry);
        head = Some(next);
    }
    out
}

/// One of five audiences; the last two are the same recipients listed in opposite orders.
fn distribution(which: u32) -> Distribution {
    let orgs = |names: &[&str]| {
        names
            .iter()
            .map(|n| OrgId::parse(n).expect("fixture org ids are valid"))
            .collect()
    };
    let (tlp, recipients) = match which {
        0 => (Tlp::Green, vec![]),
        1 => (Tlp::Amber, vec![]),
        2 => (Tlp::Red, orgs(&["AU-AFP"])),
        3 => (Tlp::AmberStrict, orgs(&["BR-PF", "SG-IGCI"])),
        _ => (Tlp::AmberStrict, orgs(&["SG-IGCI", "BR-PF"])),
    };
    Distribution { tlp, recipients }
}

fn name_of(e: &intelmesh_proto::v1::SignedEntry, digest: Option<String>) -> String {
    use prost::Message;
    let h = intelmesh_proto::v1::EntryHeader::decode(e.header.as_ref()).unwrap_or_default();
    match digest {
        Some(d) => format!("{}:{}:{d}", h.origin, h.seq),
        None => format!("{}:{}", h.origin, h.seq),
    }
}
