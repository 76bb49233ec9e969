//! A hub that relays AMBER+STRICT and RED entries it cannot read: the origin seals them to its
//! recipients (HPKE), the hub stores and forwards the envelope, the recipients open it, and no
//! byte of the values reaches the hub's disk. Real nodes, real mTLS, real stores on disk.

use std::time::{Duration, Instant};

use intelmesh_core::sealed::EncryptionSecret;
use intelmesh_core::{Distribution, OrgId, Tlp};
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp as PbTlp};
use intelmesh_store::Store;
use intelmesh_tests::api::{dist, get, submit, submit_refused, upsert, Client, PATIENCE};
use intelmesh_tests::bytes_on_disk::found_in_files;
use intelmesh_tests::net::{domain_upsert, org, TestNet};
use prost::Message;

const RED_VALUE: &str = "198.51.100.23";
const STRICT_VALUE: &str = "strict-blind-c2.example";

fn restricted(ty: Ty, value: &str, tlp: PbTlp, to: &[&str]) -> pb::Submission {
    let mut s = upsert(ty, value, tlp, &["bilateral"]);
    s.distribution = dist(tlp, to);
    s
}

/// Whether `c`'s node shows `value` as an indicator someone asserts.
async fn reads(c: &mut Client, ty: Ty, value: &str) -> bool {
    get(c, ty, value)
        .await
        .state
        .is_some_and(|s| !s.assertions.is_empty())
}

async fn eventually_reads(c: &mut Client, ty: Ty, value: &str, who: &str) {
    let start = Instant::now();
    while !reads(c, ty, value).await {
        assert!(start.elapsed() < PATIENCE, "{who} never read {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stored(net: &TestNet, at: &OrgId, origin: &OrgId, seq: u64) -> pb::SignedEntry {
    let mut got = net.node(at).state().store.range(origin, seq, 1).unwrap();
    assert_eq!(got.len(), 1, "{at} holds {origin}#{seq}");
    got.remove(0)
}

fn sealed(entry: &pb::SignedEntry) -> bool {
    pb::EntryHeader::decode(entry.header.as_ref())
        .unwrap()
        .sealed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_relays_restricted_entries_it_cannot_read() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF", "FR-OCLCTIC"]).await;
    let (hub, au, br, fr) = (
        org("SG-IGCI"),
        org("AU-AFP"),
        org("BR-PF"),
        org("FR-OCLCTIC"),
    );
    // AU and BR are linked only through the hub.
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &["BR-PF"]),
            restricted(Ty::Domain, STRICT_VALUE, PbTlp::AmberStrict, &["BR-PF"]),
        ],
    )
    .await;
    net.wait_for(&au, 2, PATIENCE).await.unwrap();

    let mut at_br = net.client(&br).await;
    eventually_reads(&mut at_br, Ty::Ipv4, RED_VALUE, "BR").await;
    eventually_reads(&mut at_br, Ty::Domain, STRICT_VALUE, "BR").await;
    assert!(
        reads(&mut at_au, Ty::Ipv4, RED_VALUE).await,
        "the origin reads its own"
    );

    for seq in [1, 2] {
        let at_hub = stored(&net, &hub, &au, seq);
        assert!(
            at_hub.payload.is_some() && sealed(&at_hub),
            "the hub holds AU#{seq} sealed"
        );
        assert!(
            stored(&net, &fr, &au, seq).payload.is_none(),
            "FR holds a stub"
        );
    }
    let mut at_hub = net.client(&hub).await;
    let mut at_fr = net.client(&fr).await;
    for (ty, value) in [(Ty::Ipv4, RED_VALUE), (Ty::Domain, STRICT_VALUE)] {
        assert!(
            !reads(&mut at_hub, ty, value).await,
            "the hub's API shows {value}"
        );
        assert!(
            !reads(&mut at_fr, ty, value).await,
            "FR's API shows {value}"
        );
    }

    // The raw bytes: nowhere under the hub's or FR's data directory, while the same search
    // finds them at the recipient (so it would find them at the hub if they were there).
    for at in [&hub, &au, &br, &fr] {
        net.stop(at).await;
    }
    let data = |at: &OrgId| net.fed.nodes[at].config.data_dir.clone();
    for value in [RED_VALUE, STRICT_VALUE] {
        assert!(
            found_in_files(&data(&br), value.as_bytes()),
            "the search finds {value} at BR"
        );
        assert!(
            !found_in_files(&data(&hub), value.as_bytes()),
            "{value} on the hub's disk"
        );
        assert!(
            !found_in_files(&data(&fr), value.as_bytes()),
            "{value} on FR's disk"
        );
    }
    // The recipient's store checks out: the index rebuilt from the log (with what it opened)
    // equals the stored one.
    let store =
        intelmesh_store::DiskStore::open(intelmesh_store::StoreConfig::new(data(&br))).unwrap();
    let check = intelmesh_store::verify_store(&store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_offline_recipient_gets_the_envelope_from_the_hub_and_opens_it() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    net.stop(&br).await;
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &["BR-PF"])],
    )
    .await;
    net.wait_for(&au, 1, PATIENCE).await.unwrap();
    // The origin goes away before the recipient comes back: only the hub can deliver it.
    net.stop(&au).await;
    net.start(&br).await;
    let mut at_br = net.client(&br).await;
    eventually_reads(&mut at_br, Ty::Ipv4, RED_VALUE, "BR").await;
    // Once opened, a restart reads it from the store (what it opened to is kept).
    net.stop(&br).await;
    net.start(&br).await;
    let mut at_br = net.client(&br).await;
    assert!(
        reads(&mut at_br, Ty::Ipv4, RED_VALUE).await,
        "BR forgot it after a restart"
    );
}

