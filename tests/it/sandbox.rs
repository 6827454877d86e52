//! The sandbox: isolation of state, time, memory, capabilities and WASI; failures cost
//! only the run.

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::model::{Outcome, RecipeError};
use switchboard::runtime::plugin::Plugin;
use switchboard::runtime::{PluginOverrides, RunError, RunReport, Runtime};
use switchboard::vendors::Connections;
use switchboard_test_guests::{HELLO, PROBE};

async fn probe(rt: &Runtime, plugin: &Plugin, payload: serde_json::Value) -> RunReport {
    rt.run(plugin, &event("probe", payload)).await
}

fn done(report: &RunReport) -> &str {
    match &report.outcome {
        Some(Outcome::Done(s)) => s,
        other => panic!("expected done, got {other:?} / {:?}", report.error),
    }
}

fn recipe_error(report: &RunReport) -> &RecipeError {
    match &report.error {
        Some(RunError::Recipe { error }) => error,
        other => panic!(
            "expected a recipe error, got {other:?} / {:?}",
            report.outcome
        ),
    }
}

/// After any failure, both the failing plugin and another one still serve.
async fn still_serving(rt: &Runtime, probe_plugin: &Plugin, hello: &Plugin) {
    let r = probe(
        rt,
        probe_plugin,
        json!({"op": "kv-set", "key": "alive", "value": "yes"}),
    )
    .await;
    assert_eq!(done(&r), "set");
    let r = rt.run(hello, &event("after", json!({}))).await;
    assert!(done(&r).starts_with("after seen"), "{r:?}");
}

#[tokio::test]
async fn kv_is_isolated_between_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let hello = load(&rt, HELLO).await;
    let p = load(&rt, PROBE).await;
    let r = rt.run(&hello, &event("x", json!({}))).await;
    assert_eq!(done(&r), "x seen 1 time(s)");
    // probe sees none of hello's keys...
    assert_eq!(
        done(&probe(&rt, &p, json!({"op": "kv-list", "prefix": ""})).await),
        ""
    );
    assert_eq!(
        done(&probe(&rt, &p, json!({"op": "kv-get", "key": "count/x"})).await),
        "<none>"
    );
    // ...and writing the same key changes nothing for hello.
    probe(
        &rt,
        &p,
        json!({"op": "kv-set", "key": "count/x", "value": "probe"}),
    )
    .await;
    assert_eq!(
        done(&probe(&rt, &p, json!({"op": "kv-list", "prefix": "count/"})).await),
        "count/x"
    );
    let r = rt.run(&hello, &event("x", json!({}))).await;
    assert_eq!(done(&r), "x seen 2 time(s)");
}

#[tokio::test]
async fn an_infinite_loop_stops_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let deadline = Duration::from_millis(300);
    let opts = options_with(
        "probe",
        PluginOverrides {
            deadline: Some(deadline),
            memory_limit: None,
            ..Default::default()
        },
    );
    let rt = runtime_at(dir.path(), opts, Connections::default());
    let p = load(&rt, PROBE).await;
    let hello = load(&rt, HELLO).await;
    assert_eq!(p.limits.deadline, deadline);
    assert_eq!(
        hello.limits.deadline,
        Duration::from_secs(10),
        "default deadline"
    );
    let r = probe(&rt, &p, json!({"op": "loop"})).await;
    assert_eq!(
        r.error,
        Some(RunError::Timeout { deadline_ms: 300 }),
        "{r:?}"
    );
    assert!(r.error.as_ref().unwrap().is_retryable());
    still_serving(&rt, &p, &hello).await;
}

#[tokio::test]
async fn a_memory_bomb_fails_at_the_cap_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let hello = load(&rt, HELLO).await;
    assert_eq!(p.limits.memory_limit, 64 << 20, "default cap");
    let r = probe(&rt, &p, json!({"op": "bomb"})).await;
    match &r.error {
        Some(
            e @ RunError::MemoryLimit {
                limit_bytes,
                requested_bytes,
            },
        ) => {
            assert_eq!(*limit_bytes, 64 << 20);
            assert!(*requested_bytes > 64 << 20);
            assert!(e.to_string().contains("memory limit exceeded"), "{e}");
        }
        other => panic!("expected a memory limit error, got {other:?}"),
    }
    // Under the cap, allocating works.
    assert_eq!(
        done(&probe(&rt, &p, json!({"op": "alloc", "mib": 8})).await),
        "allocated 8388608"
    );
    still_serving(&rt, &p, &hello).await;
}

