//! The rule against sharing wider than known: a node may not publish a value to more readers
//! than those who told it the value (its other forms and the listed values holding it judged
//! alike), unless it asserted the value openly itself or first. Plain functions over the
//! states the caller reads, no I/O.

use std::collections::BTreeSet;

use intelmesh_core::indicator::normalize;
use intelmesh_core::{Distribution, Indicator, IndicatorType, OrgId, Tlp};
use intelmesh_proto::v1 as pb;

use super::submission::{first_of, Prepared};
use super::view::{invalid, Invalid};

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
