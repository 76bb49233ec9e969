//! The audit trail of API access on a real node (mutual TLS on loopback, real clients, the
//! TAXII gateway through Python as third-party software calls it): every call appears with its
//! caller, method, number of values and result, a value is found by any spelling through the
//! node's key, and every way of tampering with the files is named by the chain check.

use std::path::{Path, PathBuf};

use intelmesh_audit::{Break, Defect, Record};
use intelmesh_node::audit::{dir_of, trail};
use intelmesh_node::pki::{Ca, Validity};
use intelmesh_node::provision::{free_loopback_addr, loopback_specs, star_links};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::admin_client::AdminClient;
use intelmesh_proto::v1::node_status_client::NodeStatusClient;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_tests::api::{client_with, submit, submit_refused, upsert};
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::taxii::{gateway, run_tool};

const AGENCY: &str = "AU-AFP";

/// A hub and an agency whose trail files hold `max_file_bytes` each; the agency serves TAXII.
async fn net(max_file_bytes: u64) -> TestNet {
    let mut specs = loopback_specs("SG-IGCI", &[AGENCY]).expect("ports");
    specs[1].taxii = Some(free_loopback_addr().expect("port"));
    let links = star_links(&specs);
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    let au = org(AGENCY);
    net.fed
        .nodes
        .get_mut(&au)
        .expect("provisioned")
        .config
        .audit
        .max_file_bytes = max_file_bytes;
    for s in &specs {
        net.start(&s.org).await;
    }
    net
}

fn trail_dir(net: &TestNet) -> PathBuf {
    dir_of(&net.fed.nodes[&org(AGENCY)].config.data_dir)
}

fn records(dir: &Path) -> Vec<Record> {
    let mut all = Vec::new();
    trail::read(dir, |r| all.push(r.clone())).expect("the trail checks out");
    all
}

