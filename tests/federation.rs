//! Federation between real nodes: propagation through the hub, catch-up after a restart,
//! cyclic topologies, TLP routing.

use std::time::Duration;

use intelmesh_tests::net::{org, TestNet};

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_propagate_from_an_agency_through_the_hub_to_all() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let au = org("AU-AFP");
    let seqs = net.publish_domains(&au, "c2", 25).await;
    assert_eq!(seqs, (1..=25).collect::<Vec<_>>());
    net.wait_for(&au, 25, PATIENCE).await.unwrap();
    net.wait_converged(PATIENCE).await.unwrap();
    let digests: Vec<_> = net.running.keys().map(|o| net.digest(o)).collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "state digests differ"
    );
}
