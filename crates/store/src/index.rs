//! The indicator index's rules: how one entry's payload changes the merged view of its
//! indicator (stored on disk, see `index_write`).
//!
//! Assertions and sightings are kept per origin *and distribution*: a reader may be allowed
//! some of an origin's entries about an indicator and not others, so what it sees must never
//! depend on entries it may not read (a RED sighting merged into a GREEN count showed the RED
//! count and first-seen time to every member). Readers pick what they may see (see the node's
//! `view`).
//!
//! The merge depends only on the entry, never on arrival order across origins: each (origin,
//! distribution)'s assertion is replaced only by one with a higher seq, sightings add up, and
//! lists stay sorted by (origin, distribution). So any delivery order of the same entries gives
//! the same index.

use intelmesh_core::entry::Header;
use intelmesh_core::verify::Payload;
use intelmesh_proto::v1 as pb;
use prost::Message;

#[cfg(doc)]
use crate::keys;
use crate::StoreError;

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
    let distribution = Some(canonical_distribution(&header.distribution));
    match payload.body {
        Body::Upsert(u) => upsert_assertion(
            state,
            pb::OriginAssertion {
                origin: origin.to_string(),
                seq: header.seq,
                revoked: false,
                confidence: u.confidence,
                distribution,
                issued_at_unix_ms: header.issued_at_unix_ms,
                valid_from_unix_ms: u.valid_from_unix_ms,
                valid_until_unix_ms: u.valid_until_unix_ms,
                tags: u.tags,
                threat_types: u.threat_types,
                description: u.description,
                external_references: u.external_references,
                revoke_reason: String::new(),
                first_issued_at_unix_ms: 0,
            },
        ),
        Body::Revoke(r) => upsert_assertion(
            state,
            pb::OriginAssertion {
                origin: origin.to_string(),
                seq: header.seq,
                revoked: true,
                distribution,
                issued_at_unix_ms: header.issued_at_unix_ms,
                revoke_reason: r.reason,
                ..Default::default()
            },
        ),
        Body::Sighting(s) => add_sighting(state, header, distribution, &s),
        // A `Payload` always names an indicator (`Content::indicator`); control entries never
        // reach the index.
        Body::Roster(_) | Body::Checkpoint(_) => {}
    }
}

/// The distribution with its recipients sorted and deduplicated: one form per audience, so
/// two entries for the same readers share their slot.
fn canonical_distribution(d: &intelmesh_core::Distribution) -> pb::Distribution {
    let mut p = d.to_proto();
    p.recipients.sort();
    p.recipients.dedup();
    p
}

/// The order of slots: origin, then TLP level, then recipients.
fn slot<'a>(origin: &'a str, d: Option<&'a pb::Distribution>) -> (&'a str, i32, &'a [String]) {
    (
        origin,
        d.map_or(0, |d| d.tlp),
        d.map_or(&[][..], |d| d.recipients.as_slice()),
    )
}

/// Replaces the slot's assertion by `new` if `new` is later; either way the slot keeps the
/// earliest issue time of all it was given (a minimum, so any order gives the same).
fn upsert_assertion(state: &mut pb::IndicatorState, mut new: pb::OriginAssertion) {
    new.first_issued_at_unix_ms = new.issued_at_unix_ms;
    let key = slot(&new.origin, new.distribution.as_ref());
    match state
        .assertions
        .binary_search_by(|a| slot(&a.origin, a.distribution.as_ref()).cmp(&key))
    {
        Ok(i) => {
            let origin = new.origin.clone();
            let old = &mut state.assertions[i];
            let first = first_issued(old).min(new.issued_at_unix_ms);
            if old.seq < new.seq {
                *old = new;
            }
            old.first_issued_at_unix_ms = first;
            strip_past_full_slots(&mut state.assertions, &origin);
        }
        Err(i) => {
            let origin = new.origin.clone();
            state.assertions.insert(i, new);
            keep_first_slots(&mut state.assertions, &origin, |a| &a.origin);
            strip_past_full_slots(&mut state.assertions, &origin);
        }
    }
}

