//! Normalization over the real threat-intel corpus in `<repo>/../shared/corpus`: the list files
//! of six publishers and ESET's MISP events.
//!
//! Every candidate value either normalizes or gets a reason; counts per type and per reason
//! are printed (`cargo test --test corpus -- --nocapture`). The assertions are on what must
//! hold: values in files whose names declare a type, and typed MISP attributes, normalize
//! under that type, and real values round-trip to the canonical forms written down here.
//! Without the corpus the test says so and passes.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use intelmesh_core::indicator::{detect, normalize, Indicator, IndicatorType, NormalizeError};
use serde_json::Value;

use IndicatorType::{Cidr, Domain, Email, Ipv4, Ipv6, Md5, Sha1, Sha256, Url};

const EXAMPLES_PER_REASON: usize = 4;

#[test]
fn corpus_normalizes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    if !root.join("lists").is_dir() || !root.join("misp").is_dir() {
        println!(
            "corpus test skipped: no lists/ and misp/ under {}",
            root.display()
        );
        return;
    }
    let lists = scan_lists(&root.join("lists"));
    lists
        .detected
        .print("lists/, every candidate token through detect()");
    lists
        .typed
        .print("lists/, files whose names declare the type, through normalize()");
    lists
        .maltrail
        .print("lists/maltrail, one value a line, through detect()");
    println!(
        "typed list values: detect() agrees with normalize() for {} of {} normalized",
        lists.detect_agrees,
        lists.typed.ok()
    );
    let misp = scan_misp(&root.join("misp"));
    misp.tally
        .print("misp/, typed attributes through normalize()");
    println!("misp/: {} files, {} events read", misp.files, misp.events);
    for (file, err) in &misp.invalid {
        println!("misp/: skipped invalid JSON {file}: {err}");
    }

    lists.typed.assert_rate("typed list values", 0.99);
    assert!(
        lists.typed.total() > 25_000,
        "too few typed list values: {}",
        lists.typed.total()
    );
    assert!(
        lists.detect_agrees as f64 >= 0.99 * lists.typed.ok() as f64,
        "detect() disagrees with declared types too often"
    );
    // Maltrail holds bare paths (`/zuniga.php`) that are no indicator on their own.
    lists.maltrail.assert_rate("maltrail values", 0.96);
    misp.tally.assert_rate("typed MISP attributes", 0.97);
    assert!(
        misp.events >= 50 && misp.tally.total() > 2_000,
        "too little MISP data read"
    );
    assert!(
        misp.invalid.len() <= 1,
        "invalid MISP files: {:?}",
        misp.invalid
    );
    check_round_trips(&root);
}

/// Normalized values per type and rejections per reason, with a few examples of each.
#[derive(Default)]
struct Tally {
    normalized: BTreeMap<IndicatorType, usize>,
    rejected: BTreeMap<&'static str, usize>,
    examples: BTreeMap<&'static str, Vec<String>>,
}

impl Tally {
    fn record(&mut self, res: &Result<Indicator, NormalizeError>, raw: &str, file: &str) {
        match res {
            Ok(indicator) => *self.normalized.entry(indicator.ty()).or_default() += 1,
            Err(err) => {
                *self.rejected.entry(err.kind()).or_default() += 1;
                let examples = self.examples.entry(err.kind()).or_default();
                if examples.len() < EXAMPLES_PER_REASON {
                    examples.push(format!("{raw:?} in {file}: {err}"));
                }
            }
        }
    }

    fn ok(&self) -> usize {
        self.normalized.values().sum()
    }

    fn total(&self) -> usize {
        self.ok() + self.rejected.values().sum::<usize>()
    }

    fn print(&self, title: &str) {
        println!("\n== {title}: {} of {} normalized", self.ok(), self.total());
        for (ty, n) in &self.normalized {
            println!("  {:<8} {n:>8}", ty.as_str());
        }
        for (kind, n) in &self.rejected {
            println!("  rejected {kind:<20} {n:>8}");
            for example in &self.examples[kind] {
                println!("      {example}");
            }
        }
    }

    fn assert_rate(&self, what: &str, min: f64) {
        let rate = self.ok() as f64 / self.total().max(1) as f64;
        assert!(
            rate >= min,
            "{what}: {:.2}% normalized, {:.0}% required",
            rate * 100.0,
            min * 100.0
        );
    }
}

