//! One entry must never cut an origin off: entries signed with a key a node does not know yet
//! wait for it with the link up; a node never signs with a key its own list lacks; batches fit
//! the message cap by bytes, so any mix of legal entries syncs; what a peer reports of other
//! origins is kept for members only.

use std::collections::BTreeMap;
use std::time::Duration;

use intelmesh_core::{OrgId, Signer};
use intelmesh_node::keys::registry_toml;
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use intelmesh_tests::net::{green, org, TestNet};
use intelmesh_tests::raw_peer::{provisioned_signer, signed_chain, wait_until, Next, PATIENCE};

const HUB: &str = "SG-IGCI";
const AU: &str = "AU-AFP";
const BR: &str = "BR-PF";

/// The federation's key list with `extra` keys added (a member's new key, or a new member).
fn write_key_list(net: &TestNet, extra: &[&Signer]) {
    let mut keys: Vec<(OrgId, ed25519_dalek::VerifyingKey)> = net
        .fed
        .nodes
        .values()
        .map(|n| (n.spec.org.clone(), provisioned_signer(n).verifying_key()))
        .collect();
    keys.extend(extra.iter().map(|s| (s.org().clone(), s.verifying_key())));
    let text = registry_toml(keys.iter().map(|(o, k)| (o, k)));
    std::fs::write(net.fed.dir.join("registry.toml"), text).expect("key list written");
}

/// AU, its node stopped, rotated its key (the key list does not have it yet) and sends `n`
/// entries signed with it over a link of its own, kept alive: the new signer, the entries, the
/// link (and the task keeping it alive).
async fn send_under_a_new_key(
    net: &TestNet,
    n: u64,
) -> (
    Signer,
    Vec<pb::SignedEntry>,
    intelmesh_tests::raw_peer::RawPeer,
    tokio::task::JoinHandle<()>,
) {
    let (hub, au) = (org(HUB), org(AU));
    let rotated = Signer::generate(au.clone());
    let (entries, _) = signed_chain(&rotated, None, n, "rotated");
    let peer = net.open_as(&hub, &au).await;
    let alive = peer.keep_alive(Duration::from_millis(200));
    assert!(peer.hello(AU, BTreeMap::new()).await);
    assert!(peer.entries(entries.clone()).await);
    (rotated, entries, peer, alive)
}

