//! Fair CPU: how much recipes that spin until their deadline slow everyone else.
//!
//! A host on a 2-worker tokio runtime (a 2-core machine) with the `hello` recipe and the
//! `probe` test guest, behind the real accept loop. Webhooks for `hello` arrive one at a
//! time, every 5 ms; each is timed from sending to its 202 (intake) and to its run being
//! recorded (end to end). Measured three ways, in one process:
//!
//! - **idle**: nothing else running — the baseline;
//! - **4 spinning runs, no slow lane** (`slow_lane = 0`): four probe runs that loop until
//!   their 10 s deadline, kept in flight throughout — how the host behaved before;
//! - **4 spinning runs, slow lane** (the defaults: `cpu_slice = 50ms`, `slow_lane = 1`);
//! - **4 spinning runs calling the host, slow lane**: the same, but each turn of their loop
//!   calls the host (the clock), as a recipe that polls would.
//!
//! Run with `cargo bench -p switchboard --bench fairness` (prints a Markdown table).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard::ingest::{SchemeKind, SourceConfig, Sources};
use switchboard::pipeline::backend::Backend;
use switchboard::pipeline::registry::Registry;
use switchboard::pipeline::{Incoming, Pipeline, PipelineOptions};
use switchboard::runtime::{Runtime, RuntimeOptions};
use switchboard::server::{AppState, spawn_local};
use switchboard::sled::SledBackend;
use switchboard::vendors::Connections;

const SAMPLES: usize = 400;
const WARMUP: usize = 100;
const HOGS: usize = 4;

async fn host(dir: &Path, slow_lane: usize) -> (String, Arc<Pipeline>) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(switchboard_test_guests::HELLO, plugins.join("hello.wasm")).unwrap();
    std::fs::copy(switchboard_test_guests::PROBE, plugins.join("probe.wasm")).unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(dir.join("cache")),
        slow_lane,
        ..RuntimeOptions::default()
    };
    let backend = SledBackend::open(&dir.join("store")).unwrap();
    let runtime =
        Arc::new(Runtime::new(options, backend.recipe_store(), Connections::default()).unwrap());
    let registry = Registry::open(runtime.clone(), plugins).await;
    let pipeline = Pipeline::start(runtime, registry, backend, PipelineOptions::default());
    let sources = Sources::from_config(&BTreeMap::from([(
        "bench".to_string(),
        SourceConfig {
            scheme: Some(SchemeKind::None),
            insecure: true,
            kind: Some("bench.ping".into()),
            ..SourceConfig::default()
        },
    )]))
    .unwrap();
    let url = spawn_local(AppState::new(pipeline.clone(), sources, None))
        .await
        .unwrap();
    (format!("{url}/hooks/bench"), pipeline)
}

/// Keep `HOGS` probe runs spinning (`op`: `loop` or `loop-calls`) until `stop`.
fn spin(
    pipeline: Arc<Pipeline>,
    op: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut finished = pipeline.subscribe();
        let hog = || Incoming {
            event_id: None,
            source: "test".into(),
            kind: "spin".into(),
            delivery_id: None,
            payload: serde_json::value::RawValue::from_string(format!(r#"{{"op":"{op}"}}"#))
                .unwrap(),
        };
        for _ in 0..HOGS {
            pipeline.ingest(hog(), Some("probe")).await.unwrap();
        }
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(100), finished.recv()).await {
                Ok(Ok(run)) if run.plugin == "probe" && run.status.is_terminal() => {
                    pipeline.ingest(hog(), Some("probe")).await.unwrap();
                }
                _ => {}
            }
        }
    })
}

struct Latencies {
    ack: Vec<f64>,
    done: Vec<f64>,
}

/// Deliver `n` webhooks one at a time, every 5 ms; time each to its 202 and to its run.
async fn measure(url: &str, pipeline: &Pipeline, n: usize, tag: &str) -> Latencies {
    let client = reqwest::Client::new();
    let mut finished = pipeline.subscribe();
    let mut out = Latencies {
        ack: Vec::with_capacity(n),
        done: Vec::with_capacity(n),
    };
    for i in 0..n {
        let started = Instant::now();
        let response = client
            .post(url)
            .body(format!(r#"{{"n":"{tag}-{i}"}}"#))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let ack: serde_json::Value = response.json().await.unwrap();
        out.ack.push(started.elapsed().as_secs_f64() * 1e3);
        let run = ack["runs"][0].as_str().unwrap().to_string();
        loop {
            let r = finished.recv().await.unwrap();
            if r.id == run {
                assert!(r.status.is_terminal());
                break;
            }
        }
        out.done.push(started.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        println!("| setting | intake 202 p50 / p99 ms | end to end p50 / p99 ms | end-to-end p99 vs idle |");
        println!("|---|---:|---:|---:|");
        let mut idle_p99 = None;
        for (name, slow_lane, hogs) in [
            ("idle (baseline)", 1, None),
            ("4 spinning runs, no slow lane", 0, Some("loop")),
            ("4 spinning runs, slow lane (default)", 1, Some("loop")),
            ("4 spinning runs calling the host, slow lane", 1, Some("loop-calls")),
        ] {
            let (url, pipeline) = host(&dir.path().join(name.replace(' ', "-")), slow_lane).await;
            measure(&url, &pipeline, WARMUP, "warm").await;
            let stop = Arc::new(AtomicBool::new(false));
            let spinner = hogs.map(|op| spin(pipeline.clone(), op, stop.clone()));
            if hogs.is_some() {
                // Let the hogs get going (and, with the slow lane, get demoted).
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut l = measure(&url, &pipeline, SAMPLES, name).await;
            stop.store(true, Ordering::Relaxed);
            if let Some(s) = spinner {
                s.await.unwrap();
            }
            // The spinning runs end at their deadline; none may bleed into the next setting.
            while pipeline.load().await.map_or(0, |l| l.running) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (a50, a99) = (quantile(&mut l.ack, 0.5), quantile(&mut l.ack, 0.99));
            let (d50, d99) = (quantile(&mut l.done, 0.5), quantile(&mut l.done, 0.99));
            let base = *idle_p99.get_or_insert(d99);
            println!(
                "| {name} | {a50:.2} / {a99:.2} | {d50:.2} / {d99:.2} | {:.1}× |",
                d99 / base
            );
        }
    });
}
