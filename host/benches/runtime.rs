//! Per-event sandbox cost: instantiate + `handle` of the `hello` recipe.
//!
//! Side by side, in one run, on the same component and engine configuration:
//! - **bare wasmtime**: a plain `InstancePre` loop, WASI for stdio only, `kv` as an
//!   in-memory map and `log` as a no-op: the floor any host pays;
//! - **switchboard**: `Runtime::run`, with grants, sled-backed kv, a bounded run log,
//!   captured stdio, deadline and memory limiter.
//!
//! Run with `cargo bench -p switchboard --bench runtime` (prints a Markdown table).

use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::model::Event;
use switchboard::model::RecipeError;
use switchboard::runtime::bindings::types::{Error, Event as WitEvent, Outcome};
use switchboard::runtime::{Runtime, RuntimeOptions, engine_config};
use switchboard::store::Store;
use switchboard::vendors::{Call, Connections, Connector, HttpRequest, HttpResponse};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store as WasmStore};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

const WARMUP: usize = 2_000;
const EVENTS_PER_ROUND: usize = 5_000;
const ROUNDS: usize = 4;
/// Journaled calls flush the store: fewer samples.
const EFFECT_SAMPLES: usize = 1_000;

/// A vendor that answers every request at once, so the effect journal's cost stands alone.
struct Instant200;

#[async_trait::async_trait]
impl Connector for Instant200 {
    fn vendor(&self) -> &str {
        "instant"
    }

    async fn http(&self, _: &Call, _: HttpRequest) -> Result<HttpResponse, RecipeError> {
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: b"{}".to_vec(),
        })
    }
}