/// A node given an encryption key of its own seals always: once its key list holds no
/// encryption key at all (an edit, a version that lost them), its restricted entries are
/// refused, never signed in clear for the hub to relay; open ones go out as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_with_an_encryption_key_refuses_restricted_entries_it_cannot_seal() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let au = org("AU-AFP");
    let state = net.node(&au).state();
    let with_keys = state.keys();
    assert!(with_keys.seals());
    let mut without = intelmesh_core::StaticKeys::default();
    for (member, key, range) in with_keys.ranges() {
        without.insert_range(member.clone(), *key, range);
    }
    state
        .replace_keys(without)
        .await
        .expect("the same signing keys");
    assert!(!state.keys().seals());
    let mut at_au = net.client(&au).await;
    let refused = submit_refused(
        &mut at_au,
        vec![restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &["BR-PF"])],
    )
    .await;
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(refused.message().contains("seal"), "{refused:?}");
    assert!(state.store.head(&au).unwrap().is_none(), "nothing signed");
    let open = submit(
        &mut at_au,
        vec![upsert(Ty::Domain, "open.example", PbTlp::Green, &[])],
    );
    assert_eq!(open.await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_red_entry_for_its_origin_alone_never_leaves_it_in_full() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au) = (org("SG-IGCI"), org("AU-AFP"));
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &[])],
    )
    .await;
    net.wait_for(&au, 1, PATIENCE).await.unwrap();
    assert!(
        stored(&net, &hub, &au, 1).payload.is_none(),
        "the hub holds only the stub"
    );
    assert!(reads(&mut at_au, Ty::Ipv4, RED_VALUE).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_hub_reads_what_is_sealed_to_it_and_only_that() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![
            restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &["SG-IGCI"]),
            restricted(Ty::Domain, STRICT_VALUE, PbTlp::AmberStrict, &["BR-PF"]),
        ],
    )
    .await;
    net.wait_for(&au, 2, PATIENCE).await.unwrap();
    let mut at_hub = net.client(&hub).await;
    eventually_reads(&mut at_hub, Ty::Ipv4, RED_VALUE, "the hub (a recipient)").await;
    let mut at_br = net.client(&br).await;
    eventually_reads(&mut at_br, Ty::Domain, STRICT_VALUE, "BR").await;
    assert!(
        !reads(&mut at_hub, Ty::Domain, STRICT_VALUE).await,
        "not BR's"
    );
    assert!(
        !reads(&mut at_br, Ty::Ipv4, RED_VALUE).await,
        "not the hub's"
    );
    assert!(
        stored(&net, &br, &au, 1).payload.is_none(),
        "BR holds the hub's as a stub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recipient_without_an_encryption_key_cannot_be_named() {
    let specs = intelmesh_node::provision::loopback_specs("SG-IGCI", &["AU-AFP", "BR-PF"]).unwrap();
    let links = intelmesh_node::provision::star_links(&specs);
    let mut net = TestNet::provisioned(&specs, &links, &intelmesh_tests::net::fast_limits());
    // BR's encryption key taken out of the key list AU reads.
    let registry = net.fed.dir.join("registry.toml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let br_key = text
        .split("[[origin]]")
        .find(|part| part.contains("\"BR-PF\"") && part.contains("encryption_key"))
        .unwrap()
        .to_string();
    std::fs::write(&registry, text.replace(&format!("[[origin]]{br_key}"), "")).unwrap();
    let au = org("AU-AFP");
    net.start(&au).await;
    let mut at_au = net.client(&au).await;
    let refused = submit_refused(
        &mut at_au,
        vec![restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &["BR-PF"])],
    )
    .await;
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("BR-PF has no encryption key"),
        "{}",
        refused.message()
    );
    // Nothing was signed, and GREEN still goes.
    assert_eq!(net.vector(&au).get(&au), None);
    submit(
        &mut at_au,
        vec![upsert(Ty::Domain, STRICT_VALUE, PbTlp::Green, &[])],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_rotation_old_and_new_envelopes_both_open() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    net.stop(&br).await;
    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![br.clone()],
    };
    let publish = |value: &'static str| {
        let state = net.node(&au).state().clone();
        let red = red.clone();
        async move {
            state
                .publish(vec![(red, domain_upsert(value))])
                .await
                .unwrap()
        }
    };
    publish("before-rotation.example").await;

    // BR rotates while offline: the old key is kept beside the new one, and the key list
    // names the new one.
    let br_key = net.fed.nodes[&br].config.encryption_key.clone().unwrap();
    let old = EncryptionSecret::from_hex(&std::fs::read_to_string(&br_key).unwrap()).unwrap();
    let kept = br_key.with_file_name(format!("encryption.key.old-{}", old.public().id()));
    std::fs::rename(&br_key, &kept).unwrap();
    let new = EncryptionSecret::generate();
    intelmesh_node::encryption_keys::write(&br_key, &new).unwrap();
    let registry = net.fed.dir.join("registry.toml");
    let text = std::fs::read_to_string(&registry).unwrap();
    let text = text.replace(
        &hex::encode(old.public().as_bytes()),
        &hex::encode(new.public().as_bytes()),
    );
    std::fs::write(&registry, text).unwrap();
    net.node(&au).state().reload_keys().await.unwrap();
    publish("after-rotation.example").await;
    let hub = org("SG-IGCI");
    net.wait_for(&au, 2, PATIENCE).await.unwrap();
    assert_ne!(
        stored(&net, &hub, &au, 1).payload,
        None,
        "the hub holds the first envelope"
    );

    net.start(&br).await;
    let mut at_br = net.client(&br).await;
    eventually_reads(
        &mut at_br,
        Ty::Domain,
        "before-rotation.example",
        "BR (old key)",
    )
    .await;
    eventually_reads(
        &mut at_br,
        Ty::Domain,
        "after-rotation.example",
        "BR (new key)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restricted_entries_signed_before_sealing_stay_readable() {
    use intelmesh_tests::raw_peer::provisioned_signer;
    let net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (org("SG-IGCI"), org("AU-AFP"), org("BR-PF"));
    // An entry as a node signed it before sealing existed: RED in plaintext.
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let red = Distribution {
        tlp: Tlp::Red,
        recipients: vec![br.clone()],
    };
    let (legacy, _) = signer.sign_next(
        None,
        intelmesh_core::now_unix_ms(),
        &red,
        &domain_upsert("legacy-red.example"),
    );
    assert!(!sealed(&legacy));
    let report = net.node(&hub).state().ingest(vec![legacy]).await.unwrap();
    assert_eq!(report.appended, 1, "{report:?}");
    let mut at_br = net.client(&br).await;
    eventually_reads(&mut at_br, Ty::Domain, "legacy-red.example", "BR").await;
}

