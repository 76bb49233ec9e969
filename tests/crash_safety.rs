//! Crash safety: a child process appends batches; we SIGKILL it at random moments (while it
//! opens the store, mid-batch, during flush) and check what survives after every kill: every
//! acknowledged entry, no half batch, and an indicator index equal to the one this test folds
//! from the durable entries itself.
//!
//! Reproduce a run with `INTELMESH_CRASH_SEED=<seed printed below>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use intelmesh_core::indicator::normalize;
use intelmesh_core::{IndicatorType, OrgId};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{verify_store, DiskStore, Store, StoreConfig};
use intelmesh_tests::{entry_digest, registry, seeded_signer, ORIGINS};
use prost::Message;
use rand::{Rng, SeedableRng};

const CYCLES: u64 = 24;

#[test]
fn killed_writer_loses_no_acknowledged_entry_and_no_batch_half() {
    let seed: u64 = std::env::var("INTELMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("crash-safety seed: {seed} (set INTELMESH_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let signers: Vec<_> = ORIGINS.iter().map(|o| seeded_signer(seed, o)).collect();
    let keys = registry(&signers.iter().collect::<Vec<_>>());

    // (origin, seq) -> digest of every entry ever acknowledged.
    let mut acked: HashMap<(String, u64), String> = HashMap::new();
    // (origin, seq) -> digest of every entry known durable: acknowledged, or in a batch a kill
    // cut short that a reopen found whole (from then on it must stay too).
    let mut durable: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut acked_total = 0usize;
    let mut cut_batches = 0usize;
    for cycle in 0..CYCLES {
        // A third of the kills land in the first milliseconds, while the store opens and recovers.
        let delay_ms = if cycle % 3 == 0 {
            rng.gen_range(0..15)
        } else {
            rng.gen_range(20..400)
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .args([
                dir.path().to_str().expect("utf-8 temp path"),
                &seed.to_string(),
                &cycle.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn crash-writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    // A kill can cut the last line short: only whole lines were said.
                    Ok(n) if n > 0 && line.ends_with('\n') => {
                        if tx.send(line.trim_end().to_string()).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("SIGKILL the writer");
        let status = child.wait().expect("reap writer");
        reader.join().expect("reader thread");
        let lines: Vec<String> = rx.try_iter().collect();
        assert!(
            status.code().is_none(),
            "cycle {cycle}: writer exited by itself ({status}) instead of being killed; output: {lines:?}"
        );

        let mut begun: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        let mut finished: HashSet<String> = HashSet::new();
        for line in &lines {
            let mut words = line.split(' ');
            match (words.next(), words.next()) {
                (Some("BEGIN"), Some(id)) => {
                    let names = words
                        .filter(|w| !w.is_empty())
                        .map(|w| parse_name(w).0)
                        .collect();
                    begun.insert(id.to_string(), names);
                }
                (Some("ACK"), Some(id)) => {
                    finished.insert(id.to_string());
                    for w in words.filter(|w| !w.is_empty()) {
                        let ((origin, seq), digest) = parse_name(w);
                        let digest = digest.expect("ACK carries digests");
                        acked.insert((origin.clone(), seq), digest.clone());
                        durable.insert((origin, seq), digest);
                        acked_total += 1;
                    }
                }
                _ => {}
            }
        }

        // Reopen as the node would after a crash: must succeed, without panicking.
        let store = DiskStore::open(StoreConfig::new(dir.path()))
            .unwrap_or_else(|e| panic!("cycle {cycle} (seed {seed}): reopen failed: {e}"));
        for ((origin, seq), digest) in &acked {
            let org = OrgId::parse(origin).expect("valid org");
            let got = store.range(&org, *seq, 1).expect("range read");
            let stored = got.first().filter(|e| entry_digest(e) == *digest);
            assert!(
                stored.is_some(),
                "cycle {cycle} (seed {seed}): acknowledged {origin}#{seq} missing or changed"
            );
        }
        let vector = store.vector().expect("vector");
        for (id, names) in &begun {
            if finished.contains(id) {
                continue;
            }
            cut_batches += 1;
            let present = names
                .iter()
                .filter(|(origin, seq)| {
                    let org = OrgId::parse(origin).expect("valid org");
                    vector.get(&org).is_some_and(|head| head >= seq)
                })
                .count();
            assert!(
                present == 0 || present == names.len(),
                "cycle {cycle} (seed {seed}): batch {id} is half there: {present} of {} entries",
                names.len()
            );
            if present > 0 {
                for (origin, seq) in names {
                    let entry = stored_entry(&store, origin, *seq);
                    durable.insert((origin.clone(), *seq), entry_digest(&entry));
                }
            }
        }

        // The log holds exactly the durable entries, so the index must be their fold.
        let mut tops: BTreeMap<String, u64> = BTreeMap::new();
        for (origin, seq) in durable.keys() {
            tops.insert(origin.clone(), *seq);
        }
        let heads: BTreeMap<String, u64> =
            vector.iter().map(|(o, s)| (o.to_string(), *s)).collect();
        assert_eq!(
            heads, tops,
            "cycle {cycle} (seed {seed}): the log holds other entries than the durable ones"
        );
        let entries: Vec<pb::SignedEntry> = durable
            .iter()
            .map(|((origin, seq), digest)| {
                let entry = stored_entry(&store, origin, *seq);
                assert_eq!(&entry_digest(&entry), digest, "{origin}#{seq} changed");
                entry
            })
            .collect();
        let expected = expected_index(&entries);
        assert_eq!(
            store.indicator_count(),
            expected.len(),
            "cycle {cycle} (seed {seed}): indicators in the index"
        );
        for ((ty, value), want) in &expected {
            let ty = IndicatorType::from_proto(*ty).expect("known type");
            let indicator = normalize(ty, value).expect("canonical value");
            let state = store
                .indicator(&indicator)
                .expect("index read")
                .unwrap_or_else(|| panic!("cycle {cycle} (seed {seed}): {value} not indexed"));
            assert_eq!(
                &index_view(&state),
                want,
                "cycle {cycle} (seed {seed}): index state of {value}"
            );
        }

        // Chains and signatures (its own index comparison uses the store's fold, so it is the
        // check above that holds the index to the merge rules).
        let check = verify_store(&store, Some(&keys)).expect("verify-store runs");
        assert!(
            check.is_ok(),
            "cycle {cycle} (seed {seed}): store does not verify: {:?}",
            check.problems
        );
    }
    println!(
        "crash-safety: {CYCLES} kills, {acked_total} acknowledged entries checked, {cut_batches} batches cut by a kill, {} distinct entries durable",
        durable.len()
    );
    assert!(
        acked.len() > 100,
        "the writer got too little done to test anything: {}",
        acked.len()
    );
    assert!(cut_batches > 0, "no kill landed inside a batch");
}

/// `origin:seq` or `origin:seq:digest`.
fn parse_name(word: &str) -> ((String, u64), Option<String>) {
    let mut parts = word.split(':');
    let origin = parts.next().expect("origin").to_string();
    let seq = parts.next().and_then(|s| s.parse().ok()).expect("seq");
    ((origin, seq), parts.next().map(str::to_string))
}

fn stored_entry(store: &DiskStore, origin: &str, seq: u64) -> pb::SignedEntry {
    let org = OrgId::parse(origin).expect("valid org");
    let mut got = store.range(&org, seq, 1).expect("range read");
    match got.pop() {
        Some(e) if got.is_empty() => e,
        _ => panic!("{origin}#{seq} is not in the log"),
    }
}

/// Who may read an entry: its origin, TLP level and recipients (sorted: one audience however
/// the origin listed it).
type Slot = (String, i32, Vec<String>);

/// What an index state says of one origin's latest assertion in a slot.
#[derive(Debug, PartialEq)]
struct Assertion {
    seq: u64,
    revoked: bool,
    confidence: u32,
    issued_at_unix_ms: i64,
    tags: Vec<String>,
    /// Length and hash: the writer pads descriptions to vary entry sizes.
    description: String,
    revoke_reason: String,
}

fn fingerprint(text: &str) -> String {
    let hash = intelmesh_core::entry::sha256(text.as_bytes());
    format!("{} bytes, {}", text.len(), hex::encode(&hash[..6]))
}

/// One slot's sightings added up.
#[derive(Debug, PartialEq)]
struct Sightings {
    count: u64,
    first_seen_unix_ms: i64,
    last_seen_unix_ms: i64,
    last_seq: u64,
}

/// An indicator's state as lists in slot order, so a duplicated or misplaced slot shows.
#[derive(Debug, Default, PartialEq)]
struct IndicatorView {
    assertions: Vec<(Slot, Assertion)>,
    sightings: Vec<(Slot, Sightings)>,
}

/// The index the merge rules define, computed here with plain maps and none of the store's
/// code: per indicator and slot, the assertion of the highest seq, and the sightings summed
/// (count), with the earliest first and the latest last time.
fn expected_index(entries: &[pb::SignedEntry]) -> BTreeMap<(i32, String), IndicatorView> {
    type Slots<T> = BTreeMap<Slot, T>;
    let mut folded: BTreeMap<(i32, String), (Slots<Assertion>, Slots<Sightings>)> = BTreeMap::new();
    for e in entries {
        let h = pb::EntryHeader::decode(e.header.as_ref()).expect("header decodes");
        let bytes = e.payload.as_ref().expect("the writer stores full entries");
        let p = pb::Payload::decode(bytes.as_ref()).expect("payload decodes");
        let d = h.distribution.expect("distribution");
        let mut recipients = d.recipients;
        recipients.sort();
        recipients.dedup();
        let slot: Slot = (h.origin, d.tlp, recipients);
        let (indicator, assertion, sighting) = match p.body.expect("body") {
            pb::payload::Body::Upsert(u) => {
                let a = Assertion {
                    seq: h.seq,
                    revoked: false,
                    confidence: u.confidence,
                    issued_at_unix_ms: h.issued_at_unix_ms,
                    tags: u.tags,
                    description: fingerprint(&u.description),
                    revoke_reason: String::new(),
                };
                (u.indicator, Some(a), None)
            }
            pb::payload::Body::Revoke(r) => {
                let a = Assertion {
                    seq: h.seq,
                    revoked: true,
                    confidence: 0,
                    issued_at_unix_ms: h.issued_at_unix_ms,
                    tags: vec![],
                    description: fingerprint(""),
                    revoke_reason: r.reason,
                };
                (r.indicator, Some(a), None)
            }
            pb::payload::Body::Sighting(mut s) => (s.indicator.take(), None, Some((s, h.seq))),
            // This test's federation has no roster: control entries name no indicator.
            pb::payload::Body::Roster(_) | pb::payload::Body::Checkpoint(_) => continue,
        };
        let indicator = indicator.expect("indicator");
        let (assertions, sightings) = folded
            .entry((indicator.r#type, indicator.value))
            .or_default();
        if let Some(a) = assertion {
            let newer = assertions.get(&slot).is_none_or(|old| old.seq < a.seq);
            if newer {
                assertions.insert(slot.clone(), a);
            }
        }
        if let Some((s, seq)) = sighting {
            let sum = sightings.entry(slot).or_insert(Sightings {
                count: 0,
                first_seen_unix_ms: i64::MAX,
                last_seen_unix_ms: i64::MIN,
                last_seq: 0,
            });
            sum.count += s.count;
            sum.first_seen_unix_ms = sum.first_seen_unix_ms.min(s.seen_at_unix_ms);
            sum.last_seen_unix_ms = sum.last_seen_unix_ms.max(s.seen_at_unix_ms);
            sum.last_seq = sum.last_seq.max(seq);
        }
    }
    folded
        .into_iter()
        .map(|(key, (assertions, sightings))| {
            let view = IndicatorView {
                assertions: assertions.into_iter().collect(),
                sightings: sightings.into_iter().collect(),
            };
            (key, view)
        })
        .collect()
}

/// An index state in the shape of [`expected_index`], slots as the store wrote them.
fn index_view(state: &pb::IndicatorState) -> IndicatorView {
    let slot = |origin: &str, d: &Option<pb::Distribution>| -> Slot {
        let d = d.clone().unwrap_or_default();
        (origin.to_string(), d.tlp, d.recipients)
    };
    IndicatorView {
        assertions: state
            .assertions
            .iter()
            .map(|a| {
                let view = Assertion {
                    seq: a.seq,
                    revoked: a.revoked,
                    confidence: a.confidence,
                    issued_at_unix_ms: a.issued_at_unix_ms,
                    tags: a.tags.clone(),
                    description: fingerprint(&a.description),
                    revoke_reason: a.revoke_reason.clone(),
                };
                (slot(&a.origin, &a.distribution), view)
            })
            .collect(),
        sightings: state
            .sightings
            .iter()
            .map(|s| {
                let view = Sightings {
                    count: s.count,
                    first_seen_unix_ms: s.first_seen_unix_ms,
                    last_seen_unix_ms: s.last_seen_unix_ms,
                    last_seq: s.last_seq,
                };
                (slot(&s.origin, &s.distribution), view)
            })
            .collect(),
    }
}
