//! A POSTed body parsed as JSON within a budget of values, so its tree in memory stays a small
//! multiple of its bytes.
//!
//! `max_content_length` bounds a body's bytes, not what parsing it builds: a 10 MiB body of
//! `{"objects":[0,0,0,…]}` holds 5 million values, each a 32-byte `serde_json::Value` in
//! arrays grown by doubling, about 300 MB before the envelope's object count is even looked at,
//! and four POSTs parse at once. So the body is first walked without building anything,
//! counting its values (each array or object, key, string, number, literal), and refused past
//! [`MAX_VALUES`]; only then is it parsed.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

use super::write::MAX_ENVELOPE_OBJECTS;

/// Most JSON values one POSTed body may hold: fifty for each object an envelope may carry (an
/// indicator with its markings and labels holds twenty to thirty).
pub const MAX_VALUES: usize = MAX_ENVELOPE_OBJECTS * 50;

/// Why a body was not parsed.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// More values than [`MAX_VALUES`] (413).
    #[error("the body holds more than {max} JSON values")]
    TooManyValues { max: usize },
    /// Not JSON (400).
    #[error("{0}")]
    Malformed(serde_json::Error),
}

/// The body as JSON, if it is JSON of at most `max` values.
pub fn parse_within(bytes: &[u8], max: usize) -> Result<serde_json::Value, JsonError> {
    let seen = Cell::new(0);
    let mut walk = serde_json::Deserializer::from_slice(bytes);
    let walked = Count { seen: &seen, max }
        .deserialize(&mut walk)
        .and_then(|()| walk.end());
    match walked {
        Err(_) if seen.get() > max => return Err(JsonError::TooManyValues { max }),
        Err(e) => return Err(JsonError::Malformed(e)),
        Ok(()) => {}
    }
    serde_json::from_slice(bytes).map_err(JsonError::Malformed)
}

/// Counts the values it visits into `seen`, failing once they pass `max`.
#[derive(Clone, Copy)]
struct Count<'a> {
    seen: &'a Cell<usize>,
    max: usize,
}

impl Count<'_> {
    fn take<E: serde::de::Error>(self) -> Result<(), E> {
        let n = self.seen.get() + 1;
        self.seen.set(n);
        match n > self.max {
            true => Err(E::custom("too many values")),
            false => Ok(()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.take()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.take()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.take()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.take()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.take()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.take()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.take()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.take()?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_within_the_budget_parses_as_serde_json_would() {
        let body = br#"{"objects":[{"type":"indicator","labels":["a","b"],"n":1.5,"ok":true,"x":null}],"more":false}"#;
        let parsed = parse_within(body, 18).expect("eighteen values");
        assert_eq!(
            parsed,
            serde_json::from_slice::<serde_json::Value>(body).expect("JSON")
        );
    }

    #[test]
    fn a_body_past_the_budget_is_refused_for_it_and_malformed_json_for_what_it_is() {
        let body = br#"{"objects":[{"type":"indicator","labels":["a","b"],"n":1.5,"ok":true,"x":null}],"more":false}"#;
        assert!(matches!(
            parse_within(body, 17),
            Err(JsonError::TooManyValues { max: 17 })
        ));
        let zeros = format!("{{\"objects\":[{}0]}}", "0,".repeat(100_000));
        assert!(matches!(
            parse_within(zeros.as_bytes(), 50_000),
            Err(JsonError::TooManyValues { .. })
        ));
        assert!(parse_within(zeros.as_bytes(), 200_000).is_ok());
        for broken in [&b"{\"objects\":[1,2"[..], b"[1] [2]", b"", b"{\"a\":}"] {
            assert!(
                matches!(parse_within(broken, 100), Err(JsonError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_within(deep.as_bytes(), MAX_VALUES),
            Err(JsonError::Malformed(e)) if e.to_string().contains("recursion limit")
        ));
    }
}
