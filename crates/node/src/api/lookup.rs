//! `Lookup`: which listed indicators answer a looked-up value (the value itself, the CIDR
//! blocks around an address or block, the parent domains of a domain, and a URL's host or an
//! e-mail's domain with what contains it), each as far as the reader may see it, and the one
//! verdict a firewall reads off the result.
//!
//! Every answer comes from point reads: `core::containment` names the few blocks and parent
//! domains that could contain a value (one per prefix length the store holds that its filter
//! of held blocks does not rule out, one per parent label), and each is read like an exact
//! lookup, through `Store::lookup_states` (the store's lookup table where it has one). A match
//! the reader may not see is left out before anything is combined, so it cannot change the
//! verdict, confidence or origins.

use std::collections::BTreeSet;

use bytes::Bytes;
use intelmesh_core::containment::{
    containers_of, containers_where, other_forms_of, BlockBits, HeldBlocks, MatchKind, Network,
    PrefixLengths,
};
use intelmesh_core::indicator::{detect_with_host, NormalizeError};
use intelmesh_core::{Indicator, IndicatorType, OrgId};
use intelmesh_proto::lookup_response::encode_result_for;
use intelmesh_proto::v1 as pb;
use intelmesh_store::{Store, StoreError};

use super::view;
use crate::audit;

/// Most values in one `Lookup` call.
pub const MAX_LOOKUPS: usize = 10_000;

/// Values whose probes are read from the store together ([`Lookup::answer_all`]): enough that
/// hundreds of filter and table reads are in flight at once, few enough that a call ends soon
/// after its answer outgrows the message limit.
pub const GROUP: usize = 64;

/// What is left of the bytes one request's answers may take, shared by its chunks: a value
/// inside many listed blocks and parent domains answers with a match for each, so ten thousand
/// of them can outgrow any message; the call ends when the answer would, not after all the
/// work.
pub struct AnswerBudget {
    left: std::sync::atomic::AtomicUsize,
    /// The message limit, for the error.
    limit: usize,
    /// Set when the call is gone (its client went away): its chunks stop at the next value
    /// instead of working through all of theirs for nobody.
    cancelled: std::sync::atomic::AtomicBool,
}

/// Cancels a call's [`AnswerBudget`] when dropped: the call's future ends, answered or not.
pub struct CancelOnDrop(pub std::sync::Arc<AnswerBudget>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Why a `Lookup` gives no answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the answer would be over {0} bytes, the message limit: send fewer values per call")]
    TooLarge(usize),
    #[error("the call was cancelled")]
    Cancelled,
}

impl AnswerBudget {
    /// The budget of answers to a call whose response may be `limit` bytes: a little goes
    /// to the response's envelope and status.
    pub fn new(limit: usize) -> AnswerBudget {
        AnswerBudget {
            left: std::sync::atomic::AtomicUsize::new(limit.saturating_sub(1024)),
            limit,
            cancelled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Stops the call's chunks at their next value.
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Takes an answer's `bytes` (encoded, its field's tag and length included) from what is
    /// left; an error once that is spent.
    pub fn take(&self, bytes: usize) -> Result<(), LookupError> {
        use std::sync::atomic::Ordering;
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(LookupError::Cancelled);
        }
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(bytes)
            })
            .map(|_| ())
            .map_err(|_| LookupError::TooLarge(self.limit))
    }
}

/// What every value of one `Lookup` request is read with, gathered once per request.
pub struct Lookup<'a> {
    pub store: &'a dyn Store,
    pub reader: &'a OrgId,
    /// Origins withdrawn by the roster: hidden from every read.
    pub hidden: &'a BTreeSet<String>,
    /// The prefix lengths of the blocks the store holds; containment probes only these.
    pub lengths: PrefixLengths,
    pub now: i64,
    /// Known-benign values: a value on one is marked with the lists' names.
    pub warninglists: &'a intelmesh_interop::Warninglists,
    /// The audit trail's key: each answered value is digested where it was answered.
    pub audit_key: Option<&'a intelmesh_audit::AuditKey>,
}

/// A chunk of a call's values answered ([`Lookup::answer_chunk`]).
pub struct Chunk {
    /// The answers as `LookupResponse.results` encodes them, or why the call ends.
    pub encoded: Result<Bytes, LookupError>,
    /// Every value of the chunk, in order, for the audit trail: in the canonical form its
    /// answer found, else as given (also those left unanswered when the chunk failed).
    pub named: Vec<audit::Value>,
}