/// Slots of one origin in one state that keep their assertion's text whole (description,
/// references, every tag and threat type); the later ones in slot order keep what a verdict
/// and a query by tag read. Every write to the indicator, by any origin, decodes and writes
/// the whole state, so a member filling 16 audiences with 64 KiB payloads would otherwise make
/// every other origin's write to that value cost a megabyte. The signed entries keep all of it
/// (Get's provenance names them).
pub const FULL_SLOTS_PER_ORIGIN: usize = 4;
/// Tags (and threat types) a slot past [`FULL_SLOTS_PER_ORIGIN`] keeps, each cut at
/// `intelmesh_core::entry::MAX_TAG_BYTES`.
const TAGS_PAST_FULL_SLOTS: usize = 8;

/// Strips the text of `origin`'s assertions past its first [`FULL_SLOTS_PER_ORIGIN`] in slot
/// order. Which are stripped depends only on the origin's set of slots (a slot only moves
/// later as slots are added before it), and stripping again changes nothing, so any order of
/// the same entries (a rebuild, a payload filled late) gives the same state.
fn strip_past_full_slots(slots: &mut [pb::OriginAssertion], origin: &str) {
    let max_tag = intelmesh_core::entry::MAX_TAG_BYTES;
    let clip = |t: &mut String| {
        if t.len() > max_tag {
            let mut end = max_tag;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t.truncate(end);
        }
    };
    for a in slots
        .iter_mut()
        .filter(|a| a.origin == origin)
        .skip(FULL_SLOTS_PER_ORIGIN)
    {
        a.description.clear();
        a.external_references.clear();
        a.tags.truncate(TAGS_PAST_FULL_SLOTS);
        a.threat_types.truncate(TAGS_PAST_FULL_SLOTS);
        a.tags
            .iter_mut()
            .chain(a.threat_types.iter_mut())
            .for_each(clip);
    }
}

/// Most slots (audiences) one origin holds in one indicator's state, for assertions and for
/// sightings each. Every write to the indicator, by any origin, decodes and writes the whole
/// state, so a member signing one value to a thousand recipient sets must not make it grow
/// without end. An honest origin uses a few audiences per value.
pub const MAX_SLOTS_PER_ORIGIN: usize = 16;

/// Drops `origin`'s slots past its first [`MAX_SLOTS_PER_ORIGIN`] in slot order (TLP level,
/// then recipients): `slots` is sorted by slot, so those are the last of the origin's run.
/// Which slots stay depends only on the set of slots the origin ever named, never on the order
/// entries came in (a payload filled late, a rebuild from the log): a kept slot was never
/// dropped, so it holds all its entries, and a dropped one never comes back. An origin
/// crowding out its own audiences this way harms only its own assertions.
fn keep_first_slots<T>(slots: &mut Vec<T>, origin: &str, origin_of: impl Fn(&T) -> &str) {
    let of_origin: Vec<usize> = (0..slots.len())
        .filter(|&i| origin_of(&slots[i]) == origin)
        .collect();
    for &i in of_origin.iter().skip(MAX_SLOTS_PER_ORIGIN).rev() {
        slots.remove(i);
    }
}

/// When the origin first asserted the value under this assertion's distribution (STIX
/// `created`); the issue time for a state written before that was kept.
pub fn first_issued(a: &pb::OriginAssertion) -> i64 {
    match a.first_issued_at_unix_ms {
        0 => a.issued_at_unix_ms,
        first => first.min(a.issued_at_unix_ms),
    }
}

