//! The `[metrics]` listener: `/metrics` (rendered at most once a second however often it is
//! asked), `/livez` and `/readyz`, on plain HTTP with the web listeners' caps, answering only
//! the configured host names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

use super::{render, Shared};
use crate::state::NodeState;

/// The bound `[metrics]` listener: plain HTTP on the web listeners' loop (`crate::https`), so
/// its connections are capped and closed when idle like theirs.
pub struct Endpoint(crate::https::HttpsServer);

impl Endpoint {
    pub async fn bind(
        state: &Arc<NodeState>,
        config: &crate::config::MetricsConfig,
    ) -> anyhow::Result<Endpoint> {
        let scrapes = Scrapes {
            state: Arc::clone(state),
            last: Arc::default(),
        };
        let hosts: Arc<[String]> = config
            .hosts
            .iter()
            .map(|h| crate::metrics_hosts::host_name(h))
            .collect();
        let router = axum::Router::new()
            .route("/metrics", get(scrape))
            .with_state(scrapes)
            .route("/livez", get(|| async { "alive\n" }))
            .route("/readyz", get(ready))
            .with_state(Arc::clone(state))
            .layer(axum::middleware::from_fn(move |request, next| {
                crate::metrics_hosts::refuse_other_hosts(Arc::clone(&hosts), request, next)
            }));
        let server = crate::https::HttpsServer::bind_plain(
            "metrics",
            "metrics.listen",
            config.listen,
            router,
            state,
        )
        .await?;
        Ok(Endpoint(server))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }

    pub async fn serve(self, stopped: tokio::sync::watch::Receiver<bool>) {
        self.0.serve(stopped).await
    }
}

/// How long one rendering answers every scrape: the port carries no authentication, so however
/// often it is asked, the store is read and the data directory walked at most once per interval.
/// Prometheus asks every 15 s or so; a second-old figure costs it nothing.
const RENDER_REUSE: Duration = Duration::from_secs(1);

/// The `/metrics` route's state: the node, and its last rendering with when it was made. Its
/// async lock is held while a rendering is made, so scrapes that arrive meanwhile wait for that
/// one instead of each taking a blocking thread of their own.
#[derive(Clone)]
struct Scrapes {
    state: Arc<NodeState>,
    last: Arc<tokio::sync::Mutex<Option<(std::time::Instant, String)>>>,
}

async fn scrape(
    axum::extract::State(scrapes): axum::extract::State<Scrapes>,
) -> axum::response::Response {
    // The rendering runs as a task of its own holding the lock, so a scrape that goes away
    // (a reset stream, a closed connection) still leaves its result for the next one, instead
    // of freeing the lock for another rendering while its own runs on.
    let last = Arc::clone(&scrapes.last).lock_owned().await;
    let state = Arc::clone(&scrapes.state);
    let rendered = tokio::spawn(async move {
        let mut last = last;
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < RENDER_REUSE {
                return Ok(text.clone());
            }
        }
        match tokio::task::spawn_blocking(move || render(&state)).await {
            Ok(Ok(text)) => {
                *last = Some((std::time::Instant::now(), text.clone()));
                Ok(text)
            }
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match rendered {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        // What went wrong (a store error may quote keys) goes to the log, not to whoever asked.
        Err(error) => {
            tracing::error!(%error, "metrics not rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

async fn ready(axum::extract::State(state): Shared) -> (StatusCode, String) {
    let readiness = crate::health::of_state(&state);
    let code = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{}\n", readiness.line()))
}
