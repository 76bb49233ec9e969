use intelmesh_interop::taxii::{StatusDetail, StatusResource};

use super::{Statuses, STATUSES_KEPT};
use crate::api::test_values::{org, NOW};
use crate::taxii::write::MAX_ENVELOPE_OBJECTS;

fn status(id: &str, objects: usize) -> StatusResource {
    let detail = |n: usize| StatusDetail {
        id: format!("indicator--{n}"),
        version: None,
        message: None,
    };
    StatusResource {
        id: id.into(),
        request_unix_ms: NOW,
        successes: (0..objects).map(detail).collect(),
        failures: Vec::new(),
        pendings: Vec::new(),
    }
}

#[test]
fn a_busy_writer_forgets_its_own_statuses_before_anyone_elses() {
    let statuses = Statuses::default();
    let (au, br) = (org("AU-AFP"), org("BR-PF"));
    statuses.keep(&br, "feed", status("br-1", 10));
    for i in 0..20 {
        statuses.keep(
            &au,
            "bulk",
            status(&format!("au-{i}"), MAX_ENVELOPE_OBJECTS),
        );
    }
    assert!(
        statuses.get(&br, "feed", "br-1").is_some(),
        "another caller's status stays"
    );
    assert!(statuses.get(&au, "bulk", "au-19").is_some());
    assert!(
        statuses.get(&au, "bulk", "au-0").is_none(),
        "the writer's oldest is forgotten"
    );
    // A caller reads only its own.
    assert!(statuses.get(&au, "feed", "br-1").is_none());
    // Many small POSTs of one caller push out its own statuses, not another's.
    for i in 0..2 * STATUSES_KEPT {
        statuses.keep(&au, "chatty", status(&format!("c-{i}"), 0));
    }
    assert!(statuses.get(&br, "feed", "br-1").is_some());
    assert!(statuses.get(&au, "bulk", "au-19").is_some());
}

#[test]
fn statuses_are_bounded_by_the_bytes_they_hold() {
    let statuses = Statuses::default();
    let au = org("AU-AFP");
    let wordy = |id: &str| {
        let mut s = status(id, 1000);
        for d in &mut s.successes {
            d.message = Some("m".repeat(1000));
        }
        s
    };
    // About 1.1 MB each: one caller keeps about 8 MiB of them.
    for i in 0..20 {
        statuses.keep(&au, "feed", wordy(&format!("w-{i}")));
    }
    assert!(statuses.get(&au, "feed", "w-19").is_some());
    assert!(
        statuses.get(&au, "feed", "w-12").is_none(),
        "held past its bytes"
    );
}
