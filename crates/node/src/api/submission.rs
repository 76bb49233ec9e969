//! The rules of the `Indicators` API's writes as plain functions, no I/O: turning raw
//! submissions and sightings into canonical, signable payloads, checked whole before anything
//! is signed, and refusing what receivers would refuse.

use std::collections::BTreeSet;

use intelmesh_core::entry::{
    MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES, MAX_RECIPIENTS, MAX_TAGS, MAX_TAG_BYTES,
};
use intelmesh_core::indicator::{detect, normalize};
use intelmesh_core::payload::sealed_len;
use intelmesh_core::sealed::MAX_SEALED_PLAINTEXT;
use intelmesh_core::{Distribution, Indicator, IndicatorType, OrgId, Tlp, VerifyConfig};
use intelmesh_proto::v1 as pb;
use intelmesh_store::MAX_SLOTS_PER_ORIGIN;
use prost::Message;

use super::view::{invalid, to_ref, Invalid};

// The rule against sharing a value wider than this node knows it lives in its own module;
// its paths under `submission` stay.
pub use super::wider::{
    containers_in, refuse_wider_than_known, same_value, wider_than_known, wider_than_known_all,
};

/// Most submissions in one `Submit` call.
pub const MAX_SUBMISSIONS: usize = 10_000;
/// Invalid submissions described in one error; the count says how many more there were.
const ERRORS_SHOWN: usize = 10;

/// Who publishes, and what it checks submissions against.
pub struct Publisher<'a> {
    pub org: &'a OrgId,
    /// The federation's members: the only orgs a recipient list may name.
    pub members: &'a BTreeSet<OrgId>,
    pub now: i64,
}

/// A submission made canonical: what to sign, and the indicator to answer with.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub distribution: Distribution,
    pub payload: pb::Payload,
    pub indicator: Indicator,
}

/// Normalizes a raw value of a proto type; unspecified means "detect the type".
pub fn parse_indicator(ty: i32, raw: &str) -> Result<Indicator, Invalid> {
    let result = if ty == pb::IndicatorType::Unspecified as i32 {
        detect(raw)
    } else {
        let t = IndicatorType::from_proto(ty)
            .ok_or_else(|| invalid(format!("unknown indicator type {ty}")))?;
        normalize(t, raw)
    };
    result.map_err(|e| invalid(format!("value: {e} ({})", e.kind())))
}

fn parse_distribution(
    d: Option<&pb::Distribution>,
    p: &Publisher,
) -> Result<Distribution, Invalid> {
    let d = d.ok_or_else(|| invalid("distribution is required (a TLP level)"))?;
    let tlp = Tlp::from_proto(d.tlp).ok_or_else(|| {
        invalid(match d.tlp {
            0 => "distribution.tlp is required".to_string(),
            t => format!("distribution.tlp: unknown TLP level {t}"),
        })
    })?;
    let mut recipients: Vec<OrgId> = Vec::new();
    for (i, r) in d.recipients.iter().enumerate() {
        let org =
            OrgId::parse(r).map_err(|e| invalid(format!("distribution.recipients[{i}]: {e}")))?;
        if !p.members.contains(&org) {
            return Err(invalid(format!(
                "distribution.recipients[{i}]: {org} is not a member of this federation"
            )));
        }
        if !recipients.contains(&org) {
            recipients.push(org);
        }
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(invalid(format!(
            "distribution.recipients: {} orgs named; at most {MAX_RECIPIENTS}",
            recipients.len()
        )));
    }
    if !recipients.is_empty() && !tlp.is_restricted() {
        return Err(invalid(format!(
            "distribution.recipients apply only to AMBER+STRICT and RED; TLP:{tlp} goes to all"
        )));
    }
    Ok(Distribution { tlp, recipients })
}

