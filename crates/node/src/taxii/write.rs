//! Adding objects: a posted envelope to entries signed by this node and a status resource
//! that gives every posted object exactly one outcome.
//!
//! [`plan`] is pure: each `indicator` whose pattern the mesh represents becomes one
//! submission per value (checked as the gRPC `Submit` checks them), a TLP marking definition
//! is consumed, anything else is a failure with its reason. A value this node already asserts
//! identically is a success that signs nothing, so an identical re-POST publishes nothing. A
//! value on the node's warninglists is a failure (TAXII has no way to force it).

use std::collections::{BTreeMap, BTreeSet};

use intelmesh_core::{Distribution, Indicator, Tlp};
use intelmesh_interop::stix::{
    import_object, stix_objects, superseded, unreadable_marking, values_under_unreadable_markings,
    ImportOptions, ObjectOutcome, Outcome, SkipReason, StixIndicator,
};
use intelmesh_interop::stix_export::indicator_id;
use intelmesh_interop::taxii::StatusDetail;
use intelmesh_interop::text::clip_within;
use intelmesh_interop::{format_timestamp, Markings, Warninglists};
use intelmesh_proto::v1 as pb;
use prost::Message as _;
use serde_json::Value;

use crate::api::submission::{
    audience_of, held_identically, refuse_past_audience_cap, submission, wider_than_known_all,
    Prepared, Publisher,
};
use crate::api::view::Invalid;
use crate::warninglists::lists_of;

pub use super::statuses::Statuses;

/// What to sign for a POST, and the status it will have once signed.
#[derive(Debug, Default)]
pub struct Plan {
    pub to_sign: Vec<Prepared>,
    pub successes: Vec<StatusDetail>,
    pub failures: Vec<StatusDetail>,
}

/// Most objects one envelope may hold; a larger one is refused whole (413). Its status
/// resource names every object and is kept for the caller to read, so it is bounded too.
pub const MAX_ENVELOPE_OBJECTS: usize = 10_000;

/// Most values one POST signs (as many as one gRPC `Submit`), and most bytes of their
/// payloads: an object past either is a failure (post it again), whatever follows it.
pub const MAX_POST_VALUES: usize = crate::api::submission::MAX_SUBMISSIONS;
pub const MAX_POST_PAYLOAD_BYTES: usize = 32 << 20;

/// Most values one POST has judged (each a look at this node's assertions), whether new or
/// already held: an envelope of objects naming values the node holds costs no more than one
/// it signs. An object past it is a failure like one past [`MAX_POST_VALUES`].
const MAX_JUDGED_VALUES: usize = 2 * MAX_POST_VALUES;

/// Why a body gives no plan at all.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not a TAXII envelope or STIX bundle (400).
    #[error("the body is not a TAXII envelope or STIX bundle: {0}")]
    NotAnEnvelope(String),
    /// More objects than [`MAX_ENVELOPE_OBJECTS`] (413).
    #[error(
        "the envelope holds {objects} objects, more than the {max} one POST may add: split it"
    )]
    TooManyObjects { objects: usize, max: usize },
}

/// The submission a STIX indicator asks for: a revocation if it is revoked, else an upsert.
pub fn submission_of(i: &StixIndicator) -> pb::Submission {
    use pb::submission::Body;
    let body = if i.revoked {
        Body::Revoke(pb::IndicatorRevoke {
            indicator: None,
            reason: "revoked in STIX".into(),
        })
    } else {
        Body::Upsert(pb::IndicatorUpsert {
            indicator: None,
            confidence: i.confidence.unwrap_or(50).min(100),
            valid_from_unix_ms: i.valid_from_unix_ms.unwrap_or(0),
            valid_until_unix_ms: i.valid_until_unix_ms,
            tags: i.tags.clone(),
            threat_types: Vec::new(),
            description: i.description.clone().unwrap_or_default(),
            external_references: Vec::new(),
        })
    };
    pb::Submission {
        r#type: i.indicator.ty().to_proto() as i32,
        value: i.indicator.value().to_string(),
        distribution: Some(pb::Distribution {
            tlp: i.tlp.to_proto() as i32,
            recipients: Vec::new(),
        }),
        body: Some(body),
    }
}

/// A status detail. Its id and message are cut to a bound: both may carry the caller's text
/// (an id is whatever the object says, an error may quote a pattern), and statuses are kept.
fn detail(id: &str, version: Option<String>, message: Option<String>) -> StatusDetail {
    StatusDetail {
        id: clip_within(id.to_string(), MAX_DETAIL_ID_BYTES),
        version,
        message: message.map(|m| clip_within(m, MAX_DETAIL_MESSAGE_BYTES)),
    }
}

