//! Starting corpora: inputs a node really handles (entries, frames and rosters signed in the
//! fixed world, the deployed config files, values from the shared threat-intel corpus), so the
//! fuzzer starts past the decoders and mutates from there.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use intelmesh_core::entry::withheld_stub;
use intelmesh_core::indicator::normalize;
use intelmesh_core::sign::BATCH_LEAVES;
use intelmesh_core::{Distribution, Head, IndicatorType, Signer, Tlp};
use intelmesh_interop::stix_export::export_bundle;
use intelmesh_interop::ExportIndicator;
use intelmesh_proto::v1 as pb;
use intelmesh_roster::{build_genesis, sign_document, AuthorityKey, GenesisSpec, HubMember};
use prost::Message;

use crate::fixtures::{self, ISSUED_AT_UNIX_MS};

/// Where seeds are read from besides what is made here.
pub struct SeedSources {
    /// The repository root (its `deploy/` holds config files).
    pub repo: PathBuf,
    /// `../shared` beside the repository, if present.
    pub shared: Option<PathBuf>,
}

/// The seeds of `target` by name (empty for an unknown target).
pub fn seeds(target: &str, sources: &SeedSources) -> Vec<Vec<u8>> {
    match target {
        "frame" => frames(),
        "entry" => entries().iter().map(Message::encode_to_vec).collect(),
        "payload" => entries()
            .into_iter()
            .filter_map(|e| e.payload)
            .map(|p| p.to_vec())
            .collect(),
        "indicator" => values(sources.shared.as_deref()),
        "config" => configs(&sources.repo),
        "roster" => rosters(),
        "stix" => with_shared(stix_bundle(), sources, &STIX_DIRS),
        "misp" => with_shared(MISP_EVENT.as_bytes().to_vec(), sources, &MISP_DIRS),
        "misp_manifest" => {
            let mut out = vec![MISP_MANIFEST.as_bytes().to_vec()];
            out.extend(list_files(
                sources.shared.as_deref(),
                &["interop-samples/misp-feed"],
                |p| p.file_name().is_some_and(|n| n == "manifest.json"),
                usize::MAX,
            ));
            out
        }
        "taxii_query" => TAXII_QUERIES
            .iter()
            .map(|q| q.as_bytes().to_vec())
            .collect(),
        "taxii_envelope" => with_shared(stix_bundle(), sources, &STIX_DIRS),
        "warninglist" => with_shared(
            WARNINGLIST.as_bytes().to_vec(),
            sources,
            &["corpus/warninglists"],
        ),
        "csv" => {
            let mut out = vec![CSV.as_bytes().to_vec()];
            out.extend(list_files(
                sources.shared.as_deref(),
                &CSV_DIRS,
                is_csv,
                usize::MAX,
            ));
            out
        }
        "text" => {
            let mut out = vec![PLAIN.as_bytes().to_vec()];
            out.extend(list_files(
                sources.shared.as_deref(),
                &TEXT_DIRS,
                |p| !is_csv(p),
                4,
            ));
            out
        }
        _ => Vec::new(),
    }
}

/// Query strings and headers as TAXII clients send them (taxii2-client, OpenCTI, MISP's
/// scripts): one per seed, query then `Accept` then `Content-Type`, a line each.
const TAXII_QUERIES: &[&str] = &[
    "added_after=2026-12-01T10:00:00.123456Z&limit=2\napplication/taxii+json;version=2.1\napplication/taxii+json;version=2.1",
    "match%5Btype%5D=indicator%2Csighting&match%5Bversion%5D=all\napplication/taxii+json\n",
    "match[id]=indicator--0a1b2c3d-0000-4000-8000-000000000001&match[spec_version]=2.1\n*/*\n",
    "next=00.0.&limit=1000&match[version]=first,last,2026-01-01T00:00:00Z\ntext/html, application/taxii+json;q=0.9\napplication/json",
];

