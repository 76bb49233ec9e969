//! CSV lists: comma-separated rows (RFC 4180 quoting, cells over several lines within bounds)
//! read into canonical indicators with their line and cell; a header row (or a commented one)
//! names the columns, which say what a cell holds and which cells to leave alone.
//!
//! Data in, data out, as [`crate::lists`] (whose types it shares).

use intelmesh_core::indicator::detect;
use intelmesh_core::{Indicator, Tlp};

use crate::lists::{value_of, without_bom, Found, LeftOut, LeftReason, RowFacts, TextRead};

/// Cells one CSV row is split into at most: the rest of a longer row is its last cell. A row
/// of separators alone would otherwise cost an allocation per byte (a 512 MiB line of commas,
/// about 12 GB).
pub const MAX_CSV_CELLS: usize = 4096;

/// Physical lines a quoted cell may span (RFC 4180 lets a quoted cell hold line breaks, as
/// spreadsheets write a cell of several lines), and the bytes of such a row: a stray quote
/// that never closes then spoils only its own line, not the rest of the file.
const MAX_ROW_LINES: usize = 16;
const MAX_ROW_BYTES: usize = 64 * 1024;

/// The rows of a CSV text with the line each starts on (0-based): a line ending inside a
/// quoted cell is joined with the lines that close it, if they do within the bounds above.
pub fn csv_rows(text: &str) -> impl Iterator<Item = (usize, std::borrow::Cow<'_, str>)> {
    let mut lines = text.lines().enumerate();
    std::iter::from_fn(move || {
        let (n, first) = lines.next()?;
        if first.trim_start().starts_with('#') || !ends_quoted(false, first) {
            return Some((n, std::borrow::Cow::Borrowed(first)));
        }
        let mut probe = lines.clone();
        let mut row = first.to_string();
        for joined in 1..MAX_ROW_LINES {
            let Some((_, next)) = probe.next() else { break };
            row.push('\n');
            row.push_str(next);
            if row.len() > MAX_ROW_BYTES {
                break;
            }
            if !ends_quoted(true, next) {
                lines.nth(joined - 1);
                return Some((n, std::borrow::Cow::Owned(row)));
            }
        }
        Some((n, std::borrow::Cow::Borrowed(first)))
    })
}

/// How one character of a CSV row reads, as RFC 4180 quotes: a quote opens a cell only at
/// its start (after any spaces; elsewhere it is a character, `5" disk` an inch mark), `""`
/// inside is a quote, and a lone one closes it.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    /// Part of the cell.
    Char(char),
    /// `""` inside a quoted cell: one quote of the cell, the next character taken with it.
    EscapedQuote,
    /// Between two cells.
    Separator,
    /// A quote opening or closing a quoted cell.
    Quoting,
}

/// Where a row's reading stands: inside a quoted cell, and at a cell's start.
struct Quoting {
    quoted: bool,
    cell_start: bool,
}

impl Quoting {
    /// A line read from inside a quoted cell (`quoted`, a row spanning lines) or not.
    fn new(quoted: bool) -> Quoting {
        Quoting {
            quoted,
            cell_start: !quoted,
        }
    }

    /// Reads `c`, followed by `next`; a separator splits only if `split` (a row's cells are
    /// bounded, the rest being its last cell).
    fn read(&mut self, c: char, next: Option<char>, split: bool) -> Read {
        let read = match c {
            '"' if self.quoted && next == Some('"') => Read::EscapedQuote,
            '"' if self.quoted => {
                self.quoted = false;
                Read::Quoting
            }
            '"' if self.cell_start => {
                self.quoted = true;
                Read::Quoting
            }
            ',' | ';' | '\t' if !self.quoted && split => {
                self.cell_start = true;
                return Read::Separator;
            }
            c => Read::Char(c),
        };
        self.cell_start = self.cell_start && c == ' ';
        read
    }
}

/// Whether a line read from inside a quoted cell (`quoted`) or not ends inside one.
fn ends_quoted(quoted: bool, line: &str) -> bool {
    let mut q = Quoting::new(quoted);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if q.read(c, chars.peek().copied(), true) == Read::EscapedQuote {
            chars.next();
        }
    }
    q.quoted
}

