//! HTTP glue of the gateway: routes, content negotiation and authentication (answers and TAXII
//! error bodies: `answer`); each handler decodes, calls a plain function of `read` or `write`,
//! and encodes.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use intelmesh_core::now_unix_ms;
use intelmesh_core::object_id::{format_uuid, name_uuid, random_uuid};
use intelmesh_interop::taxii::{self as protocol, ManifestRecord, ObjectsQuery, StatusResource};
use serde_json::Value;

use super::answer::{
    internal, method_not_allowed, not_found, refuse, taxii, taxii_text, too_busy, Answer, Refusal,
};
use super::auth::{authenticate, Caller, Users};
use super::body::{read_within, BodyError};
use super::busy;
use super::config::TaxiiConfig;
use super::read::{self, Dated, Page, ReadError, Reader};
use super::segments::Segments;
use super::write::{self, Statuses};
use crate::token::TokenKey;
use intelmesh_interop::json_budget::{parse_within, JsonError};
use intelmesh_store::Store;

use crate::api::audience_rejudge;
use crate::api::submission::Publisher;
use crate::api::view::Filter;
use crate::audit;
use crate::https::Connection;
use crate::read_shares::{self, ReadPermit, ReadShares};
use crate::state::{NodeError, NodeState};

/// Most JSON values one POSTed body may hold: fifty for each object an envelope may carry (an
/// indicator with its markings and labels holds twenty to thirty), so four POSTs parsed at
/// once hold a small multiple of their bytes (see `json_budget`).
pub const MAX_VALUES: usize = super::write::MAX_ENVELOPE_OBJECTS * 50;

/// The API root's path segment.
const API_ROOT: &str = "intelmesh";
/// Objects per page when the client gives no `limit`.
const DEFAULT_PAGE: usize = 100;

#[derive(Clone)]
struct Gateway {
    state: Arc<NodeState>,
    cfg: Arc<TaxiiConfig>,
    users: Arc<Users>,
    statuses: Arc<Statuses>,
    tokens: Arc<TokenKey>,
    /// Requests doing store work (reads, plans) at once: the rest wait here, not on the
    /// blocking pool the node's other work shares; each caller holds at most its share.
    working: Arc<ReadShares>,
    /// POST bodies being received and parsed at once: a body is up to `max_content_length`
    /// and its parsed JSON several times that, so callers sending many at once must wait here
    /// rather than each hold one in memory; each caller holds at most its share.
    bodies: Arc<ReadShares>,
    collection_id: String,
}

/// Requests of the gateway reading or planning (or bodies being received) at once, and what
/// one caller may hold of them: a caller keeping many requests going, with one certificate or
/// one user's password, waits on its own share and shuts nobody else out.
const SHARES: read_shares::Bounds = read_shares::Bounds {
    at_once: 4,
    per_caller: 2,
    patience: busy::WAIT_FOR_WORK,
};

