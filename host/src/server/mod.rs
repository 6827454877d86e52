//! The HTTP server of `switchboard serve`: webhook intake at `POST /hooks/<source>` and the
//! admin API under `/admin` (bearer token).

mod admin;
mod hooks;

use crate::ingest::Sources;
use crate::pipeline::Pipeline;
use crate::secrets::Secret;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Default largest webhook body.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Deliveries refused, by reason.
#[derive(Debug, Default, Serialize)]
pub struct Rejections {
    /// 413: over the body limit.
    pub too_large: AtomicU64,
    /// 400: not JSON, or no kind.
    pub malformed: AtomicU64,
    /// 401: bad or missing signature, stale timestamp.
    pub unauthorized: AtomicU64,
    /// 404: no such source.
    pub unknown_source: AtomicU64,
}

/// What the handlers share.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub sources: Sources,
    /// `None`: the admin API refuses every request.
    pub admin_token: Option<Secret>,
    pub max_body: usize,
    pub rejections: Rejections,
    pub started: Instant,
}

/// The whole HTTP app.
pub fn router(state: Arc<AppState>) -> Router {
    let hooks = Router::new()
        .route("/hooks/{source}", axum::routing::post(hooks::receive))
        .layer(DefaultBodyLimit::max(state.max_body));
    hooks.merge(admin::router(state.clone())).with_state(state)
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}