fn unverified(net: &TestNet, at: &OrgId) -> Vec<pb::Unverified> {
    intelmesh_node::api::status::status(net.node(at).state())
        .expect("status")
        .unverified
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_signed_with_an_unknown_key_wait_for_it_with_the_link_up() {
    let mut net = TestNet::star(HUB, &[AU, BR]).await;
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    net.wait_for_link(&hub, &br).await;
    net.stop(&au).await;
    net.wait_link_down(&hub, &au).await;

    // AU rotated its key; the federation's key list does not have the new one yet.
    let (rotated, entries, mut peer, _alive) = send_under_a_new_key(&net, 3).await;

    wait_until(
        || {
            unverified(&net, &hub)
                .iter()
                .any(|u| u.origin == AU && u.entries == 3)
        },
        "the hub keeps the three entries",
    )
    .await;
    let row = unverified(&net, &hub)
        .into_iter()
        .find(|u| u.origin == AU)
        .unwrap();
    assert_eq!(row.key_id, rotated.key_id().to_string());
    assert!(!row.dropped);
    assert_eq!(
        net.vector(&hub).get(&au),
        None,
        "nothing unverified is logged"
    );

    // The link stays up, and other origins keep flowing meanwhile.
    let seqs = net.publish_domains(&br, "meanwhile", 5).await;
    net.wait_for(&br, *seqs.last().unwrap(), PATIENCE)
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        if let Next::End(s) = peer.next(Duration::from_millis(100)).await {
            panic!("the hub cut the link: {:?} {}", s.code(), s.message());
        }
    }
    assert!(net.peer_state(&hub, &au).connected);

    // The key list learns the new key: the waiting entries are taken in and travel on.
    write_key_list(&net, &[&rotated]);
    net.wait_for(&au, 3, PATIENCE).await.unwrap();
    assert!(unverified(&net, &hub).is_empty());
    let stored = net.node(&hub).state().store.range(&au, 1, 10).unwrap();
    assert_eq!(stored, entries);
    assert!(net.peer_state(&hub, &au).connected, "still the same link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_dropped_for_lack_of_room_are_sent_again_once_the_key_is_known() {
    // Room for two entries per origin waiting for a key.
    let limits = intelmesh_node::config::Limits {
        unverified_per_origin: 2,
        ..intelmesh_tests::net::fast_limits()
    };
    let specs = intelmesh_node::provision::loopback_specs(HUB, &[AU, BR]).unwrap();
    let links = intelmesh_node::provision::star_links(&specs);
    let mut net = TestNet::new(specs, links, limits).await;
    let (hub, au) = (org(HUB), org(AU));
    net.stop(&au).await;
    net.wait_link_down(&hub, &au).await;

    // AU rotated its key and sends four entries the hub cannot check yet: two wait, two are
    // dropped.
    let (rotated, entries, mut peer, _alive) = send_under_a_new_key(&net, 4).await;
    wait_until(
        || {
            unverified(&net, &hub)
                .iter()
                .any(|u| u.origin == AU && u.entries == 2 && u.dropped)
        },
        "the hub keeps two entries and says it dropped others",
    )
    .await;

    // The key list learns the key: the two kept are taken in, and the link restarts so that
    // the peer sends the rest again.
    write_key_list(&net, &[&rotated]);
    let end = peer.end_status(PATIENCE).await;
    assert_eq!(end.code(), tonic::Code::Unavailable, "{}", end.message());
    assert!(
        end.message().contains("to be sent again"),
        "{}",
        end.message()
    );
    assert_eq!(net.vector(&hub).get(&au), Some(&2));

    // As a peer does on a new link: from the hub's hello, what it lacks.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, BTreeMap::new()).await);
    let hello = peer.expect_hello(PATIENCE).await;
    let from = hello
        .vector
        .and_then(|v| v.heads.get(AU).copied())
        .unwrap_or(0);
    assert_eq!(from, 2);
    assert!(peer.entries(entries[2..].to_vec()).await);
    peer.until_progress(AU, 4, PATIENCE).await.unwrap();
    let stored = net.node(&hub).state().store.range(&au, 1, 10).unwrap();
    assert_eq!(stored, entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_never_signs_with_a_key_its_own_list_lacks() {
    let mut net = TestNet::star(HUB, &[AU, BR]).await;
    let au = org(AU);
    net.stop(&au).await;

    // The key list without AU's key: AU refuses to start, saying why.
    let others: Vec<Signer> = net
        .fed
        .nodes
        .values()
        .filter(|n| n.spec.org != au)
        .map(provisioned_signer)
        .collect();
    let keys: Vec<(OrgId, ed25519_dalek::VerifyingKey)> = others
        .iter()
        .map(|s| (s.org().clone(), s.verifying_key()))
        .collect();
    let text = registry_toml(keys.iter().map(|(o, k)| (o, k)));
    let list = net.dir.path().join("without-au.toml");
    std::fs::write(&list, text).unwrap();
    let mut cfg = net.fed.nodes[&au].config.clone();
    cfg.keys = Some(list);
    let err = match intelmesh_node::start(cfg).await {
        Ok(_) => panic!("AU started with a key its list lacks"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("not in its key list"), "{err}");

    // A running node refuses a new list without its own key, and keeps signing with the old.
    net.start(&au).await;
    let state = net.node(&au).state().clone();
    let without =
        intelmesh_node::keys::load_registry(&net.dir.path().join("without-au.toml")).unwrap();
    let err = state.replace_keys(without).await.unwrap_err();
    assert!(err.to_string().contains("not in its key list"), "{err}");
    assert!(state.keys().is_member(&au));
    assert_eq!(net.publish_domains(&au, "still", 1).await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_of_maximum_size_entries_syncs() {
    let mut net = TestNet::star(HUB, &[AU, BR]).await;
    let (hub, au) = (org(HUB), org(AU));
    net.stop(&hub).await;
    // 300 entries of about 60 KiB: 18 MiB, over twice the 8 MiB message cap, and a full count
    // batch (1024 entries) of them would be 60 MiB.
    let limits = net.node(&au).state().cfg.limits.clone();
    let pad = 60_000;
    let items: Vec<_> = (0..300)
        .map(|i| {
            let mut p = intelmesh_tests::net::domain_upsert(&format!("big-{i}.au-afp.example"));
            if let Some(pb::payload::Body::Upsert(u)) = &mut p.body {
                u.description = "x".repeat(pad);
            }
            (green(), p)
        })
        .collect();
    for chunk in items.chunks(50) {
        net.node(&au).state().publish(chunk.to_vec()).await.unwrap();
    }
    assert!(300 * pad > 2 * limits.max_message_bytes);

    net.start(&hub).await;
    net.wait_for(&au, 300, Duration::from_secs(60))
        .await
        .unwrap();
    net.wait_converged(Duration::from_secs(60)).await.unwrap();
    assert_eq!(net.digest(&hub), net.digest(&au));
    let state = net.peer_state(&hub, &au);
    assert!(state.connected, "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn made_up_origins_in_a_peers_vectors_are_not_kept() {
    let mut net = TestNet::star(HUB, &[AU, BR]).await;
    let (hub, au) = (org(HUB), org(AU));
    net.stop(&au).await;
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let mut peer = net.open_as(&hub, &au).await;
    let mut vector: BTreeMap<String, u64> =
        (0..5_000).map(|i| (format!("MADE-UP-{i}"), 1)).collect();
    vector.insert(BR.into(), 0);
    assert!(peer.hello(AU, vector.clone()).await);
    for _ in 0..20 {
        let progress = pb::Progress {
            vector: Some(pb::VersionVector {
                heads: vector.clone().into_iter().collect(),
                head_hashes: vector.keys().map(|k| (k.clone(), vec![0; 32])).collect(),
            }),
        };
        assert!(peer.send(pb::sync_frame::Frame::Progress(progress)).await);
    }
    // The link works on: an honest entry still goes in.
    let (entries, _) = signed_chain(&signer, None, 1, "after");
    assert!(peer.entries(entries).await);
    peer.until_progress(AU, 1, PATIENCE).await.unwrap();
    let kept = net.peer_state(&hub, &au).vector;
    assert!(
        kept.keys()
            .all(|o| net.node(&hub).state().keys().is_member(&org(o))),
        "{} origins kept, some not members",
        kept.len()
    );
    assert!(kept.len() <= net.fed.nodes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_verified_under_a_key_list_replaced_before_they_were_kept_are_taken_in() {
    // A link verifies its next batch while the one before is applied; when that one brings a
    // key list (a roster version), the next batch was verified under the old list. Its entries
    // of a key the new list holds must not wait for yet another change.
    let net = TestNet::star(HUB, &[AU]).await;
    let hub = org(HUB);
    let state = net.node(&hub).state();
    let newcomer = Signer::generate(org("NZ-POLICE"));
    let (entries, _) = signed_chain(&newcomer, None, 2, "newcomer");

    let checked = state.verify_received(entries.clone()).await.unwrap();
    assert_eq!(checked.unknown_key.len(), 2, "the old list lacks the key");
    write_key_list(&net, &[&newcomer]);
    let path = net.fed.dir.join("registry.toml");
    let keys = intelmesh_node::keys::load_registry(&path).unwrap();
    state.replace_keys(keys).await.unwrap();
    let report = state.apply_checked(checked).await.unwrap();

    assert_eq!(report.appended, 2, "{report:?}");
    assert_eq!(report.unverifiable, 0, "{report:?}");
    assert!(unverified(&net, &hub).is_empty());
    assert_eq!(
        state.store.range(&newcomer.org().clone(), 1, 10).unwrap(),
        entries
    );
}
