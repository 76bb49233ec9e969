//! Targets for the TAXII gateway's inputs: the query string, `Accept` and `Content-Type`
//! headers a client sends (`intelmesh_interop::taxii`), and the envelope it POSTs, planned into
//! entries and a status (`intelmesh_node::taxii::write::plan`).

use std::collections::BTreeSet;

use intelmesh_core::OrgId;
use intelmesh_interop::taxii::{
    accepts_taxii, is_taxii_content, parse_objects_query, MAX_LIST_VALUES,
};
use intelmesh_interop::{
    format_timestamp_micros, import_stix, parse_timestamp_micros, ImportOptions, Warninglists,
};
use intelmesh_node::api::submission::Publisher;
use intelmesh_node::taxii::write::plan;
use serde_json::Value;

use crate::fixtures::{origin, peer, NOW_UNIX_MS};
use crate::targets::assert_canonical;

/// Line 1: a query string; line 2: an `Accept` header; line 3: a `Content-Type` header.
pub fn taxii_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let (query, accept, content_type) = (lines.next(), lines.next(), lines.next());
    let _ = accepts_taxii(accept);
    let _ = is_taxii_content(content_type);
    let Ok(q) = parse_objects_query(query) else {
        return;
    };
    for list in [&q.ids, &q.types, &q.spec_versions] {
        assert!(list.len() <= MAX_LIST_VALUES, "a list over its bound");
    }
    assert!(q.versions.at.len() <= MAX_LIST_VALUES);
    assert!(q.limit.is_none_or(|n| n >= 1), "limit 0 accepted");
    if let Some(t) = q.added_after_us {
        // What the gateway reports back (date_added, headers) reads as the same instant.
        let text = format_timestamp_micros(t);
        if (-62_167_219_200_000_000..=253_402_300_799_999_999).contains(&t) {
            assert_eq!(parse_timestamp_micros(&text), Ok(t), "{text}");
        }
    }
}

/// A POSTed envelope: every object gets exactly one outcome, and what is to be signed is
/// canonical and checked.
pub fn taxii_envelope(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let members: BTreeSet<OrgId> = [origin(), peer()].into_iter().collect();
    let me = origin();
    let publisher = Publisher {
        org: &me,
        members: &members,
        now: NOW_UNIX_MS,
    };
    let held = |_: &intelmesh_core::Indicator| Default::default();
    let containers = |_: &intelmesh_core::Indicator| Vec::new();
    let Ok(planned) = plan(&body, &publisher, &Warninglists::new(), (held, containers)) else {
        assert!(
            import_stix(&body, &ImportOptions::default()).is_err(),
            "refused an envelope the importer reads"
        );
        return;
    };
    let objects = import_stix(&body, &ImportOptions::default())
        .map(|i| i.objects.len())
        .unwrap_or_default();
    assert_eq!(
        planned.successes.len() + planned.failures.len(),
        objects,
        "an object without exactly one outcome"
    );
    for p in &planned.to_sign {
        assert_canonical(&p.indicator);
    }
    let distinct: BTreeSet<_> = planned.to_sign.iter().map(|p| &p.indicator).collect();
    assert_eq!(
        distinct.len(),
        planned.to_sign.len(),
        "a value signed twice in one POST"
    );
}
