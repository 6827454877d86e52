//! Faults a hostile recipe or client can cause, each reproduced against the real binary (or
//! the pipeline in-process, where the fault must be injected into host code) and shown
//! bounded: huge outcomes, log and kv floods, slow and idle clients, more connections than
//! the cap, a full disk, a panic in host code.

use crate::serve::{Host, setup};
use crate::support;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use switchboard_test_guests::{HELLO, PROBE};

/// `POST /admin/trigger` for the probe with `payload`, waiting for the run.
pub(crate) async fn probe(host: &Host, payload: Value) -> Value {
    let (status, body) = host
        .admin(
            "POST",
            "/admin/trigger",
            Some(json!({"plugin": "probe", "source": "test", "kind": "probe", "payload": payload, "wait": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    body["runs"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_outcome_a_log_flood_and_a_kv_flood_are_bounded_as_configured() {
    let (_dir, config) = setup(
        &[("probe", PROBE), ("hello", HELLO)],
        r#"
[runtime]
max_outcome_bytes = 65536
log_lines = 500
host_log_lines = 20
[plugins.probe]
memory_limit_mib = 256
kv_max_keys = 1000
kv_max_bytes = 1048576
"#,
    );
    let host = Host::start(&config);

    // A 40 MiB outcome and a 40 MiB error: kept to 64 KiB each, marked, and lists stay light.
    let big = 40 << 20;
    let run = probe(&host, json!({"op": "outcome", "bytes": big})).await;
    assert_eq!(run["status"], "succeeded", "{}", run["reason"]);
    let summary = run["outcome"]["summary"].as_str().unwrap();
    assert!(summary.len() < 65536 + 100, "{}", summary.len());
    assert!(
        summary.ends_with(&format!("[... cut: 65536 of {big} bytes kept]")),
        "{}",
        &summary[summary.len() - 60..]
    );
    let run = probe(&host, json!({"op": "fail", "bytes": big})).await;
    assert_eq!(run["status"], "failed");
    assert!(run["reason"].as_str().unwrap().len() < 65536 + 200);
    let list = reqwest::Client::new()
        .get(format!("{}/admin/runs?limit=100", host.url))
        .bearer_auth("test-admin-token")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        list.len() < 300 << 10,
        "a runs list of {} bytes",
        list.len()
    );

    // A log flood: the run keeps its first 500 lines and counts the rest; the host's own log
    // gets 20 of them.
    let line = "l".repeat(100);
    let run = probe(
        &host,
        json!({"op": "log-flood", "lines": 100_000, "bytes": 100}),
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let detail = host.run_detail(&run).await;
    assert_eq!(detail["run"]["logs"].as_array().unwrap().len(), 500);
    assert_eq!(detail["run"]["logs_dropped"], 100_000 - 500);
    let copied = host.log().lines().filter(|l| l.contains(&line)).count();
    assert_eq!(copied, 20, "lines of the flood in the host log");
    let show = host.cli(&["runs", "show", run["id"].as_str().unwrap()]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("(99500 more log line(s) dropped past the run's log limits)"),
        "{show}"
    );

    // A kv flood stops at the recipe's quota, with both numbers named; other recipes' kv
    // is untouched by it.
    let run = probe(&host, json!({"op": "kv-flood", "value_len": 1000})).await;
    let summary = run["outcome"]["summary"].as_str().unwrap();
    assert_eq!(
        summary,
        "1000 keys written, then: quota exceeded: recipe 'probe' kv would hold 1001 keys and 1015014 bytes; its quota is 1000 keys and 1048576 bytes (config [plugins.probe] kv_max_keys, kv_max_bytes)"
    );
    let (status, body) = host
        .admin(
            "POST",
            "/admin/trigger",
            Some(json!({"plugin": "hello", "kind": "after.flood", "wait": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["runs"][0]["status"], "succeeded", "{body}");

    // A deferred run is an answer: `trigger --wait` exits 0, as the server counts it.
    let event = _dir.path().join("defer.json");
    std::fs::write(
        &event,
        json!({"source": "test", "kind": "probe", "payload": {"op": "defer", "ms": 60000}})
            .to_string(),
    )
    .unwrap();
    let out = host.cli(&[
        "trigger",
        "probe",
        "--wait",
        "--event",
        event.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("queued"), "{stdout}");
}

/// Read until the peer closes the connection (or `limit` passes); returns what was read and
/// how long it took.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("the connection was still open after {limit:?}")
            }
            Err(_) => break, // reset: closed
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn connect(host: &Host) -> TcpStream {
    TcpStream::connect(host.url.trim_start_matches("http://")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_idle_and_oversized_clients_are_cut_off() {
    let (_dir, config) = setup(
        &[("hello", HELLO)],
        r#"
[server]
header_timeout = "1s"
body_timeout = "1s"
idle_timeout = "20s"
max_body_bytes = 1000
[sources.forms]
scheme = "none"
insecure = true
"#,
    );
    let host = Host::start(&config);
    let host = std::sync::Arc::new(host);
    let h = host.clone();
    tokio::task::spawn_blocking(move || {
        let host = &*h;
        // Headers at a trickle: cut off after the header timeout (1 s; the idle timeout is
        // 20 s), though bytes keep coming.
        let mut slow = connect(host);
        slow.write_all(b"POST /hooks/forms HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            std::thread::sleep(Duration::from_millis(200));
            if slow.write_all(b"X-Slow: 1\r\n").is_err() {
                break;
            }
        }
        let (_, _) = read_until_closed(&mut slow, Duration::from_secs(5));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a trickle of headers held the connection for {:?}",
            started.elapsed()
        );

        // A body that stalls: 408 after the body timeout.
        let mut stall = connect(host);
        stall
            .write_all(
                b"POST /hooks/forms HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"type\":",
            )
            .unwrap();
        let (answer, took) = read_until_closed(&mut stall, Duration::from_secs(6));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(took < Duration::from_secs(4), "{took:?}");

        // A Content-Length over the limit: 413 at once, the body never read.
        let mut huge = connect(host);
        huge.write_all(
            b"POST /hooks/forms HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
        )
        .unwrap();
        let (answer, took) = read_until_closed(&mut huge, Duration::from_secs(6));
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(took < Duration::from_millis(900), "{took:?}");

        // An unknown source: 404 without waiting for its body.
        let mut unknown = connect(host);
        unknown
            .write_all(b"POST /hooks/nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            .unwrap();
        let (answer, took) = read_until_closed(&mut unknown, Duration::from_secs(6));
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(took < Duration::from_millis(900), "{took:?}");
    })
    .await
    .unwrap();

    // Paths nobody serves are 404, not a request for the admin token.
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/admin/nothing"),
        ("GET", "/hooks"),
    ] {
        let response = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{}{path}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
    }
    // A source name from a client cannot forge a log line or reach a terminal.
    let response = reqwest::Client::new()
        .post(format!("{}/hooks/a%0Aforged%1B[31m", host.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let log = host.log();
    assert!(log.contains(r"a\nforged\u{1b}[31m"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("forged")), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    let health = host.admin("GET", "/admin/health", None).await.1;
    assert!(
        health["rejected"]["timed_out"].as_u64().unwrap() >= 1,
        "{health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_connections_than_the_cap_do_not_stop_good_webhooks() {
    let (_dir, config) = setup(
        &[("hello", HELLO)],
        "[sources.forms]\nscheme = \"none\"\ninsecure = true\nkind = \"form\"\n",
    );
    // The host may have 1,024 files open, as many machines allow; 1,100 clients connect
    // and sit idle.
    let host = Host::start_with(&config, |command| {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child before exec.
        unsafe {
            command.pre_exec(|| rlimit::setrlimit(rlimit::Resource::NOFILE, 1024, 1024));
        }
    });
    let addr = host.url.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..1100)
            .filter_map(|_| {
                TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2)).ok()
            })
            .collect()
    })
    .await
    .unwrap();
    assert!(idle.len() > 1024, "{} connected", idle.len());
    for i in 0..20 {
        let started = Instant::now();
        let (status, ack) = host.hook("forms", &[], &format!("{{\"n\": {i}}}")).await;
        assert_eq!(status, 202, "{ack}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    let health = host.admin("GET", "/admin/health", None).await.1;
    assert!(
        health["connections"]["evicted"].as_u64().unwrap() > 0,
        "{health}"
    );
    drop(idle);
    host.wait_runs("plugin=hello&status=succeeded", "20 runs", |runs| {
        runs.len() == 20
    })
    .await;
}

/// Mount a tmpfs of `mib` MiB at `dir`, if this process may (as root, with the capability).
fn mount_tmpfs(dir: &Path, mib: u32) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_intake_honestly_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk");
    if !mount_tmpfs(&disk, 64) {
        // Mounting needs root; CI runs as root, so there the test must run.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: this test needs to mount a tmpfs (run as root)"
        );
        println!(
            "skipped: a_full_disk_stops_intake_honestly_and_loses_nothing_acknowledged needs root to mount a tmpfs"
        );
        return;
    }
    let _unmount = Unmount(disk.clone());
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(HELLO, plugins.join("hello.wasm")).unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nplugins_dir = \"{}\"\n[pipeline]\ngrace = \"3s\"\n[sources.forms]\nscheme = \"none\"\ninsecure = true\nkind = \"form\"\n",
            disk.join("data").display(),
            plugins.display()
        ),
    )
    .unwrap();
    let mut host = Host::start(&config);
    let mut acked = Vec::new();
    for i in 0..20 {
        let (status, ack) = host.hook("forms", &[], &format!("{{\"n\": {i}}}")).await;
        assert_eq!(status, 202, "{ack}");
        acked.push(ack["event_id"].as_str().unwrap().to_string());
    }
    // The disk fills up.
    let filler = disk.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 20];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    drop(file);
    // Intake answers 503 (deliver again later), never 202 for what is not on disk, never 500.
    let mut refused = 0;
    for i in 20..60 {
        let (status, ack) = host.hook("forms", &[], &format!("{{\"n\": {i}}}")).await;
        match status {
            202 => acked.push(ack["event_id"].as_str().unwrap().to_string()),
            503 => refused += 1,
            other => panic!("{other}: {ack}"),
        }
        if refused >= 3 {
            break;
        }
    }
    assert!(refused >= 3, "a full disk never refused a webhook");
    // Not ready, and saying why; health says what failed.
    let (status, ready) = host.admin("GET", "/admin/ready", None).await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{ready}"
    );
    // The probe without the token says the same, as a category only (no error text).
    let readyz = reqwest::get(format!("{}/readyz", host.url)).await.unwrap();
    assert_eq!(readyz.status(), 503);
    assert_eq!(
        readyz.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"ready": false, "reason": "store failing"})
    );
    let (_, health) = host.admin("GET", "/admin/health", None).await;
    assert_eq!(health["status"], "failing", "{health}");
    assert_eq!(health["store"]["ok"], false, "{health}");
    // sled keeps failing until it is opened anew: the host stops, with a clear message and
    // the exit code a supervisor restarts on.
    let status = host.wait_status();
    assert_eq!(status.code(), Some(74), "{}", host.log());
    assert!(host.log().contains("the store failed"), "{}", host.log());

    // Space again; the supervisor starts the host: every acknowledged event runs.
    std::fs::remove_file(&filler).unwrap();
    let host = Host::start(&config);
    let runs = host
        .wait_runs("plugin=hello", "every acknowledged event's run", |runs| {
            runs.len() >= acked.len() && runs.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    for id in &acked {
        assert!(
            runs.iter().any(|r| r["event_id"] == id.as_str()),
            "lost {id}"
        );
    }
    let (status, _) = host.hook("forms", &[], "{\"n\": \"after\"}").await;
    assert_eq!(status, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_host_code_fails_that_run_and_frees_its_slot() {
    use switchboard::pipeline::registry::Registry;
    use switchboard::pipeline::{Incoming, Pipeline, PipelineOptions};
    use switchboard::vendors::Connections;

    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(PROBE, plugins.join("probe.wasm")).unwrap();
    // The probe's `ghl` connection is a double whose `/panic` panics in host code.
    let double = support::Double::new();
    let mut connections = Connections::default();
    connections.insert("ghl", double.clone());
    let backend = switchboard::sled::SledBackend::open(&dir.path().join("store")).unwrap();
    let runtime = std::sync::Arc::new(
        switchboard::runtime::Runtime::new(
            support::options(),
            switchboard::pipeline::backend::Backend::recipe_store(&*backend),
            connections,
        )
        .unwrap(),
    );
    let registry = Registry::open(runtime.clone(), plugins).await;
    let pipeline = Pipeline::start(
        runtime,
        registry,
        backend,
        PipelineOptions {
            workers: 1,
            per_plugin: 1,
            ..PipelineOptions::default()
        },
    );
    let mut finished = pipeline.subscribe();
    let send = |payload: Value| Incoming {
        event_id: None,
        source: "test".into(),
        kind: "probe".into(),
        delivery_id: None,
        payload: serde_json::value::to_raw_value(&payload).unwrap(),
    };
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), finished.recv())
            .await
            .expect("a run finished")
            .unwrap()
    };
    pipeline
        .ingest(
            send(json!({"op": "http", "connection": "ghl", "path": "/panic"})),
            None,
        )
        .await
        .unwrap();
    let run = next().await;
    assert_eq!(run.status.as_str(), "failed");
    let reason = run.reason.unwrap();
    assert!(reason.starts_with("host panic: "), "{reason}");
    assert!(reason.contains("the double panicked"), "{reason}");
    // One worker, one slot: the next run only runs if the panic gave it back.
    for _ in 0..3 {
        pipeline
            .ingest(
                send(json!({"op": "http", "connection": "ghl", "path": "/ping"})),
                None,
            )
            .await
            .unwrap();
        let run = next().await;
        assert_eq!(run.status.as_str(), "succeeded", "{:?}", run.reason);
    }
}

/// A vendor whose answers are scripted: each raw request and each text takes the next
/// answer in line (the last one repeats), and every call is counted.
struct Scripted {
    http: std::sync::Mutex<Vec<u16>>,
    sms: std::sync::Mutex<Vec<Result<(), switchboard::model::RecipeError>>>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl switchboard::vendors::Connector for Scripted {
    fn vendor(&self) -> &str {
        "scripted"
    }

    async fn http(
        &self,
        _: &switchboard::vendors::Call,
        _: switchboard::vendors::HttpRequest,
    ) -> Result<switchboard::vendors::HttpResponse, switchboard::model::RecipeError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut script = self.http.lock().unwrap();
        let status = if script.len() > 1 {
            script.remove(0)
        } else {
            script[0]
        };
        Ok(switchboard::vendors::HttpResponse {
            status,
            headers: vec![],
            body: format!("answer {status}").into_bytes(),
        })
    }

    async fn messages_send(
        &self,
        _: &switchboard::vendors::Call,
        m: &switchboard::model::Message,
    ) -> Result<switchboard::model::Message, switchboard::model::RecipeError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut script = self.sms.lock().unwrap();
        let answer = if script.len() > 1 {
            script.remove(0)
        } else {
            script[0].clone()
        };
        answer.map(|()| switchboard::model::Message {
            id: Some("sms-1".into()),
            ..m.clone()
        })
    }
}

fn scripted(
    http: Vec<u16>,
    sms: Vec<Result<(), switchboard::model::RecipeError>>,
) -> std::sync::Arc<Scripted> {
    std::sync::Arc::new(Scripted {
        http: std::sync::Mutex::new(http),
        sms: std::sync::Mutex::new(sms),
        calls: std::sync::atomic::AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn the_journal_keeps_what_took_effect_and_forgets_what_the_vendor_refused() {
    use switchboard::model::{Event, RecipeError};
    use switchboard::vendors::Connections;
    let dir = tempfile::tempdir().unwrap();
    let calls = |s: &Scripted| s.calls.load(std::sync::atomic::Ordering::SeqCst);
    // A raw POST answered 503, then 200: the refusal is forgotten, so the retry sends it
    // again; once it took effect, runs of the same event are answered from the journal.
    let vendor = scripted(vec![503, 200], vec![Ok(())]);
    let mut connections = Connections::default();
    connections.insert("ghl", vendor.clone());
    let rt = support::runtime_at(dir.path(), support::options(), connections);
    let probe = support::load(&rt, PROBE).await;
    let post = Event::new(
        "evt-post",
        "test",
        "probe",
        "t",
        &json!({"op": "http-post", "connection": "ghl", "path": "/contacts/"}),
    );
    let summary = |r: &switchboard::runtime::RunReport| format!("{:?} {:?}", r.outcome, r.error);
    let r = rt.run(&probe, &post).await;
    assert!(summary(&r).contains("503 answer 503"), "{}", summary(&r));
    let r = rt.run(&probe, &post).await;
    assert!(summary(&r).contains("200 answer 200"), "{}", summary(&r));
    assert_eq!(calls(&vendor), 2, "the refused POST was sent again");
    let r = rt.run(&probe, &post).await;
    assert!(summary(&r).contains("200 answer 200"), "{}", summary(&r));
    assert_eq!(calls(&vendor), 2, "what took effect was sent again");

    // A text the vendor accepted in an answer the host could not read: maybe sent. The
    // recipe is told so, and no run of that event sends it again.
    let dir = tempfile::tempdir().unwrap();
    let garbled = RecipeError::Upstream {
        status: 200,
        message: "the vendor answered with invalid JSON".into(),
    };
    let vendor = scripted(vec![200], vec![Err(garbled), Ok(())]);
    let mut connections = Connections::default();
    connections.insert("ghl", vendor.clone());
    let rt = support::runtime_at(dir.path(), support::options(), connections);
    let probe = support::load(&rt, PROBE).await;
    let sms = Event::new(
        "evt-sms",
        "test",
        "probe",
        "t",
        &json!({"op": "sms", "connection": "ghl", "to": "+13035550100"}),
    );
    for _ in 0..2 {
        let r = rt.run(&probe, &sms).await;
        let error = r
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(error.contains("unknown outcome"), "{}", summary(&r));
        assert_eq!(r.unconfirmed.len(), 1, "{:?}", r.unconfirmed);
        assert_eq!(r.unconfirmed[0].call, "messages.send");
    }
    assert_eq!(
        calls(&vendor),
        1,
        "a text that may have gone out was sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    // The header timeout is 20 s here: what closes them is the idle timeout.
    let (_dir, config) = setup(
        &[("hello", HELLO)],
        "[server]\nheader_timeout = \"20s\"\nidle_timeout = \"1s\"\n",
    );
    let host = std::sync::Arc::new(Host::start(&config));
    let h = host.clone();
    tokio::task::spawn_blocking(move || {
        // Before any request...
        let mut idle = connect(&h);
        let (_, took) = read_until_closed(&mut idle, Duration::from_secs(6));
        assert!(took < Duration::from_secs(3), "{took:?}");
        // ...and after one (keep-alive).
        let mut kept = connect(&h);
        kept.write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (answer, took) = read_until_closed(&mut kept, Duration::from_secs(6));
        assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    })
    .await
    .unwrap();
    let health = host.admin("GET", "/admin/health", None).await.1;
    assert!(
        health["connections"]["idle_closed"].as_u64().unwrap() >= 2,
        "{health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_all_busy_with_slow_bodies_do_not_stop_good_webhooks() {
    let (_dir, config) = setup(
        &[("hello", HELLO)],
        "[server]\nmax_connections = 40\n[sources.forms]\nscheme = \"none\"\ninsecure = true\nkind = \"form\"\n",
    );
    let host = Host::start(&config);
    // Every connection the host allows is a webhook whose body never comes.
    let addr = host.url.trim_start_matches("http://").to_string();
    let slow: Vec<TcpStream> = tokio::task::spawn_blocking(move || {
        (0..40)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.write_all(
                    b"POST /hooks/forms HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{",
                )
                .unwrap();
                s
            })
            .collect()
    })
    .await
    .unwrap();
    // Past the slow-body mark (1 s after the host began reading each body; with margin for
    // a loaded machine, where the host may start reading some of them late), a good webhook
    // makes room.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Each on a connection of its own (no keep-alive): a kept connection, idle between two
    // webhooks, may itself be the one closed to make room at the cap (seen once in CI as a
    // request on a closed connection), which is the policy, not the point here.
    let close = [("connection", "close".to_string())];
    for i in 0..5 {
        let (status, ack) = host.hook("forms", &close, &format!("{{\"n\": {i}}}")).await;
        assert_eq!(status, 202, "{ack}");
    }
    let health = host.admin("GET", "/admin/health", None).await.1;
    assert!(
        health["connections"]["evicted"].as_u64().unwrap() >= 1,
        "{health}"
    );
    drop(slow);
}
