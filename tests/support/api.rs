//! Small builders and calls for the `Indicators` API tests.

use std::time::Duration;

use intelmesh_proto::v1 as pb;
use intelmesh_proto::v1::indicators_client::IndicatorsClient;
use intelmesh_proto::v1::{IndicatorType as Ty, Tlp};
use tonic::transport::Channel;
use tonic::Streaming;

pub const PATIENCE: Duration = Duration::from_secs(20);

pub type Client = IndicatorsClient<Channel>;

pub fn dist(tlp: Tlp, recipients: &[&str]) -> Option<pb::Distribution> {
    Some(pb::Distribution {
        tlp: tlp as i32,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    })
}

pub fn upsert(ty: Ty, value: &str, tlp: Tlp, tags: &[&str]) -> pb::Submission {
    pb::Submission {
        r#type: ty as i32,
        value: value.into(),
        distribution: dist(tlp, &[]),
        body: Some(pb::submission::Body::Upsert(pb::IndicatorUpsert {
            confidence: 80,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            description: "seen in a campaign".into(),
            ..Default::default()
        })),
    }
}

pub fn revoke(ty: Ty, value: &str) -> pb::Submission {
    pb::Submission {
        r#type: ty as i32,
        value: value.into(),
        distribution: dist(Tlp::Green, &[]),
        body: Some(pb::submission::Body::Revoke(pb::IndicatorRevoke {
            indicator: None,
            reason: "sinkholed".into(),
        })),
    }
}

/// A GREEN sighting, type detected.
pub fn sighting(value: &str, count: u64) -> pb::ReportSightingRequest {
    pb::ReportSightingRequest {
        value: value.into(),
        count,
        distribution: dist(Tlp::Green, &[]),
        ..Default::default()
    }
}

pub async fn submit(c: &mut Client, submissions: Vec<pb::Submission>) -> Vec<pb::Assigned> {
    c.submit(pb::SubmitRequest {
        submissions,
        ..Default::default()
    })
    .await
    .expect("submit")
    .into_inner()
    .assigned
}

/// A `Submit` the node must refuse: its status.
pub async fn submit_refused(c: &mut Client, submissions: Vec<pb::Submission>) -> tonic::Status {
    c.submit(pb::SubmitRequest {
        submissions,
        ..Default::default()
    })
    .await
    .expect_err("the node refuses the submission")
}

pub async fn get(c: &mut Client, ty: Ty, value: &str) -> pb::GetResponse {
    c.get(pb::GetRequest {
        r#type: ty as i32,
        value: value.into(),
    })
    .await
    .expect("get")
    .into_inner()
}

pub fn value_of(s: &pb::IndicatorState) -> String {
    s.indicator.as_ref().expect("indicator").value.clone()
}

/// The next event of a watch, or a failure if none comes within the patience.
pub async fn next_event(s: &mut Streaming<pb::WatchEvent>) -> pb::WatchEvent {
    tokio::time::timeout(PATIENCE, s.message())
        .await
        .expect("a watch event in time")
        .expect("watch stream healthy")
        .expect("watch stream open")
}

pub async fn watch(
    c: &mut Client,
    filter: pb::Filter,
    cursor: &str,
    from_start: bool,
) -> Streaming<pb::WatchEvent> {
    c.watch(pb::WatchRequest {
        filter: Some(filter),
        cursor: cursor.into(),
        from_start,
    })
    .await
    .expect("watch")
    .into_inner()
}

/// One upsert per value, all of one type, level and tag.
pub fn each(
    ty: Ty,
    values: impl Iterator<Item = String>,
    tlp: Tlp,
    tag: &str,
) -> Vec<pb::Submission> {
    values.map(|v| upsert(ty, &v, tlp, &[tag])).collect()
}

pub fn domains(from: usize, to: usize, tlp: Tlp) -> Vec<pb::Submission> {
    each(
        Ty::Domain,
        (from..to).map(|i| format!("w{i}.example")),
        tlp,
        "w",
    )
}

/// A service certificate of `org` named `name` (`NAME.pem`, `NAME.key` in a new temporary
/// directory), issued by the service CA of the node provisioned as `p`: a node's service CA may
/// certify other orgs' tools, which read as their org.
pub fn service_cert(
    p: &intelmesh_node::provision::ProvisionedNode,
    org: &intelmesh_core::OrgId,
    name: &str,
    validity: intelmesh_node::pki::Validity,
) -> tempfile::TempDir {
    let ca =
        intelmesh_node::pki::Ca::load(&p.dir.join("service-ca.pem"), &p.dir.join("service-ca.key"))
            .expect("the node's service CA");
    let dir = tempfile::tempdir().expect("temp dir");
    ca.issue_service_for(org, name, validity)
        .expect("a service certificate")
        .write(dir.path(), name)
        .expect("written");
    dir
}

/// An `Indicators` client of `node` (provisioned as `p`) presenting the certificate
/// [`service_cert`] wrote into `certs` as `name`.
pub async fn client_with(
    node: &intelmesh_node::RunningNode,
    p: &intelmesh_node::provision::ProvisionedNode,
    certs: &std::path::Path,
    name: &str,
) -> Client {
    let channel = intelmesh_node::client::api_channel(
        node.api_addr,
        node.org(),
        &p.api_ca,
        &certs.join(format!("{name}.pem")),
        &certs.join(format!("{name}.key")),
    )
    .await
    .expect("API channel");
    IndicatorsClient::new(channel)
}

/// The status a watch ends with (its events skipped), or a failure if it does not end within
/// the patience.
pub async fn watch_end(s: &mut Streaming<pb::WatchEvent>) -> tonic::Status {
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends");
    ended.expect_err("ended with a status")
}