/// Longest id and message a status detail keeps (a STIX id is far shorter; a message naming
/// many stored ids is cut, the ids are read back from the collection).
const MAX_DETAIL_ID_BYTES: usize = 256;
const MAX_DETAIL_MESSAGE_BYTES: usize = 1024;

/// What to sign for `body` and each object's outcome. `held(i)` is what this node's index
/// holds of `i`: its assertions (this node's, one per audience) and everyone's it may read;
/// `containers(i)` the values it may list that hold `i` (`submission::containers_in`).
pub fn plan(
    body: &Value,
    publisher: &Publisher,
    warninglists: &Warninglists,
    (held, containers): (
        impl Fn(&Indicator) -> pb::IndicatorState + Sync,
        impl Fn(&Indicator) -> Vec<Indicator> + Sync,
    ),
) -> Result<Plan, PlanError> {
    use rayon::prelude::*;
    // Unmarked objects were not declared shareable further: AMBER, as on import.
    let options = ImportOptions {
        default_tlp: Tlp::Amber,
    };
    // Every property of an envelope is optional (TAXII 2.1, 3.7): one with no objects adds
    // nothing and is a success, not a malformed body.
    let empty = body
        .as_object()
        .is_some_and(|m| m.keys().all(|k| k == "more" || k == "next"));
    let objects = match empty {
        true => &[][..],
        false => stix_objects(body).map_err(|e| PlanError::NotAnEnvelope(e.to_string()))?,
    };
    if objects.len() > MAX_ENVELOPE_OBJECTS {
        return Err(PlanError::TooManyObjects {
            objects: objects.len(),
            max: MAX_ENVELOPE_OBJECTS,
        });
    }
    let markings = Markings::from_objects(objects);
    // A value some object gives under markings that cannot be read fails wherever the
    // envelope gives it: a restriction this node cannot read is no reason to share it at the
    // default, or at another object's level.
    let withheld = values_under_unreadable_markings(objects, &markings, &options);
    // Only the latest version of an object the envelope gives more than once is applied.
    let later = superseded(objects);
    let mut settling = Settling {
        origin: publisher.org.to_string(),
        ..Settling::default()
    };
    let mut judged_values = 0;
    // Objects are judged a round at a time, so what waits to be settled stays bounded and an
    // envelope past the POST's budget stops costing work where it passes it.
    for (round, chunk) in objects.chunks(JUDGED_PER_ROUND).enumerate() {
        let offset = round * JUDGED_PER_ROUND;
        if settling.full {
            for (i, object) in chunk.iter().enumerate() {
                settling.unjudged(offset + i, object, &markings, &options);
            }
            continue;
        }
        // Each object is read (its pattern, its values) and judged (the node's lists and
        // assertions) on its own, so on every core; only the first of several objects
        // naming one value is signed, which is settled after, in envelope order.
        let read: Vec<ObjectOutcome> = chunk
            .par_iter()
            .enumerate()
            .with_min_len(JUDGED_TOGETHER)
            .map(|(i, object)| import_object(offset + i, object, &markings, &options))
            .collect();
        // In envelope order: from the first object past the judging budget on, nothing more
        // is judged (and `settle` fails every indicator as over the budget).
        let mut judge_it = Vec::with_capacity(read.len());
        for o in &read {
            if let Outcome::Imported(values) = &o.outcome {
                judged_values += values.len();
            }
            judge_it.push(judged_values <= MAX_JUDGED_VALUES);
        }
        let judged: Vec<(ObjectOutcome, Option<String>, Vec<Judged>, String)> = read
            .into_par_iter()
            .zip(chunk.par_iter())
            .zip(judge_it)
            .with_min_len(JUDGED_TOGETHER)
            .map(|((mut o, object), judge_it)| {
                // The values are taken out of the outcome, so they are also dropped here, on
                // every core, not in the pass that settles duplicates.
                let values = match &mut o.outcome {
                    Outcome::Imported(_) if later.contains(&o.index) => vec![Judged::Refused(
                        "a later version of this object in the envelope supersedes it: only that one is applied".into(),
                    )],
                    Outcome::Imported(_) if !judge_it => vec![Judged::OverBudget],
                    Outcome::Imported(values) => match unreadable_marking(object, values) {
                        Some(why) => vec![Judged::Refused(why)],
                        None => match values.iter().find(|v| withheld.contains(&v.indicator)) {
                            Some(v) => vec![Judged::Refused(format!(
                                "another object of this envelope gives {} under markings whose TLP cannot be read: not published at any level",
                                v.indicator.value()
                            ))],
                            None => std::mem::take(values)
                                .iter()
                                .map(|v| judge(v, publisher, warninglists, (&held, &containers)))
                                .collect(),
                        },
                    },
                    _ => Vec::new(),
                };
                let stored = stored_as(&settling.origin, &values);
                (o, version_of(object), values, stored)
            })
            .collect();
        for (o, version, values, stored) in judged {
            settling.settle(o, version, values, stored);
        }
    }
    Ok(settling.plan)
}

