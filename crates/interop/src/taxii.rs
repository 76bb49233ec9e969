//! TAXII 2.1 protocol rules, I/O free: media types, the query parameters of the objects and
//! manifest endpoints, which object versions a `match[version]` selects, and the JSON
//! resources (discovery, API root, collection, envelope, manifest, versions, status, error).
//!
//! The node serves these over HTTPS; everything a client chooses (headers, query strings)
//! is read here into values with bounds, so a malformed request is a 400 naming the
//! parameter, never a server error.

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::time::{
    format_timestamp, format_timestamp_micros, parse_timestamp, parse_timestamp_micros,
};

/// The TAXII 2.1 media type, as answered.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
/// The STIX 2.1 media type a collection holds.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
/// Most `match[id]` values (and of each other list parameter) one request may give.
pub const MAX_LIST_VALUES: usize = 100;
/// Longest query string read.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// A query parameter the endpoint cannot use.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("query parameter {parameter}: {reason}")]
pub struct QueryError {
    pub parameter: String,
    pub reason: String,
}

fn query_error(parameter: &str, reason: impl Into<String>) -> QueryError {
    QueryError {
        parameter: parameter.chars().take(64).collect(),
        reason: reason.into(),
    }
}

/// Which versions of each object `match[version]` asks for; absent means the latest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionMatch {
    pub first: bool,
    pub last: bool,
    pub all: bool,
    /// Exact `modified` times, in milliseconds.
    pub at: Vec<i64>,
}

impl VersionMatch {
    /// The versions of one object to return, given its versions oldest first.
    pub fn select<'a, T>(&self, versions: &'a [(i64, T)]) -> Vec<&'a (i64, T)> {
        let nothing_asked = !self.first && !self.last && !self.all && self.at.is_empty();
        let n = versions.len();
        versions
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| {
                self.all
                    || (self.first && *i == 0)
                    || ((self.last || nothing_asked) && *i + 1 == n)
                    || self.at.contains(t)
            })
            .map(|(_, v)| v)
            .collect()
    }
}

/// The parameters of `GET …/objects/`, `…/manifest/`, `…/objects/{id}/` and `…/versions/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectsQuery {
    /// Only objects added after this time (microseconds: `date_added` is that precise).
    pub added_after_us: Option<i64>,
    pub limit: Option<usize>,
    /// The `next` token of an earlier page.
    pub next: Option<String>,
    pub ids: Vec<String>,
    pub types: Vec<String>,
    pub versions: VersionMatch,
    pub spec_versions: Vec<String>,
}

impl ObjectsQuery {
    /// Whether `object` passes the id, type and spec_version filters.
    pub fn matches(&self, object: &Value) -> bool {
        let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or("");
        (self.ids.is_empty() || self.ids.iter().any(|i| i == field("id")))
            && (self.types.is_empty() || self.types.iter().any(|t| t == field("type")))
            && (self.spec_versions.is_empty()
                || self
                    .spec_versions
                    .iter()
                    .any(|v| v == field("spec_version")))
    }
}