/// Cells of one CSV row: split at `,`, `;` or tab outside double quotes, quoted as
/// [`Quoting`] reads them. An unclosed quote runs to the end of the row.
pub fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut q = Quoting::new(false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let split = cells.len() + 1 < MAX_CSV_CELLS;
        match q.read(c, chars.peek().copied(), split) {
            Read::Char(c) => cell.push(c),
            Read::EscapedQuote => {
                cell.push('"');
                chars.next();
            }
            Read::Separator => cells.push(std::mem::take(&mut cell)),
            Read::Quoting => {}
        }
    }
    cells.push(cell);
    cells
}

/// What a CSV header says of its columns: which hold no values to share, and which names each
/// row's type. Feeds put links to their own pages (`urlhaus_link`), reporters and notes next to
/// the values; read as indicators, those would send the feed's own site to every firewall.
#[derive(Debug, Default, PartialEq, Eq)]
struct Columns {
    /// 0-based cells not read.
    ignored: std::collections::BTreeSet<usize>,
    /// 0-based cell naming the row's type (`type`, `entity_type`, …).
    kind: Option<usize>,
    /// 0-based cells giving the row's TLP, and whether it is revoked.
    tlp: Option<usize>,
    revoked: Option<usize>,
    /// 0-based cells giving the row's confidence and validity, with whether a bare number in
    /// them is milliseconds (a name ending in `_ms`) or seconds.
    confidence: Option<usize>,
    valid_from: Option<(usize, bool)>,
    valid_until: Option<(usize, bool)>,
}

/// Header names (lowercase, `_` for spaces) of columns holding no values to share: whole
/// names, and parts that only such names contain. Kept narrow: a notes or source column may
/// well hold a value (`source_ip`), and a value in it is read as before.
const IGNORED_NAMES: &[&str] = &["id", "tags", "tag", "threat", "status", "reporter"];
const IGNORED_PARTS: &[&str] = &[
    "link",
    "reference",
    "reporter",
    "filename",
    "file_name",
    "package",
];
const TYPE_NAMES: &[&str] = &[
    "type",
    "entity_type",
    "indicator_type",
    "ioc_type",
    "attribute_type",
    "kind",
];

/// Types a row may name that are a file: no kind of indicator the mesh shares, but their
/// rows' hashes are the file's.
const FILE_TYPES: &[&str] = &[
    "filename",
    "file_name",
    "file",
    "filepath",
    "file_path",
    "path",
];

/// Other types a row may name that are no kind of indicator the mesh shares.
const UNSHARED_TYPES: &[&str] = &[
    "mutex",
    "registry",
    "registry_key",
    "regkey",
    "user_agent",
    "useragent",
    "asn",
    "yara",
    "process",
    "command",
    "command_line",
    "commandline",
    "service",
    "pipe",
    "named_pipe",
    "pdb",
    "imphash",
    "ja3",
];

/// A header cell's name, compared in this form.
pub(crate) fn column_name(cell: &str) -> String {
    cell.trim()
        .trim_matches(['#', '"', '\''])
        .trim()
        .to_ascii_lowercase()
        .replace([' ', '-'], "_")
}

impl Columns {
    fn of(header: &[String]) -> Columns {
        let mut columns = Columns::default();
        for (i, cell) in header.iter().enumerate() {
            let name = column_name(cell);
            if TYPE_NAMES.contains(&name.as_str()) {
                columns.kind.get_or_insert(i);
            } else if name.contains("tlp") {
                // `tlp`, `tlp_level`, `tlp_marking`, `TLP Label`, `share_tlp`: a column that
                // names TLP holds it; read as any other column, a RED row came in at `--tlp`.
                columns.tlp.get_or_insert(i);
                columns.ignored.insert(i);
            } else if name == "confidence" {
                columns.confidence.get_or_insert(i);
                columns.ignored.insert(i);
            } else if ["valid_from", "valid_from_unix_ms"].contains(&name.as_str()) {
                columns.valid_from.get_or_insert((i, name.ends_with("_ms")));
                columns.ignored.insert(i);
            } else if [
                "valid_until",
                "valid_until_unix_ms",
                "expires",
                "expiration",
            ]
            .contains(&name.as_str())
            {
                columns
                    .valid_until
                    .get_or_insert((i, name.ends_with("_ms")));
                columns.ignored.insert(i);
            } else if ["revoked", "is_revoked"].contains(&name.as_str()) {
                columns.revoked.get_or_insert(i);
                columns.ignored.insert(i);
            } else if IGNORED_NAMES.contains(&name.as_str())
                || IGNORED_PARTS.iter().any(|p| name.contains(p))
            {
                columns.ignored.insert(i);
            }
        }
        columns
    }