#[derive(Default)]
struct Lists {
    detected: Tally,
    typed: Tally,
    maltrail: Tally,
    detect_agrees: usize,
}

fn scan_lists(dir: &Path) -> Lists {
    let mut lists = Lists::default();
    for path in files_under(dir) {
        let name = path
            .strip_prefix(dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let text = read_text(&path);
        let declared = declared_type(&name);
        let maltrail = name.starts_with("maltrail/");
        for line in text.lines() {
            let line = strip_comment(line);
            if let Some(ty) = declared {
                if let Some(value) = first_cell(line) {
                    let ty = if ty == Ipv4 && value.contains(':') {
                        Ipv6
                    } else {
                        ty
                    };
                    let res = normalize(ty, value);
                    lists.detect_agrees += usize::from(res.is_ok() && detect(value) == res);
                    lists.typed.record(&res, value, &name);
                }
            }
            if maltrail {
                if let Some(value) = first_cell(line) {
                    lists.maltrail.record(&detect(value), value, &name);
                }
            }
            for token in candidates(line) {
                lists.detected.record(&detect(token), token, &name);
            }
        }
    }
    lists
}

/// The type a list file's name promises for every value in it.
fn declared_type(name: &str) -> Option<IndicatorType> {
    let by_suffix = [
        (".md5", Md5),
        (".sha1", Sha1),
        (".sha256", Sha256),
        ("_sha256.txt", Sha256),
        ("_domains.txt", Domain),
        ("_ips.txt", Ipv4),
        ("_emails.txt", Email),
        ("maltrail/mass_scanner_cidr.txt", Cidr),
    ];
    by_suffix
        .into_iter()
        .find(|(suffix, _)| name.ends_with(suffix))
        .map(|(_, ty)| ty)
}

/// Drops `# comment` lines and trailing ` # comments` (maltrail, signature-base). A `#` with no
/// space before it is kept: it may be a URL's fragment.
fn strip_comment(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') {
        return "";
    }
    match trimmed.find(" #").or_else(|| trimmed.find("\t#")) {
        Some(at) => &trimmed[..at],
        None => trimmed,
    }
}

/// The first cell of a `value`, `value,comment` or `value;score` line.
fn first_cell(line: &str) -> Option<&str> {
    let cell = line.split([',', ';', '\t']).next()?.trim();
    let cell = cell.split_whitespace().next()?;
    (!cell.is_empty()).then_some(cell)
}

/// Tokens of a line that could be indicators: they have a dot, `@` or `:` inside, a
/// scheme, or are long hex. CSV cells, quotes and AsciiDoc's `` `+value+` `` are undone.
fn candidates(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '|' | '"'))
        .map(|token| {
            token.trim_matches(|c| matches!(c, '`' | '+' | '*' | '\'' | '<' | '>' | '(' | ')'))
        })
        .filter(|token| is_candidate(token))
}

fn is_candidate(token: &str) -> bool {
    if token.len() < 4 {
        return false;
    }
    let inner = token.trim_matches(|c| matches!(c, '.' | ':' | '@'));
    let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    // Times of day (`07:26:17`) are digits and colons too; an address has `::`, eight
    // groups or a hex letter.
    let colons = inner.matches(':').count();
    let v6_like = colons >= 2
        && (inner.contains("::") || colons >= 7 || inner.bytes().any(|b| b.is_ascii_alphabetic()))
        && inner
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    token.contains("://") || inner.contains(['.', '@']) || v6_like || (hex && token.len() >= 32)
}

struct Misp {
    tally: Tally,
    files: usize,
    events: usize,
    invalid: Vec<(String, String)>,
}

