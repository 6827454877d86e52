//! What the benchmarks that post webhooks share: signed requests, built before timing, and
//! a client that sends them. (Each bench uses a part of it.)
#![allow(dead_code)]

use axum::body::Bytes;
use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::ingest::verify::StandardVerifier;
use switchboard::ingest::{SourceConfig, Sources};
use switchboard::pipeline::backend::Backend;
use switchboard::pipeline::registry::Registry;
use switchboard::pipeline::{Pipeline, PipelineOptions};
use switchboard::runtime::{Runtime, RuntimeOptions};
use switchboard::secrets::SecretSource;
use switchboard::server::{AppState, spawn_local};
use switchboard::sled::SledBackend;
use switchboard::vendors::Connections;

/// The Standard Webhooks secret of the benchmarks' `bench` source.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook ready to send.
pub struct Prepared {
    pub body: Bytes,
    pub headers: [(String, String); 3],
}

/// Signed requests, unique ids, built before timing.
pub fn prepare(n: usize, tag: &str) -> Vec<Prepared> {
    let key = StandardVerifier::decode_secret(SECRET).unwrap();
    let ts = chrono::Utc::now().timestamp();
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"type":"lead.created","lead":{{"id":"{tag}-{i}","name":"Ada Lovelace","phone":"+13035550100","source":"web form"}}}}"#
            );
            let id = format!("msg_{tag}_{i}");
            let signature = StandardVerifier::sign(&key, &id, ts, body.as_bytes());
            Prepared {
                body: Bytes::from(body),
                headers: [
                    ("webhook-id".into(), id),
                    ("webhook-timestamp".into(), ts.to_string()),
                    ("webhook-signature".into(), signature),
                ],
            }
        })
        .collect()
}

/// Requests in flight at once.
pub const CONCURRENCY: usize = 64;

/// Send every request with `CONCURRENCY` in flight; returns (elapsed, accepted).
pub async fn blast(url: &str, requests: Vec<Prepared>) -> (Duration, usize) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, queue, url) = (client.clone(), queue.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            loop {
                let Some(r) = queue.lock().unwrap().pop() else {
                    break;
                };
                let mut request = client.post(&url).body(r.body);
                for (k, v) in &r.headers {
                    request = request.header(k, v);
                }
                let response = request.send().await.unwrap();
                if response.status() == StatusCode::ACCEPTED {
                    accepted += 1;
                }
                let _ = response.bytes().await;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    (started.elapsed(), accepted)
}

/// A switchboard host with the plugins in `plugins` (a folder).
pub async fn switchboard_host(dir: &Path, plugins: &Path) -> (String, Arc<Pipeline>) {
    let options = RuntimeOptions {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeOptions::default()
    };
    let backend = SledBackend::open(&dir.join("store")).unwrap();
    let runtime =
        Arc::new(Runtime::new(options, backend.recipe_store(), Connections::default()).unwrap());
    let registry = Registry::open(runtime.clone(), plugins.to_owned()).await;
    let pipeline = Pipeline::start(runtime, registry, backend, PipelineOptions::default());
    let secret_file = dir.join("bench.secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let sources = Sources::from_config(&BTreeMap::from([(
        "bench".to_string(),
        SourceConfig {
            secret: Some(SecretSource::File(secret_file)),
            ..SourceConfig::default()
        },
    )]))
    .unwrap();
    // The real accept loop (timeouts, connection cap), as `switchboard serve` runs it.
    let url = spawn_local(AppState::new(pipeline.clone(), sources, None))
        .await
        .unwrap();
    (url, pipeline)
}

/// The admin token of the benchmarks' `switchboard serve` processes.
pub const TOKEN: &str = "bench-admin-token";

/// A `switchboard serve` process.
pub struct Host {
    pub child: Child,
    pub url: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path, config: &Path, database: Option<&str>) -> Host {
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

pub async fn succeeded(http: &reqwest::Client, hosts: &[Host]) -> u64 {
    succeeded_each(http, hosts).await.into_iter().sum()
}

/// Runs each of `hosts` has recorded as succeeded (each host counts the runs it ran).
pub async fn succeeded_each(http: &reqwest::Client, hosts: &[Host]) -> Vec<u64> {
    let mut each = Vec::new();
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
        each.push(health["counters"]["succeeded"].as_u64().unwrap());
    }
    each
}
