//! Selections read by queries: ranges of the on-disk index and its postings, paged by position,
//! kept exact when a later entry changes an indicator's tags or times.

use intelmesh_core::{IndicatorType, OrgId, Signer};
use intelmesh_proto::v1 as pb;
use intelmesh_store::{
    arrival, verify_store, Arrivals, DiskStore, IndexSource, Selection, Store, StoreConfig,
};
use intelmesh_tests::{chain, green, registry, seeded_signer, verified};

const T0: i64 = 1_700_000_000_000;

/// A member that reads what is shared with everyone.
fn reader() -> OrgId {
    OrgId::parse("NZ-POL").unwrap()
}

fn value(s: &pb::IndicatorState) -> String {
    s.indicator
        .as_ref()
        .map(|i| i.value.clone())
        .unwrap_or_default()
}

/// Every state of `selection`, read in pages of `page`, checking that positions resume exactly.
fn all_pages(store: &DiskStore, selection: &Selection, page: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let got = store
            .select(selection, &reader(), after.as_deref(), page)
            .unwrap();
        assert!(got.len() <= page);
        out.extend(got.iter().map(|(_, s)| value(s)));
        match got.last() {
            Some((position, _)) if got.len() == page => after = Some(position.clone()),
            _ => return out,
        }
    }
}

struct Two {
    au: Signer,
    br: Signer,
    store: DiskStore,
    _dir: tempfile::TempDir,
}

