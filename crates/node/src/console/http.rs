//! HTTP glue of the console: who may look (an admin certificate of this hub, not revoked),
//! the routes, and the headers every answer carries. Handlers gather the same data the Admin
//! service serves (its plain functions) and hand it to `view` and `page`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use intelmesh_core::OrgId;
use intelmesh_proto::v1 as pb;

use super::recent::Recent;
use super::{page, view};
use crate::admin::{audit, health, proposals, AdminError};
use crate::config::Role as NodeRole;
use crate::https::Connection;
use crate::identity::{identity_of, Identity, IdentityError};
use crate::state::NodeState;

/// Scripts, styles and fetches from the console itself only; never framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// Why a page could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    Admin(#[from] AdminError),
    #[error("store: {0}")]
    Store(#[from] intelmesh_store::StoreError),
    #[error("the console's worker stopped: {0}")]
    Worker(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let code = match &self {
            ConsoleError::Admin(AdminError::NotFollowing | AdminError::NotHub(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(error = %self, "console page failed");
        (code, self.to_string()).into_response()
    }
}

/// How long a snapshot serves every page asked for: half the console's poll interval.
const SNAPSHOT_FRESH: Duration = Duration::from_secs(1);

/// What the handlers share: the node, and the last snapshot made, keyed by roster version.
struct Shared {
    node: Arc<NodeState>,
    recent: Recent<u64, Snapshot>,
}

type Console = Arc<Shared>;

pub fn router(state: Arc<NodeState>) -> Router {
    let shared = Arc::new(Shared {
        node: Arc::clone(&state),
        recent: Recent::new(SNAPSHOT_FRESH),
    });
    Router::new()
        .route("/", get(index))
        .route("/member/{org}", get(member))
        .route("/roster", get(roster))
        .route("/api/federation.json", get(federation_json))
        .route("/console.js", get(script))
        .route("/console.css", get(style))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .layer(middleware::from_fn_with_state(state, guard))
        .with_state(shared)
}

/// The operator a client certificate names, if it may see this hub's console: an admin
/// certificate of `hub`'s own org (as the Admin service requires).
pub fn admit(hub: &OrgId, presented: Result<Identity, IdentityError>) -> Result<String, String> {
    match presented {
        Ok(Identity::Admin { org, name }) if org == *hub => Ok(format!("{org}/{name}")),
        Ok(Identity::Admin { org, .. }) => Err(format!(
            "the console needs an admin certificate of {hub}; this one is of {org}"
        )),
        Ok(other) => Err(format!(
            "the console needs a certificate of role admin; {other} presented one of role {}",
            other.role()
        )),
        Err(e) => Err(format!("the console needs an admin certificate: {e}")),
    }
}

/// Refuses (403) every request but an operator's, and sets the security headers on every
/// answer.
async fn guard(
    State(state): State<Arc<NodeState>>,
    Extension(conn): Extension<Connection>,
    request: Request,
    next: Next,
) -> Response {
    let presented = conn
        .leaf
        .as_deref()
        .map_or(Err(IdentityError::NoCertificate), |leaf| identity_of(leaf));
    // A browser sends the operator's certificate with requests other sites' pages make too:
    // those (which it marks, unlike a typed address or the console's own links) are refused,
    // so no page can make the console work for it (images, fetches, prefetches) or learn
    // from its answers. Following a link to it (a navigation the operator sees) is allowed.
    let fetched_by_another_site = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let site = header("sec-fetch-site");
        matches!(site.as_str(), "cross-site" | "same-site")
            && header("sec-fetch-mode") != "navigate"
    };
    let admitted = if state.cfg.role != NodeRole::Hub {
        Err(format!("{} is not a hub: it serves no console", state.org))
    } else if fetched_by_another_site {
        Err("a request another site's page made is refused".to_string())
    } else {
        admit(&state.org, presented).and_then(|operator| {
            let revoked = conn
                .leaf
                .as_deref()
                .and_then(|leaf| crate::admission::refused_certificate(&state, leaf));
            revoked.map_or(Ok(operator), Err)
        })
    };
    let mut response = match admitted {
        Ok(operator) => {
            conn.prove();
            tracing::debug!(%operator, path = %request.uri().path(), "console request");
            next.run(request).await
        }
        Err(why) => {
            tracing::warn!(path = %request.uri().path(), reason = %why, "console request refused");
            (StatusCode::FORBIDDEN, why).into_response()
        }
    };
    security_headers(response.headers_mut());
    response
}

fn security_headers(h: &mut HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

/// What every page shows: the view, the node's status and the roster's members.
struct Snapshot {
    view: view::Federation,
    status: pb::StatusResponse,
    members: Vec<pb::Member>,
}

/// The last snapshot if fresh and of the roster version in force, else a new one.
fn snapshot(console: &Shared) -> Result<Arc<Snapshot>, ConsoleError> {
    let state = console.node.as_ref();
    let version = proposals::current_roster(state)?.version();
    console
        .recent
        .get_or_make(version, Instant::now(), || make_snapshot(state))
}

fn make_snapshot(state: &NodeState) -> Result<Snapshot, ConsoleError> {
    let roster = proposals::current_roster(state)?;
    let health = health::federation_status(state)?;
    let status = crate::api::status::status_with(state, crate::api::status::Digest::Withheld)?;
    let now = intelmesh_core::now_unix_ms();
    let sources = view::Sources {
        hub: state.org.as_str(),
        health: &health,
        status: &status,
        members: roster.members(),
        cert_warn_days: roster.policy().cert_warn_days,
    };
    let view = view::federation(&sources, now);
    Ok(Snapshot {
        view,
        status,
        members: roster.members().to_vec(),
    })
}

/// Runs `f` over the state off the async threads (the health rows read the store).
async fn blocking<R: Send + 'static>(
    console: &Console,
    f: impl FnOnce(&Shared) -> Result<R, ConsoleError> + Send + 'static,
) -> Result<R, ConsoleError> {
    let console = Arc::clone(console);
    tokio::task::spawn_blocking(move || f(&console))
        .await
        .map_err(|e| ConsoleError::Worker(e.to_string()))?
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn index(State(console): State<Console>) -> Result<Response, ConsoleError> {
    let s = blocking(&console, snapshot).await?;
    Ok(html(page::index(&s.view)))
}

async fn federation_json(State(console): State<Console>) -> Result<Response, ConsoleError> {
    let s = blocking(&console, snapshot).await?;
    let body = serde_json::to_vec(&s.view).map_err(|e| ConsoleError::Worker(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn member(
    State(console): State<Console>,
    Path(org): Path<String>,
) -> Result<Response, ConsoleError> {
    let page = blocking(&console, move |console| {
        let s = snapshot(console)?;
        let state = console.node.as_ref();
        let Some(row) = s.view.members.iter().find(|m| m.org == org) else {
            return Ok(None);
        };
        let events = newest_events(
            state,
            pb::AuditRequest {
                org: org.clone(),
                ..Default::default()
            },
        )?;
        let roster = s.members.iter().find(|m| m.org == org);
        let peer = s.status.peers.iter().find(|p| p.org_id == org);
        Ok(Some(page::member(&s.view, row, roster, peer, &events)))
    })
    .await?;
    Ok(match page {
        Some(page) => html(page),
        None => (
            StatusCode::NOT_FOUND,
            "no such member in the current roster",
        )
            .into_response(),
    })
}

async fn roster(State(console): State<Console>) -> Result<Response, ConsoleError> {
    let page = blocking(&console, |console| {
        let s = snapshot(console)?;
        let state = console.node.as_ref();
        // Every version is an event here: the page's ones are the last PAGE_EVENTS, read
        // from there, not from the first version on each view.
        let since_version = (s.view.roster_version + 1).saturating_sub(PAGE_EVENTS as u64);
        let request = pb::AuditRequest {
            since_version,
            ..Default::default()
        };
        let events = newest_events(state, request)?;
        Ok(page::roster(&s.view, &events))
    })
    .await?;
    Ok(html(page))
}

/// Roster versions a console page lists at most: the newest (older ones through
/// `intelmesh admin audit`).
pub const PAGE_EVENTS: usize = 500;

/// The newest [`PAGE_EVENTS`] events `request` selects, oldest first: the whole history is
/// read a page at a time (`Admin/Audit` answers the oldest first, a page at a time), so the
/// newest versions are never the ones left out.
fn newest_events(
    state: &NodeState,
    mut request: pb::AuditRequest,
) -> Result<Vec<pb::AuditEvent>, ConsoleError> {
    let mut events = std::collections::VecDeque::new();
    loop {
        let answer = audit::audit(state, &request)?;
        for e in answer.events {
            if events.len() == PAGE_EVENTS {
                events.pop_front();
            }
            events.push_back(e);
        }
        if answer.next_since_version <= request.since_version {
            return Ok(events.into());
        }
        request.since_version = answer.next_since_version;
    }
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_admin_of_this_hub_is_admitted() {
        let hub = OrgId::parse("HUB").unwrap();
        let other = OrgId::parse("AU-AFP").unwrap();
        let admin = |org: &OrgId| Identity::Admin {
            org: org.clone(),
            name: "alice".into(),
        };
        assert_eq!(admit(&hub, Ok(admin(&hub))), Ok("HUB/alice".into()));
        let foreign = admit(&hub, Ok(admin(&other))).unwrap_err();
        assert!(
            foreign.contains("admin certificate of HUB; this one is of AU-AFP"),
            "{foreign}"
        );
        let service = admit(
            &hub,
            Ok(Identity::Service {
                org: hub.clone(),
                name: "soc".into(),
            }),
        )
        .unwrap_err();
        assert!(
            service.contains("role admin; service HUB/soc presented one of role service"),
            "{service}"
        );
        let node = admit(&hub, Ok(Identity::Node(hub.clone()))).unwrap_err();
        assert!(node.contains("role node"), "{node}");
        let none = admit(&hub, Err(IdentityError::NoCertificate)).unwrap_err();
        assert!(none.contains("no client certificate"), "{none}");
    }

    #[test]
    fn every_answer_forbids_framing_caching_and_foreign_scripts() {
        let mut h = HeaderMap::new();
        security_headers(&mut h);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"));
    }
}