/// Checks one `Submit` entry and makes its payload canonical.
pub fn submission(s: &pb::Submission, p: &Publisher) -> Result<Prepared, Invalid> {
    use pb::submission::Body;
    let indicator = parse_indicator(s.r#type, &s.value)?;
    let distribution = parse_distribution(s.distribution.as_ref(), p)?;
    let body_ref = |r: &Option<pb::IndicatorRef>| -> Result<(), Invalid> {
        match r.as_ref().filter(|r| !r.value.is_empty()) {
            Some(r) if parse_indicator(r.r#type, &r.value).ok().as_ref() != Some(&indicator) => {
                Err(invalid(
                    "the body's indicator differs from type and value; leave it unset",
                ))
            }
            _ => Ok(()),
        }
    };
    let body = match s.body.as_ref() {
        None => return Err(invalid("body is required: an upsert or a revoke")),
        Some(Body::Upsert(u)) => {
            body_ref(&u.indicator)?;
            if u.confidence > 100 {
                return Err(invalid(format!(
                    "upsert.confidence {} is over 100",
                    u.confidence
                )));
            }
            if u.valid_from_unix_ms < 0 {
                return Err(invalid(format!(
                    "upsert.valid_from {} is before 1970",
                    u.valid_from_unix_ms
                )));
            }
            if u.valid_until_unix_ms
                .is_some_and(|t| t <= u.valid_from_unix_ms)
            {
                return Err(invalid("upsert.valid_until must be after valid_from"));
            }
            // What could never fit a payload is refused before any work on it: a caller's
            // hundred thousand tags must not hold a worker.
            let tag_bytes: usize = u.tags.iter().map(String::len).sum();
            if tag_bytes + u.description.len() > MAX_PAYLOAD_BYTES {
                return Err(invalid(format!(
                    "upsert tags and description are {} bytes, over the {MAX_PAYLOAD_BYTES}-byte payload limit",
                    tag_bytes + u.description.len()
                )));
            }
            let tags = canonical_tags(&u.tags);
            if tags.len() > MAX_TAGS {
                return Err(invalid(format!(
                    "upsert has {} distinct tags; at most {MAX_TAGS}",
                    tags.len()
                )));
            }
            if let Some(long) = tags.iter().find(|t| t.len() > MAX_TAG_BYTES) {
                return Err(invalid(format!(
                    "upsert tag {:?}… is {} bytes; at most {MAX_TAG_BYTES}",
                    long.chars().take(40).collect::<String>(),
                    long.len()
                )));
            }
            pb::payload::Body::Upsert(pb::IndicatorUpsert {
                indicator: Some(to_ref(&indicator)),
                tags,
                ..u.clone()
            })
        }
        Some(Body::Revoke(r)) => {
            body_ref(&r.indicator)?;
            pb::payload::Body::Revoke(pb::IndicatorRevoke {
                indicator: Some(to_ref(&indicator)),
                reason: r.reason.clone(),
            })
        }
    };
    prepared(indicator, distribution, body, p)
}

/// Tags as signed: trimmed, empty ones dropped, each once, in the order given.
fn canonical_tags(tags: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty() && seen.insert(*t))
        .map(str::to_string)
        .collect()
}

/// Whether an origin's assertion in force already says what the submission would: a
/// repeat of it (an import run again, an identical TAXII POST) need not be signed again.
pub fn held_identically(a: &pb::OriginAssertion, s: &pb::Submission) -> bool {
    let Some(pb::submission::Body::Upsert(u)) = &s.body else {
        return false;
    };
    let (Some(have), Some(want)) = (&a.distribution, &s.distribution) else {
        return false;
    };
    !a.revoked
        && audience_of(have) == audience_of(want)
        && a.confidence == u.confidence
        // An upsert without valid_from is valid from when it is signed (and an export writes
        // that time, so the node's own export imported back is the same assertion).
        && (u.valid_from_unix_ms == 0
            || a.valid_from_unix_ms == u.valid_from_unix_ms
            || (a.valid_from_unix_ms == 0 && u.valid_from_unix_ms == a.issued_at_unix_ms))
        && a.valid_until_unix_ms == u.valid_until_unix_ms
        && a.tags == canonical_tags(&u.tags)
        && a.threat_types == u.threat_types
        && a.description == u.description
}

/// Refuses the whole request if an upsert names a value on a warninglist (revocations and
/// sightings of such values are fine: they push nothing to anyone's block list).
pub fn refuse_listed(
    items: &[Prepared],
    lists: &intelmesh_interop::Warninglists,
) -> Result<(), Invalid> {
    if lists.is_empty() {
        return Ok(());
    }
    let listed: Vec<(&Indicator, Vec<String>)> = items
        .iter()
        .filter(|p| matches!(p.payload.body, Some(pb::payload::Body::Upsert(_))))
        .map(|p| {
            (
                &p.indicator,
                crate::warninglists::lists_of(lists, &p.indicator),
            )
        })
        .filter(|(_, names)| !names.is_empty())
        .collect();
    if listed.is_empty() {
        Ok(())
    } else {
        Err(invalid(crate::warninglists::refusal(&listed)))
    }
}

