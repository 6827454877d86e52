//! The admin API, every route behind `Authorization: Bearer <token>`:
//!
//! | route                                  | does                                        |
//! |----------------------------------------|---------------------------------------------|
//! | `GET /admin/health`                    | liveness, counts, counters                  |
//! | `GET /admin/ready`                     | 200 when serving, 503 when shutting down    |
//! | `GET /admin/plugins`                   | loaded plugins with manifests; load errors  |
//! | `GET /admin/runs?plugin&status&since&until&event&unconfirmed&limit` | runs, newest first |
//! | `GET /admin/runs/{id}`                 | a run with its logs, its event and its effect journal |
//! | `POST /admin/runs/{id}/replay?resend_unconfirmed` | queue a finished run again      |
//! | `POST /admin/plugins/{name}/replay?status=failed,dead` | replay a plugin's runs     |
//! | `POST /admin/trigger`                  | a manual event: `{plugin?, source?, kind, payload?, wait?}` |

use super::{AppState, error};
use crate::pipeline::journal::{RunRecord, RunStatus};
use crate::pipeline::{Incoming, PipelineError, RunFilter, rfc3339};
use crate::store::effects::EffectState;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

pub(super) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/health", get(health))
        .route("/admin/ready", get(ready))
        .route("/admin/plugins", get(plugins))
        .route("/admin/plugins/{name}/replay", post(replay_plugin))
        .route("/admin/runs", get(runs))
        .route("/admin/runs/{id}", get(run))
        .route("/admin/runs/{id}/replay", post(replay))
        .route("/admin/trigger", post(trigger))
        // On matched routes only: any other path is a 404, not a request for a token.
        .route_layer(middleware::from_fn_with_state(state, authorize))
}

/// Refuse any request without the bearer token (compared in constant time).
async fn authorize(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(token) = &app.admin_token else {
        return error(
            StatusCode::UNAUTHORIZED,
            "the admin API is disabled: set [server] admin_token or SWITCHBOARD_ADMIN_TOKEN",
        );
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.expose().as_bytes()),
    );
    let same = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0;
    if !same {
        tracing::warn!(path = %request.uri().path(), "admin request refused: bad or missing bearer token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "a valid bearer token is required" })),
        )
            .into_response();
    }
    next.run(request).await
}

