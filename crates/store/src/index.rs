//! The indicator index: how one entry's payload changes the merged view of its indicator.
//!
//! The merge depends only on the entry, never on arrival order across origins: each origin's
//! assertion is replaced only by one with a higher seq, sightings add up, and lists stay
//! sorted by origin. So any delivery order of the same entries gives the same index.

use intelmesh_core::entry::Header;
use intelmesh_core::verify::Payload;
use intelmesh_proto::v1 as pb;

/// Folds one verified payload into `state` (a fresh state for a new indicator).
pub fn merge_payload(state: &mut pb::IndicatorState, header: &Header, payload: Payload) {
    use pb::payload::Body;
    if state.indicator.is_none() {
        state.indicator = Some(pb::IndicatorRef {
            r#type: payload.indicator.ty().to_proto() as i32,
            value: payload.indicator.value().to_string(),
        });
    }
    let origin = header.origin.as_str();
    match payload.body {
        Body::Upsert(u) => upsert_assertion(
            state,
            pb::OriginAssertion {
                origin: origin.to_string(),
                seq: header.seq,
                revoked: false,
                confidence: u.confidence,
                distribution: Some(header.distribution.to_proto()),
                issued_at_unix_ms: header.issued_at_unix_ms,
                valid_from_unix_ms: u.valid_from_unix_ms,
                valid_until_unix_ms: u.valid_until_unix_ms,
                tags: u.tags,
                threat_types: u.threat_types,
                description: u.description,
                external_references: u.external_references,
                revoke_reason: String::new(),
            },
        ),
        Body::Revoke(r) => upsert_assertion(
            state,
            pb::OriginAssertion {
                origin: origin.to_string(),
                seq: header.seq,
                revoked: true,
                distribution: Some(header.distribution.to_proto()),
                issued_at_unix_ms: header.issued_at_unix_ms,
                revoke_reason: r.reason,
                ..Default::default()
            },
        ),
        Body::Sighting(s) => add_sighting(state, header, &s),
    }
}

fn upsert_assertion(state: &mut pb::IndicatorState, new: pb::OriginAssertion) {
    match state
        .assertions
        .binary_search_by(|a| a.origin.as_str().cmp(&new.origin))
    {
        Ok(i) if state.assertions[i].seq < new.seq => state.assertions[i] = new,
        Ok(_) => {}
        Err(i) => state.assertions.insert(i, new),
    }
}

fn add_sighting(state: &mut pb::IndicatorState, header: &Header, s: &pb::Sighting) {
    let origin = header.origin.as_str();
    let i = match state
        .sightings
        .binary_search_by(|x| x.origin.as_str().cmp(origin))
    {
        Ok(i) => i,
        Err(i) => {
            state.sightings.insert(
                i,
                pb::OriginSightings {
                    origin: origin.to_string(),
                    first_seen_unix_ms: s.seen_at_unix_ms,
                    last_seen_unix_ms: s.seen_at_unix_ms,
                    ..Default::default()
                },
            );
            i
        }
    };
    let agg = &mut state.sightings[i];
    agg.count = agg.count.saturating_add(s.count);
    agg.first_seen_unix_ms = agg.first_seen_unix_ms.min(s.seen_at_unix_ms);
    agg.last_seen_unix_ms = agg.last_seen_unix_ms.max(s.seen_at_unix_ms);
    if header.seq > agg.last_seq {
        agg.last_seq = header.seq;
        agg.distribution = Some(header.distribution.to_proto());
    }
}
