//! Text lists and CSV: plain one-value-per-line lists (defanged values, `#` comments, annotated
//! values, prose lines) and comma-separated rows (read by `csv_list`, re-exported here), read
//! into canonical indicators with their line and column, and every other non-blank,
//! non-comment line left out with its reason.
//!
//! Data in, data out: the caller reads the file (and names it in messages); values are found by
//! core's [`detect`], which trims, unquotes and refangs (`hxxp://evil[.]example`).

use std::collections::BTreeMap;

use intelmesh_core::indicator::detect;
use intelmesh_core::indicator::NormalizeError;
use intelmesh_core::{Indicator, Tlp};

use crate::csv_list::column_name;
pub use crate::csv_list::{csv_cells, csv_rows, read_csv, MAX_CSV_CELLS};

/// One indicator found, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub indicator: Indicator,
    /// 1-based line number in the text.
    pub line: usize,
    /// 1-based cell number of a CSV row; None in a plain list.
    pub column: Option<usize>,
    /// The TLP its CSV row gives in a `tlp` column (an export of this mesh, say).
    pub tlp: Option<Tlp>,
    /// What else its CSV row says of it (an export of this mesh gives all three).
    pub facts: RowFacts,
}

/// A CSV row's confidence and validity, from columns that name them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowFacts {
    /// 0 to 100, from a `confidence` column.
    pub confidence: Option<u32>,
    /// From a `valid_from` (a timestamp, or Unix seconds) or `valid_from_unix_ms` column.
    pub valid_from_unix_ms: Option<i64>,
    /// From a `valid_until`, `expires`, `expiration` or `valid_until_unix_ms` column.
    pub valid_until_unix_ms: Option<i64>,
}

/// Why a line gave no indicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftReason {
    /// A plain list's line: neither the whole value nor its first word is an indicator, and
    /// it names none deliberately.
    NotAnIndicator(NormalizeError),
    /// A hosts-file line (a sink address such as `0.0.0.0`, then names) whose names are not
    /// domains (`localhost`).
    HostsLineWithoutName,
    /// A CSV row (not the first row after any comments, which may be a header) with no
    /// indicator in any cell.
    NoIndicatorInRow,
    /// A CSV row whose type column names a kind of value the mesh does not share (a file name,
    /// a registry key, a mutex): its value would be read as something else (`crdss.exe` as a
    /// domain).
    TypeNotShared(String),
    /// A CSV row whose `revoked` column says its value is revoked (a mesh export lists
    /// revoked assertions too): importing it would assert it again.
    RevokedInRow,
    /// A CSV row whose `tlp` cell names no TLP level this reader knows: a restriction it
    /// cannot read is no reason to share the value at the default.
    UnreadableTlp(String),
    /// A line that is one word naming a file (`svchost.exe`): it reads as a domain, but its
    /// last label is a file extension that is no top-level domain.
    FileName(String),
    /// A link (URL or domain) written plainly in a report that defangs its indicators: the
    /// report's own reference (its blog post, a tool's repository), not an indicator.
    Reference(String),
}

impl LeftReason {
    /// The reason without the values that differ from one line to the next, for grouping.
    pub fn summary(&self) -> String {
        match self {
            LeftReason::NotAnIndicator(e) => format!("not a valid indicator ({})", e.kind()),
            LeftReason::NoIndicatorInRow => "CSV row with no valid indicator in any cell".into(),
            LeftReason::HostsLineWithoutName => {
                "hosts-file line naming no domain after its address".into()
            }
            // The type as named, not the cell: `#filename` and `FileName` are one reason.
            LeftReason::TypeNotShared(kind) => format!(
                "CSV row of type {:?}, not a kind of indicator the mesh shares",
                column_name(kind)
            ),
            LeftReason::RevokedInRow => "CSV row marked revoked".into(),
            // Without the cell: a hostile text would make a reason of each row.
            LeftReason::UnreadableTlp(_) => "CSV row whose TLP cell names no TLP level".into(),
            LeftReason::FileName(_) => "a file name, not a domain".into(),
            LeftReason::Reference(_) => {
                "a link not defanged in a report that defangs its indicators (a reference)".into()
            }
        }
    }
}

