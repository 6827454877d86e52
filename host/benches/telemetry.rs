//! What metrics and traces cost, end to end: signed webhooks over real HTTP → `hello` → run
//! recorded, sled on disk. The setups being compared run **at the same time**, each with its
//! own load, so this VM's drift (its speed wanders by ±20 % within minutes) hits them alike;
//! measured in turns, the drift between turns was as large as the effect measured.
//!
//! 1. **Metrics**, in this process: two hosts, each on a tokio runtime of its own (2
//!    workers, named, so each one's CPU is read from its own threads in `/proc`); one
//!    records nothing (no recorder: the pipeline bench's setting), the other records every
//!    metric into the host's Prometheus recorder (installed on its threads).
//! 2. **Traces**, with the real binary: four `switchboard serve` processes (metrics on, as
//!    always): one without traces; one with `[telemetry] otlp_endpoint` exporting every span
//!    (no rate limit) over OTLP/HTTP to a receiver in this process (which reads and drops
//!    them), each run joined to its webhook's trace; one with the defaults (every event
//!    traced up to 10 a second); and one keeping a tenth of the traces (`sample_ratio =
//!    0.1`). Each process's CPU time is read from `/proc`.
//!
//! Run with `cargo bench -p switchboard --bench telemetry` (prints Markdown tables);
//! `TELEMETRY_BENCH_ROUNDS` sets the rounds (5); `TELEMETRY_BENCH_PART=metrics` or `traces`
//! runs one part only.

mod common;

use common::{Host, SECRET, blast, prepare, start, succeeded, switchboard_host};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use switchboard::pipeline::Pipeline;

const WARMUP: usize = 2_000;
const REQUESTS: usize = 10_000;

/// CPU seconds (user + system) so far of process `pid` (`/proc/<pid>/stat`) or one of its
/// threads (`<pid>/task/<tid>`).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds so far of this process's threads whose name starts with `prefix`.
fn threads_cpu_seconds(prefix: &str) -> f64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .map(|task| cpu_seconds(&format!("self/task/{}", task.file_name().to_string_lossy())))
        .sum()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// One setup's measurements.
#[derive(Default)]
struct Rounds {
    rates: Vec<f64>,
    cpu_us: Vec<f64>,
}

