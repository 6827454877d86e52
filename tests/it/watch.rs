//! The operator's view: Prometheus metrics scraped from a real `switchboard serve` after a
//! scripted mix of webhooks and runs, every count checked exactly.

use crate::serve::{Host, TOKEN, setup};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use switchboard::ingest::verify::StandardVerifier;
use switchboard_test_guests::PROBE;

const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLXJvdGF0aW9uLTEyMzQ=";

/// Standard Webhooks headers for `body`, delivery `id`, signed with `key` now.
fn signed(key: &[u8], id: &str, body: &str) -> Vec<(&'static str, String)> {
    let ts = chrono::Utc::now().timestamp();
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            StandardVerifier::sign(key, id, ts, body.as_bytes()),
        ),
    ]
}

/// One sample of a scrape: metric name and labels.
type Sample = (String, BTreeMap<String, String>);

/// Parse the Prometheus text format (the subset the exporter writes: no escapes in values
/// we use, no timestamps).
fn parse(text: &str) -> BTreeMap<Sample, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("labels end with }");
                let labels = inner
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').expect("label=value");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.insert((name, labels), value.parse().expect("a number"));
    }
    out
}

/// The value of `name{labels}` in a scrape; 0 when absent (a counter never incremented).
fn value(scrape: &BTreeMap<Sample, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let key = (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    scrape.get(&key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_webhook_run_and_vendor_request_exactly() {
    // A free port for the metrics listener (taken and let go: the host binds it next).
    let metrics_listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sandbox = switchboard::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        switchboard::sandbox::SandboxKeys::default(),
    )
    .await
    .unwrap();
    let (dir, config) = setup(
        &[("probe", PROBE)],
        &format!(
            r#"
[sources.test]
secrets = [{{ file = "test.secret" }}]
kind = "probe"
[pipeline]
max_attempts = 1
[plugins.probe]
deadline = "300ms"
[server]
metrics_listen = "{metrics_listen}"
{ghl}[connections.hb]
vendor = "homebase360"
secret = {{ file = "hb.key" }}
base_url = "{hb}"
"#,
            ghl = crate::support::ghl_connection(&sandbox),
            hb = sandbox.base_url("homebase360"),
        ),
    );
    std::fs::write(dir.path().join("test.secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("ghl.key"), &sandbox.state.keys.gohighlevel).unwrap();
    std::fs::write(dir.path().join("hb.key"), &sandbox.state.keys.homebase360).unwrap();
    let host = Host::start(&config);
    let key = StandardVerifier::decode_secret(SECRET).unwrap();
    let send = |id: &'static str, op: Value, key: Vec<u8>| {
        let body = op.to_string();
        let headers = signed(&key, id, &body);
        let host = &host;
        async move { host.hook("test", &headers, &body).await.0 }
    };

    // Six deliveries accepted: three succeed (one of them calls GoHighLevel), one fails,
    // one is deferred an hour, one loops past its deadline (dead: one attempt allowed).
    let ops = [
        ("m1", json!({"op": "kv-set", "key": "a", "value": "v"})),
        ("m2", json!({"op": "kv-set", "key": "b", "value": "v"})),
        (
            "m3",
            json!({"op": "http", "connection": "ghl", "path": "/contacts/missing"}),
        ),
        ("m4", json!({"op": "fail", "bytes": 10})),
        ("m5", json!({"op": "defer", "ms": 3_600_000})),
        ("m6", json!({"op": "loop"})),
    ];
    for (id, op) in &ops {
        assert_eq!(send(id, op.clone(), key.clone()).await, 202, "{id}");
    }
    // A duplicate, a forgery, and a source nobody configured.
    assert_eq!(send("m1", ops[0].1.clone(), key.clone()).await, 202);
    let forged = StandardVerifier::decode_secret("whsec_d3Jvbmctc2VjcmV0").unwrap();
    assert_eq!(send("m7", ops[0].1.clone(), forged).await, 401);
    assert_eq!(host.hook("nope", &[], "{}").await.0, 404);

    let runs = host
        .wait_runs("", "six runs settled", |runs| {
            runs.len() == 6
                && runs.iter().all(|r| {
                    r["status"] != "running" && (r["status"] != "queued" || r["deferrals"] == 1)
                })
        })
        .await;
    let by_status = |s: &str| runs.iter().filter(|r| r["status"] == s).count();
    assert_eq!(
        (
            by_status("succeeded"),
            by_status("failed"),
            by_status("dead"),
            by_status("queued")
        ),
        (3, 1, 1, 1),
        "{runs:#?}"
    );
    // Without the token: refused.
    let refused = reqwest::get(format!("{}/metrics", host.url)).await.unwrap();
    assert_eq!(refused.status(), 401);
    let scrape = scrape(&host).await;
    let m = |name: &str, labels: &[(&str, &str)]| value(&scrape, name, labels);

    let webhooks = "switchboard_webhooks_total";
    assert_eq!(
        m(webhooks, &[("result", "accepted"), ("source", "test")]),
        6.0
    );
    assert_eq!(
        m(webhooks, &[("result", "duplicate"), ("source", "test")]),
        1.0
    );
    assert_eq!(
        m(webhooks, &[("result", "bad_signature"), ("source", "test")]),
        1.0
    );
    assert_eq!(
        m(
            webhooks,
            &[("result", "unknown_source"), ("source", "(unknown)")]
        ),
        1.0,
        "an unknown source is not a label of its own"
    );

    let runs_total = |outcome: &str| {
        m(
            "switchboard_runs_total",
            &[
                ("outcome", outcome),
                ("recipe", "probe"),
                ("trigger", "webhook"),
            ],
        )
    };
    assert_eq!(runs_total("succeeded"), 3.0);
    assert_eq!(runs_total("failed"), 1.0);
    assert_eq!(runs_total("deferred"), 1.0);
    assert_eq!(runs_total("dead"), 1.0);
    assert_eq!(runs_total("retry"), 0.0);
    let probe = [("recipe", "probe")];
    assert_eq!(m("switchboard_run_duration_seconds_count", &probe), 6.0);
    assert_eq!(m("switchboard_run_queue_wait_seconds_count", &probe), 6.0);
    assert_eq!(
        m(
            "switchboard_recipe_interrupts_total",
            &[("kind", "timeout"), ("recipe", "probe")]
        ),
        1.0
    );
    assert_eq!(
        m("switchboard_store_write_seconds_count", &[("op", "accept")]),
        7.0,
        "six new events and the duplicate's lookup"
    );
    assert_eq!(
        m("switchboard_store_write_seconds_count", &[("op", "settle")]),
        6.0
    );

    // Queue: the deferred run waits for later; nothing due, nothing running.
    assert_eq!(m("switchboard_runs", &[("state", "later")]), 1.0);
    assert_eq!(m("switchboard_runs", &[("state", "due")]), 0.0);
    assert_eq!(m("switchboard_runs", &[("state", "running")]), 0.0);
    assert_eq!(m("switchboard_oldest_due_run_age_seconds", &[]), 0.0);

    // One request to GoHighLevel (a contact it does not have: 400).
    let vendor = [("vendor", "gohighlevel")];
    assert_eq!(
        m(
            "switchboard_vendor_requests_total",
            &[("status", "4xx"), ("vendor", "gohighlevel")]
        ),
        1.0,
        "the sandbox has no such contact: {scrape:#?}"
    );
    assert_eq!(
        m("switchboard_vendor_request_duration_seconds_count", &vendor),
        1.0
    );
    assert_eq!(m("switchboard_vendor_retries_total", &vendor), 0.0);

    // State gauges: kv (two keys of one byte, each holding `"v"`), the SMS quota, the recipes.
    assert_eq!(m("switchboard_kv_keys", &probe), 2.0);
    assert_eq!(m("switchboard_kv_bytes", &probe), 8.0);
    assert_eq!(
        m(
            "switchboard_vendor_quota_remaining",
            &[("connection", "hb"), ("quota", "sms_per_day")]
        ),
        500.0
    );
    assert_eq!(m("switchboard_recipes_loaded", &[]), 1.0);
    assert_eq!(m("switchboard_recipe_load_errors", &[]), 0.0);
    assert_eq!(
        m(
            "switchboard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Nothing identifies a run, an event or a delivery.
    let text = scrape_text(&host).await;
    for run in &runs {
        for field in ["id", "event_id"] {
            let id = run[field].as_str().unwrap();
            assert!(!text.contains(id), "{field} {id} is in the metrics");
        }
    }
    assert!(!text.contains("m1") && !text.contains("nope"), "{text}");
    // The metrics listener: the same metrics without the token, and nothing else.
    let open = reqwest::get(format!("http://{metrics_listen}/metrics"))
        .await
        .unwrap();
    assert_eq!(open.status(), 200);
    let open = parse(&open.text().await.unwrap());
    assert_eq!(
        value(
            &open,
            "switchboard_webhooks_total",
            &[("result", "accepted"), ("source", "test")]
        ),
        6.0
    );
    let other = reqwest::get(format!("http://{metrics_listen}/admin/health"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "only /metrics is served there");
    for described in [
        "switchboard_webhooks_total",
        "switchboard_runs_total",
        "switchboard_runs",
    ] {
        assert!(
            text.contains(&format!("# HELP {described} ")),
            "{described} has no help text"
        );
    }
}

async fn scrape_text(host: &Host) -> String {
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", host.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn scrape(host: &Host) -> BTreeMap<Sample, f64> {
    parse(&scrape_text(host).await)
}

/// A span as an OTLP receiver got it: ids in hex, attributes as text.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
    /// The span's events: each one's name and attribute values.
    events: Vec<String>,
}

/// An OTLP/HTTP (protobuf) receiver on a free port: the spans it got.
async fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut got = sink.lock().unwrap();
                for rs in request.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            let text = |kv: opentelemetry_proto::tonic::common::v1::KeyValue| {
                                let v = match kv.value.and_then(|v| v.value) {
                                    Some(Any::StringValue(s)) => s,
                                    Some(Any::IntValue(i)) => i.to_string(),
                                    Some(Any::BoolValue(b)) => b.to_string(),
                                    Some(Any::DoubleValue(d)) => d.to_string(),
                                    other => format!("{other:?}"),
                                };
                                (kv.key, v)
                            };
                            let attributes = s.attributes.into_iter().map(text).collect();
                            let events = s
                                .events
                                .into_iter()
                                .map(|e| {
                                    let values: Vec<String> =
                                        e.attributes.into_iter().map(|kv| text(kv).1).collect();
                                    format!("{} {}", e.name, values.join(" "))
                                })
                                .collect();
                            got.push(Received {
                                name: s.name,
                                trace_id: hex::encode(s.trace_id),
                                span_id: hex::encode(s.span_id),
                                parent: hex::encode(s.parent_span_id),
                                attributes,
                                events,
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    axum::body::Bytes::new(),
                )
            }
        }),
    );
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_its_run_and_the_vendor_call_are_one_trace_over_otlp() {
    let (otlp, spans) = otlp_receiver().await;
    let sandbox = switchboard::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        switchboard::sandbox::SandboxKeys::default(),
    )
    .await
    .unwrap();
    let (dir, config) = setup(
        &[("probe", PROBE)],
        &format!(
            r#"
[sources.test]
secrets = [{{ file = "test.secret" }}]
kind = "probe"
[telemetry]
otlp_endpoint = "{otlp}"
{ghl}"#,
            ghl = crate::support::ghl_connection(&sandbox),
        ),
    );
    std::fs::write(dir.path().join("test.secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("ghl.key"), &sandbox.state.keys.gohighlevel).unwrap();
    // Batches leave every 100 ms instead of every 5 s.
    let host = Host::start_with(&config, |c| {
        c.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    });
    let key = StandardVerifier::decode_secret(SECRET).unwrap();
    let body =
        json!({"op": "http", "connection": "ghl", "path": "/contacts/secret-path"}).to_string();
    let headers = signed(&key, "t1", &body);
    let (status, ack) = host.hook("test", &headers, &body).await;
    assert_eq!(status, 202, "{ack}");
    let runs = host
        .wait_runs("", "the run", |runs| {
            runs.len() == 1 && runs[0]["status"] == "succeeded"
        })
        .await;
    let trace_id = runs[0]["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the run record has its trace id: {:#}", runs[0]))
        .to_string();
    assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");

    let started = std::time::Instant::now();
    let find = |name: &str| -> Option<Received> {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name && s.trace_id == trace_id)
            .cloned()
    };
    let (webhook, run, call, request) = loop {
        if let (Some(w), Some(r), Some(c), Some(q)) = (
            find("webhook"),
            find("run"),
            find("host call"),
            find("vendor request"),
        ) {
            break (w, r, c, q);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "spans of trace {trace_id} did not all arrive: {:#?}\n{}",
            spans.lock().unwrap(),
            host.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(webhook.parent, "", "the webhook starts the trace");
    assert_eq!(run.parent, webhook.span_id, "webhook → run");
    assert_eq!(call.parent, run.span_id, "run → host call");
    assert_eq!(request.parent, call.span_id, "host call → vendor request");
    assert_eq!(
        webhook.attributes["event"],
        ack["event_id"].as_str().unwrap()
    );
    assert_eq!(run.attributes["run"], runs[0]["id"].as_str().unwrap());
    assert_eq!(run.attributes["recipe"], "probe");
    assert_eq!(call.attributes["capability"], "vendor-http");
    assert_eq!(call.attributes["operation"], "send");
    assert_eq!(call.attributes["connection"], "ghl");
    assert_eq!(call.attributes["vendor"], "gohighlevel");
    // The status the recipe saw (GoHighLevel answers 400 for a contact it does not have).
    let seen = runs[0]["outcome"]["summary"].as_str().unwrap();
    let seen = seen.split_whitespace().next().unwrap();
    assert_eq!(seen, "400", "{seen}");
    assert_eq!(call.attributes["status"], seen);
    assert_eq!(request.attributes["status"], seen);

    // A recipe's log line stays out of the trace (it may carry personal data; the run's
    // log keeps it), though the host log copies it.
    let line = "l".repeat(23);
    let body = json!({"op": "log-flood", "lines": 1, "bytes": 23}).to_string();
    let (status, ack) = host.hook("test", &signed(&key, "t2", &body), &body).await;
    assert_eq!(status, 202, "{ack}");
    let runs = host
        .wait_runs("", "the logging run", |runs| {
            runs.len() == 2 && runs.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    let logged = runs
        .iter()
        .find(|r| r["event_id"] == ack["event_id"])
        .unwrap();
    let logged = logged["id"].as_str().unwrap();
    let started = std::time::Instant::now();
    while !spans
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.name == "run" && s.attributes["run"] == logged)
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the run span of {logged} did not arrive"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(host.log().contains(&line), "{}", host.log());

    // No payload, path, body or recipe log line in any span.
    for s in spans.lock().unwrap().iter() {
        let attributes = s.attributes.iter().map(|(k, v)| (k.as_str(), v));
        for (k, v) in attributes.chain(s.events.iter().map(|e| ("event", e))) {
            assert!(
                !v.contains("secret-path") && !v.contains(&line),
                "{} carries the payload or a recipe's log line in {k}: {v}",
                s.name
            );
        }
    }
}

type Alerts = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// A receiver of alerts that refuses the first delivery (500), then takes every alert it can
/// verify: its URL, the alerts it took, and the deliveries it answered.
async fn alert_receiver() -> (
    String,
    Alerts,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let key = StandardVerifier::decode_secret(SECRET).unwrap();
    let verifier = StandardVerifier::new(vec![key.clone()]);
    let app = {
        let (got, refused) = (got.clone(), refused.clone());
        axum::Router::new().route(
            "/alerts",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (got, refused, verifier) = (got.clone(), refused.clone(), verifier.clone());
                    async move {
                        let now = chrono::Utc::now().timestamp();
                        if verifier.verify(&headers, &body, now).is_err() {
                            return axum::http::StatusCode::UNAUTHORIZED;
                        }
                        if refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        got.lock()
                            .unwrap()
                            .push(serde_json::from_slice(&body).unwrap());
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        )
    };
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/alerts", socket.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(socket, app).await.unwrap() });

    (receiver, got, refused)
}

/// The alerts `got` holds once there are `n`, within 30 s.
async fn alerts_when(got: &Alerts, n: usize, host: &Host) -> Vec<Value> {
    let started = std::time::Instant::now();
    loop {
        let alerts = got.lock().unwrap().clone();
        if alerts.len() >= n {
            return alerts;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "alerts: {alerts:#?}\n{}",
            host.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_dead_runs_raise_signed_alerts_rate_limited_and_retried() {
    let (receiver, got, refused) = alert_receiver().await;
    let (dir, config) = setup(
        &[("probe", PROBE)],
        &format!(
            r#"
[pipeline]
max_attempts = 1
[plugins.probe]
deadline = "300ms"
[alerts]
url = "{receiver}"
secret = {{ file = "alert.secret" }}
failures = 3
window = "1h"
min_interval = "1h"
"#
        ),
    );
    std::fs::write(dir.path().join("alert.secret"), SECRET).unwrap();
    let host = Host::start(&config);
    let trigger = |payload: Value| {
        let host = &host;
        async move {
            let (status, body) = host
                .admin(
                    "POST",
                    "/admin/trigger",
                    Some(json!({"plugin": "probe", "kind": "probe", "payload": payload, "wait": true})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["runs"][0].clone()
        }
    };
    // Three failures (the second and third held back: one hour between alerts of a kind),
    // which also make the recipe "failing"; one dead run (a loop past its deadline); one success.
    let first = trigger(json!({"op": "fail", "bytes": 4})).await;
    trigger(json!({"op": "fail", "bytes": 4})).await;
    trigger(json!({"op": "fail", "bytes": 4})).await;
    let dead = trigger(json!({"op": "loop"})).await;
    trigger(json!({"op": "kv-set", "key": "k", "value": "v"})).await;
    assert_eq!(dead["status"], "dead", "{dead}");

    let alerts = alerts_when(&got, 3, &host).await;
    // A moment more: nothing else arrives.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let alerts = {
        let now = got.lock().unwrap().clone();
        assert_eq!(now.len(), alerts.len(), "{now:#?}");
        now
    };
    let kinds: Vec<&str> = alerts.iter().map(|a| a["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["run.failed", "recipe.failing", "run.dead"],
        "{alerts:#?}"
    );
    assert_eq!(alerts[0]["run"], first["id"]);
    assert_eq!(alerts[0]["recipe"], "probe");
    assert_eq!(alerts[1]["failures"], 3);
    assert_eq!(alerts[2]["run"], dead["id"]);
    assert!(
        alerts[2]["reason"].as_str().unwrap().contains("timeout"),
        "{alerts:#?}"
    );
    assert_eq!(
        refused.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "the first delivery was refused and sent again"
    );
    assert!(
        host.log().contains("alert delivery failed"),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumed_at_a_restart_is_seen_by_the_alerts() {
    let (receiver, got, _) = alert_receiver().await;
    let (dir, config) = setup(
        &[("probe", PROBE)],
        &format!(
            r#"
[sources.test]
secrets = [{{ file = "test.secret" }}]
kind = "probe"
[pipeline]
max_attempts = 1
[plugins.probe]
deadline = "300ms"
[alerts]
url = "{receiver}"
secret = {{ file = "alert.secret" }}
"#
        ),
    );
    std::fs::write(dir.path().join("alert.secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("test.secret"), SECRET).unwrap();
    // The host dies (SIGKILL) while the run is in the sandbox...
    let host = Host::start(&config);
    let key = StandardVerifier::decode_secret(SECRET).unwrap();
    let body = json!({"op": "loop"}).to_string();
    let (status, ack) = host.hook("test", &signed(&key, "r1", &body), &body).await;
    assert_eq!(status, 202, "{ack}");
    host.wait_runs("status=running", "the run in the sandbox", |runs| {
        runs.len() == 1
    })
    .await;
    host.kill();
    // ...and the next start resumes it at once, before anything else happens: it ends dead
    // (its deadline), and the alerts, set up before the first run can start, see it.
    let host = Host::start(&config);
    let alerts = alerts_when(&got, 1, &host).await;
    assert_eq!(alerts[0]["type"], "run.dead", "{alerts:#?}");
    assert_eq!(alerts[0]["recipe"], "probe");
    let runs = host.runs("").await;
    assert_eq!(alerts[0]["run"], runs[0]["id"], "{runs:#?}");
}