/// Reads a query string (without the `?`). Unknown parameters are ignored, as TAXII lets a
/// server do; a repeated list parameter adds to the list.
pub fn parse_objects_query(raw: Option<&str>) -> Result<ObjectsQuery, QueryError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY_BYTES {
        return Err(query_error(
            "(query string)",
            format!("{} bytes, over {MAX_QUERY_BYTES}", raw.len()),
        ));
    }
    let mut q = ObjectsQuery::default();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let name = name.as_ref();
        let value = value.as_ref();
        match name {
            "added_after" => {
                let t =
                    parse_timestamp_micros(value).map_err(|e| query_error(name, e.to_string()))?;
                q.added_after_us = Some(t);
            }
            "limit" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| query_error(name, format!("{value:.32?} is not a count")))?;
                if n == 0 {
                    return Err(query_error(name, "must be at least 1"));
                }
                q.limit = Some(n);
            }
            "next" => {
                if value.is_empty() || value.len() > 8192 {
                    return Err(query_error(name, "not a token this server issued"));
                }
                q.next = Some(value.to_string());
            }
            "match[id]" => add_list(name, value, &mut q.ids, |v| {
                object_id_ok(v)
                    .then_some(())
                    .ok_or("not a STIX id (type--uuid)")
            })?,
            "match[type]" => add_list(name, value, &mut q.types, |v| {
                type_name_ok(v).then_some(()).ok_or("not a STIX type name")
            })?,
            "match[spec_version]" => add_list(name, value, &mut q.spec_versions, |v| {
                matches!(v, "2.0" | "2.1")
                    .then_some(())
                    .ok_or("spec versions are 2.0 and 2.1")
            })?,
            "match[version]" => {
                for v in value.split(',') {
                    match v.trim() {
                        "first" => q.versions.first = true,
                        "last" => q.versions.last = true,
                        "all" => q.versions.all = true,
                        t => {
                            let t = parse_timestamp(t).map_err(|_| {
                                query_error(
                                    name,
                                    format!("{t:.40?} is not first, last, all or a timestamp"),
                                )
                            })?;
                            if q.versions.at.len() >= MAX_LIST_VALUES {
                                return Err(query_error(name, "too many values"));
                            }
                            q.versions.at.push(t);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(q)
}

fn add_list(
    name: &str,
    value: &str,
    list: &mut Vec<String>,
    check: impl Fn(&str) -> Result<(), &'static str>,
) -> Result<(), QueryError> {
    for v in value.split(',').map(str::trim) {
        check(v).map_err(|why| query_error(name, format!("{v:.80?}: {why}")))?;
        // A value named twice is read once: each may cost a scan (an `identity` id).
        if list.iter().any(|kept| kept == v) {
            continue;
        }
        if list.len() >= MAX_LIST_VALUES {
            return Err(query_error(name, format!("over {MAX_LIST_VALUES} values")));
        }
        list.push(v.to_string());
    }
    Ok(())
}

fn type_name_ok(t: &str) -> bool {
    (3..=250).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `type--uuid` with a well-formed type and a UUID of hex groups 8-4-4-4-12.
pub fn object_id_ok(id: &str) -> bool {
    let Some((ty, uuid)) = id.split_once("--") else {
        return false;
    };
    let groups: Vec<&str> = uuid.split('-').collect();
    type_name_ok(ty)
        && groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One media range of an `Accept` or `Content-Type` header, lowercased, without spaces.
fn media_ranges(header: &str) -> impl Iterator<Item = (String, Vec<(String, String)>)> + '_ {
    header.split(',').take(32).map(|range| {
        let mut parts = range.split(';');
        let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_ascii_lowercase(),
                )
            })
            .collect();
        (ty, params)
    })
}

fn version_ok(params: &[(String, String)]) -> bool {
    params.iter().all(|(k, v)| k != "version" || v == "2.1")
}

/// Whether a response in TAXII 2.1 JSON satisfies `accept`. A missing header accepts
/// anything; so do `*/*` and `application/*`; a range with `q=0` refuses.
pub fn accepts_taxii(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    media_ranges(accept).any(|(ty, params)| {
        let refused = params.iter().any(|(k, v)| k == "q" && v.parse() == Ok(0.0));
        let fits = match ty.as_str() {
            "*/*" | "application/*" => true,
            "application/taxii+json" => version_ok(&params),
            _ => false,
        };
        fits && !refused
    })
}

/// Whether a posted body's `Content-Type` is TAXII 2.1 JSON (with or without the version).
pub fn is_taxii_content(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        media_ranges(ct)
            .next()
            .is_some_and(|(ty, params)| ty == "application/taxii+json" && version_ok(&params))
    })
}

/// The TAXII error resource.
pub fn error_body(http_status: u16, title: &str, description: &str) -> Value {
    json!({
        "title": title,
        "description": description,
        "http_status": http_status.to_string(),
    })
}

/// The discovery resource of a server with one API root.
pub fn discovery(title: &str, api_root_url: &str) -> Value {
    json!({
        "title": title,
        "description": "intelmesh node: the federation's indicators this caller may read",
        "default": api_root_url,
        "api_roots": [api_root_url],
    })
}

/// The API root resource.
pub fn api_root(title: &str, max_content_length: usize) -> Value {
    json!({
        "title": title,
        "versions": [TAXII_MEDIA_TYPE],
        "max_content_length": max_content_length,
    })
}

/// A collection resource.
pub fn collection(id: &str, title: &str, description: &str, can_write: bool) -> Value {
    json!({
        "id": id,
        "title": title,
        "description": description,
        "can_read": true,
        "can_write": can_write,
        "media_types": [STIX_MEDIA_TYPE],
    })
}

