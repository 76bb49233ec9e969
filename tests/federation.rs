//! Federation between real nodes: propagation through the hub, catch-up after a restart,
//! cyclic topologies, TLP routing.

use std::time::Duration;

use intelmesh_store::Store;
use intelmesh_tests::net::{fast_limits, org, TestNet};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_agency_catches_up_from_its_vector() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (au, br, fr) = (org("AU-AFP"), org("BR-PF"), org("FR-OCLCTIC"));
    net.publish_domains(&au, "before", 10).await;
    net.wait_for(&au, 10, PATIENCE).await.unwrap();

    net.stop(&br).await;
    net.publish_domains(&au, "during", 300).await;
    net.publish_domains(&fr, "during", 40).await;
    net.wait_for(&au, 310, PATIENCE).await.unwrap();
    net.wait_for(&fr, 40, PATIENCE).await.unwrap();

    net.start(&br).await;
    assert_eq!(
        net.vector(&br).get(&au),
        Some(&10),
        "restarted from its own durable state"
    );
    net.wait_for(&au, 310, PATIENCE).await.unwrap();
    net.wait_for(&fr, 40, PATIENCE).await.unwrap();
    net.wait_converged(PATIENCE).await.unwrap();
    assert_eq!(net.digest(&br), net.digest(&au));
    let check = intelmesh_store::verify_store(&net.node(&br).state().store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.entries, 350);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cyclic_topology_stores_each_entry_exactly_once() {
    use intelmesh_node::provision::{loopback_specs, star_links};
    let specs = loopback_specs("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).unwrap();
    let mut links = star_links(&specs);
    // The agencies also form a ring among themselves: every entry has several paths.
    links.push((org("AU-AFP"), org("BR-PF")));
    links.push((org("BR-PF"), org("FR-OCLCTIC")));
    links.push((org("FR-OCLCTIC"), org("AU-AFP")));
    let net = TestNet::new(specs, links, intelmesh_tests::net::fast_limits()).await;
    for o in ["AU-AFP", "BR-PF", "FR-OCLCTIC", "SG-IGCI"] {
        net.publish_domains(&org(o), "ring", 60).await;
    }
    for o in ["AU-AFP", "BR-PF", "FR-OCLCTIC", "SG-IGCI"] {
        net.wait_for(&org(o), 60, PATIENCE).await.unwrap();
    }
    net.wait_converged(PATIENCE).await.unwrap();
    for (o, node) in &net.running {
        let store = &node.state().store;
        let check = intelmesh_store::verify_store(store, None).unwrap();
        assert!(check.is_ok(), "{o}: {:?}", check.problems);
        assert_eq!(check.entries, 240, "{o} holds each entry once");
        assert_eq!(check.indicators, 240, "{o}");
        assert!(store.fork_proofs().unwrap().is_empty());
        // Duplicates arrived (several paths) yet each entry was appended once: the number of
        // entries received as new equals what was missing, not what was sent.
        let peers = node.state().peers.snapshot();
        let received: u64 = peers.values().map(|p| p.entries_received).sum();
        assert_eq!(
            received, 180,
            "{o} appended each foreign entry exactly once"
        );
    }
    let digests: Vec<_> = net.running.keys().map(|o| net.digest(o)).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn red_reaches_only_its_recipients_while_others_keep_complete_chains() {
    use intelmesh_core::{Distribution, Tlp};
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (au, br, fr, hub) = (
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
        org("SG-IGCI"),
    );
    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![br.clone()],
    };
    let secret = intelmesh_tests::net::domain_upsert("secret-c2.example");
    let open = intelmesh_tests::net::domain_upsert("public-c2.example");
    let seqs = net
        .node(&au)
        .state()
        .publish(vec![(red, secret), (intelmesh_tests::net::green(), open)])
        .await
        .unwrap();
    assert_eq!(seqs, vec![1, 2]);
    net.wait_for(&au, 2, PATIENCE).await.unwrap();

    let indicator = |v: &str| {
        intelmesh_core::indicator::normalize(intelmesh_core::IndicatorType::Domain, v).unwrap()
    };
    let secret_at = |o: &intelmesh_core::OrgId| {
        net.node(o)
            .state()
            .store
            .indicator(&indicator("secret-c2.example"))
            .unwrap()
    };
    assert!(secret_at(&br).is_some(), "the recipient has the payload");
    assert!(secret_at(&au).is_some(), "the origin has it");
    assert!(
        secret_at(&fr).is_none(),
        "a non-recipient has no trace of it"
    );
    for o in [&hub, &br, &fr] {
        assert!(
            net.node(o)
                .state()
                .store
                .indicator(&indicator("public-c2.example"))
                .unwrap()
                .is_some(),
            "{o} has the GREEN one"
        );
    }
    // FR holds the RED entry as a verifiable stub: the chain is complete.
    let stored = net.node(&fr).state().store.range(&au, 1, 2).unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored[0].payload.is_none(), "RED arrives as a stub");
    assert!(stored[1].payload.is_some());
    let check = intelmesh_store::verify_store(&net.node(&fr).state().store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
    assert_eq!(check.stubs, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_releases_the_store_even_with_clients_connected() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    net.publish_domains(&au, "x", 3).await;
    // A service keeps an API connection open, with a watch running, across the shutdown.
    let mut client = net.client(&au).await;
    let watch = client
        .watch(intelmesh_proto::v1::WatchRequest {
            from_start: true,
            ..Default::default()
        })
        .await
        .expect("watch opens");
    net.stop(&au).await;
    let data = &net.fed.nodes[&au].config.data_dir;
    let reopened = intelmesh_store::DiskStore::open(intelmesh_store::StoreConfig::new(data))
        .expect("the stopped node let go of its store");
    assert_eq!(reopened.vector().unwrap().get(&au), Some(&3));
    drop((watch, client));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_never_echoes_a_peers_entries_back_to_it() {
    use intelmesh_proto::v1 as pb;
    use intelmesh_tests::raw_peer::{provisioned_signer, signed_chain, Next};
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    net.wait_for_link(&hub, &br).await;
    net.stop(&au).await;
    net.wait_link_down(&hub, &au).await;

    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (log, _) = signed_chain(&signer, None, 20, "echo");
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello("AU-AFP", Default::default()).await);
    assert!(peer.entries(log).await);
    net.wait_for(&au, 20, PATIENCE).await.unwrap();
    // Entries do flow towards the raw peer: BR's must arrive, AU's own must not come back.
    net.publish_domains(&br, "echo", 5).await;
    let (mut own, mut from_br) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match peer.next(Duration::from_millis(300)).await {
            Next::Frame(pb::sync_frame::Frame::Entries(b)) => {
                for e in b.entries {
                    let h = intelmesh_node::state::header_of(&e).expect("header decodes");
                    if h.origin == "AU-AFP" {
                        own += 1;
                    } else if h.origin == "BR-PF" {
                        from_br += 1;
                    }
                }
            }
            Next::End(s) => panic!("link ended: {s:?}"),
            _ => {}
        }
    }
    assert_eq!(from_br, 5, "BR's entries reach the peer over this link");
    assert_eq!(own, 0, "the hub sent AU's own entries back to AU");
}

/// A node whose store is lost (moved aside, as the store of an older layout must be) signs
/// nothing until its peers have sent its own log back: signing at once would put a second
/// entry at a seq they hold, and every member would hold its log for a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_store_signs_again_only_once_its_own_log_is_back() {
    use intelmesh_node::provision::{loopback_specs, star_links};
    use intelmesh_node::state::NodeError;
    let specs = loopback_specs("SG-IGCI", &["AU-AFP"]).unwrap();
    let mut net = TestNet::provisioned(&specs, &star_links(&specs), &fast_limits());
    let (sg, au) = (org("SG-IGCI"), org("AU-AFP"));
    // Marks kept outside the data directory, which is what goes.
    for o in [&sg, &au] {
        let cfg = &mut net.fed.nodes.get_mut(o).unwrap().config;
        cfg.store.marks_dir = Some(cfg.data_dir.with_file_name("marks"));
        net.start(o).await;
    }
    net.publish_domains(&au, "before", 3).await;
    net.wait_for(&au, 3, PATIENCE).await.unwrap();

    net.stop(&sg).await;
    net.stop(&au).await;
    let data = net.fed.nodes[&au].config.data_dir.clone();
    std::fs::rename(&data, data.with_extension("aside")).unwrap();
    net.start(&au).await;
    assert_eq!(net.vector(&au).get(&au), None, "an empty store");
    let refused = net
        .node(&au)
        .state()
        .publish(vec![(
            intelmesh_tests::net::green(),
            intelmesh_tests::net::domain_upsert("new.au-afp.example"),
        )])
        .await
        .expect_err("nothing is signed while the own log is behind");
    assert!(
        matches!(
            refused,
            NodeError::OwnLogBehind {
                held: 0,
                signed: 3,
                ..
            }
        ),
        "{refused}"
    );

    // The hub returns and sends the own log back; then the node signs on from seq 4.
    net.start(&sg).await;
    net.wait_for(&au, 3, PATIENCE).await.unwrap();
    assert_eq!(net.publish_domains(&au, "after", 1).await, [4]);
    net.wait_for(&au, 4, PATIENCE).await.unwrap();
    net.wait_converged(PATIENCE).await.unwrap();
    assert_eq!(net.digest(&au), net.digest(&sg));
    for at in [&sg, &au] {
        let proofs = net.node(at).state().store.fork_proofs().unwrap();
        assert!(
            proofs.is_empty(),
            "{at} holds AU-AFP for a fork: {proofs:?}"
        );
    }
}
