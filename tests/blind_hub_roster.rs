//! The blind hub in roster mode: members' encryption keys come from the roster, a member
//! rotates its key through the operators (`SetEncryptionKey`), and a suspended member is sealed
//! nothing new. Real nodes, real mTLS, real stores on disk.

use std::time::{Duration, Instant};

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use intelmesh_store::Store;
use intelmesh_tests::api::{dist, get, submit, submit_refused, upsert, Client, PATIENCE};
use intelmesh_tests::roster_net::{peer, signing_key, RosterNet};
use prost::Message;

fn red_for_br(value: &str) -> pb::Submission {
    let mut s = upsert(Ty::Domain, value, Tlp::Red, &["bilateral"]);
    s.distribution = dist(Tlp::Red, &["BR-PF"]);
    s
}

async fn reads(c: &mut Client, value: &str) -> bool {
    get(c, Ty::Domain, value)
        .await
        .state
        .is_some_and(|s| !s.assertions.is_empty())
}

async fn eventually_reads(c: &mut Client, value: &str) {
    let start = Instant::now();
    while !reads(c, value).await {
        assert!(start.elapsed() < PATIENCE, "never read {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The key id of `reader`'s wrap in `origin`'s sealed entry `seq` as `at` stores it.
fn sealed_to(net: &RosterNet, at: &OrgId, origin: &OrgId, seq: u64, reader: &str) -> Vec<u8> {
    let entry = net
        .node(at)
        .state()
        .store
        .range(origin, seq, 1)
        .unwrap()
        .remove(0);
    let header = pb::EntryHeader::decode(entry.header.as_ref()).unwrap();
    assert!(header.sealed, "{origin}#{seq} is sealed");
    let envelope = pb::SealedPayload::decode(entry.payload.unwrap().as_ref()).unwrap();
    let wrap = envelope.readers.iter().find(|r| r.org == reader).unwrap();
    wrap.key_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roster_keys_seal_rotate_and_stop_at_a_suspension() {
    let mut net = RosterNet::new("SG-IGCI", &["AU-AFP", "BR-PF"]).await;
    let (hub, au, br) = (
        net.hub.clone(),
        OrgId::parse("AU-AFP").unwrap(),
        OrgId::parse("BR-PF").unwrap(),
    );
    for a in [&au, &br] {
        net.start(a).await;
    }
    net.admit_all(&[&au, &br]).await;
    for a in [&au, &br] {
        net.wait_status(a, PATIENCE, |s| {
            s.roster_version == 2 && peer(s, &hub).is_some_and(|p| p.connected)
        })
        .await
        .unwrap();
    }
    let mut at_au = net.client(&au).await;
    let mut at_br = net.client(&br).await;
    submit(&mut at_au, vec![red_for_br("before-rotation.example")]).await;
    eventually_reads(&mut at_br, "before-rotation.example").await;
    let first_key = net.roster(&au).encryption_key(&br).unwrap();
    assert_eq!(sealed_to(&net, &hub, &au, 1, "BR-PF"), first_key.id().0);
    let mut at_hub = net.client(&hub).await;
    assert!(!reads(&mut at_hub, "before-rotation.example").await);

    // BR rotates its encryption key: new key files, a request signed with its signing key,
    // published by the operators. Its node takes the new key when the version arrives.
    let key_file = net.fed.nodes[&br].config.encryption_key.clone().unwrap();
    let new_key = intelmesh_node::encryption_keys::rotate(&key_file).unwrap();
    let request = intelmesh_roster::enrolment::sign_encryption_key(
        &br,
        &signing_key(&net.fed.nodes[&br].dir),
        &new_key,
        intelmesh_core::now_unix_ms(),
    );
    let version = net
        .apply(&[pb::Action {
            action: Some(pb::action::Action::SetEncryptionKey(pb::SetEncryptionKey {
                request: Some(request),
            })),
        }])
        .await
        .version();
    for a in [&au, &br] {
        net.wait_status(a, PATIENCE, |s| s.roster_version >= version)
            .await
            .unwrap();
    }
    assert_eq!(net.roster(&au).encryption_key(&br), Some(new_key));
    let seq = submit(&mut at_au, vec![red_for_br("after-rotation.example")]).await[0].seq;
    eventually_reads(&mut at_br, "after-rotation.example").await;
    assert_eq!(sealed_to(&net, &au, &au, seq, "BR-PF"), new_key.id().0);
    // What was sealed to the old key stays readable after a restart (kept opened, and the old
    // key kept beside the new one).
    net.stop(&br).await;
    net.start(&br).await;
    let mut at_br = net.client(&br).await;
    assert!(reads(&mut at_br, "before-rotation.example").await);

    // A suspended member has no encryption key in force: nothing new is sealed to it.
    net.suspend(&br).await;
    net.wait_status(&au, PATIENCE, |s| s.roster_version > version)
        .await
        .unwrap();
    let refused = submit_refused(&mut at_au, vec![red_for_br("after-suspension.example")]).await;
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("BR-PF has no encryption key"),
        "{}",
        refused.message()
    );
}
