//! Reading the files `intelmesh import` takes: format detection (STIX, MISP event, MISP feed
//! directory, CSV, plain list) and each value of a file as a candidate to submit or a reason
//! why it is rejected or skipped, through `intelmesh-interop` (its `lists` reads CSV and plain
//! lists); this module reads the files and names them.

use std::collections::BTreeMap;
use std::path::Path;

use clap::ValueEnum;
use intelmesh_core::indicator::Indicator;
use intelmesh_core::Tlp;
use intelmesh_interop::lists::{self, LeftReason, TextRead, MAX_LEFT_KEPT};
use intelmesh_interop::misp::{AttributeError, AttributeOutcome, MispSkip, TlpSource};
use intelmesh_interop::stix::{
    stix_objects, superseded, unreadable_marking, ObjectError, Outcome, SkipReason,
};
use intelmesh_interop::text::clip;
use intelmesh_interop::{
    import_misp_within, import_stix, ImportOptions, ManifestEntry, MispOptions, PatternError,
};
use serde_json::Value;

/// Longest description sent with an indicator: a signed payload is at most 64 KiB.
const MAX_DESCRIPTION_BYTES: usize = 2_000;
/// Most bytes of descriptions all the values of one MISP file carry together: each carries
/// its event's `info`, so a file of many small attributes must not expand into gigabytes.
const MAX_DESCRIBED_BYTES: usize = 64 << 20;
/// Most tags kept per indicator, and the longest tag.
pub(crate) const MAX_TAGS: usize = 32;
const MAX_TAG_BYTES: usize = 128;

/// The formats `import` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A STIX 2.0/2.1 bundle, TAXII envelope, object or array of objects.
    Stix,
    /// A MISP event export (`{"Event":…}`, `{"response":[…]}`, a bare event or a list).
    Misp,
    /// A MISP feed directory: manifest.json and one UUID.json per event.
    MispFeed,
    /// Comma-separated rows: every cell that is an indicator is one.
    Csv,
    /// One value per line (defanged is fine), `#` starts a comment.
    Plain,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Stix => "stix",
            Format::Misp => "misp",
            Format::MispFeed => "misp-feed",
            Format::Csv => "csv",
            Format::Plain => "plain",
        }
    }
}

/// One indicator to submit, with what the file said about it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub indicator: Indicator,
    /// The file's TLP for it, or None where the file says nothing.
    pub tlp: Option<Tlp>,
    pub confidence: Option<u32>,
    pub valid_from_unix_ms: Option<i64>,
    pub valid_until_unix_ms: Option<i64>,
    pub tags: Vec<String>,
    pub description: String,
    /// Where in the file: a line, an object id, an attribute uuid.
    pub origin: String,
    /// Something the importer should know, submitted anyway (e.g. an unknown marking).
    pub warning: Option<String>,
    /// Kept to the importing org alone whatever `--recipient` names: a MISP distribution of
    /// "your organisation only" set its TLP.
    pub org_only: bool,
}

/// A value or object left out, with a reason that groups like ones and an example.
#[derive(Clone, Debug)]
pub struct Left {
    pub reason: String,
    pub example: String,
}

/// What one file gave.
#[derive(Debug, Default)]
pub struct FileRead {
    pub candidates: Vec<Candidate>,
    /// Values that are not valid indicators, or objects/attributes that fail.
    pub rejected: Vec<Left>,
    /// Objects and attributes that are no indicators (relationships, not for IDS, ...).
    pub skipped: Vec<Left>,
    /// How many more values were rejected, by reason, past those kept whole in `rejected`.
    pub rejected_beyond: BTreeMap<String, usize>,
    /// How many more were skipped, by reason, past those kept whole in `skipped`.
    pub skipped_beyond: BTreeMap<String, usize>,
    /// Values of objects or rows rejected because their TLP could not be read: the same value
    /// elsewhere in the input is not shared at a wider level than they may have meant.
    pub withheld: Vec<Indicator>,
}

impl FileRead {
    /// Notes something rejected: kept whole while fewer than [`MAX_LEFT_KEPT`] are, else
    /// counted by reason, so a file of millions of empty objects costs a count, not a record
    /// each.
    fn reject(&mut self, left: Left) {
        keep_or_count(&mut self.rejected, &mut self.rejected_beyond, left);
    }

    /// [`FileRead::reject`] for what is skipped.
    fn skip(&mut self, left: Left) {
        keep_or_count(&mut self.skipped, &mut self.skipped_beyond, left);
    }
}

