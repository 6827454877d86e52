//! Logs and traces: the one module that knows OpenTelemetry.
//!
//! Logs go to stderr as text (or JSON lines with `SWITCHBOARD_LOG_FORMAT=json`), filtered by
//! `SWITCHBOARD_LOG`. Spans — `webhook` (one per delivery), `run` (one per attempt), `host
//! call` (one per capability call through a connection) and `vendor request` (one per HTTP
//! exchange) — are exported over OTLP/HTTP (protobuf) when `[telemetry] otlp_endpoint` is
//! set. An attempt's span is a child of the span that accepted its event when this host
//! accepted it (a run picked up by another host, or after a restart, starts a trace of its
//! own); its trace id is kept on the run record. No span carries a payload or a vendor body.

use crate::pipeline::Traces;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Set up logging for the process (once, after the config is read): stderr, text or JSON,
/// filtered by `SWITCHBOARD_LOG` (default `warn`); and, when `export` is given and names an
/// endpoint, trace export (returned: keep it, and [`Telemetry::shutdown`] it at the end).
/// Must run within the tokio runtime.
pub fn init(export: Option<&TelemetrySection>) -> Result<Option<Telemetry>, TelemetryError> {
    let telemetry = match export {
        Some(section) => Telemetry::new(section)?,
        None => None,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let json = std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|f| f == "json");
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        // Colours only for a person at a terminal; a log file gets plain text.
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed()
    };
    // Spans of our crates at info and above, to the exporter only when there is one: a host
    // without export creates no span it would not log.
    let otel = telemetry.as_ref().map(Telemetry::layer);
    let installed = tracing_subscriber::registry()
        .with(otel)
        .with(fmt.with_filter(filter))
        .try_init();
    if installed.is_err() {
        // A second init in one process (tests): the first subscriber stays.
        return Ok(None);
    }
    if let Some(t) = &telemetry {
        tracing::info!(endpoint = %t.endpoint, "exporting traces over OTLP/HTTP");
    }
    Ok(telemetry)
}

/// `[telemetry]`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySection {
    /// The OTLP/HTTP endpoint's base URL (spans go to `<base>/v1/traces`), e.g.
    /// `http://127.0.0.1:4318`; default `$OTEL_EXPORTER_OTLP_ENDPOINT`, else no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans; default `switchboard`.
    pub service_name: Option<String>,
    /// The share of events traced, from 0 to 1 (default 1: every one), decided when the
    /// event arrives: its runs follow, so a trace is kept or dropped whole, and an event
    /// not traced makes no span at all.
    pub sample_ratio: Option<f64>,
    /// At most this many events traced a second (default
    /// [`DEFAULT_MAX_TRACES_PER_SECOND`]; bursts up to as many at once): under that rate
    /// every sampled event is traced, above it the excess is not, so what traces cost the
    /// host stays bounded however heavy the load. Set it high to trace every event.
    pub max_traces_per_second: Option<u32>,
}

/// Events traced a second at most, unless `[telemetry] max_traces_per_second` says otherwise.
pub const DEFAULT_MAX_TRACES_PER_SECOND: u32 = 10;

/// Why traces cannot be exported as configured.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// Exporting traces, until [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: SdkTracerProvider,
    endpoint: String,
    links: Arc<Links>,
}

impl Telemetry {
    /// Stop exporting, sending what is left first (blocks until the exporter is done).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("flushing traces at exit failed: {e}");
        }
    }

    /// The layer that hands our crates' spans (info and above) to the exporter, with their
    /// events but not recipes' log lines ([`RECIPE_LOG`](switchboard_runtime::RECIPE_LOG)):
    /// those may carry personal data, and each is in its run's log already.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("switchboard"))
            // What the spans say is their fields: no source file and line, thread, or busy
            // and idle time (that one reads the clock at every poll of a run).
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            // Nothing here reads OpenTelemetry's current context (parents come from `tracing`'s
            // span tree, and `Links` takes a span's context from the span itself): without
            // this, every poll of a traced webhook or run would attach and detach one.
            .with_context_activation(false)
            .with_filter(
                Targets::new()
                    .with_target("switchboard", LevelFilter::INFO)
                    .with_target("switchboard_pipeline", LevelFilter::INFO)
                    .with_target("switchboard_runtime", LevelFilter::INFO)
                    .with_target("switchboard_vendors", LevelFilter::INFO)
                    .with_target(switchboard_runtime::RECIPE_LOG, LevelFilter::OFF),
            )
    }

    /// The exporter `section` asks for, if it names an endpoint (or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` does). Must run within the tokio runtime.
    pub fn new(section: &TelemetrySection) -> Result<Option<Telemetry>, TelemetryError> {
        let Some(base) = section
            .otlp_endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
            .filter(|s| !s.trim().is_empty())
        else {
            return Ok(None);
        };
        let base = base.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|e| TelemetryError(format!("otlp_endpoint: '{base}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(TelemetryError(format!("'{base}' is not an http(s) URL")));
        }
        let endpoint = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        let client = Exporter {
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| TelemetryError(format!("cannot build an HTTP client: {e}")))?,
            runtime: tokio::runtime::Handle::current(),
        };
        use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        let ratio = section.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&ratio) {
            return Err(TelemetryError(format!(
                "sample_ratio: {ratio} is not between 0 and 1"
            )));
        }
        let per_second = section
            .max_traces_per_second
            .unwrap_or(DEFAULT_MAX_TRACES_PER_SECOND);
        let per_second = std::num::NonZeroU32::new(per_second).ok_or_else(|| {
            TelemetryError(
                "max_traces_per_second: 0 is not allowed (sample_ratio = 0 traces nothing)".into(),
            )
        })?;
        let service = section
            .service_name
            .clone()
            .unwrap_or_else(|| "switchboard".into());
        // Sampling is decided before spans are made (`Links::sample`): every span made is kept.
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build();
        Ok(Some(Telemetry {
            provider,
            endpoint,
            links: Arc::new(Links::new(ratio, per_second)),
        }))
    }

    /// What the pipeline asks to join attempts to their event's trace.
    pub fn traces(&self) -> Arc<dyn Traces> {
        self.links.clone()
    }
}