/// The cost of one call that changes a vendor: a raw `GET` (never journaled) against a
/// `POST` (journaled: intent flushed before it leaves, result after), both through the
/// probe guest to a vendor that answers at once; and one group-commit flush alone.
fn effect_journal(dir: &Path, options: &RuntimeOptions) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(&dir.join("effects-store")).unwrap();
    let mut connections = Connections::default();
    connections.insert("ghl", Arc::new(Instant200));
    let runtime = Runtime::new(options.clone(), Arc::new(store.clone()), connections).unwrap();
    let probe = rt
        .block_on(runtime.load(Path::new(switchboard_test_guests::PROBE)))
        .unwrap();
    let mut n = 0u64;
    let mut run = |op: &str| {
        n += 1;
        let event = Event::new(
            format!("bench-{n}"),
            "test",
            "probe",
            "2026-12-01T08:00:00Z",
            &json!({"op": op, "connection": "ghl", "path": "/contacts/"}),
        );
        let t = Instant::now();
        let report = rt.block_on(runtime.run(&probe, &event));
        assert!(report.outcome.is_some(), "{report:?}");
        t.elapsed()
    };
    for _ in 0..200 {
        run("http");
        run("http-post");
    }
    let (mut get, mut post) = (Vec::new(), Vec::new());
    for _ in 0..EFFECT_SAMPLES {
        get.push(run("http"));
        post.push(run("http-post"));
    }
    // A flush that has something to write, as the journal's has: one small record.
    let tree = store.db().open_tree("bench-flush").unwrap();
    let flush: Vec<Duration> = (0..EFFECT_SAMPLES)
        .map(|i| {
            let t = Instant::now();
            tree.insert(i.to_be_bytes(), &[0u8; 200][..]).unwrap();
            rt.block_on(store.commit()).unwrap();
            t.elapsed()
        })
        .collect();
    let journal = store.effects();
    let begin: Vec<Duration> = (0..EFFECT_SAMPLES as u32)
        .map(|i| {
            let fingerprint = [7u8; 32];
            let at = switchboard::store::effects::CallKey {
                run: "bench.begin",
                fingerprint: &fingerprint,
                occurrence: i,
            };
            let effect = switchboard::store::effects::Effect {
                call: "vendor-http.send POST".into(),
                connection: "ghl".into(),
                request: "ab".repeat(32),
                position: 0,
                state: switchboard::store::effects::EffectState::Sending,
                sent_at: "2026-12-01T08:00:00.000Z".into(),
                settled_at: None,
            };
            let t = Instant::now();
            rt.block_on(journal.begin(at, &effect)).unwrap();
            t.elapsed()
        })
        .collect();
    let (g, p, f, b) = (stats(get), stats(post), stats(flush), stats(begin));
    println!("
| one vendor call per event (probe, a vendor that answers at once) | median µs | p90 µs | mean µs |");
    println!("|---|---:|---:|---:|");
    for (name, s) in [
        ("raw `GET` (not journaled)", &g),
        ("raw `POST` (journaled: intent flushed first)", &p),
        ("one 200-byte write and a group-commit flush, alone", &f),
        (
            "the journal's intent alone (`Effects::begin`: write, flush)",
            &b,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            us(s.median),
            us(s.p90),
            us(s.mean)
        );
    }
    println!(
        "
journal cost (median POST − GET): {} µs = {:.2}× one flush",
        us(p.median.saturating_sub(g.median)),
        p.median.saturating_sub(g.median).as_secs_f64() / f.median.as_secs_f64()
    );
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
    kv: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

type KvResult<T> = Result<T, Error>;

fn bare_linker(engine: &Engine, component: &Component) -> Linker<Bare> {
    let mut linker: Linker<Bare> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    {
        let mut kv = linker.instance("switchboard:recipes/kv@0.4.0").unwrap();
        kv.func_wrap(
            "get",
            |store: wasmtime::StoreContextMut<'_, Bare>, (key,): (String,)| {
                let v = store.data().kv.lock().unwrap().get(&key).cloned();
                Ok((KvResult::Ok(v),))
            },
        )
        .unwrap();
        kv.func_wrap(
            "increment",
            |store: wasmtime::StoreContextMut<'_, Bare>, (key, delta): (String, i64)| {
                let mut map = store.data().kv.lock().unwrap();
                let sum = map
                    .get(&key)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                    .unwrap_or(0)
                    + delta;
                map.insert(key, sum.to_string().into_bytes());
                Ok((KvResult::<i64>::Ok(sum),))
            },
        )
        .unwrap();
        kv.func_wrap(
            "compare-and-swap",
            |store: wasmtime::StoreContextMut<'_, Bare>,
             (key, expected, new): (String, Option<Vec<u8>>, Option<Vec<u8>>)| {
                let mut map = store.data().kv.lock().unwrap();
                if map.get(&key) != expected.as_ref() {
                    return Ok((KvResult::Ok(false),));
                }
                match new {
                    Some(v) => map.insert(key, v),
                    None => map.remove(&key),
                };
                Ok((KvResult::Ok(true),))
            },
        )
        .unwrap();
    }
    linker
        .instance("switchboard:recipes/log@0.4.0")
        .unwrap()
        .func_wrap(
            "log",
            |_: wasmtime::StoreContextMut<'_, Bare>,
             _: (
                switchboard::runtime::bindings::switchboard::recipes::log::Level,
                String,
                Vec<(String, String)>,
            )| Ok(()),
        )
        .unwrap();
    linker.define_unknown_imports_as_traps(component).unwrap();
    linker
}

