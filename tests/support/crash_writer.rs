//! Child process of the crash-safety test: appends batches to a store until it is killed.
//!
//! Usage: `crash-writer DIR SEED CYCLE`. Prints `OPEN` once the store is open, then for each
//! batch `BEGIN id origin:seq …` before applying it and `ACK id origin:seq:digest …` once
//! `apply` returned, i.e. once the batch is durable.

use std::io::Write;

use intelmesh_core::verify::{verify_batch, VerifyConfig};
use intelmesh_store::{SledStore, Store, StoreConfig};
use intelmesh_tests::{chain, entry_digest, registry, seeded_signer, ORIGINS};
use rand::{Rng, SeedableRng};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, seed, cycle] = args.as_slice() else {
        anyhow::bail!("usage: crash-writer DIR SEED CYCLE");
    };
    let seed: u64 = seed.parse()?;
    let cycle: u64 = cycle.parse()?;
    let signers: Vec<_> = ORIGINS.iter().map(|o| seeded_signer(seed, o)).collect();
    let keys = registry(&signers.iter().collect::<Vec<_>>());
    let store = SledStore::open(StoreConfig::new(dir))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN")?;
    let mut rng =
        rand::rngs::StdRng::seed_from_u64(seed ^ cycle.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for batch_no in 0.. {
        let mut entries = Vec::new();
        for signer in &signers {
            let count = rng.gen_range(0..24);
            let head = store.head(signer.org())?;
            let pad = rng.gen_range(0..1500);
            let (chained, _) = chain(signer, head, count, pad);
            entries.extend(chained);
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

fn name_of(e: &intelmesh_proto::v1::SignedEntry, digest: Option<String>) -> String {
    use prost::Message;
    let h = intelmesh_proto::v1::EntryHeader::decode(e.header.as_ref()).unwrap_or_default();
    match digest {
        Some(d) => format!("{}:{}:{d}", h.origin, h.seq),
        None => format!("{}:{}", h.origin, h.seq),
    }
}
