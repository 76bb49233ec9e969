//! What a reader's view of indicator states is in STIX 2.1: one `indicator` per origin's
//! assertion and one `sighting` per reporter and TLP (ids from `intelmesh_core::object_id`),
//! for `intelmesh export` and the TAXII gateway alike.

use intelmesh_core::indicator::normalize;
use intelmesh_core::{Indicator, IndicatorType, Tlp};
use intelmesh_interop::{indicator_object, sighting_object, ExportIndicator, ExportSighting};
use intelmesh_proto::v1 as pb;
use serde_json::Value;

/// The STIX parts of states as a reader sees them.
#[derive(Clone, Debug, Default)]
pub struct StixParts {
    pub indicators: Vec<ExportIndicator>,
    pub sightings: Vec<ExportSighting>,
    /// States whose value this version cannot read (a newer node's type), left out.
    pub unreadable: usize,
}

fn tlp_of(d: Option<&pb::Distribution>) -> Tlp {
    // A state the node shows always carries its distribution; RED is the safe reading if not.
    d.and_then(|d| Tlp::from_proto(d.tlp)).unwrap_or(Tlp::Red)
}

fn indicator_of(state: &pb::IndicatorState) -> Option<Indicator> {
    let r = state.indicator.as_ref()?;
    normalize(IndicatorType::from_proto(r.r#type)?, &r.value).ok()
}

/// Adds one visible state's parts to `parts`.
pub fn add_state(parts: &mut StixParts, state: &pb::IndicatorState) {
    let Some(indicator) = indicator_of(state) else {
        parts.unreadable += 1;
        return;
    };
    for a in &state.assertions {
        parts.indicators.push(ExportIndicator {
            indicator: indicator.clone(),
            origin: a.origin.clone(),
            tlp: tlp_of(a.distribution.as_ref()),
            confidence: Some(a.confidence),
            // An upsert without valid_from is valid from when it was signed (and STIX wants
            // valid_from before valid_until, which a validity already over when signed is not).
            valid_from_unix_ms: if a.valid_from_unix_ms == 0 {
                a.valid_until_unix_ms.map_or(a.issued_at_unix_ms, |u| {
                    a.issued_at_unix_ms.min(u.saturating_sub(1))
                })
            } else {
                a.valid_from_unix_ms
            },
            valid_until_unix_ms: a.valid_until_unix_ms,
            revoked: a.revoked,
            created_unix_ms: intelmesh_store::first_issued(a),
            modified_unix_ms: a.issued_at_unix_ms,
            tags: a.tags.clone(),
            description: Some(a.description.clone()).filter(|d| !d.is_empty()),
        });
    }
    // A sighting names an indicator object: the first origin's assertion the reader sees; a
    // sighting of nothing the reader sees has nothing to name.
    // A reporter's sightings at one TLP are one object, as its id names them: the records of
    // several recipient sets a reader may see (RED to {X} and RED to {X, Y}) are merged, or
    // one id would stand for two objects in a page.
    if let Some(first) = state.assertions.first() {
        let mut merged: Vec<ExportSighting> = Vec::new();
        for x in &state.sightings {
            let tlp = tlp_of(x.distribution.as_ref());
            match merged
                .iter_mut()
                .find(|m| m.reporter == x.origin && m.tlp == tlp)
            {
                Some(m) => {
                    m.first_seen_unix_ms = m.first_seen_unix_ms.min(x.first_seen_unix_ms);
                    m.seen_at_unix_ms = m.seen_at_unix_ms.max(x.last_seen_unix_ms);
                    m.count = m.count.saturating_add(x.count);
                }
                None => merged.push(ExportSighting {
                    indicator: indicator.clone(),
                    indicator_origin: first.origin.clone(),
                    reporter: x.origin.clone(),
                    tlp,
                    first_seen_unix_ms: x.first_seen_unix_ms,
                    seen_at_unix_ms: x.last_seen_unix_ms,
                    count: x.count,
                }),
            }
        }
        parts.sightings.extend(merged);
    }
}

/// The parts of many visible states.
pub fn stix_parts(states: &[pb::IndicatorState]) -> StixParts {
    let mut parts = StixParts::default();
    for s in states {
        add_state(&mut parts, s);
    }
    parts
}

/// One visible state's STIX objects with their versions (`modified`, in milliseconds).
pub fn objects_of(state: &pb::IndicatorState) -> Vec<(i64, Value)> {
    let parts = stix_parts(std::slice::from_ref(state));
    let indicators = parts
        .indicators
        .iter()
        .map(|e| (e.modified_unix_ms, indicator_object(e)));
    let sightings = parts
        .sightings
        .iter()
        .map(|s| (s.seen_at_unix_ms, sighting_object(s)));
    indicators.chain(sightings).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distribution(tlp: pb::Tlp, recipients: &[&str]) -> Option<pb::Distribution> {
        Some(pb::Distribution {
            tlp: tlp as i32,
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
        })
    }

    fn sightings(
        origin: &str,
        d: Option<pb::Distribution>,
        seen: (i64, i64),
        count: u64,
    ) -> pb::OriginSightings {
        pb::OriginSightings {
            origin: origin.into(),
            count,
            first_seen_unix_ms: seen.0,
            last_seen_unix_ms: seen.1,
            last_seq: 1,
            distribution: d,
        }
    }

    #[test]
    fn a_reporters_sightings_at_one_tlp_are_one_object_whatever_their_recipients() {
        let state = pb::IndicatorState {
            indicator: Some(pb::IndicatorRef {
                r#type: pb::IndicatorType::Domain as i32,
                value: "evil.example".into(),
            }),
            assertions: vec![pb::OriginAssertion {
                origin: "AU-AFP".into(),
                distribution: distribution(pb::Tlp::Green, &[]),
                issued_at_unix_ms: 1_000,
                ..Default::default()
            }],
            sightings: vec![
                sightings(
                    "BR-PF",
                    distribution(pb::Tlp::Red, &["SG-IGCI"]),
                    (10, 20),
                    2,
                ),
                sightings(
                    "BR-PF",
                    distribution(pb::Tlp::Red, &["AU-AFP", "SG-IGCI"]),
                    (5, 15),
                    3,
                ),
                sightings("BR-PF", distribution(pb::Tlp::Green, &[]), (7, 8), 1),
            ],
        };
        let objects = objects_of(&state);
        let sightings: Vec<&Value> = objects
            .iter()
            .map(|(_, o)| o)
            .filter(|o| o["type"] == "sighting")
            .collect();
        assert_eq!(sightings.len(), 2, "{sightings:?}");
        let ids: std::collections::BTreeSet<String> =
            sightings.iter().map(|o| o["id"].to_string()).collect();
        assert_eq!(ids.len(), 2, "one object per id");
        let red = sightings
            .iter()
            .find(|o| o["count"] == 5)
            .expect("the RED records merged: 2 + 3");
        assert_eq!(
            red["first_seen"],
            intelmesh_interop::time::format_timestamp(5)
        );
        assert_eq!(
            red["last_seen"],
            intelmesh_interop::time::format_timestamp(20)
        );
    }
}
