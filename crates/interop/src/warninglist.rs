//! MISP warninglists (known-benign values) and a matcher that says which lists an indicator
//! is on.
//!
//! Lookups never scan a whole list: exact strings and host names are hash-set probes (a
//! domain probes itself and each parent, so a `hostname` entry covers its subdomains), and
//! CIDR entries are kept per prefix length, so an address costs one probe per length present
//! (at most 33 or 129). Only `substring` entries are a scan, over the substring entries alone.
//! `regex` lists are read but not matched (the workspace has no regex engine, and MISP's
//! PCRE syntax is not Rust's); [`AddReport`] says so rather than matching nothing quietly.
//!
//! A value that would cover a listed one is flagged too, because a block list applies it
//! whole: a CIDR block holding a listed address or block (`8.8.8.0/24`, `0.0.0.0/0`), and a
//! domain with a listed name below it (`office365.com` when `outlook.office365.com` is
//! listed), which an RPZ zone writes as `*.office365.com`. Those probes are per list, over
//! where its blocks start and its names reversed, so `0.0.0.0/0` costs one probe per list.
//!
//! A list applies only to the indicator types its `matching_attributes` name (an empty list
//! means all), which keeps `3::`, the ssdeep of an empty file, from flagging the IPv6 address
//! `3::`. A URL's host and an e-mail's domain are matched too, as that host would be.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::ops::Bound;

use intelmesh_core::indicator::{detect, normalize};
use intelmesh_core::{Indicator, IndicatorType};
use serde_json::Value;
use thiserror::Error;

use crate::stix::json_kind;

/// How a list's entries match, MISP's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Exact value.
    String,
    /// The name or any subdomain of it.
    Hostname,
    /// The entry appears anywhere in the value.
    Substring,
    /// Address blocks; a bare address is a /32 or /128.
    Cidr,
    Regex,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warninglist {
    pub name: String,
    pub description: Option<String>,
    pub version: Option<u64>,
    pub kind: ListKind,
    pub entries: Vec<String>,
    pub matching_attributes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WarninglistError {
    #[error("warninglist is not JSON: {0}")]
    Json(String),
    #[error("warninglist has no {field}")]
    MissingField { field: &'static str },
    #[error("warninglist field {field} should be {expected}, found a JSON {found}")]
    BadField {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("warninglist type {kind:?} is not one of string, hostname, substring, cidr, regex")]
    UnknownKind { kind: String },
}

/// Reads a warninglist's `list.json`.
pub fn parse_warninglist(text: &str) -> Result<Warninglist, WarninglistError> {
    let text = crate::lists::without_bom(text);
    let value: Value =
        serde_json::from_str(text).map_err(|e| WarninglistError::Json(e.to_string()))?;
    warninglist_of(&value)
}

pub fn warninglist_of(value: &Value) -> Result<Warninglist, WarninglistError> {
    let field = |field: &'static str| value.get(field).filter(|v| !v.is_null());
    let text = |name: &'static str| -> Result<Option<String>, WarninglistError> {
        match field(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(WarninglistError::BadField {
                field: name,
                expected: "a string",
                found: json_kind(other),
            }),
        }
    };
    let strings = |name: &'static str| -> Result<Vec<String>, WarninglistError> {
        let Some(v) = field(name) else {
            return Ok(Vec::new());
        };
        let bad = |found| WarninglistError::BadField {
            field: name,
            expected: "a list of strings",
            found,
        };
        let items = v.as_array().ok_or_else(|| bad(json_kind(v)))?;
        items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(json_kind(i)))
            })
            .collect()
    };
    // A match is reported by the list's name: a blank one would warn without saying which list.
    let name = text("name")?
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or(WarninglistError::MissingField { field: "name" })?;
    let kind_text = text("type")?.unwrap_or_else(|| "string".to_owned());
    let kind = match kind_text.as_str() {
        "string" => ListKind::String,
        "hostname" => ListKind::Hostname,
        "substring" => ListKind::Substring,
        "cidr" => ListKind::Cidr,
        "regex" => ListKind::Regex,
        _ => return Err(WarninglistError::UnknownKind { kind: kind_text }),
    };
    if field("list").is_none() {
        return Err(WarninglistError::MissingField { field: "list" });
    }
    Ok(Warninglist {
        name,
        description: text("description")?,
        version: field("version").and_then(Value::as_u64),
        kind,
        entries: strings("list")?,
        matching_attributes: strings("matching_attributes")?,
    })
}

