//! A hostile or broken peer against a real node: forged and tampered entries, replays,
//! equivocation, wrong certificates, floods, stalls and silence. Each test checks the status the
//! node answers with and that the honest state is untouched (or changed exactly as the rules
//! say), and where stated that the honest links keep flowing meanwhile.

use std::collections::BTreeMap;
use std::time::Duration;

use intelmesh_core::{OrgId, Signer};
use intelmesh_node::config::Limits;
use intelmesh_node::pki::{Ca, CaRole};
use intelmesh_proto::v1 as pb;
use intelmesh_store::Store;
use intelmesh_tests::net::{fast_limits, green, org, TestNet};
use intelmesh_tests::raw_peer::{
    check_status, provisioned_signer, reference_digest, signed_chain, Credentials, Next, RawPeer,
    Refused,
};
use prost::Message;
use tonic::Code;

use intelmesh_tests::raw_peer::PATIENCE;

#[path = "adversarial/overload.rs"]
mod overload;
const HUB: &str = "SG-IGCI";
const AU: &str = "AU-AFP";
const BR: &str = "BR-PF";

/// Hub with agencies AU and BR, AU's real node stopped so its certificate and key are free for
/// the raw peer (the hub accepts one link per peer).
async fn star_without_au() -> TestNet {
    let mut net = TestNet::star(HUB, &[AU, BR]).await;
    net.wait_for_link(&org(HUB), &org(BR)).await;
    net.stop(&org(AU)).await;
    net.wait_link_down(&org(HUB), &org(AU)).await;
    net
}

/// The next entry of `signer` after `head` carrying a sighting of `domain`.
fn sighting(signer: &Signer, head: intelmesh_core::Head, domain: &str) -> pb::SignedEntry {
    let payload = pb::Payload {
        body: Some(pb::payload::Body::Sighting(pb::Sighting {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: domain.into(),
            }),
            seen_at_unix_ms: 1_700_000_000_000,
            count: 3,
        })),
        ..Default::default()
    };
    signer
        .sign_next(
            Some(head),
            intelmesh_core::now_unix_ms(),
            &green(),
            &payload,
        )
        .0
}

/// The refusal of an attempt that must not get a link.
fn refusal(attempt: Result<RawPeer, Refused>) -> Refused {
    match attempt {
        Ok(_) => panic!("the link was accepted"),
        Err(r) => r,
    }
}

/// Counter `name` (without `_total`) of node `at`'s metrics.
fn counter(net: &TestNet, at: &OrgId, name: &str) -> u64 {
    let metrics = intelmesh_node::metrics::render(net.node(at).state()).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}_total ")));
    line.and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

fn stored(net: &TestNet, at: &OrgId, origin: &OrgId) -> Vec<pb::SignedEntry> {
    net.node(at).state().store.range(origin, 1, 10_000).unwrap()
}

