//! Hubs linked to each other share the agencies out (`federation::fan_out`): each agency is
//! sent other origins' entries by one hub at once, not by every hub; a hub sends the agencies
//! of a hub it lost at once; an agency with no link to the hub that would serve it first (it
//! says which hubs it has links with, in `Relays` frames) is served at once by one it has.

use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_node::federation::fan_out::{sends_first, HUB_STILL};
use intelmesh_node::provision::{loopback_specs_hubs, star_links};
use intelmesh_tests::net::{fast_limits, org, TestNet};

const HUBS: [&str; 2] = ["HUB-A", "HUB-B"];
const AGENCIES: [&str; 6] = [
    "AU-AFP",
    "BR-PF",
    "CA-RCMP",
    "DE-BKA",
    "FR-OCLCTIC",
    "NZ-POL",
];
/// Patience for links and catch-up, which these tests do not measure.
const PATIENCE: Duration = Duration::from_secs(30);
/// Entries each agency publishes.
const EACH: usize = 20;

/// A bound that shows an entry came at once: before a hub waiting `HUB_STILL` on an agency
/// that sat still from the publish on could have sent it, with room for the sending itself.
fn before_still() -> Duration {
    HUB_STILL - Duration::from_millis(500)
}

fn orgs(names: &[&str]) -> Vec<OrgId> {
    names.iter().map(|n| org(n)).collect()
}

/// Starts every node and waits until each link of `links` is up at both ends.
async fn started(net: &mut TestNet, links: &[(OrgId, OrgId)]) {
    let all: Vec<OrgId> = net.fed.nodes.keys().cloned().collect();
    for o in &all {
        net.start(o).await;
    }
    for (a, b) in links {
        net.wait_for_link(a, b).await;
        net.wait_for_link(b, a).await;
    }
}

/// Both hubs and every agency started, every agency linked with both hubs and the hubs with
/// each other.
async fn star_net() -> (TestNet, Vec<OrgId>, Vec<OrgId>) {
    let specs = loopback_specs_hubs(&HUBS, &AGENCIES).expect("ports");
    let links = star_links(&specs);
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    started(&mut net, &links).await;
    (net, orgs(&HUBS), orgs(&AGENCIES))
}

/// What `hub` sent the agencies, per agency.
fn sent_by(net: &TestNet, hub: &OrgId, agencies: &[OrgId]) -> Vec<u64> {
    (agencies.iter())
        .map(|a| net.peer_state(hub, a).entries_sent)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn linked_hubs_send_each_agency_each_entry_once() {
    let (net, hubs, agencies) = star_net().await;
    for a in &agencies {
        net.publish_domains(a, "shared", EACH).await;
    }
    net.wait_converged(PATIENCE).await.expect("converged");

    let needed = (EACH * (agencies.len() - 1)) as u64;
    let mut total = 0;
    for hub in &hubs {
        let sent = sent_by(&net, hub, &agencies);
        let theirs = (agencies.iter())
            .filter(|a| sends_first(hub, std::slice::from_ref(other(&hubs, hub)), a))
            .count();
        assert!(theirs > 0, "{hub} serves some agencies first");
        // Its status says which agencies another hub serves first.
        let told = (agencies.iter())
            .filter(|a| net.peer_state(hub, a).other_hub_serves_first)
            .count();
        assert_eq!(told, agencies.len() - theirs, "{hub}'s status");
        assert!(sent.iter().any(|n| *n > 0), "{hub} sent entries: {sent:?}");
        total += sent.iter().sum::<u64>();
    }
    // Each hub sending each agency all it lacked would be twice this.
    let lacked = needed * agencies.len() as u64;
    assert!(
        total <= lacked + lacked / 4,
        "the hubs sent the agencies {total} entries for {lacked} lacked"
    );
    // Hubs leave out of their progress frames the heads they just sent as entries
    // (`progress_omits_sent`): every node's status still shows every peer caught up.
    let lagging = |net: &TestNet| -> Vec<String> {
        let mut out = Vec::new();
        for at in hubs.iter().chain(&agencies) {
            let status = intelmesh_node::api::status::status(net.node(at).state()).expect("status");
            out.extend(
                (status.peers.iter())
                    .filter(|p| p.connected && p.lag > 0)
                    .map(|p| format!("{at} sees {} {} behind", p.org_id, p.lag)),
            );
        }
        out
    };
    let since = Instant::now();
    while !lagging(&net).is_empty() && since.elapsed() < PATIENCE {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lagging(&net), Vec::<String>::new());
}

fn other<'a>(hubs: &'a [OrgId], hub: &OrgId) -> &'a OrgId {
    hubs.iter().find(|h| *h != hub).expect("two hubs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hub_sends_the_agencies_of_a_hub_it_lost_at_once() {
    let (mut net, hubs, agencies) = star_net().await;
    let (lost, survivor) = (&hubs[0], &hubs[1]);
    let theirs: Vec<&OrgId> = (agencies.iter())
        .filter(|a| !sends_first(survivor, std::slice::from_ref(lost), a))
        .collect();
    assert!(!theirs.is_empty(), "{lost} serves some agencies first");
    net.stop(lost).await;
    net.wait_link_down(survivor, lost).await;

    let from = agencies
        .iter()
        .find(|a| !theirs.contains(a))
        .expect("an agency the survivor serves");
    let at = Instant::now();
    let seq = *net
        .publish_domains(from, "after", 1)
        .await
        .last()
        .expect("one");
    // Every node, `theirs` among them, well inside HUB_STILL: the survivor did not wait for
    // them to sit still.
    let took = (net.wait_for(from, seq, before_still())).await;
    assert!(
        took.is_ok(),
        "{theirs:?} got {from}#{seq} from {survivor}: {took:?}"
    );
    assert!(at.elapsed() < HUB_STILL, "{:?}", at.elapsed());
    let deferred: Vec<&OrgId> = (agencies.iter())
        .filter(|a| net.peer_state(survivor, a).other_hub_serves_first)
        .collect();
    assert!(
        deferred.is_empty(),
        "{survivor} defers {deferred:?} to a hub it lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agency_with_no_link_to_its_first_hub_is_served_at_once_by_another() {
    let (hubs, agencies) = (orgs(&HUBS), orgs(&AGENCIES));
    // An agency that HUB-A serves first, linked to HUB-B only.
    let cut_off = agencies
        .iter()
        .find(|a| sends_first(&hubs[0], std::slice::from_ref(&hubs[1]), a))
        .expect("HUB-A serves some agency first");
    let specs = loopback_specs_hubs(&HUBS, &AGENCIES).expect("ports");
    let links: Vec<(OrgId, OrgId)> = star_links(&specs)
        .into_iter()
        .filter(|(a, b)| !(a == cut_off && *b == hubs[0]))
        .collect();
    let mut net = TestNet::provisioned(&specs, &links, &fast_limits());
    started(&mut net, &links).await;
    // It told HUB-B it has no link with HUB-A, so HUB-B serves it first.
    let from = agencies.iter().find(|a| *a != cut_off).expect("another");
    let seq = *net
        .publish_domains(from, "far", 3)
        .await
        .last()
        .expect("three");
    let within = before_still();
    let took = net.wait_for(from, seq, within).await;
    assert!(
        took.is_ok(),
        "{cut_off} got {from}#{seq} through HUB-B at once: {took:?}"
    );
    net.wait_converged(PATIENCE).await.expect("converged");
    assert_eq!(
        net.peer_state(&hubs[0], cut_off).entries_sent,
        0,
        "HUB-A has no link with {cut_off}"
    );
}
