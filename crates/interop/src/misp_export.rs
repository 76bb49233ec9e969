//! MISP feed export: mesh assertions to the files of a MISP feed directory (`manifest.json`,
//! one `UUID.json` event per origin, `hashes.csv`), as MISP's feed fetcher and PyMISP's feed
//! generator read and write them.
//!
//! One event per asserting organisation; its uuid, the `Orgc` uuid and every attribute's uuid
//! are derived from content (`intelmesh_core::object_id`, the attribute's equal to the STIX
//! `indicator--` id of the same assertion), so a re-export updates events instead of adding
//! new ones. Revoked assertions are left out. Each attribute carries its own `tlp:` tag and a
//! distribution that [`import_misp`](crate::import_misp) reads back as the same TLP:
//!
//! | TLP | tag | distribution |
//! |---|---|---|
//! | CLEAR | `tlp:clear` | 3 all communities |
//! | GREEN | `tlp:green` | 1 this community |
//! | AMBER | `tlp:amber` | 1 this community (0 would read back as AMBER+STRICT; the tag limits it) |
//! | AMBER+STRICT | `tlp:amber+strict` | 0 your organisation |
//! | RED | `tlp:red` | 0 your organisation (4 needs a sharing group the feed cannot name) |

use std::collections::BTreeMap;

use intelmesh_core::object_id::{assertion_uuid, format_uuid, name_uuid};
use intelmesh_core::{IndicatorType, Tlp};
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use crate::stix_export::ExportIndicator;
use crate::time::format_timestamp;

/// The files of a feed directory.
#[derive(Clone, Debug, PartialEq)]
pub struct MispFeed {
    /// `manifest.json`: event uuid → its summary.
    pub manifest: Value,
    /// Each event's uuid and the content of its `UUID.json`, `{"Event": …}`.
    pub events: Vec<(String, Value)>,
    /// `hashes.csv`: a line `MD5(value),EVENT_UUID` per attribute in force.
    pub hashes: String,
    /// Attributes in force written.
    pub attributes: usize,
    /// Revoked assertions, written as deleted attributes (`deleted`, not `to_ids`).
    pub revoked: usize,
}

/// The MISP attribute type and category of a mesh type. MISP takes a CIDR block in `ip-dst`.
pub fn attribute_type(ty: IndicatorType) -> (&'static str, &'static str) {
    use IndicatorType as T;
    match ty {
        T::Ipv4 | T::Ipv6 | T::Cidr => ("ip-dst", "Network activity"),
        T::Domain => ("domain", "Network activity"),
        T::Url => ("url", "Network activity"),
        T::Email => ("email-src", "Payload delivery"),
        T::Md5 => ("md5", "Payload delivery"),
        T::Sha1 => ("sha1", "Payload delivery"),
        T::Sha256 => ("sha256", "Payload delivery"),
    }
}

/// The `tlp:` tag name and distribution level of a TLP; see the module table.
pub fn tlp_tag_and_distribution(tlp: Tlp) -> (String, u8) {
    let distribution = match tlp {
        Tlp::Clear => 3,
        Tlp::Green | Tlp::Amber => 1,
        Tlp::AmberStrict | Tlp::Red => 0,
    };
    (
        format!("tlp:{}", tlp.as_str().to_ascii_lowercase()),
        distribution,
    )
}

/// The uuid of `origin`'s feed event.
pub fn event_uuid(origin: &str) -> String {
    format_uuid(&name_uuid(&["misp-event", origin]))
}

