//! Replays every saved fuzz input (the corpora that grew under AFL and every crash input kept as
//! a regression) and the generated seeds through the targets, as plain tests: a fixed crash
//! stays fixed without a fuzzer in CI. Also checks that the seeds reach the deep paths (they
//! verify in the fixed world), or the fuzzer would only ever mutate refusals.

use std::path::{Path, PathBuf};

use intelmesh_core::batch_tree::SIGNATURE_BYTES;
use intelmesh_core::verify::verify_entry;
use intelmesh_fuzz::fixtures;
use intelmesh_fuzz::seeds::{seeds, SeedSources};
use intelmesh_node::config::Limits;
use intelmesh_node::federation::inspect::{inspect_frame, InspectConfig, Inspected};
use intelmesh_node::NodeConfig;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::Roster;
use prost::Message;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> SeedSources {
    let shared = fuzz_dir().join("../../shared");
    if !shared.is_dir() {
        eprintln!(
            "{} absent: seeds from the shared corpus skipped",
            shared.display()
        );
    }
    SeedSources {
        repo: fuzz_dir().join(".."),
        shared: shared.is_dir().then_some(shared),
    }
}

/// The files of `dir`, sorted; none if it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_saved_input_and_seed_runs_clean_through_its_target() {
    let sources = sources();
    for (name, target) in intelmesh_fuzz::TARGETS {
        let seeds = seeds(name, &sources);
        assert!(!seeds.is_empty(), "{name}: no seeds");
        for seed in &seeds {
            target(seed);
        }
        let mut saved = 0;
        let started = std::time::Instant::now();
        let mut slowest = (std::time::Duration::ZERO, 0);
        for kind in ["corpus", "crashes"] {
            for file in inputs(&fuzz_dir().join(kind).join(name)) {
                let bytes = std::fs::read(&file)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
                let one = std::time::Instant::now();
                target(&bytes);
                slowest = slowest.max((one.elapsed(), bytes.len()));
                saved += 1;
            }
        }
        eprintln!(
            "{name}: {} seeds and {saved} saved inputs replayed in {:?} (slowest {:?}, {} bytes)",
            seeds.len(),
            started.elapsed(),
            slowest.0,
            slowest.1
        );
    }
}

#[test]
fn seed_entries_verify_in_the_fixed_world() {
    let entries = seeds("entry", &sources());
    assert!(entries.len() > 20, "{} seed entries", entries.len());
    let (mut opened, mut batched) = (0, 0);
    for bytes in entries {
        let raw = pb::SignedEntry::decode(bytes.as_slice()).expect("seed entry decodes");
        if raw.signature.len() > SIGNATURE_BYTES {
            batched += 1;
        }
        let v = verify_entry(raw, fixtures::keys().as_ref(), &fixtures::verify_config())
            .expect("seed entry verifies");
        assert!(fixtures::keys().is_member(&v.header().origin));
        if v.is_sealed() && v.has_payload() {
            let o = v
                .open_as(&fixtures::peer(), fixtures::peer_decryption_keys())
                .expect("the peer opens a sealed seed");
            assert!(o.payload().is_some());
            opened += 1;
        }
    }
    assert!(opened >= 2, "sealed seeds the peer opens: {opened}");
    assert!(
        batched >= 4,
        "seeds signed in a batch, with a path: {batched}"
    );
}

#[test]
fn seed_frames_reach_verification_and_the_fork_proof_holds() {
    let cfg = InspectConfig {
        limits: Limits::default(),
        keys: fixtures::keys(),
        verify: fixtures::verify_config(),
    };
    let (mut verified, mut proofs, mut kinds) = (0, 0, 0);
    for bytes in seeds("frame", &sources()) {
        kinds += 1;
        match inspect_frame(&bytes, &cfg) {
            Inspected::Entries(checked) => {
                assert!(checked.refused.is_empty(), "{:?}", checked.refused);
                assert!(checked.unknown_key.is_empty());
                verified += checked.good.len();
            }
            Inspected::Evidence { good, invalid, .. } => {
                assert_eq!(invalid, 0);
                proofs += good;
            }
            Inspected::Hello(r) | Inspected::Progress(r) => {
                assert_eq!(r.heads.len(), 1, "the non-member's head is dropped");
                assert_eq!(r.ignored, 1);
            }
            Inspected::Want { kept } => assert_eq!(kept, 1, "the non-member's ask is dropped"),
            Inspected::Heartbeat => {}
            Inspected::Relays(orgs) => {
                assert_eq!(
                    orgs.len(),
                    1,
                    "a bad name dropped, a repeated one kept once"
                )
            }
            other => panic!("a seed frame is refused: {other:?}"),
        }
    }
    assert_eq!(kinds, 13);
    assert_eq!(verified, 8, "every seed entry of a frame verifies");
    assert_eq!(proofs, 1);
}

#[test]
fn an_oversized_batch_is_refused_before_verification() {
    let entries = seeds("entry", &sources());
    let one = pb::SignedEntry::decode(entries[0].as_slice()).expect("seed entry decodes");
    let limits = Limits::default();
    let batch = pb::SyncFrame {
        frame: Some(pb::sync_frame::Frame::Entries(pb::EntryBatch {
            entries: vec![one; limits.max_batch_entries + 1],
        })),
    };
    let cfg = InspectConfig {
        limits,
        keys: fixtures::keys(),
        verify: fixtures::verify_config(),
    };
    let got = inspect_frame(&batch.encode_to_vec(), &cfg);
    assert!(
        matches!(got, Inspected::Refused(ref e) if e.to_string().contains("more than the 1024 allowed")),
        "{got:?}"
    );
}

