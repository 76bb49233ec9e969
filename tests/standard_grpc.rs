//! The standard services that make a node usable from grpcurl and generated clients in other
//! languages: grpc.health.v1 and server reflection, over the same mutual TLS as everything else.

use intelmesh_tests::net::{org, TestNet};
use intelmesh_tests::raw_call::raw_unary;
use intelmesh_tests::raw_peer::{connect, Credentials, Target};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1alpha;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_listener_serves_health_and_reflection() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let channel = net.channel(&au).await;

    let mut health = HealthClient::new(channel.clone());
    // Each service serves while the node runs; the node as a whole ("") once it is ready, which
    // for an agency means linked to its hub (see tests/metrics.rs for the flip both ways).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for service in ["intelmesh.v1.NodeStatus", "intelmesh.v1.Indicators", ""] {
        loop {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
                .into_inner()
                .status;
            if status == ServingStatus::Serving as i32 {
                break;
            }
            assert!(
                service.is_empty() && std::time::Instant::now() < deadline,
                "{service:?} is {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(
        unknown.expect_err("unknown service").code(),
        tonic::Code::NotFound
    );

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection stream")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!(
            "expected a service list, got {:?}",
            response.message_response
        );
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "intelmesh.v1.NodeStatus",
        "intelmesh.v1.Indicators",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
}

/// The services a v1alpha reflection client (grpcio's, Postman's, evans', older grpcurl's)
/// finds on `channel`.
async fn services_by_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("grpc.reflection.v1alpha is served")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("reflection answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!(
            "expected a service list, got {:?}",
            response.message_response
        );
    };
    list.service.into_iter().map(|s| s.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_answer_v1alpha_reflection_clients() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let (hub, au) = (org("SG-IGCI"), org("AU-AFP"));
    let api = net.channel(&au).await;
    let names = services_by_v1alpha(api).await;
    for expected in ["intelmesh.v1.Indicators", "intelmesh.v1.NodeStatus"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // The hub's federation listener, as the AU node (the only certificates it accepts).
    let target = Target {
        addr: net.node(&hub).federation_addr,
        org: &hub,
        server_ca: &net.fed.federation_ca,
    };
    let federation = connect(&target, &Credentials::of_node(&net.fed.nodes[&au]))
        .await
        .expect("a member's node certificate connects");
    let names = services_by_v1alpha(federation).await;
    assert!(
        names.iter().any(|n| n == "intelmesh.v1.Federation"),
        "Federation missing from {names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_is_not_protobuf_is_the_callers_fault() {
    let net = TestNet::star("SG-IGCI", &["AU-AFP"]).await;
    let au = org("AU-AFP");
    let channel = net.channel(&au).await;
    let malformed: [(&str, &[u8]); 4] = [
        // A length past the end, and a wire type protobuf does not have.
        ("/intelmesh.v1.NodeStatus/Status", &[0x0a, 0x05, b'a']),
        ("/intelmesh.v1.NodeStatus/Status", &[0x0f]),
        // Requests whose size is estimated from the wire before they are decoded.
        ("/intelmesh.v1.Indicators/Lookup", &[0x0a, 0x05, b'a']),
        ("/intelmesh.v1.Indicators/Submit", &[0x0a, 0xff]),
    ];
    for (path, bytes) in malformed {
        let e = raw_unary(&channel, path, bytes.to_vec()).await.unwrap_err();
        assert_eq!(
            e.code(),
            tonic::Code::InvalidArgument,
            "{path} {bytes:?}: {e}"
        );
        assert!(!e.message().is_empty(), "{path} {bytes:?}: no reason given");
    }
    // Well-formed bytes on the same connection are served.
    let status = raw_unary(&channel, "/intelmesh.v1.NodeStatus/Status", Vec::new())
        .await
        .expect("an empty StatusRequest is served");
    let status =
        <intelmesh_proto::v1::StatusResponse as prost::Message>::decode(status.as_slice()).unwrap();
    assert_eq!(status.org_id, "AU-AFP");
}
