//! Targets for the interop parsers (`intelmesh-interop`): STIX bundles and patterns, MISP
//! events, MISP warninglists, CSV and plain lists. An import never yields a non-canonical
//! indicator, a pattern the mesh writes reads back as exactly its indicator, and every line of a
//! list is accounted for.

use std::collections::BTreeSet;

use intelmesh_core::indicator::detect;
use intelmesh_core::Indicator;
use intelmesh_interop::lists::{
    csv_cells, csv_rows, read_csv, read_plain, strip_comment, TextRead,
};
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

/// A MISP feed's `manifest.json`: every event file it yields is a plain file name in the feed's
/// directory (no separator, no `..`, not hidden), named after its key.
pub fn misp_manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(entries) = intelmesh_interop::read_feed_manifest(&text) else {
        return;
    };
    for entry in entries {
        if let intelmesh_interop::ManifestEntry::Event(file) = entry {
            let stem = file.strip_suffix(".json");
            assert!(
                stem.is_some_and(|s| !s.is_empty() && !s.starts_with('.')),
                "{file:?} is not UUID.json"
            );
            assert!(
                std::path::Path::new(&file).components().count() == 1
                    && !file.contains(['/', '\\'])
                    && !file.contains(".."),
                "{file:?} leaves the feed's directory"
            );
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

/// The lines of `text` as the list readers number them (a leading BOM is no part of line 1).
fn numbered(text: &str) -> Vec<&str> {
    text.strip_prefix('\u{feff}')
        .unwrap_or(text)
        .lines()
        .collect()
}

/// Every line number `read` names (found, left out, header) is one of `wanted`, a line is left
/// out at most once and never also gives an indicator, and every wanted line is named (or
/// counted among those left out past the ones kept whole).
fn assert_lines_accounted(read: &TextRead, wanted: &BTreeSet<usize>) {
    assert_eq!(read.lines, wanted.len(), "lines read miscounted");
    let found: BTreeSet<usize> = read.found.iter().map(|f| f.line).collect();
    let left: BTreeSet<usize> = read.left.iter().map(|l| l.line).collect();
    assert_eq!(left.len(), read.left.len(), "a line left out twice");
    assert!(found.is_disjoint(&left), "a line both found and left out");
    let mut named: BTreeSet<usize> = found.union(&left).copied().collect();
    if let Some(h) = read.header {
        assert_eq!(
            Some(&h),
            wanted.first(),
            "only the first row after comments is a header"
        );
        assert!(
            !named.contains(&h),
            "the header gave an indicator or was left out"
        );
        named.insert(h);
    }
    let beyond: usize = read.left_beyond.values().sum();
    if beyond == 0 {
        assert_eq!(&named, wanted, "lines read and lines accounted for differ");
    } else {
        assert!(named.is_subset(wanted), "a line named that was not read");
        assert_eq!(
            named.len() + beyond,
            wanted.len(),
            "lines left out miscounted"
        );
    }
}

/// A plain list or prose report: every non-blank, non-comment line gives canonical indicators
/// (the whole value, its first word, or the values a prose line names) or is left out with the
/// value it read.
pub fn text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let read = read_plain(&text);
    let lines = numbered(&text);
    let wanted: BTreeSet<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !strip_comment(l).trim().is_empty())
        .map(|(n, _)| n + 1)
        .collect();
    let found_lines: BTreeSet<usize> = read.found.iter().map(|f| f.line).collect();
    assert_eq!(found_lines.len() + read.left_count(), read.lines);
    assert_eq!(read.header, None, "a plain list has no header");
    assert_lines_accounted(&read, &wanted);
    for found in &read.found {
        assert_canonical(&found.indicator);
        assert_eq!(found.column, None, "a plain list has no columns");
    }
    for left in &read.left {
        let line = lines.get(left.line - 1).copied().unwrap_or_default();
        assert_eq!(
            left.text,
            strip_comment(line).trim(),
            "left out not as read"
        );
    }
}

/// CSV rows: every non-blank, non-`#` row gives canonical indicators, each the detected value
/// of the cell it names, or is left out, or is the header (the first row after comments).
pub fn csv(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let read = read_csv(&text);
    // Rows by the line they start on: a quoted cell may span lines.
    let rows: std::collections::BTreeMap<usize, String> =
        csv_rows(text.strip_prefix('\u{feff}').unwrap_or(&text))
            .map(|(n, row)| (n + 1, row.into_owned()))
            .collect();
    let wanted: BTreeSet<usize> = rows
        .iter()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, _)| *n)
        .collect();
    assert_lines_accounted(&read, &wanted);
    for found in &read.found {
        assert_canonical(&found.indicator);
        let line = rows.get(&found.line).map_or("", String::as_str);
        let cells = csv_cells(line);
        let cell = found
            .column
            .and_then(|c| cells.get(c.wrapping_sub(1)))
            .unwrap_or_else(|| panic!("line {} has no cell {:?}", found.line, found.column));
        assert_eq!(
            detect(cell.trim()).as_ref(),
            Ok(&found.indicator),
            "the indicator is not its cell's"
        );
    }
    for left in &read.left {
        assert_eq!(
            Some(&left.text),
            rows.get(&left.line),
            "left out not as read"
        );
    }
}
