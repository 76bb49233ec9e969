//! STIX 2.1 export: mesh indicators and sightings to `indicator`, `sighting`, `identity` and
//! `bundle` objects.
//!
//! Ids are derived from content, not drawn at random, so exporting the same origin's
//! indicator twice gives the same `indicator--` id and a consumer updates rather than
//! duplicates it. They are RFC 9562 version 8 UUIDs (the name-based SHA-256 construction of
//! its appendix): version 5 would claim SHA-1, and the workspace has no UUID crate.

use intelmesh_core::{Indicator, Tlp};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

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
    pub seen_at_unix_ms: i64,
    pub count: u64,
}

/// Largest `count` STIX 2.1 allows on a sighting.
pub const MAX_SIGHTING_COUNT: u64 = 999_999_999;

/// `identity--<uuid>` of an organisation.
pub fn identity_id(origin: &str) -> String {
    format!("identity--{}", name_uuid(&["identity", origin]))
}

/// `indicator--<uuid>` of one origin's assertion about an indicator.
pub fn indicator_id(origin: &str, indicator: &Indicator) -> String {
    let uuid = name_uuid(&[
        "indicator",
        origin,
        indicator.ty().as_str(),
        indicator.value(),
    ]);
    format!("indicator--{uuid}")
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
    let time = format_timestamp(s.seen_at_unix_ms);
    let sighted = indicator_id(&s.indicator_origin, &s.indicator);
    let id = name_uuid(&[
        "sighting",
        &sighted,
        &s.reporter,
        &s.seen_at_unix_ms.to_string(),
    ]);
    json!({
        "type": "sighting",
        "spec_version": "2.1",
        "id": format!("sighting--{id}"),
        "created": time,
        "modified": time,
        "created_by_ref": identity_id(&s.reporter),
        "sighting_of_ref": sighted,
        "where_sighted_refs": [identity_id(&s.reporter)],
        "first_seen": time,
        "last_seen": time,
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
        "id": format!("bundle--{}", name_uuid(&parts)),
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

/// A version 8 UUID from the SHA-256 of the parts, each length-prefixed so that no two part
/// lists hash the same text.
fn name_uuid(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"intelmesh-interop-id-v1");
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
#[path = "stix_export_tests.rs"]
mod tests;
