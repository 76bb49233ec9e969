use super::*;

fn dist(tlp: pb::Tlp, recipients: &[&str]) -> Option<pb::Distribution> {
    Some(pb::Distribution {
        tlp: tlp as i32,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    })
}

fn state(tags: &[&str], origin: &str, issued: i64, sighted: Option<i64>) -> pb::IndicatorState {
    pb::IndicatorState {
        assertions: vec![pb::OriginAssertion {
            origin: origin.into(),
            issued_at_unix_ms: issued,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            distribution: dist(pb::Tlp::Green, &[]),
            ..Default::default()
        }],
        sightings: sighted
            .map(|t| pb::OriginSightings {
                origin: "SG".into(),
                last_seen_unix_ms: t,
                distribution: dist(pb::Tlp::Green, &[]),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// How many indicators of `p` the selection's ranges for `reader` find.
fn found(p: &BTreeSet<Vec<u8>>, selection: &Selection, reader: &str) -> usize {
    let ranges = ranges(selection, reader);
    let found: BTreeSet<&[u8]> = p
        .iter()
        .filter_map(|k| {
            let r = ranges.iter().find(|r| k.starts_with(&r.prefix))?;
            Some(&k[r.skip..])
        })
        .collect();
    found.len()
}

#[test]
fn a_state_posts_its_tags_origins_and_latest_time() {
    let key = b"I\x04evil.example";
    let p = postings_of(key, &state(&["C2", "c2", "Phishing"], "AU", 10, Some(20)));
    assert_eq!(
        found(&p, &Selection::Tags(vec!["c2".into()]), "NZ"),
        1,
        "C2 and c2 are one tag"
    );
    assert_eq!(
        p.len(),
        2 + 2 + 1 + 1 + 2,
        "two tags, two origins, the whole index, one time, two object ids"
    );
    let id = object_id::assertion_uuid("AU", intelmesh_core::IndicatorType::Domain, "evil.example");
    assert_eq!(found(&p, &Selection::ObjectId(id), "NZ"), 1);
    let time = p
        .iter()
        .find(|k| k.starts_with(&[keys::POSTING, TIME]))
        .unwrap();
    let public = time_scope(PUBLIC);
    assert_eq!(&time[public.len()..public.len() + 8], &time_start(20)[2..]);
    assert_eq!(&time[public.len() + 8..], key);
    assert!(p.iter().all(|k| index_key_of(k) == Some(&key[..])));
    assert_eq!(index_key_of(b"QT\xff"), None);
    assert_eq!(index_key_of(b"Ix"), None);
}

#[test]
fn a_withheld_record_is_a_candidate_only_for_its_readers() {
    let key = b"I\x04hidden.example";
    let mut s = state(&["op-nightfall"], "AU", 10, None);
    s.assertions[0].distribution = dist(pb::Tlp::Red, &["SG", "SG"]);
    s.sightings.push(pb::OriginSightings {
        origin: "NZ".into(),
        last_seen_unix_ms: 11,
        distribution: dist(pb::Tlp::AmberStrict, &["FR"]),
        ..Default::default()
    });
    let p = postings_of(key, &s);
    let tag = Selection::Tags(vec!["OP-Nightfall".into()]);
    let au = Selection::Origins(vec!["AU".into()]);
    let domains = Selection::Types(vec![key[1]]);
    for (reader, tags, origins, all) in [
        ("AU", 1, 1, 1),
        ("SG", 1, 1, 1),
        ("NZ", 0, 0, 1),
        ("FR", 0, 0, 1),
        ("DE", 0, 0, 0),
    ] {
        assert_eq!(found(&p, &tag, reader), tags, "{reader}");
        assert_eq!(found(&p, &au, reader), origins, "{reader}");
        assert_eq!(found(&p, &Selection::All, reader), all, "{reader}");
        assert_eq!(found(&p, &domains, reader), all, "{reader}");
    }
    // The latest time per scope: AU's RED record at 10 is none of FR's, whose is 11.
    let time_of = |scope: &str| {
        let prefix = time_scope(scope);
        p.iter()
            .find_map(|k| k.strip_prefix(prefix.as_slice()))
            .map(|rest| rest[..8].to_vec())
    };
    assert_eq!(time_of("AU"), Some(ordered(10).to_be_bytes().to_vec()));
    assert_eq!(time_of("FR"), Some(ordered(11).to_be_bytes().to_vec()));
    assert_eq!(time_of("DE"), None);
    assert_eq!(time_of(PUBLIC), None);
    // No reader but those: a malformed distribution posts in no scope.
    s.assertions[0].distribution = dist(pb::Tlp::Red, &["not an org"]);
    s.sightings.clear();
    let p = postings_of(key, &s);
    assert_eq!(found(&p, &tag, "AU"), 0);
    assert!(p.iter().all(|k| index_key_of(k) == Some(&key[..])));
}

#[test]
fn a_record_of_many_readers_posts_a_bounded_number_of_tags() {
    let tags: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let readers: Vec<String> = (0..100).map(|i| format!("ORG{i}")).collect();
    let readers: Vec<&str> = readers.iter().map(String::as_str).collect();
    let mut s = state(&tags, "AU", 1, None);
    s.assertions[0].distribution = dist(pb::Tlp::AmberStrict, &readers);
    let p = postings_of(b"I\x04x.example", &s);
    let posted = p
        .iter()
        .filter(|k| k.starts_with(&[keys::POSTING, TAG]))
        .count();
    assert!(posted <= MAX_SCOPED_TAGS, "{posted}");
    // Every reader finds it by its first tags, by origin and in the whole index.
    let first = MAX_SCOPED_TAGS / 101;
    for reader in ["AU", "ORG0", "ORG99"] {
        assert_eq!(found(&p, &Selection::All, reader), 1);
        assert_eq!(found(&p, &Selection::Origins(vec!["AU".into()]), reader), 1);
        let tag = |i: usize| Selection::Tags(vec![format!("t{i}")]);
        assert_eq!(found(&p, &tag(first - 1), reader), 1, "{reader}");
        assert_eq!(found(&p, &tag(first), reader), 0, "{reader}");
    }
    // A record of a few readers is found by every tag.
    s.assertions[0].distribution = dist(pb::Tlp::AmberStrict, &readers[..7]);
    let p = postings_of(b"I\x04x.example", &s);
    assert_eq!(found(&p, &Selection::Tags(vec!["t63".into()]), "ORG6"), 1);
}

#[test]
fn a_posting_key_stays_short_whatever_the_tag() {
    // Lowercasing can lengthen text (`Ⱥ` is 2 bytes, `ⱥ` 3); no key may pass the engine's
    // limit, which panics the writer.
    let long_key = [b"I\x05".as_slice(), &[b'a'; 2048]].concat();
    let tag = "Ⱥ".repeat(40_000);
    let p = postings_of(&long_key, &state(&[&tag], "AU", 1, None));
    assert!(p
        .iter()
        .all(|k| k.len() < 6 + MAX_POSTED_NAME + long_key.len() + 1));
    assert_eq!(found(&p, &Selection::Tags(vec![tag]), "NZ"), 1);
}

#[test]
fn an_assertion_posts_its_first_tags_only() {
    let tags: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let p = postings_of(b"I\x04x.example", &state(&tags, "AU", 1, None));
    let posted = p
        .iter()
        .filter(|k| k.starts_with(&[keys::POSTING, TAG]))
        .count();
    assert_eq!(posted, intelmesh_core::entry::MAX_TAGS);
}

#[test]
fn a_tag_is_never_read_as_the_prefix_of_another() {
    let p = postings_of(b"I\x04x.example", &state(&["apt"], "AU", 1, None));
    assert_eq!(found(&p, &Selection::Tags(vec!["ap".into()]), "NZ"), 0);
}

#[test]
fn a_store_of_an_earlier_build_gets_its_postings_scoped_once() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::kv::Kv::open(dir.path(), 1 << 20).unwrap();
    let key = b"I\x04x.example";
    let s = state(&["c2"], "AU", 1, None);
    let mut old = vec![keys::POSTING, b't', 0, 2];
    old.extend_from_slice(b"c2");
    old.extend_from_slice(key);
    let mut batch = crate::kv::Batch::default();
    batch.insert(key.to_vec(), s.encode_to_vec());
    batch.insert(old.clone(), Vec::new());
    db.apply_batch(batch).unwrap();
    migrate(&db).unwrap();
    assert!(
        db.get(&old).unwrap().is_none(),
        "the unscoped posting is gone"
    );
    let posted = |kind: u8| db.scan_prefix([keys::POSTING, kind]).keys().count();
    assert_eq!(
        (posted(TAG), posted(ORIGIN), posted(READABLE), posted(TIME)),
        (1, 1, 1, 1)
    );
    // Marked: a second open changes nothing, unless an earlier build ran on the store
    // since (a rollback) and wrote unscoped postings.
    let scoped_before = db.scan_prefix([keys::POSTING]).keys().count();
    migrate(&db).unwrap();
    assert_eq!(
        db.scan_prefix([keys::POSTING]).keys().count(),
        scoped_before
    );
    // The rollback left a scoped posting stale (a tag its state no longer has).
    let stale = scoped(TAG, PUBLIC, Some("gone"), key);
    db.insert(old.clone(), Vec::new()).unwrap();
    db.insert(stale.clone(), Vec::new()).unwrap();
    migrate(&db).unwrap();
    assert!(
        db.get(&old).unwrap().is_none(),
        "migrated again after a rollback"
    );
    assert!(db.get(&stale).unwrap().is_none(), "and scoped anew");
    assert_eq!(
        db.scan_prefix([keys::POSTING]).keys().count(),
        scoped_before
    );
}

#[test]
fn arrivals_of_an_earlier_build_are_posted_in_their_scopes_at_their_times() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::kv::Kv::open(dir.path(), 1 << 20).unwrap();
    let key = b"I\x04x.example";
    let mut s = state(&["c2"], "AU", 1, None);
    s.assertions[0].distribution = dist(pb::Tlp::Red, &["SG"]);
    let slot = crate::arrival::assertion_slot(&s.assertions[0]);
    let time: i64 = 1_700_000_000_000_000;
    let mut unscoped = vec![keys::ARRIVAL];
    unscoped.extend_from_slice(&ordered(time).to_be_bytes());
    unscoped.extend_from_slice(&slot);
    unscoped.extend_from_slice(key);
    let mut batch = crate::kv::Batch::default();
    batch.insert(key.to_vec(), s.encode_to_vec());
    batch.insert(crate::arrival::record_key(&slot, key), time.to_be_bytes());
    batch.insert(unscoped.clone(), Vec::new());
    batch.insert(keys::ARRIVALS_KEPT, Vec::new());
    db.apply_batch(batch).unwrap();
    migrate(&db).unwrap();
    assert!(db.get(&unscoped).unwrap().is_none());
    let clock = db
        .get(keys::ARRIVAL_CLOCK)
        .unwrap()
        .expect("the clock kept");
    assert_eq!(crate::arrival::decode_time(&clock).unwrap(), time);
    for (reader, found) in [("AU", true), ("SG", true), ("NZ", false)] {
        let prefix = crate::arrival::scope_prefix(reader);
        let at: Vec<_> = (db.scan_prefix(&prefix).keys())
            .map(|k| {
                let k = k.unwrap();
                crate::arrival::position_of(&prefix, &k)
                    .and_then(|p| crate::arrival::parse_position(&p).map(|(t, s, _)| (t, s)))
            })
            .collect();
        let want = if found {
            vec![Some((time, slot))]
        } else {
            vec![]
        };
        assert_eq!(at, want, "{reader}");
    }
    // An arrival posting an earlier build wrote since (a rollback) is reposted too.
    db.insert(unscoped.clone(), Vec::new()).unwrap();
    migrate(&db).unwrap();
    assert!(db.get(&unscoped).unwrap().is_none());
}

#[test]
fn times_sort_as_numbers_including_negative_ones() {
    let ts = [-5i64, 0, 7, i64::MAX, i64::MIN];
    let mut keys: Vec<_> = ts.iter().map(|&t| time_start(t)).collect();
    keys.sort();
    let mut sorted = ts.to_vec();
    sorted.sort();
    assert_eq!(
        keys,
        sorted.iter().map(|&t| time_start(t)).collect::<Vec<_>>()
    );
}