/// Objects judged in one round: with [`JUDGED_TOGETHER`], a few cores' shares.
const JUDGED_PER_ROUND: usize = 256;

/// Objects one core judges at a time: enough that handing them over costs little beside
/// judging them.
const JUDGED_TOGETHER: usize = 64;

/// The plan as objects are settled in envelope order.
#[derive(Default)]
struct Settling {
    /// This node: the origin of what it signs, which names the objects stored.
    origin: String,
    plan: Plan,
    /// Values already signed by an earlier object of the envelope, with what was signed.
    seen: BTreeMap<Indicator, Vec<(Distribution, Option<pb::payload::Body>)>>,
    /// Bytes of the payloads to sign so far.
    payload_bytes: usize,
    /// An object did not fit the POST's budget: every indicator after it fails too.
    full: bool,
}

impl Settling {
    /// Settles one object, given its values as judged and the success message naming where
    /// they are stored ([`stored_as`]).
    fn settle(
        &mut self,
        o: ObjectOutcome,
        version: Option<String>,
        values: Vec<Judged>,
        stored: String,
    ) {
        let id =
            o.id.clone()
                .unwrap_or_else(|| format!("(object {})", o.index));
        let plan = &mut self.plan;
        match o.outcome {
            Outcome::Skipped(SkipReason::MarkingDefinition) => {
                plan.successes.push(detail(&id, version, None));
            }
            Outcome::Skipped(SkipReason::NotAnIndicator) => {
                plan.failures
                    .push(not_kept(&id, version, o.object_type.as_deref()))
            }
            Outcome::Failed(e) => plan
                .failures
                .push(detail(&id, version, Some(e.to_string()))),
            Outcome::Imported(_) => {
                let mut prepared = Vec::new();
                let mut refused = None;
                let mut named = BTreeMap::new();
                for judged in values {
                    match judged {
                        Judged::Refused(why) => refused = Some(why),
                        // Held as it asks before this POST, but an earlier object of it
                        // changed the value since: what it asks no longer holds.
                        Judged::Held(indicator) if self.seen.contains_key(&indicator) => {
                            refused = Some(changed_earlier(&indicator));
                        }
                        Judged::Held(_) => {}
                        Judged::OverBudget => self.full = true,
                        // The first object naming a value wins; a repeat in one envelope
                        // asking the same is signed once. One asking something else (a
                        // revocation after an upsert) was judged against the state before
                        // this POST, as the first was: it fails, to be posted again.
                        Judged::New(indicator, submission) => match submission {
                            Ok(ps) if self.seen.contains_key(&indicator) => {
                                if self.seen.get(&indicator) != Some(&what_is_signed(&ps)) {
                                    refused = Some(changed_earlier(&indicator));
                                }
                            }
                            Ok(ps) => {
                                if let std::collections::btree_map::Entry::Vacant(slot) =
                                    named.entry(indicator)
                                {
                                    slot.insert(what_is_signed(&ps));
                                    prepared.extend(ps);
                                }
                            }
                            Err(why) => refused = Some(why),
                        },
                    }
                }
                if let Some(why) = refused {
                    plan.failures.push(detail(&id, version, Some(why)));
                    return;
                }
                let bytes: usize = prepared.iter().map(|p| p.payload.encoded_len()).sum();
                let fits = plan.to_sign.len() + prepared.len() <= MAX_POST_VALUES
                    && self.payload_bytes + bytes <= MAX_POST_PAYLOAD_BYTES;
                if self.full || !fits {
                    self.full = true;
                    plan.failures.push(over_budget(&id, version));
                    return;
                }
                self.payload_bytes += bytes;
                self.seen.extend(named);
                plan.to_sign.extend(prepared);
                plan.successes.push(detail(&id, version, Some(stored)));
            }
        }
    }