    /// Whether these columns name a row's type, TLP or revocation: a header, not data.
    fn names_row_meaning(&self) -> bool {
        self.kind.is_some() || self.tlp.is_some() || self.revoked.is_some()
    }

    /// The type a row names, if the header has a type column and it is one the mesh does not
    /// share.
    fn unshared_type(&self, cells: &[String]) -> Option<String> {
        let kind = cells.get(self.kind?)?;
        let name = column_name(kind);
        (FILE_TYPES.contains(&name.as_str()) || UNSHARED_TYPES.contains(&name.as_str()))
            .then(|| kind.trim().to_string())
    }

    /// Whether the row's `revoked` cell says so.
    fn revoked(&self, cells: &[String]) -> bool {
        let cell = self.revoked.and_then(|c| cells.get(c));
        cell.is_some_and(|c| ["true", "yes", "1"].contains(&c.trim().to_ascii_lowercase().as_str()))
    }

    /// The TLP the row's `tlp` cell gives (none for an empty cell), or the cell it cannot
    /// read.
    /// The row's confidence and validity; a cell that does not read as one is none.
    fn facts(&self, cells: &[String]) -> RowFacts {
        let cell = |c: Option<usize>| {
            c.and_then(|c| cells.get(c))
                .map(|c| without_formula_guard(c.trim()))
                .filter(|c| !c.is_empty())
        };
        let time = |c: Option<(usize, bool)>| {
            let (at, in_ms) = c?;
            let text = cell(Some(at))?;
            match text.parse::<i64>() {
                Ok(n) if in_ms => Some(n),
                Ok(n) => n.checked_mul(1000),
                Err(_) => crate::time::parse_timestamp(text).ok(),
            }
        };
        RowFacts {
            confidence: cell(self.confidence)
                .and_then(|c| c.parse::<u32>().ok())
                .filter(|c| *c <= 100),
            valid_from_unix_ms: time(self.valid_from),
            valid_until_unix_ms: time(self.valid_until),
        }
    }

    fn tlp(&self, cells: &[String]) -> Result<Option<Tlp>, String> {
        let Some(cell) = self
            .tlp
            .and_then(|c| cells.get(c))
            .filter(|c| !c.trim().is_empty())
        else {
            return Ok(None);
        };
        Tlp::parse(cell)
            .map(Some)
            .ok_or_else(|| cell.trim().chars().take(40).collect())
    }
}

/// A cell without the `'` a spreadsheet export puts before text starting like a formula
/// (`'=x@evil.example` is the cell `=x@evil.example`, not an address with a quote).
fn without_formula_guard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// A commented line that reads as a header (`# id,dateadded,url,…`): three or more cells, each a
/// short name and none an indicator.
fn commented_header(comment: &str) -> Option<Vec<String>> {
    let cells = csv_cells(comment.trim_start().trim_start_matches('#'));
    let named = cells.len() >= 3
        && cells.iter().all(|c| {
            let c = c.trim();
            !c.is_empty()
                && c.len() <= 40
                && c.chars()
                    .all(|ch| ch.is_alphanumeric() || " _-".contains(ch))
                && detect(c).is_err()
        });
    named.then_some(cells)
}

