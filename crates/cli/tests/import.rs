//! `intelmesh import` against a real node (mutual TLS on 127.0.0.1, started from configs made
//! with the pki commands): STIX and MISP files of the shared corpus land with the file's TLP,
//! the summary counts what the importer read, a second import signs nothing, an invalid JSON
//! file is a clear per-file error (exit 2) while the other files still import, and a plain
//! list's defanged values land refanged, warninglisted ones held back unless --force.

#[allow(dead_code)]
mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use intelmesh_core::{Indicator, Tlp};
use intelmesh_interop::{import_misp_str, import_stix_str, ImportOptions, MispOptions};
use serde_json::Value;
use support::{intelmesh_owned, Nodes};

const ORG: &str = "SG-IGCI";
const STIX20: &str = "stix20/unit42/2024-03-04-GootLoader.json";
const STIX21: &str = "stix21/mvt-indicators/2023-04-11_quadream_kingspawn.stix2.json";
/// Its one indicator is an Android app id, which the mesh does not hold: rejected.
const STIX21_APP: &str = "stix21/mvt-indicators/cellebrite_cellebrite.stix2.json";
/// Tagged tlp:white; md5, sha1, sha256 and ip-dst attributes flagged to_ids.
const MISP: &str = "misp/eset_telebots_misp-telebots.json";
/// Invalid JSON on purpose.
const MISP_BAD: &str = "misp/eset_pypi_backdoor_malicious_pypi_packages.misp-event.json";

fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: the shared corpus {} is absent", dir.display());
        None
    }
}

fn s(p: &Path) -> String {
    p.to_str().expect("UTF-8 paths").to_string()
}

/// Runs `intelmesh CMD … --json` against the node; returns exit code, JSON and stderr.
fn run_json(nodes: &Nodes, cmd: &[&str]) -> (Option<i32>, Value, String) {
    nodes.run_json(ORG, cmd)
}

fn assertion(nodes: &Nodes, value: &str) -> Option<Value> {
    nodes.assertion(ORG, value)
}

fn own_entries(nodes: &Nodes) -> u64 {
    nodes.own_entries(ORG)
}

/// What the interop importer reads from a file: distinct, not revoked.
fn stix_values(path: &Path) -> Vec<Indicator> {
    let text = std::fs::read_to_string(path).unwrap();
    let import = import_stix_str(&text, &ImportOptions::default()).unwrap();
    distinct(
        import
            .indicators()
            .filter(|i| !i.revoked)
            .map(|i| i.indicator.clone()),
    )
}

fn misp_values(path: &Path) -> Vec<(Indicator, Tlp)> {
    let text = std::fs::read_to_string(path).unwrap();
    let events = import_misp_str(&text, &MispOptions::default()).unwrap();
    let mut seen = HashSet::new();
    events
        .iter()
        .flat_map(|e| e.indicators())
        .filter(|i| seen.insert(i.indicator.clone()))
        .map(|i| (i.indicator.clone(), i.tlp))
        .collect()
}

fn distinct(values: impl Iterator<Item = Indicator>) -> Vec<Indicator> {
    let mut seen = HashSet::new();
    values.filter(|v| seen.insert(v.clone())).collect()
}

