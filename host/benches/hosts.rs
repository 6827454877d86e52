//! One host on sled against PostgreSQL with one and with three hosts, end to end, side by
//! side in one run on this machine: real `switchboard serve` processes (this build's
//! binary), a throwaway PostgreSQL cluster on the same cores, the same signed webhooks
//! (64 connections, spread over the hosts in turn), timed until every `hello` run is
//! recorded as succeeded. Also each webhook's answer time (p50, p99) and, for PostgreSQL,
//! the statements it executed per event (`pg_stat_statements`).
//!
//! Each round also reads the CPU time the host processes and the PostgreSQL server processes
//! used, per event (from `/proc`), which is what the capacity model is built from.
//!
//! Run with `cargo bench -p switchboard --bench hosts` (prints Markdown tables; needs the
//! PostgreSQL server binaries, as the tests do). `HOSTS_BENCH_SETUPS=sled,pg1,pg3` picks
//! setups, `HOSTS_BENCH_ROUNDS=n` the rounds, `HOSTS_BENCH_PIPELINE="per_plugin = 16"` sets
//! `[pipeline]` options of every host (`;` between several), `HOSTS_BENCH_PG=name=value` one
//! more server setting (the cluster runs with `autovacuum_naptime=5s`, as the README
//! recommends), `HOSTS_BENCH_TOP=n` prints each PostgreSQL
//! round's n costliest statements (to stderr).

mod common;

use common::{Host, Prepared, SECRET, prepare, start, succeeded};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::postgres::{cluster::Cluster, testing};

const CONCURRENCY: usize = 64;
const WARMUP: usize = 2_000;
const REQUESTS: usize = 20_000;
const ROUNDS: usize = 3;
/// Send every request, `CONCURRENCY` in flight, to the hosts in turn; returns (elapsed,
/// each answer's time).
async fn blast(urls: &[String], requests: Vec<Prepared>) -> (Duration, Vec<Duration>) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..CONCURRENCY {
        let (client, queue) = (client.clone(), queue.clone());
        let url = format!("{}/hooks/bench", urls[n % urls.len()]);
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let Some(r) = queue.lock().unwrap().pop() else {
                    break;
                };
                let sent = Instant::now();
                let mut request = client.post(&url).body(r.body);
                for (k, v) in &r.headers {
                    request = request.header(k, v);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 202);
                let _ = response.bytes().await;
                times.push(sent.elapsed());
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    (started.elapsed(), times)
}

/// Runs succeeded so far, over `hosts` (each host counts its own).
async fn wait_for(http: &reqwest::Client, hosts: &[Host], target: u64) {
    while succeeded(http, hosts).await < target {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * p) as usize]
}

/// `[pipeline]` settings from `HOSTS_BENCH_PIPELINE` (say `per_plugin = 16`), none by default.
fn pipeline() -> String {
    std::env::var("HOSTS_BENCH_PIPELINE")
        .map(|p| format!("[pipeline]\n{}\n", p.replace(';', "\n")))
        .unwrap_or_default()
}

fn config(dir: &Path, name: &str, store: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{name}\"\nplugins_dir = \"plugins\"\n{store}\n\
             [sources.bench]\nsecret = {{ file = \"bench.secret\" }}\n{}",
            pipeline()
        ),
    )
    .unwrap();
    path
}

/// CPU seconds (user + system) used so far by the processes `pick` chooses, by name and pid.
fn cpu_seconds(pick: impl Fn(&str, u32) -> bool) -> f64 {
    // Clock ticks per second: 100 on Linux for every architecture we run on.
    const TICKS: f64 = 100.0;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ..." — comm may hold spaces; fields count from after ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !pick(&stat[open + 1..close], pid) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state.
        total += (tick(11) + tick(12)) / TICKS;
    }
    total
}