/// Room for an answer encoded, to size a chunk's buffer once: a listed value's answer holds
/// its text three times (as given, as read, as matched) and its origins twice. (A fixed 96
/// bytes a value was short of the answers to the bench's mix, whose hashes and URLs run to 64
/// bytes and more, and the buffer was reallocated and copied as it filled.)
fn answer_room(value: &str) -> usize {
    3 * value.len() + 64
}

impl Lookup<'_> {
    /// The answers for a chunk of raw values, encoded where they are made: each answer is
    /// freed by the thread that built it, the bytes it adds are what it takes from `budget`,
    /// and the values are only borrowed (the call's thread, which decoded them, frees them).
    pub fn answer_chunk(&self, values: &[String], budget: &AnswerBudget) -> Chunk {
        let mut named = Vec::with_capacity(values.len());
        let mut out = Vec::with_capacity(values.iter().map(|v| answer_room(v)).sum());
        let mut scratch = Vec::new();
        let mut groups = values.chunks(GROUP);
        let encoded = loop {
            let Some(group) = groups.next() else {
                break Ok(Bytes::from(out));
            };
            let answers = match self.answer_all(group) {
                Ok(answers) => answers,
                Err(e) => {
                    named.extend(group.iter().map(|v| audit::raw(v)));
                    break Err(e.into());
                }
            };
            let mut answered = group.iter().zip(answers);
            let over = answered.by_ref().find_map(|(input, answer)| {
                let before = out.len();
                encode_result_for(input, &answer, &mut scratch, &mut out);
                named.push(audit::named(self.audit_key, input, answer));
                budget.take(out.len() - before).err()
            });
            if let Some(e) = over {
                named.extend(
                    answered.map(|(input, answer)| audit::named(self.audit_key, input, answer)),
                );
                break Err(e);
            }
        };
        named.extend(groups.flatten().map(|v| audit::raw(v)));
        Chunk { encoded, named }
    }

    /// The answers for a group of raw values, in order, each with its `input` left empty
    /// (the caller has the values). The probes of the whole group are read from the store
    /// together, so the memory reads of its filters and lookup table overlap across values
    /// instead of waiting on each in turn.
    pub fn answer_all(&self, inputs: &[String]) -> Result<Vec<pb::LookupResult>, StoreError> {
        touch_all(inputs);
        let asked: Vec<Result<Asked, Box<pb::LookupResult>>> =
            inputs.iter().map(|input| self.asked(input)).collect();
        let probes: Vec<&Indicator> = asked
            .iter()
            .filter_map(|a| a.as_ref().ok())
            .flat_map(Asked::probes)
            .collect();
        // Each distinct probe is read once: a value sent ten thousand times must not time ten
        // thousand reads of a state the caller may not see (a value nobody holds stops at the
        // filters), which would tell it the node holds the value under another audience.
        let (unique, slots) = distinct(&probes);
        let read = self.store.lookup_states(&unique)?;
        let mut states = slots
            .into_iter()
            .map(|i| read.get(i).and_then(Option::as_ref));
        let mut out = Vec::with_capacity(asked.len());
        for a in asked {
            let a = match a {
                Ok(a) => a,
                Err(unreadable) => {
                    out.push(*unreadable);
                    continue;
                }
            };
            // `zip` asks `states` only while the value has probes left: exactly its share.
            let kinds =
                std::iter::once(pb::MatchKind::Exact).chain(a.around.iter().map(|(_, k)| *k));
            let matches: Vec<pb::LookupMatch> = a
                .probes()
                .zip(kinds)
                .zip(states.by_ref())
                .filter_map(|((probe, kind), state)| {
                    matched(probe, kind, state?, self.hidden, self.reader, self.now)
                })
                .collect();
            let lists = crate::warninglists::lists_of_with_host(
                self.warninglists,
                &a.indicator,
                a.host.as_ref(),
            );
            let mut answer = result(String::new(), a.indicator, matches);
            answer.warninglists = lists;
            out.push(answer);
        }
        Ok(out)
    }

    /// One raw value read and its candidates found, or its answer (its input left empty) if
    /// it is no indicator.
    fn asked(&self, input: &str) -> Result<Asked, Box<pb::LookupResult>> {
        // A URL's host is read off the URL as parsed, once for the probes and the lists.
        let (indicator, host) = match detect_with_host(input) {
            Ok(detected) => detected,
            Err(e) => return Err(Box::new(error(String::new(), &e))),
        };
        let around = candidates(
            &indicator,
            host.clone(),
            &self.lengths,
            &BlocksOf(self.store),
        );
        Ok(Asked {
            indicator,
            host,
            around,
        })
    }
}

