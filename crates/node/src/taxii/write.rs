//! Adding objects: a posted envelope to entries signed by this node and a status resource
//! that gives every posted object exactly one outcome.
//!
//! [`plan`] is pure: each `indicator` whose pattern the mesh represents becomes one
//! submission per value (checked as the gRPC `Submit` checks them), a TLP marking definition
//! is consumed, anything else is a failure with its reason. A value this node already asserts
//! identically is a success that signs nothing, so an identical re-POST publishes nothing. A
//! value on the node's warninglists is a failure (TAXII has no way to force it).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;

use intelmesh_core::{Indicator, OrgId, Tlp};
use intelmesh_interop::stix::{
    import_object, stix_objects, ImportOptions, ObjectOutcome, Outcome, SkipReason, StixIndicator,
};
use intelmesh_interop::taxii::{StatusDetail, StatusResource};
use intelmesh_interop::{format_timestamp, Markings, Warninglists};
use intelmesh_proto::v1 as pb;
use serde_json::Value;

use crate::api::submission::{held_identically, submission, Prepared, Publisher};
use crate::warninglists::lists_of;

/// Statuses kept for `GET …/status/{id}/`, the oldest forgotten first.
const STATUSES_KEPT: usize = 1024;

/// What to sign for a POST, and the status it will have once signed.
#[derive(Debug, Default)]
pub struct Plan {
    pub to_sign: Vec<Prepared>,
    pub successes: Vec<StatusDetail>,
    pub failures: Vec<StatusDetail>,
}

/// Why a body is not an envelope at all (400).
#[derive(Debug, thiserror::Error)]
#[error("the body is not a TAXII envelope or STIX bundle: {0}")]
pub struct NotAnEnvelope(String);

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

fn detail(id: &str, version: Option<i64>, message: Option<String>) -> StatusDetail {
    StatusDetail {
        id: id.to_string(),
        version: version.map(format_timestamp),
        message,
    }
}

/// What to sign for `body` and each object's outcome. `held(i)` is this node's assertion in
/// force about `i`, if any.
pub fn plan(
    body: &Value,
    publisher: &Publisher,
    warninglists: &Warninglists,
    held: impl Fn(&Indicator) -> Option<pb::OriginAssertion> + Sync,
) -> Result<Plan, NotAnEnvelope> {
    use rayon::prelude::*;
    // Unmarked objects were not declared shareable further: AMBER, as on import.
    let options = ImportOptions {
        default_tlp: Tlp::Amber,
    };
    let objects = stix_objects(body).map_err(|e| NotAnEnvelope(e.to_string()))?;
    let markings = Markings::from_objects(objects);
    // Each object is judged on its own (its pattern, its submissions, the node's lists and
    // assertions), so on every core; only the first of several objects naming one value is
    // signed, which is settled after, in envelope order.
    let judged: Vec<(ObjectOutcome, Vec<Judged>)> = objects
        .par_iter()
        .enumerate()
        .with_min_len(JUDGED_TOGETHER)
        .map(|(index, object)| {
            let mut o = import_object(index, object, &markings, &options);
            // The values are taken out of the outcome, so they are also dropped here, on
            // every core, not in the pass that settles duplicates.
            let values = match &mut o.outcome {
                Outcome::Imported(values) => std::mem::take(values)
                    .iter()
                    .map(|v| judge(v, publisher, warninglists, &held))
                    .collect(),
                _ => Vec::new(),
            };
            (o, values)
        })
        .collect();
    let mut plan = Plan::default();
    let mut seen: BTreeSet<Indicator> = BTreeSet::new();
    for (o, values) in judged {
        let id =
            o.id.clone()
                .unwrap_or_else(|| format!("(object {})", o.index));
        let version = objects
            .get(o.index)
            .and_then(intelmesh_interop::taxii::object_version);
        match o.outcome {
            Outcome::Skipped(SkipReason::MarkingDefinition) => {
                plan.successes.push(detail(&id, version, None));
            }
            Outcome::Skipped(SkipReason::NotAnIndicator) => plan.failures.push(detail(
                &id,
                version,
                Some(format!(
                    "{} objects are not kept: the mesh holds indicators (and reports sightings itself)",
                    o.object_type.as_deref().unwrap_or("untyped")
                )),
            )),
            Outcome::Failed(e) => plan
                .failures
                .push(detail(&id, version, Some(e.to_string()))),
            Outcome::Imported(_) => {
                let mut prepared = Vec::new();
                let mut refused = None;
                for judged in values {
                    match judged {
                        Judged::Listed(why) => refused = Some(why),
                        Judged::Held => {}
                        // The first object naming a value wins; a repeat in one envelope is
                        // signed once.
                        Judged::New(indicator, submission) => match submission {
                            _ if !seen.insert(indicator) => {}
                            Ok(p) => prepared.push(p),
                            Err(why) => refused = Some(why),
                        },
                    }
                }
                match refused {
                    Some(why) => plan.failures.push(detail(&id, version, Some(why))),
                    None => {
                        plan.to_sign.extend(prepared);
                        plan.successes.push(detail(&id, version, None));
                    }
                }
            }
        }
    }
    Ok(plan)
}

/// Objects one core judges at a time: enough that handing them over costs little beside
/// judging them.
const JUDGED_TOGETHER: usize = 64;

/// What one value of a posted indicator comes to before duplicates are settled.
// Most values are `New`: boxing it would cost an allocation per value for nothing.
#[allow(clippy::large_enum_variant)]
enum Judged {
    /// On the node's warninglists: refused, with why.
    Listed(String),
    /// Already asserted by this node as asked: nothing to sign.
    Held,
    /// To sign if no earlier object named it: the submission, or why it is refused.
    New(Indicator, Result<Prepared, String>),
}

fn judge(
    v: &StixIndicator,
    publisher: &Publisher,
    warninglists: &Warninglists,
    held: &(impl Fn(&Indicator) -> Option<pb::OriginAssertion> + Sync),
) -> Judged {
    let s = submission_of(v);
    let lists = lists_of(warninglists, &v.indicator);
    if !v.revoked && !lists.is_empty() {
        return Judged::Listed(format!(
            "{} is on the node's warninglists of known-benign values ({}): not published",
            v.indicator.value(),
            lists.join(", ")
        ));
    }
    if held(&v.indicator).is_some_and(|a| same_or_revoked(&a, &s)) {
        return Judged::Held;
    }
    let prepared = submission(&s, publisher).map_err(|e| format!("{}: {e}", v.indicator.value()));
    Judged::New(v.indicator.clone(), prepared)
}

/// Whether `a` already says what `s` asks: the same upsert, or a revocation of a value
/// already revoked.
fn same_or_revoked(a: &pb::OriginAssertion, s: &pb::Submission) -> bool {
    match &s.body {
        Some(pb::submission::Body::Revoke(_)) => a.revoked,
        _ => held_identically(a, s),
    }
}

/// Status resources of recent POSTs, each readable by the caller that made it.
#[derive(Default)]
pub struct Statuses {
    kept: Mutex<VecDeque<(OrgId, String, StatusResource)>>,
}

impl Statuses {
    pub fn keep(&self, org: &OrgId, caller: &str, status: StatusResource) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= STATUSES_KEPT {
            kept.pop_front();
        }
        kept.push_back((org.clone(), caller.to_string(), status));
    }

    pub fn get(&self, org: &OrgId, caller: &str, id: &str) -> Option<StatusResource> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .find(|(o, c, s)| o == org && c == caller && s.id == id)
            .map(|(_, _, s)| s.clone())
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
