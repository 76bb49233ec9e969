//! The audit trail of a hub's roster log, read through `Admin/Audit`'s function: a long
//! history comes in bounded answers that resume where the last one stopped.

use intelmesh_node::admin::audit::{audit, AUDIT_PAGE_BYTES};
use intelmesh_proto::v1 as pb;
use intelmesh_tests::roster_net::RosterNet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_is_audited_in_bounded_answers_each_version_once() {
    let net = RosterNet::new("HUB", &[]).await;
    // Versions whose reasons alone outgrow one answer.
    let reason = "r".repeat(50_000);
    let versions = 2 + AUDIT_PAGE_BYTES / reason.len();
    let mut last = 1;
    for i in 0..versions {
        let why = format!("{i} {reason}");
        last = net
            .publish(|doc| {
                if let Some(change) = doc.change.as_mut() {
                    change.reason = why;
                }
            })
            .await
            .version();
    }
    let state = net.node(&net.hub).state();
    let mut request = pb::AuditRequest::default();
    let mut seen = Vec::new();
    let mut answers = 0;
    loop {
        let answer = audit(state, &request).expect("audit");
        answers += 1;
        let bytes: usize = answer.events.iter().map(prost::Message::encoded_len).sum();
        assert!(
            bytes <= AUDIT_PAGE_BYTES + 64 * 1024,
            "an answer of {bytes} bytes"
        );
        seen.extend(answer.events.iter().map(|e| e.version));
        if answer.next_since_version == 0 {
            break;
        }
        assert_eq!(
            answer.next_since_version,
            seen.last().copied().unwrap_or(0) + 1,
            "the next answer starts after the last version shown"
        );
        request.since_version = answer.next_since_version;
    }
    assert!(
        answers >= 2,
        "{answers} answer(s) for {versions} long versions"
    );
    assert_eq!(seen, (1..=last).collect::<Vec<_>>());
    // The signers of a resumed answer's first version are still named.
    let resumed = audit(
        state,
        &pb::AuditRequest {
            since_version: last,
            ..Default::default()
        },
    )
    .expect("audit");
    assert_eq!(resumed.events.len(), 1);
    assert_eq!(resumed.events[0].signed_by.len(), 1);
}
