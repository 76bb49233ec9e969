//! MISP event import: an event's attributes, loose or inside objects, to mesh indicators
//! with TLP, one outcome per attribute.
//!
//! Only attributes flagged `to_ids` are indicators; the rest are context and reported as
//! skipped. TLP: the strictest of the `tlp:` tag (the attribute's own, else its object's,
//! else the event's) and every distribution (the event's, the object's and the attribute's
//! unless 5, "inherit"), since MISP shows an attribute only to who the event, its object and
//! the attribute all allow; the caller's default when none is given. Distribution maps by who
//! may read it:
//!
//! | distribution | MISP meaning | TLP |
//! |---|---|---|
//! | 0 | your organisation only | AMBER+STRICT (the TLP 2.0 "organisation only") |
//! | 1 | this community only | GREEN |
//! | 2 | connected communities | GREEN |
//! | 3 | all communities | CLEAR |
//! | 4 | a sharing group | RED: the group's members are not in the event, so the node must name the recipients |
//!
//! The other tags (galaxies, taxonomies) of the event, then the object, then the attribute
//! are kept, trimmed, without repeats, the first [`MAX_TAGS_PER_INDICATOR`] only, each cut to
//! [`MAX_TAG_BYTES`]: every indicator holds its own copy, so an event's tags must not multiply
//! by its attributes.

use intelmesh_core::indicator::{normalize, NormalizeError};
use intelmesh_core::{Indicator, IndicatorType, Tlp};
use serde_json::Value;
use thiserror::Error;

use crate::stix::json_kind;

/// Most tags an indicator carries: the CLI submits no more, and each indicator owns a copy.
pub const MAX_TAGS_PER_INDICATOR: usize = 32;
/// Longest tag kept, in bytes; a longer one is cut at a character boundary and ends in `…`,
/// as the CLI cuts it, so cutting it here first changes nothing downstream.
pub const MAX_TAG_BYTES: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MispOptions {
    /// TLP when neither a tag nor a distribution gives one.
    pub default_tlp: Tlp,
}

impl Default for MispOptions {
    fn default() -> Self {
        MispOptions {
            default_tlp: Tlp::Amber,
        }
    }
}

/// Why an input holds no MISP event at all.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MispError {
    #[error("input is not JSON: {0}")]
    Json(String),
    #[error("input is not a MISP event ({{\"Event\":…}}, a bare event or {{\"response\":[…]}}): {reason}")]
    NotMisp { reason: &'static str },
}

/// Why one `to_ids` attribute of a supported type gives no indicator.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AttributeError {
    #[error("attribute is a JSON {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("attribute has no {field}")]
    MissingField { field: &'static str },
    #[error("attribute of type {attribute_type} needs {parts} |-separated parts, value has {got}")]
    CompositeParts {
        attribute_type: String,
        parts: usize,
        got: usize,
    },
    #[error("{ty} value {value:?} is not valid: {source}")]
    Value {
        ty: IndicatorType,
        value: String,
        source: NormalizeError,
    },
    #[error("the input's indicators already carry {max} bytes of tags: each carries its event's and object's tags, so small attributes must not expand the input past that")]
    ExpandsTooFar { max: usize },
}

/// Most bytes of tags all the indicators of one input (its events together) carry: each
/// carries a copy of its event's and object's (up to [`MAX_TAGS_PER_INDICATOR`] of them), so
/// events of many small attributes must not expand into gigabytes. Past it, attributes fail.
pub const MAX_TAG_EXPANSION: usize = 64 << 20;

/// Why an attribute is passed over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MispSkip {
    /// `to_ids` is false: context, not something to detect on.
    NotForIds,
    /// `deleted` is true.
    Deleted,
    /// The mesh holds no value of this type (text, filename, regkey, yara, ...).
    UnsupportedType { attribute_type: String },
}

