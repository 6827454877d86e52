//! Webhook intake and the pipeline, over real HTTP on loopback and sled on disk.
//!
//! Side by side, in one run, with the same client load (64 concurrent connections,
//! requests built and signed before the clock starts):
//! - **plain axum + sled**: a handler that inserts the body into a sled tree under a fresh
//!   id and flushes (`Db::flush` on a blocking thread) before answering 202 — the floor of
//!   any durable webhook receiver;
//! - **switchboard ingest**: `POST /hooks/bench` on the real router: Standard Webhooks
//!   signature check, JSON parse, dedup by `webhook-id`, the event journaled in a sled
//!   transaction and flushed by group commit before the 202 (no plugin subscribed).
//!
//! Then **end to end**: the same webhooks to a host with the `hello` recipe subscribed,
//! timed until every run is recorded as succeeded.
//!
//! Last, **storage**: what the end-to-end host's store holds per event once every run is
//! recorded (events, runs, logs, delivery marks and indexes, flushed), and what is left
//! after a retention sweep of everything.
//!
//! Run with `cargo bench -p switchboard --bench pipeline` (prints Markdown tables).

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::{blast, prepare, switchboard_host};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard::pipeline::Pipeline;
use switchboard::pipeline::backend::Retention;
use switchboard::sled::{SledBackend, disk_usage};

const WARMUP: usize = 2_000;
const REQUESTS: usize = 20_000;
const ROUNDS: usize = 3;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The baseline: insert and flush, nothing else.
async fn plain(dir: &Path) -> String {
    let db = sled::Config::new().path(dir.join("plain")).open().unwrap();
    let tree = db.open_tree("inbox").unwrap();
    let app = Router::new()
        .route(
            "/hooks/bench",
            axum::routing::post(
                |State((db, tree)): State<(sled::Db, sled::Tree)>, body: Bytes| async move {
                    let id = db.generate_id().unwrap();
                    tree.insert(id.to_be_bytes(), body.as_ref()).unwrap();
                    // `flush_async` deadlocked sled 0.34's IO pool under 64 concurrent
                    // requests here, so the flush runs on a blocking thread, as ours does.
                    tokio::task::spawn_blocking(move || db.flush())
                        .await
                        .unwrap()
                        .unwrap();
                    (StatusCode::ACCEPTED, format!("{{\"event_id\":\"{id}\"}}"))
                },
            ),
        )
        .with_state((db, tree));
    serve(app).await
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("no-plugins");
        std::fs::create_dir_all(&empty).unwrap();
        let plain_url = format!("{}/hooks/bench", plain(dir.path()).await);
        let (sb_url, _) = switchboard_host(&dir.path().join("ingest"), &empty).await;
        let sb_url = format!("{sb_url}/hooks/bench");

        for (url, tag) in [(&plain_url, "wp"), (&sb_url, "ws")] {
            let (_, ok) = blast(url, prepare(WARMUP, tag)).await;
            assert_eq!(ok, WARMUP);
        }
        println!("| round | plain axum + sled (webhooks/s) | switchboard ingest (webhooks/s) | ratio |");
        println!("|---|---:|---:|---:|");
        let (mut plain_rates, mut sb_rates) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (d, ok) = blast(&plain_url, prepare(REQUESTS, &format!("p{round}"))).await;
            assert_eq!(ok, REQUESTS);
            let p = rate(ok, d);
            let (d, ok) = blast(&sb_url, prepare(REQUESTS, &format!("s{round}"))).await;
            assert_eq!(ok, REQUESTS);
            let s = rate(ok, d);
            println!("| {} | {p:.0} | {s:.0} | {:.2}× |", round + 1, s / p);
            plain_rates.push(p);
            sb_rates.push(s);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let (p, s) = (median(&mut plain_rates), median(&mut sb_rates));
        println!("| median | {p:.0} | {s:.0} | {:.2}× |", s / p);

        // End to end: webhook -> hello -> run recorded.
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(switchboard_test_guests::HELLO, plugins.join("hello.wasm")).unwrap();
        let e2e = dir.path().join("e2e");
        let (url, pipeline) = switchboard_host(&e2e, &plugins).await;
        pipeline.backend().flush().await.unwrap();
        let empty_store = disk_usage(&e2e.join("store"));
        let url = format!("{url}/hooks/bench");
        let succeeded = |p: &Pipeline| p.counters.succeeded.load(Ordering::Relaxed) as usize;
        let wait_for = |target: usize| {
            let pipeline = pipeline.clone();
            async move {
                while succeeded(&pipeline) < target {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        let (_, ok) = blast(&url, prepare(WARMUP, "ew")).await;
        assert_eq!(ok, WARMUP);
        wait_for(WARMUP).await;
        println!();
        println!("| round | end to end: webhook → hello → run recorded (events/s) | accepted (webhooks/s) |");
        println!("|---|---:|---:|");
        let mut done = WARMUP;
        for round in 0..ROUNDS {
            let started = Instant::now();
            let (d, ok) = blast(&url, prepare(REQUESTS, &format!("e{round}"))).await;
            assert_eq!(ok, REQUESTS);
            done += REQUESTS;
            wait_for(done).await;
            let total = started.elapsed();
            println!(
                "| {} | {:.0} | {:.0} |",
                round + 1,
                rate(REQUESTS, total),
                rate(ok, d)
            );
        }
        let c = &pipeline.counters;
        assert_eq!(c.failed.load(Ordering::Relaxed), 0);
        assert_eq!(c.dead.load(Ordering::Relaxed), 0);

        // Storage: the e2e store, every run recorded.
        let backend = pipeline.backend().clone();
        backend.flush().await.unwrap();
        let live = disk_usage(&e2e.join("store"));
        // What of it is live records, not space sled keeps for reuse: a compacted copy.
        let live_copy = dir.path().join("live-copy");
        copy_dir(&e2e.join("store"), &live_copy);
        let live_compacted = SledBackend::compact(&live_copy).unwrap().after;
        let swept = backend
            .sweep(
                switchboard::model::now_ms() + 400 * 24 * 3_600_000,
                &Retention {
                    keep_succeeded_ms: 0,
                    keep_failed_ms: 0,
                    dedup_window_ms: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(swept.runs, done as u64, "every run swept");
        backend.flush().await.unwrap();
        let after = disk_usage(&e2e.join("store"));
        // `switchboard store compact` needs the host stopped: compact a copy of the
        // flushed store instead, as a stopped host would leave it.
        let copy = dir.path().join("copy");
        copy_dir(&e2e.join("store"), &copy);
        let compacted = SledBackend::compact(&copy).unwrap();
        let kb = |b: u64| b as f64 / 1024.0;
        println!();
        println!("| store (sled, `hello`, {done} events) | disk | per event |");
        println!("|---|---:|---:|");
        println!("| empty, at start | {:.0} KiB | |", kb(empty_store));
        println!(
            "| every run recorded (live) | {:.1} MiB | {:.2} KiB |",
            kb(live) / 1024.0,
            kb(live - empty_store) / done as f64
        );
        println!(
            "| the same, compacted (`store compact` on a copy) | {:.1} MiB | {:.2} KiB |",
            kb(live_compacted) / 1024.0,
            kb(live_compacted - empty_store) / done as f64
        );
        println!(
            "| after a sweep of everything (space kept for reuse) | {:.1} MiB | |",
            kb(after) / 1024.0,
        );
        println!(
            "| then `store compact` | {:.0} KiB | {:.0}% of the empty store |",
            kb(compacted.after),
            100.0 * compacted.after as f64 / empty_store as f64
        );
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
