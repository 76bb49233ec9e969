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

/// Who may read what `state` says of a value, as `me` was told it: everyone (`None`) once any
/// record of another origin that `me` may read is unrestricted, or when there is none; else
/// the origins and recipients of those records. Records it holds but may not read (a relay's
/// copy of an unsealed restricted payload) neither restrict it nor say the value exists; its
/// own sightings tell it nothing; an assertion of its own lifts it when open, or when first
/// issued before every record that restricts it (it published the value itself, and may
/// again, wider; one made after being told would launder what it was told). The times are
/// the records' own: a teller whose clock runs ahead (within the skew verification allows)
/// leaves a window in which an assertion made after being told still lifts it; the rule
/// guards against a slip, and a member set on leaking has `share_wider` anyway, while a
/// margin would keep an origin from declassifying its own value for minutes after anyone
/// sighted it.
fn readers_of(state: &pb::IndicatorState, me: &OrgId) -> Option<BTreeSet<String>> {
    let records = (state.assertions.iter())
        .map(|a| {
            let first = match a.first_issued_at_unix_ms {
                0 => a.issued_at_unix_ms,
                first => first,
            };
            (a.origin.as_str(), a.distribution.as_ref(), first)
        })
        .chain((state.sightings.iter()).map(|x| {
            (
                x.origin.as_str(),
                x.distribution.as_ref(),
                x.first_seen_unix_ms,
            )
        }));
    let mut readers = BTreeSet::new();
    let mut told_at = i64::MAX;
    for (origin, d, at) in records {
        let Some(d) = d else { continue };
        if origin == me.as_str() {
            continue;
        }
        // A level this version does not know is taken as restricting.
        if Tlp::from_proto(d.tlp).is_some_and(|t| !t.is_restricted()) {
            return None;
        }
        if !d.recipients.iter().any(|r| r == me.as_str()) {
            continue;
        }
        readers.insert(origin.to_string());
        readers.extend(d.recipients.iter().cloned());
        told_at = told_at.min(at);
    }
    if readers.is_empty() || own_lifts(state, me, told_at) {
        return None;
    }
    Some(readers)
}

/// Whether `me` asserts the value openly, or asserted it before `told_at`.
fn own_lifts(state: &pb::IndicatorState, me: &OrgId, told_at: i64) -> bool {
    state.assertions.iter().any(|a| {
        let open = (a.distribution.as_ref())
            .and_then(|d| Tlp::from_proto(d.tlp))
            .is_some_and(|t| !t.is_restricted());
        let first = match a.first_issued_at_unix_ms {
            0 => a.issued_at_unix_ms,
            first => first,
        };
        a.origin == me.as_str() && (open || first < told_at)
    })
}

/// Why publishing `p` would show the value `named` (its own, or one it names otherwise: see
/// [`same_value`]) to members who may not read it, if so: the node knows `named` (`held`, as
/// its index holds it) only under restricted distributions, and `p` is shared wider than
/// their origins and recipients (unrestricted, or to a recipient none of them names). A
/// recipient's sighting of a RED value, at the tools' default AMBER, would publish the value
/// to every member and the hub in the clear.
pub fn wider_than_known(
    p: &Prepared,
    named: &Indicator,
    held: &pb::IndicatorState,
    me: &OrgId,
) -> Option<String> {
    let mut readers = readers_of(held, me)?;
    readers.insert(me.to_string());
    let d = &p.distribution;
    let known_to = || readers.iter().cloned().collect::<Vec<_>>().join(", ");
    let what = if *named == p.indicator {
        named.value().to_string()
    } else {
        format!("{} (named by {})", named.value(), p.indicator.value())
    };
    if !d.tlp.is_restricted() {
        return Some(format!(
            "{what} is known here only under restricted distributions (read by {}): TLP:{} would show it to every member",
            known_to(),
            d.tlp
        ));
    }
    let outside: Vec<&str> = (d.recipients.iter())
        .map(OrgId::as_str)
        .filter(|r| !readers.contains(*r))
        .collect();
    (!outside.is_empty()).then(|| {
        format!(
            "{what} is known here only under restricted distributions (read by {}): {} may not read it",
            known_to(),
            outside.join(", ")
        )
    })
}

/// The indicators that name what `i` names, written otherwise: an address, its whole-length
/// block and its IPv4-mapped form, each way, a block and its IPv4-mapped block, and the host of a URL or e-mail address (with
/// the host's own forms). A value told under RED must not go out wider as its twin.
pub fn same_value(i: &Indicator) -> Vec<Indicator> {
    let mut found: Vec<Indicator> = Vec::new();
    let mut next = vec![i.clone()];
    while let Some(at) = next.pop() {
        for twin in direct_twins(&at) {
            if twin != *i && !found.contains(&twin) && found.len() < MAX_TWINS {
                found.push(twin.clone());
                next.push(twin);
            }
        }
    }
    found
}

/// Most forms [`same_value`] gives (an address has at most five).
const MAX_TWINS: usize = 8;

