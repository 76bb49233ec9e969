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

/// What an event or an object says about who may read the attributes it holds.
#[derive(Clone, Copy)]
struct Level {
    tlp_tag: Option<Tlp>,
    distribution: Option<u8>,
}

struct Context<'a> {
    event: Level,
    object: Option<Level>,
    /// The event's tag names then the object's, already bounded and without repeats.
    tags: &'a [String],
    options: &'a MispOptions,
}

fn read_attribute(
    attribute: &Value,
    object_name: Option<String>,
    context: &Context<'_>,
) -> AttributeRecord {
    let attribute_type = string(attribute, "type");
    let outcome = if attribute.is_object() {
        attribute_outcome(attribute, attribute_type.as_deref(), context)
    } else {
        AttributeOutcome::Failed(AttributeError::NotAnObject {
            found: json_kind(attribute),
        })
    };
    AttributeRecord {
        uuid: string(attribute, "uuid"),
        attribute_type,
        object_name,
        outcome,
    }
}

/// What MISP calls a value part, as the mesh types it.
#[derive(Clone, Copy)]
enum Part {
    Ip,
    Of(IndicatorType),
}

/// The parts of a (possibly composite, `a|b`) attribute type that are indicators, by position.
fn parts_of(attribute_type: &str) -> Option<(usize, &'static [(usize, Part)])> {
    use IndicatorType as T;
    let parts: (usize, &'static [(usize, Part)]) = match attribute_type {
        "ip-src" | "ip-dst" => (1, &[(0, Part::Ip)]),
        "ip-src|port" | "ip-dst|port" => (2, &[(0, Part::Ip)]),
        "domain" | "hostname" => (1, &[(0, Part::Of(T::Domain))]),
        "hostname|port" => (2, &[(0, Part::Of(T::Domain))]),
        "domain|ip" => (2, &[(0, Part::Of(T::Domain)), (1, Part::Ip)]),
        "url" => (1, &[(0, Part::Of(T::Url))]),
        "email" | "email-src" | "email-dst" | "email-reply-to" => (1, &[(0, Part::Of(T::Email))]),
        "md5" => (1, &[(0, Part::Of(T::Md5))]),
        "sha1" => (1, &[(0, Part::Of(T::Sha1))]),
        "sha256" => (1, &[(0, Part::Of(T::Sha256))]),
        // A sample's file name and MD5, as MISP stores an uploaded sample.
        "filename|md5" | "malware-sample" => (2, &[(1, Part::Of(T::Md5))]),
        "filename|sha1" => (2, &[(1, Part::Of(T::Sha1))]),
        "filename|sha256" => (2, &[(1, Part::Of(T::Sha256))]),
        _ => return None,
    };
    Some(parts)
}

fn attribute_outcome(
    attribute: &Value,
    attribute_type: Option<&str>,
    context: &Context<'_>,
) -> AttributeOutcome {
    let Some(attribute_type) = attribute_type else {
        return AttributeOutcome::Failed(AttributeError::MissingField { field: "type" });
    };
    if flag(attribute.get("deleted")) {
        return AttributeOutcome::Skipped(MispSkip::Deleted);
    }
    if !flag(attribute.get("to_ids")) {
        return AttributeOutcome::Skipped(MispSkip::NotForIds);
    }
    let Some((count, wanted)) = parts_of(attribute_type) else {
        return AttributeOutcome::Skipped(MispSkip::UnsupportedType {
            attribute_type: attribute_type.to_owned(),
        });
    };
    let Some(value) = attribute.get("value").and_then(Value::as_str) else {
        return AttributeOutcome::Failed(AttributeError::MissingField { field: "value" });
    };
    let pieces: Vec<&str> = if count == 1 {
        vec![value]
    } else {
        value.splitn(count, '|').collect()
    };
    if pieces.len() != count {
        return AttributeOutcome::Failed(AttributeError::CompositeParts {
            attribute_type: attribute_type.to_owned(),
            parts: count,
            got: pieces.len(),
        });
    }

    let attr_tags = Tags::of(attribute);
    let own = Level {
        tlp_tag: attr_tags.tlp,
        distribution: distribution(attribute.get("distribution")),
    };
    let (tlp, tlp_source) = strictest(own, context);
    let object_distribution = context.object.and_then(|o| o.distribution);
    let org_only = [
        own.distribution,
        object_distribution,
        context.event.distribution,
    ]
    .contains(&Some(0));
    let all_tags = merge(context.tags, &attr_tags.names);
    let timestamp_unix_ms = match attribute.get("timestamp") {
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(Value::Number(n)) => n.as_i64(),
        _ => None,
    }
    .and_then(|s| s.checked_mul(1000));

    let mut found = Vec::new();
    for (at, part) in wanted {
        let raw = pieces.get(*at).copied().unwrap_or_default();
        let ty = match part {
            Part::Of(ty) => *ty,
            Part::Ip if raw.contains('/') => IndicatorType::Cidr,
            Part::Ip if raw.contains(':') => IndicatorType::Ipv6,
            Part::Ip => IndicatorType::Ipv4,
        };
        match normalize(ty, raw) {
            Ok(indicator) => found.push(MispIndicator {
                indicator,
                tlp,
                tlp_source,
                org_only,
                tags: all_tags.clone(),
                category: string(attribute, "category"),
                comment: string(attribute, "comment").filter(|c| !c.is_empty()),
                timestamp_unix_ms,
            }),
            Err(source) => {
                return AttributeOutcome::Failed(AttributeError::Value {
                    ty,
                    value: raw.to_owned(),
                    source,
                })
            }
        }
    }
    AttributeOutcome::Imported(found)
}

