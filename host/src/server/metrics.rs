//! `GET /metrics`: the Prometheus text format. The crates record through the `metrics`
//! facade as things happen (webhooks here; runs, store writes: `switchboard_pipeline::metrics`;
//! vendor requests: `switchboard_vendors::http::metrics`); gauges of state (the queue, kv,
//! quotas) are read from the store when scraped. Labels are bounded: source, recipe, vendor,
//! trigger, outcome, never run, event, contact or location ids.
//!
//! | metric | type | labels |
//! |--------|------|--------|
//! | `switchboard_webhooks_total` | counter | `source`, `result` |
//! | `switchboard_runs_total` | counter | `recipe`, `trigger`, `outcome` |
//! | `switchboard_run_duration_seconds` | histogram | `recipe` |
//! | `switchboard_run_queue_wait_seconds` | histogram | `recipe` |
//! | `switchboard_recipe_interrupts_total` | counter | `recipe`, `kind` |
//! | `switchboard_runs` | gauge | `state` (`due`, `later`, `running`) |
//! | `switchboard_oldest_due_run_age_seconds` | gauge | |
//! | `switchboard_vendor_requests_total` | counter | `vendor`, `status` |
//! | `switchboard_vendor_request_duration_seconds` | histogram | `vendor` |
//! | `switchboard_vendor_rate_limited_total` | counter | `vendor`, `by` |
//! | `switchboard_vendor_retries_total` | counter | `vendor` |
//! | `switchboard_kv_bytes`, `switchboard_kv_keys` | gauge | `recipe` |
//! | `switchboard_vendor_quota_remaining` | gauge | `connection`, `quota` |
//! | `switchboard_store_write_seconds` | histogram | `op` (`accept`, `settle`) |
//! | `switchboard_recipes_loaded`, `switchboard_recipe_load_errors` | gauge | |
//! | `switchboard_build_info` | gauge | `version` |

use super::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// `switchboard_webhooks_total{source, result}`: deliveries answered, by how.
pub const WEBHOOKS: &str = "switchboard_webhooks_total";

/// Histogram buckets, in seconds: 100 µs to a minute.
const BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// A recorder of the host's metrics (histogram buckets and all), not installed: `handle`
/// installs one for the process; a benchmark may install one per thread.
pub fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .expect("buckets are not empty")
        .build_recorder()
}

/// The process's recorder, installed on first use (one per process: the `metrics` facade
/// has one global recorder; every server in the process shares it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already: /metrics shows nothing");
        }
        // Histograms keep samples until drained: drain them even when nobody scrapes.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .expect("starting the metrics upkeep thread");
        describe();
        metrics::gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// The `# HELP` text of every metric.
