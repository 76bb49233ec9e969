//! STIX 2.0 and 2.1 import: a bundle, a TAXII envelope, an array or one object in, one
//! outcome per object out.
//!
//! Reading is tolerant (`serde_json::Value`, unknown properties ignored, 2.0 and 2.1 mixed)
//! but never silent: an `indicator` gives its mesh indicators or a failure naming the field
//! or pattern part at fault, and every other object is reported as skipped with its type.
//! TLP comes from `object_marking_refs` resolved through the standard ids and the input's own
//! marking definitions; with no TLP marking the caller's default applies and the outcome
//! says so.

use std::collections::HashMap;

use intelmesh_core::entry::{MAX_PAYLOAD_BYTES, MAX_TAGS, MAX_TAG_BYTES};
use intelmesh_core::{Indicator, Tlp};
use serde_json::Value;
use thiserror::Error;

use crate::marking::Markings;
use crate::pattern::{parse_pattern, PatternError};
use crate::time::{parse_timestamp, TimestampError};

/// What the caller decides for the whole input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// TLP of an object with no TLP marking. AMBER unless the caller knows better: an
    /// unmarked object shared to us was not declared shareable further.
    pub default_tlp: Tlp,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            default_tlp: Tlp::Amber,
        }
    }
}

/// Why an input is not STIX at all (as opposed to an object in it being unusable).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StixError {
    #[error("input is not JSON: {0}")]
    Json(String),
    #[error("input is a JSON {found}, not a STIX bundle, envelope, object or array of objects")]
    NotStix { found: &'static str },
}

/// Why one `indicator` object gives no mesh indicator.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ObjectError {
    #[error("array element is a JSON {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("indicator has no {field}")]
    MissingField { field: &'static str },
    #[error("indicator's {field} is not valid: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("pattern_type {pattern_type:?} is not supported: only \"stix\" patterns are read")]
    PatternType { pattern_type: String },
    #[error("indicator's {field}: {source}")]
    Timestamp {
        field: &'static str,
        source: TimestampError,
    },
    #[error("pattern: {0}")]
    Pattern(#[from] PatternError),
    #[error(
        "its name, description, labels and ids come to {bytes} bytes, more than an entry's \
         payload may hold ({max}): shorten them"
    )]
    TooLarge { bytes: usize, max: usize },
    #[error(
        "its pattern names {values} values, each carrying the object's {bytes} bytes of name, \
         description, labels and ids: more than the {max} bytes one object may expand to; \
         split the pattern over several objects"
    )]
    ExpandsTooFar {
        values: usize,
        bytes: usize,
        max: usize,
    },
}

/// Most bytes of shared text (name, description, labels, ids) all of one object's values
/// carry together: each value of an `OR` pattern is an entry of its own with a copy of them,
/// so a small object must not expand into gigabytes.
pub const MAX_OBJECT_EXPANSION: usize = 256 * 1024;

/// Why an object that is no indicator gives nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Read for TLP, carries no indicator itself.
    MarkingDefinition,
    /// Any other type (relationship, malware, SCO, sighting, ...): the mesh holds indicators.
    NotAnIndicator,
}

/// One mesh indicator read from a STIX `indicator`, with what the object said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StixIndicator {
    pub indicator: Indicator,
    pub stix_id: String,
    pub tlp: Tlp,
    /// True when no TLP marking applied and [`ImportOptions::default_tlp`] was used.
    pub tlp_defaulted: bool,
    /// Marking references defined nowhere; what they restrict is unknown.
    pub unknown_markings: Vec<String>,
    pub confidence: Option<u32>,
    pub valid_from_unix_ms: Option<i64>,
    pub valid_until_unix_ms: Option<i64>,
    pub revoked: bool,
    pub created_unix_ms: Option<i64>,
    pub modified_unix_ms: Option<i64>,
    /// `labels` then `indicator_types`, without repeats.
    pub tags: Vec<String>,
    pub created_by_ref: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
}

impl StixIndicator {
    /// Bytes of the text every value of one object carries a copy of.
    fn shared_bytes(&self) -> usize {
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        self.stix_id.len()
            + text(&self.created_by_ref)
            + text(&self.name)
            + text(&self.description)
            + self.tags.iter().map(String::len).sum::<usize>()
            + self.unknown_markings.iter().map(String::len).sum::<usize>()
    }
}

