//! One host on sled against PostgreSQL with one and with three hosts, end to end, side by
//! side in one run on this machine: real `switchboard serve` processes (this build's
//! binary), a throwaway PostgreSQL cluster on the same cores, the same signed webhooks
//! (64 connections, spread over the hosts in turn), timed until every `hello` run is
//! recorded as succeeded. Also each webhook's answer time (p50, p99) and, for PostgreSQL,
//! the statements it executed per event (`pg_stat_statements`).
//!
//! Every round starts with the database vacuumed (a `VACUUM`, not timed), so no round pays
//! for the rows the one before it left.
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
//! round's n costliest statements, with the buffers each read per call, and at the end how
//! often each index of the run table was read (to stderr). Every round of several hosts
//! also prints how many runs each host ran (a recipe's runs gather on one host).
//!
//! The `floor` setup is the baseline for PostgreSQL's share: no host, `pgbench` (from the
//! same binaries) writing, in the same cluster and schema layout, only the rows an event
//! leaves — its event, delivery mark and run in an accept, the run claimed, its counter
//! added to (one statement each, on one key, as `hello` does), the run settled with its
//! log and attempt — in batches of 4 (the default concurrency, so settles batch at most
//! that) and of 32, 4 clients, commits as the hosts make them. What a host's PostgreSQL CPU
//! per event costs above it is the pipeline's own (claims' checks, leases, hand-overs).

mod common;

use common::{Host, Prepared, SECRET, prepare, start, succeeded, succeeded_each};
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

/// CPU seconds (user + system) used so far by the processes `pick` chooses, by name and pid,
/// and by their children that have exited.
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
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state; then
        // cutime and cstime, the CPU of its children that exited and were waited for: the
        // PostgreSQL backends and autovacuum workers that end during a round are counted
        // through their postmaster (not counting them read -1 µs once).
        total += (tick(11) + tick(12) + tick(13) + tick(14)) / TICKS;
    }
    total
}

/// The floor's `pgbench` script: one transaction is `batch` events' rows, written as the
/// hosts write them (accepts commit synchronously; claims, counters and settles not).
fn floor_script(batch: usize) -> String {
    let ids = format!("(SELECT :k::text || '-' || g AS id FROM generate_series(1, {batch}) g) s");
    let mut script = vec![
        "\\set k random(1, 900000000000000)".to_string(),
        "BEGIN;".into(),
        format!(
            "INSERT INTO events SELECT 'e' || s.id, 'forms', 'thing.happened', \
             '2026-12-03T00:00:00Z', repeat('x', 120), 'd' || s.id, 1, 86400000 FROM {ids};"
        ),
        format!("INSERT INTO deliveries SELECT 'forms', 'd' || s.id, 'e' || s.id, 1 FROM {ids};"),
        format!(
            "INSERT INTO runs (id, event_id, plugin, source, kind, status, seq, created_ms, \
             updated_ms, due_ms) SELECT 'r' || s.id, 'e' || s.id, 'hello', 'forms', \
             'thing.happened', 'queued', nextval('run_seq'), 1, 1, 1 FROM {ids};"
        ),
        "COMMIT;".into(),
        "BEGIN;".into(),
        "SET LOCAL synchronous_commit = off;".into(),
        format!(
            "UPDATE runs SET status = 'running', attempts = attempts + 1, started_ms = 2, \
             updated_ms = 2, due_ms = 30002, lease_token = nextval('lease_tokens'), \
             lease_holder = 'h' WHERE id IN (SELECT 'r' || s.id FROM {ids});"
        ),
        "COMMIT;".into(),
    ];
    for _ in 0..batch {
        script.extend([
            "BEGIN;".to_string(),
            "SET LOCAL synchronous_commit = off;".into(),
            "UPDATE kv SET value = convert_to((convert_from(value, 'UTF8')::bigint + 1)::text, \
             'UTF8') WHERE recipe = 'hello' AND key = 'count';"
                .into(),
            "COMMIT;".into(),
        ]);
    }
    script.extend([
        "BEGIN;".to_string(),
        "SET LOCAL synchronous_commit = off;".into(),
        format!(
            "UPDATE runs SET status = 'succeeded', updated_ms = 3, finished_ms = 3, \
             due_ms = NULL, lease_token = NULL, lease_holder = NULL, \
             detail = '{{\"duration_us\":250}}' WHERE id IN (SELECT 'r' || s.id FROM {ids});"
        ),
        format!("INSERT INTO run_logs SELECT 'r' || s.id, repeat('l', 60) FROM {ids};"),
        format!(
            "INSERT INTO run_attempts (run_id, record) SELECT 'r' || s.id, repeat('a', 160) \
             FROM {ids};"
        ),
        "COMMIT;".into(),
    ]);
    script.join("\n") + "\n"
}