pub fn router(state: Arc<NodeState>, cfg: TaxiiConfig, tokens: Arc<TokenKey>) -> Router {
    let collection_id = format_uuid(&name_uuid(&["taxii-collection", state.org.as_str()]));
    let counted = Arc::clone(&state);
    let g = Gateway {
        users: Arc::new(Users::new(cfg.user.clone())),
        cfg: Arc::new(cfg),
        statuses: Arc::new(Statuses::default()),
        tokens,
        working: Arc::new(ReadShares::new(SHARES)),
        bodies: Arc::new(ReadShares::new(SHARES)),
        collection_id,
        state,
    };
    let root = format!("/{API_ROOT}");
    let collection = format!("{root}/collections/{{collection}}");
    Router::new()
        .route("/taxii2/", get(discovery))
        .route(&format!("{root}/"), get(api_root))
        .route(&format!("{root}/collections/"), get(collections))
        .route(&format!("{collection}/"), get(collection_one))
        .route(
            &format!("{collection}/objects/"),
            get(objects).post(add_objects),
        )
        .route(&format!("{collection}/objects/{{id}}/"), get(object))
        .route(
            &format!("{collection}/objects/{{id}}/versions/"),
            get(versions),
        )
        .route(&format!("{collection}/manifest/"), get(manifest))
        .route(&format!("{root}/status/{{status}}/"), get(status))
        .route_layer(axum::middleware::from_fn_with_state(
            busy::answer_budget(),
            busy::hold_answer,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&g.state),
            super::audited::record,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(g)
        .layer(axum::middleware::from_fn_with_state(
            counted,
            crate::metrics::count_taxii,
        ))
}

/// Whose share a request takes: no two callers have the same (a service's name cannot hold
/// the `user:` of a basic user's, see `identity::valid_leaf_name`).
fn share_of(caller: &Caller) -> String {
    format!("{}/{}", caller.org, caller.name)
}

/// Checks the `Accept` header and authenticates: the caller, or the answer refusing it.
async fn admit(g: &Gateway, conn: &Connection, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if !protocol::accepts_taxii(text(header::ACCEPT)) {
        return Err(refuse(
            StatusCode::NOT_ACCEPTABLE,
            "Not acceptable",
            format!("answers are {}", protocol::TAXII_MEDIA_TYPE),
        ));
    }
    authenticate(
        &g.state,
        &g.users,
        conn.leaf.as_deref().map(Vec::as_slice),
        text(header::AUTHORIZATION),
        conn.peer,
    )
    .await
    .inspect(|caller| {
        super::audited::note_caller(&conn.note, caller);
        conn.prove();
    })
    .map_err(|e| {
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let title = match status {
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::SERVICE_UNAVAILABLE => "Busy",
            StatusCode::TOO_MANY_REQUESTS => "Too many wrong passwords",
            _ => "Unauthorized",
        };
        refuse(status, title, e)
    })
}

fn check_collection(g: &Gateway, id: &str) -> Result<(), Refusal> {
    if id == g.collection_id {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::NOT_FOUND,
            "No such collection",
            format!("collection {id:.80} is not on this server"),
        ))
    }
}

/// Where the caller reached the gateway: HTTP/2's `:authority` (HTTP/2 requests carry no
/// `Host`), else `Host`, else the listen address.
fn base_url(uri: &axum::http::Uri, headers: &HeaderMap, g: &Gateway) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|v| v.to_str().ok()))
        // Only a well-formed host[:port]: the caller's own, echoed to the caller alone.
        .filter(|h| {
            h.len() < 256
                && !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| g.cfg.listen.to_string());
    format!("https://{host}")
}

async fn discovery(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Answer {
    admit(&g, &c, &headers).await?;
    let url = format!("{}/{API_ROOT}/", base_url(&uri, &headers, &g));
    let title = format!("intelmesh node {}", g.state.org);
    Ok(taxii(StatusCode::OK, &protocol::discovery(&title, &url)))
}

async fn api_root(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    headers: HeaderMap,
) -> Answer {
    admit(&g, &c, &headers).await?;
    let title = format!("intelmesh: the federation as {} sees it", g.state.org);
    let root = protocol::api_root(&title, g.cfg.max_content_length);
    Ok(taxii(StatusCode::OK, &root))
}

fn collection_json(g: &Gateway, caller: &Caller) -> Value {
    let description = format!(
        "indicators and sightings the federation shares with {}; objects added are signed by {}",
        caller.org, g.state.org
    );
    protocol::collection(
        &g.collection_id,
        "indicators",
        &description,
        caller.can_write,
    )
}

async fn collections(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    headers: HeaderMap,
) -> Answer {
    let caller = admit(&g, &c, &headers).await?;
    let body = serde_json::json!({"collections": [collection_json(&g, &caller)]});
    Ok(taxii(StatusCode::OK, &body))
}

async fn collection_one(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Answer {
    let caller = admit(&g, &c, &headers).await?;
    check_collection(&g, &id)?;
    Ok(taxii(StatusCode::OK, &collection_json(&g, &caller)))
}

/// Admission, collection and query parameters of a read.
async fn read_request(
    g: &Gateway,
    c: &Connection,
    headers: &HeaderMap,
    collection: &str,
    query: Option<&str>,
) -> Result<(Caller, ObjectsQuery), Refusal> {
    let caller = admit(g, c, headers).await?;
    check_collection(g, collection)?;
    let q = protocol::parse_objects_query(query)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "Bad query parameter", e))?;
    Ok((caller, q))
}

