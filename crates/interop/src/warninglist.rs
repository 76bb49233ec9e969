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
//! A list applies only to the indicator types its `matching_attributes` name (an empty list
//! means all), which keeps `3::`, the ssdeep of an empty file, from flagging the IPv6 address
//! `3::`. A URL's host and an e-mail's domain are matched too, as that host would be.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use intelmesh_core::indicator::detect;
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

/// Many lists, indexed for lookup.
#[derive(Clone, Debug, Default)]
pub struct Warninglists {
    names: Vec<String>,
    applies: Vec<Option<Vec<IndicatorType>>>,
    exact: HashMap<String, Vec<usize>>,
    hostnames: HashMap<String, Vec<usize>>,
    substrings: Vec<(String, usize)>,
    v4: BTreeMap<u8, HashMap<u32, Vec<usize>>>,
    v6: BTreeMap<u8, HashMap<u128, Vec<usize>>>,
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
                    let key = detect(trimmed).map_or(lower, Indicator::into_value);
                    push(self.exact.entry(key).or_default(), idx);
                }
                ListKind::Hostname => {
                    let key = lower.trim_matches('.').to_owned();
                    push(self.hostnames.entry(key).or_default(), idx);
                }
                ListKind::Substring => self.substrings.push((lower, idx)),
                ListKind::Cidr => match block(trimmed) {
                    Some((IpAddr::V4(a), len)) => {
                        let net = u32::from(a) & mask32(len);
                        push(self.v4.entry(len).or_default().entry(net).or_default(), idx);
                    }
                    Some((IpAddr::V6(a), len)) => {
                        let net = u128::from(a) & mask128(len);
                        push(self.v6.entry(len).or_default().entry(net).or_default(), idx);
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

    /// Names of the lists `indicator` is on, sorted, without repeats.
    pub fn matches(&self, indicator: &Indicator) -> Vec<&str> {
        self.matches_with_host(indicator, indicator.host().as_ref())
    }

    /// [`Warninglists::matches`] for a caller that has `indicator.host()` at hand already
    /// (a URL's host costs a URL parse).
    pub fn matches_with_host(&self, indicator: &Indicator, host: Option<&Indicator>) -> Vec<&str> {
        let mut hits = Vec::new();
        self.collect(indicator, &mut hits);
        if let Some(host) = host {
            self.collect(host, &mut hits);
        }
        let mut names: Vec<&str> = hits.into_iter().map(|i| self.names[i].as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    fn collect(&self, indicator: &Indicator, hits: &mut Vec<usize>) {
        let ty = indicator.ty();
        let value = indicator.value();
        let mut take = |found: Option<&Vec<usize>>| {
            for &i in found.into_iter().flatten() {
                if self.applies[i]
                    .as_ref()
                    .is_none_or(|types| types.contains(&ty))
                {
                    hits.push(i);
                }
            }
        };
        take(self.exact.get(value));
        if ty == IndicatorType::Domain {
            let mut name = value;
            loop {
                take(self.hostnames.get(name));
                match name.split_once('.') {
                    Some((_, parent)) if !parent.is_empty() => name = parent,
                    _ => break,
                }
            }
        }
        if matches!(
            ty,
            IndicatorType::Ipv4 | IndicatorType::Ipv6 | IndicatorType::Cidr
        ) {
            match block(value) {
                Some((IpAddr::V4(a), len)) => {
                    for (&plen, nets) in self.v4.range(..=len) {
                        take(nets.get(&(u32::from(a) & mask32(plen))));
                    }
                }
                Some((IpAddr::V6(a), len)) => {
                    for (&plen, nets) in self.v6.range(..=len) {
                        take(nets.get(&(u128::from(a) & mask128(plen))));
                    }
                }
                None => {}
            }
        }
        for (sub, i) in &self.substrings {
            let applies = self.applies[*i]
                .as_ref()
                .is_none_or(|types| types.contains(&ty));
            if applies && value.contains(sub.as_str()) {
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
