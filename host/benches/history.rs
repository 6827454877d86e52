//! Indexed run history: the query behind `runs list --status dead --plugin X --limit 50`
//! over 1,000,000 recorded runs, side by side with a full scan in the same run.
//!
//! The store is filled through the backend's own operations (accept, claim, settle):
//! 100,000 events, each run by ten recipes `r0`..`r9`, about 1% of runs dead. Then:
//!
//! - **backend** — `Backend::runs` with status `dead`, recipe `r3`, limit 50 (the indexes).
//! - **server** — the same through the real admin route (`GET /admin/runs?...`), HTTP on
//!   loopback, JSON and all: what `switchboard runs list` waits for.
//! - **full scan** — the baseline: read every run record, decode it, keep the dead runs of
//!   `r3`, sort newest first, take 50 (what a store without indexes has to do).
//!
//! Run with `cargo bench -p switchboard --bench history` (prints a Markdown table);
//! `HISTORY_EVENTS=10000` for a smaller store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::model::{Event, Outcome, RunError, RunStatus};
use switchboard::pipeline::backend::{
    AttemptReport, Backend, ClaimRequest, Concurrency, NewEvent, NewRun, RunQuery, Settlement,
};
use switchboard::pipeline::registry::Registry;
use switchboard::pipeline::{Pipeline, PipelineOptions};
use switchboard::runtime::{Runtime, RuntimeOptions};
use switchboard::secrets::Secret;
use switchboard::server::{AppState, spawn_local};
use switchboard::sled::SledBackend;
use switchboard::vendors::Connections;

const RECIPES: usize = 10;
const TOKEN: &str = "bench-admin-token";
const QUERIES: usize = 200;

fn recipe(i: usize) -> String {
    format!("r{i}")
}

/// Accept `events` events for every recipe, then run them all: about one run in a hundred dead.
async fn fill(backend: &Arc<SledBackend>, events: usize) -> usize {
    let t0 = switchboard::model::now_ms() - 3_600_000;
    let started = Instant::now();
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for i in (w..events).step_by(32) {
                    let id = backend.next_event_id().await.unwrap();
                    let payload = serde_json::json!({"lead": {"id": i, "name": "Ada Lovelace"}});
                    let new = NewEvent {
                        event: Event::new(
                            id,
                            "forms",
                            "lead.created",
                            "2026-12-02T00:00:00Z",
                            &payload,
                        ),
                        delivery_id: format!("d{i}"),
                        received_ms: t0 + i as i64,
                        window_ms: 3_600_000,
                        runs: (0..RECIPES)
                            .map(|r| NewRun {
                                plugin: recipe(r),
                                order_key: None,
                            })
                            .collect(),
                    };
                    backend.accept(new).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    accepted.store(events, std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "  accepted {events} events ({} runs) in {:.1?}",
        events * RECIPES,
        started.elapsed()
    );
    let started = Instant::now();
    let mut settled = 0usize;
    let mut dead = 0usize;
    loop {
        let claimed = backend
            .claim(ClaimRequest {
                holder: "bench",
                now_ms: switchboard::model::now_ms(),
                lease_ms: 600_000,
                max: 512,
                concurrency: Concurrency::each(usize::MAX),
            })
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        for c in claimed {
            settled += 1;
            // 97 is prime to the ten recipes, so each gets its share of the dead.
            let settlement = if settled.is_multiple_of(97) {
                dead += 1;
                Settlement::Dead(RunError::Timeout {
                    deadline_ms: 10_000,
                })
            } else {
                Settlement::Succeeded(Outcome::Done("ok".into()))
            };
            backend
                .settle(
                    &c.lease,
                    switchboard::model::now_ms(),
                    settlement,
                    AttemptReport::default(),
                )
                .await
                .unwrap();
            if settled.is_multiple_of(100_000) {
                eprintln!("  settled {settled} runs ({:.1?})", started.elapsed());
            }
        }
    }
    backend.flush().await.unwrap();
    eprintln!(
        "  settled {settled} runs, {dead} dead, in {:.1?}",
        started.elapsed()
    );
    settled
}

/// The baseline: every run record read and decoded, filtered, sorted, cut to 50.
fn full_scan(backend: &SledBackend, plugin: &str) -> Vec<String> {
    let tree = backend.store().db().open_tree("pipeline").unwrap();
    let mut dead: Vec<(i64, String)> = Vec::new();
    for item in tree.scan_prefix(b"r/") {
        let (_, value) = item.unwrap();
        let run: serde_json::Value = serde_json::from_slice(&value).unwrap();
        if run["s"] == "dead" && run["p"] == plugin {
            let created = run["c"].as_i64().unwrap();
            dead.push((created, String::new()));
        }
    }
    dead.sort_by(|a, b| b.cmp(a));
    dead.truncate(50);
    dead.into_iter().map(|(c, _)| c.to_string()).collect()
}

struct Timing {
    median: Duration,
    p99: Duration,
}

fn timing(mut samples: Vec<Duration>) -> Timing {
    samples.sort();
    Timing {
        median: samples[samples.len() / 2],
        p99: samples[(samples.len() * 99 / 100).min(samples.len() - 1)],
    }
}

async fn serve(backend: Arc<SledBackend>, dir: &Path) -> String {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeOptions::default()
    };
    let runtime =
        Arc::new(Runtime::new(options, backend.recipe_store(), Connections::default()).unwrap());
    let registry = Registry::open(runtime.clone(), plugins).await;
    let pipeline = Pipeline::start(runtime, registry, backend, PipelineOptions::default());
    let sources = switchboard::ingest::Sources::from_config(&BTreeMap::new()).unwrap();
    spawn_local(AppState::new(pipeline, sources, Some(Secret::new(TOKEN))))
        .await
        .unwrap()
}