/// Refuses revocations of values this node never asserted (`asserted` says whether it did,
/// an upsert earlier in `items` counting too): a revocation of nothing would be signed and
/// spread to every member for no assertion to end.
pub fn refuse_unasserted(
    items: &[Prepared],
    asserted: impl Fn(&Indicator) -> bool,
) -> Result<(), Invalid> {
    let mut upserted = std::collections::HashSet::new();
    // Each value's state is read once however often the call names it.
    let mut read = std::collections::HashMap::new();
    let mut never = Vec::new();
    for (i, p) in items.iter().enumerate() {
        match p.payload.body {
            Some(pb::payload::Body::Upsert(_)) => {
                upserted.insert(&p.indicator);
            }
            Some(pb::payload::Body::Revoke(_))
                if !upserted.contains(&p.indicator)
                    && !*read
                        .entry(&p.indicator)
                        .or_insert_with(|| asserted(&p.indicator)) =>
            {
                never.push(format!("submissions[{i}]: {}", p.indicator.value()));
            }
            _ => {}
        }
    }
    if never.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "this node never asserted what {} would revoke; nothing was published",
        first_of(never)
    )))
}

/// Which of an origin's slots in an indicator's state a payload goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// Upserts and revocations.
    Assertion,
    Sighting,
}

impl SlotKind {
    pub fn of(p: &Prepared) -> SlotKind {
        match p.payload.body {
            Some(pb::payload::Body::Sighting(_)) => SlotKind::Sighting,
            _ => SlotKind::Assertion,
        }
    }
}

/// An audience as the index keys a slot: TLP level, then recipients sorted and deduplicated.
pub type Audience = (i32, Vec<String>);

pub fn audience_of(d: &pb::Distribution) -> Audience {
    let mut recipients = d.recipients.clone();
    recipients.sort();
    recipients.dedup();
    (d.tlp, recipients)
}

/// `org`'s audiences in `state`'s slots of `kind`.
pub fn audiences(state: &pb::IndicatorState, org: &OrgId, kind: SlotKind) -> Vec<Audience> {
    let slots: Vec<(&str, Option<&pb::Distribution>)> = match kind {
        SlotKind::Assertion => (state.assertions.iter())
            .map(|a| (a.origin.as_str(), a.distribution.as_ref()))
            .collect(),
        SlotKind::Sighting => (state.sightings.iter())
            .map(|x| (x.origin.as_str(), x.distribution.as_ref()))
            .collect(),
    };
    slots
        .into_iter()
        .filter(|(origin, _)| *origin == org.as_str())
        .filter_map(|(_, d)| d.map(audience_of))
        .collect()
}

/// Refuses the whole request if it would give this node more audiences for one value than
/// every node's index keeps for one origin ([`MAX_SLOTS_PER_ORIGIN`]): the entry would be
/// signed and sent, and no reader anywhere would see it (or, ordered before a kept audience,
/// it would push that one out). `held(i, kind)` is the node's own audiences for the value.
pub fn refuse_past_audience_cap(
    items: &[Prepared],
    held: impl Fn(&Indicator, SlotKind) -> Vec<Audience>,
) -> Result<(), Invalid> {
    AudienceClaims::of(items).refuse_past_cap(held)
}

/// What a publication adds to this node's audiences: each item's value, slot kind and
/// audience. Kept apart from the payloads, so the cap can be judged again under the publish
/// lock (`crate::own_entries::Rejudge`) without holding a second copy of them.
pub struct AudienceClaims(Vec<(Indicator, SlotKind, Audience)>);

impl AudienceClaims {
    pub fn of(items: &[Prepared]) -> AudienceClaims {
        AudienceClaims(
            items
                .iter()
                .map(|p| {
                    let audience = audience_of(&p.distribution.to_proto());
                    (p.indicator.clone(), SlotKind::of(p), audience)
                })
                .collect(),
        )
    }

    /// [`refuse_past_audience_cap`] for these claims.
    pub fn refuse_past_cap(
        &self,
        held: impl Fn(&Indicator, SlotKind) -> Vec<Audience>,
    ) -> Result<(), Invalid> {
        let mut slots: std::collections::HashMap<(&Indicator, SlotKind), BTreeSet<Audience>> =
            Default::default();
        let mut over = Vec::new();
        for (indicator, kind, audience) in &self.0 {
            let known = slots
                .entry((indicator, *kind))
                .or_insert_with(|| held(indicator, *kind).into_iter().collect());
            if known.insert(audience.clone()) && known.len() > MAX_SLOTS_PER_ORIGIN {
                over.push(indicator.value().to_string());
            }
        }
        if over.is_empty() {
            return Ok(());
        }
        Err(invalid(format!(
            "this node would share {} with more than {MAX_SLOTS_PER_ORIGIN} audiences (TLP level \
             and recipients), the most any node keeps for one origin: publish under an audience \
             it already uses; nothing was published",
            first_of(over)
        )))
    }
}

