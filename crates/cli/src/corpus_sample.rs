//! The indicators the demo shares: a few hundred real domains, IPv4 addresses and SHA-256
//! hashes from the Amnesty and ESET lists of the shared threat-intel corpus when it is present,
//! otherwise a built-in sample in documentation ranges (defanged in places, to show that the
//! node normalizes).

use std::path::{Path, PathBuf};

use intelmesh_core::indicator::{detect, normalize, IndicatorType};

/// One value to submit, raw as it appears in its source.
#[derive(Clone, Debug)]
pub struct SampleValue {
    pub raw: String,
    pub ty: IndicatorType,
    /// Short name of where it came from, used as a tag.
    pub source: String,
}

pub struct Sample {
    /// What was used, for the demo's output.
    pub description: String,
    pub values: Vec<SampleValue>,
}

/// How many of each type to take from the corpus.
const QUOTAS: [(IndicatorType, usize); 3] = [
    (IndicatorType::Domain, 150),
    (IndicatorType::Ipv4, 40),
    (IndicatorType::Sha256, 110),
];

/// The corpus at `explicit`, or found next to the current directory or the source tree, or
/// the built-in sample.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Sample> {
    if let Some(dir) = explicit {
        if !dir.join("lists").is_dir() {
            return Err(crate::usage(format!(
                "--corpus {}: no lists/ folder in it",
                dir.display()
            )));
        }
        return from_corpus(dir);
    }
    match find_corpus() {
        Some(dir) => from_corpus(&dir),
        None => Ok(builtin()),
    }
}

/// `../shared/corpus` from the current directory or any ancestor (so it works from the repo
/// root and from crate directories), then from the source tree this binary was built from.
fn find_corpus() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            candidates.push(dir.join("../shared/corpus"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"));
    candidates
        .into_iter()
        .find(|c| c.join("lists/amnesty").is_dir() || c.join("lists/eset").is_dir())
        .map(|c| c.canonicalize().unwrap_or(c))
}

/// Files of `dir` whose names end with one of `suffixes`, sorted for a deterministic pick.
fn files(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
        })
        .collect();
    out.sort();
    out
}

fn from_corpus(root: &Path) -> anyhow::Result<Sample> {
    let amnesty = root.join("lists/amnesty");
    let eset = root.join("lists/eset");
    let sources: [(IndicatorType, Vec<(&str, PathBuf)>); 3] = [
        (
            IndicatorType::Domain,
            tagged("amnesty", files(&amnesty, &["_domains.txt"])),
        ),
        (
            IndicatorType::Ipv4,
            tagged("amnesty", files(&amnesty, &["_ips.txt"])),
        ),
        (
            IndicatorType::Sha256,
            tagged("amnesty", files(&amnesty, &["_sha256.txt"]))
                .into_iter()
                .chain(tagged("eset", files(&eset, &[".sha256"])))
                .collect(),
        ),
    ];
    let mut per_type = Vec::new();
    let mut invalid = 0usize;
    for (ty, paths) in sources {
        let mut seen = std::collections::HashSet::new();
        let mut all = Vec::new();
        for (source, path) in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match normalize(ty, line) {
                    Ok(ind) => {
                        if seen.insert(ind) {
                            all.push(SampleValue {
                                raw: line.to_string(),
                                ty,
                                source: source.to_string(),
                            });
                        }
                    }
                    Err(_) => invalid += 1,
                }
            }
        }
        let quota = QUOTAS.iter().find(|(t, _)| *t == ty).map_or(0, |q| q.1);
        per_type.push((ty, spread(all, quota)));
    }
    let counts: Vec<String> = per_type
        .iter()
        .map(|(ty, v)| format!("{} {ty}", v.len()))
        .collect();
    let values = interleave(per_type.into_iter().map(|(_, v)| v).collect());
    if values.is_empty() {
        return Ok(builtin());
    }
    Ok(Sample {
        description: format!(
            "{} values from the corpus at {} ({} from lists/amnesty and lists/eset; {invalid} lines there skipped as not valid)",
            values.len(),
            root.display(),
            counts.join(", ")
        ),
        values,
    })
}

fn tagged(tag: &'static str, paths: Vec<PathBuf>) -> Vec<(&'static str, PathBuf)> {
    paths.into_iter().map(|p| (tag, p)).collect()
}