fn table(title: &str, rounds: usize, setups: &[(&str, &Rounds)]) {
    let base = setups[0].1;
    let vs = |mine: &[f64], base: &[f64]| {
        let ratios: Vec<f64> = mine.iter().zip(base).map(|(m, b)| m / b - 1.0).collect();
        median(&ratios) * 100.0
    };
    println!(
        "\n| {title} | events/s (median of {rounds}) | vs {0} | CPU µs per event (median) | vs {0} (median of the rounds' ratios) | rounds (CPU µs per event) |",
        setups[0].0
    );
    println!("|---|---:|---:|---:|---:|---|");
    for (name, r) in setups {
        println!(
            "| {name} | {:.0} | {:+.1} % | {:.0} | {:+.1} % | {} |",
            median(&r.rates),
            vs(&r.rates, &base.rates),
            median(&r.cpu_us),
            vs(&r.cpu_us, &base.cpu_us),
            r.cpu_us
                .iter()
                .map(|c| format!("{c:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

// ---- 1. metrics, in process ----

/// A host with `hello` on its own runtime, whose threads (named `name`, kept while the
/// bench runs so none takes its CPU time away with it) run `on_thread` first.
struct InProcess {
    name: &'static str,
    rt: tokio::runtime::Runtime,
    url: String,
    pipeline: Arc<Pipeline>,
    done: usize,
}

impl InProcess {
    fn new(
        name: &'static str,
        dir: &Path,
        plugins: &Path,
        on_thread: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .thread_keep_alive(Duration::from_secs(24 * 3600))
            .enable_all()
            .on_thread_start(on_thread)
            .build()
            .unwrap();
        let (url, pipeline) = rt.block_on(switchboard_host(dir, plugins));
        let url = format!("{url}/hooks/bench");
        InProcess {
            name,
            rt,
            url,
            pipeline,
            done: 0,
        }
    }

    /// Send `n` webhooks and wait until each one's run is recorded; (events/s, CPU µs per
    /// event of this host's threads: its runtime's, which also run the client sending to
    /// it, the same share for every setup).
    fn round(&mut self, n: usize, tag: &str) -> (f64, f64) {
        let requests = prepare(n, tag);
        let (cpu, started) = (threads_cpu_seconds(self.name), Instant::now());
        let (url, pipeline) = (self.url.clone(), self.pipeline.clone());
        self.done += n;
        let target = self.done;
        self.rt.block_on(async move {
            let (_, ok) = blast(&url, requests).await;
            assert_eq!(ok, n);
            while (pipeline.counters.succeeded.load(Ordering::Relaxed) as usize) < target {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        (
            n as f64 / started.elapsed().as_secs_f64(),
            (threads_cpu_seconds(self.name) - cpu) * 1e6 / n as f64,
        )
    }
}

/// One round of every host in `hosts` at the same time (each on a thread named after it).
fn together(hosts: &mut [&mut InProcess], n: usize, round: &str) -> Vec<(f64, f64)> {
    std::thread::scope(|scope| {
        let running: Vec<_> = hosts
            .iter_mut()
            .map(|host| {
                let tag = format!("{}{round}", host.name);
                std::thread::Builder::new()
                    .name(format!("{}-main", host.name))
                    .spawn_scoped(scope, move || host.round(n, &tag))
                    .unwrap()
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

// ---- 2. traces, with the real binary ----

/// A `switchboard serve` process, and how many of its runs are done.
struct Served {
    host: Host,
    done: u64,
}

impl Served {
    fn start(dir: &Path, name: &str, extra: &str) -> Served {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{name}\"\nplugins_dir = \"plugins\"\n\
                 [sources.bench]\nsecret = {{ file = \"bench.secret\" }}\n{extra}"
            ),
        )
        .unwrap();
        Served {
            host: start(dir, &config, None),
            done: 0,
        }
    }

    /// Send `n` webhooks and wait until each one's run is recorded; (events/s, the serve
    /// process's CPU µs per event).
    async fn round(&mut self, http: &reqwest::Client, n: usize, tag: &str) -> (f64, f64) {
        let pid = self.host.child.id().to_string();
        let requests = prepare(n, tag);
        let (cpu, started) = (cpu_seconds(&pid), Instant::now());
        let (_, ok) = blast(&format!("{}/hooks/bench", self.host.url), requests).await;
        assert_eq!(ok, n);
        self.done += n as u64;
        while succeeded(http, std::slice::from_ref(&self.host)).await < self.done {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (
            n as f64 / started.elapsed().as_secs_f64(),
            (cpu_seconds(&pid) - cpu) * 1e6 / n as f64,
        )
    }
}

/// An OTLP/HTTP receiver on its own thread that reads each export and drops it; the bytes
/// it got.
fn receiver() -> (String, Arc<AtomicU64>) {
    let got = Arc::new(AtomicU64::new(0));
    let sink = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/v1/traces",
                    axum::routing::post(move |body: axum::body::Bytes| {
                        sink.fetch_add(body.len() as u64, Ordering::Relaxed);
                        async { axum::http::StatusCode::OK }
                    }),
                )
                .layer(axum::extract::DefaultBodyLimit::disable());
            let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", socket.local_addr().unwrap()))
                .unwrap();
            axum::serve(socket, app).await.unwrap();
        });
    });
    (rx.recv().unwrap(), got)
}

fn main() {
    let rounds: usize = std::env::var("TELEMETRY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let plugins: PathBuf = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(switchboard_test_guests::HELLO, plugins.join("hello.wasm")).unwrap();
    std::fs::write(dir.path().join("bench.secret"), SECRET).unwrap();

    // `TELEMETRY_BENCH_PART=traces` (or `metrics`) runs one part only.
    let part = std::env::var("TELEMETRY_BENCH_PART").unwrap_or_default();
    if part != "traces" {
        metrics_part(rounds, dir.path(), &plugins);
    }
    if part != "metrics" {
        traces_part(rounds, dir.path());
    }
}

/// 1. Metrics off and on, in this process.
fn metrics_part(rounds: usize, dir: &Path, plugins: &Path) {
    let mut off = InProcess::new("metrics-off", &dir.join("off"), plugins, || {});
    let recorder = switchboard::server::metrics::recorder();
    let handle = recorder.handle();
    let recorder: &'static _ = Box::leak(Box::new(recorder));
    let mut on = InProcess::new("metrics-on", &dir.join("on"), plugins, move || {
        std::mem::forget(metrics::set_default_local_recorder(recorder))
    });
    together(&mut [&mut off, &mut on], WARMUP, "w");
    let (mut r_off, mut r_on) = (Rounds::default(), Rounds::default());
    for round in 0..rounds {
        let got = together(&mut [&mut off, &mut on], REQUESTS, &round.to_string());
        for (r, (rate, cpu)) in [&mut r_off, &mut r_on].into_iter().zip(got) {
            r.rates.push(rate);
            r.cpu_us.push(cpu);
        }
    }
    // The recorder saw every run (else this measured nothing).
    let runs = format!(
        "switchboard_runs_total{{recipe=\"hello\",trigger=\"webhook\",outcome=\"succeeded\"}} {}",
        on.done
    );
    assert!(handle.render().contains(&runs), "{}", handle.render());
    table(
        "in process (sled, 2 workers)",
        rounds,
        &[("no metrics", &r_off), ("metrics", &r_on)],
    );
    drop((off, on));
}

/// 2. Traces off and on, `switchboard serve` processes.
fn traces_part(rounds: usize, dir: &Path) {
    let (otlp, exported) = receiver();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut plain = Served::start(dir, "plain", "");
    let mut traced = Served::start(
        dir,
        "traced",
        &format!("[telemetry]\notlp_endpoint = \"{otlp}\"\nmax_traces_per_second = 1000000\n"),
    );
    let mut bounded = Served::start(
        dir,
        "bounded",
        &format!("[telemetry]\notlp_endpoint = \"{otlp}\"\n"),
    );
    let mut sampled = Served::start(
        dir,
        "sampled",
        &format!("[telemetry]\notlp_endpoint = \"{otlp}\"\nsample_ratio = 0.1\n"),
    );
    let (mut r_plain, mut r_traced, mut r_bounded, mut r_sampled) = (
        Rounds::default(),
        Rounds::default(),
        Rounds::default(),
        Rounds::default(),
    );
    rt.block_on(async {
        let http = reqwest::Client::new();
        tokio::join!(
            plain.round(&http, WARMUP, "pw"),
            traced.round(&http, WARMUP, "tw"),
            bounded.round(&http, WARMUP, "bw"),
            sampled.round(&http, WARMUP, "sw"),
        );
        for round in 0..rounds {
            let tags = ["p", "t", "b", "s"].map(|t| format!("{t}{round}"));
            let got = tokio::join!(
                plain.round(&http, REQUESTS, &tags[0]),
                traced.round(&http, REQUESTS, &tags[1]),
                bounded.round(&http, REQUESTS, &tags[2]),
                sampled.round(&http, REQUESTS, &tags[3]),
            );
            for (r, (rate, cpu)) in [&mut r_plain, &mut r_traced, &mut r_bounded, &mut r_sampled]
                .into_iter()
                .zip([got.0, got.1, got.2, got.3])
            {
                r.rates.push(rate);
                r.cpu_us.push(cpu);
            }
        }
    });
    table(
        "`switchboard serve` (sled; CPU: the serve process)",
        rounds,
        &[
            ("metrics", &r_plain),
            ("metrics + OTLP traces, all", &r_traced),
            ("metrics + OTLP traces, default (≤ 10 a second)", &r_bounded),
            ("metrics + OTLP traces, 10 % sampled", &r_sampled),
        ],
    );
    // Spans are sent every 5 s: give the last batch time to leave.
    std::thread::sleep(Duration::from_secs(6));
    let bytes = exported.load(Ordering::Relaxed);
    assert!(bytes > 0, "no span reached the OTLP receiver");
    println!(
        "\nOTLP receiver: {:.1} MiB of spans from the traced hosts.",
        bytes as f64 / (1024.0 * 1024.0)
    );
}