/// Raw values of every type, in the shapes analysts paste them.
const VALUES: &[(IndicatorType, &str)] = &[
    (IndicatorType::Ipv4, "203.0.113.7"),
    (IndicatorType::Ipv6, "2001:db8::1"),
    (IndicatorType::Cidr, "198.51.100.0/24"),
    (IndicatorType::Domain, "evil.example"),
    (IndicatorType::Url, "http://evil.example/path?q=1#frag"),
    (IndicatorType::Email, "phish@evil.example"),
    (IndicatorType::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
    (
        IndicatorType::Sha1,
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    ),
    (
        IndicatorType::Sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
];

fn indicator_ref(ty: IndicatorType, raw: &str) -> Option<pb::IndicatorRef> {
    let canonical = normalize(ty, raw).ok()?;
    Some(pb::IndicatorRef {
        r#type: ty.to_proto() as i32,
        value: canonical.into_value(),
    })
}

/// One payload of each body kind per value: upsert, sighting, revocation.
fn payloads() -> Vec<pb::Payload> {
    let mut out = Vec::new();
    for (ty, raw) in VALUES {
        let Some(r) = indicator_ref(*ty, raw) else {
            continue;
        };
        let bodies = [
            pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(r.clone()),
                confidence: 80,
                valid_from_unix_ms: ISSUED_AT_UNIX_MS,
                valid_until_unix_ms: Some(ISSUED_AT_UNIX_MS + 86_400_000),
                tags: vec!["apt:example".into(), "c2".into()],
                threat_types: vec!["malware".into()],
                description: "seen in the wild".into(),
                external_references: vec![pb::ExternalReference {
                    source: "vendor".into(),
                    url: "https://vendor.example/report".into(),
                    external_id: "R-1".into(),
                }],
            }),
            pb::payload::Body::Sighting(pb::Sighting {
                indicator: Some(r.clone()),
                seen_at_unix_ms: ISSUED_AT_UNIX_MS,
                count: 3,
            }),
            pb::payload::Body::Revoke(pb::IndicatorRevoke {
                indicator: Some(r),
                reason: "false positive".into(),
            }),
        ];
        out.extend(bodies.into_iter().map(|b| pb::Payload {
            body: Some(b),
            ..pb::Payload::default()
        }));
    }
    out
}

/// A chain of the origin's entries over every TLP level (restricted ones name the peer and are
/// sealed to it, as a node seals them), the withheld stub of a restricted one, the first three
/// of a publication signed as one batch (with their paths) and a stub of one, one entry of
/// the peer, and a
/// restricted entry signed before sealing existed (plain text).
fn entries() -> Vec<pb::SignedEntry> {
    let signer = fixtures::origin_signer();
    let levels = Tlp::ALL;
    let mut head: Option<Head> = None;
    let mut out = Vec::new();
    for (i, payload) in payloads().iter().enumerate() {
        let tlp = levels[i % levels.len()];
        let recipients = if tlp.is_restricted() {
            vec![fixtures::peer()]
        } else {
            Vec::new()
        };
        let dist = Distribution { tlp, recipients };
        let sealed = signer.sign_next_sealing(
            head,
            ISSUED_AT_UNIX_MS,
            &dist,
            payload,
            fixtures::keys().as_ref(),
        );
        let (entry, next) = match sealed {
            Ok(signed) => signed,
            Err(e) => panic!("sealing a seed: {e}"),
        };
        if tlp.is_restricted() {
            out.push(withheld_stub(&entry));
        }
        out.push(entry);
        head = Some(next);
    }
    let green = Distribution {
        tlp: Tlp::Green,
        recipients: Vec::new(),
    };
    let batch: Vec<_> = payloads()
        .into_iter()
        .cycle()
        .take(BATCH_LEAVES)
        .map(|p| (green.clone(), p))
        .collect();
    let (batched, _) = signer.sign_chain(head, ISSUED_AT_UNIX_MS, &batch);
    if let Some(first) = batched.first() {
        out.push(withheld_stub(first));
    }
    out.extend(batched.into_iter().take(3));
    if let Some(p) = payloads().first() {
        let legacy = Distribution {
            tlp: Tlp::Red,
            recipients: vec![fixtures::origin()],
        };
        out.push(
            fixtures::peer_signer()
                .sign_next(None, ISSUED_AT_UNIX_MS, &legacy, p)
                .0,
        );
        let (entry, _) = fixtures::peer_signer().sign_next(
            None,
            ISSUED_AT_UNIX_MS,
            &Distribution {
                tlp: Tlp::Green,
                recipients: Vec::new(),
            },
            p,
        );
        out.push(entry);
    }
    out
}

fn frame(f: pb::sync_frame::Frame) -> Vec<u8> {
    pb::SyncFrame { frame: Some(f) }.encode_to_vec()
}

