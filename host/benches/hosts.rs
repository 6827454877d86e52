//! One host on sled against PostgreSQL with one and with three hosts, end to end, side by
//! side in one run on this machine: real `switchboard serve` processes (this build's
//! binary), a throwaway PostgreSQL cluster on the same cores, the same signed webhooks
//! (64 connections, spread over the hosts in turn), timed until every `hello` run is
//! recorded as succeeded. Also each webhook's answer time (p50, p99) and, for PostgreSQL,
//! the statements it executed per event (`pg_stat_statements`).
//!
//! Run with `cargo bench -p switchboard --bench hosts` (prints Markdown tables; needs the
//! PostgreSQL server binaries, as the tests do).

mod common;

use common::{Prepared, SECRET, prepare};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::postgres::{cluster::Cluster, testing};

const CONCURRENCY: usize = 64;
const WARMUP: usize = 2_000;
const REQUESTS: usize = 20_000;
const ROUNDS: usize = 3;
const TOKEN: &str = "bench-admin-token";

/// A `switchboard serve` process.
struct Host {
    child: Child,
    url: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, config: &Path, database: Option<&str>) -> Host {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("--config")
        .arg(config)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("SWITCHBOARD_ADMIN_TOKEN", TOKEN)
        .env("SWITCHBOARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = database {
        command.env("SWITCHBOARD_DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("starting switchboard serve");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve printed where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("switchboard listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Host { child, url }
}

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
async fn succeeded(http: &reqwest::Client, hosts: &[Host]) -> u64 {
    let mut total = 0;
    for h in hosts {
        let health: serde_json::Value = http
            .get(format!("{}/admin/health", h.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        total += health["counters"]["succeeded"].as_u64().unwrap();
    }
    total
}

async fn wait_for(http: &reqwest::Client, hosts: &[Host], target: u64) {
    while succeeded(http, hosts).await < target {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(times: &mut [Duration], p: f64) -> Duration {
    times.sort();
    times[((times.len() - 1) as f64 * p) as usize]
}

fn config(dir: &Path, name: &str, store: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{name}\"\nplugins_dir = \"plugins\"\n{store}\n\
             [sources.bench]\nsecret = {{ file = \"bench.secret\" }}\n"
        ),
    )
    .unwrap();
    path
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
        let cluster = Cluster::start(None, &["shared_preload_libraries=pg_stat_statements"])
            .expect("a PostgreSQL cluster");
        testing::enable_statement_counts(&cluster.url).await;
        let pg = |schema: &str| {
            format!("[store]\nbackend = \"postgres\"\nschema = \"{schema}\"\npool_size = 8")
        };
        let sled = vec![start(work, &config(work, "sled", ""), None)];
        let one = vec![start(work, &config(work, "one", &pg("one")), Some(&cluster.url))];
        let three: Vec<Host> = (0..3)
            .map(|n| {
                start(
                    work,
                    &config(work, &format!("three{n}"), &pg("three")),
                    Some(&cluster.url),
                )
            })
            .collect();
        let http = reqwest::Client::new();
        let setups: [(&str, &Vec<Host>, bool); 3] = [
            ("sled, 1 host", &sled, false),
            ("PostgreSQL, 1 host", &one, true),
            ("PostgreSQL, 3 hosts", &three, true),
        ];
        let mut done = [0u64; 3];
        for (i, (_, hosts, _)) in setups.iter().enumerate() {
            let urls: Vec<String> = hosts.iter().map(|h| h.url.clone()).collect();
            blast(&urls, prepare(WARMUP, &format!("w{i}"))).await;
            done[i] += WARMUP as u64;
            wait_for(&http, hosts, done[i]).await;
        }
        println!("| round | setup | end to end (events/s) | webhook p50 | webhook p99 | PostgreSQL statements per event |");
        println!("|---|---|---:|---:|---:|---:|");
        let mut rates: [Vec<f64>; 3] = Default::default();
        for round in 0..ROUNDS {
            for (i, (name, hosts, postgres)) in setups.iter().enumerate() {
                if *postgres {
                    testing::reset_statement_counts(&cluster.url).await;
                }
                let urls: Vec<String> = hosts.iter().map(|h| h.url.clone()).collect();
                let started = Instant::now();
                let (_, mut times) = blast(&urls, prepare(REQUESTS, &format!("r{round}s{i}"))).await;
                done[i] += REQUESTS as u64;
                wait_for(&http, hosts, done[i]).await;
                let total = started.elapsed();
                let statements = if *postgres {
                    let n = testing::statement_count(&cluster.url).await;
                    format!("{:.1}", n as f64 / REQUESTS as f64)
                } else {
                    "—".into()
                };
                let rate = REQUESTS as f64 / total.as_secs_f64();
                rates[i].push(rate);
                println!(
                    "| {} | {name} | {rate:.0} | {:.1} ms | {:.1} ms | {statements} |",
                    round + 1,
                    percentile(&mut times, 0.5).as_secs_f64() * 1e3,
                    percentile(&mut times, 0.99).as_secs_f64() * 1e3,
                );
            }
        }
        println!();
        println!("| setup | median end to end (events/s) | vs sled |");
        println!("|---|---:|---:|");
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        let medians: Vec<f64> = rates.iter_mut().map(median).collect();
        for (i, (name, _, _)) in setups.iter().enumerate() {
            println!("| {name} | {:.0} | {:.2}× |", medians[i], medians[i] / medians[0]);
        }
        println!(
            "\n3 hosts vs 1 host on PostgreSQL: {:.2}×",
            medians[2] / medians[1]
        );
        drop((sled, one, three));
        drop(cluster);
    });
}