/// What became of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An indicator object: one entry per value its pattern names.
    Imported(Vec<StixIndicator>),
    Skipped(SkipReason),
    Failed(ObjectError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectOutcome {
    /// Position among the input's objects.
    pub index: usize,
    pub id: Option<String>,
    pub object_type: Option<String>,
    pub outcome: Outcome,
}

/// Every object's outcome, in input order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StixImport {
    pub objects: Vec<ObjectOutcome>,
}

/// Totals of a [`StixImport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub objects: usize,
    pub indicator_objects: usize,
    pub imported_objects: usize,
    pub indicators: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl StixImport {
    pub fn indicators(&self) -> impl Iterator<Item = &StixIndicator> {
        self.objects.iter().flat_map(|o| match &o.outcome {
            Outcome::Imported(found) => found.as_slice(),
            _ => &[],
        })
    }

    pub fn failures(&self) -> impl Iterator<Item = (&ObjectOutcome, &ObjectError)> {
        self.objects.iter().filter_map(|o| match &o.outcome {
            Outcome::Failed(e) => Some((o, e)),
            _ => None,
        })
    }

    pub fn counts(&self) -> ImportCounts {
        let mut c = ImportCounts {
            objects: self.objects.len(),
            ..ImportCounts::default()
        };
        for o in &self.objects {
            if o.object_type.as_deref() == Some("indicator") {
                c.indicator_objects += 1;
            }
            match &o.outcome {
                Outcome::Imported(found) => {
                    c.imported_objects += 1;
                    c.indicators += found.len();
                }
                Outcome::Skipped(_) => c.skipped += 1,
                Outcome::Failed(_) => c.failed += 1,
            }
        }
        c
    }
}

/// [`import_stix`] of JSON text; a leading byte-order mark is ignored.
pub fn import_stix_str(text: &str, options: &ImportOptions) -> Result<StixImport, StixError> {
    let text = crate::lists::without_bom(text);
    let value: Value = serde_json::from_str(text).map_err(|e| StixError::Json(e.to_string()))?;
    import_stix(&value, options)
}

/// Reads a bundle (`{"type":"bundle","objects":[…]}`), a TAXII envelope (`{"objects":[…]}`),
/// an array of objects or a single object.
pub fn import_stix(value: &Value, options: &ImportOptions) -> Result<StixImport, StixError> {
    let objects = stix_objects(value)?;
    let markings = Markings::from_objects(objects);
    let objects = objects
        .iter()
        .enumerate()
        .map(|(index, object)| import_object(index, object, &markings, options))
        .collect();
    Ok(StixImport { objects })
}

/// Why an indicator's markings leave its TLP unknown, if they do (`values` are what it
/// imported as): granular markings (not read), or markings neither TLP nor defined with it,
/// beside a TLP marking short of RED or not. A restriction the reader cannot read must not be
/// published at the default TLP, nor at a wider one marked beside it: a RED defined elsewhere
/// would reach every member as AMBER, or as the GREEN next to it.
pub fn unreadable_marking(object: &Value, values: &[StixIndicator]) -> Option<String> {
    if granular_or_malformed(object) {
        return Some(
            "granular markings are not read, nor marking references not given as a list: mark \
             the whole object with a list of object_marking_refs"
                .into(),
        );
    }
    let first = values.first()?;
    // Beside RED nothing is shared wider than the strictest level: what they restrict may
    // stay unknown.
    let narrowest = !first.tlp_defaulted && first.tlp == Tlp::Red;
    (!first.unknown_markings.is_empty() && !narrowest).then(|| {
        format!(
            "its markings ({}) are neither TLP markings nor defined with it: what they \
             restrict cannot be told, with a TLP marking beside them or not; give their \
             definitions with it",
            first.unknown_markings.join(", ")
        )
    })
}