/// The setups `HOSTS_BENCH_SETUPS` names (all when unset).
fn chosen(name: &str) -> bool {
    std::env::var("HOSTS_BENCH_SETUPS")
        .map(|v| v.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let rounds = env_number("HOSTS_BENCH_ROUNDS", ROUNDS);
    let top = env_number("HOSTS_BENCH_TOP", 0);
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        std::fs::create_dir_all(work.join("plugins")).unwrap();
        std::fs::copy(
            switchboard_test_guests::HELLO,
            work.join("plugins/hello.wasm"),
        )
        .unwrap();
        std::fs::write(work.join("bench.secret"), SECRET).unwrap();
        // With HOSTS_BENCH_TOP, statements inside functions are counted too (and so in the
        // statements per event).
        let track = if top > 0 { "all" } else { "top" };
        let track = format!("pg_stat_statements.track={track}");
        let extra = std::env::var("HOSTS_BENCH_PG").ok();
        let mut settings = vec![
            "shared_preload_libraries=pg_stat_statements",
            &track,
            // As the README recommends for Switchboard's database.
            "autovacuum_naptime=5s",
        ];
        settings.extend(extra.as_deref());
        let cluster = Cluster::start(None, &settings).expect("a PostgreSQL cluster");
        testing::enable_statement_counts(&cluster.url).await;
        let pg = |schema: &str| {
            format!("[store]\nbackend = \"postgres\"\nschema = \"{schema}\"\npool_size = 8")
        };
        let mut setups: Vec<(&str, Vec<Host>, bool)> = Vec::new();
        if chosen("sled") {
            let hosts = vec![start(work, &config(work, "sled", ""), None)];
            setups.push(("sled, 1 host", hosts, false));
        }
        if chosen("pg1") {
            let hosts = vec![start(work, &config(work, "one", &pg("one")), Some(&cluster.url))];
            setups.push(("PostgreSQL, 1 host", hosts, true));
        }
        if chosen("pg3") {
            let hosts = (0..3)
                .map(|n| {
                    start(
                        work,
                        &config(work, &format!("three{n}"), &pg("three")),
                        Some(&cluster.url),
                    )
                })
                .collect();
            setups.push(("PostgreSQL, 3 hosts", hosts, true));
        }
        let http = reqwest::Client::new();
        let mut done = vec![0u64; setups.len()];
        for (i, (_, hosts, _)) in setups.iter().enumerate() {
            let urls: Vec<String> = hosts.iter().map(|h| h.url.clone()).collect();
            blast(&urls, prepare(WARMUP, &format!("w{i}"))).await;
            done[i] += WARMUP as u64;
            wait_for(&http, hosts, done[i]).await;
        }
        println!("| round | setup | end to end (events/s) | webhook p50 | webhook p99 | host CPU per event | PostgreSQL CPU per event | PostgreSQL statements per event |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); setups.len()];
        for round in 0..rounds {
            for (i, (name, hosts, postgres)) in setups.iter().enumerate() {
                if *postgres {
                    testing::reset_statement_counts(&cluster.url).await;
                }
                let pids: Vec<u32> = hosts.iter().map(|h| h.child.id()).collect();
                let host_cpu = || cpu_seconds(|_, pid| pids.contains(&pid));
                let pg_cpu = || cpu_seconds(|comm, _| comm == "postgres");
                let (host_before, pg_before) = (host_cpu(), pg_cpu());
                let urls: Vec<String> = hosts.iter().map(|h| h.url.clone()).collect();
                let started = Instant::now();
                let (_, mut times) = blast(&urls, prepare(REQUESTS, &format!("r{round}s{i}"))).await;
                done[i] += REQUESTS as u64;
                wait_for(&http, hosts, done[i]).await;
                let total = started.elapsed();
                let per_event = |s: f64| format!("{:.0} µs", s * 1e6 / REQUESTS as f64);
                let host_used = per_event(host_cpu() - host_before);
                let (statements, pg_used) = if *postgres {
                    let n = testing::statement_count(&cluster.url).await;
                    if top > 0 {
                        eprintln!("{name}, round {}: the costliest statements", round + 1);
                        for line in testing::top_statements(&cluster.url, top).await {
                            eprintln!("  {line}");
                        }
                    }
                    (
                        format!("{:.1}", n as f64 / REQUESTS as f64),
                        per_event(pg_cpu() - pg_before),
                    )
                } else {
                    ("—".into(), "—".into())
                };
                let rate = REQUESTS as f64 / total.as_secs_f64();
                rates[i].push(rate);
                println!(
                    "| {} | {name} | {rate:.0} | {:.1} ms | {:.1} ms | {host_used} | {pg_used} | {statements} |",
                    round + 1,
                    percentile(&mut times, 0.5).as_secs_f64() * 1e3,
                    percentile(&mut times, 0.99).as_secs_f64() * 1e3,
                );
            }
        }
        println!();
        println!("| setup | median end to end (events/s) | vs the first setup |");
        println!("|---|---:|---:|");
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let medians: Vec<f64> = rates.iter_mut().map(median).collect();
        for (i, (name, _, _)) in setups.iter().enumerate() {
            println!("| {name} | {:.0} | {:.2}× |", medians[i], medians[i] / medians[0]);
        }
        let one = setups.iter().position(|s| s.0 == "PostgreSQL, 1 host");
        let three = setups.iter().position(|s| s.0 == "PostgreSQL, 3 hosts");
        if let (Some(one), Some(three)) = (one, three) {
            println!(
                "\n3 hosts vs 1 host on PostgreSQL: {:.2}×",
                medians[three] / medians[one]
            );
        }
        drop(setups);
        drop(cluster);
    });
}
