//! JSON parsed within a budget of values, so its tree in memory stays a small multiple of its
//! bytes: a POSTed TAXII envelope, a file given to `intelmesh import`.
//!
//! A bound on bytes is no bound on what parsing builds: a 10 MiB body of
//! `{"objects":[0,0,0,…]}` holds 5 million values, each a 32-byte `serde_json::Value` in
//! arrays grown by doubling, about 300 MB before anything looks at the objects. So the tree is
//! built counting its values (each array or object, key, string, number, literal) as they are
//! read, and the parse stops past the budget, having built at most that many.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::fmt;

/// Why JSON was not parsed.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// More values than the budget.
    #[error("it holds more than {max} JSON values")]
    TooManyValues { max: usize },
    /// Not JSON.
    #[error("{0}")]
    Malformed(serde_json::Error),
}

/// `bytes` as JSON, if it is JSON of at most `max` values.
pub fn parse_within(bytes: &[u8], max: usize) -> Result<Value, JsonError> {
    let seen = Cell::new(0);
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let parsed = Build { seen: &seen, max }
        .deserialize(&mut json)
        .and_then(|value| json.end().map(|()| value));
    match parsed {
        Err(_) if seen.get() > max => Err(JsonError::TooManyValues { max }),
        Err(e) => Err(JsonError::Malformed(e)),
        Ok(value) => Ok(value),
    }
}

/// Builds the value it visits as `serde_json` would, counting each value into `seen` and
/// failing once they pass `max`.
#[derive(Clone, Copy)]
struct Build<'a> {
    seen: &'a Cell<usize>,
    max: usize,
}

impl Build<'_> {
    /// Counts one more value, failing past the budget.
    fn count<E: serde::de::Error>(self) -> Result<(), E> {
        let n = self.seen.get() + 1;
        self.seen.set(n);
        match n > self.max {
            true => Err(E::custom("too many values")),
            false => Ok(()),
        }
    }

    /// `value`, counted.
    fn take<E: serde::de::Error>(self, value: Value) -> Result<Value, E> {
        self.count().map(|()| value)
    }
}

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        self.take(Value::Bool(b))
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Value, E> {
        self.take(Value::Number(n.into()))
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Value, E> {
        self.take(Value::Number(n.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        self.take(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        self.take(Value::String(s.to_owned()))
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Value, E> {
        self.take(Value::String(s))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.take(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.count::<A::Error>()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.count::<A::Error>()?;
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.count::<A::Error>()?;
            let value = map.next_value_seed(self)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_VALUES: usize = 1 << 20;

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
    fn what_it_builds_is_what_serde_json_builds() {
        let bodies = [
            &br#"{"b":1,"a":[1,-2,18446744073709551615,-9223372036854775808,1.5e300,0.1,-0.0]}"#[..],
            br#"{"k":"first","k":"last","esc":"\u00e9\ud83d\ude00\n\"","empty":{},"none":[]}"#,
            br#"[null,true,false,"x",[[[]]],{"deep":{"er":[{"est":null}]}}]"#,
            br#"  "just a string"  "#,
            b"42",
        ];
        for body in bodies {
            let expected: Value = serde_json::from_slice(body).expect("JSON");
            let built = parse_within(body, MAX_VALUES).expect("within the budget");
            assert_eq!(built, expected, "{}", String::from_utf8_lossy(body));
        }
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