/// A line left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    /// 1-based line number in the text.
    pub line: usize,
    /// What was read: a plain list's value without its comment, trimmed; a CSV row whole.
    pub text: String,
    pub reason: LeftReason,
}

/// What one text gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextRead {
    /// In text order; a CSV row may give several.
    pub found: Vec<Found>,
    /// In text order, at most one per line, the first [`MAX_LEFT_KEPT`] of them.
    pub left: Vec<LeftOut>,
    /// How many more lines were left out, by reason ([`LeftReason::summary`]): a hostile text
    /// of a few bytes a line must not cost a copy and a reason of each.
    pub left_beyond: BTreeMap<String, usize>,
    /// Values of rows left out because their TLP cell names no level: the same value elsewhere
    /// in the input must not be shared at a wider level than that row may have meant.
    pub withheld: Vec<Indicator>,
    /// Lines read: neither blank nor a comment. Each gave an indicator or a [`LeftOut`], except
    /// a CSV header (`header`).
    pub lines: usize,
    /// The line of a CSV text's header: its first row after any comments when that gave no
    /// indicator or named a type, TLP or revoked column; not an error.
    pub header: Option<usize>,
}

/// Lines left out kept whole in a [`TextRead`]; the rest are counted by reason.
pub const MAX_LEFT_KEPT: usize = 1_000;

impl TextRead {
    /// Notes a line left out: kept whole while fewer than [`MAX_LEFT_KEPT`] are, else counted.
    pub(crate) fn leave(&mut self, left: LeftOut) {
        if self.left.len() < MAX_LEFT_KEPT {
            self.left.push(left);
        } else {
            *self.left_beyond.entry(left.reason.summary()).or_default() += 1;
        }
    }

    /// Every line left out, kept or counted.
    pub fn left_count(&self) -> usize {
        self.left.len() + self.left_beyond.values().sum::<usize>()
    }
}

/// The text without a leading byte-order mark.
pub(crate) fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// A line without its comment: `#` at the start or after whitespace (URL fragments stay).
pub fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// File extensions that are no top-level domain: a value ending in one (`vssadmin.exe`,
/// `invoice.docm`) names a file, however much it reads as a domain. (Extensions that are
/// also TLDs, such as `.zip`, `.mov`, `.sh` or `.py`, are not listed.)
const FILE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "bat", "sys", "scr", "lnk", "hta", "vbs", "vbe", "jse", "wsf", "msi", "jar",
    "ocx", "cpl", "drv", "tmp", "dat", "log", "ini", "doc", "docx", "docm", "xls", "xlsx", "xlsm",
    "pptx", "pdf", "rar", "iso", "dmp", "apk", "elf", "js",
];

/// Whether `i` is a domain whose last label is a file extension ([`FILE_EXTENSIONS`]).
fn is_file_name(i: &Indicator) -> bool {
    i.ty() == intelmesh_core::IndicatorType::Domain
        && (i.value().rsplit('.').next()).is_some_and(|tld| FILE_EXTENSIONS.contains(&tld))
}

/// What `word` names, unless a file name.
pub(crate) fn value_of(word: &str) -> Option<Indicator> {
    detect(word).ok().filter(|i| !is_file_name(i))
}

