//! The node's warninglists of known-benign values, through the real gRPC API and the TAXII
//! gateway: Submit refuses an upsert of a listed value (whole request, nothing signed) unless
//! forced, a revocation of one is fine, Lookup names the lists, TAXII marks read objects and
//! refuses POSTed ones.

use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_node::provision::{free_loopback_addr, loopback_specs, star_links};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_store::Store;
use intelmesh_tests::api::{revoke, upsert};
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::taxii::{gateway, run_tool};
use serde_json::json;

async fn net_with_lists() -> (TestNet, tempfile::TempDir) {
    let lists = tempfile::tempdir().unwrap();
    let dns = json!({"name": "Public DNS resolvers", "version": 1, "type": "cidr",
        "list": ["8.8.8.8/32", "1.1.1.1"], "matching_attributes": ["ip-src", "ip-dst"]});
    let top = json!({"name": "Top domains", "version": 1, "type": "hostname",
        "list": ["google.com"], "matching_attributes": ["domain", "hostname", "url"]});
    std::fs::create_dir(lists.path().join("lists")).unwrap();
    std::fs::write(lists.path().join("lists/dns.json"), dns.to_string()).unwrap();
    std::fs::write(lists.path().join("top.json"), top.to_string()).unwrap();
    let mut specs = loopback_specs("SG-IGCI", &["AU-AFP"]).expect("ports");
    for s in &mut specs {
        s.taxii = Some(free_loopback_addr().expect("port"));
    }
    let links = star_links(&specs);
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    let au = org("AU-AFP");
    // A directory (searched recursively) and a file.
    net.fed.nodes.get_mut(&au).unwrap().config.warninglists = vec![lists.path().to_path_buf()];
    for s in &specs {
        net.start(&s.org).await;
    }
    (net, lists)
}

fn head(net: &TestNet, at: &OrgId) -> u64 {
    net.node(at)
        .state()
        .store
        .head(at)
        .unwrap()
        .map_or(0, |h| h.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listed_value_needs_force_and_lookups_name_the_list() {
    let (net, _lists) = net_with_lists().await;
    let au = org("AU-AFP");
    let mut c = net.client(&au).await;
    let before = head(&net, &au);
    let request = |force| pb::SubmitRequest {
        submissions: vec![
            upsert(Ty::Domain, "evil.example", Tlp::Green, &[]),
            upsert(Ty::Ipv4, "8.8.8.8", Tlp::Green, &[]),
            upsert(Ty::Url, "https://www.google.com/search", Tlp::Green, &[]),
            // A block holding a listed address is applied whole by a firewall.
            upsert(Ty::Cidr, "8.8.8.0/24", Tlp::Green, &[]),
        ],
        force,
        ..Default::default()
    };
    let refused = c
        .submit(request(false))
        .await
        .expect_err("listed values refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let msg = refused.message();
    assert!(msg.contains("8.8.8.8 (on Public DNS resolvers)"), "{msg}");
    assert!(msg.contains("google.com/search (on Top domains)"), "{msg}");
    assert!(
        msg.contains("8.8.8.0/24 (on Public DNS resolvers)"),
        "{msg}"
    );
    assert!(msg.contains("force"), "{msg}");
    assert_eq!(head(&net, &au), before, "nothing of the request was signed");

    let forced = c.submit(request(true)).await.expect("forced").into_inner();
    assert_eq!(forced.assigned.len(), 4);
    // Revoking a listed value pushes nothing to anyone's block list: no force needed.
    c.submit(pb::SubmitRequest {
        submissions: vec![revoke(Ty::Ipv4, "8.8.8.8")],
        ..Default::default()
    })
    .await
    .expect("a revocation of a listed value");

    let answer = c
        .lookup(pb::LookupRequest {
            values: vec![
                "8.8.8.8".into(),
                "evil[.]example".into(),
                "maps.google.com".into(),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let lists: Vec<Vec<String>> = answer
        .results
        .iter()
        .map(|r| r.warninglists.clone())
        .collect();
    assert_eq!(
        lists,
        vec![
            vec!["Public DNS resolvers".to_string()],
            vec![],
            vec!["Top domains".to_string()],
        ]
    );
    // A node without lists marks nothing.
    net.wait_converged(Duration::from_secs(20))
        .await
        .expect("converged");
    let mut hub = net.client(&org("SG-IGCI")).await;
    let at_hub = hub
        .lookup(pb::LookupRequest {
            values: vec!["8.8.8.8".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(at_hub.results[0].warninglists.is_empty());

    // TAXII: a read marks the listed indicator; a POSTed listed value is a failure.
    let g = gateway(&net, &au).await;
    let read = run_tool(&g, &["read", &g.collection], &g.reader).await;
    let objects = read["objects"].as_array().expect("objects");
    let marked = |pattern: &str| {
        objects
            .iter()
            .find(|o| o["pattern"] == pattern)
            .map(|o| o["x_intelmesh_warninglists"].clone())
    };
    assert_eq!(
        marked("[url:value = 'https://www.google.com/search']"),
        Some(json!(["Top domains"]))
    );
    assert_eq!(
        marked("[domain-name:value = 'evil.example']"),
        Some(serde_json::Value::Null)
    );
    let dir = tempfile::tempdir().unwrap();
    let envelope = dir.path().join("envelope.json");
    let body = json!({"objects": [{
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--6b8f5c2e-1111-4f4e-9c3a-00000000000a",
        "created": "2026-11-30T10:00:00.000Z", "modified": "2026-11-30T10:00:00.000Z",
        "pattern": "[ipv4-addr:value = '1.1.1.1']", "pattern_type": "stix",
        "valid_from": "2026-11-30T10:00:00Z",
    }]});
    std::fs::write(&envelope, body.to_string()).unwrap();
    let path = envelope.display().to_string();
    let before = head(&net, &au);
    let posted = run_tool(&g, &["post", &g.collection, &path], &g.writer).await;
    let status = &posted["body"];
    assert_eq!(status["failure_count"], 1, "{status}");
    let why = status["failures"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("Public DNS resolvers"), "{why}");
    assert_eq!(head(&net, &au), before);
}

#[tokio::test]
async fn a_node_whose_warninglist_does_not_load_does_not_start() {
    let lists = tempfile::tempdir().unwrap();
    std::fs::write(
        lists.path().join("broken.json"),
        "{\"name\": \"x\", \"list\": 5}",
    )
    .unwrap();
    let specs = loopback_specs("SG-IGCI", &[]).expect("ports");
    let net = TestNet::provisioned(&specs, &[], &fast_limits());
    let mut cfg = net.fed.nodes[&org("SG-IGCI")].config.clone();
    cfg.warninglists = vec![lists.path().to_path_buf()];
    let e = intelmesh_node::start(cfg).await.err().expect("refused");
    let msg = format!("{e:#}");
    assert!(msg.contains("broken.json"), "{msg}");
}