/// Reads the first and last byte of every value before any is worked on: the request was
/// decoded on another thread, so each value's first read was a cache miss, taken one value at a
/// time (trimming, 1.6% of a lookup's CPU at 1M, was mostly that wait); read together, the
/// misses overlap.
fn touch_all(values: &[String]) {
    let touched = values.iter().fold(0u8, |acc, v| {
        let bytes = v.as_bytes();
        acc ^ bytes.first().copied().unwrap_or_default() ^ bytes.last().copied().unwrap_or_default()
    });
    std::hint::black_box(touched);
}

/// A looked-up value's canonical form with what would answer it.
struct Asked {
    indicator: Indicator,
    host: Option<Indicator>,
    /// Its candidates other than itself, in listing order ([`candidates`]).
    around: Vec<(Indicator, pb::MatchKind)>,
}

impl Asked {
    /// What the store is asked for this value: itself, then its candidates.
    fn probes(&self) -> impl Iterator<Item = &Indicator> {
        std::iter::once(&self.indicator).chain(self.around.iter().map(|(i, _)| i))
    }
}

/// A store as [`HeldBlocks`]: its filter of held CIDR blocks.
pub struct BlocksOf<'a>(pub &'a dyn Store);

impl HeldBlocks for BlocksOf<'_> {
    fn may_hold_each(&self, blocks: &[BlockBits], held: &mut [bool]) {
        self.0.may_hold_blocks(blocks, held)
    }
}

/// The indicators other than `value` itself that would answer it, in the order their matches
/// are listed: a URL's host or an e-mail's domain, then what contains the value (or that
/// host), most specific first; of the blocks, only those `may_hold` says may be listed.
/// `host` is `value.host()`.
pub fn candidates(
    value: &Indicator,
    host: Option<Indicator>,
    lengths: &PrefixLengths,
    may_hold: &dyn HeldBlocks,
) -> Vec<(Indicator, pb::MatchKind)> {
    match value.ty() {
        IndicatorType::Url | IndicatorType::Email => {
            let Some(host) = host else {
                return Vec::new();
            };
            let around = match host.ty() {
                IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                    address_candidates(&host, lengths, may_hold)
                }
                _ => containers_where(&host, lengths, may_hold)
                    .into_iter()
                    .map(|(i, k)| (i, kind(k)))
                    .collect(),
            };
            let mut out = Vec::with_capacity(1 + around.len());
            out.push((host, pb::MatchKind::Host));
            out.extend(around);
            out
        }
        IndicatorType::Ipv4 | IndicatorType::Ipv6 | IndicatorType::Cidr => {
            address_candidates(value, lengths, may_hold)
        }
        _ => containers_where(value, lengths, may_hold)
            .into_iter()
            .map(|(i, k)| (i, kind(k)))
            .collect(),
    }
}

/// An address's or block's candidates: its other forms (`containment::other_forms`), each an
/// exact match (a value listed in one form is listed in all), then the blocks around it and
/// around its form in the other family (an address's whole-length blocks among them). Around an
/// IPv4-mapped form only the mapped blocks (/96 and longer) count: `::/0` lists no IPv4
/// address, so only their lengths are probed. Of the blocks, only those `may_hold` says may be
/// listed.
fn address_candidates(
    value: &Indicator,
    lengths: &PrefixLengths,
    may_hold: &dyn HeldBlocks,
) -> Vec<(Indicator, pb::MatchKind)> {
    // Read once for its forms and both families' blocks.
    let Some(network) = Network::of(value) else {
        return Vec::new();
    };
    let (forms, other) = other_forms_of(network, may_hold);
    let mut around: Vec<(Indicator, pb::MatchKind)> = containers_of(network, lengths, may_hold)
        .into_iter()
        .map(|(i, k)| (i, kind(k)))
        .collect();
    if let Some(other) = other {
        // The other form of an IPv4 value is its IPv4-mapped IPv6 form.
        let other_lengths = match other.is_v6() {
            true => lengths.mapped_range(),
            false => *lengths,
        };
        for (block, k) in containers_of(other, &other_lengths, may_hold) {
            if !around.iter().any(|(b, _)| *b == block) {
                around.push((block, kind(k)));
            }
        }
    }
    around.retain(|(b, _)| b != value);
    let mut out: Vec<(Indicator, pb::MatchKind)> = forms
        .into_iter()
        .filter(|f| !around.iter().any(|(b, _)| b == f))
        .map(|f| (f, pb::MatchKind::Exact))
        .collect();
    // Most specific first across both families: an IPv4 /p is the mapped /(p+96).
    around.sort_by_key(|(b, _)| std::cmp::Reverse(mapped_length(b)));
    out.extend(around);
    out
}