fn add_sighting(
    state: &mut pb::IndicatorState,
    header: &Header,
    distribution: Option<pb::Distribution>,
    s: &pb::Sighting,
) {
    let origin = header.origin.as_str();
    let found = state.sightings.binary_search_by(|x| {
        slot(&x.origin, x.distribution.as_ref()).cmp(&slot(origin, distribution.as_ref()))
    });
    let (i, new) = match found {
        Ok(i) => (i, false),
        Err(i) => {
            state.sightings.insert(
                i,
                pb::OriginSightings {
                    origin: origin.to_string(),
                    first_seen_unix_ms: s.seen_at_unix_ms,
                    last_seen_unix_ms: s.seen_at_unix_ms,
                    distribution,
                    ..Default::default()
                },
            );
            (i, true)
        }
    };
    let agg = &mut state.sightings[i];
    agg.count = agg.count.saturating_add(s.count);
    agg.first_seen_unix_ms = agg.first_seen_unix_ms.min(s.seen_at_unix_ms);
    agg.last_seen_unix_ms = agg.last_seen_unix_ms.max(s.seen_at_unix_ms);
    agg.last_seq = agg.last_seq.max(header.seq);
    if new {
        keep_first_slots(&mut state.sightings, origin, |x| &x.origin);
    }
}

/// One payload to fold into the index, under its [`keys::index`] key.
pub(crate) struct IndexUpdate {
    pub(crate) key: Vec<u8>,
    pub(crate) header: Header,
    pub(crate) payload: Payload,
}

