//! Every way of tampering with a trail in memory, and the break the check names for it.

use super::*;
use crate::record::{seal, Call, Caller};
use crate::ValueDigest;

fn call(i: u64, digests: usize) -> Call {
    Call {
        time_ms: 1_700_000_000_000 + i as i64,
        caller: Caller {
            org: "SG-IGCI".into(),
            name: "soc".into(),
            role: "service".into(),
        },
        method: "Indicators/Lookup".into(),
        values: digests as u64,
        digests: (0..digests)
            .map(|d| ValueDigest::from_bytes((d as u128).to_be_bytes()))
            .collect(),
        code: 0,
        result: "OK".into(),
    }
}

/// Three files of three one-record calls each, and the head.
fn trail() -> (Vec<Vec<String>>, Head) {
    let mut head = Head::default();
    let mut files = vec![Vec::new(), Vec::new(), Vec::new()];
    for i in 0..9 {
        files[i as usize / 3].extend(seal(&mut head, &call(i, 1)));
    }
    (files, head)
}

/// Checks numbered files against `head`.
fn check_numbered(files: &[(u64, Vec<String>)], head: Option<Head>) -> Result<Summary, Break> {
    check_from(files, head, None)
}

/// Checks numbered files against `head`, the trail beginning where `start` says.
fn check_from(
    files: &[(u64, Vec<String>)],
    head: Option<Head>,
    start: Option<Start>,
) -> Result<Summary, Break> {
    let mut c = Checker::starting(head, start);
    for (n, lines) in files {
        c.file(*n)?;
        for (i, l) in lines.iter().enumerate() {
            c.line(i as u64 + 1, l)?;
        }
    }
    c.finish()
}

fn check(files: &[Vec<String>], head: Option<Head>) -> Result<Summary, Break> {
    let numbered: Vec<(u64, Vec<String>)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (i as u64 + 1, f.clone()))
        .collect();
    check_numbered(&numbered, head)
}

fn at(file: u64, line: u64, defect: Defect) -> Break {
    Break {
        place: Some((crate::file_name(file), line)),
        defect,
    }
}

#[test]
fn an_untouched_trail_checks_out_to_its_head() {
    let (files, head) = trail();
    let s = check(&files, Some(head)).unwrap();
    assert_eq!((s.records, s.files, s.last), (9, 3, head));
    // An empty trail with its initial head.
    assert_eq!(check(&[], Some(Head::default())).unwrap().records, 0);
    // A trail written past its head (the head lags a crash behind) is whole.
    let mut behind = head;
    let mut files = files;
    files[2].extend(seal(&mut behind, &call(9, 0)));
    assert_eq!(check(&files, Some(head)).unwrap().records, 10);
}

#[test]
fn a_large_call_spans_records_and_keeps_every_digest() {
    let mut head = Head::default();
    let lines = seal(&mut head, &call(0, 2 * crate::DIGESTS_PER_RECORD + 1));
    assert_eq!(lines.len(), 3);
    let records: Vec<Record> = lines.iter().map(|l| parse_line_ok(l)).collect();
    assert_eq!(
        records
            .iter()
            .map(|r| (r.seq, r.part, r.parts))
            .collect::<Vec<_>>(),
        vec![(1, 1, 3), (2, 2, 3), (3, 3, 3)]
    );
    let all: usize = records.iter().map(|r| r.digests.len()).sum();
    assert_eq!(all, 2 * crate::DIGESTS_PER_RECORD + 1);
    assert!(records.iter().all(|r| r.values == all as u64));
    assert_eq!(check(&[lines], Some(head)).unwrap().records, 3);
}

#[test]
fn a_sealed_line_is_the_record_it_parses_to_written_again() {
    let mut head = Head::default();
    let c = call(4, 3);
    let lines = seal(&mut head, &c);
    let r = parse_line_ok(&lines[0]);
    assert_eq!(
        (&r.org, &r.name, &r.role, &r.method, &r.result, &r.digests),
        (
            &c.caller.org,
            &c.caller.name,
            &c.caller.role,
            &c.method,
            &c.result,
            &c.digests.iter().map(ValueDigest::hex).collect::<Vec<_>>()
        )
    );
    assert_eq!((r.seq, r.time_ms, r.values, r.code), (1, c.time_ms, 3, 0));
    // Field for field and byte for byte: the record written from the call's borrowed fields
    // is the one a reader's `Record` writes.
    let body = serde_json::to_string(&r).unwrap();
    assert!(
        lines[0].starts_with(&body[..body.len() - 1]),
        "{}",
        lines[0]
    );
}

