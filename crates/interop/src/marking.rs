//! STIX TLP markings: marking-definition ids and objects to [`Tlp`], and [`Tlp`] to the TLP 2.0
//! marking id for export.
//!
//! The standard ids are normative, so they win over whatever a bundle says about them. Other
//! ids are resolved through the bundle's own `marking-definition` objects: the TLP 1.0 form
//! (`definition_type: "tlp"`, `definition.tlp`), the TLP 2.0 extension (`tlp_2_0`), a `name`
//! such as `TLP:AMBER+STRICT`, or a statement whose whole text is a TLP label. Several TLP
//! markings on one object give the most restrictive; a marking that is defined but is not a
//! TLP (a copyright statement) does not count; an id defined nowhere is reported as unknown.

use std::collections::HashMap;

use intelmesh_core::Tlp;
use serde_json::Value;

/// TLP 2.0 marking ids (the OASIS TLP 2.0 extension, `extension-definition--60a3c5c5-…`).
pub const TLP2_CLEAR: &str = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487";
pub const TLP2_GREEN: &str = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb";
pub const TLP2_AMBER: &str = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421";
pub const TLP2_AMBER_STRICT: &str = "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003";
pub const TLP2_RED: &str = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1";
/// TLP 1.0 marking ids (STIX 2.0 and 2.1 specifications, section "TLP marking definitions").
pub const TLP1_WHITE: &str = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9";
pub const TLP1_GREEN: &str = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da";
pub const TLP1_AMBER: &str = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82";
pub const TLP1_RED: &str = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed";

/// The TLP extension's id, which a TLP 2.0 marking-definition object carries.
pub const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// The TLP of a standard marking id, TLP 2.0 or 1.0 (WHITE reads as CLEAR).
pub fn tlp_of_standard_id(id: &str) -> Option<Tlp> {
    match id {
        TLP2_CLEAR | TLP1_WHITE => Some(Tlp::Clear),
        TLP2_GREEN | TLP1_GREEN => Some(Tlp::Green),
        TLP2_AMBER | TLP1_AMBER => Some(Tlp::Amber),
        TLP2_AMBER_STRICT => Some(Tlp::AmberStrict),
        TLP2_RED | TLP1_RED => Some(Tlp::Red),
        _ => None,
    }
}

/// The TLP 2.0 marking id of a TLP, for export.
pub fn marking_id_of(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => TLP2_CLEAR,
        Tlp::Green => TLP2_GREEN,
        Tlp::Amber => TLP2_AMBER,
        Tlp::AmberStrict => TLP2_AMBER_STRICT,
        Tlp::Red => TLP2_RED,
    }
}

/// What a `marking-definition` object says about TLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkingKind {
    Tlp(Tlp),
    /// A marking that is not a TLP, such as a copyright statement.
    Other,
    /// A definition that speaks of TLP but names no level this reads ("TLP: RED", a `tlp`
    /// definition or TLP extension of an unknown value): counted as unknown, not as "no TLP".
    Unreadable,
}