/// Whether a word of prose, as written, is an indicator no one writes by accident: a value
/// defanged on purpose (`evil[.]example`, `hxxp://…`, `user[at]evil…`), a URL with its scheme,
/// an IP address or block, a hash, an e-mail address. A bare dotted word in prose is not taken:
/// `report.pdf`, `e.g.` or `README.md` (Moldova's TLD) would become indicators shared with
/// every member; nor a bare address of four one-digit parts, which prose writes as a version
/// (`Studio HD 4.0.9.3`): defanged, it is taken.
///
/// In a report that defangs its indicators (`defanging`), a URL written plainly is its own
/// reference (the blog post it is from, a tool's repository), not one of them.
fn deliberate(word: &str, indicator: &Indicator, defanging: bool) -> bool {
    use intelmesh_core::IndicatorType as T;
    let lower = word.to_ascii_lowercase();
    defanged(word)
        || match indicator.ty() {
            T::Domain => false,
            T::Url => lower.contains("://") && !defanging,
            T::Ipv4 => !reads_as_version(word),
            T::Ipv6 | T::Cidr | T::Email | T::Md5 | T::Sha1 | T::Sha256 => true,
        }
}

/// Whether `text` is written defanged: refanging changes it (every form core undoes, as a list
/// line takes it).
fn defanged(text: &str) -> bool {
    *intelmesh_core::indicator::refang(text) != *text
}

