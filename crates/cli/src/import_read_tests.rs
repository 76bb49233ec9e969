use super::*;

#[test]
fn bytes_that_are_no_utf8_are_read_as_spaces() {
    // As corpus/lists/unit42 has them: a Mac Roman and a Latin-1 no-break space after the
    // value.
    let csv = b"abastostelano.com\xCA,2018\n022672d9ab6a6b5d8a4e5a5c4e3d2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0\xA0\n";
    let text = text_of(csv);
    let r = intelmesh_interop::lists::read_csv(&text);
    let values: Vec<&str> = r.found.iter().map(|f| f.indicator.value()).collect();
    assert_eq!(
        values,
        [
            "abastostelano.com",
            "022672d9ab6a6b5d8a4e5a5c4e3d2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0"
        ]
    );
    // Inside a value, the byte splits it: no half is taken for the value.
    assert_eq!(text_of(b"evil\xE9.com"), "evil .com");
    assert!(matches!(
        text_of(b"plain"),
        std::borrow::Cow::Borrowed("plain")
    ));
}

#[test]
fn formats_are_told_apart_by_shape() {
    let p = Path::new("x.json");
    let stix = r#"{"type":"bundle","id":"bundle--1","objects":[]}"#;
    assert_eq!(detect_format(p, stix).unwrap(), Format::Stix);
    assert_eq!(
        detect_format(p, r#"{"Event":{"info":"x"}}"#).unwrap(),
        Format::Misp
    );
    assert_eq!(
        detect_format(p, r#"{"response":[]}"#).unwrap(),
        Format::Misp
    );
    let err = detect_format(p, "{\"Event\": ").unwrap_err().to_string();
    assert!(err.contains("not valid JSON"), "{err}");
    assert!(detect_format(p, r#"{"a":1}"#)
        .unwrap_err()
        .to_string()
        .contains("--format"));
    assert_eq!(
        detect_format(Path::new("l.txt"), "evil[.]example\n").unwrap(),
        Format::Plain
    );
    assert_eq!(
        detect_format(Path::new("l.csv"), "a,b\n").unwrap(),
        Format::Csv
    );
}

#[test]
fn a_misp_file_of_many_small_attributes_carries_a_bounded_weight_of_descriptions() {
    // Each carries the `info` clipped: its bytes and the mark of the cut.
    let fit = MAX_DESCRIBED_BYTES / (MAX_DESCRIPTION_BYTES + '…'.len_utf8());
    let attributes: Vec<Value> = (0..fit + 10)
        .map(|i| serde_json::json!({"type": "domain", "value": format!("d{i}.example"), "to_ids": true}))
        .collect();
    let info = "i".repeat(10 * MAX_DESCRIPTION_BYTES);
    let event = serde_json::json!({"Event": {"info": info, "Attribute": attributes}});
    let r = read_misp(&event, Tlp::Green, "", &mut MispSpent::default()).unwrap();
    assert_eq!(r.candidates.len(), fit);
    assert!(r.candidates[0].description.len() <= MAX_DESCRIPTION_BYTES + 3);
    assert_eq!(r.rejected.len(), 10);
    assert!(r.rejected[0].reason.contains("bytes of event descriptions"));
}

/// Millions of objects that are no indicators (or fail) cost a count each past the first
/// thousand, not a record with its example.
#[test]
fn objects_left_out_past_a_thousand_are_counted_by_reason() {
    let objects: Vec<Value> = (0..MAX_LEFT_KEPT + 500)
        .map(|i| serde_json::json!({"type": "relationship", "id": format!("relationship--{i}")}))
        .chain(
            (0..MAX_LEFT_KEPT + 7)
                .map(|i| serde_json::json!({"type": "indicator", "id": format!("indicator--{i}")})),
        )
        .collect();
    let r = read_stix(&Value::Array(objects), Tlp::Green).unwrap();
    assert_eq!(r.skipped.len(), MAX_LEFT_KEPT);
    assert_eq!(r.skipped_beyond.values().sum::<usize>(), 500);
    assert_eq!(r.rejected.len(), MAX_LEFT_KEPT);
    assert_eq!(r.rejected_beyond.values().sum::<usize>(), 7);
}

/// A file is parsed within a budget of values (empty objects by the million would each be
/// built in memory), and says so when past it; malformed JSON says that instead.
#[test]
fn json_past_its_budget_of_values_is_refused_saying_so() {
    let empties = format!("[{}{{}}]", "{},".repeat(999));
    assert!(json_within(&empties, 1_001).is_ok());
    let refused = json_within(&empties, 1_000).unwrap_err();
    assert!(
        refused.contains("more than 1000 JSON values: split it"),
        "{refused}"
    );
    let broken = json_within("[{}", 10).unwrap_err();
    assert!(broken.starts_with("not valid JSON"), "{broken}");
}

#[test]
fn plain_lines_are_refanged_and_bad_ones_rejected_with_a_line() {
    let r = read_plain(
        Path::new("l.txt"),
        "# c\nevil[.]example\nhxxp://bad[.]example/x # c2\nnot a value\n\
         E3BC3689F01FD431CD2ED368AE91ECEAA7C465C2781FA7B7DC2EC9143A404F79;CERT-UA note x.exe\n",
    );
    let values: Vec<&str> = r.candidates.iter().map(|c| c.indicator.value()).collect();
    assert_eq!(
        values,
        [
            "evil.example",
            "http://bad.example/x",
            "e3bc3689f01fd431cd2ed368ae91eceaa7c465c2781fa7b7dc2ec9143a404f79"
        ]
    );
    assert_eq!(r.rejected.len(), 1);
    assert!(
        r.rejected[0].example.starts_with("l.txt:4"),
        "{:?}",
        r.rejected
    );
}

#[test]
fn csv_cells_that_are_indicators_count_and_the_header_is_no_error() {
    let r = read_csv(
        Path::new("x.csv"),
        "domain,note\nevil.example,\"c2, seen\"\nno,thing\n",
    );
    assert_eq!(r.candidates.len(), 1);
    assert_eq!(r.rejected.len(), 1);
}