/// Reads a `marking-definition` object: `None` when it is not one or has no id.
pub fn read_marking_definition(object: &Value) -> Option<(String, MarkingKind)> {
    if object.get("type").and_then(Value::as_str) != Some("marking-definition") {
        return None;
    }
    let id = object.get("id").and_then(Value::as_str)?.to_owned();
    if let Some(tlp) = tlp_of_standard_id(&id) {
        return Some((id, MarkingKind::Tlp(tlp)));
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).and_then(Tlp::parse);
    // Producers write the type in any case (OpenCTI: "TLP"), and some a definition that is
    // the level's text itself rather than an object.
    let definition_type =
        (object.get("definition_type").and_then(Value::as_str)).map(str::to_ascii_lowercase);
    let definition = object.get("definition");
    let field = |name: &str| definition.and_then(|d| d.get(name).or(Some(d)));
    let defined = match definition_type.as_deref() {
        Some("tlp") => text(field("tlp")),
        Some("statement") => text(field("statement")),
        _ => None,
    };
    let extended = text(
        object
            .get("extensions")
            .and_then(|e| e.get(TLP2_EXTENSION))
            .and_then(|e| e.get("tlp_2_0")),
    );
    // The strictest of what the definition, the TLP 2.0 extension and the name say: a STIX
    // 2.0 `tlp` field cannot say AMBER+STRICT, so producers put it in the name beside "amber".
    let tlp = [defined, extended, text(object.get("name"))]
        .into_iter()
        .flatten()
        .max();
    if let Some(tlp) = tlp {
        return Some((id, MarkingKind::Tlp(tlp)));
    }
    let speaks_of_tlp = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|t| t.to_ascii_uppercase().contains("TLP"))
    };
    let texts = [
        definition.and_then(|d| d.get("statement")),
        definition,
        object.get("name"),
    ];
    let tlp_shaped = definition_type.as_deref() == Some("tlp")
        || object
            .get("extensions")
            .and_then(|e| e.get(TLP2_EXTENSION))
            .is_some();
    if tlp_shaped || texts.into_iter().any(speaks_of_tlp) {
        return Some((id, MarkingKind::Unreadable));
    }
    Some((id, MarkingKind::Other))
}

/// The TLP a set of marking references gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkingResolution {
    /// The most restrictive TLP among the references; `None` when none is a TLP.
    pub tlp: Option<Tlp>,
    /// References defined neither by the standard nor in the bundle: what they restrict is not
    /// known, so the caller decides (the importer reports them next to each indicator).
    pub unknown: Vec<String>,
}

/// The marking definitions one bundle carries, by id.
#[derive(Clone, Debug, Default)]
pub struct Markings {
    by_id: HashMap<String, MarkingKind>,
}

impl Markings {
    /// Collects the marking definitions among `objects`; other objects are passed over.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Markings {
        let mut by_id: HashMap<String, MarkingKind> = HashMap::new();
        for (id, kind) in objects.into_iter().filter_map(read_marking_definition) {
            // An id defined twice means its strictest definition, whichever comes last.
            let kept = by_id.entry(id).or_insert(kind);
            *kept = match (*kept, kind) {
                (MarkingKind::Unreadable, _) | (_, MarkingKind::Unreadable) => {
                    MarkingKind::Unreadable
                }
                (MarkingKind::Tlp(a), MarkingKind::Tlp(b)) => MarkingKind::Tlp(a.max(b)),
                (MarkingKind::Tlp(t), _) | (_, MarkingKind::Tlp(t)) => MarkingKind::Tlp(t),
                (MarkingKind::Other, MarkingKind::Other) => MarkingKind::Other,
            };
        }
        Markings { by_id }
    }

    /// What one marking id means: a standard id first, then the bundle's definition.
    pub fn kind(&self, id: &str) -> Option<MarkingKind> {
        tlp_of_standard_id(id)
            .map(MarkingKind::Tlp)
            .or_else(|| self.by_id.get(id).copied())
    }

    /// The most restrictive TLP among `refs`, and the references nobody defines.
    pub fn resolve<'a>(&self, refs: impl IntoIterator<Item = &'a str>) -> MarkingResolution {
        let mut out = MarkingResolution::default();
        for id in refs {
            match self.kind(id) {
                Some(MarkingKind::Tlp(tlp)) => out.tlp = out.tlp.max(Some(tlp)),
                Some(MarkingKind::Other) => {}
                Some(MarkingKind::Unreadable) | None => out.unknown.push(id.to_owned()),
            }
        }
        out
    }
}