#[tokio::test]
async fn a_per_plugin_memory_cap_applies() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options_with(
        "probe",
        PluginOverrides {
            deadline: None,
            memory_limit: Some(8 << 20),
            ..Default::default()
        },
    );
    let rt = runtime_at(dir.path(), opts, Connections::default());
    let p = load(&rt, PROBE).await;
    let r = probe(&rt, &p, json!({"op": "alloc", "mib": 16})).await;
    assert!(
        matches!(r.error, Some(RunError::MemoryLimit { limit_bytes, .. }) if limit_bytes == 8 << 20),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let hello = load(&rt, HELLO).await;
    let r = probe(&rt, &p, json!({"op": "panic", "message": "boom-4711"})).await;
    match &r.error {
        Some(RunError::Trap {
            panic: Some(panic), ..
        }) => {
            assert!(panic.contains("boom-4711"), "{panic}")
        }
        other => panic!("expected a trap with a panic message, got {other:?}"),
    }
    assert!(!r.error.as_ref().unwrap().is_retryable());
    still_serving(&rt, &p, &hello).await;
}

#[tokio::test]
async fn bad_payloads_are_recipe_errors_naming_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let r = probe(&rt, &p, json!({"op": "no-such-op"})).await;
    match recipe_error(&r) {
        RecipeError::Invalid { field, reason } => {
            assert_eq!(field, "payload");
            assert!(reason.contains("no-such-op"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kv_counters_add_across_the_boundary_and_refuse_what_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let add = |key: &str, by: i64| json!({"op": "kv-increment", "key": key, "by": by});
    assert_eq!(done(&probe(&rt, &p, add("n", 5)).await), "5");
    assert_eq!(done(&probe(&rt, &p, add("n", -7)).await), "-2");
    // A JSON integer: what kv::get reads back.
    assert_eq!(
        done(&probe(&rt, &p, json!({"op": "kv-get-raw", "key": "n"})).await),
        "-2"
    );
    probe(
        &rt,
        &p,
        json!({"op": "kv-set", "key": "word", "value": "seven"}),
    )
    .await;
    match recipe_error(&probe(&rt, &p, add("word", 1)).await) {
        RecipeError::Invalid { field, reason } => {
            assert_eq!(field, "value");
            assert!(reason.contains("not an integer"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let r = probe(&rt, &p, add("n", i64::MAX)).await;
    assert_eq!(done(&r), (i64::MAX - 2).to_string());
    match recipe_error(&probe(&rt, &p, add("n", 3)).await) {
        RecipeError::Invalid { field, reason } => {
            assert_eq!(field, "value");
            assert!(reason.contains("signed 64-bit range"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kv_size_limits_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let r = probe(
        &rt,
        &p,
        json!({"op": "kv-set-bytes", "key": "big", "len": (1 << 20) + 1}),
    )
    .await;
    match recipe_error(&r) {
        RecipeError::Invalid { field, reason } => {
            assert_eq!(field, "value");
            assert!(reason.contains("at most 1048576 bytes"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let key = "k".repeat(1025);
    let r = probe(&rt, &p, json!({"op": "kv-set", "key": key, "value": "v"})).await;
    assert!(matches!(recipe_error(&r), RecipeError::Invalid { field, .. } if field == "key"));
    // Exactly at the limit is fine.
    let r = probe(
        &rt,
        &p,
        json!({"op": "kv-set-bytes", "key": "big", "len": 1 << 20}),
    )
    .await;
    assert_eq!(done(&r), "set");
}

#[tokio::test]
async fn undeclared_capabilities_and_connections_are_denied_before_any_data() {
    let dir = tempfile::tempdir().unwrap();
    let ghl = Double::new();
    let pb = Double::new();
    let mut connections = Connections::default();
    connections.insert("ghl", ghl.clone());
    connections.insert("pb", pb.clone());
    let rt = runtime_at(dir.path(), options(), connections);
    let p = load(&rt, PROBE).await;

    // `leads` is not in probe's manifest.
    let r = probe(&rt, &p, json!({"op": "leads-list", "connection": "ghl"})).await;
    assert!(
        matches!(recipe_error(&r), RecipeError::Denied { message } if message.contains("'leads' capability")),
        "{r:?}"
    );
    assert!(
        r.logs
            .iter()
            .any(|l| l.message.contains("did not declare the 'leads' capability")),
        "the refusal is logged: {:?}",
        r.logs
    );
    // `pb` is configured but not declared.
    let r = probe(
        &rt,
        &p,
        json!({"op": "http", "connection": "pb", "path": "/ping"}),
    )
    .await;
    assert!(
        matches!(recipe_error(&r), RecipeError::Denied { message } if message.contains("connection 'pb'")),
        "{r:?}"
    );
    let r = probe(
        &rt,
        &p,
        json!({"op": "contacts-get", "connection": "pb", "id": "c1"}),
    )
    .await;
    assert!(
        matches!(recipe_error(&r), RecipeError::Denied { .. }),
        "{r:?}"
    );
    assert_eq!(pb.calls(), 0, "a denied call never reaches the connection");
    assert_eq!(ghl.calls(), 0);

    // Declared capability and connection: reaches the connector.
    let r = probe(
        &rt,
        &p,
        json!({"op": "http", "connection": "ghl", "path": "/ping"}),
    )
    .await;
    assert_eq!(done(&r), "200 pong /ping");
    assert_eq!(ghl.calls(), 1);
    // Typed calls no vendor serves yet answer `unsupported`.
    let r = probe(
        &rt,
        &p,
        json!({"op": "contacts-get", "connection": "ghl", "id": "c1"}),
    )
    .await;
    assert!(
        matches!(recipe_error(&r), RecipeError::Unsupported { .. }),
        "{r:?}"
    );
}

#[tokio::test]
async fn raw_requests_cannot_leave_the_vendor_base_url() {
    let dir = tempfile::tempdir().unwrap();
    let ghl = Double::new();
    let mut connections = Connections::default();
    connections.insert("ghl", ghl.clone());
    let rt = runtime_at(dir.path(), options(), connections);
    let p = load(&rt, PROBE).await;
    for path in [
        "/../admin",
        "//evil.example/x",
        "https://evil.example/",
        "/a?b=c",
    ] {
        let r = probe(
            &rt,
            &p,
            json!({"op": "http", "connection": "ghl", "path": path}),
        )
        .await;
        assert!(
            matches!(recipe_error(&r), RecipeError::Invalid { field, .. } if field == "path"),
            "{path}: {r:?}"
        );
    }
    assert_eq!(ghl.calls(), 0);
}

#[tokio::test]
async fn the_deadline_bounds_time_spent_in_host_calls() {
    let dir = tempfile::tempdir().unwrap();
    let ghl = Double::new();
    let mut connections = Connections::default();
    connections.insert("ghl", ghl.clone());
    let opts = options_with(
        "probe",
        PluginOverrides {
            deadline: Some(Duration::from_millis(500)),
            memory_limit: None,
            ..Default::default()
        },
    );
    let rt = runtime_at(dir.path(), opts, connections);
    let p = load(&rt, PROBE).await;
    let hello = load(&rt, HELLO).await;
    let started = Instant::now();
    let r = probe(
        &rt,
        &p,
        json!({"op": "http", "connection": "ghl", "path": "/slow"}),
    )
    .await;
    assert_eq!(
        r.error,
        Some(RunError::Timeout { deadline_ms: 500 }),
        "{r:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the run must not wait for the 60 s host call"
    );
    assert_eq!(ghl.calls(), 1);
    still_serving(&rt, &p, &hello).await;
}

#[tokio::test]
async fn guests_get_no_environment_files_or_network() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let r = probe(&rt, &p, json!({"op": "sandbox"})).await;
    assert_eq!(done(&r), "env=0 args=0 fs=false file=false net=false");
}

#[tokio::test]
async fn stdout_is_captured_into_the_log_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let r = probe(&rt, &p, json!({"op": "print", "bytes": 1_000_000})).await;
    assert_eq!(done(&r), "printed 1000000");
    let stdout_lines = r
        .logs
        .iter()
        .filter(|l| l.fields.iter().any(|(k, v)| k == "stream" && v == "stdout"))
        .count();
    assert!(stdout_lines > 0);
    let kept: usize = r.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 300 * 1024, "the log is bounded, kept {kept} bytes");
    assert!(
        r.logs
            .iter()
            .any(|l| l.message.contains("dropped past the output limit")),
        "truncation is reported"
    );
}

#[tokio::test]
async fn concurrent_runs_do_not_interfere() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(runtime_at(dir.path(), options(), Connections::default()));
    let hello = Arc::new(load(&rt, HELLO).await);
    let p = Arc::new(load(&rt, PROBE).await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (rt, hello, p) = (rt.clone(), hello.clone(), p.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                probe(&rt, &p, json!({"op": "panic", "message": "x"})).await;
            }
            rt.run(&hello, &event("c", json!({}))).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().outcome.is_some());
    }
    let r = rt.run(&hello, &event("c", json!({}))).await;
    assert_eq!(done(&r), "c seen 9 time(s)");
}

/// Start a run of probe that loops until its deadline.
fn spawn_loop(rt: &Arc<Runtime>, p: &Arc<Plugin>) -> tokio::task::JoinHandle<RunReport> {
    let (rt, p) = (rt.clone(), p.clone());
    tokio::spawn(async move { probe(&rt, &p, json!({"op": "loop"})).await })
}

#[tokio::test]
async fn a_full_instance_pool_is_a_retryable_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options_with(
        "probe",
        PluginOverrides {
            deadline: Some(Duration::from_millis(1500)),
            memory_limit: None,
            ..Default::default()
        },
    );
    opts.max_instances = 1;
    let rt = Arc::new(runtime_at(dir.path(), opts, Connections::default()));
    let p = Arc::new(load(&rt, PROBE).await);
    let hello = load(&rt, HELLO).await;
    // Occupy the only slot with a run that loops until its deadline.
    let busy = spawn_loop(&rt, &p);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = rt.run(&hello, &event("x", json!({}))).await;
    match &r.error {
        Some(e @ RunError::Instantiate { message }) => {
            assert!(message.contains("maximum concurrent limit"), "{message}");
            assert!(e.is_retryable());
        }
        other => panic!("expected an instantiate error, got {other:?}"),
    }
    assert!(matches!(
        busy.await.unwrap().error,
        Some(RunError::Timeout { .. })
    ));
    // The slot is free again.
    let r = rt.run(&hello, &event("x", json!({}))).await;
    assert_eq!(done(&r), "x seen 1 time(s)");
}

#[tokio::test]
async fn a_busy_recipe_does_not_stall_other_runs_on_the_same_thread() {
    // `tokio::test` runs everything on one thread: the loop must yield for hello to run.
    let dir = tempfile::tempdir().unwrap();
    let opts = options_with(
        "probe",
        PluginOverrides {
            deadline: Some(Duration::from_secs(3)),
            memory_limit: None,
            ..Default::default()
        },
    );
    let rt = Arc::new(runtime_at(dir.path(), opts, Connections::default()));
    let p = Arc::new(load(&rt, PROBE).await);
    let hello = load(&rt, HELLO).await;
    let busy = spawn_loop(&rt, &p);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = rt.run(&hello, &event("meanwhile", json!({}))).await;
    assert_eq!(done(&r), "meanwhile seen 1 time(s)");
    assert!(
        !busy.is_finished(),
        "hello ran while the loop was still running"
    );
    assert!(matches!(
        busy.await.unwrap().error,
        Some(RunError::Timeout { deadline_ms: 3000 })
    ));
}

#[tokio::test]
async fn a_stack_overflow_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), Connections::default());
    let p = load(&rt, PROBE).await;
    let ok = probe(&rt, &p, json!({"op": "recurse", "depth": 100})).await;
    assert!(done(&ok).starts_with("recursed"), "{ok:?}");
    let r = probe(&rt, &p, json!({"op": "recurse", "depth": 10_000_000})).await;
    let error = r.error.expect("a failure").to_string();
    assert!(error.contains("stack overflow"), "{error}");
    // The host is fine, and so is the next run.
    let ok = probe(&rt, &p, json!({"op": "recurse", "depth": 100})).await;
    assert!(done(&ok).starts_with("recursed"), "{ok:?}");
}
