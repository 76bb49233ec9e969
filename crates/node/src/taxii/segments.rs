//! The gateway's path parameters: a path that does not decode (a collection or object id
//! that is not UTF-8) is answered with a TAXII error body, as every other refusal is, not
//! with axum's plain-text one.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;

/// Path parameters of type `T`.
pub(super) struct Segments<T>(pub T);

impl<T, S> FromRequestParts<S> for Segments<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Segments(t)),
            Err(e) => Err(super::answer::error(
                StatusCode::BAD_REQUEST,
                "Bad path",
                e.body_text(),
            )),
        }
    }
}