#[test]
fn calls_sealed_into_one_buffer_are_the_lines_each_seals_to_and_chain() {
    let calls = [
        call(0, 2),
        call(1, crate::DIGESTS_PER_RECORD + 1),
        call(2, 0),
    ];
    let (mut one, mut each) = (Head::default(), Head::default());
    let mut buffer = b"written before\n".to_vec();
    for c in &calls {
        crate::record::seal_into(&mut one, c, &mut buffer);
    }
    let alone: Vec<String> = calls.iter().flat_map(|c| seal(&mut each, c)).collect();
    let text = String::from_utf8(buffer).unwrap();
    let lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();
    assert!(text.starts_with("written before\n") && text.ends_with('\n'));
    assert_eq!(lines, alone);
    assert_eq!((one, lines.len()), (each, 4));
    assert_eq!(check(&[lines], Some(one)).unwrap().records, 4);
}

fn parse_line_ok(l: &str) -> Record {
    crate::parse_line(l).unwrap().record
}

#[test]
fn an_edited_line_is_named() {
    let (mut files, head) = trail();
    files[1][1] = files[1][1].replace("\"SG-IGCI\"", "\"SG-SPF\"");
    assert_eq!(
        check(&files, Some(head)),
        Err(at(2, 2, Defect::Edited { seq: 5 }))
    );
    let (mut files, head) = trail();
    files[0][2] = "{\"seq\":3}".into();
    assert!(matches!(
        check(&files, Some(head)),
        Err(Break { place: Some((ref f, 3)), defect: Defect::Unreadable(_) }) if *f == crate::file_name(1)
    ));
}

#[test]
fn an_edited_and_rehashed_line_breaks_the_next_link() {
    let (mut files, head) = trail();
    // Edit record 4 and compute its hash again, as a forger without the next record would.
    let mut r = parse_line_ok(&files[1][0]);
    r.org = "SG-SPF".into();
    let mut before = Head {
        seq: 3,
        hash: crate::parse_line(&files[0][2]).unwrap().hash,
    };
    let forged = seal(
        &mut before,
        &Call {
            time_ms: r.time_ms,
            caller: Caller {
                org: r.org,
                name: r.name,
                role: r.role,
            },
            method: r.method,
            values: r.values,
            digests: (r.digests.iter())
                .map(|d| ValueDigest::from_hex(d).expect("a digest"))
                .collect(),
            code: r.code,
            result: r.result,
        },
    );
    files[1][0] = forged[0].clone();
    assert_eq!(
        check(&files, Some(head)),
        Err(at(2, 2, Defect::Relinked { seq: 5 }))
    );
}

#[test]
fn a_removed_line_is_named() {
    let (mut files, head) = trail();
    files[1].remove(1);
    assert_eq!(
        check(&files, Some(head)),
        Err(at(2, 2, Defect::Removed { after: 4, found: 6 }))
    );
}

#[test]
fn reordered_lines_are_named() {
    let (mut files, head) = trail();
    files[2].swap(0, 1);
    assert_eq!(
        check(&files, Some(head)),
        Err(at(3, 1, Defect::Removed { after: 6, found: 8 }))
    );
    let (mut files, head) = trail();
    let repeated = files[0][1].clone();
    files[0].insert(2, repeated);
    assert_eq!(
        check(&files, Some(head)),
        Err(at(
            1,
            3,
            Defect::Reordered {
                expected: 3,
                found: 2
            }
        ))
    );
}

#[test]
fn a_missing_file_is_named() {
    let (files, head) = trail();
    let without_middle = [(1, files[0].clone()), (3, files[2].clone())];
    assert_eq!(
        check_numbered(&without_middle, Some(head)),
        Err(Break {
            place: None,
            defect: Defect::FileMissing {
                missing: crate::file_name(2),
                before: crate::file_name(1),
                found: crate::file_name(3),
            }
        })
    );
    let without_first = [(2, files[1].clone()), (3, files[2].clone())];
    assert_eq!(
        check_numbered(&without_first, Some(head)),
        Err(Break {
            place: None,
            defect: Defect::FirstFileMissing {
                found: crate::file_name(2),
                expected: crate::file_name(1),
            }
        })
    );
    // The last file gone: the trail falls short of its head.
    assert_eq!(
        check(&files[..2], Some(head)),
        Err(Break {
            place: None,
            defect: Defect::EndMissing { head: 9, last: 6 }
        })
    );
}