    /// An object of a round left unjudged once the budget is spent: an indicator fails as
    /// over the budget, anything else has its usual (cheap) outcome.
    fn unjudged(
        &mut self,
        index: usize,
        object: &Value,
        markings: &Markings,
        options: &ImportOptions,
    ) {
        let version = version_of(object);
        if object.get("type").and_then(Value::as_str) == Some("indicator") {
            let id = object.get("id").and_then(Value::as_str).map(str::to_owned);
            let id = id.unwrap_or_else(|| format!("(object {index})"));
            self.plan.failures.push(over_budget(&id, version));
        } else {
            let o = import_object(index, object, markings, options);
            self.settle(o, version, Vec::new(), String::new());
        }
    }
}

/// The version a status names an object by: its `modified` (or else `created`) time.
fn version_of(object: &Value) -> Option<String> {
    intelmesh_interop::taxii::object_version(object).map(format_timestamp)
}

/// The success message of an object whose values are `values`: the collection names what it
/// holds by origin and value, not by the posted id, so the success says under which ids they
/// are read back. Made where objects are judged, on every core.
fn stored_as(origin: &str, values: &[Judged]) -> String {
    let ids: BTreeSet<String> = values
        .iter()
        .filter_map(|j| match j {
            Judged::Held(i) | Judged::New(i, _) => Some(indicator_id(origin, i)),
            Judged::Refused(_) | Judged::OverBudget => None,
        })
        .collect();
    let ids: Vec<String> = ids.into_iter().collect();
    format!("stored as {}", ids.join(", "))
}

fn not_kept(id: &str, version: Option<String>, object_type: Option<&str>) -> StatusDetail {
    detail(
        id,
        version,
        Some(format!(
            "{} objects are not kept: the mesh holds indicators (and reports sightings itself)",
            object_type.unwrap_or("untyped")
        )),
    )
}

fn over_budget(id: &str, version: Option<String>) -> StatusDetail {
    detail(
        id,
        version,
        Some(format!(
            "not added: one POST signs at most {MAX_POST_VALUES} values and \
             {MAX_POST_PAYLOAD_BYTES} bytes of payload, and looks at most at \
             {MAX_JUDGED_VALUES} values, and the objects before this one reached that; post \
             it again in another envelope"
        )),
    )
}

/// What one value of a posted indicator comes to before duplicates are settled.
// Most values are `New`: boxing it would cost an allocation per value for nothing.
#[allow(clippy::large_enum_variant)]
enum Judged {
    /// Refused, with why: on the node's warninglists, or marked in a way the node cannot
    /// read.
    Refused(String),
    /// Already asserted by this node as asked: nothing to sign.
    Held(Indicator),
    /// To sign if no earlier object named it: the submissions (an upsert, or a revocation
    /// per audience), or why it is refused.
    New(Indicator, Result<Vec<Prepared>, String>),
    /// Not judged: the POST had judged as many values as it may ([`MAX_JUDGED_VALUES`]).
    OverBudget,
}

