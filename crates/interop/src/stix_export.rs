//! STIX 2.1 export: mesh indicators and sightings to `indicator`, `sighting`, `identity` and
//! `bundle` objects.
//!
//! Ids are derived from content, not drawn at random, so exporting the same origin's
//! indicator twice gives the same `indicator--` id and a consumer updates rather than
//! duplicates it (`intelmesh_core::object_id`, which the store also posts, so a node finds the
//! indicator behind an id).

use intelmesh_core::object_id::{assertion_uuid, format_uuid, name_uuid, sightings_uuid};
use intelmesh_core::{Indicator, Tlp};
use serde_json::{json, Map, Value};

use crate::marking::{marking_id_of, tlp_marking_definition};
use crate::pattern::pattern_of;
use crate::time::format_timestamp;

/// One origin's assertion about an indicator, as the mesh holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportIndicator {
    pub indicator: Indicator,
    /// The asserting organisation's id.
    pub origin: String,
    pub tlp: Tlp,
    pub confidence: Option<u32>,
    pub valid_from_unix_ms: i64,
    pub valid_until_unix_ms: Option<i64>,
    pub revoked: bool,
    pub created_unix_ms: i64,
    pub modified_unix_ms: i64,
    /// Written as `labels`.
    pub tags: Vec<String>,
    pub description: Option<String>,
}

/// One organisation's report of having seen an indicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSighting {
    pub indicator: Indicator,
    /// Origin of the assertion the sighting refers to (whose `indicator--` id it names).
    pub indicator_origin: String,
    /// Who saw it.
    pub reporter: String,
    pub tlp: Tlp,
    pub first_seen_unix_ms: i64,
    /// The last sighting: the object's version.
    pub seen_at_unix_ms: i64,
    pub count: u64,
}

/// Largest `count` STIX 2.1 allows on a sighting.
pub const MAX_SIGHTING_COUNT: u64 = 999_999_999;

/// `identity--<uuid>` of an organisation.
pub fn identity_id(origin: &str) -> String {
    format!("identity--{}", uuid(&["identity", origin]))
}

/// `indicator--<uuid>` of one origin's assertion about an indicator.
pub fn indicator_id(origin: &str, indicator: &Indicator) -> String {
    format!(
        "indicator--{}",
        format_uuid(&assertion_uuid(origin, indicator.ty(), indicator.value()))
    )
}

/// `sighting--<uuid>` of one reporter's sightings of an indicator under one TLP.
pub fn sighting_id(reporter: &str, tlp: Tlp, indicator: &Indicator) -> String {
    format!(
        "sighting--{}",
        format_uuid(&sightings_uuid(
            reporter,
            tlp,
            indicator.ty(),
            indicator.value()
        ))
    )
}

/// An `identity` object for an organisation.
pub fn identity_object(origin: &str, created_unix_ms: i64) -> Value {
    let time = format_timestamp(created_unix_ms);
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id(origin),
        "created": time,
        "modified": time,
        "name": origin,
        "identity_class": "organization",
    })
}

/// An `indicator` object whose pattern matches exactly the indicator.
pub fn indicator_object(e: &ExportIndicator) -> Value {
    let mut o = Map::new();
    o.insert("type".into(), json!("indicator"));
    o.insert("spec_version".into(), json!("2.1"));
    o.insert("id".into(), json!(indicator_id(&e.origin, &e.indicator)));
    o.insert("created".into(), json!(format_timestamp(e.created_unix_ms)));
    o.insert(
        "modified".into(),
        json!(format_timestamp(e.modified_unix_ms)),
    );
    o.insert("created_by_ref".into(), json!(identity_id(&e.origin)));
    // STIX asks for a name; the value is what an analyst scanning a list needs to see.
    o.insert("name".into(), json!(e.indicator.value()));
    o.insert("pattern".into(), json!(pattern_of(&e.indicator)));
    o.insert("pattern_type".into(), json!("stix"));
    o.insert("pattern_version".into(), json!("2.1"));
    o.insert(
        "valid_from".into(),
        json!(format_timestamp(e.valid_from_unix_ms)),
    );
    if let Some(until) = e.valid_until_unix_ms {
        o.insert("valid_until".into(), json!(format_timestamp(until)));
    }
    if let Some(confidence) = e.confidence {
        o.insert("confidence".into(), json!(confidence.min(100)));
    }
    if e.revoked {
        o.insert("revoked".into(), json!(true));
    }
    if !e.tags.is_empty() {
        o.insert("labels".into(), json!(e.tags));
    }
    if let Some(description) = &e.description {
        o.insert("description".into(), json!(description));
    }
    o.insert("object_marking_refs".into(), json!([marking_id_of(e.tlp)]));
    Value::Object(o)
}

/// A `sighting` of the indicator object [`indicator_id`] names, seen by the reporter.
pub fn sighting_object(s: &ExportSighting) -> Value {
    let first = format_timestamp(s.first_seen_unix_ms.min(s.seen_at_unix_ms));
    let last = format_timestamp(s.seen_at_unix_ms);
    json!({
        "type": "sighting",
        "spec_version": "2.1",
        "id": sighting_id(&s.reporter, s.tlp, &s.indicator),
        "created": first,
        "modified": last,
        "created_by_ref": identity_id(&s.reporter),
        "sighting_of_ref": indicator_id(&s.indicator_origin, &s.indicator),
        "where_sighted_refs": [identity_id(&s.reporter)],
        "first_seen": first,
        "last_seen": last,
        "count": s.count.min(MAX_SIGHTING_COUNT),
        "object_marking_refs": [marking_id_of(s.tlp)],
    })
}

/// A bundle of `objects`, its id derived from theirs so the same set gives the same bundle.
pub fn bundle(objects: Vec<Value>) -> Value {
    let ids: Vec<&str> = objects
        .iter()
        .map(|o| o.get("id").and_then(Value::as_str).unwrap_or_default())
        .collect();
    let mut parts = vec!["bundle"];
    parts.extend(ids);
    json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid(&parts)),
        "objects": objects,
    })
}

/// A bundle ready for a consumer: the identity of every origin and reporter and the TLP 2.0
/// marking definition of every TLP used, each once and in a stable order, then the indicators
/// and the sightings. `identities_created_unix_ms` dates the identity objects.
pub fn export_bundle(
    indicators: &[ExportIndicator],
    sightings: &[ExportSighting],
    identities_created_unix_ms: i64,
) -> Value {
    let mut orgs: Vec<&str> = indicators
        .iter()
        .map(|e| e.origin.as_str())
        .chain(sightings.iter().map(|s| s.reporter.as_str()))
        .collect();
    orgs.sort_unstable();
    orgs.dedup();
    let mut tlps: Vec<Tlp> = indicators
        .iter()
        .map(|e| e.tlp)
        .chain(sightings.iter().map(|s| s.tlp))
        .collect();
    tlps.sort_unstable();
    tlps.dedup();
    let mut objects: Vec<Value> = orgs
        .into_iter()
        .map(|o| identity_object(o, identities_created_unix_ms))
        .collect();
    objects.extend(tlps.into_iter().map(tlp_marking_definition));
    objects.extend(indicators.iter().map(indicator_object));
    objects.extend(sightings.iter().map(sighting_object));
    bundle(objects)
}

fn uuid(parts: &[&str]) -> String {
    format_uuid(&name_uuid(parts))
}