/// Runs `f` with a reader for `caller` on a blocking thread.
async fn reading<T: Send + 'static>(
    g: &Gateway,
    caller: Caller,
    f: impl FnOnce(&Reader) -> Result<T, ReadError> + Send + 'static,
) -> Result<T, Refusal> {
    let state = Arc::clone(&g.state);
    let tokens = Arc::clone(&g.tokens);
    // Held by the blocking task, not the handler: a client resetting its request drops the
    // handler while the read runs on.
    let working = g
        .working
        .acquire(&share_of(&caller))
        .await
        .map_err(too_busy)?;
    let answer = tokio::task::spawn_blocking(move || {
        let _working = working;
        let view = Filter::default().hiding(state.withdrawn());
        let lists = state.warninglists();
        let reader = Reader {
            store: state.store.as_ref(),
            org: &caller.org,
            view: &view,
            warninglists: &lists,
            tokens: &tokens,
        };
        f(&reader)
    })
    .await
    .map_err(internal)?;
    answer.map_err(|e| match e {
        ReadError::BadToken(_) | ReadError::MixedIdentity => {
            refuse(StatusCode::BAD_REQUEST, "Bad query parameter", e)
        }
        ReadError::Store(e) => internal(e),
    })
}

fn limit(g: &Gateway, q: &ObjectsQuery) -> usize {
    q.limit.unwrap_or(DEFAULT_PAGE).min(g.cfg.max_page_objects)
}