fn pipeline_error(e: PipelineError) -> Response {
    let status = match &e {
        PipelineError::NoRun(_) | PipelineError::NoPlugin(_) => StatusCode::NOT_FOUND,
        PipelineError::NotFinished { .. } => StatusCode::CONFLICT,
        PipelineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        // The disk is full or gone: try again later, as a webhook would.
        e if e.is_store_io() => {
            tracing::error!("admin request failed: {e}");
            StatusCode::SERVICE_UNAVAILABLE
        }
        PipelineError::Journal(_) | PipelineError::Commit(_) | PipelineError::Store(_) => {
            tracing::error!("admin request failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let (queued, running) = app.pipeline.load();
    let store = app.pipeline.store_failure();
    let status = match (&store, app.pipeline.is_stopping()) {
        (Some(_), _) => "failing",
        (None, true) => "stopping",
        (None, false) => "ok",
    };
    Json(json!({
        "status": status,
        "store": match &store {
            Some(e) => json!({ "ok": false, "error": e }),
            None => json!({ "ok": true }),
        },
        "uptime_s": app.started.elapsed().as_secs(),
        "plugins": app.pipeline.registry().current().len(),
        "plugin_errors": app.pipeline.registry().errors().len(),
        "queued": queued,
        "running": running,
        "counters": &app.pipeline.counters,
        "rejected": &app.rejections,
        "connections": &*app.connections,
    }))
    .into_response()
}

async fn ready(State(app): State<Arc<AppState>>) -> Response {
    match super::not_ready(&app) {
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": reason })),
        )
            .into_response(),
        None => Json(json!({ "ready": true })).into_response(),
    }
}

async fn plugins(State(app): State<Arc<AppState>>) -> Response {
    let errors: Vec<_> = app
        .pipeline
        .registry()
        .errors()
        .into_iter()
        .map(|(path, error)| json!({ "path": path, "error": error }))
        .collect();
    Json(json!({
        "plugins": app.pipeline.registry().statuses(),
        "errors": errors,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    plugin: Option<String>,
    /// Comma-separated statuses.
    status: Option<String>,
    event: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// Only runs with (`true`) or without (`false`) unconfirmed calls.
    unconfirmed: Option<bool>,
    limit: Option<usize>,
}

fn parse_statuses(text: &str) -> Result<Vec<RunStatus>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<RunStatus>())
        .collect()
}

fn parse_time(param: &str, text: &str) -> Result<String, String> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{param}: '{text}' is not an RFC 3339 time ({e})"))?;
    Ok(rfc3339((t.unix_timestamp_nanos() / 1_000_000) as i64))
}

async fn runs(
    State(app): State<Arc<AppState>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let filter = (|| -> Result<RunFilter, String> {
        Ok(RunFilter {
            plugin: q.plugin,
            status: q
                .status
                .as_deref()
                .map(parse_statuses)
                .transpose()
                .map_err(|e| format!("status: {e}"))?,
            event_id: q.event,
            since: q
                .since
                .as_deref()
                .map(|t| parse_time("since", t))
                .transpose()?,
            until: q
                .until
                .as_deref()
                .map(|t| parse_time("until", t))
                .transpose()?,
            unconfirmed: q.unconfirmed,
            limit: q.limit.unwrap_or(100).min(10_000),
        })
    })();
    let filter = match filter {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match app.pipeline.runs(&filter) {
        Ok(runs) => {
            // Lists stay light: a run's logs are in `GET /admin/runs/{id}`.
            let runs: Vec<RunRecord> = runs
                .into_iter()
                .map(|mut r| {
                    r.logs.clear();
                    r
                })
                .collect();
            Json(json!({ "runs": runs })).into_response()
        }
        Err(e) => pipeline_error(e),
    }
}

async fn run(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let run = match app.pipeline.run(&id) {
        Ok(run) => run,
        Err(e) => return pipeline_error(e),
    };
    let event = app.pipeline.event(&run.event_id).ok().flatten();
    // The journal's calls without their recorded answers (vendor records, personal data).
    let effects: Vec<_> = match app.pipeline.effects(&run.id) {
        Ok(effects) => effects
            .into_iter()
            .map(|mut e| {
                if let EffectState::Done { result } = &mut e.state {
                    *result = serde_json::Value::Null;
                }
                e
            })
            .collect(),
        Err(e) => return pipeline_error(e),
    };
    Json(json!({ "run": run, "event": event, "effects": effects })).into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayOneQuery {
    /// Forget the run's unconfirmed calls first, so the replay sends them again.
    #[serde(default)]
    resend_unconfirmed: bool,
}

async fn replay(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ReplayOneQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match app.pipeline.replay(&id, q.resend_unconfirmed).await {
        Ok(run) => (StatusCode::ACCEPTED, Json(json!({ "run": run }))).into_response(),
        Err(e) => pipeline_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    status: Option<String>,
}

async fn replay_plugin(
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    query: Result<Query<ReplayQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let statuses = match q.status.as_deref().map(parse_statuses).transpose() {
        Ok(s) => s.unwrap_or_else(|| vec![RunStatus::Failed, RunStatus::Dead]),
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("status: {e}")),
    };
    if let Some(s) = statuses.iter().find(|s| !s.is_terminal()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "status: only finished runs can be replayed, not {}",
                s.as_str()
            ),
        );
    }
    match app.pipeline.replay_all(&name, &statuses).await {
        Ok(ids) => (
            StatusCode::ACCEPTED,
            Json(json!({ "replayed": ids.len(), "runs": ids })),
        )
            .into_response(),
        Err(e) => pipeline_error(e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    /// Only this plugin; default: every plugin subscribed to `source` and `kind`.
    plugin: Option<String>,
    #[serde(default = "manual")]
    source: String,
    kind: String,
    payload: Option<Box<serde_json::value::RawValue>>,
    /// Answer when the runs are finished (up to 60 s), with their records.
    #[serde(default)]
    wait: bool,
}

fn manual() -> String {
    "manual".into()
}

async fn trigger(
    State(app): State<Arc<AppState>>,
    body: Result<Json<TriggerBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if body.kind.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "kind: must not be empty");
    }
    if body.source == crate::pipeline::cron::SOURCE {
        return error(
            StatusCode::BAD_REQUEST,
            "source: 'cron' is reserved for scheduled events",
        );
    }
    let incoming = Incoming {
        event_id: None,
        source: body.source,
        kind: body.kind,
        delivery_id: None,
        payload: body.payload.unwrap_or_else(|| {
            serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON")
        }),
    };
    let mut finished = app.pipeline.subscribe();
    let ack = match app.pipeline.ingest(incoming, body.plugin.as_deref()).await {
        Ok(ack) => ack,
        Err(e) => return pipeline_error(e),
    };
    if !body.wait {
        return (StatusCode::ACCEPTED, Json(json!({ "ack": ack }))).into_response();
    }
    let mut pending: std::collections::BTreeSet<String> = ack.runs.iter().cloned().collect();
    let mut results = Vec::new();
    let wait = async {
        while !pending.is_empty() {
            if app.pipeline.is_stopping() {
                break;
            }
            let next = tokio::time::timeout(Duration::from_millis(200), finished.recv()).await;
            let Ok(next) = next else { continue };
            match next {
                Ok(run) => {
                    if pending.remove(&run.id) {
                        results.push(run);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some: read the records instead.
                    pending.retain(|id| match app.pipeline.run(id) {
                        Ok(r) if r.status.is_terminal() || r.is_deferred() => {
                            results.push(r);
                            false
                        }
                        _ => true,
                    });
                }
                Err(_) => break,
            }
        }
    };
    let complete = tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .is_ok();
    Json(json!({ "ack": ack, "complete": complete, "runs": results })).into_response()
}