/// CSV rows: every cell that is an indicator is one (column = its cell number), except in the
/// columns a header names as holding none (links, notes, reporters: [`Columns`]); a row whose
/// type column names a kind the mesh does not share is left out. A row with no indicator is
/// left out, except the first row after any comments (a header). Blank lines and lines starting
/// with `#` are skipped; the comment right before the first row is its header if it reads as
/// one (as feeds that comment out their header write it).
pub fn read_csv(text: &str) -> TextRead {
    let mut out = TextRead::default();
    let mut columns = None::<Columns>;
    // Whether a commented header above the first row named the columns, and whether it named
    // a type, TLP or revoked column.
    let (mut commented, mut comment_means) = (false, false);
    let mut last_comment = None::<&str>;
    for (n, row) in csv_rows(without_bom(text)) {
        let line = row.as_ref();
        if line.trim().is_empty() {
            last_comment = None;
            continue;
        }
        if line.trim_start().starts_with('#') {
            if let std::borrow::Cow::Borrowed(comment) = row {
                last_comment = Some(comment);
            }
            continue;
        }
        out.lines += 1;
        let cells = csv_cells(line);
        if columns.is_none() {
            let header = last_comment.and_then(commented_header);
            // The first row (after comments a tool wrote above it) naming a type, TLP or
            // revoked column is the header, even with a cell that reads as a domain
            // (`dst.ip`); a cell that reads as any other value makes it data.
            let named = Columns::of(&cells);
            let data = (cells.iter()).any(|c| {
                value_of(without_formula_guard(c.trim()))
                    .is_some_and(|i| i.ty() != intelmesh_core::IndicatorType::Domain)
            });
            if header.is_none() && named.names_row_meaning() && !data {
                out.header = Some(n + 1);
                columns = Some(named);
                continue;
            }
            commented = header.is_some();
            columns = Some(header.as_deref().map(Columns::of).unwrap_or_default());
            comment_means = columns.as_ref().is_some_and(Columns::names_row_meaning);
        }
        let columns_now = columns.as_ref();
        // A row of a type the mesh does not share (a file, a mutex) still gives the hashes it
        // holds: feeds type a sample's row `file` and put its SHA-256 in the value column.
        let unshared = columns_now.and_then(|c| c.unshared_type(&cells));
        // Only a file's row: an import hash or a JA3 fingerprint reads as an MD5 too.
        let keep_hashes = unshared
            .as_deref()
            .is_some_and(|k| FILE_TYPES.contains(&column_name(k).as_str()));
        if let Some(kind) = &unshared {
            let hashed = keep_hashes
                && cells.iter().any(|c| {
                    value_of(without_formula_guard(c.trim())).is_some_and(|i| i.ty().is_hash())
                });
            if !hashed {
                out.leave(LeftOut {
                    line: n + 1,
                    text: line.to_string(),
                    reason: LeftReason::TypeNotShared(kind.clone()),
                });
                continue;
            }
        }
        if columns_now.is_some_and(|c| c.revoked(&cells)) {
            out.leave(LeftOut {
                line: n + 1,
                text: line.to_string(),
                reason: LeftReason::RevokedInRow,
            });
            continue;
        }
        // The row's values, each with its column.
        let values: Vec<(usize, Indicator)> = cells
            .iter()
            .enumerate()
            .filter(|(c, _)| !columns_now.is_some_and(|cols| cols.ignored.contains(c)))
            .filter_map(|(c, cell)| {
                let cell = without_formula_guard(cell.trim());
                let indicator = value_of(cell).filter(|i| unshared.is_none() || i.ty().is_hash());
                indicator.map(|i| (c, i))
            })
            .collect();
        let tlp = match columns_now.map(|c| c.tlp(&cells)) {
            Some(Err(cell)) => {
                // Not imported, and a restriction this reader cannot read must not let the
                // same value elsewhere in the input be shared wider.
                out.withheld.extend(values.into_iter().map(|(_, i)| i));
                out.leave(LeftOut {
                    line: n + 1,
                    text: line.to_string(),
                    reason: LeftReason::UnreadableTlp(cell),
                });
                continue;
            }
            Some(Ok(tlp)) => tlp,
            None => None,
        };
        let found = values.len();
        let facts = columns_now.map(|c| c.facts(&cells)).unwrap_or_default();
        for (c, indicator) in values {
            out.found.push(Found {
                indicator,
                line: n + 1,
                column: Some(c + 1),
                tlp,
                facts,
            });
        }
        if found > 0 {
            continue;
        }
        let means = || Columns::of(&cells).names_row_meaning();
        if out.lines == 1 && (!commented || (!comment_means && means())) {
            // The first row, after any comments, with no value in it: the header (unless a
            // commented header named the columns: then it is a row like the others, except
            // one naming a type, TLP or revoked column the comment did not, as under a
            // comment that merely reads like a header, `# Bad URLs, updated hourly, ...`).
            out.header = Some(n + 1);
            columns = Some(Columns::of(&cells));
        } else {
            out.leave(LeftOut {
                line: n + 1,
                text: line.to_string(),
                reason: LeftReason::NoIndicatorInRow,
            });
        }
    }
    out
}
