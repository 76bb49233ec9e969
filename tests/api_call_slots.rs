//! The API's calls in flight per client certificate (`[limits] calls_per_client`): a call
//! holds its slot while its request is read and handled, and until its answer is sent, so a
//! client can hold neither requests nor unread answers past its share.

use intelmesh_core::OrgId;
use intelmesh_node::config::Limits;
use intelmesh_proto::v1 as pb;
use intelmesh_tests::net::{fast_limits, org, TestNet};
use intelmesh_tests::raw_peer::PATIENCE;
use prost::Message;
use tokio::time::Instant;

const HUB: &str = "SG-IGCI";

/// A node alone whose client certificates may have 2 calls in flight, and its org.
async fn two_calls_per_client() -> (TestNet, OrgId) {
    let limits = Limits {
        calls_per_client: 2,
        ..fast_limits()
    };
    (TestNet::alone(HUB, limits).await, org(HUB))
}

/// A lookup of one value.
fn one_lookup() -> pb::LookupRequest {
    pb::LookupRequest {
        values: vec!["evil.example".into()],
    }
}

/// The headers of a `Lookup` call to `node`'s API.
fn lookup_request(net: &TestNet, node: &OrgId) -> http::Request<()> {
    http::Request::post(format!(
        "https://{}/intelmesh.v1.Indicators/Lookup",
        net.node(node).api_addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(())
    .unwrap()
}

/// A `Lookup` asked on a connection of its own that lets the node send no answer data (a
/// stream window of 0): the node answers, and the answer waits for a window never opened.
async fn unread_answer(
    net: &TestNet,
    node: &OrgId,
) -> (
    h2::client::SendRequest<prost::bytes::Bytes>,
    h2::client::ResponseFuture,
) {
    let stream = net.service_tls(node, net.node(node).api_addr).await;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake(stream)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = lookup_request(net, node);
    let message = one_lookup().encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let (answer, mut body) = send.send_request(request, false).unwrap();
    body.send_data(frame.into(), true).unwrap();
    (send, answer)
}

/// Calls a client may make once `held` are gone, within [`PATIENCE`].
async fn served_again(net: &TestNet, node: &OrgId) {
    let mut client = net.client(node).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let call = client.lookup(one_lookup());
        match call.await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the ended calls kept their slots: {e}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The call past the share: refused, naming why.
async fn assert_refused(net: &TestNet, node: &OrgId) {
    let refused = net
        .client(node)
        .await
        .lookup(one_lookup())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(
        refused.message().contains("calls in flight"),
        "{}",
        refused.message()
    );
}

/// A call to the node's API whose request never ends: its handler waits for the body. With
/// the answer, which comes only if the node refuses the call.
async fn unfinished_call(
    net: &TestNet,
    node: &OrgId,
) -> (
    h2::client::SendRequest<prost::bytes::Bytes>,
    h2::SendStream<prost::bytes::Bytes>,
    h2::client::ResponseFuture,
) {
    let stream = net.service_tls(node, net.node(node).api_addr).await;
    let (send, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = lookup_request(net, node);
    let (answer, body) = send.send_request(request, false).unwrap();
    (send, body, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_certificate_holds_at_most_its_share_of_calls_in_flight() {
    let (net, hub) = two_calls_per_client().await;
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(unfinished_call(&net, &hub).await);
    }
    // Whichever of the three reaches the node last is past the share of two and answered at
    // once: then the other two hold their slots, however slowly the machine runs.
    let answers = calls.iter_mut().map(|(_, _, answer)| answer);
    let (answer, refused, _) = tokio::time::timeout(PATIENCE, futures::future::select_all(answers))
        .await
        .expect("the call past the share is answered");
    let answer = answer.expect("an answer");
    assert_eq!(
        answer.headers().get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"8"[..]),
        "RESOURCE_EXHAUSTED: {:?}",
        answer.headers()
    );
    drop(calls.remove(refused));
    assert_refused(&net, &hub).await;
    // The calls end (their clients go away): the share is free again.
    drop(calls);
    served_again(&net, &hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_its_client_does_not_read_keeps_its_call_slot() {
    let (net, hub) = two_calls_per_client().await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let (send, answer) = unread_answer(&net, &hub).await;
        // The node answered: its headers came, its message waits for the window.
        let answer = tokio::time::timeout(PATIENCE, answer)
            .await
            .expect("the node answers")
            .expect("an answer");
        assert_eq!(answer.status(), http::StatusCode::OK);
        held.push((send, answer));
    }
    assert_refused(&net, &hub).await;
    drop(held);
    served_again(&net, &hub).await;

    // Streams that run on (a Watch) hold no slot once they are set up: a client watching
    // still makes its calls.
    let mut watches = Vec::new();
    for _ in 0..2 {
        let mut client = net.client(&hub).await;
        let stream = client
            .watch(pb::WatchRequest::default())
            .await
            .expect("a watch")
            .into_inner();
        watches.push((client, stream));
    }
    served_again(&net, &hub).await;
    drop(watches);
}

/// Reflection streams answer as long as their client keeps them open, each answer waiting for
/// the client's window like any call's, and have no bound of their own: each holds its slot
/// until it ends, so a client cannot make the node keep thousands of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reflection_stream_holds_its_call_slot_while_open() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let (net, hub) = two_calls_per_client().await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (asks, asked) = tokio::sync::mpsc::channel(1);
        let list = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        asks.send(list).await.expect("queued");
        let mut client = ServerReflectionClient::new(net.channel(&hub).await);
        let mut answers = (client
            .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(asked)))
        .await
        .expect("a reflection stream")
        .into_inner();
        let answer = answers.message().await.expect("answered");
        assert!(answer.is_some(), "one answer, the stream still open");
        open.push((asks, answers, client));
    }
    assert_refused(&net, &hub).await;
    drop(open);
    served_again(&net, &hub).await;
}