fn scan_misp(dir: &Path) -> Misp {
    let mut misp = Misp {
        tally: Tally::default(),
        files: 0,
        events: 0,
        invalid: Vec::new(),
    };
    for path in files_under(dir) {
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        misp.files += 1;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes = fs::read(&path).unwrap_or_default();
        let doc: Value = match serde_json::from_slice(&bytes) {
            Ok(doc) => doc,
            Err(err) => {
                misp.invalid.push((name, err.to_string()));
                continue;
            }
        };
        // Two shapes: `{"response": [{"Event": …}]}` and `{"Event": …}`.
        let events: Vec<&Value> = match doc.get("response").and_then(Value::as_array) {
            Some(responses) => responses.iter().filter_map(|r| r.get("Event")).collect(),
            None => doc.get("Event").into_iter().collect(),
        };
        for event in events {
            misp.events += 1;
            let objects = array(event, "Object");
            let attributes = array(event, "Attribute")
                .iter()
                .chain(objects.iter().flat_map(|object| array(object, "Attribute")));
            for attribute in attributes {
                let ty = attribute
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let value = attribute
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                for (ty, part) in misp_parts(ty, value) {
                    misp.tally.record(&normalize(ty, part), part, &name);
                }
            }
        }
    }
    misp
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The indicator values in a MISP attribute, with their types; composite types such as
/// `domain|ip` and `filename|sha1` hold one value per part.
fn misp_parts<'a>(ty: &str, value: &'a str) -> Vec<(IndicatorType, &'a str)> {
    let (first, second) = value.split_once('|').unwrap_or((value, ""));
    let ip = |v: &'a str| {
        let ty = if v.contains('/') {
            Cidr
        } else if v.contains(':') {
            Ipv6
        } else {
            Ipv4
        };
        (ty, v)
    };
    match ty {
        "ip-src" | "ip-dst" => vec![ip(value)],
        "ip-src|port" | "ip-dst|port" => vec![ip(first)],
        "domain" | "hostname" => vec![(Domain, value)],
        "hostname|port" => vec![(Domain, first)],
        "domain|ip" => vec![(Domain, first), ip(second)],
        "url" | "link" => vec![(Url, value)],
        "email" | "email-src" | "email-dst" => vec![(Email, value)],
        "md5" => vec![(Md5, value)],
        "sha1" => vec![(Sha1, value)],
        "sha256" => vec![(Sha256, value)],
        "filename|md5" => vec![(Md5, second)],
        "filename|sha1" => vec![(Sha1, second)],
        "filename|sha256" => vec![(Sha256, second)],
        _ => Vec::new(),
    }
}