/// The one record of `method` (calls here are made once each).
fn one<'a>(all: &'a [Record], method: &str) -> &'a Record {
    let found: Vec<&Record> = all.iter().filter(|r| r.method == method).collect();
    assert_eq!(found.len(), 1, "{method}: {found:?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_api_call_is_in_the_trail_with_caller_method_values_and_result() {
    let mut net = net(1024).await;
    let au = org(AGENCY);
    let mut client = net.client(&au).await;
    let looked = client
        .lookup(pb::LookupRequest {
            values: vec![
                "1[.]2.3.4".into(),
                "hxxp://evil[.]example/x".into(),
                " lookup junk ".into(),
            ],
        })
        .await
        .expect("lookup");
    assert_eq!(looked.into_inner().results.len(), 3);
    submit(
        &mut client,
        vec![upsert(Ty::Domain, "audited[.]example", Tlp::Green, &["t"])],
    )
    .await;
    let refused = client
        .get(pb::GetRequest {
            r#type: Ty::Ipv4 as i32,
            value: "not an address".into(),
        })
        .await
        .expect_err("a bad value is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let channel = net.channel(&au).await;
    NodeStatusClient::new(channel.clone())
        .status(pb::StatusRequest {})
        .await
        .expect("status");
    // A service certificate calling Admin, on an agency.
    let denied = AdminClient::new(channel)
        .list_members(pb::ListMembersRequest {})
        .await
        .expect_err("a service may not call Admin");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    // TAXII: the reader lists collections (in `gateway`) and reads objects; a wrong password.
    let g = gateway(&net, &au).await;
    let read = run_tool(
        &g,
        &["get", &format!("{}objects/", g.collection)],
        &g.reader,
    )
    .await;
    assert_eq!(read["status"], 200, "{read}");
    let wrong = (g.reader.0.clone(), "wrong password".to_string());
    let refused = run_tool(&g, &["get", &format!("{}objects/", g.collection)], &wrong).await;
    assert_eq!(refused["status"], 401, "{refused}");

    // The writer posts an indicator: the value it published is recorded as asked.
    let envelope = tempfile::NamedTempFile::new().unwrap();
    let body = serde_json::json!({"objects": [{
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--6b8f5c2e-1111-4f4e-9c3a-000000000001",
        "created": "2026-11-30T10:00:00.000Z", "modified": "2026-11-30T10:00:00.000Z",
        "pattern": "[domain-name:value = 'posted.example']", "pattern_type": "stix",
        "valid_from": "2026-11-30T10:00:00Z",
        "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
    }]});
    std::fs::write(envelope.path(), body.to_string()).unwrap();
    let path = envelope.path().display().to_string();
    let posted = run_tool(&g, &["post", &g.collection, &path], &g.writer).await;
    assert_eq!(posted["status"], 202, "{posted}");
    // Read back by its id: an id names one origin's value, so the read names the value.
    let all_objects = run_tool(&g, &["read", &g.collection], &g.reader).await;
    let id = all_objects["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| {
            o["pattern"]
                .as_str()
                .is_some_and(|p| p.contains("posted.example"))
        })
        .and_then(|o| o["id"].as_str())
        .expect("the posted indicator is read")
        .to_string();
    let by_id = run_tool(
        &g,
        &["get", &format!("{}objects/{id}/", g.collection)],
        &g.reader,
    )
    .await;
    assert_eq!(by_id["status"], 200, "{by_id}");

    // Shutting down writes and syncs every queued record.
    net.stop(&au).await;
    let dir = trail_dir(&net);
    let all = records(&dir);
    let files = trail::trail_files(&dir).unwrap();
    assert!(files.len() > 1, "1 KiB files rotate: {files:?}");

    fn service(r: &Record) -> (&str, &str, &str) {
        (r.org.as_str(), r.name.as_str(), r.role.as_str())
    }
    let lookup = one(&all, "Indicators/Lookup");
    assert_eq!(service(lookup), (AGENCY, "client", "service"));
    assert_eq!(
        (lookup.values, lookup.digests.len(), lookup.code),
        (3, 3, 0)
    );
    assert_eq!(lookup.result, "OK");
    let submitted = one(&all, "Indicators/Submit");
    assert_eq!((submitted.values, submitted.code), (1, 0));
    let get = one(&all, "Indicators/Get");
    assert_eq!(
        (get.values, get.code, get.result.as_str()),
        (1, 3, "InvalidArgument")
    );
    let status = one(&all, "NodeStatus/Status");
    assert_eq!(
        (service(status), status.values, status.code),
        ((AGENCY, "client", "service"), 0, 0)
    );
    let admin = one(&all, "Admin/ListMembers");
    assert_eq!(
        (service(admin), admin.code),
        ((AGENCY, "client", "service"), 7)
    );
    assert_eq!(admin.result, "PermissionDenied");
    let objects = "TAXII GET /intelmesh/collections/{collection}/objects/";
    let taxii: Vec<&Record> = all.iter().filter(|r| r.method == objects).collect();
    assert_eq!(taxii.len(), 3, "{taxii:?}");
    assert_eq!(
        service(taxii[0]),
        (AGENCY, g.reader.0.as_str(), "taxii-user")
    );
    assert_eq!((taxii[0].code, taxii[0].values), (200, 0));
    assert_eq!(service(taxii[1]), ("", "", "none"));
    assert_eq!((taxii[1].code, taxii[1].result.as_str()), (401, "HTTP 401"));
    let listed = one(&all, "TAXII GET /intelmesh/collections/");
    assert_eq!(
        (listed.name.as_str(), listed.code),
        (g.reader.0.as_str(), 200)
    );
    let post = one(
        &all,
        "TAXII POST /intelmesh/collections/{collection}/objects/",
    );
    assert_eq!(service(post), (AGENCY, g.writer.0.as_str(), "taxii-user"));
    assert_eq!((post.values, post.code), (1, 202));
    // No value in the clear, anywhere in the files.
    for n in &files {
        let text = std::fs::read_to_string(dir.join(intelmesh_audit::file_name(*n))).unwrap();
        for value in ["1.2.3.4", "evil", "audited", "posted", "junk"] {
            assert!(!text.contains(value), "{value} in the trail");
        }
    }

    // Who asked about 1.2.3.4, in another spelling than the one asked: the lookup only.
    let key = trail::load_key(&dir).unwrap();
    let asked = |value: &str| -> Vec<String> {
        let digests: std::collections::BTreeSet<String> =
            key.search_digests(value).into_iter().collect();
        let filter = intelmesh_audit::Filter {
            digests: Some(digests),
            ..Default::default()
        };
        all.iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.method.clone())
            .collect()
    };
    assert_eq!(asked("1.2.3.4"), ["Indicators/Lookup"]);
    assert_eq!(asked("http://evil.example/x"), ["Indicators/Lookup"]);
    // A value with no canonical form is recorded by its trimmed text.
    assert_eq!(asked("lookup junk"), ["Indicators/Lookup"]);
    assert_eq!(asked("AUDITED.example"), ["Indicators/Submit"]);
    assert_eq!(asked("not an address"), ["Indicators/Get"]);
    assert_eq!(
        asked("posted[.]example"),
        [
            "TAXII POST /intelmesh/collections/{collection}/objects/",
            "TAXII GET /intelmesh/collections/{collection}/objects/{id}/"
        ]
    );
    assert!(asked("1.2.3.5").is_empty());
    net.stop(&org("SG-IGCI")).await;
}