/// A recipient whose encryption key was missing when a RED entry came keeps it unopened (a
/// valid link of its origin's chain, which no peer sends again); once its key is back, the
/// next start opens it, and it reads the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_that_did_not_open_opens_once_the_key_is_back() {
    let mut net = TestNet::star("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    net.stop(&br).await;
    let br_key = net.fed.nodes[&br].config.encryption_key.clone().unwrap();
    let kept = br_key.with_extension("kept");
    std::fs::rename(&br_key, &kept).unwrap();
    intelmesh_node::encryption_keys::write(&br_key, &EncryptionSecret::generate()).unwrap();
    net.start(&br).await;
    let mut at_au = net.client(&au).await;
    submit(
        &mut at_au,
        vec![restricted(Ty::Ipv4, RED_VALUE, PbTlp::Red, &["BR-PF"])],
    )
    .await;
    net.wait_converged(PATIENCE).await.unwrap();
    let mut at_br = net.client(&br).await;
    assert!(
        !reads(&mut at_br, Ty::Ipv4, RED_VALUE).await,
        "opened without its key"
    );
    assert!(sealed(&stored(&net, &br, &au, 1)), "kept as the envelope");

    net.stop(&br).await;
    std::fs::rename(&kept, &br_key).unwrap();
    net.start(&br).await;
    let mut at_br = net.client(&br).await;
    eventually_reads(&mut at_br, Ty::Ipv4, RED_VALUE, "BR, its key back").await;
    let check = intelmesh_store::verify_store(&net.node(&br).state().store, None).unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}