pub(crate) fn decode_state(bytes: &[u8]) -> Result<pb::IndicatorState, StoreError> {
    pb::IndicatorState::decode(bytes)
        .map_err(|e| StoreError::Corrupt(format!("index record does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::keys;
    use intelmesh_core::indicator::normalize;
    use intelmesh_core::{Distribution, IndicatorType, KeyId, OrgId, Tlp};

    /// States by key, folded in order: the index without the disk.
    #[derive(Default)]
    struct Index(BTreeMap<Vec<u8>, pb::IndicatorState>);

    impl Index {
        fn merge(&mut self, u: IndexUpdate) {
            merge_payload(self.0.entry(u.key).or_default(), &u.header, u.payload);
        }

        fn get(&self, key: &[u8]) -> pb::IndicatorState {
            self.0[key].clone()
        }
    }

    fn upsert(origin: &str, seq: u64, confidence: u32) -> IndexUpdate {
        update(
            origin,
            seq,
            Tlp::Green,
            &[],
            pb::payload::Body::Upsert(pb::IndicatorUpsert {
                confidence,
                ..Default::default()
            }),
        )
    }

    fn sighting(origin: &str, seq: u64, tlp: Tlp, recipients: &[&str], seen: i64) -> IndexUpdate {
        update(
            origin,
            seq,
            tlp,
            recipients,
            pb::payload::Body::Sighting(pb::Sighting {
                seen_at_unix_ms: seen,
                count: 2,
                ..Default::default()
            }),
        )
    }

    fn update(
        origin: &str,
        seq: u64,
        tlp: Tlp,
        recipients: &[&str],
        body: pb::payload::Body,
    ) -> IndexUpdate {
        let indicator = normalize(IndicatorType::Domain, "c2.example").unwrap();
        IndexUpdate {
            key: keys::index(&indicator),
            header: Header {
                origin: OrgId::parse(origin).unwrap(),
                seq,
                prev_hash: [0; 32],
                payload_commitment: [0; 32],
                payload_len: 0,
                issued_at_unix_ms: 1,
                key_id: KeyId([0; 8]),
                distribution: Distribution {
                    tlp,
                    recipients: recipients
                        .iter()
                        .map(|r| OrgId::parse(r).unwrap())
                        .collect(),
                },
                sealed: false,
            },
            payload: Payload { indicator, body },
        }
    }

    /// The state `updates` fold into, checked to be the same in reverse order.
    fn merged_both_ways(updates: impl Fn() -> Vec<IndexUpdate>) -> pb::IndicatorState {
        let mut forward = Index::default();
        for u in updates() {
            forward.merge(u);
        }
        let mut backward = Index::default();
        for u in updates().into_iter().rev() {
            backward.merge(u);
        }
        let key = upsert("XX", 1, 0).key;
        let state = forward.get(&key);
        assert_eq!(state, backward.get(&key), "the order changed the state");
        state
    }

    fn confidences(index: &Index) -> Vec<(String, u64, u32)> {
        let key = upsert("XX", 1, 0).key;
        let state = index.get(&key);
        state
            .assertions
            .into_iter()
            .map(|a| (a.origin, a.seq, a.confidence))
            .collect()
    }

    #[test]
    fn merging_keeps_each_origins_latest_assertion() {
        let mut index = Index::default();
        for u in [
            upsert("BB", 2, 60),
            upsert("AA", 1, 10),
            upsert("BB", 1, 90),
        ] {
            index.merge(u);
        }
        assert_eq!(index.0.len(), 1);
        assert_eq!(
            confidences(&index),
            vec![("AA".into(), 1, 10), ("BB".into(), 2, 60)]
        );
    }

    #[test]
    fn an_origins_sightings_stay_apart_by_distribution_in_any_order() {
        let updates = || {
            vec![
                sighting("AA", 1, Tlp::Red, &["CC", "BB"], 100),
                sighting("AA", 2, Tlp::Green, &[], 500),
                sighting("AA", 3, Tlp::Red, &["BB", "CC"], 50),
                sighting("AA", 4, Tlp::Green, &[], 700),
            ]
        };
        let state = merged_both_ways(updates);
        let seen: Vec<(i32, Vec<String>, u64, i64, i64)> = state
            .sightings
            .iter()
            .map(|s| {
                let d = s.distribution.clone().unwrap();
                (
                    d.tlp,
                    d.recipients,
                    s.count,
                    s.first_seen_unix_ms,
                    s.last_seen_unix_ms,
                )
            })
            .collect();
        let both = vec!["BB".to_string(), "CC".to_string()];
        assert_eq!(
            seen,
            vec![
                (pb::Tlp::Green as i32, vec![], 4, 500, 700),
                (pb::Tlp::Red as i32, both, 4, 50, 100),
            ],
            "GREEN and RED counts never mix; recipients in either order are one audience"
        );
    }

    #[test]
    fn an_origin_holds_at_most_its_first_slots_in_one_state_in_any_order() {
        // A member signing one value to many recipient sets: its first 16 audiences in slot
        // order stay, for assertions and sightings each, whatever order the entries came in
        // (a payload filled late); another origin's slots are untouched.
        let updates = || {
            let mut u = vec![upsert("BB", 1, 70)];
            for i in 0..40u64 {
                let name = format!("R{:02}", 39 - i);
                let body = pb::payload::Body::Upsert(pb::IndicatorUpsert::default());
                u.push(update("AA", 2 * i + 1, Tlp::Amber, &[&name], body));
                u.push(sighting("AA", 2 * i + 2, Tlp::Red, &[&name], 5));
            }
            // A kept audience named again, last: its sightings add up in any order.
            u.push(sighting("AA", 81, Tlp::Red, &["R00"], 9));
            u
        };
        let state = merged_both_ways(updates);
        let audience = |d: &Option<pb::Distribution>| d.as_ref().unwrap().recipients.join(",");
        let assertions: Vec<(String, String)> = state
            .assertions
            .iter()
            .map(|a| (a.origin.clone(), audience(&a.distribution)))
            .collect();
        let mut expected: Vec<(String, String)> =
            (0..16).map(|i| ("AA".into(), format!("R{i:02}"))).collect();
        expected.push(("BB".into(), String::new()));
        assert_eq!(assertions, expected);
        let sightings: Vec<String> = state
            .sightings
            .iter()
            .map(|s| audience(&s.distribution))
            .collect();
        assert_eq!(
            sightings,
            (0..16).map(|i| format!("R{i:02}")).collect::<Vec<_>>()
        );
        assert_eq!(
            state.sightings[0].count,
            2 + 2,
            "both R00 sightings, in any order"
        );
    }

    #[test]
    fn an_origins_slots_past_its_first_four_keep_no_text_in_any_order() {
        // A member filling audiences with long payloads: past its first four slots in slot
        // order only what verdicts and tag queries read stays, whatever the order; another
        // origin's text is whole.
        let long = |seq: u64| {
            pb::payload::Body::Upsert(pb::IndicatorUpsert {
                confidence: 50,
                description: format!("{seq}:{}", "d".repeat(5_000)),
                tags: (0..20).map(|t| format!("{}{t}", "t".repeat(300))).collect(),
                external_references: vec![pb::ExternalReference::default(); 3],
                ..Default::default()
            })
        };
        let updates = || {
            let mut u = vec![update("BB", 1, Tlp::Green, &[], long(1))];
            for i in 0..6u64 {
                let name = format!("R{i}");
                u.push(update("AA", i + 1, Tlp::Amber, &[&name], long(i + 1)));
            }
            // A later entry of a stripped slot is stripped too.
            u.push(update("AA", 9, Tlp::Amber, &["R5"], long(9)));
            u
        };
        let state = merged_both_ways(updates);
        let shape: Vec<(String, usize, usize, usize, usize)> = state
            .assertions
            .iter()
            .map(|a| {
                let longest = a.tags.iter().map(String::len).max().unwrap_or(0);
                (
                    a.origin.clone(),
                    a.description.len(),
                    a.tags.len(),
                    longest,
                    a.external_references.len(),
                )
            })
            .collect();
        let full = |o: &str| (o.to_string(), 5_002, 20, 302, 3);
        let stripped = (
            "AA".to_string(),
            0,
            8,
            intelmesh_core::entry::MAX_TAG_BYTES,
            0,
        );
        let mut expected = vec![full("AA"); 4];
        expected.extend(std::iter::repeat_n(stripped, 2));
        expected.push(full("BB"));
        assert_eq!(shape, expected);
        assert_eq!(state.assertions[5].seq, 9, "the latest entry of the slot");
        assert!(state.assertions.iter().all(|a| a.confidence == 50));
    }

    #[test]
    fn an_origins_assertions_stay_apart_by_distribution() {
        let mut index = Index::default();
        index.merge(upsert("AA", 1, 40));
        index.merge(update(
            "AA",
            2,
            Tlp::Red,
            &["BB"],
            pb::payload::Body::Revoke(pb::IndicatorRevoke::default()),
        ));
        let state = index.get(&upsert("XX", 1, 0).key);
        let kept: Vec<(u64, bool)> = state
            .assertions
            .iter()
            .map(|a| (a.seq, a.revoked))
            .collect();
        assert_eq!(kept, vec![(1, false), (2, true)]);
    }

    #[test]
    fn an_assertion_keeps_its_first_issue_time_in_any_order() {
        let at = |seq: u64, issued: i64| {
            let mut u = upsert("AU-AFP", seq, seq as u32);
            u.header.issued_at_unix_ms = issued;
            u
        };
        let orders = [[(1, 50), (2, 70), (3, 60)], [(3, 60), (1, 50), (2, 70)]];
        for order in orders {
            let mut index = Index::default();
            for (seq, issued) in order {
                index.merge(at(seq, issued));
            }
            let state = index.get(&upsert("XX", 1, 0).key);
            let a = &state.assertions[0];
            assert_eq!((a.seq, a.issued_at_unix_ms), (3, 60), "{order:?}");
            assert_eq!(first_issued(a), 50, "{order:?}");
        }
        // A state written before the first issue time was kept reads its issue time.
        let old = pb::OriginAssertion {
            issued_at_unix_ms: 40,
            ..Default::default()
        };
        assert_eq!(first_issued(&old), 40);
    }
}