fn describe() {
    use metrics::Unit::Seconds;
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    use switchboard_pipeline::metrics as pipeline;
    use switchboard_vendors::http::metrics as vendors;
    describe_counter!(
        WEBHOOKS,
        "Webhook deliveries answered, by source and result (accepted, duplicate, bad_signature, malformed, too_large, timed_out, unknown_source, unavailable, error, ping)"
    );
    describe_counter!(
        pipeline::RUNS,
        "Run attempts ended, by recipe, trigger (webhook, cron, manual) and outcome (succeeded, deferred, retry, failed, dead)"
    );
    describe_histogram!(
        pipeline::RUN_DURATION,
        Seconds,
        "Time an attempt ran in the sandbox"
    );
    describe_histogram!(
        pipeline::QUEUE_WAIT,
        Seconds,
        "From an event's arrival to the start of its run's first attempt"
    );
    describe_counter!(
        pipeline::INTERRUPTS,
        "Attempts the sandbox stopped, by recipe and kind (timeout, memory, panic, trap, host_panic)"
    );
    describe_histogram!(
        pipeline::STORE_WRITE,
        Seconds,
        "Durable store writes until committed, by op (accept, settle)"
    );
    describe_counter!(
        vendors::REQUESTS,
        "Requests sent to vendors (each retry too), by vendor and status class (2xx..5xx, error)"
    );
    describe_histogram!(
        vendors::DURATION,
        Seconds,
        "Vendor requests, from send to the whole body"
    );
    describe_counter!(
        vendors::LIMITED,
        "Vendor requests rate limited, by vendor and by whom (vendor: a 429; host: the host's own limit)"
    );
    describe_counter!(
        vendors::RETRIES,
        "Vendor requests sent again after a failure"
    );
    describe_gauge!(
        "switchboard_runs",
        "Unfinished runs by state: due (queued, due now), later (retry backoff or deferral), running"
    );
    describe_gauge!(
        "switchboard_oldest_due_run_age_seconds",
        Seconds,
        "How long the longest-waiting due run has been due"
    );
    describe_gauge!(
        "switchboard_kv_bytes",
        "Bytes (keys and values) in a recipe's kv space"
    );
    describe_gauge!("switchboard_kv_keys", "Keys in a recipe's kv space");
    describe_gauge!(
        "switchboard_vendor_quota_remaining",
        "What is left of a quota the host counts for a connection (Homebase360: sms_per_day)"
    );
    describe_gauge!(
        "switchboard_recipes_loaded",
        "Recipes loaded from the plugins folder"
    );
    describe_gauge!(
        "switchboard_recipe_load_errors",
        "Files in the plugins folder that could not be loaded"
    );
    describe_gauge!("switchboard_build_info", "The running version (always 1)");
}

/// Count a webhook answered for `source` with `result`. A source no config names is
/// counted as `(unknown)`: a sender cannot grow the label set.
pub fn webhook(app: &AppState, source: &str, result: &'static str) {
    let source = if app.sources.get(source).is_some() {
        source.to_string()
    } else {
        "(unknown)".to_string()
    };
    metrics::counter!(WEBHOOKS, "source" => source, "result" => result).increment(1);
}

/// `GET /metrics`.
pub async fn render(State(app): State<Arc<AppState>>) -> Response {
    refresh(&app).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}

/// Set the gauges of state from the store and the loaded recipes.
async fn refresh(app: &AppState) {
    let pipeline = &app.pipeline;
    match pipeline.load().await {
        Ok(load) => {
            metrics::gauge!("switchboard_runs", "state" => "due").set(load.due as f64);
            metrics::gauge!("switchboard_runs", "state" => "later").set(load.later as f64);
            metrics::gauge!("switchboard_runs", "state" => "running").set(load.running as f64);
            let age_ms = load
                .oldest_due_ms
                .map_or(0, |due| (crate::pipeline::now_ms() - due).max(0));
            metrics::gauge!("switchboard_oldest_due_run_age_seconds").set(age_ms as f64 / 1e3);
        }
        Err(e) => tracing::warn!("metrics: counting runs failed: {e}"),
    }
    let registry = pipeline.registry();
    let plugins = registry.current();
    metrics::gauge!("switchboard_recipes_loaded").set(plugins.len() as f64);
    metrics::gauge!("switchboard_recipe_load_errors").set(registry.errors().len() as f64);
    for plugin in plugins.iter() {
        if let Some(usage) = plugin.kv_usage() {
            let recipe = plugin.name.to_string();
            metrics::gauge!("switchboard_kv_bytes", "recipe" => recipe.clone())
                .set(usage.bytes as f64);
            metrics::gauge!("switchboard_kv_keys", "recipe" => recipe).set(usage.keys as f64);
        }
    }
    for (name, connector) in pipeline.runtime().connections().iter() {
        match connector.quotas().await {
            Ok(quotas) => {
                for q in quotas {
                    metrics::gauge!(
                        "switchboard_vendor_quota_remaining",
                        "connection" => name.to_string(),
                        "quota" => q.name
                    )
                    .set(q.limit.saturating_sub(q.used) as f64);
                }
            }
            Err(e) => tracing::warn!(connection = name, "metrics: reading quotas failed: {e}"),
        }
    }
}