#[test]
fn a_cut_start_or_end_is_named() {
    let (mut files, head) = trail();
    files[0].remove(0);
    assert_eq!(
        check(&files, Some(head)),
        Err(at(
            1,
            1,
            Defect::StartMissing {
                seq: 2,
                expected: 1
            }
        ))
    );
    let (mut files, head) = trail();
    files[2].pop();
    assert_eq!(
        check(&files, Some(head)),
        Err(Break {
            place: None,
            defect: Defect::EndMissing { head: 9, last: 8 }
        })
    );
}

#[test]
fn a_missing_or_foreign_head_is_named() {
    let (files, _) = trail();
    assert_eq!(
        check(&files, None),
        Err(Break {
            place: None,
            defect: Defect::NoHead
        })
    );
    let other = Head {
        seq: 5,
        hash: [9; 32],
    };
    assert_eq!(
        check(&files, Some(other)),
        Err(at(2, 2, Defect::HeadDiffers { seq: 5 }))
    );
    let (_, head) = trail();
    assert_eq!(Head::decode(&head.encode()), Ok(head));
    assert!(Head::decode("{\"seq\":1,\"hash\":\"00\"}").is_err());
}

#[test]
fn file_names_round_trip() {
    assert_eq!(crate::file_name(7), "trail-000007.jsonl");
    assert_eq!(crate::file_number("trail-000007.jsonl"), Some(7));
    assert_eq!(crate::file_number("trail-1234567.jsonl"), Some(1_234_567));
    for other in [
        "trail-000000.jsonl",
        "trail-07.jsonl",
        "head",
        "trail-00000x.jsonl",
    ] {
        assert_eq!(crate::file_number(other), None, "{other}");
    }
}

/// The last record of `lines` as a head.
fn end_of(lines: &[String]) -> Head {
    let last = parse_line(lines.last().expect("a record")).expect("a record");
    Head {
        seq: last.record.seq,
        hash: last.hash,
    }
}

#[test]
fn a_trail_whose_first_files_were_archived_checks_from_its_start_and_the_archive_to_it() {
    let (files, head) = trail();
    let start = Start {
        file: 2,
        after: end_of(&files[0]),
    };
    let kept = [(2, files[1].clone()), (3, files[2].clone())];
    let summary = check_from(&kept, Some(head), Some(start)).expect("the kept part checks");
    assert_eq!((summary.records, summary.files), (6, 2));
    assert_eq!((summary.last, summary.start), (head, Some(start)));
    // The archive is a trail of its own, ending where the kept part starts.
    let archived = check(&files[..1], Some(start.after)).expect("the archive checks");
    assert_eq!((archived.records, archived.last), (3, start.after));
    assert_eq!(Start::decode(&start.encode()), Ok(start));
    assert!(Start::decode(&Start { file: 0, ..start }.encode()).is_err());
}

#[test]
fn a_start_that_does_not_fit_the_trail_is_named() {
    let (files, head) = trail();
    let kept = [(2, files[1].clone()), (3, files[2].clone())];
    // The file it names is not the first there.
    let later = Start {
        file: 3,
        after: end_of(&files[1]),
    };
    assert_eq!(
        check_from(&kept, Some(head), Some(later)),
        Err(Break {
            place: None,
            defect: Defect::FirstFileMissing {
                found: crate::file_name(2),
                expected: crate::file_name(3),
            }
        })
    );
    // A start after a record other than the one the first kept record links to.
    let forged = Start {
        file: 2,
        after: Head {
            hash: [7; 32],
            ..end_of(&files[0])
        },
    };
    assert_eq!(
        check_from(&kept, Some(head), Some(forged)),
        Err(at(2, 1, Defect::Relinked { seq: 4 }))
    );
    // Records of the first kept file removed as well.
    let cut = [(2, files[1][1..].to_vec()), (3, files[2].clone())];
    let start = Start {
        file: 2,
        after: end_of(&files[0]),
    };
    assert_eq!(
        check_from(&cut, Some(head), Some(start)),
        Err(at(
            2,
            1,
            Defect::StartMissing {
                seq: 5,
                expected: 4
            }
        ))
    );
}