/// The first [`ERRORS_SHOWN`] of `named`, and how many more there were.
pub(super) fn first_of(mut named: Vec<String>) -> String {
    let more = named.len().saturating_sub(ERRORS_SHOWN);
    named.truncate(ERRORS_SHOWN);
    match more {
        0 => named.join(", "),
        more => format!("{} (and {more} more)", named.join(", ")),
    }
}

/// Checks a `ReportSighting` request and makes its payload canonical.
pub fn sighting(r: &pb::ReportSightingRequest, p: &Publisher) -> Result<Prepared, Invalid> {
    let indicator = parse_indicator(r.r#type, &r.value)?;
    let distribution = parse_distribution(r.distribution.as_ref(), p)?;
    if r.count == 0 {
        return Err(invalid("count must be at least 1"));
    }
    let seen_at = match r.seen_at_unix_ms {
        0 => p.now,
        t if t > p.now.saturating_add(VerifyConfig::DEFAULT_SKEW_MS) => {
            return Err(invalid(format!(
                "seen_at {t} is in the future (now is {})",
                p.now
            )))
        }
        t if t < 0 => return Err(invalid(format!("seen_at {t} is before 1970"))),
        t => t,
    };
    let body = pb::payload::Body::Sighting(pb::Sighting {
        indicator: Some(to_ref(&indicator)),
        seen_at_unix_ms: seen_at,
        count: r.count,
    });
    prepared(indicator, distribution, body, p)
}

/// Refuses what receivers would refuse for size, so a publish cannot fail half way.
fn prepared(
    indicator: Indicator,
    distribution: Distribution,
    body: pb::payload::Body,
    p: &Publisher,
) -> Result<Prepared, Invalid> {
    let payload = pb::Payload {
        body: Some(body),
        ..Default::default()
    };
    // As signed: with its nonce, and padded to a bucket if restricted.
    let len = sealed_len(&payload, distribution.tlp.is_restricted());
    if len > MAX_PAYLOAD_BYTES {
        return Err(invalid(format!(
            "payload is {len} bytes once sealed, over the {MAX_PAYLOAD_BYTES}-byte limit"
        )));
    }
    // Restricted payloads are sealed to their readers, and the envelope must fit the cap.
    if distribution.tlp.is_restricted() && len > MAX_SEALED_PLAINTEXT {
        return Err(invalid(format!(
            "a restricted payload is {len} bytes once padded, over the {MAX_SEALED_PLAINTEXT} bytes a sealed payload holds: shorten the description or tags"
        )));
    }
    // The largest header this entry could get: maximal seq and timestamp varints.
    let header = pb::EntryHeader {
        origin: p.org.to_string(),
        seq: u64::MAX,
        prev_hash: vec![0; 32],
        payload_commitment: vec![0; 32],
        payload_len: len as u64,
        issued_at_unix_ms: i64::MAX,
        key_id: vec![0; 8],
        distribution: Some(distribution.to_proto()),
        sealed: true,
    };
    if header.encoded_len() > MAX_HEADER_BYTES {
        return Err(invalid(format!(
            "too many recipients: the header would exceed {MAX_HEADER_BYTES} bytes"
        )));
    }
    Ok(Prepared {
        distribution,
        payload,
        indicator,
    })
}

/// Checks a whole `Submit` batch: all of it, or an error naming each bad index.
pub fn submissions(subs: &[pb::Submission], p: &Publisher) -> Result<Vec<Prepared>, Invalid> {
    if subs.is_empty() {
        return Err(invalid("no submissions"));
    }
    if subs.len() > MAX_SUBMISSIONS {
        return Err(invalid(format!(
            "{} submissions, over the {MAX_SUBMISSIONS} allowed per call; split the batch",
            subs.len()
        )));
    }
    let mut good = Vec::with_capacity(subs.len());
    let mut errors = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        match submission(s, p) {
            Ok(x) => good.push(x),
            Err(e) => errors.push(format!("submissions[{i}]: {e}")),
        }
    }
    if errors.is_empty() {
        return Ok(good);
    }
    let more = errors.len().saturating_sub(ERRORS_SHOWN);
    let mut msg = format!(
        "{} of {} submissions are invalid; nothing was published: {}",
        errors.len(),
        subs.len(),
        errors[..errors.len().min(ERRORS_SHOWN)].join("; ")
    );
    if more > 0 {
        msg.push_str(&format!("; and {more} more"));
    }
    Err(invalid(msg))
}

#[cfg(test)]
#[path = "submission_tests.rs"]
mod tests;
