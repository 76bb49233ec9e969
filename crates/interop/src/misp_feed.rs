//! `read_feed_manifest`: the event files a MISP feed's `manifest.json` names. A feed comes from
//! elsewhere, so every key is checked to be an event UUID before it becomes a file name: a key
//! such as `../../etc/passwd` names no file, it is refused with its reason.

use serde_json::Value;
use thiserror::Error;

/// Why a manifest cannot be read at all.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ManifestError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("a MISP feed manifest is a JSON object keyed by event UUID")]
    NotAnObject,
}

/// One key of a manifest: the event file it names in the feed's directory, or why it names none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestEntry {
    /// `UUID.json`: hex digits and hyphens only, so a plain file name in the feed's directory.
    Event(String),
    /// The key as given (at most 80 characters of it), which is not an event UUID.
    NotAUuid(String),
}

/// The entries of a manifest, in its key order.
pub fn read_feed_manifest(text: &str) -> Result<Vec<ManifestEntry>, ManifestError> {
    let text = crate::lists::without_bom(text);
    let value: Value =
        serde_json::from_str(text).map_err(|e| ManifestError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ManifestError::NotAnObject);
    };
    Ok(map.keys().map(String::as_str).map(entry).collect())
}

fn entry(key: &str) -> ManifestEntry {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        ManifestEntry::Event(format!("{key}.json"))
    } else {
        ManifestEntry::NotAUuid(key.chars().take(80).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_names_its_event_file_or_is_refused() {
        let text = "\u{feff}{\"5f0c2f3e-1b2a-4c3d-9e8f-0a1b2c3d4e5f\": {\"info\": \"x\"}, \
                    \"../../etc/passwd\": {}, \"\": {}, \"ABCDEF-0123\": {}}";
        let entries = read_feed_manifest(text).unwrap();
        assert_eq!(
            entries,
            [
                ManifestEntry::NotAUuid(String::new()),
                ManifestEntry::NotAUuid("../../etc/passwd".into()),
                ManifestEntry::Event("5f0c2f3e-1b2a-4c3d-9e8f-0a1b2c3d4e5f.json".into()),
                ManifestEntry::Event("ABCDEF-0123.json".into()),
            ]
        );
    }

    #[test]
    fn a_manifest_that_is_not_an_object_of_json_is_refused() {
        assert_eq!(
            read_feed_manifest("[1, 2]"),
            Err(ManifestError::NotAnObject)
        );
        assert!(matches!(
            read_feed_manifest("{\"a\":"),
            Err(ManifestError::Json(_))
        ));
    }
}
