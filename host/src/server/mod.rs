//! The HTTP server of `switchboard serve`: webhook intake at `POST /hooks/<source>`, probes
//! at `GET /healthz` and `GET /readyz` (no token; they say nothing else), the admin API
//! under `/admin` and Prometheus metrics at `GET /metrics` (bearer token; or without it on
//! a listener of its own, `[server] metrics_listen`).

mod admin;
pub mod console;
mod hooks;
pub mod listener;
pub mod metrics;

use crate::config::ServerSection;
use crate::ingest::Sources;
use crate::pipeline::Pipeline;
use crate::secrets::Secret;
use axum::Router;
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
    /// 408: the body did not arrive within `body_timeout`.
    pub timed_out: AtomicU64,
}

/// What the handlers share.
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub sources: Sources,
    /// `None`: the admin API refuses every request.
    pub admin_token: Option<Secret>,
    pub max_body: usize,
    /// How long a webhook's body may take to arrive.
    pub body_timeout: std::time::Duration,
    pub rejections: Rejections,
    pub connections: Arc<listener::ConnectionCounters>,
    pub started: Instant,
    /// The console's signed-in sessions.
    pub console: console::Sessions,
}

impl AppState {
    /// A host's state with the default limits (body size and timeout, connection counters):
    /// what an embedded server in a benchmark or a test needs.
    pub fn new(pipeline: Arc<Pipeline>, sources: Sources, admin_token: Option<Secret>) -> Self {
        AppState {
            pipeline,
            sources,
            admin_token,
            max_body: DEFAULT_MAX_BODY,
            body_timeout: ServerSection::BODY_TIMEOUT,
            rejections: Rejections::default(),
            connections: Arc::new(listener::ConnectionCounters::default()),
            started: Instant::now(),
            console: console::Sessions::default(),
        }
    }
}

/// Serve `state` on a free loopback port with the real accept loop (timeouts, connection
/// cap, as `switchboard serve` runs it) for as long as the process lives; the base URL.
pub async fn spawn_local(state: AppState) -> std::io::Result<String> {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    let counters = state.connections.clone();
    tokio::spawn(listener::serve(
        socket,
        router(Arc::new(state)),
        listener::ConnectionLimits::default(),
        counters,
        std::future::pending(),
    ));
    Ok(format!("http://{addr}"))
}

/// The app of `[server] metrics_listen`: `GET /metrics` without a token, nothing else.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    metrics::handle();
    Router::new()
        .route("/metrics", axum::routing::get(metrics::render))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .with_state(state)
}

/// The whole HTTP app.
pub fn router(state: Arc<AppState>) -> Router {
    let hooks = Router::new()
        .route("/hooks/{source}", axum::routing::post(hooks::receive))
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz));
    // The metrics recorder is installed by `serve` (`metrics::handle`), before anything
    // runs; an app embedded elsewhere (a bench, a test) records nothing unless it does too.
    hooks
        .merge(admin::router(state.clone()))
        .merge(console::router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such route") })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// `GET /healthz`, for a liveness probe without the admin token: the process is up and
/// its server answers (also while it shuts down).
async fn healthz() -> Response {
    axum::Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`, for a readiness probe or a load balancer without the admin token: 200
/// when the host takes webhooks (its store writable, its plugin folder loaded — serving
/// starts after the first load — and not shutting down), else 503 with the reason as a
/// category: no error text, path or count (`/admin/ready` and `/admin/health` have those).
async fn readyz(axum::extract::State(app): axum::extract::State<Arc<AppState>>) -> Response {
    match not_ready(&app) {
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "ready": false, "reason": why.reason })),
        )
            .into_response(),
        None => axum::Json(serde_json::json!({ "ready": true })).into_response(),
    }
}

/// Why the host cannot take work now.
pub(crate) struct NotReady {
    /// A category anyone may see: "store failing" or "shutting down".
    pub reason: &'static str,
    /// What the admin sees: the store's error, when that is the reason.
    pub detail: String,
}

/// Why the host cannot take work now, if it cannot: the store failed, or it is stopping.
pub(crate) fn not_ready(app: &AppState) -> Option<NotReady> {
    if let Some(e) = app.pipeline.store_failure() {
        return Some(NotReady {
            reason: "store failing",
            detail: format!("the store failed: {e}"),
        });
    }
    app.pipeline.is_stopping().then(|| NotReady {
        reason: "shutting down",
        detail: "shutting down".to_string(),
    })
}

/// A handler panicked: answer 500 (the server stays up) and say so in the log.
fn panicked(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    tracing::error!(panic = %printable(message), "a request handler panicked");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Text from a client, fit for a log line: control characters and quotes escaped (a `\n` in
/// a source name cannot forge a line, an escape sequence cannot reach a terminal), cut at
/// 200 characters.
pub fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(200).is_some() {
        out.push_str("...");
    }
    out
}

/// Whether `given` is `secret` (a token, a CSRF token), compared in time that does not depend
/// on where they differ: both are hashed first, so their lengths do not show either.
pub(crate) fn same_secret(given: &str, secret: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(secret.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A JSON error body: `{"error": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_what_could_forge_a_log_line() {
        assert_eq!(super::printable("forms"), "forms");
        assert_eq!(super::printable("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
        assert_eq!(super::printable(&"x".repeat(300)).len(), 203);
    }
}
