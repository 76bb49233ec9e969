//! The attribute-level part of MISP import: what an attribute (with its event's and object's
//! levels and tags) comes to, its TLP by the strictest of every level, and the small readers
//! of MISP's loosely typed JSON (flags and distributions as numbers, strings or booleans).

use super::*;

/// What an event or an object says about who may read the attributes it holds.
#[derive(Clone, Copy)]
pub(super) struct Level {
    pub(super) tlp_tag: Option<Tlp>,
    /// Whether a `tlp:` tag here names no level this reads.
    pub(super) unreadable_tlp: bool,
    pub(super) distribution: Option<u8>,
}

pub(super) struct Context<'a> {
    pub(super) event: Level,
    pub(super) object: Option<Level>,
    /// The event's tag names then the object's, already bounded and without repeats.
    pub(super) tags: &'a [String],
    pub(super) options: &'a MispOptions,
}

pub(super) fn read_attribute(
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
pub(super) enum Part {
    Ip,
    Of(IndicatorType),
}

/// The parts of a (possibly composite, `a|b`) attribute type that are indicators, by position.
pub(super) fn parts_of(attribute_type: &str) -> Option<(usize, &'static [(usize, Part)])> {
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

pub(super) fn attribute_outcome(
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
        unreadable_tlp: attr_tags.unreadable_tlp,
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
pub(super) fn strictest(attribute: Level, context: &Context<'_>) -> (Tlp, TlpSource) {
    let object = context.object.unwrap_or(Level {
        tlp_tag: None,
        unreadable_tlp: false,
        distribution: None,
    });
    // A marking that cannot be read may be stricter than anything else said: never widened.
    if attribute.unreadable_tlp || object.unreadable_tlp || context.event.unreadable_tlp {
        return (Tlp::Red, TlpSource::UnreadableTag);
    }
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
pub(super) fn merge(first: &[String], then: &[String]) -> Vec<String> {
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
pub(super) struct Tags {
    /// The most restrictive `tlp:` tag of all of them, however many come before it.
    pub(super) tlp: Option<Tlp>,
    /// Whether a `tlp:` tag names no level this reads (`tlp:ex:chr`, the Chatham House
    /// extension, adds to a level and is kept as a plain tag).
    pub(super) unreadable_tlp: bool,
    /// The first other names, trimmed, cut and without repeats, as many as an indicator keeps.
    pub(super) names: Vec<String>,
}

impl Tags {
    /// One pass over the tags: a crafted event may hold tens of thousands.
    pub(super) fn of(holder: &Value) -> Tags {
        let direct = list(holder, "Tag");
        let wrapped = ["EventTag", "AttributeTag"]
            .into_iter()
            .flat_map(|k| list(holder, k))
            .filter_map(|w| w.get("Tag"));
        let mut tags = Tags {
            tlp: None,
            unreadable_tlp: false,
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
            if let Some(t) = level.and_then(Tlp::parse) {
                tags.tlp = tags.tlp.max(Some(t));
                continue;
            }
            // Other tlp: values (tlp:unclear, a typo) may mean stricter than any level read:
            // the value is withheld (see `TlpSource::UnreadableTag`), never taken at the
            // distribution's level. The Chatham House extension adds to a level.
            if level.is_some_and(|l| !l.eq_ignore_ascii_case("ex:chr")) {
                tags.unreadable_tlp = true;
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

pub(super) fn list<'a>(holder: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    holder
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter())
        .into_iter()
        .flatten()
}

pub(super) fn string(holder: &Value, key: &str) -> Option<String> {
    holder.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// MISP writes flags as booleans, `"1"`/`"0"` or numbers depending on version and export.
pub(super) fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n != 0),
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true"),
        _ => false,
    }
}

pub(super) fn distribution(v: Option<&Value>) -> Option<u8> {
    match v? {
        Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}