/// One floor measurement: `pgbench` for `seconds` with `batch`-event transactions, in
/// schema `floor` of `cluster`. Returns (events/s, PostgreSQL CPU seconds per event), or
/// why it could not run.
fn floor(cluster: &Cluster, work: &Path, batch: usize, seconds: u32) -> Result<(f64, f64), String> {
    // Beside the server binaries, else on the PATH (Debian's wrapper picks the version).
    let path = std::env::var_os("PATH").unwrap_or_default();
    let pgbench = switchboard::postgres::cluster::bin_dir()
        .into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("pgbench"))
        .find(|p| p.is_file())
        .ok_or("no pgbench beside the PostgreSQL server binaries or on the PATH")?;
    let script = work.join(format!("floor-{batch}.sql"));
    std::fs::write(&script, floor_script(batch)).map_err(|e| e.to_string())?;
    let pg_cpu = || cpu_seconds(|comm, _| comm == "postgres");
    let before = pg_cpu();
    let out = std::process::Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-c", "4", "-j", "2", "-T"])
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&script)
        .args(["-h", "127.0.0.1", "-U", "switchboard", "-p"])
        .arg(cluster.port.to_string())
        .arg("postgres")
        .env("PGOPTIONS", "-c search_path=floor")
        .output()
        .map_err(|e| format!("pgbench: {e}"))?;
    let used = pg_cpu() - before;
    let text = String::from_utf8_lossy(&out.stdout);
    let transactions: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse().ok())
        .filter(|_| out.status.success())
        .ok_or_else(|| format!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr)))?;
    let events = transactions * batch as f64;
    Ok((events / f64::from(seconds), used / events))
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
        let floor_ready = chosen("floor") && {
            // The floor's schema: the hosts' tables, and the counter `hello` adds to.
            let config = switchboard::postgres::PgConfig {
                url: cluster.url.clone(),
                schema: "floor".into(),
                pool_size: 2,
            };
            let backend = switchboard::postgres::PgBackend::open(&config)
                .await
                .expect("the floor's schema");
            drop(backend);
            testing::execute(
                &cluster.url,
                "INSERT INTO floor.kv (recipe, key, value) VALUES ('hello', 'count', '1000')",
            )
            .await;
            true
        };
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
                // What the setup before left to vacuum is paid now, not in this round.
                testing::execute(&cluster.url, "VACUUM").await;
                if *postgres {
                    testing::reset_statement_counts(&cluster.url).await;
                }
                let pids: Vec<u32> = hosts.iter().map(|h| h.child.id()).collect();
                let host_cpu = || cpu_seconds(|_, pid| pids.contains(&pid));
                let pg_cpu = || cpu_seconds(|comm, _| comm == "postgres");
                let ran_before = succeeded_each(&http, hosts).await;
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
                // Read after the round's CPU and statements, so they do not count it.
                if hosts.len() > 1 {
                    let ran = succeeded_each(&http, hosts).await;
                    let each: Vec<String> =
                        (ran.iter().zip(&ran_before)).map(|(a, b)| (a - b).to_string()).collect();
                    eprintln!("{name}, round {}: runs each host ran: {}", round + 1, each.join(" / "));
                }
                let rate = REQUESTS as f64 / total.as_secs_f64();
                rates[i].push(rate);
                println!(
                    "| {} | {name} | {rate:.0} | {:.1} ms | {:.1} ms | {host_used} | {pg_used} | {statements} |",
                    round + 1,
                    percentile(&mut times, 0.5).as_secs_f64() * 1e3,
                    percentile(&mut times, 0.99).as_secs_f64() * 1e3,
                );
            }
            for batch in [4, 32].into_iter().filter(|_| floor_ready) {
                testing::execute(&cluster.url, "VACUUM").await;
                match floor(&cluster, work, batch, 10) {
                    Ok((rate, cpu)) => println!(
                        "| {} | floor: PostgreSQL alone, batches of {batch} | {rate:.0} | — | — | — | {:.0} µs | {:.1} |",
                        round + 1,
                        cpu * 1e6,
                        // Statements per event: the accept's 3, the claim, the settle's 3
                        // per batch; a counter each (BEGIN, SET and COMMIT not counted).
                        7.0 / batch as f64 + 1.0,
                    ),
                    Err(why) => println!("floor, batches of {batch}: not measured ({why})"),
                }
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
        if top > 0 {
            eprintln!("Index reads of the run table, over every round:");
            for line in testing::run_index_scans(&cluster.url).await {
                eprintln!("  {line}");
            }
        }
        drop(setups);
        drop(cluster);
    });
}