/// One frame of each kind, holding the seed entries, the origin's head and a real fork proof.
fn frames() -> Vec<Vec<u8>> {
    use pb::sync_frame::Frame;
    let entries = entries();
    let vector = pb::VersionVector {
        heads: [
            (fixtures::ORIGIN.to_string(), 5),
            ("NOT-A-MEMBER".into(), 9),
        ]
        .into(),
        head_hashes: [(fixtures::ORIGIN.to_string(), vec![1; 32])].into(),
    };
    let signer = fixtures::origin_signer();
    let green = Distribution {
        tlp: Tlp::Green,
        recipients: Vec::new(),
    };
    let all = payloads();
    let fork = match (all.first(), all.get(1)) {
        (Some(a), Some(b)) => vec![pb::ForkProof {
            origin: fixtures::ORIGIN.into(),
            seq: 1,
            kept: Some(signer.sign_next(None, ISSUED_AT_UNIX_MS, &green, a).0),
            conflicting: Some(signer.sign_next(None, ISSUED_AT_UNIX_MS, &green, b).0),
            detected_at_unix_ms: fixtures::NOW_UNIX_MS,
        }],
        _ => Vec::new(),
    };
    // Batches of one or two entries (each kind once: upsert, sighting, revocation, stub, the
    // peer's): a mutation of a big batch leaves most of its entries valid, and verifying them
    // again on every execution slowed the fuzzer to a few hundred executions per second.
    let singles = entries.iter().take(5).chain(entries.last()).map(|e| {
        frame(Frame::Entries(pb::EntryBatch {
            entries: vec![e.clone()],
        }))
    });
    let mut frames: Vec<Vec<u8>> = singles.collect();
    frames.extend([
        frame(Frame::Hello(pb::Hello {
            org_id: fixtures::PEER.into(),
            roster_version: 1,
            vector: Some(vector.clone()),
            reaches: vec![fixtures::PEER.into(), fixtures::ORIGIN.into()],
            roster_hash: vec![2; 32],
            progress_changes: true,
            progress_omits_sent: true,
        })),
        frame(Frame::Entries(pb::EntryBatch {
            entries: entries.iter().take(2).cloned().collect(),
        })),
        frame(Frame::Progress(pb::Progress {
            vector: Some(vector),
        })),
        frame(Frame::Heartbeat(pb::Heartbeat {
            sent_at_unix_ms: fixtures::NOW_UNIX_MS,
        })),
        frame(Frame::Want(pb::Want {
            entries: vec![
                pb::EntryRef {
                    origin: fixtures::ORIGIN.into(),
                    seq: 4,
                },
                pb::EntryRef {
                    origin: "NOT-A-MEMBER".into(),
                    seq: 1,
                },
            ],
        })),
        frame(Frame::Evidence(pb::ForkEvidence { proofs: fork })),
        frame(Frame::Relays(pb::Relays {
            orgs: vec![
                fixtures::PEER.into(),
                "not an org".into(),
                fixtures::PEER.into(),
            ],
        })),
    ]);
    frames
}

/// Values in analysts' shapes (defanged, bracketed, mixed case, IDN), then lines of the shared
/// corpus's IOC lists and reports.
fn values(shared: Option<&Path>) -> Vec<Vec<u8>> {
    let crafted = [
        "hxxps://evil[.]example/a/../b?x=1",
        "EVIL[.]Example.",
        "1.2.3[.]4",
        "10.0.0.0/8",
        "2001:DB8:0:0:0:0:0:1",
        "::ffff:192.0.2.1",
        "fe80::1%eth0",
        "user[at]evil[dot]example",
        "xn--bcher-kva.example",
        "bücher.example",
        "http://[2001:db8::1]:8080/",
        "D41D8CD98F00B204E9800998ECF8427E",
    ];
    let mut out: Vec<Vec<u8>> = VALUES
        .iter()
        .map(|(_, v)| v.as_bytes().to_vec())
        .chain(crafted.iter().map(|v| v.as_bytes().to_vec()))
        .collect();
    if let Some(shared) = shared {
        for dir in [
            "corpus/lists",
            "interop-samples/lists",
            "interop-samples/reports",
        ] {
            out.extend(lines_of(&shared.join(dir), 20));
        }
    }
    out
}

/// Up to `per_file` distinct short lines of each file in `dir` (sorted by name, so the corpus is
/// the same on every run).
fn lines_of(dir: &Path, per_file: usize) -> Vec<Vec<u8>> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read(&file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && l.len() <= 256);
        out.extend(lines.take(per_file).map(|l| l.as_bytes().to_vec()));
    }
    out
}

