//! Several `switchboard serve` processes on one PostgreSQL database: webhooks to any host,
//! runs on any host, a host SIGKILLed and started again while events arrive; a run held by
//! a killed host is taken over once its lease expires.

use crate::faults::probe;
use crate::serve::Host;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use switchboard::pipeline::backend::{AttemptReport, Backend, BackendError, Settlement};
use switchboard_postgres::{PgBackend, PgConfig, testing};
use switchboard_test_guests::{PIPE, PROBE};

/// A work dir with the plugins and one config per host (each its own data dir for its
/// compiled-component cache), all on the schema of `db`.
fn cluster_setup(
    plugins: &[(&str, &str)],
    hosts: usize,
    db: &PgConfig,
    extra: &str,
) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for (name, path) in plugins {
        std::fs::copy(path, plugins_dir.join(format!("{name}.wasm"))).unwrap();
    }
    let configs = (0..hosts)
        .map(|n| {
            let config = dir.path().join(format!("host{n}.toml"));
            std::fs::write(
                &config,
                format!(
                    "data_dir = \"data{n}\"\nplugins_dir = \"{}\"\n\
                     [store]\nbackend = \"postgres\"\nschema = \"{}\"\npool_size = 4\n{extra}",
                    plugins_dir.display(),
                    db.schema
                ),
            )
            .unwrap();
            config
        })
        .collect();
    (dir, configs)
}

fn start(config: &Path, db: &PgConfig) -> Host {
    let url = db.url.clone();
    Host::start_with(config, move |c| {
        c.env("SWITCHBOARD_DATABASE_URL", url);
    })
}

const SOURCE: &str = r#"
[sources.test]
scheme = "none"
insecure = true
kind = "test.event"
delivery_id_field = "/n"
"#;

fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_one_database_a_host_killed_again_and_again_nothing_lost_or_repeated() {
    let sandbox = switchboard::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        switchboard::sandbox::SandboxKeys::default(),
    )
    .await
    .unwrap();
    // The customers the texts go to (the vendor texts only its customers).
    let http = reqwest::Client::new();
    for sender in 0..6u64 {
        for n in sender * 1_000 + 1..=sender * 1_000 + 80 {
            let created = http
                .post(format!("{}/customers", sandbox.base_url("homebase360")))
                .header("x-api-key", &sandbox.state.keys.homebase360)
                .json(&json!({"firstName": "T", "phone": {"mobile": format!("+1303555{n:04}")}}))
                .send()
                .await
                .unwrap()
                .status();
            assert!(created.is_success(), "creating a customer: {created}");
        }
    }
    // Every text takes 40 ms at the vendor, so runs overlap and concurrency shows.
    sandbox.state.set_faults(
        "homebase360",
        switchboard::sandbox::Faults {
            latency_ms: 40,
            ..Default::default()
        },
    );
    let db = testing::fresh_config("hosts");
    let (dir, configs) = cluster_setup(
        &[("probe", PROBE), ("pipe", PIPE)],
        3,
        &db,
        &format!(
            r#"{SOURCE}
[pipeline]
lease = "2s"
retry_base = "100ms"
retry_max = "500ms"
[plugins.probe]
concurrency = 3
connections = {{ wh = "hb" }}
[plugins.pipe]
cron = "* * * * * *"
[connections.hb]
vendor = "homebase360"
secret = {{ file = "hb.key" }}
base_url = "{}"
"#,
            sandbox.base_url("homebase360")
        ),
    );
    std::fs::write(dir.path().join("hb.key"), &sandbox.state.keys.homebase360).unwrap();
    let mut hosts: Vec<Option<Host>> = configs.iter().map(|c| Some(start(c, &db))).collect();
    let urls: Arc<std::sync::Mutex<Vec<String>>> = Arc::new(std::sync::Mutex::new(
        hosts
            .iter()
            .map(|h| h.as_ref().unwrap().url.clone())
            .collect(),
    ));

    // Six senders, each posting to the hosts in turn, keeping what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..6u64 {
        let (urls, stop) = (urls.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut acked = Vec::new();
            let mut n = sender * 1_000;
            while !stop.load(Ordering::Relaxed) && acked.len() < 40 {
                n += 1;
                let url = {
                    let urls = urls.lock().unwrap();
                    urls[n as usize % urls.len()].clone()
                };
                let body = json!({"n": n, "op": "sms", "connection": "wh", "to": format!("+1303555{n:04}")});
                match http
                    .post(format!("{url}/hooks/test"))
                    .body(body.to_string())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 202 => {
                        let ack: Value = r.json().await.unwrap();
                        acked.push((n, ack["event_id"].as_str().unwrap().to_string()));
                    }
                    // A host being killed or started: the sender tries the next one.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            acked
        }));
    }
    // Kill host 0 three times while the load runs, starting it again each time.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        hosts[0].take().unwrap().kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let host = start(&configs[0], &db);
        urls.lock().unwrap()[0] = host.url.clone();
        hosts[0] = Some(host);
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(acked.len() > 100, "only {} acknowledged", acked.len());

    // Every acknowledged event's two runs end, exactly once each, seen from any host.
    let any = hosts[1].as_ref().unwrap();
    let runs = any
        .wait_runs("source=test", "every run to finish", |runs| {
            runs.len() >= acked.len() * 2
                && runs
                    .iter()
                    .all(|r| r["status"] != "queued" && r["status"] != "running")
        })
        .await;
    let mut per_event: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &runs {
        assert!(
            per_event
                .entry(r["event_id"].as_str().unwrap())
                .or_default()
                .insert(r["plugin"].as_str().unwrap()),
            "two records of one run: {r}"
        );
        // A text whose answer was lost with a killed host is shown unconfirmed, never sent
        // again; every other run succeeded.
        assert!(
            r["status"] == "succeeded"
                || r["unconfirmed"].as_array().is_some_and(|u| !u.is_empty()),
            "{r}"
        );
    }
    for (n, id) in &acked {
        assert_eq!(
            per_event.get(id.as_str()).map(BTreeSet::len),
            Some(2),
            "acknowledged event {id} (n={n}) did not reach both recipes"
        );
    }
    // The same answers from another host.
    let other = hosts[2].as_ref().unwrap().runs("source=test").await;
    assert_eq!(other.len(), runs.len());

    // No text went out twice, and never more than the recipe's concurrency at once.
    let texts: Vec<String> = sandbox
        .state
        .exchanges("homebase360")
        .iter()
        .filter(|e| e.method == "POST" && e.path == "/messages")
        .map(|e| e.request.as_ref().unwrap()["mobilePhone"].to_string())
        .collect();
    let distinct: BTreeSet<&String> = texts.iter().collect();
    assert_eq!(distinct.len(), texts.len(), "a text was sent twice");
    // Each succeeded text run's text went out; one shown unconfirmed (its host killed
    // mid-call) may or may not have.
    let number: BTreeMap<&str, u64> = acked.iter().map(|(n, id)| (id.as_str(), *n)).collect();
    for r in runs
        .iter()
        .filter(|r| r["plugin"] == "probe" && r["status"] == "succeeded")
    {
        // (An event stored just as its host was killed was never acknowledged: its sender
        // would deliver it again.)
        let Some(n) = number.get(r["event_id"].as_str().unwrap()) else {
            continue;
        };
        assert!(
            distinct.contains(&format!("\"+1303555{n:04}\"")),
            "run {} succeeded but its text is not at the vendor",
            r["id"]
        );
    }
    let most = sandbox.state.max_in_flight("homebase360");
    assert!(
        (2..=3).contains(&most),
        "texts in flight at once: {most} (probe's concurrency is 3 over every host)"
    );

    // Cron: each tick fired once over three hosts, and scheduled runs never overlapped.
    let ticks = any.runs("plugin=pipe&source=cron").await;
    assert!(ticks.len() >= 2, "{ticks:?}");
    let mut deliveries = BTreeSet::new();
    let mut spans = Vec::new();
    for r in &ticks {
        let detail = any.run_detail(r).await;
        assert!(
            deliveries.insert(detail["event"]["delivery_id"].to_string()),
            "a tick fired twice: {detail}"
        );
        if let (Some(s), Some(f)) = (r["started_at"].as_str(), r["finished_at"].as_str()) {
            spans.push((ms(s), ms(f)));
        }
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping cron runs: {spans:?}");
    }
    drop(hosts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_a_killed_host_is_taken_over_after_its_lease_and_its_late_settle_refused() {
    let db = testing::fresh_config("takeover");
    let (_dir, configs) = cluster_setup(
        &[("pipe", PIPE)],
        2,
        &db,
        &format!("{SOURCE}\n[pipeline]\nlease = \"2s\"\n"),
    );
    let a = start(&configs[0], &db);
    let (status, ack) = a
        .hook("test", &[], &json!({"n": 1, "sleep_ms": 4000}).to_string())
        .await;
    assert_eq!(status, 202, "{ack}");
    let held = a
        .wait_runs("plugin=pipe", "the run to start on host A", |runs| {
            runs.first().is_some_and(|r| r["status"] == "running")
        })
        .await
        .remove(0);
    let old: switchboard::model::Lease =
        serde_json::from_value(held["lease"].clone()).expect("a running run shows its lease");
    a.kill();
    let killed_at = Instant::now();
    let b = start(&configs[1], &db);
    let done = b
        .wait_runs("plugin=pipe", "host B to take the run over", |runs| {
            runs.first().is_some_and(|r| r["status"] == "succeeded")
        })
        .await
        .remove(0);
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1000),
        "taken over before the lease could expire"
    );
    assert_eq!(
        done["attempts"], 2,
        "the killed host's attempt counts: {done}"
    );

    // Host A's settle, arriving late with its old lease: refused, the record unchanged.
    let store = PgBackend::open(&db).await.unwrap();
    let late = store
        .settle(
            &old,
            switchboard::model::now_ms(),
            Settlement::Failed(switchboard::model::RunError::Timeout { deadline_ms: 1 }),
            AttemptReport::default(),
        )
        .await;
    assert!(matches!(late, Err(BackendError::Stale { .. })), "{late:?}");
    let run = store.run(&old.run).await.unwrap().unwrap();
    assert_eq!(run.status, switchboard::model::RunStatus::Succeeded);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipe_paused_on_one_host_is_paused_on_every_host_and_across_a_restart() {
    let db = testing::fresh_config("paused");
    let (_dir, configs) = cluster_setup(&[("pipe", PIPE)], 2, &db, SOURCE);
    let a = start(&configs[0], &db);
    let mut b = start(&configs[1], &db);
    let (status, body) = a.admin("POST", "/admin/plugins/pipe/pause", None).await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    // Host B reads the store again within a second.
    b.wait_plugins("host B to see the pause", |p| {
        p["paused"] == json!(["pipe"])
    })
    .await;
    let (status, ack) = b.hook("test", &[], &json!({"n": 1}).to_string()).await;
    assert_eq!(status, 202, "{ack}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let runs = b.runs("plugin=pipe").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "queued", "a paused recipe ran: {runs:?}");
    // Still paused after both hosts restart.
    a.kill();
    b.kill();
    b = start(&configs[1], &db);
    let (_, plugins) = b.admin("GET", "/admin/plugins", None).await;
    assert_eq!(plugins["paused"], json!(["pipe"]), "{plugins}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(b.runs("plugin=pipe").await[0]["status"], "queued");
    let (status, body) = b.admin("POST", "/admin/plugins/pipe/resume", None).await;
    assert_eq!((status, &body["changed"]), (200, &json!(true)), "{body}");
    b.wait_runs("plugin=pipe", "the run to go once resumed", |runs| {
        runs.first().is_some_and(|r| r["status"] == "succeeded")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_store_copied_to_postgres_keeps_kv_deferred_runs_and_delivery_ids() {
    let (dir, config) = crate::serve::setup(&[("probe", PROBE), ("pipe", PIPE)], SOURCE);
    let host = Host::start(&config);
    // Recipe kv, a delivery id, a run deferred for a few seconds, some history.
    let set = probe(
        &host,
        json!({"op": "kv-set", "key": "greeting", "value": "hello"}),
    )
    .await;
    assert_eq!(set["status"], "succeeded", "{set}");
    let (status, first) = host.hook("test", &[], &json!({"n": 1}).to_string()).await;
    assert_eq!(status, 202, "{first}");
    let until = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() + 8, 0).unwrap();
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let (status, _) = host
        .hook(
            "test",
            &[],
            &json!({"n": 2, "defer_until": until}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    let deferred = host
        .wait_runs("plugin=pipe", "the deferral and the first run", |runs| {
            runs.iter()
                .any(|r| r["deferrals"] == 1 && r["status"] == "queued")
                && runs.iter().any(|r| r["status"] == "succeeded")
        })
        .await
        .into_iter()
        .find(|r| r["deferrals"] == 1)
        .unwrap();
    let (status, _) = host.admin("POST", "/admin/plugins/probe/pause", None).await;
    assert_eq!(status, 200);

    let db = testing::fresh_config("copied");
    let copy = |from: &str| {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args([
                "--config",
                "switchboard.toml",
                "store",
                "copy",
                "--from",
                from,
            ])
            .args(["--to", &db.url, "--schema", &db.schema])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // A store a host is using is never copied.
    let refused = copy("data");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is a host running on this store?"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(host.terminate(), "the sled host stops cleanly");
    let copied = copy("data");
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let said = String::from_utf8_lossy(&copied.stdout);
    assert!(
        said.contains("1 kv keys")
            && said.contains("(1 unfinished)")
            && said.contains("1 paused recipes"),
        "{said}"
    );
    // Into an empty schema only: a second copy is refused.
    let again = copy("data");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    // Served from PostgreSQL now.
    let pg = dir.path().join("pg.toml");
    std::fs::write(
        &pg,
        format!(
            "{}\n[store]\nbackend = \"postgres\"\nschema = \"{}\"\n",
            std::fs::read_to_string(&config)
                .unwrap()
                .replace("data_dir = \"data\"", "data_dir = \"data-pg\""),
            db.schema
        ),
    )
    .unwrap();
    let host = start(&pg, &db);
    let (_, plugins) = host.admin("GET", "/admin/plugins", None).await;
    assert_eq!(
        plugins["paused"],
        json!(["probe"]),
        "the pause is copied: {plugins}"
    );
    let (status, _) = host
        .admin("POST", "/admin/plugins/probe/resume", None)
        .await;
    assert_eq!(status, 200);
    let got = probe(&host, json!({"op": "kv-get", "key": "greeting"})).await;
    assert_eq!(got["status"], "succeeded", "{got}");
    assert!(
        got["outcome"].to_string().contains("hello"),
        "kv kept: {got}"
    );
    let (status, dup) = host.hook("test", &[], &json!({"n": 1}).to_string()).await;
    assert_eq!((status, &dup["duplicate"]), (202, &json!(true)), "{dup}");
    assert_eq!(
        dup["event_id"], first["event_id"],
        "the same event as before"
    );
    // The deferred run runs at its time, on the new store.
    let ran = host
        .wait_runs("plugin=pipe", "the deferred run to run", |runs| {
            runs.iter()
                .any(|r| r["id"] == deferred["id"] && r["status"] == "succeeded")
        })
        .await;
    let ran = ran.iter().find(|r| r["id"] == deferred["id"]).unwrap();
    assert_eq!(ran["deferrals"], 1, "{ran}");
    assert!(
        ms(ran["finished_at"].as_str().unwrap()) >= ms(&until),
        "not before its time: {ran}"
    );
    // New events get new ids after the copied ones.
    let (status, new) = host.hook("test", &[], &json!({"n": 3}).to_string()).await;
    assert_eq!(status, 202, "{new}");
    assert!(
        new["event_id"].as_str() > first["event_id"].as_str(),
        "{new}"
    );
}

#[test]
fn store_migrate_applies_the_migrations_once_and_a_missing_database_url_is_named() {
    let db = testing::fresh_config("migrate");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pg.toml"),
        format!(
            "[store]\nbackend = \"postgres\"\nschema = \"{}\"\n",
            db.schema
        ),
    )
    .unwrap();
    let migrate = |url: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        c.args(["--config", "pg.toml", "store", "migrate"])
            .current_dir(dir.path())
            .env_remove("SWITCHBOARD_DATABASE_URL");
        if let Some(url) = url {
            c.env("SWITCHBOARD_DATABASE_URL", url);
        }
        c.output().unwrap()
    };
    let first = migrate(Some(&db.url));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let every: Vec<String> = switchboard::postgres::migrations()
        .iter()
        .map(|m| m.version.to_string())
        .collect();
    assert!(every.len() >= 2, "the embedded migrations: {every:?}");
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        format!(
            "schema {}: applied migration(s) {}",
            db.schema,
            every.join(", ")
        )
    );
    let second = migrate(Some(&db.url));
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        format!("schema {}: up to date", db.schema)
    );
    let missing = migrate(None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains(
            "pg.toml: store.url: environment variable SWITCHBOARD_DATABASE_URL is not set"
        ),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // Nothing listens on port 1: unavailable (exit 3), the password never shown.
    let down = migrate(Some("postgres://u:hunter2secret@127.0.0.1:1/db"));
    assert_eq!(down.status.code(), Some(3));
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(said.contains("cannot connect"), "{said}");
    assert!(!said.contains("hunter2secret"), "{said}");
}