/// AU-AFP's domains d1..d50 and BR-PF's d1..d30; `chain` tags entry n `batch-{n/10}` and
/// issues it at T0 + n.
fn two_origins() -> Two {
    let (au, br) = (seeded_signer(1, "AU-AFP"), seeded_signer(2, "BR-PF"));
    let keys = registry(&[&au, &br]);
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    let (a, _) = chain(&au, None, 50, 10);
    let (b, _) = chain(&br, None, 30, 10);
    store.apply(verified(&keys, a)).unwrap();
    store.apply(verified(&keys, b)).unwrap();
    Two {
        au,
        br,
        store,
        _dir: dir,
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn tag_origin_and_type_selections_page_in_index_order_without_loss_or_repeat() {
    let t = two_origins();
    let batch2 = all_pages(&t.store, &Selection::Tags(vec!["batch-2".into()]), 7);
    assert_eq!(batch2.len(), 20, "d20..d29 of both origins");
    assert_eq!(batch2, sorted(batch2.clone()), "index order");
    assert!(batch2.iter().all(|v| v.starts_with("d2")));

    let two_tags = Selection::Tags(vec!["BATCH-2".into(), "batch-3".into()]);
    let both = all_pages(&t.store, &two_tags, 6);
    // AU's d20..d39 and BR's d20..d30: tags match in any case, the union has each once.
    assert_eq!(both.len(), 31);
    assert_eq!(both, sorted(both.clone()));

    let br = all_pages(&t.store, &Selection::Origins(vec!["BR-PF".into()]), 8);
    assert_eq!(br.len(), 30);
    assert!(br.iter().all(|v| v.ends_with(".br-pf.example")));

    let domain = IndicatorType::Domain.code();
    assert_eq!(
        all_pages(&t.store, &Selection::Types(vec![domain]), 9).len(),
        80
    );
    let ipv4 = IndicatorType::Ipv4.code();
    assert!(all_pages(&t.store, &Selection::Types(vec![ipv4]), 9).is_empty());
    let every = all_pages(&t.store, &Selection::All, 11);
    assert_eq!(every.len(), 80);
    assert_eq!(every, sorted(every.clone()));
    assert!(t
        .store
        .select(&Selection::All, &reader(), None, 0)
        .unwrap()
        .is_empty());
}

#[test]
fn the_time_selection_reads_changes_oldest_first() {
    let t = two_origins();
    let recent = all_pages(&t.store, &Selection::UpdatedSince(T0 + 45), 4);
    let want: Vec<String> = (45..=50).map(|n| format!("d{n}.au-afp.example")).collect();
    assert_eq!(recent, want);
    let from_28 = all_pages(&t.store, &Selection::UpdatedSince(T0 + 28), 5);
    assert_eq!(from_28.len(), 23 + 3, "AU d28..d50 and BR d28..d30");
}

#[test]
fn a_later_entry_moves_an_indicator_between_tags_and_times() {
    let t = two_origins();
    let keys = registry(&[&t.au, &t.br]);
    let head = t.store.head(t.au.org()).unwrap();
    let retag = pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: "d1.au-afp.example".into(),
            }),
            confidence: 90,
            tags: vec!["Moved".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let (entry, _) = t.au.sign_next(head, T0 + 1000, &green(), &retag);
    t.store.apply(verified(&keys, vec![entry])).unwrap();

    let batch0 = all_pages(&t.store, &Selection::Tags(vec!["batch-0".into()]), 100);
    assert!(
        !batch0.contains(&"d1.au-afp.example".to_string()),
        "{batch0:?}"
    );
    assert!(batch0.contains(&"d1.br-pf.example".to_string()));
    let moved = all_pages(&t.store, &Selection::Tags(vec!["moved".into()]), 100);
    assert_eq!(moved, ["d1.au-afp.example"]);
    let latest = all_pages(&t.store, &Selection::UpdatedSince(T0 + 51), 100);
    assert_eq!(latest, ["d1.au-afp.example"], "its time posting moved too");
    let check = verify_store(&t.store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

#[test]
fn a_forged_position_only_moves_within_the_range() {
    let t = two_origins();
    let tags = Selection::Tags(vec!["batch-1".into()]);
    for forged in [&b""[..], b"\xff\xff", b"I", b"Zzz"] {
        let got = t.store.select(&tags, &reader(), Some(forged), 100).unwrap();
        assert!(
            got.iter().all(|(_, s)| value(s).starts_with("d1")),
            "{forged:?}"
        );
    }
    let recent = Selection::UpdatedSince(T0 + 45);
    for forged in [&b"QM"[..], b"QM\0\0\0\0\0\0\0\0", b"Qm", b"A", b"\xff"] {
        let got = t
            .store
            .select(&recent, &reader(), Some(forged), 100)
            .unwrap();
        assert_eq!(
            got.len(),
            6,
            "a position before `since`, or of another kind, does not widen the range: {forged:?}"
        );
    }
    // A position an earlier build gave (`Qm`, the same time and key) resumes where it did.
    let all = t.store.select(&recent, &reader(), None, 100).unwrap();
    let (position, _) = &all[2];
    let earlier = [&b"Qm"[..], &position[2..]].concat();
    let value_list = |got: Vec<(Vec<u8>, pb::IndicatorState)>| -> Vec<String> {
        got.iter().map(|(_, s)| value(s)).collect()
    };
    assert_eq!(
        value_list(
            t.store
                .select(&recent, &reader(), Some(&earlier), 100)
                .unwrap()
        ),
        value_list(
            t.store
                .select(&recent, &reader(), Some(position), 100)
                .unwrap()
        )
    );
    assert_eq!(
        value_list(
            t.store
                .select(&recent, &reader(), Some(position), 100)
                .unwrap()
        )
        .len(),
        3
    );
}

/// The records of `selection` in arrival order, with their arrival times, read in pages of 7.
fn arrivals(store: &DiskStore, since: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let got = store
            .select(
                &Selection::ArrivedSince(since),
                &reader(),
                after.as_deref(),
                7,
            )
            .unwrap();
        for (position, state) in &got {
            let (t, _, _) = arrival::parse_position(position).expect("an arrival position");
            out.push((t, value(state)));
        }
        match got.last() {
            Some((position, _)) if got.len() == 7 => after = Some(position.clone()),
            _ => return out,
        }
    }
}

#[test]
fn records_are_read_in_the_order_they_reached_the_store_not_the_order_they_were_signed() {
    let t = two_origins();
    let all = arrivals(&t.store, i64::MIN);
    assert_eq!(all.len(), 80, "one record per indicator and origin");
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "distinct times, rising"
    );
    // BR's d1 was signed before AU's d50 but arrived after it.
    let (au, br) = all.split_at(50);
    assert!(au.iter().all(|(_, v)| v.ends_with(".au-afp.example")));
    assert!(br.iter().all(|(_, v)| v.ends_with(".br-pf.example")));

    // A later entry about AU's d1 moves that record (once) to the end.
    let keys = registry(&[&t.au, &t.br]);
    let head = t.store.head(t.au.org()).unwrap();
    let (entry, _) = t.au.sign_next(
        head,
        T0 - 5,
        &green(),
        &intelmesh_tests::upsert("AU-AFP", 1, 3),
    );
    t.store.apply(verified(&keys, vec![entry])).unwrap();
    let last = all.last().unwrap().0;
    let since_last: Vec<String> = arrivals(&t.store, last + 1)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        since_last,
        ["d1.au-afp.example"],
        "signed earlier than anything held, still after everything read"
    );
    assert_eq!(
        arrivals(&t.store, i64::MIN).len(),
        80,
        "moved, not repeated"
    );
    let d1 =
        intelmesh_core::indicator::normalize(IndicatorType::Domain, "d1.au-afp.example").unwrap();
    let state = t.store.indicator(&d1).unwrap().unwrap();
    let moved = t
        .store
        .arrival(&d1, &arrival::assertion_slot(&state.assertions[0]))
        .unwrap();
    assert!(moved.is_some_and(|m| m > last), "{moved:?}");
    let check = verify_store(&t.store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);

    // The clock resumes after the newest time when the store opens again.
    let path = t._dir.path().to_path_buf();
    let newest = arrivals(&t.store, i64::MIN).last().unwrap().0;
    drop(t.store);
    let store = DiskStore::open(StoreConfig::new(&path)).unwrap();
    let (more, _) = chain(&t.br, store.head(t.br.org()).unwrap(), 1, 3);
    store.apply(verified(&keys, more)).unwrap();
    let after = arrivals(&store, newest + 1);
    assert_eq!(after.len(), 1);
    assert!(after[0].0 > newest);
}