/// A feed of `indicators` (one origin's assertion each), events and attributes sorted.
pub fn misp_feed(indicators: &[ExportIndicator]) -> MispFeed {
    // Revoked assertions are written too, as deleted attributes: MISP's fetcher updates an
    // event only when its timestamp moves on and never drops an attribute a feed stops listing,
    // so a revocation left out would stay in every subscriber's instance (and its IDS rules).
    let mut by_origin: BTreeMap<&str, Vec<&ExportIndicator>> = BTreeMap::new();
    let revoked = indicators.iter().filter(|e| e.revoked).count();
    for e in indicators {
        by_origin.entry(e.origin.as_str()).or_default().push(e);
    }
    let mut manifest = Map::new();
    let mut events = Vec::new();
    let mut hashes = String::new();
    let mut attributes = 0;
    for (origin, mut found) in by_origin {
        found.sort_by(|a, b| {
            (a.indicator.ty(), a.indicator.value()).cmp(&(b.indicator.ty(), b.indicator.value()))
        });
        let uuid = event_uuid(origin);
        let (summary, event) = event(origin, &uuid, &found);
        for e in found.iter().filter(|e| !e.revoked) {
            let digest = Md5::digest(e.indicator.value().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            hashes.push_str(&format!("{hex},{uuid}\n"));
            attributes += 1;
        }
        manifest.insert(uuid.clone(), summary);
        events.push((uuid, json!({ "Event": event })));
    }
    MispFeed {
        manifest: Value::Object(manifest),
        events,
        hashes,
        attributes,
        revoked,
    }
}

/// An origin's event (`found` not empty) and its manifest summary.
fn event(origin: &str, uuid: &str, found: &[&ExportIndicator]) -> (Value, Value) {
    let seconds = |ms: i64| (ms.max(0) / 1000).to_string();
    let updated = found.iter().map(|e| e.modified_unix_ms).max().unwrap_or(0);
    let first = found.iter().map(|e| e.created_unix_ms).min().unwrap_or(0);
    let date: String = format_timestamp(first.max(0)).chars().take(10).collect();
    // MISP caps each attribute's distribution at the event's: the event's is the widest.
    let widest = found
        .iter()
        .map(|e| tlp_tag_and_distribution(e.tlp).1)
        .max()
        .unwrap_or(0);
    // The strictest TLP of the event's attributes, so a reader (or a feed rule) that goes by
    // the event's tag errs on the side of caution; each attribute's own tag is what it is.
    let strictest = found.iter().map(|e| e.tlp).max().unwrap_or(Tlp::Red);
    let tags = json!([{ "name": tlp_tag_and_distribution(strictest).0 }]);
    let orgc = json!({
        "name": origin,
        "uuid": format_uuid(&name_uuid(&["identity", origin])),
    });
    let info = format!("intelmesh: indicators asserted by {origin}");
    let attributes: Vec<Value> = found.iter().map(|e| attribute(e)).collect();
    let summary = json!({
        "info": info,
        "Orgc": orgc,
        "analysis": "2",
        "threat_level_id": "4",
        "timestamp": seconds(updated),
        "date": date,
        "published": true,
        "Tag": tags,
    });
    let event = json!({
        "uuid": uuid,
        "info": info,
        "Orgc": orgc,
        "Org": orgc,
        "analysis": "2",
        "threat_level_id": "4",
        "timestamp": seconds(updated),
        "publish_timestamp": seconds(updated),
        "date": date,
        "published": true,
        "distribution": widest.to_string(),
        "Tag": tags,
        "Attribute": attributes,
    });
    (summary, event)
}

fn attribute(e: &ExportIndicator) -> Value {
    let ty = e.indicator.ty();
    let (attribute_type, category) = attribute_type(ty);
    let (tlp_tag, distribution) = tlp_tag_and_distribution(e.tlp);
    let mut tags = vec![json!({ "name": tlp_tag })];
    // A tag of its own named `tlp:…` would read back as the TLP: only the assertion's counts.
    for t in &e.tags {
        if !t.trim().to_ascii_lowercase().starts_with("tlp:") {
            tags.push(json!({ "name": t }));
        }
    }
    json!({
        "uuid": format_uuid(&assertion_uuid(&e.origin, ty, e.indicator.value())),
        "type": attribute_type,
        "category": category,
        "value": e.indicator.value(),
        "to_ids": !e.revoked,
        "deleted": e.revoked,
        "disable_correlation": false,
        "timestamp": (e.modified_unix_ms.max(0) / 1000).to_string(),
        "distribution": distribution.to_string(),
        "comment": e.description.clone().unwrap_or_default(),
        "Tag": tags,
    })
}

#[cfg(test)]
#[path = "misp_export_tests.rs"]
mod tests;