fn with_date_headers(mut r: Response, objects: &[Dated]) -> Response {
    let first = objects.iter().map(|d| d.date_added_us).min();
    let last = objects.iter().map(|d| d.date_added_us).max();
    for (name, t) in [
        ("x-taxii-date-added-first", first),
        ("x-taxii-date-added-last", last),
    ] {
        let text = t.map(intelmesh_interop::format_timestamp_micros);
        if let Some(v) = text.and_then(|t| HeaderValue::from_str(&t).ok()) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

fn envelope_of(page: Page) -> Response {
    let objects: Vec<Value> = page.objects.iter().map(|d| d.object.clone()).collect();
    let envelope = protocol::envelope(objects, page.next.as_deref());
    with_date_headers(taxii(StatusCode::OK, &envelope), &page.objects)
}

/// The page a `GET …/objects/` or `…/manifest/` asks for.
async fn page_of(
    g: &Gateway,
    c: &Connection,
    headers: &HeaderMap,
    collection: &str,
    query: Option<&str>,
) -> Result<Page, Refusal> {
    let (caller, q) = read_request(g, c, headers, collection, query).await?;
    let n = limit(g, &q);
    let by_id = !q.ids.is_empty();
    let page = reading(g, caller, move |r| read::page(r, &q, n)).await?;
    if by_id {
        super::audited::note_found(&c.note, &page.objects);
    }
    Ok(page)
}

async fn objects(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments(collection): Segments<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let page = page_of(&g, &c, &headers, &collection, query.as_deref()).await?;
    Ok(envelope_of(page))
}

async fn manifest(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments(collection): Segments<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let page = page_of(&g, &c, &headers, &collection, query.as_deref()).await?;
    let records: Vec<ManifestRecord> = page
        .objects
        .iter()
        .map(|d| ManifestRecord {
            id: d.object["id"].as_str().unwrap_or_default().to_string(),
            date_added_unix_us: d.date_added_us,
            version_unix_ms: d.version,
        })
        .collect();
    let body = protocol::manifest(&records, page.next.as_deref());
    Ok(with_date_headers(
        taxii(StatusCode::OK, &body),
        &page.objects,
    ))
}

/// The versions of one object, or 404 when the reader sees none.
async fn one_object(
    g: &Gateway,
    c: &Connection,
    headers: &HeaderMap,
    (collection, id): (&str, &str),
    query: Option<&str>,
) -> Result<Vec<Dated>, Refusal> {
    let (caller, q) = read_request(g, c, headers, collection, query).await?;
    let missing = |why: String| refuse(StatusCode::NOT_FOUND, "No such object", why);
    if !protocol::object_id_ok(id) {
        return Err(missing(format!("{id:.80} is not a STIX id")));
    }
    let id = id.to_string();
    let found = reading(g, caller, move |r| read::by_id(r, &id, &q)).await?;
    super::audited::note_found(&c.note, &found);
    if found.is_empty() {
        return Err(missing(
            "no object with this id (and these filters) is visible to this caller".into(),
        ));
    }
    Ok(found)
}

async fn object(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments((collection, id)): Segments<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let found = one_object(&g, &c, &headers, (&collection, &id), query.as_deref()).await?;
    Ok(envelope_of(Page {
        objects: found,
        next: None,
    }))
}

async fn versions(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments((collection, id)): Segments<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    // Every version, whatever match[version] says: this resource lists them.
    let all = match query.as_deref() {
        Some(q) if !q.is_empty() => format!("{q}&match[version]=all"),
        _ => "match[version]=all".to_string(),
    };
    let found = one_object(&g, &c, &headers, (&collection, &id), Some(&all)).await?;
    let versions: BTreeSet<i64> = found.iter().map(|d| d.version).collect();
    let versions: Vec<i64> = versions.into_iter().collect();
    let body = protocol::versions(&versions, None);
    Ok(with_date_headers(taxii(StatusCode::OK, &body), &found))
}

async fn status(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Answer {
    let caller = admit(&g, &c, &headers).await?;
    match g.statuses.get(&caller.org, &caller.name, &id) {
        Some(s) => Ok(taxii_text(StatusCode::OK, s.to_json_text())),
        None => Err(refuse(
            StatusCode::NOT_FOUND,
            "No such status",
            "no status with this id for this caller (the last 1024 are kept)",
        )),
    }
}

/// Admission, permission, media type and size of a POST: the envelope's JSON, with the
/// permit that counts it among the bodies held at once (kept until it is planned).
async fn posted(
    g: &Gateway,
    c: &Connection,
    headers: &HeaderMap,
    collection: &str,
    body: Body,
) -> Result<(Caller, Value, ReadPermit), Refusal> {
    let caller = admit(g, c, headers).await?;
    check_collection(g, collection)?;
    if !caller.can_write {
        let why = format!("{} may read this collection, not add to it", caller.name);
        return Err(refuse(StatusCode::FORBIDDEN, "Forbidden", why));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !protocol::is_taxii_content(content_type) {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            format!("post an envelope as {}", protocol::TAXII_MEDIA_TYPE),
        ));
    }
    let held = g
        .bodies
        .acquire(&share_of(&caller))
        .await
        .map_err(too_busy)?;
    let max = g.cfg.max_content_length;
    // A body trickled in holds its permit at most as long as a silent connection stays open.
    let idle = g.state.cfg.limits.http_idle();
    let declared =
        (headers.get(header::CONTENT_LENGTH)).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let bytes = match tokio::time::timeout(idle, read_within(body, declared, max)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e @ BodyError::TooLarge { .. })) => {
            return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, "Too large", e));
        }
        Ok(Err(e @ BodyError::Broken(_))) => {
            return Err(refuse(StatusCode::BAD_REQUEST, "Body unreadable", e));
        }
        Err(_) => {
            let why = format!("the body did not all arrive within {idle:?}");
            return Err(refuse(StatusCode::REQUEST_TIMEOUT, "Body too slow", why));
        }
    };
    let envelope = parse_within(&bytes, MAX_VALUES).map_err(|e| match e {
        JsonError::TooManyValues { .. } => refuse(StatusCode::PAYLOAD_TOO_LARGE, "Too large", e),
        JsonError::Malformed(_) => refuse(StatusCode::BAD_REQUEST, "Not JSON", e),
    })?;
    Ok((caller, envelope, held))
}

