//! What an agency passes on to a hub: its own entries at once; another origin's only when the
//! hub has sat still behind it (`federation::sender::RELAY_STILL`). Every member sends its own
//! entries to every hub and the hubs to each other, so a hub lacking a third origin's entries
//! takes them in on another link; an agency passing on at once what one hub relayed made each
//! hub receive every entry once per member. Where the other paths are down (hubs not linked, an
//! origin linked to one hub only), the agencies still carry it.

use std::time::Duration;

use intelmesh_core::OrgId;
use intelmesh_node::provision::loopback_specs_hubs;
use intelmesh_tests::net::{fast_limits, org, TestNet};

/// Patience for links, catch-up and the hold-back, which these tests do not measure.
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agency_leaves_a_hub_to_take_third_origins_from_their_origin() {
    // No hub link, so the order of events is the test's: HUB-A lacks BR-PF's entries while
    // AU-AFP, linked to it, holds them; then BR-PF, their origin, links to HUB-A.
    let specs = loopback_specs_hubs(&["HUB-A", "HUB-B"], &["AU-AFP", "BR-PF"]).expect("ports");
    let (late, hub_b, au, br) = (org("HUB-A"), org("HUB-B"), org("AU-AFP"), org("BR-PF"));
    let links: Vec<(OrgId, OrgId)> = [&au, &br]
        .into_iter()
        .flat_map(|a| [(a.clone(), late.clone()), (a.clone(), hub_b.clone())])
        .collect();
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    for o in [&hub_b, &au, &br] {
        net.start(o).await;
    }
    let seqs = net.publish_domains(&br, "relayed", 20).await;
    let last = *seqs.last().expect("published");
    net.wait_for(&br, last, PATIENCE)
        .await
        .expect("AU-AFP takes BR-PF's entries from HUB-B");
    net.stop(&br).await;
    net.start(&late).await;
    net.wait_for_link(&au, &late).await;
    net.start(&br).await;
    net.wait_converged(PATIENCE)
        .await
        .expect("HUB-A catches up");
    assert!(
        net.peer_state(&br, &late).entries_sent >= last,
        "BR-PF sent HUB-A its entries"
    );
    assert_eq!(
        net.peer_state(&au, &late).entries_sent,
        0,
        "AU-AFP published nothing and passed on none of BR-PF's entries to HUB-A"
    );

    // Its own entries go to every hub at once.
    let own = net.publish_domains(&au, "own", 3).await;
    net.wait_converged(PATIENCE)
        .await
        .expect("AU-AFP's entries spread");
    assert_eq!(net.peer_state(&au, &late).entries_sent, own.len() as u64);
    assert_eq!(net.peer_state(&au, &hub_b).entries_sent, own.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agency_carries_third_origins_to_a_hub_no_other_path_feeds() {
    // No hub link; BR-PF reaches HUB-B only and NZ-POL HUB-A only. BR-PF's entries reach
    // NZ-POL only through AU-AFP, the one agency linked to both hubs.
    let specs =
        loopback_specs_hubs(&["HUB-A", "HUB-B"], &["AU-AFP", "BR-PF", "NZ-POL"]).expect("ports");
    let (hub_a, hub_b, au, br, nz) = (
        org("HUB-A"),
        org("HUB-B"),
        org("AU-AFP"),
        org("BR-PF"),
        org("NZ-POL"),
    );
    let links = vec![
        (au.clone(), hub_a.clone()),
        (au.clone(), hub_b.clone()),
        (br.clone(), hub_b.clone()),
        (nz.clone(), hub_a.clone()),
    ];
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    for s in &specs {
        net.start(&s.org).await;
    }
    let seqs = net.publish_domains(&br, "far", 5).await;
    let last = *seqs.last().expect("published");
    net.wait_for(&br, last, PATIENCE)
        .await
        .expect("NZ-POL gets BR-PF's entries through AU-AFP and HUB-A");
    assert!(
        net.peer_state(&au, &hub_a).entries_sent >= last,
        "AU-AFP carried BR-PF's entries to HUB-A"
    );
    net.wait_converged(PATIENCE).await.expect("one vector");
}