fn direct_twins(i: &Indicator) -> Vec<Indicator> {
    use IndicatorType as T;
    let value = i.value();
    let v6_mapped = |v6: &str| {
        let a: std::net::Ipv6Addr = v6.parse().ok()?;
        normalize(T::Ipv4, &a.to_ipv4_mapped()?.to_string()).ok()
    };
    let twins = match i.ty() {
        T::Ipv4 => vec![
            normalize(T::Cidr, &format!("{value}/32")).ok(),
            normalize(T::Ipv6, &format!("::ffff:{value}")).ok(),
        ],
        T::Ipv6 => vec![
            normalize(T::Cidr, &format!("{value}/128")).ok(),
            v6_mapped(value),
        ],
        T::Cidr => block_twins(value),
        T::Url | T::Email => vec![i.host()],
        _ => Vec::new(),
    };
    twins.into_iter().flatten().collect()
}

/// A block's other forms: its address when whole-length, and its IPv4-mapped block (or the
/// IPv4 block an IPv4-mapped one maps).
fn block_twins(value: &str) -> Vec<Option<Indicator>> {
    use std::net::IpAddr;
    let cidr = |v: String| normalize(IndicatorType::Cidr, &v).ok();
    let Some((address, len)) = value.split_once('/') else {
        return Vec::new();
    };
    let (Ok(address), Ok(len)) = (address.parse::<IpAddr>(), len.parse::<u8>()) else {
        return Vec::new();
    };
    match address {
        IpAddr::V4(a) => vec![
            (len == 32)
                .then(|| normalize(IndicatorType::Ipv4, &a.to_string()).ok())
                .flatten(),
            cidr(format!("::ffff:{a}/{}", u16::from(len) + 96)),
        ],
        IpAddr::V6(a) => vec![
            (len == 128)
                .then(|| normalize(IndicatorType::Ipv6, &a.to_string()).ok())
                .flatten(),
            (a.to_ipv4_mapped().zip(len.checked_sub(96)))
                .and_then(|(v4, len)| cidr(format!("{v4}/{len}"))),
        ],
    }
}

/// Refuses the whole request if any of its items is shared wider than its value is known
/// here ([`wider_than_known`]); `held(i)` is the value's state in the index, or why it could
/// not be read.
pub fn refuse_wider_than_known(
    items: &[Prepared],
    me: &OrgId,
    held: impl Fn(&Indicator) -> Result<Option<pb::IndicatorState>, String>,
    containers: &dyn Fn(&Indicator) -> Vec<Indicator>,
) -> Result<(), Invalid> {
    let why = wider_than_known_all(items, me, held, containers)?;
    if why.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "{}; publish it as RED or AMBER+STRICT to readers among those, or set share_wider \
         (the CLI's --share-wider) if this node knows it on its own; nothing was published",
        first_of(why)
    )))
}

/// Why each of `items` shared wider than its value is known here would show it (see
/// [`refuse_wider_than_known`]), in order; a state that could not be read refuses all. The
/// value's other forms ([`same_value`]) and the listed values that hold it (`containers`: its
/// parent domains, the blocks around an address, a URL's or e-mail's host and what holds that,
/// see [`containers_in`]) are judged as the value is: `c2.evil.example` shared wider shows
/// `evil.example`, told here under RED.
pub fn wider_than_known_all(
    items: &[Prepared],
    me: &OrgId,
    held: impl Fn(&Indicator) -> Result<Option<pb::IndicatorState>, String>,
    containers: &dyn Fn(&Indicator) -> Vec<Indicator>,
) -> Result<Vec<String>, Invalid> {
    let mut why = Vec::new();
    // An item like one judged already (value and distribution) is judged alike: not again,
    // which would read each of its forms' states once more.
    let mut judged: std::collections::HashMap<&Indicator, Vec<&Distribution>> = Default::default();
    for p in items {
        let seen = judged.entry(&p.indicator).or_default();
        if seen.contains(&&p.distribution) {
            continue;
        }
        seen.push(&p.distribution);
        let mut own = None;
        let mut named_all = vec![p.indicator.clone()];
        for form in same_value(&p.indicator)
            .into_iter()
            .chain(containers(&p.indicator))
        {
            if !named_all.contains(&form) {
                named_all.push(form);
            }
        }
        for named in named_all {
            // Not read, not judged: nothing is shared on a guess.
            let state = held(&named).map_err(|e| {
                invalid(format!(
                    "the node could not read what it holds of {} to check who may read it \
                     ({e}); nothing was published: try again",
                    named.value()
                ))
            })?;
            // The value asserted openly by this node itself: its other forms add nothing.
            if own.is_none() {
                let open = state.as_ref().is_some_and(|s| own_lifts(s, me, i64::MIN));
                if open {
                    break;
                }
                own = Some(());
            }
            if let Some(reason) = state.and_then(|s| wider_than_known(p, &named, &s, me)) {
                why.push(reason);
                break;
            }
        }
    }
    Ok(why)
}

/// The values `store` may list that hold `i`, as a lookup finds them (parent domains, the
/// blocks of held lengths around an address or block, a URL's or e-mail's host and what holds
/// it): publishing `i` shows part of each.
pub fn containers_in(store: &dyn intelmesh_store::Store, i: &Indicator) -> Vec<Indicator> {
    let lengths = store.prefix_lengths();
    super::lookup::candidates(i, i.host(), &lengths, &super::lookup::BlocksOf(store))
        .into_iter()
        .map(|(held, _)| held)
        .collect()
}

/// The first [`ERRORS_SHOWN`] of `named`, and how many more there were.
fn first_of(mut named: Vec<String>) -> String {
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
