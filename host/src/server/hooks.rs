//! `POST /hooks/<source>`: verify, journal durably, acknowledge.

use super::{AppState, error};
use crate::ingest::{Received, Refusal};
use crate::pipeline::PipelineError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) async fn receive(
    State(app): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let counters = &app.rejections;
    if app.sources.get(&source).is_none() {
        counters.unknown_source.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%source, "webhook refused: unknown source");
        // The configured names go to the log, not to whoever asked.
        tracing::debug!(configured = ?app.sources.names().collect::<Vec<_>>(), "sources");
        return error(StatusCode::NOT_FOUND, format!("unknown source '{source}'"));
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            counters.too_large.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%source, limit = app.max_body, "webhook refused: body too large");
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than the {} byte limit", app.max_body),
            );
        }
        Err(rejection) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%source, "webhook refused: {rejection}");
            return error(StatusCode::BAD_REQUEST, rejection.body_text());
        }
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let incoming = match app.sources.receive(&source, &headers, &body, now) {
        Ok(Received::Event(incoming)) => incoming,
        Ok(Received::Ping) => {
            tracing::info!(%source, "webhook setup ping acknowledged");
            return (StatusCode::OK, Json(serde_json::json!({ "ping": true }))).into_response();
        }
        Err(refusal) => {
            let counter = match &refusal {
                Refusal::UnknownSource(_) => &counters.unknown_source,
                Refusal::Unauthorized(_) => &counters.unauthorized,
                Refusal::Malformed(_) => &counters.malformed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%source, "webhook refused: {refusal}");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, refusal.to_string());
        }
    };
    match app.pipeline.ingest(incoming, None).await {
        Ok(ack) => (StatusCode::ACCEPTED, Json(ack)).into_response(),
        Err(PipelineError::ShuttingDown) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down; deliver again later",
        ),
        Err(e) => {
            tracing::error!(%source, "webhook could not be stored: {e}");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not store the event",
            )
        }
    }
}