/// The sampling decision and trace context (when traced) of recently accepted events,
/// bounded (oldest forgotten first).
struct Links {
    /// The share of events traced.
    ratio: f64,
    /// Events traced a second at most.
    rate: governor::DefaultDirectRateLimiter,
    #[allow(clippy::type_complexity)]
    inner: Mutex<(
        HashMap<String, Option<opentelemetry::Context>>,
        VecDeque<String>,
    )>,
}

impl Links {
    /// Events remembered at most: runs start within moments of their event unless the host
    /// is far behind, and then a run starting a trace of its own is no loss.
    const CAPACITY: usize = 16_384;

    fn new(ratio: f64, per_second: std::num::NonZeroU32) -> Links {
        Links {
            ratio,
            rate: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            inner: Mutex::default(),
        }
    }

    fn remember(&self, event_id: &str, context: Option<opentelemetry::Context>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(event_id.to_string(), context).is_none() {
            order.push_back(event_id.to_string());
        }
        while order.len() > Self::CAPACITY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

impl Traces for Links {
    fn sample(&self) -> bool {
        (self.ratio >= 1.0 || fastrand::f64() < self.ratio) && self.rate.check().is_ok()
    }

    fn accepted(&self, event_id: &str, traced: bool) {
        let context = traced
            .then(|| tracing::Span::current().context())
            .filter(|c| c.span().span_context().is_valid());
        self.remember(event_id, context);
    }

    fn wanted(&self, event_id: &str) -> bool {
        let known = {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard.0.get(event_id).map(Option::is_some)
        };
        known.unwrap_or_else(|| self.sample())
    }

    fn attempt(&self, span: &tracing::Span, event_id: &str) -> Option<String> {
        let parent = {
            let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            guard.0.get(event_id).cloned().flatten()
        };
        if let Some(parent) = parent {
            let _ = span.set_parent(parent);
        }
        let context = span.context();
        let ids = context.span().span_context().clone();
        ids.is_valid().then(|| ids.trace_id().to_string())
    }
}

/// OTLP requests sent with the host's reqwest on its tokio runtime (the SDK's batch thread
/// waits for them).
#[derive(Debug)]
struct Exporter {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Exporter {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request.map(reqwest::Body::from))?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut out = http::Response::builder().status(response.status().as_u16());
            for (k, v) in response.headers() {
                out = out.header(k.as_str(), v.as_bytes());
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(out.body(body)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn no_more_events_are_traced_a_second_than_the_limit() {
        let links = Links::new(1.0, NonZeroU32::new(50).unwrap());
        let traced = (0..1_000).filter(|_| links.sample()).count();
        // A burst of up to 50 at once, then one every 20 ms: the loop takes far less than
        // the 20 ms a 51st would need (a slow machine could let one or two more through).
        assert!(
            (50..=52).contains(&traced),
            "traced {traced} of 1,000 at once"
        );
        // The limit refills: after a second, a new burst is traced again.
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        assert!(links.sample(), "the limit refills with time");
    }

    #[test]
    fn an_events_runs_follow_its_sampling_decision() {
        let never = Links::new(0.0, NonZeroU32::MAX);
        assert!(!never.sample());
        never.accepted("evt_1", false);
        assert!(
            !never.wanted("evt_1"),
            "not traced at the webhook: nor its runs"
        );
        assert!(
            !never.wanted("evt_unseen"),
            "unseen here: the ratio decides"
        );
        never.remember("evt_2", Some(opentelemetry::Context::new()));
        assert!(
            never.wanted("evt_2"),
            "traced at the webhook: so are its runs"
        );
        let always = Links::new(1.0, NonZeroU32::MAX);
        assert!(always.sample() && always.wanted("evt_unseen"));
        always.accepted("evt_3", false);
        assert!(!always.wanted("evt_3"));
    }

    #[test]
    fn links_are_bounded() {
        let links = Links::new(1.0, NonZeroU32::MAX);
        for i in 0..Links::CAPACITY + 10 {
            links.remember(&format!("evt_{i}"), Some(opentelemetry::Context::new()));
        }
        let guard = links.inner.lock().unwrap();
        assert_eq!(guard.0.len(), Links::CAPACITY);
        assert!(!guard.0.contains_key("evt_0"), "the oldest are forgotten");
    }
}