fn keep_or_count(kept: &mut Vec<Left>, beyond: &mut BTreeMap<String, usize>, left: Left) {
    if kept.len() < MAX_LEFT_KEPT {
        kept.push(left);
    } else {
        *beyond.entry(left.reason).or_default() += 1;
    }
}

/// Reads `path` as `format`, or detects the format. An error means the whole file is unusable.
pub fn read(
    path: &Path,
    format: Option<Format>,
    default_tlp: Tlp,
) -> anyhow::Result<(Format, FileRead)> {
    if path.is_dir() {
        return match format {
            None | Some(Format::MispFeed) => {
                Ok((Format::MispFeed, located(path, read_feed(path, default_tlp)?)))
            }
            Some(_) => Err(anyhow::anyhow!(
                "{} is a directory; only --format misp-feed reads one (a MISP feed: manifest.json and its events)",
                path.display()
            )),
        };
    }
    let bytes = read_bounded(path).map_err(|e| anyhow::anyhow!(e))?;
    let text = text_of(&bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let format = match format {
        Some(Format::MispFeed) => {
            return Err(anyhow::anyhow!(
                "{}: --format misp-feed takes a directory holding manifest.json",
                path.display()
            ))
        }
        Some(f) => f,
        None => detect_format(path, text)?,
    };
    let read = match format {
        Format::Stix | Format::Misp => {
            let value = parse_json(path, text)?;
            if format == Format::Stix {
                read_stix(&value, default_tlp)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            } else {
                read_misp(&value, default_tlp, "", &mut MispSpent::default())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
        }
        Format::Csv => return Ok((format, read_csv(path, text))),
        Format::Plain => return Ok((format, read_plain(path, text))),
        Format::MispFeed => unreachable_feed(path)?,
    };
    Ok((format, located(path, read)))
}

/// Names the file in every example and origin (JSON formats name only objects).
fn located(path: &Path, mut read: FileRead) -> FileRead {
    let name = path.display();
    for c in &mut read.candidates {
        c.origin = format!("{name}: {}", c.origin);
    }
    for l in read.rejected.iter_mut().chain(read.skipped.iter_mut()) {
        l.example = format!("{name}: {}", l.example);
    }
    read
}

fn unreachable_feed(path: &Path) -> anyhow::Result<FileRead> {
    Err(anyhow::anyhow!(
        "{}: a MISP feed is a directory",
        path.display()
    ))
}

fn parse_json(path: &Path, text: &str) -> anyhow::Result<Value> {
    json_within(text, MAX_FILE_VALUES).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Most JSON values one file may hold: a 512 MiB export of real events holds about twenty
/// million; a file of empty objects as large would hold ten times that, each a value built in
/// memory (see `json_budget`).
pub const MAX_FILE_VALUES: usize = 32 << 20;

/// `text` as JSON of at most `max` values; the error says which limit it broke.
fn json_within(text: &str, max: usize) -> Result<Value, String> {
    use intelmesh_interop::json_budget::{parse_within, JsonError};
    parse_within(text.as_bytes(), max).map_err(|e| match e {
        JsonError::TooManyValues { .. } => format!("{e}: split it into smaller files"),
        JsonError::Malformed(e) => format!("not valid JSON: {e}"),
    })
}

/// JSON with a STIX shape is stix, with a MISP shape misp; JSON of neither is an error; a
/// `.csv` file is csv; anything else is a plain list.
fn detect_format(path: &Path, text: &str) -> anyhow::Result<Format> {
    let first = text.trim_start().chars().next();
    let json_name = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json") || e.eq_ignore_ascii_case("stix2"));
    if matches!(first, Some('{') | Some('[')) || json_name {
        let shape = crate::import_shape::json_format(text)
            .map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", path.display()))?;
        return shape.ok_or_else(|| {
            anyhow::anyhow!(
                "{}: JSON, but neither a STIX bundle/object nor a MISP event; give --format",
                path.display()
            )
        });
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
    {
        return Ok(Format::Csv);
    }
    Ok(Format::Plain)
}

fn clean_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        let t = clip(t.to_string(), MAX_TAG_BYTES);
        if out.len() < MAX_TAGS && !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

fn read_stix(
    value: &Value,
    default_tlp: Tlp,
) -> Result<FileRead, intelmesh_interop::stix::StixError> {
    let import = import_stix(value, &ImportOptions { default_tlp })?;
    let mut out = FileRead::default();
    let later = stix_objects(value).map(superseded).unwrap_or_default();
    for object in &import.objects {
        let name = object
            .id
            .clone()
            .unwrap_or_else(|| format!("object {}", object.index));
        if later.contains(&object.index) {
            out.skip(Left {
                reason: "an older version of an object the file gives again later (only the latest is read)".into(),
                example: name,
            });
            continue;
        }
        match &object.outcome {
            Outcome::Imported(found) => {
                // A restriction this reader cannot read is no reason to share at `--tlp`.
                let raw = stix_objects(value).ok().and_then(|o| o.get(object.index));
                if let Some(why) = raw.and_then(|raw| unreadable_marking(raw, found)) {
                    out.reject(Left {
                        reason: "indicator whose TLP its markings do not tell".into(),
                        example: format!("{name}: {why}"),
                    });
                    out.withheld
                        .extend(found.iter().map(|i| i.indicator.clone()));
                    continue;
                }
                for i in found {
                    if i.revoked {
                        out.skip(Left {
                            reason: "indicator revoked in the file".into(),
                            example: format!("{name}: {}", i.indicator.value()),
                        });
                        continue;
                    }
                    // A name that is only the value (as the mesh's own export writes it)
                    // says nothing the indicator does not.
                    let title = i.name.as_ref().filter(|n| *n != i.indicator.value());
                    let description = match (title, &i.description) {
                        (Some(n), Some(d)) => format!("{n}: {d}"),
                        (Some(t), None) | (None, Some(t)) => t.clone(),
                        (None, None) => String::new(),
                    };
                    out.candidates.push(Candidate {
                        indicator: i.indicator.clone(),
                        tlp: (!i.tlp_defaulted).then_some(i.tlp),
                        confidence: i.confidence.map(|c| c.min(100)),
                        valid_from_unix_ms: i.valid_from_unix_ms,
                        valid_until_unix_ms: i.valid_until_unix_ms,
                        tags: clean_tags(&i.tags),
                        description: clip(description, MAX_DESCRIPTION_BYTES),
                        origin: name.clone(),
                        // An object with markings it does not define is rejected above
                        // (`unreadable_marking`).
                        warning: None,
                        org_only: false,
                    });
                }
            }
            Outcome::Skipped(reason) => out.skip(Left {
                reason: match reason {
                    SkipReason::MarkingDefinition => "marking-definition (read for TLP)".into(),
                    SkipReason::NotAnIndicator => format!(
                        "{} object: not an indicator",
                        object.object_type.as_deref().unwrap_or("untyped")
                    ),
                },
                example: name,
            }),
            Outcome::Failed(e) => out.reject(Left {
                reason: stix_reason(e),
                example: format!("{name}: {e}"),
            }),
        }
    }
    Ok(out)
}

/// The kind of a STIX object's failure, without the values that differ from one to the next.
fn stix_reason(e: &ObjectError) -> String {
    match e {
        ObjectError::BadField { field, .. } => format!("indicator's {field} is not valid"),
        ObjectError::Timestamp { field, .. } => {
            format!("indicator's {field} is not a valid timestamp")
        }
        ObjectError::Pattern(p) => match p {
            PatternError::UnsupportedPath { path } => {
                format!("pattern: object path {path} is not held by the mesh")
            }
            PatternError::TooLong { .. } => "pattern too long".into(),
            PatternError::Syntax { .. } => "pattern syntax error".into(),
            PatternError::Value { path, source, .. } => {
                format!("{path} value is not valid ({})", source.kind())
            }
            other => format!("pattern: {other}"),
        },
        other => other.to_string(),
    }
}

/// What MISP inputs read so far spent of the bounds on what they expand to: one for a whole
/// feed directory, so many event files do not multiply them.
#[derive(Default)]
struct MispSpent {
    tags: intelmesh_interop::MispBudget,
    described: usize,
}

impl MispSpent {
    /// Counts `bytes` more of input: the bounds grow with what was read (see `MispBudget`).
    fn read(&mut self, bytes: usize) {
        self.tags.read(bytes);
    }

    /// The most description bytes the values read so far may carry.
    fn described_bound(&self) -> usize {
        self.tags.bound().max(MAX_DESCRIBED_BYTES)
    }
}

fn read_misp(
    value: &Value,
    default_tlp: Tlp,
    prefix: &str,
    spent: &mut MispSpent,
) -> Result<FileRead, intelmesh_interop::misp::MispError> {
    let events = import_misp_within(value, &MispOptions { default_tlp }, &mut spent.tags)?;
    let mut out = FileRead::default();
    let described_bound = spent.described_bound();
    let described = &mut spent.described;
    for event in &events {
        // Clipped once here, not per indicator: a 10 MB `info` is not copied per attribute.
        let info = clip(
            event.info.clone().unwrap_or_default(),
            MAX_DESCRIPTION_BYTES,
        );
        let event_name = format!(
            "{prefix}event {}",
            event.uuid.as_deref().unwrap_or("(no uuid)")
        );
        for a in &event.attributes {
            let name = format!(
                "{event_name} attribute {} ({})",
                a.uuid.as_deref().unwrap_or("(no uuid)"),
                a.attribute_type.as_deref().unwrap_or("no type")
            );
            match &a.outcome {
                AttributeOutcome::Imported(found) => {
                    for i in found {
                        // Under a tlp: tag that names no level: not submitted, and any other
                        // copy of the value in the input goes RED to this org alone.
                        if i.tlp_source == TlpSource::UnreadableTag {
                            out.withheld.push(i.indicator.clone());
                            out.reject(Left {
                                reason: "MISP attribute under a tlp: tag that names no TLP level (its attribute's, object's or event's)".into(),
                                example: name.clone(),
                            });
                            continue;
                        }
                        *described = described.saturating_add(info.len());
                        if *described > described_bound {
                            out.reject(Left {
                                reason: format!("the input's values already carry {described_bound} bytes of event descriptions"),
                                example: name.clone(),
                            });
                            continue;
                        }
                        let mut description = info.clone();
                        if let Some(c) = i.comment.as_deref().filter(|c| !c.trim().is_empty()) {
                            if !description.is_empty() {
                                description.push_str(": ");
                            }
                            let room = MAX_DESCRIPTION_BYTES.saturating_sub(description.len());
                            description.push_str(&clip(c.to_owned(), room));
                        }
                        out.candidates.push(Candidate {
                            indicator: i.indicator.clone(),
                            tlp: (i.tlp_source != TlpSource::Default)
                                .then_some(i.tlp),
                            confidence: None,
                            valid_from_unix_ms: None,
                            valid_until_unix_ms: None,
                            tags: clean_tags(&i.tags),
                            description: clip(description, MAX_DESCRIPTION_BYTES),
                            origin: name.clone(),
                            warning: None,
                            org_only: i.org_only,
                        });
                    }
                }
                AttributeOutcome::Skipped(skip) => out.skip(Left {
                    reason: match skip {
                        MispSkip::NotForIds => "attribute not flagged to_ids".into(),
                        MispSkip::Deleted => "attribute deleted".into(),
                        MispSkip::UnsupportedType { attribute_type } => {
                            format!("attribute type {attribute_type}: no such indicator type in the mesh")
                        }
                    },
                    example: name,
                }),
                AttributeOutcome::Failed(e) => out.reject(Left {
                    reason: match e {
                        AttributeError::CompositeParts { attribute_type, .. } => {
                            format!("{attribute_type} attribute with the wrong number of |-separated parts")
                        }
                        AttributeError::Value { ty, source, .. } => {
                            format!("{ty} value is not valid ({})", source.kind())
                        }
                        other => other.to_string(),
                    },
                    example: format!("{name}: {e}"),
                }),
            }
        }
    }
    Ok(out)
}

/// Most bytes one input file may have: it is read whole, and its values, tags and descriptions
/// are held while it is imported.
pub const MAX_INPUT_BYTES: u64 = 512 << 20;

/// The bytes of `path`, if it has at most [`MAX_INPUT_BYTES`]; the error names the path.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let named = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(named)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(named)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(format!(
            "{}: more than {} MiB, the most one input may have: split it",
            path.display(),
            MAX_INPUT_BYTES >> 20
        ));
    }
    Ok(bytes)
}