/// The strictest TLP of the attribute's `tlp:` tag (else its object's, else its event's) and
/// the attribute's, its object's and its event's distributions.
///
/// Each distribution limits who may read (an attribute shared with "all communities" in an
/// event for "your organisation only" stays with the organisation), so none may widen another.
/// A tag is a marking, not a reader list: the most specific one holds, so an attribute may be
/// marked apart from its event (the MISP feed export tags each event with the strictest of its
/// attributes); a distribution still narrows it.
fn strictest(attribute: Level, context: &Context<'_>) -> (Tlp, TlpSource) {
    let object = context.object.unwrap_or(Level {
        tlp_tag: None,
        distribution: None,
    });
    let tag = attribute
        .tlp_tag
        .map(|t| (t, TlpSource::AttributeTag))
        .or(object.tlp_tag.map(|t| (t, TlpSource::ObjectTag)))
        .or(context.event.tlp_tag.map(|t| (t, TlpSource::EventTag)));
    // 5, "inherit", maps to no TLP, leaving the object's and the event's to decide.
    let shared = |d: Option<u8>, source: fn(u8) -> TlpSource| {
        d.and_then(|d| tlp_of_distribution(d).map(|t| (t, source(d))))
    };
    let given = [
        tag,
        shared(attribute.distribution, TlpSource::AttributeDistribution),
        shared(object.distribution, TlpSource::ObjectDistribution),
        shared(context.event.distribution, TlpSource::EventDistribution),
    ];
    let mut best: Option<(Tlp, TlpSource)> = None;
    for (tlp, source) in given.into_iter().flatten() {
        if best.is_none_or(|(b, _)| tlp > b) {
            best = Some((tlp, source));
        }
    }
    best.unwrap_or((context.options.default_tlp, TlpSource::Default))
}

/// `first`, then the names of `then` it lacks, up to [`MAX_TAGS_PER_INDICATOR`].
fn merge(first: &[String], then: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(MAX_TAGS_PER_INDICATOR.min(first.len() + then.len()));
    for name in first.iter().chain(then) {
        if out.len() == MAX_TAGS_PER_INDICATOR {
            break;
        }
        // At most MAX_TAGS_PER_INDICATOR kept, so the scan is bounded.
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// The TLP a MISP distribution level gives; see the module table.
pub fn tlp_of_distribution(distribution: u8) -> Option<Tlp> {
    match distribution {
        0 => Some(Tlp::AmberStrict),
        1 | 2 => Some(Tlp::Green),
        3 => Some(Tlp::Clear),
        4 => Some(Tlp::Red),
        _ => None,
    }
}

/// One event's, object's or attribute's tags, from `Tag: [{name}]` or the
/// `EventTag`/`AttributeTag: [{Tag: {name}}]` shape.
struct Tags {
    /// The most restrictive `tlp:` tag of all of them, however many come before it.
    tlp: Option<Tlp>,
    /// The first other names, trimmed, cut and without repeats, as many as an indicator keeps.
    names: Vec<String>,
}

impl Tags {
    /// One pass over the tags: a crafted event may hold tens of thousands.
    fn of(holder: &Value) -> Tags {
        let direct = list(holder, "Tag");
        let wrapped = ["EventTag", "AttributeTag"]
            .into_iter()
            .flat_map(|k| list(holder, k))
            .filter_map(|w| w.get("Tag"));
        let mut tags = Tags {
            tlp: None,
            names: Vec::new(),
        };
        for tag in direct.chain(wrapped) {
            let Some(name) = tag.get("name").and_then(Value::as_str) else {
                continue;
            };
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let level = name
                .get(..4)
                .filter(|p| p.eq_ignore_ascii_case("tlp:"))
                .and_then(|_| name.get(4..));
            // Unknown tlp: values (tlp:ex:chr, tlp:unclear) are kept as plain tags.
            if let Some(t) = level.and_then(Tlp::parse) {
                tags.tlp = tags.tlp.max(Some(t));
                continue;
            }
            if tags.names.len() < MAX_TAGS_PER_INDICATOR {
                let name = crate::text::clip(name.to_owned(), MAX_TAG_BYTES);
                // At most MAX_TAGS_PER_INDICATOR kept, so the scan is bounded.
                if !tags.names.contains(&name) {
                    tags.names.push(name);
                }
            }
        }
        tags
    }
}

fn list<'a>(holder: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    holder
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

fn string(holder: &Value, key: &str) -> Option<String> {
    holder.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// MISP writes flags as booleans, `"1"`/`"0"` or numbers depending on version and export.
fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true"),
        _ => false,
    }
}

fn distribution(v: Option<&Value>) -> Option<u8> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
#[path = "misp_tests.rs"]
mod tests;