/// A copy of the trail directory, to tamper with.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_refused_for_its_size_is_recorded_naming_no_value() {
    let mut net = net(1 << 20).await;
    let au = org(AGENCY);
    let mut client = net.client(&au).await;
    let max = intelmesh_node::api::lookup::MAX_LOOKUPS;
    let refused = client
        .lookup(pb::LookupRequest {
            values: vec!["1.2.3.4".into(); max + 1],
        })
        .await
        .expect_err("over the lookup limit");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    net.stop(&au).await;
    let all = records(&trail_dir(&net));
    let lookup = one(&all, "Indicators/Lookup");
    assert_eq!(
        (lookup.values, lookup.digests.len(), lookup.code),
        (0, 0, 3),
        "{lookup:?}"
    );
}

/// A lookup by a certificate that is not a service's (here an admin certificate from the
/// node's own service CA) is refused by role, and the trail names none of its values, however
/// many it sent (over the lookup limit too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lookup_by_a_caller_that_is_not_a_service_is_recorded_naming_no_value() {
    let mut net = net(1 << 20).await;
    let au = org(AGENCY);
    let p = &net.fed.nodes[&au];
    let ca = Ca::load(&p.dir.join("service-ca.pem"), &p.dir.join("service-ca.key"))
        .expect("the node's service CA");
    let certs = tempfile::tempdir().expect("temp dir");
    (ca.issue_admin(&au, "alice", Validity::default()))
        .expect("an admin certificate")
        .write(certs.path(), "alice")
        .expect("written");
    let mut admin = client_with(&net.running[&au], p, certs.path(), "alice").await;
    let max = intelmesh_node::api::lookup::MAX_LOOKUPS;
    for n in [3, max + 1] {
        let refused = admin
            .lookup(pb::LookupRequest {
                values: vec!["1.2.3.4".into(); n],
            })
            .await
            .expect_err("an admin certificate may not look up");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }
    net.stop(&au).await;
    let all = records(&trail_dir(&net));
    let named: Vec<(u64, usize, u32)> = (all.iter())
        .filter(|r| r.method == "Indicators/Lookup")
        .map(|r| (r.values, r.digests.len(), r.code))
        .collect();
    let denied = tonic::Code::PermissionDenied as u32;
    assert_eq!(named, [(0, 0, denied), (0, 0, denied)]);
}

/// A caller that goes away before its answer (its deadline passes) may not stop what it asked
/// (a publication under way runs to its end by itself): the trail records the call, with the
/// values it named and an outcome not known, never nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_whose_caller_went_away_is_recorded_with_its_values() {
    let mut net = net(1 << 20).await;
    let au = org(AGENCY);
    let mut client = net.client(&au).await;
    // The most one call may name: signing them takes far longer than the deadline below.
    let n = intelmesh_node::api::submission::MAX_SUBMISSIONS;
    let submissions: Vec<pb::Submission> = (0..n)
        .map(|i| upsert(Ty::Domain, &format!("left{i}.example"), Tlp::Green, &[]))
        .collect();
    let mut request = tonic::Request::new(pb::SubmitRequest {
        submissions,
        ..Default::default()
    });
    // Long enough for the request to arrive, far shorter than signing 10,000 entries.
    request.set_timeout(std::time::Duration::from_millis(40));
    let gone = client.submit(request).await.expect_err("past its deadline");
    assert!(
        matches!(
            gone.code(),
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        "{gone:?}"
    );
    // Whatever came of it (a publication under way runs to its end), the call is recorded.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    net.stop(&au).await;
    let all = records(&trail_dir(&net));
    // One call, in parts of a bounded number of digests.
    let parts: Vec<&Record> = all
        .iter()
        .filter(|r| r.method == "Indicators/Submit")
        .collect();
    let outcomes: Vec<(u64, u32, bool)> = parts
        .iter()
        .map(|r| (r.values, r.code, r.result.starts_with("CANCELLED")))
        .collect();
    assert!(!parts.is_empty());
    assert!(
        outcomes
            .iter()
            .all(|o| *o == (n as u64, tonic::Code::Cancelled as u32, true)),
        "{outcomes:?}"
    );
    let named: usize = parts.iter().map(|r| r.digests.len()).sum();
    assert_eq!(named, n, "every value it named");
}

