//! The rules of the `Indicators` API's reads as plain functions, no I/O: what a reader org may
//! see of an indicator, verdicts, filters, page tokens and watch cursors. The service feeds them
//! from the store; `submission` holds the rules of its writes.

use std::collections::BTreeSet;

use intelmesh_core::entry::allows_names;
use intelmesh_core::indicator::normalize;
use intelmesh_core::{Indicator, IndicatorType, OrgId, Tlp};
use intelmesh_proto::v1 as pb;
use intelmesh_store::VersionVector;
use prost::Message;
use smallvec::SmallVec;

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1_000;

/// Bad input from an API caller; the message says what is wrong (it becomes InvalidArgument).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(crate) fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

pub fn to_ref(i: &Indicator) -> pb::IndicatorRef {
    pb::IndicatorRef {
        r#type: i.ty().to_proto() as i32,
        value: i.value().to_string(),
    }
}

/// [`to_ref`] of an indicator no longer needed, without copying its value.
pub fn into_ref(i: Indicator) -> pb::IndicatorRef {
    pb::IndicatorRef {
        r#type: i.ty().to_proto() as i32,
        value: i.into_value(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// [`allows_names`] on a stored record, read in place (every lookup match asks it): a record
/// whose distribution is missing or unknown, or whose origin or recipients are not org ids, is
/// withheld.
fn readable(d: Option<&pb::Distribution>, origin: &str, reader: &OrgId) -> bool {
    let Some((d, tlp)) = d.and_then(|d| Some((d, Tlp::from_proto(d.tlp)?))) else {
        return false;
    };
    OrgId::is_valid(origin)
        && d.recipients.iter().all(|r| OrgId::is_valid(r))
        && allows_names(tlp, d.recipients.iter().map(String::as_str), origin, reader)
}

fn tlp_within(d: Option<&pb::Distribution>, ceiling: Option<Tlp>) -> bool {
    match ceiling {
        None => true,
        Some(c) => d
            .and_then(|d| Tlp::from_proto(d.tlp))
            .is_some_and(|t| t <= c),
    }
}

/// What `reader` may see of `state`: the assertions and sightings whose distribution allows
/// it, and of an origin's assertions only the latest of those. `None` when nothing is left, so
/// the indicator is unknown to that reader.
///
/// The index keeps each origin's records per distribution, so this view is exactly what the
/// reader would see if the entries it may not read did not exist: a restricted entry changes
/// neither the counts, times nor fields it is shown, nor which assertion counts.
pub fn visible(state: &pb::IndicatorState, reader: &OrgId) -> Option<pb::IndicatorState> {
    visible_within(state, reader, None)
}

/// [`visible`] for a reader that also asks for nothing above `ceiling`: it sees what a reader
/// allowed only up to that level would see (its own latest assertion at or below it).
fn visible_within(
    state: &pb::IndicatorState,
    reader: &OrgId,
    ceiling: Option<Tlp>,
) -> Option<pb::IndicatorState> {
    shown(state, reader, ceiling, &BTreeSet::new()).map(|s| s.to_state(state))
}

/// The records of a state a reader is shown, borrowed from it: what [`visible`] copies, for
/// reads that only sum it up (a lookup's match). Never empty.
pub struct Shown<'a> {
    // Inline: a lookup builds one per match, and most states hold a record or two.
    assertions: SmallVec<[&'a pb::OriginAssertion; 4]>,
    sightings: SmallVec<[&'a pb::OriginSightings; 4]>,
}

/// The one rule of what a reader is shown of `state`, for [`visible`], [`reader_view`] and
/// [`shown_to`]: records of the `hidden` origins never, others when their distribution lets
/// `reader` read them and their TLP is within `ceiling`, and of an origin's assertions only
/// the latest of those.
fn shown<'a>(
    state: &'a pb::IndicatorState,
    reader: &OrgId,
    ceiling: Option<Tlp>,
    hidden: &BTreeSet<String>,
) -> Option<Shown<'a>> {
    let shows = |d: Option<&pb::Distribution>, origin: &str| {
        !hidden.contains(origin) && readable(d, origin, reader) && tlp_within(d, ceiling)
    };
    let mut assertions: SmallVec<[&pb::OriginAssertion; 4]> = state
        .assertions
        .iter()
        .filter(|a| shows(a.distribution.as_ref(), &a.origin))
        .collect();
    latest_per_origin(&mut assertions);
    let sightings: SmallVec<[&pb::OriginSightings; 4]> = state
        .sightings
        .iter()
        .filter(|s| shows(s.distribution.as_ref(), &s.origin))
        .collect();
    (!assertions.is_empty() || !sightings.is_empty()).then_some(Shown {
        assertions,
        sightings,
    })
}

impl Shown<'_> {
    /// The shown records as a state of `of`'s indicator.
    fn to_state(&self, of: &pb::IndicatorState) -> pb::IndicatorState {
        pb::IndicatorState {
            indicator: of.indicator.clone(),
            assertions: self.assertions.iter().map(|a| (*a).clone()).collect(),
            sightings: self.sightings.iter().map(|s| (*s).clone()).collect(),
        }
    }

    /// [`verdict`] of the shown records.
    pub fn verdict(&self, now: i64) -> pb::Verdict {
        verdict_of(
            self.assertions.iter().copied(),
            !self.sightings.is_empty(),
            now,
        )
    }

    /// [`max_confidence`] of the shown records.
    pub fn max_confidence(&self, now: i64) -> u32 {
        max_confidence_of(self.assertions.iter().copied(), now)
    }

    /// [`origins`] of the shown records.
    pub fn origins(&self) -> Vec<String> {
        origins_of(
            self.assertions.iter().copied(),
            self.sightings.iter().copied(),
        )
    }
}

/// `state` without the records of `hidden` origins: members a roster removed with their
/// assertions withdrawn, hidden from every read.
pub fn without_origins(
    state: &pb::IndicatorState,
    hidden: &BTreeSet<String>,
) -> pb::IndicatorState {
    pb::IndicatorState {
        indicator: state.indicator.clone(),
        assertions: state
            .assertions
            .iter()
            .filter(|a| !hidden.contains(&a.origin))
            .cloned()
            .collect(),
        sightings: state
            .sightings
            .iter()
            .filter(|s| !hidden.contains(&s.origin))
            .cloned()
            .collect(),
    }
}

/// What `reader` sees of a stored `state` once the `hidden` (withdrawn) origins are left out:
/// the view every single-indicator read (Get, Lookup) shows. `None`: unknown to that reader.
pub fn reader_view(
    state: &pb::IndicatorState,
    hidden: &BTreeSet<String>,
    reader: &OrgId,
) -> Option<pb::IndicatorState> {
    shown_to(state, hidden, reader).map(|s| s.to_state(state))
}

/// [`reader_view`] borrowed, not copied: for a read that only sums it up.
pub fn shown_to<'a>(
    state: &'a pb::IndicatorState,
    hidden: &BTreeSet<String>,
    reader: &OrgId,
) -> Option<Shown<'a>> {
    shown(state, reader, None, hidden)
}

