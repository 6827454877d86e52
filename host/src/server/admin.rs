//! The admin API, every route behind `Authorization: Bearer <token>`; requests and answers
//! are the types of [`crate::api`]:
//!
//! | route                                  | does                                        |
//! |----------------------------------------|---------------------------------------------|
//! | `GET /admin/health`                    | liveness, counts, counters                  |
//! | `GET /admin/ready`                     | 200 when serving, 503 (and why) when not    |
//! | `GET /admin/plugins`                   | loaded plugins with manifests; load errors; paused |
//! | `POST /admin/plugins/{name}/pause`, `…/resume` | stop or start a recipe's runs on every host of the store |
//! | `GET /admin/runs?status&plugin&source&event&delivery&since&until&unconfirmed&limit&cursor` | runs, newest first, a page at a time |
//! | `GET /admin/runs/{id}`                 | a run with its logs, its event and its effect journal |
//! | `POST /admin/runs/{id}/replay?resend_unconfirmed` | queue a finished run again      |
//! | `POST /admin/runs/replay?<the filters of GET /admin/runs>&dry_run` | replay every finished run matched (failed and dead by default) |
//! | `POST /admin/trigger`                  | a manual event: `{plugin?, source?, kind, payload?, wait?}` |
//! | `GET /metrics`                         | Prometheus metrics (see [`super::metrics`]) |

use super::{AppState, error};
use crate::api::{
    BulkReplayed, ReplayParams, Replayed, RunFilter, RunView, RunsPage, TriggerBody, Triggered,
};
use crate::model::effect::EffectState;
use crate::pipeline::backend::{BackendError, RunQuery};
use crate::pipeline::{Incoming, PipelineError};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub(super) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/health", get(health))
        .route("/admin/ready", get(ready))
        .route("/admin/plugins", get(plugins))
        .route("/admin/plugins/{name}/pause", post(pause))
        .route("/admin/plugins/{name}/resume", post(resume))
        .route("/admin/runs", get(runs))
        .route("/admin/runs/replay", post(replay_matching))
        .route("/admin/runs/{id}", get(run))
        .route("/admin/runs/{id}/replay", post(replay))
        .route("/admin/trigger", post(trigger))
        .route("/metrics", get(super::metrics::render))
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
    if !super::same_secret(given, token.expose()) {
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
        PipelineError::NoRun(_)
        | PipelineError::NoPlugin(_)
        | PipelineError::Backend(BackendError::NoRun(_)) => StatusCode::NOT_FOUND,
        PipelineError::Backend(BackendError::NotFinished { .. }) => StatusCode::CONFLICT,
        PipelineError::Backend(BackendError::Corrupt { key, .. }) if key == "cursor" => {
            StatusCode::BAD_REQUEST
        }
        PipelineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        // The disk is full or gone: try again later, as a webhook would.
        e if e.is_store_io() => {
            tracing::error!("admin request failed: {e}");
            StatusCode::SERVICE_UNAVAILABLE
        }
        PipelineError::Backend(_) => {
            tracing::error!("admin request failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    error(status, e.to_string())
}

/// The query string a route takes; a bad one is refused with a 400 naming what is wrong.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// A run filter and the backend query it makes (`GET /admin/runs`, bulk replay).
struct Filter {
    filter: RunFilter,
    query: RunQuery,
}

impl<S: Send + Sync> FromRequestParts<S> for Filter {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Params(filter) = Params::<RunFilter>::from_request_parts(parts, state).await?;
        let query = filter
            .query()
            .map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
        Ok(Filter { filter, query })
    }
}

async fn health(State(app): State<Arc<AppState>>) -> Response {
    let load = app.pipeline.load().await.unwrap_or_default();
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
        "queued": load.queued(),
        "running": load.running,
        "counters": &app.pipeline.counters,
        "rejected": &app.rejections,
        "connections": &*app.connections,
    }))
    .into_response()
}

async fn ready(State(app): State<Arc<AppState>>) -> Response {
    match super::not_ready(&app) {
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": why.detail })),
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
        "paused": app.pipeline.paused().await,
    }))
    .into_response()
}

/// `POST /admin/plugins/{name}/pause`: no new runs of the recipe start on any host of the
/// store (runs in flight finish; events are still accepted and their runs wait) until it is
/// resumed, across restarts.
async fn pause(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    if app.pipeline.registry().current().get(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!("no recipe named '{name}' is loaded"),
        );
    }
    match app.pipeline.pause(&name).await {
        Ok(changed) => {
            Json(json!({ "recipe": name, "paused": true, "changed": changed })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `POST /admin/plugins/{name}/resume`.
async fn resume(State(app): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match app.pipeline.resume(&name).await {
        Ok(changed) => {
            Json(json!({ "recipe": name, "paused": false, "changed": changed })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn runs(State(app): State<Arc<AppState>>, Filter { query, .. }: Filter) -> Response {
    match app.pipeline.runs(&query).await {
        Ok(page) => Json(RunsPage {
            runs: page.runs,
            next: page.next,
        })
        .into_response(),
        Err(e) => pipeline_error(e),
    }
}

async fn run(State(app): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let run = match app.pipeline.run_detail(&id).await {
        Ok(run) => run,
        Err(e) => return pipeline_error(e),
    };
    let event = app.pipeline.event(&run.run.event_id).await.ok().flatten();
    // The journal's calls without the vendors' answers (their records, personal data).
    let effects = match app.pipeline.effects(&run.run.id).await {
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
    Json(RunView {
        run,
        event,
        effects,
    })
    .into_response()
}

async fn replay(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    Params(p): Params<ReplayParams>,
) -> Response {
    match app.pipeline.replay(&id, p.resend_unconfirmed).await {
        Ok(run) => (StatusCode::ACCEPTED, Json(Replayed { run })).into_response(),
        Err(e) => pipeline_error(e),
    }
}

async fn replay_matching(
    State(app): State<Arc<AppState>>,
    Filter { filter, query }: Filter,
) -> Response {
    if let Some(e) = crate::api::not_replayable(&query) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    match app.pipeline.replay_matching(&query, filter.dry_run).await {
        Ok(r) => {
            let status = if filter.dry_run {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let answer = BulkReplayed {
                matched: r.matched,
                queued: r.queued.len(),
                runs: r.queued,
                dry_run: filter.dry_run,
            };
            (status, Json(answer)).into_response()
        }
        Err(e) => pipeline_error(e),
    }
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
        let answer = Triggered {
            ack,
            complete: None,
            runs: Vec::new(),
        };
        return (StatusCode::ACCEPTED, Json(answer)).into_response();
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
                    for id in pending.clone() {
                        if let Ok(r) = app.pipeline.run(&id).await
                            && (r.status.is_terminal() || r.is_deferred())
                        {
                            pending.remove(&id);
                            results.push(r);
                        }
                    }
                }
                Err(_) => break,
            }
        }
    };
    let complete = tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .is_ok();
    Json(Triggered {
        ack,
        complete: Some(complete),
        runs: results,
    })
    .into_response()
}
