//! The lookup table (a compact copy of the index that lookups read, built in the background)
//! answers exactly what the index answers, for every reader: the same verdicts, confidences,
//! origins and matches for listed, revoked, expired, sighted, AMBER and RED values and for
//! addresses inside blocks, before and after nodes restart with it; and a value written after
//! the table was copied is answered from the index at once.

use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp, Verdict};
use intelmesh_tests::api::*;
use intelmesh_tests::net::{fast_limits, org, TestNet};

fn listed(ty: Ty, value: &str, tlp: Tlp, recipients: &[&str], confidence: u32) -> pb::Submission {
    let mut s = upsert(ty, value, tlp, &["block"]);
    s.distribution = dist(tlp, recipients);
    if let Some(pb::submission::Body::Upsert(u)) = &mut s.body {
        u.confidence = confidence;
    }
    s
}

/// Listed until a time long past.
fn expired(value: &str) -> pb::Submission {
    let mut s = listed(Ty::Domain, value, Tlp::Green, &[], 70);
    if let Some(pb::submission::Body::Upsert(u)) = &mut s.body {
        u.valid_from_unix_ms = 1_000_000_000_000;
        u.valid_until_unix_ms = Some(1_000_000_100_000);
    }
    s
}

const VALUES: [&str; 14] = [
    "10.1.2[.]3",
    "10.9.9.9",
    "8.8.8.8",
    "172.16.5.5",
    "2001:db8:1::7",
    "2001:db8:2::1",
    "evil.example",
    "a.sub.evil[.]example",
    "amber.example",
    "red.example",
    "expired.example",
    "sighted.example",
    "hxxp://10.1.2.3/gate.php",
    "never.listed.example",
];

async fn answers(net: &TestNet, who: &OrgId) -> Vec<pb::LookupResult> {
    net.client(who)
        .await
        .lookup(pb::LookupRequest {
            values: VALUES.iter().map(|v| v.to_string()).collect(),
        })
        .await
        .expect("lookup")
        .into_inner()
        .results
}

fn tune(net: &mut TestNet, who: &OrgId, min_indicators: u64) {
    let store = &mut net
        .fed
        .nodes
        .get_mut(who)
        .expect("provisioned")
        .config
        .store;
    store.lookup_table_min_indicators = min_indicators;
    store.lookup_table_quiet_ms = 50;
}

/// Waits until `who`'s lookup table holds every indicator of its index.
async fn table_built(net: &TestNet, who: &OrgId) -> usize {
    let start = Instant::now();
    loop {
        let store = &net.node(who).state().store;
        let count = store.indicator_count();
        if let Some(n) = store.lookup_table_size().filter(|n| *n == count) {
            return n;
        }
        assert!(start.elapsed() < PATIENCE, "{who}: no lookup table built");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lookups_read_from_the_table_answer_as_the_index_does_for_every_reader() {
    let specs =
        intelmesh_node::provision::loopback_specs("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"])
            .expect("ports");
    let links = intelmesh_node::provision::star_links(&specs);
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    let everyone: Vec<OrgId> = specs.iter().map(|s| s.org.clone()).collect();
    for who in &everyone {
        tune(&mut net, who, u64::MAX);
        net.start(who).await;
    }
    let (au, fr) = (org("AU-AFP"), org("FR-OCLCTIC"));
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            listed(Ty::Cidr, "10.0.0.0/8", Tlp::Green, &[], 80),
            listed(Ty::Cidr, "10.1.2.0/24", Tlp::Green, &[], 60),
            listed(Ty::Ipv4, "10.1.2.3", Tlp::Green, &[], 99),
            listed(Ty::Cidr, "172.16.0.0/12", Tlp::Green, &[], 85),
            listed(Ty::Cidr, "2001:db8:1::/48", Tlp::Green, &[], 50),
            listed(Ty::Domain, "evil.example", Tlp::Green, &[], 75),
            listed(Ty::Domain, "amber.example", Tlp::Amber, &[], 65),
            listed(Ty::Domain, "red.example", Tlp::Red, &["BR-PF"], 95),
            listed(Ty::Cidr, "8.0.0.0/7", Tlp::Red, &["BR-PF"], 90),
            expired("expired.example"),
        ],
    )
    .await;
    submit(&mut at_au, vec![revoke(Ty::Ipv4, "10.1.2.3")]).await;
    let mut at_fr = net.client(&fr).await;
    submit(
        &mut at_fr,
        vec![listed(Ty::Domain, "evil.example", Tlp::Green, &[], 40)],
    )
    .await;
    at_fr
        .report_sighting(sighting("sighted.example", 3))
        .await
        .expect("sighting");
    net.wait_converged(PATIENCE).await.expect("converged");

    let mut before = Vec::new();
    for who in &everyone {
        before.push(answers(&net, who).await);
    }
    // The answers are worth comparing: verdicts of every kind, and RED seen by BR alone.
    let br = &before[everyone
        .iter()
        .position(|o| *o == org("BR-PF"))
        .expect("BR")];
    let verdict = |rs: &[pb::LookupResult], v: &str| {
        rs.iter()
            .find(|r| r.input == v)
            .map(pb::LookupResult::verdict)
    };
    assert_eq!(verdict(br, "red.example"), Some(Verdict::Malicious));
    assert_eq!(verdict(br, "8.8.8.8"), Some(Verdict::Malicious));
    assert_eq!(verdict(&before[0], "red.example"), Some(Verdict::Unknown));
    assert_eq!(verdict(br, "expired.example"), Some(Verdict::Seen));
    assert_eq!(verdict(br, "sighted.example"), Some(Verdict::Seen));

    for who in &everyone {
        net.stop(who).await;
        tune(&mut net, who, 1);
        net.start(who).await;
    }
    for who in &everyone {
        assert!(table_built(&net, who).await >= 9, "{who}");
    }
    for (who, before) in everyone.iter().zip(&before) {
        assert_eq!(&answers(&net, who).await, before, "{who}");
    }

    // Written after the copy: answered from the index at once, everywhere.
    submit(
        &mut net.client(&au).await,
        vec![revoke(Ty::Domain, "evil.example")],
    )
    .await;
    net.wait_converged(PATIENCE).await.expect("converged");
    for who in &everyone {
        let rs = answers(&net, who).await;
        let evil = rs
            .iter()
            .find(|r| r.input == "evil.example")
            .expect("answered");
        let m = &evil.matches[0];
        assert_eq!(
            (m.verdict(), m.max_confidence),
            (Verdict::Malicious, 40),
            "{who}"
        );
        assert!(
            net.node(who).state().store.lookup_table_size().is_some(),
            "{who}"
        );
    }
}