/// A TLP 2.0 `marking-definition` object, as the TLP extension publishes it, for bundles
/// that carry their markings.
pub fn tlp_marking_definition(tlp: Tlp) -> Value {
    serde_json::json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id_of(tlp),
        "created": "2022-10-01T00:00:00.000Z",
        "name": format!("TLP:{}", tlp.as_str()),
        "extensions": {
            TLP2_EXTENSION: {
                "extension_type": "property-extension",
                "tlp_2_0": tlp.as_str().to_ascii_lowercase(),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn standard_ids_map_both_ways() {
        for tlp in Tlp::ALL {
            assert_eq!(tlp_of_standard_id(marking_id_of(tlp)), Some(tlp));
        }
        assert_eq!(tlp_of_standard_id(TLP1_WHITE), Some(Tlp::Clear));
        assert_eq!(tlp_of_standard_id(TLP1_GREEN), Some(Tlp::Green));
        assert_eq!(tlp_of_standard_id(TLP1_AMBER), Some(Tlp::Amber));
        assert_eq!(tlp_of_standard_id(TLP1_RED), Some(Tlp::Red));
        // One digit off TLP:RED, as in oasis-examples/interop-objectmarking-test.json.
        assert_eq!(
            tlp_of_standard_id("marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ec"),
            None
        );
    }

    #[test]
    fn bundle_definitions_of_every_common_shape() {
        let objects = [
            json!({"type": "marking-definition", "id": "marking-definition--1",
                   "definition_type": "tlp", "definition": {"tlp": "amber"}}),
            json!({"type": "marking-definition", "id": "marking-definition--2",
                   "name": "TLP:AMBER+STRICT"}),
            json!({"type": "marking-definition", "id": "marking-definition--3",
                   "extensions": {TLP2_EXTENSION: {"tlp_2_0": "red"}}}),
            json!({"type": "marking-definition", "id": "marking-definition--4",
                   "definition_type": "statement", "definition": {"statement": "TLP:GREEN"}}),
            json!({"type": "marking-definition", "id": "marking-definition--5",
                   "definition_type": "statement",
                   "definition": {"statement": "Copyright (c) Stark Industries 2017."}}),
            // Fields that disagree: the strictest holds (a STIX 2.0 `tlp` cannot say
            // AMBER+STRICT; an extension may say more than the definition).
            json!({"type": "marking-definition", "id": "marking-definition--6",
                   "definition_type": "tlp", "definition": {"tlp": "amber"},
                   "name": "TLP:AMBER+STRICT"}),
            json!({"type": "marking-definition", "id": "marking-definition--7",
                   "definition_type": "tlp", "definition": {"tlp": "green"},
                   "extensions": {TLP2_EXTENSION: {"tlp_2_0": "red"}}}),
            // A bundle that calls the TLP 1.0 WHITE id "AMBER" does not change the standard.
            json!({"type": "marking-definition", "id": TLP1_WHITE, "name": "TLP:AMBER"}),
            json!({"type": "indicator", "id": "indicator--8"}),
        ];
        let markings = Markings::from_objects(&objects);
        let kinds: Vec<_> = (1..=7)
            .map(|n| markings.kind(&format!("marking-definition--{n}")))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Some(MarkingKind::Tlp(Tlp::Amber)),
                Some(MarkingKind::Tlp(Tlp::AmberStrict)),
                Some(MarkingKind::Tlp(Tlp::Red)),
                Some(MarkingKind::Tlp(Tlp::Green)),
                Some(MarkingKind::Other),
                Some(MarkingKind::Tlp(Tlp::AmberStrict)),
                Some(MarkingKind::Tlp(Tlp::Red)),
            ]
        );
        assert_eq!(
            markings.kind(TLP1_WHITE),
            Some(MarkingKind::Tlp(Tlp::Clear))
        );
        assert_eq!(markings.kind("indicator--8"), None);
    }

    /// The type in capitals, or a definition that is the level's text: still the level; one
    /// of either shape this cannot read is unknown, never "no TLP".
    #[test]
    fn a_tlp_definition_in_capitals_or_as_text_is_read() {
        let read = |object: Value| read_marking_definition(&object).map(|(_, kind)| kind);
        let id = "marking-definition--7";
        assert_eq!(
            read(json!({"type": "marking-definition", "id": id,
                        "definition_type": "TLP", "definition": {"tlp": "red"}})),
            Some(MarkingKind::Tlp(Tlp::Red))
        );
        assert_eq!(
            read(json!({"type": "marking-definition", "id": id,
                        "definition_type": "TLP", "definition": "TLP:RED"})),
            Some(MarkingKind::Tlp(Tlp::Red))
        );
        assert_eq!(
            read(json!({"type": "marking-definition", "id": id,
                        "definition_type": "Statement", "definition": "TLP:AMBER"})),
            Some(MarkingKind::Tlp(Tlp::Amber))
        );
        assert_eq!(
            read(json!({"type": "marking-definition", "id": id,
                        "definition_type": "TLP", "definition": "TLP:PURPLE"})),
            Some(MarkingKind::Unreadable)
        );
        assert_eq!(
            read(json!({"type": "marking-definition", "id": id,
                        "definition_type": "other", "definition": "TLP: maybe"})),
            Some(MarkingKind::Unreadable)
        );
    }

    #[test]
    fn a_near_miss_tlp_text_is_unknown_and_a_twice_defined_id_its_strictest() {
        let objects = [
            json!({"type": "marking-definition", "id": "marking-definition--near",
                   "definition_type": "statement", "definition": {"statement": "TLP: RED"}}),
            json!({"type": "marking-definition", "id": "marking-definition--named",
                   "name": "Red - tlp, do not share"}),
            json!({"type": "marking-definition", "id": "marking-definition--twice",
                   "definition_type": "tlp", "definition": {"tlp": "red"}}),
            json!({"type": "marking-definition", "id": "marking-definition--twice",
                   "definition_type": "tlp", "definition": {"tlp": "green"}}),
            json!({"type": "marking-definition", "id": "marking-definition--strict",
                   "definition_type": "tlp", "definition": {"tlp": "amber strict"}}),
            json!({"type": "marking-definition", "id": "marking-definition--ext",
                   "extensions": {TLP2_EXTENSION: {"tlp_2_0": "crimson"}}}),
            // Once unreadable, always: a second, harmless definition does not clear it.
            json!({"type": "marking-definition", "id": "marking-definition--near",
                   "definition_type": "statement", "definition": {"statement": "(c) us"}}),
        ];
        let markings = Markings::from_objects(&objects);
        let unreadable = Some(MarkingKind::Unreadable);
        assert_eq!(markings.kind("marking-definition--near"), unreadable);
        assert_eq!(markings.kind("marking-definition--named"), unreadable);
        assert_eq!(
            markings.kind("marking-definition--twice"),
            Some(MarkingKind::Tlp(Tlp::Red))
        );
        assert_eq!(markings.kind("marking-definition--strict"), unreadable);
        assert_eq!(markings.kind("marking-definition--ext"), unreadable);
        let r = markings.resolve(["marking-definition--near"]);
        assert_eq!((r.tlp, r.unknown.len()), (None, 1), "refused as unknown");
    }

    #[test]
    fn several_markings_give_the_most_restrictive_and_list_the_unknown() {
        let markings = Markings::from_objects(&[json!({"type": "marking-definition",
            "id": "marking-definition--c", "definition_type": "statement",
            "definition": {"statement": "(c) someone"}})]);
        let got = markings.resolve([
            TLP2_GREEN,
            TLP1_RED,
            "marking-definition--c",
            "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ec",
            TLP2_AMBER,
        ]);
        assert_eq!(
            got,
            MarkingResolution {
                tlp: Some(Tlp::Red),
                unknown: vec!["marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ec".into()],
            }
        );
        assert_eq!(
            markings.resolve(["marking-definition--c"]),
            MarkingResolution::default()
        );
    }

    #[test]
    fn exported_definitions_read_back() {
        for tlp in Tlp::ALL {
            let object = tlp_marking_definition(tlp);
            assert_eq!(
                read_marking_definition(&object),
                Some((marking_id_of(tlp).to_owned(), MarkingKind::Tlp(tlp)))
            );
            // And without the standard-id shortcut, through the extension property alone.
            let mut renamed = object.clone();
            renamed["id"] = json!("marking-definition--local");
            if let Some(obj) = renamed.as_object_mut() {
                obj.remove("name");
            }
            assert_eq!(
                read_marking_definition(&renamed).map(|(_, k)| k),
                Some(MarkingKind::Tlp(tlp))
            );
        }
    }
}