#[test]
fn a_store_keeps_arrival_times_only_when_told_and_stamps_every_record_when_told_again() {
    let t = two_origins();
    let keys = registry(&[&t.au, &t.br]);
    let path = t._dir.path().to_path_buf();
    drop(t.store);
    let open = |arrivals| {
        DiskStore::open(StoreConfig {
            arrivals,
            ..StoreConfig::new(&path)
        })
        .unwrap()
    };
    let dropped = open(Arrivals::NotKept);
    assert!(
        arrivals(&dropped, i64::MIN).is_empty(),
        "dropped as it opened"
    );
    let (more, _) = chain(&t.au, dropped.head(t.au.org()).unwrap(), 1, 3);
    dropped.apply(verified(&keys, more)).unwrap();
    assert!(
        arrivals(&dropped, i64::MIN).is_empty(),
        "writes stamp nothing"
    );
    let check = verify_store(&dropped, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    drop(dropped);

    let as_found = open(Arrivals::AsFound);
    assert!(
        arrivals(&as_found, i64::MIN).is_empty(),
        "a tool changes nothing"
    );
    assert_eq!(as_found.index_source(), IndexSource::OnDisk);
    drop(as_found);

    let kept = open(Arrivals::Kept);
    assert_eq!(
        kept.index_source(),
        IndexSource::Rebuilt,
        "every record stamped"
    );
    assert_eq!(arrivals(&kept, i64::MIN).len(), 81);
    let check = verify_store(&kept, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    drop(kept);
    assert_eq!(open(Arrivals::AsFound).index_source(), IndexSource::OnDisk);
}

#[test]
fn a_first_assertion_leaves_the_arrival_of_earlier_sightings_alone() {
    let t = two_origins();
    let keys = registry(&[&t.au, &t.br]);
    let value = pb::IndicatorRef {
        r#type: pb::IndicatorType::Domain as i32,
        value: "seen-first.example".into(),
    };
    let sighting = pb::Payload {
        body: Some(pb::payload::Body::Sighting(pb::Sighting {
            indicator: Some(value.clone()),
            seen_at_unix_ms: T0,
            count: 3,
        })),
        ..Default::default()
    };
    let (entry, _) = t.br.sign_next(
        t.store.head(t.br.org()).unwrap(),
        T0 + 500,
        &green(),
        &sighting,
    );
    t.store.apply(verified(&keys, vec![entry])).unwrap();
    let before_assertion = arrivals(&t.store, i64::MIN).last().unwrap().0;
    let upsert = pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(value),
            confidence: 70,
            ..Default::default()
        })),
        ..Default::default()
    };
    let (entry, _) = t.au.sign_next(
        t.store.head(t.au.org()).unwrap(),
        T0 + 600,
        &green(),
        &upsert,
    );
    t.store.apply(verified(&keys, vec![entry])).unwrap();
    let since: Vec<String> = arrivals(&t.store, before_assertion + 1)
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    // Only the assertion arrived: the sightings keep their own time, for a reader may not
    // see the assertion (a TAXII read adds them with the first assertion it sees).
    assert_eq!(since, ["seen-first.example"]);
    let sightings = (before_assertion, "seen-first.example".to_string());
    assert!(arrivals(&t.store, i64::MIN).contains(&sightings));
    let check = verify_store(&t.store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

#[test]
fn a_record_withheld_from_a_reader_is_no_candidate_of_its_selections() {
    let t = two_origins();
    let keys = registry(&[&t.au, &t.br]);
    let head = t.store.head(t.au.org()).unwrap();
    let hidden = pb::Payload {
        body: Some(pb::payload::Body::Upsert(pb::IndicatorUpsert {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: "hidden.example".into(),
            }),
            confidence: 90,
            tags: vec!["op-nightfall".into()],
            ..Default::default()
        })),
        ..Default::default()
    };
    let red = intelmesh_core::Distribution {
        tlp: intelmesh_core::Tlp::Red,
        recipients: vec![OrgId::parse("SG-IGCI").unwrap()],
    };
    let (entry, _) = t.au.sign_next(head, T0 + 1000, &red, &hidden);
    t.store.apply(verified(&keys, vec![entry])).unwrap();

    let by_tag = Selection::Tags(vec!["OP-NIGHTFALL".into()]);
    let by_origin = Selection::Origins(vec!["AU-AFP".into()]);
    let domains = Selection::Types(vec![IndicatorType::Domain.code()]);
    let read_as = |org: &str, selection: &Selection| -> Vec<String> {
        let reader = OrgId::parse(org).unwrap();
        let got = t.store.select(selection, &reader, None, 1000).unwrap();
        got.iter().map(|(_, s)| value(s)).collect()
    };
    for org in ["SG-IGCI", "AU-AFP"] {
        assert_eq!(read_as(org, &by_tag), ["hidden.example"], "{org}");
        assert!(read_as(org, &by_origin).contains(&"hidden.example".to_string()));
        assert_eq!(read_as(org, &Selection::All).len(), 81, "{org}");
        assert_eq!(read_as(org, &domains).len(), 81, "{org}");
    }
    // Withheld from NZ: no read, no place in a page, whatever it selects by.
    assert!(read_as("NZ-POL", &by_tag).is_empty());
    assert_eq!(read_as("NZ-POL", &by_origin).len(), 50);
    assert_eq!(read_as("NZ-POL", &Selection::All).len(), 80);
    assert_eq!(read_as("NZ-POL", &domains).len(), 80);
    // Nor among what changed since: its change moves nothing for NZ.
    let changed = Selection::UpdatedSince(T0 + 1000);
    assert_eq!(read_as("SG-IGCI", &changed), ["hidden.example"]);
    assert!(read_as("NZ-POL", &changed).is_empty());
    // Nor among what arrived: TAXII's collection reads by arrival.
    let arrived = Selection::ArrivedSince(T0 * 1000);
    let since_start = |org: &str| read_as(org, &Selection::ArrivedSince(0));
    assert!(since_start("SG-IGCI").contains(&"hidden.example".to_string()));
    assert!(!since_start("NZ-POL").contains(&"hidden.example".to_string()));
    assert_eq!(since_start("NZ-POL").len(), 80);
    assert!(read_as("NZ-POL", &arrived).len() <= 80);
    let check = verify_store(&t.store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

/// Stamps are consecutive within a write, so a record withheld from a reader stamped between
/// two it reads would leave a gap that counts it: a write stamps what anyone may read first
/// (CLEAR, GREEN, AMBER), then what only named readers may.
#[test]
fn a_write_stamps_what_everyone_reads_before_what_few_do() {
    use intelmesh_core::{Distribution, Tlp};
    let au = seeded_signer(1, "AU-AFP");
    let keys = registry(&[&au]);
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(StoreConfig::new(dir.path())).unwrap();
    let order = [Tlp::Red, Tlp::Amber, Tlp::Green, Tlp::Clear];
    let (mut entries, mut head) = (Vec::new(), None);
    for n in 1..=40u64 {
        let tlp = order[n as usize % order.len()];
        let d = Distribution {
            tlp,
            recipients: vec![],
        };
        let payload = intelmesh_tests::upsert("AU-AFP", n, 0);
        let (entry, next) = au.sign_next(head, T0 + n as i64, &d, &payload);
        entries.push(entry);
        head = Some(next);
    }
    store.apply(verified(&keys, entries)).unwrap();
    // AU reads all of it: the public scope and its own.
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let got = (store.select(
            &Selection::ArrivedSince(i64::MIN),
            au.org(),
            after.as_deref(),
            16,
        ))
        .unwrap();
        for (position, state) in &got {
            let (time, _, _) = arrival::parse_position(position).expect("a position");
            let tlp = state.assertions[0]
                .distribution
                .as_ref()
                .map_or(0, |d| d.tlp);
            seen.push((time, tlp));
        }
        match got.last() {
            Some((position, _)) if got.len() == 16 => after = Some(position.clone()),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 40);
    let tlps: Vec<i32> = seen.iter().map(|(_, tlp)| *tlp).collect();
    let mut in_order = tlps.clone();
    in_order.sort();
    assert_eq!(tlps, in_order, "CLEAR, GREEN, AMBER, then RED");
    let check = verify_store(&store, Some(&keys)).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}