fn main() {
    let events: usize = std::env::var("HISTORY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = SledBackend::open(&dir.path().join("store")).unwrap();
        eprintln!("filling the store: {events} events x {RECIPES} recipes");
        let runs = fill(&backend, events).await;
        let plugin = "r3";
        let query = RunQuery {
            statuses: vec![RunStatus::Dead],
            plugin: Some(plugin.into()),
            limit: 50,
            ..RunQuery::default()
        };

        // The three ways, each warmed once, then timed QUERIES times (the scan fewer).
        let indexed = backend.runs(&query).await.unwrap();
        let expected = indexed.runs.len().min(50);
        assert_eq!(expected, 50, "enough dead runs of {plugin} to fill a page");
        let mut samples = Vec::new();
        for _ in 0..QUERIES {
            let t = Instant::now();
            let page = backend.runs(&query).await.unwrap();
            samples.push(t.elapsed());
            assert_eq!(page.runs.len(), 50);
        }
        let backend_t = timing(samples);

        let url = serve(backend.clone(), dir.path()).await;
        let client = reqwest::Client::new();
        let get = || {
            client
                .get(format!("{url}/admin/runs?status=dead&plugin={plugin}&limit=50"))
                .bearer_auth(TOKEN)
                .send()
        };
        let first: serde_json::Value = get().await.unwrap().json().await.unwrap();
        assert_eq!(first["runs"].as_array().map(Vec::len), Some(50), "{first}");
        let mut samples = Vec::new();
        for _ in 0..QUERIES {
            let t = Instant::now();
            let response = get().await.unwrap();
            assert!(response.status().is_success());
            let body = response.bytes().await.unwrap();
            samples.push(t.elapsed());
            assert!(body.len() > 1000);
        }
        let server_t = timing(samples);

        let scan_runs = 5;
        let mut samples = Vec::new();
        let mut scanned = Vec::new();
        for _ in 0..scan_runs {
            let t = Instant::now();
            scanned = full_scan(&backend, plugin);
            samples.push(t.elapsed());
        }
        assert_eq!(scanned.len(), 50, "the scan finds the same page size");
        let scan_t = timing(samples);

        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!("| `--status dead --plugin {plugin} --limit 50` over {runs} runs | median (ms) | p99 (ms) | vs full scan |");
        println!("|---|---:|---:|---:|");
        println!(
            "| backend query (indexes) | {:.2} | {:.2} | {:.0}× faster |",
            ms(backend_t.median),
            ms(backend_t.p99),
            ms(scan_t.median) / ms(backend_t.median)
        );
        println!(
            "| admin route over HTTP (`GET /admin/runs`) | {:.2} | {:.2} | {:.0}× faster |",
            ms(server_t.median),
            ms(server_t.p99),
            ms(scan_t.median) / ms(server_t.median)
        );
        println!(
            "| full scan (baseline: decode every run) | {:.0} | {:.0} | 1× |",
            ms(scan_t.median),
            ms(scan_t.p99)
        );
    });
}