#[test]
fn seed_rosters_and_configs_are_accepted() {
    let rosters = seeds("roster", &sources());
    let signed = pb::SignedRoster::decode(rosters[1].as_slice()).expect("signed roster decodes");
    let roster = Roster::genesis(&signed, None).expect("seed genesis is followed");
    assert_eq!(roster.version(), 1);
    let configs = seeds("config", &sources());
    assert!(configs.len() >= 3, "{} deploy configs", configs.len());
    for text in configs {
        let text = String::from_utf8(text).expect("deploy config is UTF-8");
        NodeConfig::from_text(&text, Path::new("/etc/intelmesh/node.toml"))
            .expect("deploy config parses");
    }
}

#[test]
fn interop_seeds_import_and_match() {
    use intelmesh_interop::{
        import_misp_str, import_stix_str, parse_warninglist, ImportOptions, MispOptions,
        Warninglists,
    };
    let sources = SeedSources {
        repo: fuzz_dir().join(".."),
        shared: None,
    };
    let probes = intelmesh_fuzz::seeds::probe_values();
    let stix = seeds("stix", &sources);
    let text = std::str::from_utf8(&stix[0]).expect("the STIX seed is UTF-8");
    let import = import_stix_str(text, &ImportOptions::default()).expect("the STIX seed imports");
    let got: Vec<_> = import.indicators().map(|i| i.indicator.clone()).collect();
    assert_eq!(
        got, probes,
        "the mesh's own export reads back as its values"
    );

    let misp = seeds("misp", &sources);
    let text = std::str::from_utf8(&misp[0]).expect("the MISP seed is UTF-8");
    let events = import_misp_str(text, &MispOptions::default()).expect("the MISP seed imports");
    let values: Vec<String> = events
        .iter()
        .flat_map(|e| e.indicators())
        .map(|i| i.indicator.value().to_string())
        .collect();
    assert!(values.contains(&"198.51.100.9".to_string()), "{values:?}");
    assert!(
        values.contains(&"phish@evil.example".to_string()),
        "{values:?}"
    );
    assert!(
        !values.iter().any(|v| v.contains("/x")),
        "not-for-IDS kept: {values:?}"
    );

    let list = seeds("warninglist", &sources);
    let text = std::str::from_utf8(&list[0]).expect("the warninglist seed is UTF-8");
    let mut lists = Warninglists::new();
    lists.add(&parse_warninglist(text).expect("the warninglist seed parses"));
    let google = probes
        .iter()
        .find(|p| p.value() == "8.8.8.8")
        .expect("8.8.8.8 is a probe");
    assert_eq!(lists.matches(google), vec!["seed list"]);
}

#[test]
fn the_taxii_seeds_reach_the_query_reader_and_the_planner() {
    let sources = sources();
    for seed in seeds("taxii_query", &sources) {
        let text = String::from_utf8(seed).expect("UTF-8 seed");
        let query = text.split('\n').next();
        let q = intelmesh_interop::taxii::parse_objects_query(query);
        assert!(q.is_ok(), "{text}: {q:?}");
    }
    let bundle = &seeds("taxii_envelope", &sources)[0];
    let body: serde_json::Value = serde_json::from_slice(bundle).expect("the seed bundle is JSON");
    let members = [fixtures::origin(), fixtures::peer()].into_iter().collect();
    let me = fixtures::origin();
    let publisher = intelmesh_node::api::submission::Publisher {
        org: &me,
        members: &members,
        now: fixtures::NOW_UNIX_MS,
    };
    let lists = intelmesh_interop::Warninglists::new();
    let planned = intelmesh_node::taxii::write::plan(
        &body,
        &publisher,
        &lists,
        (
            |_: &intelmesh_core::Indicator| Default::default(),
            |_: &intelmesh_core::Indicator| Vec::new(),
        ),
    )
    .expect("the seed bundle plans");
    assert!(!planned.to_sign.is_empty(), "the seed signs nothing");
    // The export's identities are not kept (the mesh names origins itself); nothing else fails.
    assert!(
        planned
            .failures
            .iter()
            .all(|f| f.id.starts_with("identity--")),
        "{:?}",
        planned.failures
    );
}

#[test]
fn list_seeds_read_their_values_and_the_shared_files_give_some() {
    use intelmesh_interop::lists::{read_csv, read_plain};
    let own = SeedSources {
        repo: fuzz_dir().join(".."),
        shared: None,
    };
    let csv = seeds("csv", &own);
    let read = read_csv(std::str::from_utf8(&csv[0]).expect("the CSV seed is UTF-8"));
    let values: Vec<&str> = read.found.iter().map(|f| f.indicator.value()).collect();
    assert_eq!(
        values,
        [
            "203.0.113.7",
            "evil.example",
            "https://evil.example/gate.php?id=1",
            "phish@evil.example",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        ]
    );
    assert_eq!((read.header, read.left.len()), (Some(1), 1));

    let text = seeds("text", &own);
    let read = read_plain(std::str::from_utf8(&text[0]).expect("the list seed is UTF-8"));
    // The prose line gives the address it names; nothing is left out.
    assert_eq!(read.found.len(), 7, "{:?}", read.found);
    assert!(read
        .found
        .iter()
        .any(|f| f.indicator.value() == "203.0.113.7" && f.line == 8));
    assert!(read.left.is_empty(), "{:?}", read.left);

    let all = sources();
    if all.shared.is_some() {
        for (name, min) in [("csv", 10), ("text", 20)] {
            let seeds = seeds(name, &all);
            assert!(seeds.len() >= min, "{name}: {} seeds", seeds.len());
            assert!(seeds.iter().all(|s| s.len() <= 16 << 10));
        }
        let found: usize = seeds("csv", &all)
            .iter()
            .map(|s| read_csv(&String::from_utf8_lossy(s)).found.len())
            .sum();
        assert!(found > 100, "the shared CSV files give {found} indicators");
    }
}