/// What adding a list to [`Warninglists`] used.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddReport {
    pub used: usize,
    /// Entries that match nothing, with why (a bad CIDR, a regex list).
    pub unusable: Vec<(String, &'static str)>,
}

/// The lists' hash maps: foldhash rather than SipHash. Their keys come from the operator's lists,
/// not from a peer or a caller, and a lookup hashes every value (each parent of a domain, each
/// listed block length around an address) against them.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Many lists, indexed for lookup.
#[derive(Clone, Debug, Default)]
pub struct Warninglists {
    names: Vec<String>,
    applies: Vec<Option<Vec<IndicatorType>>>,
    exact: Map<String, Vec<usize>>,
    hostnames: Map<String, Vec<usize>>,
    substrings: Vec<(String, usize)>,
    v4: BTreeMap<u8, Map<u32, Vec<usize>>>,
    v6: BTreeMap<u8, Map<u128, Vec<usize>>>,
    /// Per list, where its blocks start and their prefix lengths: a block holding one covers
    /// it.
    v4_starts: BTreeMap<usize, BTreeSet<(u32, u8)>>,
    v6_starts: BTreeMap<usize, BTreeSet<(u128, u8)>>,
    /// Listed domain names with their labels reversed (`com.office365.outlook`), with their
    /// lists: a parent of one covers it. One map, so a domain covering none costs one probe.
    names_reversed: BTreeMap<String, Vec<usize>>,
}