fn empty_vector() -> BTreeMap<String, u64> {
    BTreeMap::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_tampered_entries_end_the_link_and_change_nothing() {
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (good, _) = signed_chain(&signer, None, 1, "good");
    let impostor = Signer::generate(au.clone());
    let (own_key, _) = signed_chain(&impostor, None, 1, "forged");

    // The impostor's signature under AU's real key id.
    let mut header = pb::EntryHeader::decode(own_key[0].header.as_ref()).unwrap();
    header.key_id = signer.key_id().0.to_vec();
    let claimed = impostor.sign_header(
        header.encode_to_vec(),
        own_key[0].payload.as_ref().map(|p| p.to_vec()),
    );

    let mut payload = good[0].clone();
    let mut bytes = payload.payload.as_ref().unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    payload.payload = Some(bytes.into());

    let mut tampered_header = good[0].clone();
    let mut h = pb::EntryHeader::decode(good[0].header.as_ref()).unwrap();
    h.issued_at_unix_ms -= 1;
    tampered_header.header = h.encode_to_vec().into();

    let cases = [
        (
            "another key, AU's key id",
            claimed,
            "AU-AFP#1: signature does not verify",
        ),
        (
            "tampered payload",
            payload,
            "AU-AFP#1: payload does not match the header's commitment",
        ),
        (
            "tampered header",
            tampered_header,
            "AU-AFP#1: signature does not verify",
        ),
    ];
    let before = net.digest(&hub);
    for (what, entry, needle) in cases {
        let mut peer = net.open_as(&hub, &au).await;
        assert!(peer.hello(AU, empty_vector()).await);
        assert!(peer.entries(vec![entry]).await);
        let end = peer.end_status(PATIENCE).await;
        check_status(&end, Code::InvalidArgument, needle).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            end.message().contains("fails verification"),
            "{what}: {}",
            end.message()
        );
        assert_eq!(net.digest(&hub), before, "{what}: hub state changed");
        assert_eq!(net.vector(&hub).get(&au), None, "{what}: AU's log grew");
        assert!(
            net.wait_link_down(&hub, &au).await.contains(needle),
            "{what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_entry_in_a_batch_keeps_only_the_verified_ones_before_it() {
    let net = star_without_au().await;
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (good, head) = signed_chain(&signer, None, 2, "good");
    let impostor = Signer::generate(au.clone());
    // Seq 3 of AU's chain, chained correctly but signed by someone else under AU's key id.
    let real3 = signed_chain(&signer, head, 1, "good").0.remove(0);
    let forged3 = impostor.sign_header(
        real3.header.to_vec(),
        real3.payload.as_ref().map(|p| p.to_vec()),
    );

    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(
        peer.entries(vec![good[0].clone(), good[1].clone(), forged3])
            .await
    );
    let end = peer.end_status(PATIENCE).await;
    check_status(
        &end,
        Code::InvalidArgument,
        "AU-AFP#3: signature does not verify",
    )
    .unwrap();

    // `NodeState::ingest` applies what verified and refuses the rest, then the link ends:
    // AU#1 and #2 are durable byte for byte, #3 is nowhere.
    assert_eq!(net.vector(&hub).get(&au), Some(&2));
    assert_eq!(stored(&net, &hub, &au), good);
    assert_eq!(net.digest(&hub), reference_digest(&good, &[&signer]));
    // The verified entries travel on to the other agency like any others.
    net.wait_for(&au, 2, PATIENCE).await.unwrap();
    assert_eq!(stored(&net, &br, &au), good);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replayed_entries_are_duplicates_and_the_link_stays_up() {
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (mut log, head) = signed_chain(&signer, None, 2, "replay");
    // A sighting: were a replay merged again, its count would add up and the digest move.
    log.push(sighting(&signer, head.unwrap(), "replay-1.au-afp.example"));

    let mut peer = net.open_as(&hub, &au).await;
    let (received_before, error_before) = {
        let s = net.peer_state(&hub, &au);
        (s.entries_received, s.last_error)
    };
    let counted = |name: &str| counter(&net, &hub, name);
    let verified_before = counted("intelmesh_entries_verified");
    let held_before = counted("intelmesh_entries_held_already");
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(peer.entries(log.clone()).await);
    peer.until_progress(AU, 3, PATIENCE).await.unwrap();
    let once = net.digest(&hub);
    assert_eq!(once, reference_digest(&log, &[&signer]));

    // Replays: the whole batch, then a single old entry, then a new one to prove the link
    // still takes entries (frames on a link are handled in order).
    assert!(peer.entries(log.clone()).await);
    assert!(peer.entries(vec![log[2].clone()]).await);
    let head = intelmesh_core::Head {
        seq: 3,
        hash: intelmesh_core::entry::header_hash(&log[2].header),
    };
    let (next, _) = signed_chain(&signer, Some(head), 1, "after");
    assert!(peer.entries(next.clone()).await);
    peer.until_progress(AU, 4, PATIENCE).await.unwrap();

    log.extend(next);
    assert_eq!(net.digest(&hub), reference_digest(&log, &[&signer]));
    assert_eq!(stored(&net, &hub, &au), log);
    // The link counts what a frame appended just after applying it, and the progress may
    // come first: waited for. Were the replays counted, the count would pass 4 at once.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut state = net.peer_state(&hub, &au);
    while state.entries_received - received_before < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        state = net.peer_state(&hub, &au);
    }
    assert!(state.connected, "replays must not cut the link: {state:?}");
    assert_eq!(
        state.entries_received - received_before,
        4,
        "duplicates are not counted as received"
    );
    assert_eq!(state.last_error, error_before, "no new link error");
    // A replay costs no signature check: only the 4 entries new to the hub were verified.
    assert_eq!(counted("intelmesh_entries_verified") - verified_before, 4);
    assert_eq!(counted("intelmesh_entries_held_already") - held_before, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stubs_of_large_held_entries_make_reads_only_up_to_what_they_brought() {
    // A stub of a held entry is a duplicate found by a store read; scattered stubs of large
    // entries must not buy the sender reads worth a thousand times their bytes.
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (mut log, mut head) = (Vec::new(), None);
    for n in 1..=40u64 {
        let mut payload = intelmesh_tests::net::domain_upsert(&format!("big-{n}.au-afp.example"));
        if let Some(pb::payload::Body::Upsert(u)) = &mut payload.body {
            u.description = "x".repeat(60_000);
        }
        let now = intelmesh_core::now_unix_ms();
        let (entry, next) = signer.sign_next(head, now, &green(), &payload);
        log.push(entry);
        head = Some(next);
    }
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    for part in log.chunks(10) {
        assert!(peer.entries(part.to_vec()).await);
    }
    peer.until_progress(AU, 40, PATIENCE).await.unwrap();
    let verified_before = counter(&net, &hub, "intelmesh_entries_verified");
    let held_before = counter(&net, &hub, "intelmesh_entries_held_already");

    // Every other entry's stub, newest first: no two name consecutive seqs.
    let stubs: Vec<_> = log
        .iter()
        .rev()
        .step_by(2)
        .map(|e| pb::SignedEntry {
            payload: None,
            ..e.clone()
        })
        .collect();
    assert!(peer.entries(stubs).await);
    let (next, _) = signed_chain(&signer, head, 1, "after");
    assert!(peer.entries(next).await);
    peer.until_progress(AU, 41, PATIENCE).await.unwrap();

    let held = counter(&net, &hub, "intelmesh_entries_held_already") - held_before;
    let verified = counter(&net, &hub, "intelmesh_entries_verified") - verified_before;
    assert_eq!(held + verified, 21, "each stub once, and the new entry");
    // 20 stubs of about 300 bytes buy reads of 4 times their bytes plus 1 MiB: 17 entries of
    // 60 KB. The others are verified as any entry is, and found duplicates.
    assert!((10..20).contains(&held), "{held} held already");
    assert!(net.peer_state(&hub, &au).connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_issued_ahead_of_the_clock_restarts_the_link_and_is_taken_when_its_time_comes() {
    // A relay whose clock runs ahead of this node's forwards such an entry in good faith: not
    // a forgery, but kept up the link would never carry it again (its sender counts it
    // delivered), so the link restarts, retriable, and the entry comes again.
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let payload = pb::Payload {
        body: Some(pb::payload::Body::Sighting(pb::Sighting {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: "early.au-afp.example".into(),
            }),
            seen_at_unix_ms: 1_700_000_000_000,
            count: 1,
        })),
        ..Default::default()
    };
    // Past the allowed skew by two seconds: refused now, taken two seconds later.
    let skew = intelmesh_core::VerifyConfig::DEFAULT_SKEW_MS;
    let ahead = intelmesh_core::now_unix_ms() + skew + 2_000;
    let (early, _) = signer.sign_next(None, ahead, &green(), &payload);

    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(peer.entries(vec![early.clone()]).await);
    let end = peer.end_status(PATIENCE).await;
    check_status(&end, Code::Unavailable, "dated ahead of this node's clock").unwrap();
    assert!(
        stored(&net, &hub, &au).is_empty(),
        "the early entry is not stored"
    );

    // Sent again on a new link once its time has come, as a peer does from the hub's hello.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(peer.entries(vec![early.clone()]).await);
    peer.until_progress(AU, 1, PATIENCE).await.unwrap();
    assert_eq!(stored(&net, &hub, &au), vec![early]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn equivocation_is_refused_proven_and_flagged_and_the_link_stays_up() {
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));
    let signer = provisioned_signer(&net.fed.nodes[&au]);
    let (kept, head) = signed_chain(&signer, None, 1, "kept");
    let (other, _) = signed_chain(&signer, None, 1, "other");
    assert_ne!(kept[0].header, other[0].header);

    let mut peer = net.open_as(&hub, &au).await;
    let error_before = net.peer_state(&hub, &au).last_error;
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(peer.entries(kept.clone()).await);
    peer.until_progress(AU, 1, PATIENCE).await.unwrap();
    let before = net.digest(&hub);

    assert!(peer.entries(other.clone()).await);
    let (next, _) = signed_chain(&signer, head, 1, "kept");
    assert!(peer.entries(next.clone()).await);
    peer.until_progress(AU, 2, PATIENCE).await.unwrap();

    let store = &net.node(&hub).state().store;
    let proofs = store.fork_proofs().unwrap();
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    let proof = &proofs[0];
    assert_eq!((proof.origin.as_str(), proof.seq), (AU, 1));
    assert_eq!(
        proof.kept.as_ref().map(|e| &e.header),
        Some(&kept[0].header)
    );
    assert_eq!(
        proof.conflicting.as_ref().map(|e| &e.header),
        Some(&other[0].header)
    );
    assert_eq!(store.flagged_origins().unwrap(), vec![au.clone()]);

    // The second version changed nothing; the chain went on from the first.
    let mut log = kept;
    log.extend(next);
    assert_eq!(stored(&net, &hub, &au), log);
    assert_ne!(net.digest(&hub), before, "AU#2 was appended");
    assert_eq!(net.digest(&hub), reference_digest(&log, &[&signer]));
    let state = net.peer_state(&hub, &au);
    assert!(state.connected, "a fork is the origin's doing: {state:?}");
    assert_eq!(state.last_error, error_before, "no new link error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_certificates_and_claims_are_refused() {
    let net = star_without_au().await;
    let (hub, au, br) = (org(HUB), org(AU), org(BR));
    let before = net.digest(&hub);
    let au_before = net.peer_state(&hub, &au);

    // Another CA's certificate for AU: the TLS handshake fails, no call reaches the service.
    let rogue = Ca::generate_named(&CaRole::Federation, "rogue CA").unwrap();
    let creds = Credentials::from_issued(&rogue.issue_node(&au).unwrap());
    let refused = refusal(RawPeer::open(&net.target(&hub), &creds).await);
    assert!(refused.is_transport_refusal(), "{refused:?}");

    // The hub's own service client certificate: signed by its service CA, which the federation
    // listener does not trust.
    let node = &net.fed.nodes[&hub];
    let creds = Credentials::from_files(&node.client_cert, &node.client_key);
    let refused = refusal(RawPeer::open(&net.target(&hub), &creds).await);
    assert!(refused.is_transport_refusal(), "{refused:?}");

    let au_now = net.peer_state(&hub, &au);
    assert!(
        !au_now.connected && au_now.last_error == au_before.last_error,
        "{au_now:?}"
    );

    // A service certificate from the federation CA itself gets through TLS, not into Federation.
    let fed_ca = Ca::load(
        &net.fed.federation_ca,
        &net.fed.dir.join("federation-ca.key"),
    )
    .unwrap();
    let creds = Credentials::from_issued(&fed_ca.issue_service(&au, "soc").unwrap());
    let refused = refusal(RawPeer::open(&net.target(&hub), &creds).await);
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains(
            "Federation needs a certificate of role node; service AU-AFP/soc presented one of role service"
        ),
        "{refused:?}"
    );
    // Nor does an admin certificate (hub operators call Admin on the API listener only).
    let admin = fed_ca
        .issue_admin(&au, "alice", intelmesh_node::pki::Validity::default())
        .unwrap();
    let refused =
        refusal(RawPeer::open(&net.target(&hub), &Credentials::from_issued(&admin)).await);
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("Federation needs a certificate of role node; admin AU-AFP/alice presented one of role admin"),
        "{refused:?}"
    );

    // A valid node certificate of an org the node is not configured to peer with.
    let creds = Credentials::from_issued(&fed_ca.issue_node(&org("XX-ROGUE")).unwrap());
    let refused = refusal(RawPeer::open(&net.target(&hub), &creds).await);
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("XX-ROGUE is not a configured peer of SG-IGCI"),
        "{refused:?}"
    );
    // AU is a member, but BR only peers with the hub.
    let refused = refusal(RawPeer::open(&net.target(&br), &net.creds(&au)).await);
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("AU-AFP is not a configured peer of BR-PF"),
        "{refused:?}"
    );

    // AU's certificate, claiming to be BR in the hello.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(BR, empty_vector()).await);
    let end = peer.end_status(PATIENCE).await;
    check_status(
        &end,
        Code::PermissionDenied,
        "hello says \"BR-PF\" but the certificate says AU-AFP",
    )
    .unwrap();

    assert_eq!(net.digest(&hub), before);
    assert!(
        net.peer_state(&hub, &br).connected,
        "BR's link was disturbed"
    );
    let seqs = net.publish_domains(&br, "after-certs", 3).await;
    net.wait_for(&br, seqs[2], PATIENCE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protocol_violations_end_the_link_with_invalid_argument() {
    let net = star_without_au().await;
    let (hub, au) = (org(HUB), org(AU));

    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.entries(vec![]).await);
    let end = peer.end_status(PATIENCE).await;
    check_status(&end, Code::InvalidArgument, "first frame must be a hello").unwrap();

    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(peer.hello(AU, empty_vector()).await);
    let end = peer.end_status(PATIENCE).await;
    check_status(&end, Code::InvalidArgument, "second hello").unwrap();

    // A frame of empty entries, 2 bytes each on the wire, about 100 decoded: refused by its
    // shape before it is decoded, before the count limits could see it.
    let mut peer = net.open_as(&hub, &au).await;
    assert!(peer.hello(AU, empty_vector()).await);
    assert!(
        peer.entries(vec![pb::SignedEntry::default(); 100_000])
            .await
    );
    let end = peer.end_status(PATIENCE).await;
    check_status(&end, Code::InvalidArgument, "SignedEntry of 0 bytes").unwrap();
    let state = net.peer_state(&hub, &au);
    assert!(!state.connected, "{state:?}");
}