/// `n` values evenly spread over `all`, so every file contributes.
fn spread(all: Vec<SampleValue>, n: usize) -> Vec<SampleValue> {
    if all.len() <= n {
        return all;
    }
    let len = all.len();
    (0..n).map(|i| all[i * len / n].clone()).collect()
}

/// Round-robin over the lists, so every batch the demo submits mixes types.
fn interleave(lists: Vec<Vec<SampleValue>>) -> Vec<SampleValue> {
    let mut iters: Vec<_> = lists.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for it in &mut iters {
            out.extend(it.next());
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Values in reserved documentation ranges (RFC 5737, RFC 3849, `.example`), some defanged.
const BUILTIN: &[&str] = &[
    "c2-relay[.]apt-sample.example",
    "update-check.malware-sample.example",
    "login-verify[.]phish-sample.example",
    "cdn-sync.exfil-sample.example",
    "hxxps://drop.apt-sample.example/stage2.bin",
    "hxxp://login-verify.phish-sample.example/owa/auth.php?id=7",
    "https://cdn-sync.exfil-sample.example/upload",
    "beacon.apt-sample.example",
    "mail-gate.phish-sample.example",
    "files-share[.]exfil-sample[.]example",
    "192.0.2.17",
    "192.0.2.44",
    "192.0.2[.]101",
    "198.51.100.23",
    "198.51.100.77",
    "198.51.100.200",
    "203.0.113.5",
    "203.0.113.66",
    "203.0.113[.]129",
    "203.0.113.250",
    "2001:db8::17",
    "2001:db8:4:1::beef",
    "2001:DB8:0:0:0:0:0:A1",
    "192.0.2.128/25",
    "198.51.100.0/24",
    "2001:db8:ff00::/40",
    "billing@phish-sample.example",
    "it-support[@]phish-sample.example",
    "ceo.office@apt-sample.example",
    "44d88612fea8a8f36de82e1278abb02f",
    "e99a18c428cb38d5f260853678922e03",
    "5d41402abc4b2a76b9719d911017c592",
    "7215ee9c7d9dc229d2921a40e899ec5f",
    "3da541559918a808c2402bba5012f6c60b27661c",
    "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    "7c4a8d09ca3762af61e59520943dc26494f8941b",
    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
    "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
    "3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d",
    "2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6",
    "18ac3e7343f016890c510e93f935261169d9e3f565436429830faf0934f4f8e4",
    "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea",
    "252f10c83610ebca1a059c0bae8255eba2f95be4d1d7bcfa89d7248a82d9f111",
    "CA2B4C8F1E2D3B4A5968778695A4B3C2D1E0F9E8D7C6B5A4938271605F4E3D2C",
    "kill-switch.malware-sample.example",
    "telemetry-api.apt-sample.example",
    "hxxp://198.51.100.23:8080/gate.php",
    "secure-docs.phish-sample.example",
    "203.0.113.0/26",
    "ops-mailer@exfil-sample.example",
];

pub fn builtin() -> Sample {
    let values: Vec<SampleValue> = BUILTIN
        .iter()
        .filter_map(|raw| {
            let ind = detect(raw).ok()?;
            Some(SampleValue {
                raw: (*raw).to_string(),
                ty: ind.ty(),
                source: "builtin".to_string(),
            })
        })
        .collect();
    Sample {
        description: format!(
            "{} built-in sample values in documentation ranges (the corpus in ../shared/corpus is used when present; --corpus DIR names another)",
            values.len()
        ),
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_value_is_a_valid_indicator() {
        for raw in BUILTIN {
            assert!(detect(raw).is_ok(), "{raw}: {:?}", detect(raw));
        }
        let sample = builtin();
        assert_eq!(sample.values.len(), BUILTIN.len());
        let distinct: std::collections::HashSet<_> = BUILTIN
            .iter()
            .map(|r| detect(r).map(|i| i.into_value()).unwrap_or_default())
            .collect();
        assert_eq!(
            distinct.len(),
            BUILTIN.len(),
            "built-in values are distinct"
        );
    }

    #[test]
    fn interleave_mixes_lists() {
        let v = |s: &str| SampleValue {
            raw: s.into(),
            ty: IndicatorType::Domain,
            source: "t".into(),
        };
        let out = interleave(vec![vec![v("a"), v("b"), v("c")], vec![v("1")]]);
        let raws: Vec<&str> = out.iter().map(|s| s.raw.as_str()).collect();
        assert_eq!(raws, ["a", "1", "b", "c"]);
    }
}
