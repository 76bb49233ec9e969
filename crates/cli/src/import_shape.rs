//! Telling a STIX document from a MISP one by the keys at its top, read without keeping
//! anything below them: a JSON file that is neither costs one pass and no memory, however
//! large (building it whole took 28 times its size).

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::import_read::Format;

/// The format of a JSON document by its shape (for an array, its first item's), `None` when it
/// is neither STIX nor MISP; an error when it is not JSON.
pub(crate) fn json_format(text: &str) -> Result<Option<Format>, serde_json::Error> {
    let shape = match serde_json::from_str::<Peek>(text)? {
        Peek::Object(shape) | Peek::List(Some(shape)) => shape,
        _ => return Ok(None),
    };
    Ok(shape.format())
}

/// What the keys of one JSON object say about it.
#[derive(Debug, Default, PartialEq, Eq)]
struct ObjectShape {
    /// `Event`, `response` or `Attribute`: MISP's.
    misp_key: bool,
    /// Its `type`, if a string.
    type_name: Option<String>,
    /// `objects` holds an array.
    objects_array: bool,
    spec_version: bool,
    id: bool,
}

impl ObjectShape {
    fn format(&self) -> Option<Format> {
        if self.misp_key {
            return Some(Format::Misp);
        }
        let stix = self.type_name.as_deref() == Some("bundle")
            || self.objects_array
            || self.spec_version
            || (self.type_name.is_some() && self.id);
        stix.then_some(Format::Stix)
    }
}

/// A JSON value as far as the shape needs it: a string's text, an array's first item if an
/// object, an object's shape; nothing else is kept.
enum Peek {
    Text(String),
    List(Option<ObjectShape>),
    Object(ObjectShape),
    Other,
}

impl<'de> de::Deserialize<'de> for Peek {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Peek, D::Error> {
        d.deserialize_any(PeekVisitor)
    }
}

struct PeekVisitor;

impl<'de> Visitor<'de> for PeekVisitor {
    type Value = Peek;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Peek, E> {
        Ok(Peek::Text(s.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Peek, A::Error> {
        let first = match seq.next_element::<Peek>()? {
            Some(Peek::Object(shape)) => Some(shape),
            _ => None,
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Peek::List(first))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Peek, A::Error> {
        let mut shape = ObjectShape::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "type" => {
                    if let Peek::Text(t) = map.next_value::<Peek>()? {
                        shape.type_name = Some(t);
                    }
                }
                "objects" => {
                    shape.objects_array = matches!(map.next_value::<Peek>()?, Peek::List(_));
                }
                other => {
                    map.next_value::<IgnoredAny>()?;
                    match other {
                        "Event" | "response" | "Attribute" => shape.misp_key = true,
                        "spec_version" => shape.spec_version = true,
                        "id" => shape.id = true,
                        _ => {}
                    }
                }
            }
        }
        Ok(Peek::Object(shape))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Peek, E> {
        Ok(Peek::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Peek, E> {
        Ok(Peek::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Peek, E> {
        Ok(Peek::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Peek, E> {
        Ok(Peek::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Peek, E> {
        Ok(Peek::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_told_apart_by_their_top_keys() {
        let cases = [
            (
                r#"{"type": "bundle", "id": "bundle--1", "objects": []}"#,
                Some(Format::Stix),
            ),
            (
                r#"{"objects": [{"type": "indicator"}]}"#,
                Some(Format::Stix),
            ),
            (
                r#"{"spec_version": "2.1", "type": "indicator"}"#,
                Some(Format::Stix),
            ),
            (
                r#"{"type": "indicator", "id": "indicator--1"}"#,
                Some(Format::Stix),
            ),
            (
                r#"[{"type": "indicator", "id": "indicator--1"}, 5]"#,
                Some(Format::Stix),
            ),
            (
                r#"{"Event": {"info": "x", "Attribute": []}}"#,
                Some(Format::Misp),
            ),
            (r#"{"response": [{"Event": {}}]}"#, Some(Format::Misp)),
            (r#"[{"Event": {}}, {"Event": {}}]"#, Some(Format::Misp)),
            (r#"{"info": "bare", "Attribute": []}"#, Some(Format::Misp)),
            // The order of the keys does not matter.
            (
                r#"{"objects": [], "id": "bundle--1", "type": "bundle"}"#,
                Some(Format::Stix),
            ),
            (
                r#"{"id": "indicator--1", "note": {"type": 1}, "type": "indicator"}"#,
                Some(Format::Stix),
            ),
            (r#"{"Attribute": [], "info": "bare"}"#, Some(Format::Misp)),
            // Neither: the shape is not at the top, or the keys mean something else.
            (r#"{"data": {"type": "bundle", "objects": []}}"#, None),
            (r#"{"objects": "not a list", "type": 5}"#, None),
            (r#"{"type": {"id": "x"}, "name": "n"}"#, None),
            (r#"[1, {"type": "bundle"}]"#, None),
            (r#"[]"#, None),
            (r#""just text""#, None),
            (r#"42"#, None),
        ];
        for (text, want) in cases {
            assert_eq!(json_format(text).expect(text), want, "{text}");
        }
    }

    #[test]
    fn text_that_is_not_json_is_an_error() {
        for text in ["{", r#"{"type": "bundle""#, "[1, 2", "{} trailing", ""] {
            assert!(json_format(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_large_document_of_neither_shape_is_read_to_its_end() {
        let rows: Vec<String> = (0..20_000)
            .map(|i| format!(r#"{{"row": {i}, "cells": [1, 2, 3], "note": "n{i}"}}"#))
            .collect();
        let text = format!("[{}]", rows.join(","));
        assert_eq!(json_format(&text).unwrap(), None);
        let broken = format!("[{}", rows.join(","));
        assert!(
            json_format(&broken).is_err(),
            "an unfinished array is not JSON"
        );
    }
}