/// A write by a service that may only read is refused before its values are read: the trail
/// names none of them, however many it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_by_a_read_only_service_is_recorded_naming_no_value() {
    let mut net = net(1 << 20).await;
    let au = org(AGENCY);
    net.stop(&au).await;
    if let Some(p) = net.fed.nodes.get_mut(&au) {
        p.config.read_only_services = vec!["client".into()];
    }
    net.start(&au).await;
    let mut client = net.client(&au).await;
    let refused = submit_refused(
        &mut client,
        (0..100)
            .map(|i| upsert(Ty::Domain, &format!("refused-{i}.example"), Tlp::Green, &[]))
            .collect(),
    )
    .await;
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
    net.stop(&au).await;
    let all = records(&trail_dir(&net));
    let submitted = one(&all, "Indicators/Submit");
    assert_eq!(
        (submitted.values, submitted.digests.len(), submitted.code),
        (0, 0, 7),
        "{submitted:?}"
    );
}

fn copy(dir: &Path, to: &Path) -> PathBuf {
    let out = to.join(format!("copy-{}", std::fs::read_dir(to).unwrap().count()));
    std::fs::create_dir(&out).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
    }
    out
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn broken(dir: &Path) -> Break {
    match trail::read(dir, |_| {}) {
        Err(trail::TrailError::Broken(b)) => b,
        other => panic!("expected a break, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tampering_with_the_trail_is_detected_and_named() {
    let mut net = net(1500).await;
    let au = org(AGENCY);
    let mut client = net.client(&au).await;
    for i in 0..12 {
        client
            .lookup(pb::LookupRequest {
                values: vec![format!("10.0.0.{i}")],
            })
            .await
            .expect("lookup");
    }
    net.stop(&au).await;
    let dir = trail_dir(&net);
    let total = records(&dir).len() as u64;
    assert!(total >= 12, "{total}");
    let files = trail::trail_files(&dir).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let scratch = tempfile::tempdir().unwrap();
    let name = |n: u64| intelmesh_audit::file_name(n);
    let place = |n: u64, line: u64| Some((name(n), line));

    // Edited: a refused call turned into a granted one.
    let d = copy(&dir, scratch.path());
    let mut l = lines(&d.join(name(2)));
    l[1] = l[1].replace("\"values\":1", "\"values\":0");
    write_lines(&d.join(name(2)), &l);
    let b = broken(&d);
    assert_eq!(b.place, place(2, 2));
    assert!(matches!(b.defect, Defect::Edited { .. }), "{b}");

    // A line deleted.
    let d = copy(&dir, scratch.path());
    let mut l = lines(&d.join(name(2)));
    let gone = intelmesh_audit::parse_line(&l.remove(1)).unwrap().record;
    write_lines(&d.join(name(2)), &l);
    let b = broken(&d);
    assert_eq!(b.place, place(2, 2));
    assert_eq!(
        b.defect,
        Defect::Removed {
            after: gone.seq - 1,
            found: gone.seq + 1
        }
    );

    // Two lines swapped: the first out of place is named.
    let d = copy(&dir, scratch.path());
    let mut l = lines(&d.join(name(1)));
    l.swap(1, 2);
    write_lines(&d.join(name(1)), &l);
    let b = broken(&d);
    assert_eq!(b.place, place(1, 2));
    assert!(matches!(b.defect, Defect::Removed { .. }), "{b}");

    // A middle file removed.
    let d = copy(&dir, scratch.path());
    std::fs::remove_file(d.join(name(2))).unwrap();
    let b = broken(&d);
    assert!(
        matches!(&b.defect, Defect::FileMissing { missing, .. } if *missing == name(2)),
        "{b}"
    );

    // The last file removed: the trail falls short of its head.
    let last = *files.last().unwrap();
    let d = copy(&dir, scratch.path());
    std::fs::remove_file(d.join(name(last))).unwrap();
    let b = broken(&d);
    assert!(
        matches!(b.defect, Defect::EndMissing { head, .. } if head == total),
        "{b}"
    );
    assert!(b.to_string().contains("removed"), "{b}");

    // The node itself refuses to write on after its last file was removed, naming why.
    std::fs::remove_file(dir.join(name(last))).unwrap();
    let cfg = net.fed.nodes[&au].config.clone();
    let refused = intelmesh_node::start(cfg)
        .await
        .err()
        .expect("start is refused");
    let why = format!("{refused:#}");
    assert!(
        why.contains("audit trail") && why.contains("ends at seq"),
        "{why}"
    );
    net.stop(&org("SG-IGCI")).await;
}