/// Whether `word` is four one-digit parts (`4.0.9.3`), as software versions are written.
fn reads_as_version(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 4
        && (parts.iter()).all(|p| p.len() == 1 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The indicators a line of prose names deliberately ([`deliberate`]), each once, in order.
fn prose_values(line: &str, defanging: bool) -> Vec<Indicator> {
    let mut found: Vec<Indicator> = Vec::new();
    // Kept once each by a set: 4,096 distinct values on a line must not cost a comparison of
    // each against each.
    let mut seen = std::collections::HashSet::new();
    for word in line.split_whitespace().take(MAX_PROSE_WORDS) {
        // Sentence punctuation around a value is not part of it.
        let word = word
            .trim_start_matches(['(', '<', '"', '\'', '`', '*'])
            .trim_end_matches([')', '>', '"', '\'', '`', '*', ',', ';', ':', '!', '?'])
            .trim_end_matches('.');
        if word.len() < 7 {
            continue;
        }
        if let Some(i) = value_of(word) {
            if deliberate(word, &i, defanging) && seen.insert(i.clone()) {
                found.push(i);
            }
        }
    }
    found
}

/// Words of one prose line looked at, at most: a line is bounded however long.
const MAX_PROSE_WORDS: usize = 4096;

/// A plain list or report: one value per line, defanged is fine, `#` starts a comment (at the
/// start of a line or after whitespace).
///
/// A line that is not an indicator as a whole is read in this order:
/// - a hosts-file line (`0.0.0.0 evil.example`, the form of DNS block lists): the host names
///   after the sink address, never the address;
/// - an annotated value (`HASH;comment`, `domain  note`, `value,source`): in a text that reads
///   as a list (at least half its lines start with a value), its first word (split at `;`, `,`
///   or whitespace) alone, the rest being its annotation (a source, a reference URL); in a
///   report, the first word if written as an indicator on purpose (`README.md describes…` is
///   prose), and whatever the rest names deliberately;
/// - prose: every value the line names deliberately (defanged, a URL with its scheme, an
///   address, a hash, an e-mail).
///
/// A line with none is left out with its reason.
pub fn read_plain(text: &str) -> TextRead {
    // Read twice rather than collected: a text of a few bytes a line would cost more in a
    // vector of its lines than the text itself.
    let lines = || {
        without_bom(text)
            .lines()
            .enumerate()
            .map(|(n, line)| (n + 1, strip_comment(line).trim()))
            .filter(|(_, value)| !value.is_empty())
    };
    let (mut count, mut leading, mut defanging) = (0, 0, false);
    for (_, value) in lines() {
        count += 1;
        leading += usize::from(value_of(first_word(value)).is_some());
        defanging = defanging || defanged(value);
    }
    let list = 2 * leading >= count;
    let reading = Reading {
        list,
        defanging: defanging && !list,
    };
    let mut out = TextRead {
        lines: count,
        ..TextRead::default()
    };
    for (line, value) in lines() {
        match read_plain_line(value, reading) {
            Ok(found) => out.found.extend(found.into_iter().map(|indicator| Found {
                indicator,
                line,
                column: None,
                tlp: None,
                facts: RowFacts::default(),
            })),
            Err(reason) => out.leave(LeftOut {
                line,
                text: value.to_string(),
                reason,
            }),
        }
    }
    out
}

/// A line's first word: up to the first `;`, `,` or whitespace.
fn first_word(value: &str) -> &str {
    value
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .next()
        .unwrap_or(value)
}

/// Addresses a hosts file points blocked names at: never themselves indicators there.
const SINK_ADDRESSES: [&str; 7] = [
    "0.0.0.0",
    "127.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "0:0:0:0:0:0:0:0",
    "0:0:0:0:0:0:0:1",
];

/// Whether `word` is an IP address (with or without a zone, as hosts files write `fe80::1%lo0`).
fn is_address(word: &str) -> bool {
    let address = word.split('%').next().unwrap_or(word);
    address.parse::<std::net::IpAddr>().is_ok()
}

/// How a plain text reads.
#[derive(Clone, Copy)]
struct Reading {
    /// At least half its lines start with a value.
    list: bool,
    /// A report (no list) defanging some of what it names.
    defanging: bool,
}

/// The indicators of one plain line (not blank, without its comment), in order, each once.
fn read_plain_line(value: &str, reading: Reading) -> Result<Vec<Indicator>, LeftReason> {
    use intelmesh_core::IndicatorType as T;
    let Reading { list, defanging } = reading;
    let whole = match detect(value) {
        Ok(indicator) if is_file_name(&indicator) => {
            return Err(LeftReason::FileName(indicator.value().to_owned()))
        }
        Ok(indicator)
            if defanging && matches!(indicator.ty(), T::Url | T::Domain) && !defanged(value) =>
        {
            return Err(LeftReason::Reference(indicator.value().to_owned()))
        }
        Ok(indicator) => return Ok(vec![indicator]),
        Err(e) => e,
    };
    let first = first_word(value);
    let rest = value[first.len()..].trim_start_matches([';', ',']);
    let words: Vec<&str> = rest.split_whitespace().take(MAX_PROSE_WORDS).collect();
    let housekeeping = |w: &&str| {
        let w = w.to_ascii_lowercase();
        w.starts_with("localhost") || w.starts_with("ip6-") || w == "broadcasthost"
    };
    // A hosts file's own lines (`ff02::1 ip6-allnodes`) name no one's indicator either.
    let hosts_line = SINK_ADDRESSES.contains(&first)
        || (!words.is_empty() && words.iter().all(housekeeping) && is_address(first));
    if hosts_line && !words.is_empty() {
        // Bounded as prose is, and kept once each by a set: a line of 300,000 names must not
        // cost a comparison of each against each.
        let mut seen = std::collections::HashSet::new();
        let names: Vec<Indicator> = words
            .iter()
            .take(MAX_PROSE_WORDS)
            .filter(|w| !housekeeping(w))
            .filter_map(|word| value_of(word))
            .filter(|i| i.ty() == intelmesh_core::IndicatorType::Domain)
            .filter(|i| seen.insert(i.value().to_owned()))
            .collect();
        return if names.is_empty() {
            Err(LeftReason::HostsLineWithoutName)
        } else {
            Ok(names)
        };
    }
    let mut found = match value_of(first) {
        // In a list, what follows the value annotates it (a source, a reference URL, a
        // reporter's address): none of it is taken.
        Some(i) if list => return Ok(vec![i]),
        Some(i) if deliberate(first, &i, defanging) => vec![i],
        _ => Vec::new(),
    };
    let named = prose_values(if found.is_empty() { value } else { rest }, defanging);
    // `named` holds each value once; only the line's first value may be among them.
    let first = found.first().cloned();
    found.extend(named.into_iter().filter(|i| Some(i) != first.as_ref()));
    if found.is_empty() {
        Err(LeftReason::NotAnIndicator(whole))
    } else {
        Ok(found)
    }
}

#[cfg(test)]
#[path = "lists_tests.rs"]
mod tests;
