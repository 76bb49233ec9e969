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
