//! Small values the API rule tests share.

use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

pub(crate) const NOW: i64 = 1_800_000_000_000;

pub(crate) fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

pub(crate) fn dist(tlp: pb::Tlp, recipients: &[&str]) -> Option<pb::Distribution> {
    Some(pb::Distribution {
        tlp: tlp as i32,
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    })
}