/// Keeps one assertion per origin, the one it signed last: an origin's later assertion (a
/// revocation, a new confidence) replaces its earlier ones whatever their distributions.
fn latest_per_origin(assertions: &mut SmallVec<[&pb::OriginAssertion; 4]>) {
    // Stable: slots of one origin become adjacent, in index order otherwise.
    assertions.sort_by(|a, b| a.origin.cmp(&b.origin));
    assertions.dedup_by(|next, kept| {
        if next.origin != kept.origin {
            return false;
        }
        if next.seq > kept.seq {
            std::mem::swap(next, kept);
        }
        true
    });
}

/// Whether an assertion is an unrevoked one inside its validity window at `now`.
pub fn in_force(a: &pb::OriginAssertion, now: i64) -> bool {
    !a.revoked && a.valid_from_unix_ms <= now && a.valid_until_unix_ms.is_none_or(|u| now < u)
}

/// The verdict on a visible state (see [`visible`]) at `now`.
pub fn verdict(state: Option<&pb::IndicatorState>, now: i64) -> pb::Verdict {
    match state {
        None => pb::Verdict::Unknown,
        Some(s) => verdict_of(s.assertions.iter(), !s.sightings.is_empty(), now),
    }
}

/// An assertion in force makes a value malicious; assertions all revoked, revoked; any other
/// record, seen; none at all, unknown.
fn verdict_of<'a>(
    assertions: impl Iterator<Item = &'a pb::OriginAssertion>,
    any_sightings: bool,
    now: i64,
) -> pb::Verdict {
    let (mut any, mut all_revoked) = (false, true);
    for a in assertions {
        if in_force(a, now) {
            return pb::Verdict::Malicious;
        }
        any = true;
        all_revoked &= a.revoked;
    }
    match (any, any_sightings) {
        (false, false) => pb::Verdict::Unknown,
        (true, _) if all_revoked => pb::Verdict::Revoked,
        _ => pb::Verdict::Seen,
    }
}

/// The highest confidence among the assertions in force: what a blocking decision rests on.
pub fn max_confidence(state: &pb::IndicatorState, now: i64) -> u32 {
    max_confidence_of(state.assertions.iter(), now)
}

fn max_confidence_of<'a>(
    assertions: impl Iterator<Item = &'a pb::OriginAssertion>,
    now: i64,
) -> u32 {
    assertions
        .filter(|a| in_force(a, now))
        .map(|a| a.confidence)
        .max()
        .unwrap_or(0)
}