struct Stats {
    median: Duration,
    p90: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let sum: Duration = samples.iter().sum();
    Stats {
        median: samples[samples.len() / 2],
        p90: samples[samples.len() * 9 / 10],
        mean: sum / samples.len() as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

fn main() {
    let hello = switchboard_test_guests::HELLO;
    let dir = tempfile::tempdir().unwrap();
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().join("cache")),
        ..RuntimeOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Switchboard.
    let store = Store::open(&dir.path().join("store")).unwrap();
    let runtime = Runtime::new(options.clone(), Arc::new(store), Connections::default()).unwrap();
    let plugin = rt.block_on(runtime.load(Path::new(hello))).unwrap();
    let event = Event::new(
        "bench",
        "bench",
        "customer.updated",
        "2026-11-22T08:00:00Z",
        &json!({"customer": {"id": "cus_1", "first_name": "Ada"}}),
    );

    // Bare wasmtime, same engine configuration.
    let engine = Engine::new(&engine_config(&options)).unwrap();
    let component = Component::from_file(&engine, hello).unwrap();
    let linker = bare_linker(&engine, &component);
    let pre = linker.instantiate_pre(&component).unwrap();
    let bare_kv = Arc::new(Mutex::new(HashMap::new()));
    let wit_event = WitEvent {
        id: event.id.clone(),
        source: event.source.clone(),
        kind: event.kind.clone(),
        time: event.time.clone(),
        payload: event.payload.get().to_owned(),
    };

    let bare_once = || async {
        let mut store = WasmStore::new(
            &engine,
            Bare {
                wasi: WasiCtxBuilder::new().build(),
                table: ResourceTable::new(),
                kv: bare_kv.clone(),
            },
        );
        store.set_epoch_deadline(1_000_000);
        let instance = pre.instantiate_async(&mut store).await.unwrap();
        let handle = instance
            .get_typed_func::<(WitEvent,), (Result<Outcome, Error>,)>(&mut store, "handle")
            .unwrap();
        let (result,) = handle
            .call_async(&mut store, (wit_event.clone(),))
            .await
            .unwrap();
        assert!(result.is_ok());
    };
    let ours_once = || async {
        let report = runtime.run(&plugin, &event).await;
        assert!(report.outcome.is_some(), "{report:?}");
    };
    // The same host without the slow lane (no call hook, no guest-time accounting).
    let unlaned = Runtime::new(
        RuntimeOptions {
            slow_lane: 0,
            ..options.clone()
        },
        Arc::new(Store::open(&dir.path().join("store-unlaned")).unwrap()),
        Connections::default(),
    )
    .unwrap();
    let unlaned_plugin = rt.block_on(unlaned.load(Path::new(hello))).unwrap();
    let unlaned_once = || async {
        let report = unlaned.run(&unlaned_plugin, &event).await;
        assert!(report.outcome.is_some(), "{report:?}");
    };

    rt.block_on(async {
        for _ in 0..WARMUP {
            bare_once().await;
            ours_once().await;
            unlaned_once().await;
        }
    });
    let (mut bare, mut ours, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    // Interleaved event by event, the order rotating, so the machine's slow stretches and
    // warm caches fall on every row alike.
    for _ in 0..ROUNDS {
        rt.block_on(async {
            for i in 0..EVENTS_PER_ROUND {
                for row in 0..3 {
                    let t = Instant::now();
                    match (i + row) % 3 {
                        0 => bare_once().await,
                        1 => ours_once().await,
                        _ => unlaned_once().await,
                    }
                    let took = t.elapsed();
                    match (i + row) % 3 {
                        0 => bare.push(took),
                        1 => ours.push(took),
                        _ => plain.push(took),
                    }
                }
            }
        });
    }
    let (b, o, u) = (stats(bare), stats(ours), stats(plain));

    // Throughput of the full host on a 2-worker runtime.
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let runtime = Arc::new(runtime);
    let plugin = Arc::new(plugin);
    let total = 20_000;
    let started = Instant::now();
    mt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..8 {
            let (runtime, plugin) = (runtime.clone(), plugin.clone());
            let event = Event {
                kind: format!("kind-{w}"),
                ..event.clone()
            };
            tasks.push(tokio::spawn(async move {
                for _ in 0..total / 8 {
                    let r = runtime.run(&plugin, &event).await;
                    assert!(r.outcome.is_some());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let per_sec = total as f64 / started.elapsed().as_secs_f64();

    println!("| per event (instantiate + handle of hello) | median µs | p90 µs | mean µs |");
    println!("|---|---:|---:|---:|");
    println!(
        "| bare wasmtime (InstancePre loop, in-memory kv) | {} | {} | {} |",
        us(b.median),
        us(b.p90),
        us(b.mean)
    );
    println!(
        "| switchboard `Runtime::run` (sled kv, grants, limits, run log) | {} | {} | {} |",
        us(o.median),
        us(o.p90),
        us(o.mean)
    );
    println!(
        "| switchboard, slow lane off (`slow_lane = 0`) | {} | {} | {} |",
        us(u.median),
        us(u.p90),
        us(u.mean)
    );
    println!(
        "\nratio (median): {:.2}x the bare baseline; samples: {} each",
        o.median.as_secs_f64() / b.median.as_secs_f64(),
        ROUNDS * EVENTS_PER_ROUND
    );
    println!(
        "switchboard throughput, 2 tokio workers, 8 concurrent streams: {per_sec:.0} events/s"
    );
    effect_journal(dir.path(), &options);
}