/// One page: `more`, and `next` whenever there is more (clients stop without it).
fn page(list_name: &str, items: Vec<Value>, next: Option<&str>) -> Value {
    let mut page = Map::new();
    page.insert("more".into(), Value::Bool(next.is_some()));
    if let Some(next) = next {
        page.insert("next".into(), Value::String(next.into()));
    }
    if !items.is_empty() {
        page.insert(list_name.into(), Value::Array(items));
    }
    Value::Object(page)
}

/// An envelope of objects; `next` present means more follow.
pub fn envelope(objects: Vec<Value>, next: Option<&str>) -> Value {
    page("objects", objects, next)
}

/// One manifest record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestRecord {
    pub id: String,
    pub date_added_unix_us: i64,
    pub version_unix_ms: i64,
}

/// The manifest resource.
pub fn manifest(records: &[ManifestRecord], next: Option<&str>) -> Value {
    let items = records
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "date_added": format_timestamp_micros(r.date_added_unix_us),
                "version": format_timestamp(r.version_unix_ms),
                "media_type": STIX_MEDIA_TYPE,
            })
        })
        .collect();
    page("objects", items, next)
}

/// The versions resource.
pub fn versions(versions_unix_ms: &[i64], next: Option<&str>) -> Value {
    let items = versions_unix_ms
        .iter()
        .map(|&t| Value::String(format_timestamp(t)))
        .collect();
    page("versions", items, next)
}

/// The version of a STIX object: `modified`, else `created`, in milliseconds.
pub fn object_version(object: &Value) -> Option<i64> {
    ["modified", "created"]
        .iter()
        .find_map(|f| object.get(*f).and_then(Value::as_str))
        .and_then(|t| parse_timestamp(t).ok())
}

/// One object's line in a status resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusDetail {
    pub id: String,
    pub version: Option<String>,
    pub message: Option<String>,
}

/// What became of one POST: every posted object in exactly one list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusResource {
    pub id: String,
    pub request_unix_ms: i64,
    pub successes: Vec<StatusDetail>,
    pub failures: Vec<StatusDetail>,
    pub pendings: Vec<StatusDetail>,
}

impl StatusResource {
    /// The resource as JSON text; counts are the lists' lengths, so they always agree. Written
    /// straight from the lists: a POST's status names every object it carried.
    pub fn to_json_text(&self) -> String {
        #[derive(serde::Serialize)]
        struct Detail<'a> {
            id: &'a str,
            version: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            message: Option<&'a str>,
        }
        #[derive(serde::Serialize)]
        struct Resource<'a> {
            id: &'a str,
            status: &'a str,
            request_timestamp: &'a str,
            total_count: usize,
            success_count: usize,
            successes: Vec<Detail<'a>>,
            failure_count: usize,
            failures: Vec<Detail<'a>>,
            pending_count: usize,
            pendings: Vec<Detail<'a>>,
        }
        // TAXII 2.1 requires a version in every detail; an object without `modified` or
        // `created` (or an item that is no object) is versioned by when it was added.
        fn details<'a>(list: &'a [StatusDetail], added: &'a str) -> Vec<Detail<'a>> {
            list.iter()
                .map(|d| Detail {
                    id: &d.id,
                    version: d.version.as_deref().unwrap_or(added),
                    message: d.message.as_deref(),
                })
                .collect()
        }
        let request_timestamp = format_timestamp(self.request_unix_ms);
        let resource = Resource {
            id: &self.id,
            status: match self.pendings.is_empty() {
                true => "complete",
                false => "pending",
            },
            request_timestamp: &request_timestamp,
            total_count: self.successes.len() + self.failures.len() + self.pendings.len(),
            success_count: self.successes.len(),
            successes: details(&self.successes, &request_timestamp),
            failure_count: self.failures.len(),
            failures: details(&self.failures, &request_timestamp),
            pending_count: self.pendings.len(),
            pendings: details(&self.pendings, &request_timestamp),
        };
        // Plain strings and numbers: serializing them cannot fail.
        serde_json::to_string(&resource).unwrap_or_default()
    }
}

#[cfg(test)]
#[path = "taxii_tests.rs"]
mod tests;