/// A MISP feed: `manifest.json` maps event UUIDs to metadata, each event is `UUID.json`. An
/// event file that is missing or unreadable, or a key that is no UUID, is rejected with its
/// reason; the others are read.
fn read_feed(dir: &Path, default_tlp: Tlp) -> anyhow::Result<FileRead> {
    let manifest_path = dir.join("manifest.json");
    let bytes = read_bounded(&manifest_path).map_err(|e| {
        anyhow::anyhow!("{} is a directory but not a MISP feed: {e}", dir.display())
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let entries = intelmesh_interop::read_feed_manifest(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", manifest_path.display()))?;
    let mut out = FileRead::default();
    let mut spent = MispSpent::default();
    for entry in entries {
        let read = match entry {
            ManifestEntry::Event(file) => {
                read_feed_event(&dir.join(&file), &file, default_tlp, &mut spent)
            }
            ManifestEntry::NotAUuid(key) => {
                Err(format!("manifest key {key:?} is not an event UUID"))
            }
        };
        match read {
            Ok(r) => {
                out.candidates.extend(r.candidates);
                r.rejected.into_iter().for_each(|l| out.reject(l));
                r.skipped.into_iter().for_each(|l| out.skip(l));
                for (into, from) in [
                    (&mut out.rejected_beyond, r.rejected_beyond),
                    (&mut out.skipped_beyond, r.skipped_beyond),
                ] {
                    for (reason, n) in from {
                        *into.entry(reason).or_default() += n;
                    }
                }
                out.withheld.extend(r.withheld);
            }
            Err(example) => out.reject(Left {
                reason: "feed event file missing or unreadable".into(),
                example,
            }),
        }
    }
    Ok(out)
}

/// One event file of a feed, its examples prefixed with `file`; an error names its path.
fn read_feed_event(
    path: &Path,
    file: &str,
    default_tlp: Tlp,
    spent: &mut MispSpent,
) -> Result<FileRead, String> {
    let bytes = read_bounded(path)?;
    spent.read(bytes.len());
    let text = text_of(&bytes);
    let value = json_within(
        text.strip_prefix('\u{feff}').unwrap_or(&text),
        MAX_FILE_VALUES,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    read_misp(&value, default_tlp, &format!("{file}: "), spent)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A file's text. Bytes that are no UTF-8 are read as spaces: lists saved by older tools end
/// values with a legacy no-break space (0xA0 in Latin-1, 0xCA in Mac Roman), which would
/// otherwise stick to the value as U+FFFD and spoil it; a value with such a byte inside is
/// split there, and neither half is mistaken for it.
fn text_of(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        text.extend(std::iter::repeat_n(' ', chunk.invalid().len()));
    }
    std::borrow::Cow::Owned(text)
}

fn plain_candidate(indicator: Indicator, origin: String) -> Candidate {
    Candidate {
        indicator,
        tlp: None,
        confidence: None,
        valid_from_unix_ms: None,
        valid_until_unix_ms: None,
        tags: Vec::new(),
        description: String::new(),
        origin,
        warning: None,
        org_only: false,
    }
}

/// A plain list or CSV text read by `intelmesh-interop`'s `lists`, each value's origin and each
/// example naming the file and line.
fn from_text(path: &Path, read: TextRead) -> FileRead {
    let origin = |line: usize| format!("{}:{line}", path.display());
    let mut out = FileRead::default();
    for found in read.found {
        let mut candidate = plain_candidate(found.indicator, origin(found.line));
        candidate.tlp = found.tlp;
        candidate.confidence = found.facts.confidence;
        candidate.valid_from_unix_ms = found.facts.valid_from_unix_ms;
        candidate.valid_until_unix_ms = found.facts.valid_until_unix_ms;
        out.candidates.push(candidate);
    }
    for left in read.left {
        let text = clip(left.text, 120);
        let example = match &left.reason {
            LeftReason::NotAnIndicator(e) => format!("{}: {text:?}: {e}", origin(left.line)),
            LeftReason::NoIndicatorInRow
            | LeftReason::TypeNotShared(_)
            | LeftReason::RevokedInRow
            | LeftReason::UnreadableTlp(_)
            | LeftReason::FileName(_)
            | LeftReason::Reference(_)
            | LeftReason::HostsLineWithoutName => {
                format!("{}: {text:?}", origin(left.line))
            }
        };
        out.reject(Left {
            reason: left.reason.summary(),
            example,
        });
    }
    out.rejected_beyond = read.left_beyond;
    out.withheld = read.withheld;
    out
}

fn read_plain(path: &Path, text: &str) -> FileRead {
    from_text(path, lists::read_plain(text))
}

/// Every cell that is an indicator is one; a row with none is rejected, except the first row
/// after any comments (a header).
fn read_csv(path: &Path, text: &str) -> FileRead {
    from_text(path, lists::read_csv(text))
}

#[cfg(test)]
#[path = "import_read_tests.rs"]
mod tests;
