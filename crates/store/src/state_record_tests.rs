use super::*;

fn distribution(tlp: i32, recipients: &[&str]) -> pb::Distribution {
    pb::Distribution {
        tlp,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    }
}

/// A reduced state with every field a record keeps, and its edge values.
fn state(origin: &str, until: Option<i64>) -> pb::IndicatorState {
    pb::IndicatorState {
        indicator: None,
        assertions: vec![
            pb::OriginAssertion {
                origin: origin.into(),
                seq: u64::MAX,
                revoked: true,
                confidence: u32::MAX,
                distribution: Some(distribution(3, &["ORG-B", "ORG-C"])),
                valid_from_unix_ms: i64::MIN,
                valid_until_unix_ms: until,
                ..Default::default()
            },
            pb::OriginAssertion {
                origin: "ORG-B".into(),
                seq: 1,
                valid_from_unix_ms: 1_700_000_000_000,
                valid_until_unix_ms: Some(-1),
                ..Default::default()
            },
        ],
        sightings: vec![
            pb::OriginSightings {
                origin: "ORG-C".into(),
                distribution: Some(distribution(1, &[])),
                ..Default::default()
            },
            pb::OriginSightings {
                origin: origin.into(),
                ..Default::default()
            },
        ],
    }
}

fn written(names: &mut Names, check: u32, s: &pb::IndicatorState) -> Vec<u8> {
    let mut out = Vec::new();
    names.write(check, s, &mut out);
    out
}

#[test]
fn a_record_reads_back_as_the_state_written() {
    let mut names = Names::default();
    let cases = [
        state("ORG-A", None),
        state("ORG-A", Some(i64::MAX)),
        state("", Some(0)),
        pb::IndicatorState::default(),
    ];
    let records: Vec<Vec<u8>> = cases.iter().map(|s| written(&mut names, 7, s)).collect();
    for (s, record) in cases.iter().zip(&records) {
        assert_eq!(names.read(record, 7).expect("read"), Some(s.clone()));
    }
    // Four origins (the empty one among them), two distributions, each listed once however
    // often it was written.
    assert_eq!(names.size()[0].0, 4);
    assert_eq!(names.size()[1].0, 2);
}

#[test]
fn a_record_of_another_key_reads_as_none() {
    let mut names = Names::default();
    let record = written(&mut names, 0xdead_beef, &state("ORG-A", None));
    assert_eq!(names.read(&record, 0xdead_beee).expect("read"), None);
}

#[test]
fn a_record_names_its_origin_and_distribution_by_number() {
    let mut names = Names::default();
    let long = "ORG-WITH-A-LONG-NAME-OF-FORTY-CHARACTERS";
    let typical = pb::IndicatorState {
        assertions: vec![pb::OriginAssertion {
            origin: long.into(),
            seq: 123_456,
            confidence: 80,
            distribution: Some(distribution(1, &["ORG-WITH-A-LONG-RECIPIENT-NAME"])),
            valid_from_unix_ms: 1_764_000_000_000,
            ..Default::default()
        }],
        ..Default::default()
    };
    let record = written(&mut names, 1, &typical);
    // Check 4, count 1, origin 1, seq 3, flags 1, confidence 1, distribution 1, valid-from 6,
    // sightings 1.
    assert_eq!(record.len(), 19);
    assert_eq!(names.size()[0], (1, long.len()));
    assert_eq!(names.read(&record, 1).expect("read"), Some(typical));
}

#[test]
fn past_its_lists_limit_names_are_written_in_place_and_read_back() {
    let mut names = Names::default();
    let kept: Vec<(String, Vec<u8>)> = (0..MAX_NAMES + 10)
        .map(|i| {
            let origin = format!("ORG-{i}");
            let mut s = state(&origin, None);
            s.assertions[0].distribution = Some(distribution(2, &[origin.as_str()]));
            let record = written(&mut names, 3, &s);
            (origin, record)
        })
        .collect();
    assert_eq!(names.size()[0].0, MAX_NAMES);
    assert_eq!(names.size()[1].0, MAX_NAMES);
    for (origin, record) in kept.iter().rev().take(20) {
        let read = names.read(record, 3).expect("read").expect("its key");
        assert_eq!(&read.assertions[0].origin, origin);
        assert_eq!(
            read.assertions[0].distribution,
            Some(distribution(2, &[origin.as_str()]))
        );
    }
}

#[test]
fn past_its_bytes_limit_long_names_are_written_in_place() {
    let mut names = Names::default();
    let records: Vec<(String, Vec<u8>)> = (0..5000)
        .map(|i| {
            let origin = format!("{i:01000}");
            let record = written(&mut names, 3, &state(&origin, None));
            (origin, record)
        })
        .collect();
    let (listed, bytes) = names.size()[0];
    assert!(
        listed < 5000 && bytes <= MAX_NAME_BYTES,
        "{listed} names, {bytes} bytes"
    );
    let (origin, record) = records.last().expect("written");
    assert!(record.len() > 1000);
    let read = names.read(record, 3).expect("read").expect("its key");
    assert_eq!(&read.assertions[0].origin, origin);
}

#[test]
fn a_damaged_record_is_an_error_never_a_panic_or_a_wrong_state() {
    let mut names = Names::default();
    let s = state("ORG-A", Some(5));
    let record = written(&mut names, 9, &s);
    for len in 0..record.len() {
        assert!(
            names.read(&record[..len], 9).is_err(),
            "cut to {len} of {} bytes",
            record.len()
        );
    }
    let mut longer = record.clone();
    longer.push(0);
    assert!(names.read(&longer, 9).is_err());
    // Every byte after the check changed to every value: an error or some state, never a
    // panic (a flipped number can still be a valid record).
    for at in CHECK_BYTES..record.len() {
        for b in 0..=u8::MAX {
            let mut damaged = record.clone();
            damaged[at] = b;
            let _ = names.read(&damaged, 9);
        }
    }
    // A count no record of this length could hold reserves nothing.
    let mut huge = 9u32.to_le_bytes().to_vec();
    encode_varint(u64::MAX, &mut huge);
    assert!(names.read(&huge, 9).is_err());
    // A name number beyond the lists.
    let mut unknown = 9u32.to_le_bytes().to_vec();
    encode_varint(1, &mut unknown);
    encode_varint(1000 << 1, &mut unknown);
    unknown.extend_from_slice(&[0; 8]);
    assert!(names.read(&unknown, 9).is_err());
}

#[test]
fn zigzag_round_trips_the_edges() {
    for n in [
        0,
        1,
        -1,
        i64::MAX,
        i64::MIN,
        1_700_000_000_000,
        -1_700_000_000_000,
    ] {
        assert_eq!(unzigzag(zigzag(n)), n);
    }
    assert!(zigzag(1_700_000_000_000) < 1 << 42);
}