/// Where an indicator's TLP came from.
///
/// When several give the same, strictest, TLP, the first in this order is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlpSource {
    AttributeTag,
    ObjectTag,
    EventTag,
    AttributeDistribution(u8),
    ObjectDistribution(u8),
    EventDistribution(u8),
    Default,
    /// A `tlp:` tag of the attribute, its object or its event names no TLP level this reads
    /// (`tlp:unclear`, a typo): RED, and the importer withholds the value, as it does one under
    /// a STIX marking it cannot read; never the distribution's wider level.
    UnreadableTag,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MispIndicator {
    pub indicator: Indicator,
    pub tlp: Tlp,
    pub tlp_source: TlpSource,
    /// Whether the attribute, its object or its event is shared with "your organisation only"
    /// (distribution 0), whatever TLP tags say: it goes to no one else.
    pub org_only: bool,
    /// Event tags, then object tags, then attribute tags, TLP tags left out, without repeats,
    /// at most [`MAX_TAGS_PER_INDICATOR`].
    pub tags: Vec<String>,
    pub category: Option<String>,
    pub comment: Option<String>,
    /// The attribute's `timestamp` (Unix seconds in MISP), in milliseconds.
    pub timestamp_unix_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeOutcome {
    Imported(Vec<MispIndicator>),
    Skipped(MispSkip),
    Failed(AttributeError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttributeRecord {
    pub uuid: Option<String>,
    pub attribute_type: Option<String>,
    /// Name of the MISP object holding the attribute, if any.
    pub object_name: Option<String>,
    pub outcome: AttributeOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MispEvent {
    pub uuid: Option<String>,
    pub info: Option<String>,
    /// The creating organisation's name (`Orgc.name`), as the event says.
    pub creator_org: Option<String>,
    /// The event's own `tlp:` tag, most restrictive if several.
    pub tlp_tag: Option<Tlp>,
    pub distribution: Option<u8>,
    pub attributes: Vec<AttributeRecord>,
}

/// Totals over attributes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MispCounts {
    pub attributes: usize,
    pub imported: usize,
    pub indicators: usize,
    pub not_for_ids: usize,
    pub unsupported_type: usize,
    pub deleted: usize,
    pub failed: usize,
}

impl MispEvent {
    pub fn indicators(&self) -> impl Iterator<Item = &MispIndicator> {
        self.attributes.iter().flat_map(|a| match &a.outcome {
            AttributeOutcome::Imported(found) => found.as_slice(),
            _ => &[],
        })
    }

    pub fn counts(&self) -> MispCounts {
        let mut c = MispCounts {
            attributes: self.attributes.len(),
            ..MispCounts::default()
        };
        for a in &self.attributes {
            match &a.outcome {
                AttributeOutcome::Imported(found) => {
                    c.imported += 1;
                    c.indicators += found.len();
                }
                AttributeOutcome::Skipped(MispSkip::NotForIds) => c.not_for_ids += 1,
                AttributeOutcome::Skipped(MispSkip::Deleted) => c.deleted += 1,
                AttributeOutcome::Skipped(MispSkip::UnsupportedType { .. }) => {
                    c.unsupported_type += 1
                }
                AttributeOutcome::Failed(_) => c.failed += 1,
            }
        }
        c
    }
}

/// [`import_misp`] of JSON text; a leading byte-order mark is ignored.
pub fn import_misp_str(text: &str, options: &MispOptions) -> Result<Vec<MispEvent>, MispError> {
    let text = crate::lists::without_bom(text);
    let value: Value = serde_json::from_str(text).map_err(|e| MispError::Json(e.to_string()))?;
    import_misp(&value, options)
}

/// What the inputs read so far spent of the bound on tag expansion: one for all the event
/// files of a feed, so a feed of many files does not multiply it. The bound is
/// [`MAX_TAG_EXPANSION`], or [`EXPANSION_PER_INPUT_BYTE`] times the bytes read, whichever is
/// more: a large real feed (galaxy tags on every attribute) expands about twice over, a
/// crafted one eighty times.
#[derive(Clone, Debug, Default)]
pub struct MispBudget {
    tags_carried: usize,
    input_bytes: usize,
}

/// Tag bytes the indicators may carry per byte of input, past [`MAX_TAG_EXPANSION`].
pub const EXPANSION_PER_INPUT_BYTE: usize = 16;

impl MispBudget {
    /// Counts `bytes` more of input read.
    pub fn read(&mut self, bytes: usize) {
        self.input_bytes = self.input_bytes.saturating_add(bytes);
    }

    /// The most tag bytes the inputs read so far may carry.
    pub fn bound(&self) -> usize {
        MAX_TAG_EXPANSION.max(self.input_bytes.saturating_mul(EXPANSION_PER_INPUT_BYTE))
    }
}

/// Reads `{"Event":{…}}`, a bare event, `{"response":[{"Event":…}, …]}`, an attribute search's
/// `{"response":{"Attribute":[…]}}` or an array of events.
pub fn import_misp(value: &Value, options: &MispOptions) -> Result<Vec<MispEvent>, MispError> {
    import_misp_within(value, options, &mut MispBudget::default())
}

/// [`import_misp`] of one of several inputs sharing `budget`.
pub fn import_misp_within(
    value: &Value,
    options: &MispOptions,
    budget: &mut MispBudget,
) -> Result<Vec<MispEvent>, MispError> {
    let found_alone: Vec<Value>;
    // Per searched attribute, a TLP no tag of its own may go below (see `in_its_event`).
    let mut floors: Vec<Option<Tlp>> = Vec::new();
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) => match map.get("response") {
            Some(Value::Array(items)) => items.iter().collect(),
            // Attribute-level `restSearch` output: each attribute read in the event it names.
            Some(Value::Object(found)) if found.contains_key("Attribute") => {
                found_alone = found
                    .get("Attribute")
                    .and_then(Value::as_array)
                    .map(|attributes| {
                        let in_event = |a| in_its_event(a, options.default_tlp);
                        let (events, of_object) = attributes.iter().map(in_event).unzip();
                        floors = of_object;
                        events
                    })
                    .unwrap_or_default();
                found_alone.iter().collect()
            }
            Some(_) => {
                return Err(MispError::NotMisp {
                    reason: "response is not a list",
                })
            }
            None => vec![value],
        },
        _ => {
            return Err(MispError::NotMisp {
                reason: "not a JSON object or array",
            })
        }
    };
    let mut events = Vec::with_capacity(items.len());
    // One budget for the whole input: a file of many events must not multiply it either.
    let bound = budget.bound();
    let carried = &mut budget.tags_carried;
    for item in items {
        let event = item.get("Event").unwrap_or(item);
        let looks_like_event = ["Attribute", "Object", "info", "uuid"]
            .iter()
            .any(|k| event.get(k).is_some());
        if !event.is_object() || !looks_like_event {
            return Err(MispError::NotMisp {
                reason: "no Event, Attribute, Object, info or uuid",
            });
        }
        events.push(read_event(event, options, carried, bound));
    }
    for (event, floor) in events.iter_mut().zip(&floors) {
        if let Some(floor) = *floor {
            raise_to(event, floor);
        }
    }
    Ok(events)
}

/// A searched attribute inside the event it names (`Event`: its uuid, info, distribution and
/// tags), so its TLP is decided as inside that event. A search that left the event out gives
/// the strictest distribution short of a sharing group: what the event allowed is not known.
///
/// A search leaves out what else decides the TLP unless asked (`includeEventTags`): the
/// event's tags, and for an attribute of an object that inherits (distribution 5) the object's
/// distribution. When either is missing, `default_tlp` (the import's `--tlp`) is a floor, as a
/// `tlp:` tag of the event: an event marked `tlp:red` and shared with all communities must
/// not come in CLEAR because the search did not say so.
///
/// The object's distribution narrows whatever tags say, so for an attribute inheriting it the
/// floor is returned apart, to raise the TLP the attribute's own tags give too
/// ([`raise_to`]).
fn in_its_event(attribute: &Value, default_tlp: Tlp) -> (Value, Option<Tlp>) {
    let event = attribute.get("Event");
    let field = |name: &str| event.and_then(|e| e.get(name)).cloned();
    let inherited_tags = list(attribute, "Tag").any(|t| flag(t.get("inherited")));
    let event_tags_known =
        event.is_some_and(|e| e.get("Tag").is_some() || e.get("EventTag").is_some());
    let in_object = match attribute.get("object_id") {
        Some(Value::Number(id)) => id.as_u64() != Some(0),
        Some(Value::String(id)) => !matches!(id.trim(), "" | "0"),
        _ => false,
    };
    let inherits = distribution(attribute.get("distribution")) == Some(5);
    let mut tags: Vec<Value> = list(event.unwrap_or(&Value::Null), "Tag")
        .cloned()
        .collect();
    tags.extend(
        list(event.unwrap_or(&Value::Null), "EventTag")
            .filter_map(|w| w.get("Tag"))
            .cloned(),
    );
    if !(event_tags_known || inherited_tags) {
        let floor = format!("tlp:{}", default_tlp.as_str().to_ascii_lowercase());
        tags.push(serde_json::json!({ "name": floor }));
    }
    let event = serde_json::json!({ "Event": {
        "uuid": field("uuid").unwrap_or(Value::Null),
        "info": field("info").unwrap_or(Value::Null),
        "distribution": field("distribution").unwrap_or_else(|| Value::from("0")),
        "Tag": tags,
        "Attribute": [attribute],
    }});
    (event, (in_object && inherits).then_some(default_tlp))
}

/// Raises every indicator of `event` below `floor` to it, as from the default.
fn raise_to(event: &mut MispEvent, floor: Tlp) {
    for record in &mut event.attributes {
        if let AttributeOutcome::Imported(found) = &mut record.outcome {
            for i in found.iter_mut().filter(|i| i.tlp < floor) {
                i.tlp = floor;
                i.tlp_source = TlpSource::Default;
            }
        }
    }
}

fn read_event(
    event: &Value,
    options: &MispOptions,
    carried: &mut usize,
    bound: usize,
) -> MispEvent {
    let event_tags = Tags::of(event);
    let event_distribution = distribution(event.get("distribution"));
    let event_level = Level {
        tlp_tag: event_tags.tlp,
        unreadable_tlp: event_tags.unreadable_tlp,
        distribution: event_distribution,
    };
    let mut attributes = Vec::new();
    let mut bounded = |record: AttributeRecord| -> AttributeRecord {
        let AttributeOutcome::Imported(found) = &record.outcome else {
            return record;
        };
        let tags = found.iter().flat_map(|i| &i.tags).map(String::len);
        *carried = carried.saturating_add(tags.sum());
        if *carried <= bound {
            return record;
        }
        let max = bound;
        AttributeRecord {
            outcome: AttributeOutcome::Failed(AttributeError::ExpandsTooFar { max }),
            ..record
        }
    };
    let loose = Context {
        event: event_level,
        object: None,
        tags: &event_tags.names,
        options,
    };
    for attribute in list(event, "Attribute") {
        attributes.push(bounded(read_attribute(attribute, None, &loose)));
    }
    for object in list(event, "Object") {
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let object_tags = Tags::of(object);
        // Once per object, not per attribute: most attributes add no tag of their own.
        let tags = merge(&event_tags.names, &object_tags.names);
        let context = Context {
            event: event_level,
            object: Some(Level {
                tlp_tag: object_tags.tlp,
                unreadable_tlp: object_tags.unreadable_tlp,
                distribution: distribution(object.get("distribution")),
            }),
            tags: &tags,
            options,
        };
        for attribute in list(object, "Attribute") {
            attributes.push(bounded(read_attribute(attribute, name.clone(), &context)));
        }
    }
    MispEvent {
        uuid: string(event, "uuid"),
        info: string(event, "info"),
        creator_org: event.get("Orgc").and_then(|o| string(o, "name")),
        tlp_tag: event_tags.tlp,
        distribution: event_distribution,
        attributes,
    }
}

// What one attribute comes to, with its event's and object's levels, and MISP's JSON readers.
mod attribute;
use attribute::*;

#[cfg(test)]
#[path = "misp_tests.rs"]
mod tests;