#[test]
fn corpus_stix_and_misp_files_import_once_and_a_broken_file_is_named() {
    let Some(corpus) = corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    nodes.start_all();

    let stix20 = stix_values(&corpus.join(STIX20));
    let stix21 = stix_values(&corpus.join(STIX21));
    let misp = misp_values(&corpus.join(MISP));
    assert!(!stix20.is_empty() && stix21.len() > 5 && misp.len() > 20);
    assert!(stix_values(&corpus.join(STIX21_APP)).is_empty());
    // A value in two files is asserted once (the first file's).
    let all: HashSet<&Indicator> = stix20
        .iter()
        .chain(&stix21)
        .chain(misp.iter().map(|(i, _)| i))
        .collect();
    let expected = all.len();

    let files: Vec<String> = [STIX20, STIX21, STIX21_APP, MISP_BAD, MISP]
        .iter()
        .map(|f| s(&corpus.join(f)))
        .collect();
    let mut cmd = vec!["import"];
    cmd.extend(files.iter().map(String::as_str));
    let (code, first, stderr) = run_json(&nodes, &cmd);
    // The invalid file is named with why; the four others imported all the same.
    assert_eq!(code, Some(2), "{stderr}");
    let error_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(error_lines.len(), 1, "{stderr}");
    assert!(
        error_lines[0].contains(MISP_BAD) && error_lines[0].contains("not valid JSON"),
        "{stderr}"
    );
    assert_eq!(first["unreadable"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["imported"], expected, "{first:#}");
    assert_eq!(first["duplicate_already_held"], 0);
    assert_eq!(first["files"].as_array().map(Vec::len), Some(4));
    let formats: Vec<&str> = first["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["format"].as_str())
        .collect();
    assert_eq!(formats, ["stix", "stix", "stix", "misp"]);
    // The app id is rejected with the pattern's reason; relationships etc. are skipped.
    let rejected = first["reasons"]["rejected"].as_array().unwrap();
    assert!(
        rejected.iter().any(|r| {
            r["reason"].as_str().unwrap_or_default().contains("app:id")
                && r["examples"][0]
                    .as_str()
                    .unwrap_or_default()
                    .contains("indicator--")
        }),
        "{rejected:#?}"
    );
    assert!(first["skipped"].as_u64().unwrap_or(0) > 0);
    assert_eq!(own_entries(&nodes), expected as u64);

    // The node holds them: STIX values at the default TLP (the files mark none), MISP values
    // at the event's tlp:white (CLEAR).
    for v in [&stix20[0], &stix21[0], &stix21[stix21.len() - 1]] {
        let a = assertion(&nodes, v.value()).unwrap_or_else(|| panic!("{v:?} not imported"));
        assert_eq!(a["distribution"]["tlp"], Tlp::Amber.as_str());
    }
    for (v, tlp) in [&misp[0], &misp[misp.len() - 1]] {
        let a = assertion(&nodes, v.value()).unwrap_or_else(|| panic!("{v:?} not imported"));
        assert_eq!(a["distribution"]["tlp"], tlp.as_str());
        assert_eq!(*tlp, Tlp::Clear);
    }

    // Again: every request is a repeat, nothing is signed.
    let (code, second, stderr) = run_json(&nodes, &cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(second["imported"], 0, "{second:#}");
    assert_eq!(second["duplicate_already_held"], expected);
    assert_eq!(own_entries(&nodes), expected as u64);
    nodes.stop_all();
}

#[test]
fn a_plain_list_imports_refanged_and_warninglisted_values_wait_for_force() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    nodes.start_all();
    let list = dir.path().join("iocs.txt");
    std::fs::write(
        &list,
        "# defanged, as reports print them\nevil[.]example\nhxxp://bad[.]example/drop # c2\n\
         198.51.100[.]7\nevil[.]example\nnot a value\n8.8.8.8\n",
    )
    .unwrap();
    let lists = dir.path().join("warninglists");
    std::fs::create_dir(&lists).unwrap();
    std::fs::write(
        lists.join("dns.json"),
        r#"{"name":"public dns","type":"string","list":["8.8.8.8"],"matching_attributes":["ip-dst"]}"#,
    )
    .unwrap();
    let (list_s, lists_s) = (s(&list), s(&lists));
    let cmd = [
        "import",
        list_s.as_str(),
        "--tlp",
        "green",
        "--warninglist",
        lists_s.as_str(),
    ];
    let (code, got, stderr) = run_json(&nodes, &cmd);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["files"][0]["format"], "plain");
    assert_eq!(got["imported"], 3, "{got:#}");
    assert_eq!(got["duplicate_in_input"], 1);
    assert_eq!(got["rejected"], 1);
    let example = got["reasons"]["rejected"][0]["examples"][0]
        .as_str()
        .unwrap_or_default();
    assert!(example.contains("iocs.txt:6"), "{example}");
    assert_eq!(got["warned"], 1);
    let warned = got["reasons"]["warned"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        warned.contains("public dns") && warned.contains("not submitted"),
        "{warned}"
    );
    for v in ["evil.example", "http://bad.example/drop", "198.51.100.7"] {
        let a = assertion(&nodes, v).unwrap_or_else(|| panic!("{v} not imported"));
        assert_eq!(a["distribution"]["tlp"], Tlp::Green.as_str());
        assert_eq!(a["confidence"], 75);
    }
    assert!(assertion(&nodes, "8.8.8.8").is_none());

    // Tags past what an entry may carry are a usage error, before anything is read or signed.
    let before = own_entries(&nodes);
    let long_tag = "t".repeat(intelmesh_core::entry::MAX_TAG_BYTES + 1);
    for extra in [vec!["--tag", long_tag.as_str()], ["--tag", "x"].repeat(40)] {
        let mut over: Vec<String> = cmd.iter().chain(&extra).map(|a| a.to_string()).collect();
        over.extend(nodes.api_args(ORG));
        let out = intelmesh_owned(&over);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(support::one_error_line(&out).contains("--tag"), "{out:?}");
    }
    assert_eq!(own_entries(&nodes), before);

    // With --force the listed value goes too (and is still reported as warned); the three
    // others are already held identically and are not signed again.
    let before = own_entries(&nodes);
    let mut forced: Vec<&str> = cmd.to_vec();
    forced.push("--force");
    let (code, got, stderr) = run_json(&nodes, &forced);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["warned"], 1);
    assert_eq!(got["imported"], 1, "{got:#}");
    assert_eq!(got["duplicate_already_held"], 3);
    assert_eq!(own_entries(&nodes), before + 1);
    assert!(assertion(&nodes, "8.8.8.8").is_some());
    // Another TLP is another assertion: all four are signed again.
    let mut red: Vec<&str> = forced.clone();
    red[3] = "red";
    let (code, got, stderr) = run_json(&nodes, &red);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["imported"], 4, "{got:#}");
    assert_eq!(got["restricted_without_recipient"], 4);
    let a = assertion(&nodes, "evil.example").unwrap();
    assert_eq!(a["distribution"]["tlp"], Tlp::Red.as_str());

    // Export: a plain list of the four values, and a STIX bundle that imports back as
    // nothing new (every assertion in it is the node's own, identically).
    let mut export = vec!["export".to_string(), "--format".into(), "plain".into()];
    export.extend(nodes.api_args(ORG));
    let out = intelmesh_owned(&export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut plain: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    plain.sort();
    assert_eq!(
        plain,
        [
            "198.51.100.7",
            "8.8.8.8",
            "evil.example",
            "http://bad.example/drop"
        ]
    );
    let bundle = dir.path().join("export.json");
    export[2] = "stix".into();
    export.extend(["--out".to_string(), s(&bundle)]);
    let out = intelmesh_owned(&export);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&bundle).unwrap();
    let exported = import_stix_str(&text, &ImportOptions::default()).unwrap();
    assert_eq!(exported.indicators().count(), 4);
    let bundle_s = s(&bundle);
    let (code, got, stderr) = run_json(&nodes, &["import", bundle_s.as_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["files"][0]["format"], "stix");
    assert_eq!(
        (got["imported"].as_u64(), got["duplicate"].as_u64()),
        (Some(0), Some(4)),
        "{got:#}"
    );

    // A MISP feed directory: its manifest names two events, one of whose files is missing.
    let feed = dir.path().join("feed");
    std::fs::create_dir(&feed).unwrap();
    let uuid = "5b0c7f0e-1d2c-4b6a-9e1f-0a0b0c0d0e01";
    std::fs::write(
        feed.join("manifest.json"),
        format!(r#"{{"{uuid}":{{"info":"feed"}},"5b0c7f0e-1d2c-4b6a-9e1f-0a0b0c0d0e02":{{}}}}"#),
    )
    .unwrap();
    std::fs::write(
        feed.join(format!("{uuid}.json")),
        format!(
            r#"{{"Event":{{"uuid":"{uuid}","info":"feed event","Tag":[{{"name":"tlp:green"}}],
            "Attribute":[{{"type":"domain","value":"feed[.]example","to_ids":true}},
                         {{"type":"ip-dst","value":"192.0.2.1","to_ids":false}}]}}}}"#
        ),
    )
    .unwrap();
    let feed_s = s(&feed);
    let (code, got, stderr) = run_json(&nodes, &["import", feed_s.as_str(), "--tlp", "red"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["files"][0]["format"], "misp-feed");
    assert_eq!(
        (
            got["imported"].as_u64(),
            got["skipped"].as_u64(),
            got["rejected"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{got:#}"
    );
    assert!(got["reasons"]["rejected"][0]["examples"][0]
        .as_str()
        .unwrap_or_default()
        .contains("0e02.json"));
    let a = assertion(&nodes, "feed.example").unwrap_or_else(|| panic!("feed value missing"));
    assert_eq!(
        a["distribution"]["tlp"],
        Tlp::Green.as_str(),
        "the event's tag wins"
    );
    nodes.stop_all();
}

#[test]
fn stix_indicators_whose_markings_do_not_tell_their_tlp_are_rejected_not_shared_at_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    nodes.start_all();
    const GREEN: &str = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";
    const RED: &str = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";
    let indicator = |n: u32, value: &str, marks: Value| {
        let mut o = serde_json::json!({
            "type": "indicator", "spec_version": "2.1",
            "id": format!("indicator--00000000-0000-4000-8000-00000000000{n}"),
            "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
            "pattern": format!("[domain-name:value = '{value}']"), "pattern_type": "stix",
            "valid_from": "2026-11-01T00:00:00Z",
        });
        if let (Some(o), Value::Object(m)) = (o.as_object_mut(), marks) {
            o.extend(m);
        }
        o
    };
    let bundle = serde_json::json!({
        "type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000",
        "objects": [
            indicator(1, "granular.example", serde_json::json!({
                "granular_markings": [{ "marking_ref": RED, "selectors": ["pattern"] }]
            })),
            indicator(2, "undefined.example", serde_json::json!({
                "object_marking_refs": ["marking-definition--fa42a846-8d90-4e51-bc29-71d5b4802168"]
            })),
            indicator(3, "green.example", serde_json::json!({ "object_marking_refs": [GREEN] })),
            // The node refuses a batch naming a time before 1970: rejected here, alone.
            indicator(4, "old.example", serde_json::json!({
                "object_marking_refs": [GREEN], "valid_from": "1969-12-31T00:00:00Z"
            })),
            // A TLP marking beside one defined nowhere: what the other restricts is unknown.
            indicator(5, "mixed.example", serde_json::json!({
                "object_marking_refs": [GREEN, "marking-definition--0e1f2a3b-8d90-4e51-bc29-71d5b4802168"]
            })),
            // One value given GREEN, then RED: submitted once, RED.
            indicator(6, "twice.example", serde_json::json!({ "object_marking_refs": [GREEN] })),
            indicator(7, "twice.example", serde_json::json!({ "object_marking_refs": [RED] })),
            // The value of a rejected object, again unmarked: not shared at the default, but
            // RED to this org alone (what the unreadable marking meant is unknown).
            indicator(8, "undefined.example", serde_json::json!({})),
        ]
    });
    let file = dir.path().join("marked.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let file_s = s(&file);
    let (code, got, stderr) = run_json(&nodes, &["import", file_s.as_str(), "--tlp", "clear"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        (got["imported"].as_u64(), got["rejected"].as_u64()),
        (Some(3), Some(4)),
        "{got:#}"
    );
    assert_eq!(got["duplicate_in_input"], 1, "{got:#}");
    let reasons = got["reasons"]["rejected"].to_string();
    assert!(reasons.contains("0e1f2a3b"), "{reasons}");
    assert!(assertion(&nodes, "mixed.example").is_none());
    let twice = assertion(&nodes, "twice.example").expect("the repeated value is imported");
    assert_eq!(twice["distribution"]["tlp"], Tlp::Red.as_str(), "{twice}");
    let warned = got["reasons"]["warned"].to_string();
    assert!(warned.contains("stricter TLP level"), "{warned}");
    assert!(reasons.contains("valid_from is before 1970"), "{reasons}");
    assert!(
        reasons.contains("granular markings are not read"),
        "{reasons}"
    );
    assert!(reasons.contains("fa42a846"), "{reasons}");
    assert!(assertion(&nodes, "granular.example").is_none());
    let again = assertion(&nodes, "undefined.example").expect("its unmarked repeat is imported");
    assert_eq!(again["distribution"]["tlp"], Tlp::Red.as_str(), "{again}");
    assert_eq!(
        again["distribution"]["recipients"],
        serde_json::json!([]),
        "{again}"
    );
    assert!(warned.contains("could not be read"), "{warned}");
    let a = assertion(&nodes, "green.example").expect("the marked indicator is imported");
    assert_eq!(a["distribution"]["tlp"], Tlp::Green.as_str());
    nodes.stop_all();
}

/// MISP's "your organisation only" (distribution 0) stays with the importing org whatever
/// `--recipient` names; a sharing group's values (distribution 4, RED) go to the recipients.
#[test]
fn misp_organisation_only_values_are_given_no_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG, "BR-PF"]);
    nodes.start_all();
    let event = |distribution: &str, value: &str, uuid: &str| {
        serde_json::json!({ "Event": {
            "info": "test", "uuid": uuid, "distribution": distribution,
            "Attribute": [{
                "type": "domain", "category": "Network activity", "to_ids": true,
                "distribution": "5", "value": value,
                "uuid": format!("{}1", &uuid[..uuid.len() - 1]),
            }],
        }})
    };
    let (own, group) = (dir.path().join("own.json"), dir.path().join("group.json"));
    let own_event = event(
        "0",
        "org-only.example",
        "5f1e0c3a-0000-4000-8000-000000000000",
    );
    let group_event = event("4", "group.example", "5f1e0c3a-0000-4000-8000-000000000010");
    std::fs::write(&own, own_event.to_string()).unwrap();
    std::fs::write(&group, group_event.to_string()).unwrap();
    // Tagged RED, an event for the organisation only is still its alone.
    let tagged = dir.path().join("tagged.json");
    let mut tagged_event = event(
        "0",
        "tagged.example",
        "5f1e0c3a-0000-4000-8000-000000000020",
    );
    tagged_event["Event"]["Tag"] = serde_json::json!([{ "name": "tlp:red" }]);
    std::fs::write(&tagged, tagged_event.to_string()).unwrap();
    let (own_s, group_s, tagged_s) = (s(&own), s(&group), s(&tagged));
    let cmd = [
        "import",
        &own_s,
        &group_s,
        &tagged_s,
        "--recipient",
        "BR-PF",
    ];
    let (code, got, stderr) = run_json(&nodes, &cmd);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["imported"], 3, "{got:#}");
    let tagged = assertion(&nodes, "tagged.example").expect("imported");
    assert_eq!(tagged["distribution"]["tlp"], Tlp::Red.as_str(), "{tagged}");
    assert!(
        tagged["distribution"]["recipients"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{tagged}"
    );
    let own = assertion(&nodes, "org-only.example").expect("imported");
    assert_eq!(
        own["distribution"]["tlp"],
        Tlp::AmberStrict.as_str(),
        "{own}"
    );
    assert!(
        own["distribution"]["recipients"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{own}"
    );
    let shared = assertion(&nodes, "group.example").expect("imported");
    assert_eq!(
        shared["distribution"]["recipients"],
        serde_json::json!(["BR-PF"]),
        "{shared}"
    );
    nodes.stop_all();
}

/// A CSV row's confidence and validity are the assertion's; a copy of a value refused for its
/// validity does not keep a later valid copy of it from being submitted.
#[test]
fn a_csv_rows_validity_and_confidence_are_kept_and_a_refused_copy_settles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Nodes::provision(dir.path(), &[ORG]);
    nodes.start_all();
    let csv = dir.path().join("export.csv");
    std::fs::write(
        &csv,
        "type,value,tlp,confidence,valid_from_unix_ms,valid_until_unix_ms\n\
         domain,kept.example,GREEN,40,1700000000000,1700000000000\n\
         domain,kept.example,GREEN,60,1700000000000,4102444800000\n",
    )
    .unwrap();
    let (code, got, stderr) = run_json(&nodes, &["import", &s(&csv)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(got["imported"], 1, "{got:#}");
    assert_eq!(got["rejected"], 1, "{got:#}");
    let kept = assertion(&nodes, "kept.example").expect("the valid copy imported");
    assert_eq!(kept["confidence"], 60, "{kept}");
    assert_eq!(
        kept["valid_until_unix_ms"].as_i64(),
        Some(4_102_444_800_000),
        "{kept}"
    );
}
