//! `POST /hooks/<source>`: verify, journal durably, acknowledge.
//!
//! Nothing is read before it is worth reading: an unknown source is refused before its body,
//! a `Content-Length` over the limit is answered 413 at once, and a body must arrive within
//! `body_timeout`.

use super::listener::ConnHandle;
use super::{AppState, error, metrics, printable};
use crate::ingest::{Received, Refusal};
use crate::pipeline::PipelineError;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

pub(super) async fn receive(
    State(app): State<Arc<AppState>>,
    Path(source): Path<String>,
    request: Request,
) -> Response {
    // One span per delivery: the runs of its event join its trace (see `crate::telemetry`).
    // Sampled out (traces exported, this one not kept): no span at all.
    let span = if app.pipeline.sample_trace() == Some(false) {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "webhook",
            source = %printable(&source),
            event = tracing::field::Empty,
            status = tracing::field::Empty,
        )
    };
    let response = handle(app, source, request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

async fn handle(app: Arc<AppState>, source: String, request: Request) -> Response {
    let counters = &app.rejections;
    let shown = printable(&source);
    let count = |result: &'static str| metrics::webhook(&app, &source, result);
    // A refusal, counted for `/admin/health` and for `/metrics`.
    let refused = |counter: &AtomicU64, result: &'static str| {
        counter.fetch_add(1, Ordering::Relaxed);
        count(result);
    };
    if let Some(e) = app.pipeline.store_failure() {
        count("unavailable");
        return unavailable(&format!("the store failed ({e}); deliver again later"));
    }
    if app.sources.get(&source).is_none() {
        refused(&counters.unknown_source, "unknown_source");
        tracing::warn!(source = %shown, "webhook refused: unknown source");
        return error(StatusCode::NOT_FOUND, format!("unknown source '{source}'"));
    }
    let (parts, body) = request.into_parts();
    // While the body arrives, the connection may be closed for room at the cap if it is slow.
    let conn = parts.extensions.get::<ConnHandle>().cloned();
    struct Reading(Option<ConnHandle>);
    impl Drop for Reading {
        fn drop(&mut self) {
            if let Some(c) = &self.0 {
                c.reading_body(false);
            }
        }
    }
    let too_large = || {
        refused(&counters.too_large, "too_large");
        tracing::warn!(source = %shown, limit = app.max_body, "webhook refused: body too large");
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than the {} byte limit", app.max_body),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.max_body as u64) {
        return too_large();
    }
    if let Some(c) = &conn {
        c.reading_body(true);
    }
    let reading = Reading(conn);
    let read = Limited::new(body, app.max_body).collect();
    let body = tokio::time::timeout(app.body_timeout, read).await;
    drop(reading);
    let body = match body {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => {
            refused(&counters.malformed, "malformed");
            tracing::warn!(source = %shown, "webhook refused: reading the body failed: {e}");
            return error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {e}"),
            );
        }
        Err(_) => {
            refused(&counters.timed_out, "timed_out");
            tracing::warn!(source = %shown, timeout = ?app.body_timeout, "webhook refused: body too slow");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {}",
                    humantime::format_duration(app.body_timeout)
                ),
            );
        }
    };
    let now = chrono::Utc::now().timestamp();
    let incoming = match app.sources.receive(&source, &parts.headers, &body, now) {
        Ok(Received::Event(incoming)) => incoming,
        Ok(Received::Ping) => {
            count("ping");
            tracing::info!(source = %shown, "webhook setup ping acknowledged");
            return (StatusCode::OK, Json(serde_json::json!({ "ping": true }))).into_response();
        }
        Err(refusal) => {
            let (counter, result) = match &refusal {
                Refusal::UnknownSource(_) => (&counters.unknown_source, "unknown_source"),
                Refusal::Unauthorized(_) => (&counters.unauthorized, "bad_signature"),
                Refusal::Malformed(_) => (&counters.malformed, "malformed"),
            };
            refused(counter, result);
            tracing::warn!(source = %shown, "webhook refused: {}", printable(&refusal.to_string()));
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, refusal.to_string());
        }
    };
    match app.pipeline.ingest(incoming, None).await {
        Ok(ack) => {
            count(if ack.duplicate {
                "duplicate"
            } else {
                "accepted"
            });
            tracing::Span::current().record("event", ack.event_id.as_str());
            if !ack.duplicate {
                let traced = !tracing::Span::current().is_none();
                app.pipeline.traced(&ack.event_id, traced);
            }
            (StatusCode::ACCEPTED, Json(ack)).into_response()
        }
        Err(PipelineError::ShuttingDown) => {
            count("unavailable");
            unavailable("shutting down; deliver again later")
        }
        Err(e) => {
            tracing::error!(source = %shown, "webhook could not be stored: {e}");
            if let Some(e) = app.pipeline.store_failure() {
                count("unavailable");
                return unavailable(&format!("the store failed ({e}); deliver again later"));
            }
            count("error");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not store the event",
            )
        }
    }
}

/// 503 with a `Retry-After`: not stored, the sender should deliver it again.
fn unavailable(message: &str) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    response
}