/// The positions of `objects` that a later version of the same object in the same input
/// supersedes: another with its `id` and a later `modified` (else `created`), or as late and
/// after it. Only the latest is applied: an older version read first must not publish a value
/// a later version revokes, nor with an end or confidence the later one changed.
pub fn superseded(objects: &[Value]) -> std::collections::HashSet<usize> {
    let mut latest: HashMap<&str, (Option<i64>, usize)> = HashMap::new();
    let mut out = std::collections::HashSet::new();
    for (index, object) in objects.iter().enumerate() {
        let Some(id) = object.get("id").and_then(Value::as_str) else {
            continue;
        };
        let version = crate::taxii::object_version(object);
        match latest.get_mut(id) {
            None => {
                latest.insert(id, (version, index));
            }
            Some(kept) if version >= kept.0 => {
                out.insert(kept.1);
                *kept = (version, index);
            }
            Some(_) => {
                out.insert(index);
            }
        }
    }
    out
}

/// Whether `object` has granular markings (any but an empty list: a list is not read, and
/// anything else is no list of markings at all), or `object_marking_refs` that are not a list:
/// either may restrict it in a way that cannot be read, so it is never taken as unmarked.
fn granular_or_malformed(object: &Value) -> bool {
    let granular = match object.get("granular_markings") {
        None | Some(Value::Null) => false,
        Some(Value::Array(g)) => !g.is_empty(),
        Some(_) => true,
    };
    let refs_malformed = matches!(
        object.get("object_marking_refs"),
        Some(v) if !v.is_null() && !v.is_array()
    );
    granular || refs_malformed
}

/// The values of `objects` that an indicator among them gives under markings whose TLP cannot
/// be read ([`unreadable_marking`]): such an object is refused, and the same value in another
/// object of the input must not be published wider than it may have meant. A cheap look at
/// each object's marking references first; only the few with a reference `markings` cannot
/// read (or granular markings) are imported to find their values.
pub fn values_under_unreadable_markings(
    objects: &[Value],
    markings: &Markings,
    options: &ImportOptions,
) -> std::collections::HashSet<Indicator> {
    let suspect = |o: &Value| {
        let granular = granular_or_malformed(o);
        let unread = (o.get("object_marking_refs").and_then(Value::as_array)).is_some_and(|refs| {
            refs.iter().filter_map(Value::as_str).any(|id| {
                !matches!(
                    markings.kind(id),
                    Some(crate::marking::MarkingKind::Tlp(_) | crate::marking::MarkingKind::Other)
                )
            })
        });
        granular || unread
    };
    let mut out = std::collections::HashSet::new();
    for (index, object) in objects.iter().enumerate().filter(|(_, o)| suspect(o)) {
        if let Outcome::Imported(values) = import_object(index, object, markings, options).outcome {
            if unreadable_marking(object, &values).is_some() {
                out.extend(values.into_iter().map(|v| v.indicator));
            }
        }
    }
    out
}

/// The objects of a bundle, a TAXII envelope, an array of objects or a single object: what
/// [`import_stix`] reads, for a caller that imports them one by one with [`import_object`].
pub fn stix_objects(value: &Value) -> Result<&[Value], StixError> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(map) => match map.get("objects") {
            Some(Value::Array(items)) => Ok(items),
            Some(_) => Err(StixError::NotStix {
                found: "object whose objects is no array",
            }),
            None if map.get("type").is_some_and(Value::is_string) => {
                Ok(std::slice::from_ref(value))
            }
            None => Err(StixError::NotStix {
                found: "object with neither type nor objects",
            }),
        },
        other => Err(StixError::NotStix {
            found: json_kind(other),
        }),
    }
}

/// The outcome of the object at `index` of an import whose marking definitions are
/// `markings` (of all its objects): each object's outcome depends on nothing else.
pub fn import_object(
    index: usize,
    object: &Value,
    markings: &Markings,
    options: &ImportOptions,
) -> ObjectOutcome {
    let text = |key| object.get(key).and_then(Value::as_str).map(str::to_owned);
    let object_type = text("type");
    let outcome = match object_type.as_deref() {
        _ if !object.is_object() => Outcome::Failed(ObjectError::NotAnObject {
            found: json_kind(object),
        }),
        Some("indicator") => match indicator(object, markings, options) {
            Ok(found) => Outcome::Imported(found),
            Err(e) => Outcome::Failed(e),
        },
        Some("marking-definition") => Outcome::Skipped(SkipReason::MarkingDefinition),
        _ => Outcome::Skipped(SkipReason::NotAnIndicator),
    };
    ObjectOutcome {
        index,
        id: text("id"),
        object_type,
        outcome,
    }
}