/// Real values, the file they are in, and their canonical form or rejection reason.
fn check_round_trips(root: &Path) {
    let cases: &[(&str, IndicatorType, &str, Result<&str, &str>)] = &[
        (
            "lists/eset/apt_c_60_samples.md5",
            Md5,
            "9F88234068D7ABAD65979EB1DF63EFB5",
            Ok("9f88234068d7abad65979eb1df63efb5"),
        ),
        (
            "lists/signature-base/iocs_hash-iocs.txt",
            Md5,
            "E42a8cef2e70d4f3c96c2b8073e7d396",
            Ok("e42a8cef2e70d4f3c96c2b8073e7d396"),
        ),
        (
            "lists/maltrail/malware/apt_ironhusky.txt",
            Domain,
            "hxxp.ddspadus.com",
            Ok("hxxp.ddspadus.com"),
        ),
        (
            "lists/maltrail/malware/apt_bluenoroff.txt",
            Domain,
            "msservices.hxxps443.org",
            Ok("msservices.hxxps443.org"),
        ),
        (
            "lists/maltrail/malware/apt_kimsuky.txt",
            Domain,
            "hxxp-naver.wetax-pay.online",
            Ok("hxxp-naver.wetax-pay.online"),
        ),
        (
            "lists/maltrail/malware/fraudload.txt",
            Domain,
            "CitingSecurity.com",
            Ok("citingsecurity.com"),
        ),
        (
            "lists/unit42/angler_compromised_domains",
            Domain,
            "redcima.com.",
            Ok("redcima.com"),
        ),
        (
            "lists/maltrail/malware/luminositylinkrat.txt",
            Domain,
            "ap3rtur3_2.mooo.com",
            Ok("ap3rtur3_2.mooo.com"),
        ),
        (
            "lists/maltrail/malicious/ek_clearfake-1.txt",
            Domain,
            "xn--bbautkozmetika-pob.hu",
            Ok("xn--bbautkozmetika-pob.hu"),
        ),
        (
            "lists/unit42/iran_linked_operators_OilRig.csv",
            Domain,
            "owa-insss-org-ill-owa-authen[.]ml",
            Ok("owa-insss-org-ill-owa-authen.ml"),
        ),
        (
            "lists/maltrail/malware/apt_darkhotel.txt",
            Domain,
            "support¬forum.org",
            Ok("xn--supportforum-tqa.org"),
        ),
        (
            "lists/maltrail/malicious/havoc.txt",
            Domain,
            "xn--57h.coinigy.com",
            Ok("xn--57h.coinigy.com"),
        ),
        (
            "lists/eset/reports/amavaldo_README.adoc",
            Domain,
            "clausdomain.homeunix[.]com:3928",
            Err("has_port"),
        ),
        (
            "lists/eset/reports/amavaldo_README.adoc",
            Url,
            "clausdomain.homeunix[.]com:3928",
            Ok("http://clausdomain.homeunix.com:3928/"),
        ),
        (
            "lists/eset/reports/dnsbirthday_README.adoc",
            Domain,
            "358bb04f6a0bf8ce88d23b2e620ac01b28d307ab80286f6ee2dcc484a6b1a5d0.pem",
            Err("label_too_long"),
        ),
        (
            "lists/eset/reports/apt_c_60_README.adoc",
            Ipv4,
            "162.222.214[.]48",
            Ok("162.222.214.48"),
        ),
        (
            "lists/maltrail/mass_scanner.txt",
            Ipv6,
            "2400:6180:0:d0::1008:2001",
            Ok("2400:6180:0:d0::1008:2001"),
        ),
        (
            "lists/eset/reports/evasive_panda_README.adoc",
            Cidr,
            "124.171.71.0/24",
            Ok("124.171.71.0/24"),
        ),
        (
            "warninglists/ipv6-linklocal.json",
            Cidr,
            "FE80::/10",
            Ok("fe80::/10"),
        ),
        ("warninglists/empty-hashes.json", Ipv6, "3::", Ok("3::")),
        (
            "lists/maltrail/malware/apt_lazarus.txt",
            Url,
            "newidealupvc.com:443/img/prettyPhoto/jquery.max.php",
            Ok("http://newidealupvc.com:443/img/prettyPhoto/jquery.max.php"),
        ),
        (
            "lists/signature-base/iocs_hash-iocs.txt",
            Url,
            "hxxp[://]minish[.]wiki[.]gd/c[.]pdf",
            Ok("http://minish.wiki.gd/c.pdf"),
        ),
        (
            "lists/unit42/TA551_2020-10-20-TA551-IOCs-for-IcedID.txt",
            Url,
            "htxxp://p4uk749i8t6vay[.]com/_bxlzcpjlmpxlkzblf_zhlsplspz/",
            Ok("http://p4uk749i8t6vay.com/_bxlzcpjlmpxlkzblf_zhlsplspz/"),
        ),
        (
            "lists/unit42/4457_of_4633_scam_js_urls_in_pandb.txt",
            Url,
            "www.cdspovoa.com/?p=9752",
            Ok("http://www.cdspovoa.com/?p=9752"),
        ),
        (
            "misp/eset_badiis_misp-badiis.json",
            Url,
            "now.asmkpo.com:80",
            Ok("http://now.asmkpo.com/"),
        ),
        (
            "stix20/unit42/2025-06-24-01flip-ransomware.json",
            Email,
            "01Flip@proton.me",
            Ok("01flip@proton.me"),
        ),
    ];
    for &(file, ty, raw, want) in cases {
        let text = read_text(&root.join(file));
        assert!(text.contains(raw), "{raw:?} is not in {file}");
        let got = normalize(ty, raw);
        assert_eq!(
            got.as_ref()
                .map(Indicator::value)
                .map_err(NormalizeError::kind),
            want,
            "normalize({ty}, {raw:?}) from {file}: {got:?}"
        );
    }
}

/// Files under `dir`, recursively, in a stable order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.filter_map(Result::ok).map(|entry| entry.path()) {
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A file's text, whatever its encoding: the BOM goes, cp1252 bytes become U+FFFD, and
/// `lines()` takes CRLF.
fn read_text(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    String::from_utf8_lossy(bytes).into_owned()
}
