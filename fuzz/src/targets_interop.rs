//! Targets for the interop parsers (`intelmesh-interop`): STIX bundles and patterns, MISP
//! events, MISP warninglists. An import never yields a non-canonical indicator, and a pattern
//! the mesh writes reads back as exactly its indicator.

use intelmesh_core::Indicator;
use intelmesh_interop::{
    import_misp_str, import_stix_str, parse_pattern, parse_warninglist, pattern_of, ImportOptions,
    MispOptions, Warninglists,
};

use crate::targets::assert_canonical;

/// The mesh's pattern for an indicator parses back to that indicator alone.
fn assert_pattern_round_trip(indicator: &Indicator) {
    let pattern = pattern_of(indicator);
    match parse_pattern(&pattern) {
        Ok(back) => assert_eq!(
            back,
            vec![indicator.clone()],
            "{pattern} reads back otherwise"
        ),
        Err(e) => panic!("the mesh's own pattern {pattern} does not parse: {e}"),
    }
}

/// A STIX bundle, envelope or object list, and the text as a lone pattern.
pub fn stix(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(import) = import_stix_str(&text, &ImportOptions::default()) {
        for found in import.indicators() {
            assert_canonical(&found.indicator);
            assert_pattern_round_trip(&found.indicator);
        }
    }
    if let Ok(indicators) = parse_pattern(&text) {
        for indicator in &indicators {
            assert_canonical(indicator);
            assert_pattern_round_trip(indicator);
        }
    }
}

/// A MISP event (or a list of them, or a search response).
pub fn misp(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(events) = import_misp_str(&text, &MispOptions::default()) {
        for event in &events {
            for found in event.indicators() {
                assert_canonical(&found.indicator);
            }
        }
    }
}

/// A MISP warninglist, loaded and matched against values of every shape.
pub fn warninglist(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(list) = parse_warninglist(&text) else {
        return;
    };
    let mut lists = Warninglists::new();
    lists.add(&list);
    for probe in crate::seeds::probe_values() {
        for name in lists.matches(&probe) {
            assert!(!name.is_empty(), "a match names no list");
        }
    }
}