const STIX_DIRS: [&str; 4] = [
    "corpus/stix20",
    "corpus/stix21",
    "interop-samples/stix20",
    "interop-samples/stix21",
];
const MISP_DIRS: [&str; 3] = [
    "corpus/misp",
    "interop-samples/misp",
    "interop-samples/misp-feed",
];

/// A feed manifest as MISP writes one, with a key that would leave the directory.
const MISP_MANIFEST: &str = r##"{"5f0c2f3e-1b2a-4c3d-9e8f-0a1b2c3d4e5f":{"info":"seed","date":"2026-11-30",
"threat_level_id":"2","analysis":"1","timestamp":"1796000000","Orgc":{"name":"CIRCL","uuid":"55f6ea5e-2c60-40e5-964f-47a8950d210f"},
"Tag":[{"name":"tlp:white","colour":"#ffffff"}]},"../manifest":{}}"##;

/// A MISP event with attributes of the shapes importers meet: loose, composite, inside an
/// object, tagged, not for IDS.
const MISP_EVENT: &str = r#"{"Event":{"info":"seed","distribution":"1","Tag":[{"name":"tlp:amber"}],
"Attribute":[{"type":"ip-dst","value":"203.0.113.7","to_ids":true,"distribution":"5"},
{"type":"domain|ip","value":"evil.example|198.51.100.9","to_ids":true,"Tag":[{"name":"tlp:red"}]},
{"type":"filename|sha256","value":"a.exe|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","to_ids":true},
{"type":"url","value":"hxxp://evil[.]example/x","to_ids":false}],
"Object":[{"name":"email","Attribute":[{"type":"email-src","value":"phish@evil.example","to_ids":true}]}]}}"#;

/// A MISP warninglist of each matching kind's shape.
const WARNINGLIST: &str = r#"{"name":"seed list","type":"cidr","version":1,
"description":"seed","matching_attributes":["ip-src","ip-dst","domain"],
"list":["8.8.8.0/24","2001:4860::/32","10.0.0.0/8"]}"#;

/// The mesh's own STIX export of the seed values at every TLP level.
fn stix_bundle() -> Vec<u8> {
    let levels = Tlp::ALL;
    let indicators: Vec<ExportIndicator> = probe_values()
        .into_iter()
        .zip(levels.iter().cycle())
        .map(|(indicator, tlp)| ExportIndicator {
            indicator,
            origin: fixtures::ORIGIN.into(),
            tlp: *tlp,
            confidence: Some(70),
            valid_from_unix_ms: ISSUED_AT_UNIX_MS,
            valid_until_unix_ms: Some(fixtures::NOW_UNIX_MS + 86_400_000),
            revoked: false,
            created_unix_ms: ISSUED_AT_UNIX_MS,
            modified_unix_ms: ISSUED_AT_UNIX_MS,
            tags: vec!["c2".into()],
            description: None,
        })
        .collect();
    export_bundle(&indicators, &[], ISSUED_AT_UNIX_MS)
        .to_string()
        .into_bytes()
}

/// `own` followed by the files of the given folders of `../shared`, if present.
fn with_shared(own: Vec<u8>, sources: &SeedSources, dirs: &[&str]) -> Vec<Vec<u8>> {
    let mut out = vec![own];
    out.extend(shared_files(sources.shared.as_deref(), dirs));
    out
}

/// A CSV export: header, quoted cells with commas and quotes, empty cells, defanged values,
/// `;` and tab separators, a comment and a row with no indicator.
const CSV: &str = "\u{feff}type,value,first_seen,comment\n\
ip-dst,203.0.113.7,2024-01-02,\"c2, seen twice\"\n\
domain,\"evil[.]example\",,\n\
# exported by hand\n\
url;hxxps://evil[.]example/gate.php?id=1\tphish@evil[.]example\n\
sha256,E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855,\"say \"\"hi\"\"\"\n\
note,nothing here,,\n";

/// A plain list and report lines: defanged values, comments, annotated values, prose.
const PLAIN: &str = "# IOCs\n\
evil[.]example\n\
hxxp://bad[.]example/x # c2\n\
198.51.100.0/24\n\
D41D8CD98F00B204E9800998ECF8427E;dropper.exe\n\
user[at]evil[dot]example,phishing\n\
\n\
The actor used 203.0.113.7 for staging.\n\
2001:db8::1  # v6\n";

fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// Where CSV seeds are read from in `../shared` (CSV files only, subfolders included).
const CSV_DIRS: [&str; 2] = ["interop-samples/csv", "corpus/lists"];
/// Where plain list and report seeds are read from (anything but CSV).
const TEXT_DIRS: [&str; 3] = [
    "interop-samples/lists",
    "interop-samples/reports",
    "corpus/lists",
];

/// The files up to 16 KiB of the given folders of `../shared` and their subfolders that `keep`
/// takes, at most `per_folder` of each folder (by name, so the seeds are the same on every run).
fn list_files(
    shared: Option<&Path>,
    dirs: &[&str],
    keep: fn(&Path) -> bool,
    per_folder: usize,
) -> Vec<Vec<u8>> {
    let Some(shared) = shared else {
        return Vec::new();
    };
    let mut folders: Vec<PathBuf> = dirs.iter().map(|d| shared.join(d)).collect();
    let mut out = Vec::new();
    while let Some(folder) = folders.pop() {
        let mut entries = files_in(&folder);
        entries.sort();
        folders.extend(entries.iter().filter(|p| p.is_dir()).rev().cloned());
        let small = entries.iter().filter(|f| {
            keep(f)
                && f.metadata()
                    .is_ok_and(|m| m.is_file() && m.len() <= 16 << 10)
        });
        out.extend(small.take(per_folder).filter_map(|f| std::fs::read(f).ok()));
    }
    out
}

/// One canonical indicator of each type, for matching against what a target loaded.
pub fn probe_values() -> Vec<intelmesh_core::Indicator> {
    VALUES
        .iter()
        .chain(&[
            (IndicatorType::Ipv4, "8.8.8.8"),
            (IndicatorType::Domain, "www.google.com"),
            (IndicatorType::Url, "https://login.microsoftonline.com/x"),
        ])
        .filter_map(|(ty, raw)| normalize(*ty, raw).ok())
        .collect()
}

/// The files of the given folders of `../shared` (sorted), smaller than 256 KiB: AFL works best
/// from small inputs, and the big bundles add nothing the small ones do not reach.
fn shared_files(shared: Option<&Path>, dirs: &[&str]) -> Vec<Vec<u8>> {
    let Some(shared) = shared else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for dir in dirs {
        let mut files = files_in(&shared.join(dir));
        for sub in files.clone().iter().filter(|p| p.is_dir()) {
            files.extend(files_in(sub));
        }
        files.sort();
        let small = files.iter().filter(|f| {
            f.metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= 16 << 10)
        });
        out.extend(small.filter_map(|f| std::fs::read(f).ok()));
    }
    out
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(read) => read.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The config files the project ships (`deploy/`).
fn configs(repo: &Path) -> Vec<Vec<u8>> {
    let Ok(read) = std::fs::read_dir(repo.join("deploy")) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

/// A genesis document (2-of-3 authority, one hub) and that genesis signed.
fn rosters() -> Vec<Vec<u8>> {
    let authority: Vec<SigningKey> = (1..=3u8)
        .map(|n| SigningKey::from_bytes(&[n; 32]))
        .collect();
    let hub = Signer::new(fixtures::origin(), SigningKey::from_bytes(&[10; 32]));
    let spec = GenesisSpec {
        federation_id: fixtures::peer(),
        authority: authority
            .iter()
            .zip(["alice", "bob", "carol"])
            .map(|(k, name)| AuthorityKey {
                name: name.into(),
                key: k.verifying_key(),
            })
            .collect(),
        threshold: 2,
        hub_members: vec![HubMember {
            org: hub.org().clone(),
            display_name: "The Hub".into(),
            country: "SG".into(),
            signing_key: hub.verifying_key(),
            encryption_key: None,
        }],
        ca_certs_pem: vec!["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()],
        hubs: vec![pb::HubAddress {
            org: hub.org().to_string(),
            address: "hub.example:7443".into(),
        }],
        policy: pb::Policy::default(),
        proposed_by: "alice".into(),
    };
    let Ok(document) = build_genesis(&spec, fixtures::NOW_UNIX_MS) else {
        return Vec::new();
    };
    let signed = pb::SignedRoster {
        signatures: authority
            .iter()
            .take(2)
            .map(|k| sign_document(&document, k, fixtures::NOW_UNIX_MS))
            .collect(),
        document: document.clone(),
    };
    vec![document, signed.encode_to_vec()]
}
