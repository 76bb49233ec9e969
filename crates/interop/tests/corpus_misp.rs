//! Every MISP event file of the shared corpus and interop samples through the importer, with
//! counts printed; the one invalid file must be an error, not a panic.

mod common;

use std::collections::BTreeMap;

use intelmesh_core::Tlp;
use intelmesh_interop::misp::{
    import_misp_str, AttributeOutcome, MispCounts, MispError, MispOptions, TlpSource,
};

const FOLDERS: [&str; 3] = [
    "corpus/misp",
    "interop-samples/misp",
    "interop-samples/misp-feed",
];
const INVALID: &str = "eset_pypi_backdoor_malicious_pypi_packages.misp-event.json";

#[test]
fn misp_corpus_counts() {
    let mut any = false;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut tlps: BTreeMap<String, usize> = BTreeMap::new();
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for folder in FOLDERS {
        let Some(dir) = common::folder(folder) else {
            continue;
        };
        any = true;
        let (mut events, mut not_events, mut bad_json) = (0, 0, 0);
        let mut total = MispCounts::default();
        let files = common::json_files(&dir);
        for path in &files {
            let name = common::name(path);
            let got = match import_misp_str(&common::read(path), &MispOptions::default()) {
                Ok(got) => got,
                Err(MispError::Json(e)) => {
                    eprintln!("{name}: invalid JSON, reported: {e}");
                    assert!(
                        name.ends_with(INVALID),
                        "{name} is not the known invalid file"
                    );
                    bad_json += 1;
                    continue;
                }
                Err(MispError::NotMisp { reason }) => {
                    // The feed's manifest.json indexes events, it is none.
                    assert!(name.ends_with("manifest.json"), "{name}: {reason}");
                    not_events += 1;
                    continue;
                }
            };
            for event in &got {
                events += 1;
                let c = event.counts();
                assert_eq!(
                    c.attributes,
                    c.imported + c.not_for_ids + c.unsupported_type + c.deleted + c.failed,
                    "{name}"
                );
                for ind in event.indicators() {
                    common::assert_canonical(&ind.indicator, &name);
                    *types.entry(ind.indicator.ty().as_str()).or_default() += 1;
                    *tlps
                        .entry(format!("{} {:?}", ind.tlp, ind.tlp_source))
                        .or_default() += 1;
                }
                for a in &event.attributes {
                    let ty = a.attribute_type.clone().unwrap_or_default();
                    match &a.outcome {
                        AttributeOutcome::Failed(e) => {
                            let kind = match e {
                                intelmesh_interop::misp::AttributeError::Value {
                                    source, ..
                                } => source.kind().to_owned(),
                                other => other.to_string(),
                            };
                            *failures.entry(format!("{ty}: {kind}")).or_default() += 1;
                        }
                        AttributeOutcome::Skipped(
                            intelmesh_interop::misp::MispSkip::UnsupportedType { .. },
                        ) => {
                            *unsupported.entry(ty).or_default() += 1;
                        }
                        _ => {}
                    }
                }
                total.attributes += c.attributes;
                total.imported += c.imported;
                total.indicators += c.indicators;
                total.not_for_ids += c.not_for_ids;
                total.unsupported_type += c.unsupported_type;
                total.deleted += c.deleted;
                total.failed += c.failed;
            }
        }
        eprintln!(
            "{folder}: {} files, {events} events, {bad_json} invalid JSON, {not_events} not events; {} attributes -> {} imported ({} indicators), {} not to_ids, {} unsupported type, {} deleted, {} failed",
            files.len(), total.attributes, total.imported, total.indicators, total.not_for_ids,
            total.unsupported_type, total.deleted, total.failed
        );
        if folder == "corpus/misp" {
            assert_eq!(bad_json, 1, "the corpus has one invalid JSON file");
        }
        assert!(total.indicators > 0, "{folder} gave no indicator");
    }
    if !any {
        return;
    }
    eprintln!("failures by type and reason: {failures:#?}");
    eprintln!("to_ids attributes of unsupported types: {unsupported:?}");
    eprintln!("imported indicators by type: {types:?}");
    eprintln!("TLP of imported indicators: {tlps:#?}");
}

/// The derived samples differ by TLP tag or distribution only.
#[test]
fn misp_samples_take_their_tlp() {
    let Some(dir) = common::folder("interop-samples/misp") else {
        return;
    };
    let cases = [
        (
            "derived_cerber_distribution_0.json",
            Tlp::AmberStrict,
            TlpSource::EventDistribution(0),
        ),
        (
            "derived_jrat_tlp_amber.json",
            Tlp::Amber,
            TlpSource::EventTag,
        ),
        (
            "derived_pubg_tlp_amber_strict.json",
            Tlp::AmberStrict,
            TlpSource::EventTag,
        ),
        (
            "derived_qakbot_tlp_green.json",
            Tlp::Green,
            TlpSource::EventTag,
        ),
        ("derived_xorist_tlp_red.json", Tlp::Red, TlpSource::EventTag),
    ];
    for (file, tlp, source) in cases {
        let path = dir.join(file);
        if !path.is_file() {
            eprintln!("skipping {file}: absent");
            continue;
        }
        let events = match import_misp_str(
            &common::read(&path),
            &MispOptions {
                default_tlp: Tlp::Clear,
            },
        ) {
            Ok(events) => events,
            Err(e) => panic!("{file}: {e}"),
        };
        let found: Vec<_> = events.iter().flat_map(|e| e.indicators()).collect();
        assert!(!found.is_empty(), "{file}");
        for ind in found {
            assert_eq!((ind.tlp, ind.tlp_source), (tlp, source), "{file}");
        }
    }
}
