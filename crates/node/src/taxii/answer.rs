//! The gateway's answers in TAXII's media type, and its refusals in the TAXII error format
//! (with `WWW-Authenticate` on a 401 and `Retry-After` when busy).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use intelmesh_interop::taxii as protocol;
use serde_json::Value;

use super::busy;
use crate::read_shares;

pub(super) fn taxii(status: StatusCode, body: &Value) -> Response {
    taxii_text(status, body.to_string())
}

pub(super) fn taxii_text(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(protocol::TAXII_MEDIA_TYPE),
    );
    r
}

pub(super) fn error(
    status: StatusCode,
    title: &str,
    description: impl std::fmt::Display,
) -> Response {
    let body = protocol::error_body(status.as_u16(), title, &description.to_string());
    let mut r = taxii(status, &body);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"intelmesh TAXII\""),
        );
    }
    if let Some(secs) = busy::retry_after(status) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

/// A request refused: its status and the TAXII error body's title and description.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) title: &'static str,
    pub(super) description: String,
}

pub(super) fn refuse(
    status: StatusCode,
    title: &'static str,
    description: impl std::fmt::Display,
) -> Refusal {
    Refusal {
        status,
        title,
        description: description.to_string(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.title, self.description)
    }
}

pub(super) type Answer = Result<Response, Refusal>;

pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found", "no such TAXII resource")
}

pub(super) async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this resource does not take that method",
    )
}

pub(super) fn too_busy(e: read_shares::Shortage) -> Refusal {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "Busy", e)
}

pub(super) fn internal(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "TAXII request failed");
    refuse(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server error",
        "the node could not answer; see its log",
    )
}