/// Every origin with an assertion or sightings in `state`, sorted.
pub fn origins(state: &pb::IndicatorState) -> Vec<String> {
    origins_of(state.assertions.iter(), state.sightings.iter())
}

fn origins_of<'a>(
    assertions: impl Iterator<Item = &'a pb::OriginAssertion>,
    sightings: impl Iterator<Item = &'a pb::OriginSightings>,
) -> Vec<String> {
    let mut names: SmallVec<[&str; 4]> = assertions
        .map(|a| a.origin.as_str())
        .chain(sightings.map(|s| s.origin.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter().map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------------
// Filters

/// A checked `pb::Filter`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    types: BTreeSet<IndicatorType>,
    /// Lowercase: tags match in any case.
    tags: BTreeSet<String>,
    origins: BTreeSet<String>,
    ceiling: Option<Tlp>,
    since: i64,
    /// Origins withdrawn by the roster: never shown, never matched.
    withdrawn: BTreeSet<String>,
}

/// Most types, tags or origins one filter names (each).
pub const MAX_FILTER_VALUES: usize = 64;
/// Longest tag a filter names: the longest an entry may carry.
pub use intelmesh_core::entry::MAX_TAG_BYTES;

impl Filter {
    /// Whether reads may show anything of `origin` (a roster may have withdrawn it).
    pub fn shows_origin(&self, origin: &str) -> bool {
        !self.withdrawn.contains(origin)
    }

    pub fn parse(f: Option<&pb::Filter>) -> Result<Filter, Invalid> {
        let Some(f) = f else {
            return Ok(Filter::default());
        };
        // Each tag or origin named is a range a query page reads: their number is the cost.
        for (field, n) in [
            ("types", f.types.len()),
            ("tags", f.tags.len()),
            ("origins", f.origins.len()),
        ] {
            if n > MAX_FILTER_VALUES {
                return Err(invalid(format!(
                    "filter.{field}: {n} values, at most {MAX_FILTER_VALUES}"
                )));
            }
        }
        if let Some((i, t)) = f
            .tags
            .iter()
            .enumerate()
            .find(|(_, t)| t.len() > MAX_TAG_BYTES)
        {
            return Err(invalid(format!(
                "filter.tags[{i}]: {} bytes, at most {MAX_TAG_BYTES}",
                t.len()
            )));
        }
        let types = f
            .types
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                IndicatorType::from_proto(t).ok_or_else(|| {
                    invalid(format!("filter.types[{i}]: unknown indicator type {t}"))
                })
            })
            .collect::<Result<_, _>>()?;
        let origins = f
            .origins
            .iter()
            .enumerate()
            .map(|(i, o)| {
                OrgId::parse(o)
                    .map(|o| o.to_string())
                    .map_err(|e| invalid(format!("filter.origins[{i}]: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let ceiling = match f.tlp_ceiling {
            0 => None,
            t => Some(
                Tlp::from_proto(t)
                    .ok_or_else(|| invalid(format!("filter.tlp_ceiling: unknown TLP level {t}")))?,
            ),
        };
        Ok(Filter {
            types,
            tags: f
                .tags
                .iter()
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty())
                .collect(),
            origins,
            ceiling,
            since: f.updated_since_unix_ms,
            withdrawn: BTreeSet::new(),
        })
    }

    pub fn types(&self) -> &BTreeSet<IndicatorType> {
        &self.types
    }

    /// Lowercase.
    pub fn tags(&self) -> &BTreeSet<String> {
        &self.tags
    }

    pub fn origins(&self) -> &BTreeSet<String> {
        &self.origins
    }

    /// Only indicators issued or sighted at or after this time; 0 for any.
    pub fn since(&self) -> i64 {
        self.since
    }

    /// This filter, also hiding the `withdrawn` origins.
    pub fn hiding(mut self, withdrawn: BTreeSet<String>) -> Filter {
        self.withdrawn = withdrawn;
        self
    }

    /// What `reader` sees of `state` through this filter: what it may see within the TLP
    /// ceiling (see [`visible`]), if that is not empty and matches.
    ///
    /// Every criterion is checked against that view only, so a record the reader may not see
    /// (or asked to leave out) never makes an indicator match.
    pub fn view(&self, state: &pb::IndicatorState, reader: &OrgId) -> Option<pb::IndicatorState> {
        let v = if self.withdrawn.is_empty() {
            visible_within(state, reader, self.ceiling)?
        } else {
            visible_within(
                &without_origins(state, &self.withdrawn),
                reader,
                self.ceiling,
            )?
        };
        self.matches(&v).then_some(v)
    }

    fn matches(&self, s: &pb::IndicatorState) -> bool {
        let ty = s
            .indicator
            .as_ref()
            .and_then(|i| IndicatorType::from_proto(i.r#type));
        let type_ok = self.types.is_empty() || ty.is_some_and(|t| self.types.contains(&t));
        let tags_ok = self.tags.is_empty()
            || s.assertions
                .iter()
                .flat_map(|a| &a.tags)
                .any(|t| self.tags.contains(&t.to_lowercase()));
        let origins_ok = self.origins.is_empty()
            || s.assertions
                .iter()
                .any(|a| self.origins.contains(&a.origin))
            || s.sightings.iter().any(|x| self.origins.contains(&x.origin));
        let since_ok = self.since <= 0
            || s.assertions
                .iter()
                .any(|a| a.issued_at_unix_ms >= self.since)
            || s.sightings
                .iter()
                .any(|x| x.last_seen_unix_ms >= self.since);
        type_ok && tags_ok && origins_ok && since_ok
    }

    /// Whether a log entry may trigger a watch event for `reader`: it may read the entry,
    /// its level is within the ceiling and its origin is one asked for.
    pub fn admits_entry(&self, header: &pb::EntryHeader, reader: &OrgId) -> bool {
        let d = header.distribution.as_ref();
        readable(d, &header.origin, reader)
            && !self.withdrawn.contains(&header.origin)
            && tlp_within(d, self.ceiling)
            && (self.origins.is_empty() || self.origins.contains(&header.origin))
    }
}

/// The page size to use for a requested one: 0 means the default, and big ones are capped.
pub fn page_size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

// ---------------------------------------------------------------------------------------------
// Page tokens and cursors

/// The [`Indicator`] a stored reference names, if it is canonical.
pub fn indicator_of(r: &pb::IndicatorRef) -> Option<Indicator> {
    let i = normalize(IndicatorType::from_proto(r.r#type)?, &r.value).ok()?;
    (i.value() == r.value).then_some(i)
}

/// Watch cursors for one reader: hex of a `pb::WatchPosition`. The heads are in the clear (the
/// node's `Status` shows every caller its vector); the fill count is sealed for the reader
/// (`crate::token`), since it counts fills of payloads the reader may not read too.
pub struct Cursors<'a> {
    pub key: &'a crate::token::TokenKey,
    pub reader: &'a OrgId,
}

/// A decoded cursor's fill count when it carried none sealed: the caller resumes after every
/// fill the store has made.
pub const FILLS_UNKNOWN: u64 = u64::MAX;

/// What a sealed fill count holds: this tag, then the count (big-endian), so no other token
/// of the key (a page token) opens as one.
const FILLS_TAG: u8 = b'F';

impl Cursors<'_> {
    pub fn encode(&self, c: &WatchCursor) -> String {
        let heads = c.log.iter().map(|(o, s)| (o.to_string(), *s)).collect();
        let mut fills = vec![FILLS_TAG];
        fills.extend_from_slice(&c.fills.to_be_bytes());
        let position = pb::WatchPosition {
            heads,
            fills: 0,
            sealed_fills: self.key.seal(self.reader, &fills),
        };
        hex::encode(position.encode_to_vec())
    }

    /// The position a cursor resumes after; `None` for the empty cursor.
    pub fn decode(&self, cursor: &str) -> Result<Option<WatchCursor>, Invalid> {
        if cursor.is_empty() {
            return Ok(None);
        }
        let bad = |why: String| invalid(format!("cursor is not one this API issued: {why}"));
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(bad("too long".into()));
        }
        let bytes = hex::decode(cursor).map_err(|_| bad("not hex".into()))?;
        let p = pb::WatchPosition::decode(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
        let log = p
            .heads
            .into_iter()
            .map(|(o, s)| Ok((OrgId::parse(&o).map_err(|e| bad(e.to_string()))?, s)))
            .collect::<Result<_, _>>()?;
        // A count in the clear (a cursor issued before counts were sealed) is the client's
        // choice: resuming there, its probes would number the fills it may see, and the gaps
        // would count the others. It resumes after every fill made so far instead.
        let fills = if p.sealed_fills.is_empty() {
            FILLS_UNKNOWN
        } else {
            let plain = (self.key.open(self.reader, &p.sealed_fills)).map_err(|e| bad(e.into()))?;
            match plain.split_first() {
                Some((&FILLS_TAG, count)) => u64::from_be_bytes(
                    count
                        .try_into()
                        .map_err(|_| bad("not a fill count".into()))?,
                ),
                _ => return Err(bad("not a fill count".into())),
            }
        };
        Ok(Some(WatchCursor { log, fills }))
    }
}

/// Longest cursor read: the heads of some 4,000 origins of the longest names, far more than a
/// federation has members (a cursor is re-encoded with every event sent).
pub const MAX_CURSOR_CHARS: usize = 2 * 4096 * 80;

/// Where a watcher is: the last seq it passed of each origin's log, and how many of the
/// store's payload fills it has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchCursor {
    pub log: VersionVector,
    pub fills: u64,
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