impl Warninglists {
    pub fn new() -> Warninglists {
        Warninglists::default()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn add(&mut self, list: &Warninglist) -> AddReport {
        let idx = self.names.len();
        self.names.push(list.name.clone());
        self.applies.push(applies_to(&list.matching_attributes));
        let mut report = AddReport::default();
        for entry in &list.entries {
            let trimmed = entry.trim();
            if trimmed.is_empty() {
                report.unusable.push((entry.clone(), "empty entry"));
                continue;
            }
            let lower = trimmed.to_ascii_lowercase();
            match list.kind {
                ListKind::String => {
                    let found = detect(trimmed);
                    if let Ok(d) = &found {
                        self.add_coverable(d, idx);
                    }
                    let key = found.map_or(lower, Indicator::into_value);
                    push(self.exact.entry(key).or_default(), idx);
                }
                ListKind::Hostname => {
                    // As domain values are kept: an IDN entry (`bücher.example`) in punycode.
                    let key = normalize(IndicatorType::Domain, trimmed)
                        .map(Indicator::into_value)
                        .unwrap_or_else(|_| lower.trim_matches('.').to_owned());
                    push(self.names_reversed.entry(reversed(&key)).or_default(), idx);
                    push(self.hostnames.entry(key).or_default(), idx);
                }
                ListKind::Substring => self.substrings.push((lower, idx)),
                // An IPv4-mapped entry is kept as the IPv4 block it reaches, as values are read.
                ListKind::Cidr => match block(trimmed).map(|(a, len)| block_at(a, len)) {
                    Some(Block::V4(net, len)) => {
                        push(self.v4.entry(len).or_default().entry(net).or_default(), idx);
                        self.v4_starts.entry(idx).or_default().insert((net, len));
                    }
                    Some(Block::V6(net, len)) => {
                        push(self.v6.entry(len).or_default().entry(net).or_default(), idx);
                        self.v6_starts.entry(idx).or_default().insert((net, len));
                    }
                    None => {
                        report
                            .unusable
                            .push((entry.clone(), "not an address or CIDR block"));
                        continue;
                    }
                },
                ListKind::Regex => {
                    report
                        .unusable
                        .push((entry.clone(), "regex lists are not matched"));
                    continue;
                }
            }
            report.used += 1;
        }
        report
    }

    /// Notes an exact entry of list `idx` that a wider value can cover.
    fn add_coverable(&mut self, entry: &Indicator, idx: usize) {
        match block_of(entry) {
            Some(Block::V4(net, len)) => {
                self.v4_starts.entry(idx).or_default().insert((net, len));
            }
            Some(Block::V6(net, len)) => {
                self.v6_starts.entry(idx).or_default().insert((net, len));
            }
            None if entry.ty() == IndicatorType::Domain => {
                push(
                    self.names_reversed
                        .entry(reversed(entry.value()))
                        .or_default(),
                    idx,
                );
            }
            None => {}
        }
    }

    /// Names of the lists `indicator` is on, sorted, without repeats.
    pub fn matches(&self, indicator: &Indicator) -> Vec<&str> {
        self.matches_with_host(indicator, indicator.host().as_ref())
    }

    /// [`Warninglists::matches`] for a caller that has `indicator.host()` at hand already
    /// (a URL's host costs a URL parse).
    pub fn matches_with_host(&self, indicator: &Indicator, host: Option<&Indicator>) -> Vec<&str> {
        // A node without lists answers every lookup: not a parse or a probe of each value.
        if self.is_empty() {
            return Vec::new();
        }
        let mut hits = Vec::new();
        // Parsed once, for what it is on and what it covers; not at all without listed blocks.
        let block = self.probed_block(indicator);
        self.collect(indicator, block, &mut hits);
        // A URL or e-mail address is specific: only the value itself can cover listed ones.
        self.collect_covered(indicator, block, &mut hits);
        if let Some(host) = host {
            self.collect(host, self.probed_block(host), &mut hits);
        }
        let mut names: Vec<&str> = hits.into_iter().map(|i| self.names[i].as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// `indicator`'s block when some list holds blocks or addresses (else nothing could be
    /// found by it).
    fn probed_block(&self, indicator: &Indicator) -> Option<Block> {
        let no_blocks = self.v4.is_empty()
            && self.v6.is_empty()
            && self.v4_starts.is_empty()
            && self.v6_starts.is_empty();
        if no_blocks {
            return None;
        }
        block_of(indicator)
    }

    fn applies(&self, list: usize, ty: IndicatorType) -> bool {
        self.applies[list]
            .as_ref()
            .is_none_or(|types| types.contains(&ty))
    }

    /// The lists holding a block or name that `indicator` covers without being on them.
    fn collect_covered(&self, indicator: &Indicator, block: Option<Block>, hits: &mut Vec<usize>) {
        let ty = indicator.ty();
        let mut take = |list: usize, covers: bool| {
            if covers && self.applies(list, ty) {
                hits.push(list);
            }
        };
        match (ty, block) {
            (IndicatorType::Domain, _) if !self.names_reversed.is_empty() => {
                let mut below = reversed(indicator.value());
                below.push('.');
                let from = (Bound::Included(below.as_str()), Bound::Unbounded);
                let names = self.names_reversed.range::<str, _>(from);
                let names = names.take_while(|(name, _)| name.starts_with(&below));
                // A domain covering a whole list is flagged by the lists of its first names.
                for &list in names.take(MAX_COVERED_NAMES).flat_map(|(_, lists)| lists) {
                    take(list, true);
                }
            }
            // A listed block starting inside the value's is no wider than it, but for one
            // starting where it does (a string list's `10.0.0.0/8` holds `10.0.0.0/16`, which
            // covers nothing of it): those are left out by starting at the value's length.
            // A whole-length value (`/32`, `/128`, an IPv4-mapped address) finds a string
            // list's address written as it is, which the exact text would not.
            (_, Some(Block::V4(net, len))) => {
                let last = net | !mask32(len);
                for (&list, starts) in &self.v4_starts {
                    take(
                        list,
                        starts.range((net, len)..=(last, u8::MAX)).next().is_some(),
                    );
                }
            }
            (_, Some(Block::V6(net, len))) => {
                let last = net | !mask128(len);
                for (&list, starts) in &self.v6_starts {
                    take(
                        list,
                        starts.range((net, len)..=(last, u8::MAX)).next().is_some(),
                    );
                }
            }
            _ => {}
        }
    }

    /// The lists `indicator` (whose block, if an address, is `block`) is on.
    fn collect(&self, indicator: &Indicator, block: Option<Block>, hits: &mut Vec<usize>) {
        let ty = indicator.ty();
        let value = indicator.value();
        let mut take = |found: Option<&Vec<usize>>| {
            for &i in found.into_iter().flatten() {
                if self.applies(i, ty) {
                    hits.push(i);
                }
            }
        };
        take(self.exact.get(value));
        if ty == IndicatorType::Domain && !self.hostnames.is_empty() {
            let mut name = value;
            loop {
                take(self.hostnames.get(name));
                match name.split_once('.') {
                    Some((_, parent)) if !parent.is_empty() => name = parent,
                    _ => break,
                }
            }
        }
        match block {
            Some(Block::V4(a, len)) => {
                for (&plen, nets) in self.v4.range(..=len) {
                    take(nets.get(&(a & mask32(plen))));
                }
            }
            Some(Block::V6(a, len)) => {
                for (&plen, nets) in self.v6.range(..=len) {
                    take(nets.get(&(a & mask128(plen))));
                }
            }
            None => {}
        }
        for (sub, i) in &self.substrings {
            if self.applies(*i, ty) && value.contains(sub.as_str()) {
                hits.push(*i);
            }
        }
    }
}

fn push(v: &mut Vec<usize>, idx: usize) {
    if v.last() != Some(&idx) {
        v.push(idx);
    }
}

/// The indicator types MISP attribute types name; `None` (all) when none is given.
fn applies_to(matching_attributes: &[String]) -> Option<Vec<IndicatorType>> {
    use IndicatorType as T;
    if matching_attributes.is_empty() {
        return None;
    }
    let mut types = Vec::new();
    for attribute in matching_attributes {
        let found: &[T] = match attribute.as_str() {
            "ip-src" | "ip-dst" | "ip-src|port" | "ip-dst|port" => &[T::Ipv4, T::Ipv6, T::Cidr],
            "domain|ip" => &[T::Domain, T::Ipv4, T::Ipv6, T::Cidr],
            "domain" | "hostname" | "hostname|port" => &[T::Domain],
            "url" | "uri" | "link" => &[T::Url],
            "email" | "email-src" | "email-dst" | "email-reply-to" => &[T::Email],
            "md5" | "filename|md5" => &[T::Md5],
            "sha1" | "filename|sha1" => &[T::Sha1],
            "sha256" | "filename|sha256" => &[T::Sha256],
            _ => &[],
        };
        for t in found {
            if !types.contains(t) {
                types.push(*t);
            }
        }
    }
    Some(types)
}

/// Listed names below a domain read to say which lists it covers: a domain covering more (a
/// whole list's) is flagged by the lists of the first ones.
const MAX_COVERED_NAMES: usize = 1024;

/// An address indicator's block: its network and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    V4(u32, u8),
    V6(u128, u8),
}

/// The block of an address or CIDR indicator; an IPv4-mapped IPv6 address or block
/// (`::ffff:8.8.8.8`) as the IPv4 one it reaches.
fn block_of(indicator: &Indicator) -> Option<Block> {
    use IndicatorType as T;
    if !matches!(indicator.ty(), T::Ipv4 | T::Ipv6 | T::Cidr) {
        return None;
    }
    block(indicator.value()).map(|(a, len)| block_at(a, len))
}

/// The block of `len` bits at `addr`; an IPv4-mapped IPv6 one as the IPv4 one it reaches.
/// The whole mapped range, `::ffff:0:0/96` (listed among IANA's special-purpose blocks), stays
/// an IPv6 block: as IPv4 it would be `0.0.0.0/0` and flag every IPv4 value.
fn block_at(addr: IpAddr, len: u8) -> Block {
    match addr {
        IpAddr::V4(a) => Block::V4(u32::from(a) & mask32(len), len),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) if len > 96 => Block::V4(u32::from(v4) & mask32(len - 96), len - 96),
            _ => Block::V6(u128::from(a) & mask128(len), len),
        },
    }
}

/// A domain name with its labels in reverse order, so the names below a domain sort after it
/// under one prefix.
fn reversed(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for (i, label) in name.rsplit('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(label);
    }
    out
}

/// An address or block: `(address, prefix length)`, a bare address at full length.
fn block(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = addr.trim().parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.trim().parse::<u8>().ok().filter(|l| *l <= max)?,
        None => max,
    };
    Some((addr, len))
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
#[path = "warninglist_tests.rs"]
mod tests;