fn judge(
    v: &StixIndicator,
    publisher: &Publisher,
    warninglists: &Warninglists,
    (held, containers): (
        &(impl Fn(&Indicator) -> pb::IndicatorState + Sync),
        &(impl Fn(&Indicator) -> Vec<Indicator> + Sync),
    ),
) -> Judged {
    let lists = lists_of(warninglists, &v.indicator);
    if !v.revoked && !lists.is_empty() {
        return Judged::Refused(format!(
            "{} is on (or covers a value on) the node's warninglists of known-benign values ({}): not published",
            v.indicator.value(),
            lists.join(", ")
        ));
    }
    let state = held(&v.indicator);
    let own: Vec<pb::OriginAssertion> = (state.assertions.iter())
        .filter(|a| a.origin == publisher.org.as_str())
        .cloned()
        .collect();
    let mine = own.iter().max_by_key(|a| a.seq);
    let mut s = submission_of(v);
    let failed = |e: Invalid| format!("{}: {e}", v.indicator.value());
    if v.revoked && mine.is_none() {
        return Judged::Refused(format!(
            "{}: revoked, but this node never asserted it: nothing to revoke",
            v.indicator.value()
        ));
    }
    // A revocation goes to every audience the value is still in force for here that it
    // names: without markings (which make no new sharing decision) every one, else every one
    // at its TLP level (a marking carries no recipients). One revocation per distribution: it
    // shares nothing new, and elsewhere those readers would never see it revoked.
    if v.revoked {
        let named = |d: &pb::Distribution| v.tlp_defaulted || d.tlp == v.tlp.to_proto() as i32;
        let mut live: Vec<&pb::Distribution> = own_live(&own);
        let others: Vec<&pb::Distribution> = live.iter().copied().filter(|d| !named(d)).collect();
        live.retain(|d| named(d));
        if live.is_empty() {
            // Never in force here at that level (only at others): a revocation there would
            // revoke nothing, and the client would think it had.
            if !others.is_empty()
                && !own
                    .iter()
                    .any(|a| a.distribution.as_ref().is_some_and(named))
            {
                return Judged::Refused(format!(
                    "{}: revoked under TLP:{}, but this node asserts it in force only under {}: \
                     nothing to revoke there; post the revocation without markings to revoke it \
                     for every audience, or marked as the audience to revoke",
                    v.indicator.value(),
                    v.tlp,
                    audiences_text(&others)
                ));
            }
            return Judged::Held(v.indicator.clone());
        }
        let revocations = live
            .into_iter()
            .map(|d| {
                let s = pb::Submission {
                    distribution: Some(d.clone()),
                    ..s.clone()
                };
                submission(&s, publisher).map_err(failed)
            })
            .collect();
        return Judged::New(v.indicator.clone(), revocations);
    }
    // An upsert of a value this node asserts AMBER or more narrowly keeps that distribution
    // (TLP and recipients); anything else takes AMBER, never wider.
    let kept = mine.and_then(|a| a.distribution.as_ref());
    if let (true, Some(d)) = (v.tlp_defaulted, kept) {
        if d.tlp >= pb::Tlp::Amber as i32 {
            s.distribution = Some(d.clone());
        }
    }
    if mine.is_some_and(|a| same_or_revoked(a, &s)) {
        return Judged::Held(v.indicator.clone());
    }
    let prepared = submission(&s, publisher)
        .and_then(|p| {
            let p = vec![p];
            refuse_past_audience_cap(&p, |_, _| {
                own.iter()
                    .filter_map(|a| a.distribution.as_ref())
                    .map(audience_of)
                    .collect()
            })?;
            Ok(p)
        })
        .map_err(failed);
    // Known here only as RED or AMBER+STRICT (another origin's, read here): an upsert shared
    // wider would show the value to members who may not read it.
    let wider = prepared.as_ref().ok().map(|ps| {
        // The value's own state is read already; only its other forms are read here.
        let known = |i: &Indicator| match *i == v.indicator {
            true => Ok(Some(state.clone())),
            false => Ok(Some(held(i))),
        };
        wider_than_known_all(ps, publisher.org, known, containers)
    });
    if let Some(why) = wider
        .and_then(|w| w.ok())
        .and_then(|w| w.into_iter().next())
    {
        return Judged::Refused(format!(
            "{why}; mark it RED or AMBER+STRICT to be shared with readers among those"
        ));
    }
    Judged::New(v.indicator.clone(), prepared)
}

/// Why an object is failed whose value an earlier object of the POST changed.
fn changed_earlier(indicator: &Indicator) -> String {
    format!(
        "{}: an earlier object of this POST changed it; post this one again to apply it after \
         that",
        indicator.value()
    )
}

/// What an object's submissions for one value sign: each one's audience and body (the same
/// in two objects asking the same of a value, since both are made at the POST's time).
fn what_is_signed(ps: &[Prepared]) -> Vec<(Distribution, Option<pb::payload::Body>)> {
    ps.iter()
        .map(|p| (p.distribution.clone(), p.payload.body.clone()))
        .collect()
}

/// The distributions of `own`'s assertions in force (not revoked), each once.
fn own_live(own: &[pb::OriginAssertion]) -> Vec<&pb::Distribution> {
    let mut live: Vec<&pb::Distribution> = own
        .iter()
        .filter(|a| !a.revoked)
        .filter_map(|a| a.distribution.as_ref())
        .collect();
    live.sort_by_key(|d| (d.tlp, d.recipients.clone()));
    live.dedup();
    live
}

/// Audiences as a reader names them: `TLP:RED (to BR-PF)`.
fn audiences_text(audiences: &[&pb::Distribution]) -> String {
    let one = |d: &&pb::Distribution| {
        let tlp = Tlp::from_proto(d.tlp).map_or_else(|| d.tlp.to_string(), |t| t.to_string());
        match d.recipients.is_empty() {
            true => format!("TLP:{tlp}"),
            false => format!("TLP:{tlp} (to {})", d.recipients.join(", ")),
        }
    };
    audiences.iter().map(one).collect::<Vec<_>>().join(", ")
}

/// Whether `a` already says what `s` asks: the same upsert, or a revocation of a value
/// already revoked.
fn same_or_revoked(a: &pb::OriginAssertion, s: &pb::Submission) -> bool {
    match &s.body {
        Some(pb::submission::Body::Revoke(_)) => a.revoked,
        _ => held_identically(a, s),
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