fn indicator(
    object: &Value,
    markings: &Markings,
    options: &ImportOptions,
) -> Result<Vec<StixIndicator>, ObjectError> {
    let text = |field: &'static str| -> Result<Option<String>, ObjectError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ObjectError::BadField {
                field,
                reason: format!("a string was expected, not a JSON {}", json_kind(other)),
            }),
        }
    };
    let time = |field: &'static str| -> Result<Option<i64>, ObjectError> {
        text(field)?
            .map(|t| parse_timestamp(&t).map_err(|source| ObjectError::Timestamp { field, source }))
            .transpose()
    };
    let strings = |field: &'static str| -> Result<Vec<String>, ObjectError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ObjectError::BadField {
                            field,
                            reason: format!(
                                "a list of strings was expected, found a JSON {}",
                                json_kind(v)
                            ),
                        })
                })
                .collect(),
            Some(other) => Err(ObjectError::BadField {
                field,
                reason: format!("a list was expected, not a JSON {}", json_kind(other)),
            }),
        }
    };

    let stix_id = text("id")?.ok_or(ObjectError::MissingField { field: "id" })?;
    if let Some(pattern_type) = text("pattern_type")? {
        if !pattern_type.eq_ignore_ascii_case("stix") {
            return Err(ObjectError::PatternType { pattern_type });
        }
    }
    let pattern = text("pattern")?.ok_or(ObjectError::MissingField { field: "pattern" })?;
    let found = parse_pattern(&pattern)?;
    let Some(first) = found.first().cloned() else {
        return Err(ObjectError::Pattern(PatternError::Empty));
    };

    let confidence = match object.get("confidence") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 100 => u32::try_from(n).ok(),
            _ => {
                return Err(ObjectError::BadField {
                    field: "confidence",
                    reason: format!("an integer from 0 to 100 was expected, found {v}"),
                })
            }
        },
    };
    let revoked = match object.get("revoked") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ObjectError::BadField {
                field: "revoked",
                reason: format!("a boolean was expected, not a JSON {}", json_kind(other)),
            })
        }
    };
    let refs = strings("object_marking_refs")?;
    let resolution = markings.resolve(refs.iter().map(String::as_str));
    let mut tags: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // The first tags only, each clipped, as an entry may carry them (a feed's hundred labels
    // must not fail the object).
    for t in strings("labels")?
        .into_iter()
        .chain(strings("indicator_types")?)
    {
        if tags.len() == MAX_TAGS {
            break;
        }
        let t = crate::text::clip_within(t, MAX_TAG_BYTES);
        if seen.insert(t.clone()) {
            tags.push(t);
        }
    }

    let template = StixIndicator {
        indicator: first,
        stix_id,
        tlp: resolution.tlp.unwrap_or(options.default_tlp),
        tlp_defaulted: resolution.tlp.is_none(),
        unknown_markings: resolution.unknown,
        confidence,
        valid_from_unix_ms: time("valid_from")?,
        valid_until_unix_ms: time("valid_until")?,
        revoked,
        created_unix_ms: time("created")?,
        modified_unix_ms: time("modified")?,
        tags,
        created_by_ref: text("created_by_ref")?,
        name: text("name")?,
        description: text("description")?,
    };
    let shared = template.shared_bytes();
    if shared > MAX_PAYLOAD_BYTES {
        return Err(ObjectError::TooLarge {
            bytes: shared,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    if found.len().saturating_mul(shared) > MAX_OBJECT_EXPANSION {
        return Err(ObjectError::ExpandsTooFar {
            values: found.len(),
            bytes: shared,
            max: MAX_OBJECT_EXPANSION,
        });
    }
    Ok(found
        .into_iter()
        .map(|indicator| StixIndicator {
            indicator,
            ..template.clone()
        })
        .collect())
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
#[path = "stix_tests.rs"]
mod tests;