/// A block's length counted as IPv6 bits, an IPv4 /p as its mapped /(p+96).
fn mapped_length(block: &Indicator) -> u16 {
    let len = (block.value().rsplit_once('/')).and_then(|(_, l)| l.parse::<u16>().ok());
    match block.value().contains(':') {
        true => len.unwrap_or(0),
        false => len.map_or(0, |l| l + 96),
    }
}

fn kind(k: MatchKind) -> pb::MatchKind {
    match k {
        MatchKind::Exact => pb::MatchKind::Exact,
        MatchKind::CidrContains => pb::MatchKind::Cidr,
        MatchKind::ParentDomain => pb::MatchKind::ParentDomain,
    }
}

/// The match `candidate` gives, from its stored `state`, if `reader` may see any of it once the
/// `hidden` origins are left out; its verdict, confidence and origins are those Get would show.
pub fn matched(
    candidate: &Indicator,
    kind: pb::MatchKind,
    state: &pb::IndicatorState,
    hidden: &BTreeSet<String>,
    reader: &OrgId,
    now: i64,
) -> Option<pb::LookupMatch> {
    // Summed up from borrowed records: a lookup copies no state.
    let v = view::shown_to(state, hidden, reader)?;
    Some(pb::LookupMatch {
        indicator: Some(view::to_ref(candidate)),
        kind: kind as i32,
        verdict: v.verdict(now) as i32,
        max_confidence: v.max_confidence(now),
        origins: v.origins(),
    })
}

/// How strongly a verdict speaks against a value: an assertion in force beats a value merely
/// seen, which beats one every asserting origin revoked, which beats nothing known.
fn strength(v: pb::Verdict) -> u8 {
    match v {
        pb::Verdict::Malicious => 3,
        pb::Verdict::Seen => 2,
        pb::Verdict::Revoked => 1,
        pb::Verdict::Unknown | pb::Verdict::Unspecified => 0,
    }
}

/// The answer for `indicator` from its visible matches (in listing order): the strongest
/// verdict, the highest confidence in force and every origin among them, so a firewall
/// reading `verdict` alone blocks an address inside a listed block, and an exact revocation
/// does not hide a containing block still in force.
pub fn result(
    input: String,
    indicator: Indicator,
    matches: Vec<pb::LookupMatch>,
) -> pb::LookupResult {
    let verdict = matches
        .iter()
        .map(pb::LookupMatch::verdict)
        .max_by_key(|v| strength(*v))
        .unwrap_or(pb::Verdict::Unknown);
    let max_confidence = matches.iter().map(|m| m.max_confidence).max().unwrap_or(0);
    let origins = match matches.as_slice() {
        [] => Vec::new(),
        [only] => only.origins.clone(),
        all => all
            .iter()
            .flat_map(|m| &m.origins)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect(),
    };
    pb::LookupResult {
        input,
        indicator: Some(view::into_ref(indicator)),
        verdict: verdict as i32,
        error: String::new(),
        max_confidence,
        origins,
        matches,
        warninglists: Vec::new(),
    }
}

/// The answer for a value with no canonical form.
pub fn error(input: String, error: &NormalizeError) -> pb::LookupResult {
    pb::LookupResult {
        input,
        verdict: pb::Verdict::Unknown as i32,
        error: format!("{} ({})", error, error.kind()),
        ..Default::default()
    }
}

/// `probes` once each, in first-seen order, and for each probe its place among them.
fn distinct<'a>(probes: &[&'a Indicator]) -> (Vec<&'a Indicator>, Vec<usize>) {
    let mut unique: Vec<&Indicator> = Vec::new();
    let mut at: std::collections::HashMap<&Indicator, usize> = std::collections::HashMap::new();
    let slots = probes
        .iter()
        .map(|p| {
            *at.entry(*p).or_insert_with(|| {
                unique.push(*p);
                unique.len() - 1
            })
        })
        .collect();
    (unique, slots)
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
