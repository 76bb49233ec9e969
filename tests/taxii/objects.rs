//! TAXII reads of sightings (one object per reporter, versions as counts grow), objects by id in pages, and the identities objects name.

use super::*;

/// Sightings show only beside an assertion the reader sees, so they are added with the first
/// such assertion: a reader polling with `added_after` gets them then, and their date says
/// nothing of an earlier assertion it may not read (which, as the value's first, moved them).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sightings_are_added_with_the_first_assertion_the_reader_sees() {
    let net = net().await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    // AU's node serves a service of BR's too (its service CA certifies it): it reads as BR.
    let certs = intelmesh_tests::api::service_cert(
        &net.fed.nodes[&au],
        &br,
        "soc",
        intelmesh_node::pki::Validity::default(),
    );
    let as_br = |extra: &[&str]| {
        let mut a = vec![
            "--cert".to_string(),
            certs.path().join("soc.pem").display().to_string(),
            "--key".to_string(),
            certs.path().join("soc.key").display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let value = "sighted.example";
    let mut at_br = net.client(&br).await;
    at_br
        .report_sighting(intelmesh_tests::api::sighting(value, 3))
        .await
        .expect("BR reports a sighting");
    net.wait_converged(PATIENCE).await.expect("converged");
    // AU's first assertion of the value is RED to no one (BR does not read it), the next GREEN.
    let mut at_au = net.client(&au).await;
    let mut red = upsert(Ty::Domain, value, Tlp::Red, &["op"]);
    red.distribution = dist(Tlp::Red, &[]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before_red = intelmesh_interop::time::format_timestamp(intelmesh_core::now_unix_ms());
    submit(&mut at_au, vec![red]).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between =
        intelmesh_interop::time::format_timestamp_micros(intelmesh_core::now_unix_ms() * 1000);
    tokio::time::sleep(Duration::from_millis(20)).await;
    submit(
        &mut at_au,
        vec![upsert(Ty::Domain, value, Tlp::Green, &["op"])],
    )
    .await;

    let g = gateway(&net, &au).await;
    let mut args = vec!["read".to_string(), g.collection.clone()];
    args.extend(as_br(&["--added-after", &between]));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let read = run_tool(&g, &args, &(String::new(), String::new())).await;
    let types: Vec<&str> = read["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["type"].as_str().unwrap_or_default())
        .collect();
    assert!(types.contains(&"indicator"), "{read}");
    assert!(
        types.contains(&"sighting"),
        "the sighting comes with the GREEN assertion: {read}"
    );
    // Its version is its own: nothing in it dates the RED assertion BR may not read.
    let sighting = (read["objects"].as_array().expect("objects").iter())
        .find(|o| o["type"] == "sighting")
        .expect("a sighting");
    let modified = sighting["modified"].as_str().expect("modified");
    assert!(
        modified < before_red.as_str(),
        "{modified} before {before_red}"
    );
    // Its date is that assertion's, after the hidden RED one.
    let last = read["date_added_last"]
        .as_str()
        .expect("a date-added header");
    assert!(last > between.as_str(), "{last} after {between}");
}

/// A reporter's sightings at one TLP are one object, though its records for several recipient
/// sets are kept apart: one id never stands for two objects in a collection.
/// `value` asserted GREEN by `org` (tagged "x").
async fn asserted_green(net: &TestNet, org: &intelmesh_core::OrgId, value: &str) {
    let mut c = net.client(org).await;
    submit(&mut c, vec![upsert(Ty::Domain, value, Tlp::Green, &["x"])]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reporters_sightings_for_several_audiences_are_one_object() {
    let net = net().await;
    let (au, br, hub) = (org("AU-AFP"), org("BR-PF"), org("SG-IGCI"));
    let value = "seen-twice.example";
    asserted_green(&net, &au, value).await;
    let mut at_br = net.client(&br).await;
    for (count, recipients) in [(2, vec!["AU-AFP"]), (3, vec!["AU-AFP", "SG-IGCI"])] {
        let mut s = intelmesh_tests::api::sighting(value, count);
        s.distribution = dist(Tlp::Red, &recipients);
        at_br
            .report_sighting(s)
            .await
            .expect("BR reports a sighting");
    }
    net.wait_converged(PATIENCE).await.expect("converged");
    let g = gateway(&net, &au).await;
    let read = run_tool(&g, &["read", &g.collection, "--limit", "1"], &g.reader).await;
    let objects = read["objects"].as_array().expect("objects");
    let sightings: Vec<&Value> = objects.iter().filter(|o| o["type"] == "sighting").collect();
    assert_eq!(sightings.len(), 1, "{read}");
    assert_eq!(sightings[0]["count"], 5, "{read}");
    let ids: std::collections::BTreeSet<&str> =
        objects.iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(ids.len(), objects.len(), "an id twice: {read}");
    // The hub reads only the second record: its own count.
    let g = gateway(&net, &hub).await;
    let read = run_tool(&g, &["read", &g.collection], &g.reader).await;
    let at_hub: Vec<&Value> = read["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["type"] == "sighting")
        .collect();
    assert_eq!(at_hub.len(), 1, "{read}");
    assert_eq!(at_hub[0]["count"], 3, "{read}");
}

/// `match[id]` answers page by `limit` as every read does, each page with `more` and a `next`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_matched_by_id_come_in_pages_of_the_limit() {
    let net = net().await;
    let au = org("AU-AFP");
    let values: Vec<String> = (0..5).map(|i| format!("by-id-{i}.example")).collect();
    let mut c = net.client(&au).await;
    let subs = values
        .iter()
        .map(|v| upsert(Ty::Domain, v, Tlp::Green, &["x"]))
        .collect();
    submit(&mut c, subs).await;
    let g = gateway(&net, &au).await;
    let all = run_tool(&g, &["read", &g.collection, "--limit", "100"], &g.reader).await;
    let ids: Vec<&str> = all["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 5, "{all}");
    let wanted = ids.join(",");
    let paged = run_tool(
        &g,
        &["read", &g.collection, "--limit", "2", "--match-id", &wanted],
        &g.reader,
    )
    .await;
    assert_eq!(paged["pages"], 3, "2 + 2 + 1: {paged}");
    let got: Vec<&str> = paged["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(got, ids, "every object once, in the order asked");
}

/// `match[type]=identity` lists the identity of every origin whose records the reader sees
/// (what `created_by_ref` names), in pages of the limit; none of an origin it sees nothing of.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_identities_objects_name_are_listed_by_type() {
    let net = net().await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let mut c = net.client(&au).await;
    submit(
        &mut c,
        vec![upsert(Ty::Domain, "listed.example", Tlp::Green, &["x"])],
    )
    .await;
    // BR's only record is RED to itself: no reader at AU sees it.
    let mut c = net.client(&br).await;
    let mut red = upsert(Ty::Domain, "hidden.example", Tlp::Red, &["x"]);
    red.distribution = dist(Tlp::Red, &[]);
    submit(&mut c, vec![red]).await;
    net.wait_converged(PATIENCE).await.expect("converged");
    let g = gateway(&net, &au).await;
    let read = run_tool(
        &g,
        &[
            "read",
            &g.collection,
            "--limit",
            "1",
            "--match-type",
            "identity",
        ],
        &g.reader,
    )
    .await;
    let names: Vec<&str> = read["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            assert_eq!(o["type"], "identity", "{o}");
            o["name"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(names, ["AU-AFP"], "{read}");
    // Beside other types on a page by date added, identities would be missing silently.
    let mixed = run_tool(
        &g,
        &["read", &g.collection, "--match-type", "identity,indicator"],
        &g.reader,
    )
    .await;
    assert_eq!(mixed["status"], 400, "{mixed}");
    assert!(
        mixed["body"]
            .as_str()
            .is_some_and(|b| b.contains("identity is read in a request of its own")),
        "{mixed}"
    );
    // Every indicator's creator is among them.
    let all = run_tool(&g, &["read", &g.collection], &g.reader).await;
    let listed: Vec<&Value> = read["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| &o["id"])
        .collect();
    for o in all["objects"].as_array().expect("objects") {
        assert!(
            listed.contains(&&o["created_by_ref"]),
            "{o} not listed in {read}"
        );
    }
}

/// A report of an earlier sighting adds to a sighting's count and leaves its last sighting
/// where it was: the object still gets a new version, so a client keeping one copy per
/// version takes the new count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sighting_whose_count_grows_gets_a_new_version() {
    let net = net().await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    let value = "counted.example";
    asserted_green(&net, &au, value).await;
    let mut at_br = net.client(&br).await;
    let now = intelmesh_core::now_unix_ms();
    let report = |count: u64, seen_at: i64| {
        let mut s = intelmesh_tests::api::sighting(value, count);
        s.seen_at_unix_ms = seen_at;
        s
    };
    at_br
        .report_sighting(report(2, now - 60_000))
        .await
        .expect("first report");
    net.wait_converged(PATIENCE).await.expect("converged");
    let g = gateway(&net, &au).await;
    let sighting = |read: &Value| -> Value {
        (read["objects"].as_array().expect("objects").iter())
            .find(|o| o["type"] == "sighting")
            .cloned()
            .expect("a sighting")
    };
    let before = sighting(&run_tool(&g, &["read", &g.collection], &g.reader).await);
    // A report of a sighting an hour earlier: the last sighting stays.
    at_br
        .report_sighting(report(3, now - 3_600_000))
        .await
        .expect("second report");
    net.wait_converged(PATIENCE).await.expect("converged");
    let after = sighting(&run_tool(&g, &["read", &g.collection], &g.reader).await);
    assert_eq!(after["count"], 5, "{after}");
    assert_eq!(after["last_seen"], before["last_seen"]);
    assert!(
        after["modified"].as_str() > before["modified"].as_str(),
        "{before} then {after}"
    );
}