async fn add_objects(
    State(g): State<Gateway>,
    Extension(c): Extension<Connection>,
    Segments(collection): Segments<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let (caller, envelope, body_held) = posted(&g, &c, &headers, &collection, body).await?;
    let request_time = now_unix_ms();
    let state = Arc::clone(&g.state);
    let working = g
        .working
        .acquire(&share_of(&caller))
        .await
        .map_err(too_busy)?;
    let plan = tokio::task::spawn_blocking(move || {
        let (_working, _body_held) = (working, body_held);
        let members = state.keys().members().clone();
        let publisher = Publisher {
            org: &state.org,
            members: &members,
            now: request_time,
        };
        let lists = state.warninglists();
        // Read before the plan reads what the node signed.
        let judged_at = state.own_head_seq();
        // A value whose state cannot be read is not judged as one never asserted here: that
        // would publish an unmarked upsert AMBER over the narrower audience it has.
        let unread = std::sync::Mutex::new(None);
        let held = |i: &intelmesh_core::Indicator| match state.store.indicator(i) {
            Ok(held) => held.unwrap_or_default(),
            Err(e) => {
                *crate::rotation::lock(&unread) = Some(e);
                intelmesh_proto::v1::IndicatorState::default()
            }
        };
        let containers = |i: &intelmesh_core::Indicator| {
            crate::api::submission::containers_in(state.store.as_ref(), i)
        };
        let plan = write::plan(&envelope, &publisher, &lists, (held, containers));
        match unread.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(internal(e)),
            None => Ok(plan.map(|plan| (judged_at, plan))),
        }
    })
    .await
    .map_err(internal)??
    .map_err(|e| match e {
        write::PlanError::NotAnEnvelope(_) => refuse(StatusCode::BAD_REQUEST, "Not an envelope", e),
        write::PlanError::TooManyObjects { .. } => {
            refuse(StatusCode::PAYLOAD_TOO_LARGE, "Too many objects", e)
        }
    })?;
    let (judged_at, plan) = plan;
    // A change is never made without its record.
    if !plan.to_sign.is_empty() && g.state.audit().failing() {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not published",
            "the audit trail cannot be written (is its disk full?): nothing is published until it can",
        ));
    }
    let rejudge = Some(audience_rejudge(judged_at, &plan.to_sign));
    let asked: Vec<_> = plan
        .to_sign
        .iter()
        .map(|p| audit::Value::Canonical(p.indicator.value().to_string()))
        .collect();
    // Noted before publishing: a client that goes away meanwhile does not stop the
    // publication, and its record (written as the request is dropped) names them.
    super::audited::note_values(&c.note, asked);
    let items = plan
        .to_sign
        .into_iter()
        .map(|p| (p.distribution, p.payload))
        .collect();
    g.state
        .publish_rejudged(items, rejudge)
        .await
        .map_err(|e| match e {
            // What the operator must act on is said; anything else (store, I/O) is logged only.
            NodeError::NotAdmitted { .. }
            | NodeError::OwnKeyEnded { .. }
            | NodeError::OwnLogBehind { .. }
            | NodeError::CutDue
            | NodeError::Seal(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, "Not published", e),
            // Another POST signed first and took the audience this one needed.
            NodeError::Rejudged(_) => refuse(StatusCode::CONFLICT, "Not published", e),
            e => internal(e),
        })?;
    // Recorded as published only once they are.
    super::audited::note_published(&c.note);
    let status = StatusResource {
        id: format_uuid(&random_uuid()),
        request_unix_ms: request_time,
        successes: plan.successes,
        failures: plan.failures,
        pendings: Vec::new(),
    };
    let body = status.to_json_text();
    g.statuses.keep(&caller.org, &caller.name, status);
    let mut answer = taxii_text(StatusCode::ACCEPTED, body);
    answer.extensions_mut().insert(busy::NotHeld);
    Ok(answer)
}
