//! `switchboard serve` end to end: the real binary, real HTTP, sled on disk, wasm guests
//! built from source; vendors played by the sandbox.

use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchboard::ingest::verify::{HmacVerifier, StandardVerifier};
use switchboard_test_guests::{HELLO, PIPE, PIPE_V2, PROBE};

pub const TOKEN: &str = "test-admin-token";

/// A `switchboard serve` process.
pub struct Host {
    child: Child,
    pub url: String,
    http: reqwest::Client,
    stderr: PathBuf,
}

impl Host {
    /// Start the binary on `config` and wait until it listens.
    pub fn start(config: &Path) -> Host {
        Host::start_with(config, |_| {})
    }

    /// [`Host::start`], with the command adjusted by `configure` first.
    pub fn start_with(config: &Path, configure: impl FnOnce(&mut Command)) -> Host {
        let dir = config.parent().unwrap();
        let stderr = dir.join(format!("stderr-{}.log", fastrand::u32(..)));
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env("SWITCHBOARD_ADMIN_TOKEN", TOKEN)
            .env("SWITCHBOARD_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        configure(&mut command);
        let mut child = command.spawn().expect("starting switchboard serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("switchboard listening on ") {
                    let url = rest.split_whitespace().next().unwrap().to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "switchboard serve did not start:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        Host {
            child,
            url,
            http: reqwest::Client::new(),
            stderr,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait for the exit; returns whether it exited 0.
    pub fn terminate(mut self) -> bool {
        self.signal_term();
        self.wait_exit()
    }

    /// Send SIGTERM; the process begins its shutdown.
    pub fn signal_term(&self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait (up to 30 s) for the process to exit; returns whether it exited 0.
    pub fn wait_exit(&mut self) -> bool {
        self.wait_status().success()
    }

    /// Wait (up to 30 s) for the process to exit; returns its status.
    pub fn wait_status(&mut self) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "serve did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn hook(&self, source: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/hooks/{source}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        let response = request.send().await.expect("posting a webhook");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.expect("calling the admin API");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn runs(&self, query: &str) -> Vec<Value> {
        let (status, body) = self
            .admin("GET", &format!("/admin/runs?limit=10000&{query}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["runs"].as_array().unwrap().clone()
    }

    /// `GET /admin/runs/{id}` of a run from a list: the run with its logs, and its event.
    pub async fn run_detail(&self, run: &Value) -> Value {
        let id = run["id"].as_str().unwrap();
        let (status, detail) = self.admin("GET", &format!("/admin/runs/{id}"), None).await;
        assert_eq!(status, 200, "{detail}");
        detail
    }

    /// Wait until `done` holds for the runs `query` selects.
    pub async fn wait_runs(
        &self,
        query: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let runs = self.runs(query).await;
            if done(&runs) {
                return runs;
            }
            if started.elapsed() > Duration::from_secs(60) {
                panic!(
                    "timed out waiting for {what}; runs: {}\n{}",
                    serde_json::to_string_pretty(&runs).unwrap(),
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait (up to 30 s) until `GET /admin/plugins` satisfies `done`.
    pub async fn wait_plugins(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (_, p) = self.admin("GET", "/admin/plugins", None).await;
            if done(&p) {
                return p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}: {p}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run the CLI against this host.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(args)
            .env("SWITCHBOARD_SERVER", &self.url)
            .env("SWITCHBOARD_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A work dir with a plugins folder holding `plugins` and a config of `extra` TOML.
pub fn setup(plugins: &[(&str, &str)], extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for (name, path) in plugins {
        std::fs::copy(path, plugins_dir.join(format!("{name}.wasm"))).unwrap();
    }
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\nplugins_dir = \"{}\"\n{extra}",
            plugins_dir.display()
        ),
    )
    .unwrap();
    (dir, config)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn status_of(runs: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in runs {
        *out.entry(r["status"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    out
}

const WHSEC_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WHSEC_NEW: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLXJvdGF0aW9uLTEyMzQ=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_are_accepted_and_forgeries_and_bad_input_refused() {
    use ed25519_dalek::Signer;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::signature::SignatureEncoding;

    let ed = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let ed_public = base64::engine::general_purpose::STANDARD.encode(ed.verifying_key().as_bytes());
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let rsa_public = rsa_key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let rsa_signer = SigningKey::<sha2::Sha256>::new(rsa_key);
    let (dir, config) = setup(
        &[("hello", HELLO)],
        &format!(
            r#"
[sources.housecallpro]
secret = {{ file = "hcp.secret" }}
[sources.gohighlevel]
ed25519_public_keys = ["{ed_public}"]
rsa_public_keys = ["""{rsa_public}"""]
[sources.forms]
secrets = [{{ env = "FORMS_OLD" }}, {{ file = "forms.secret" }}]
kind = "lead.created"
[server]
max_body_bytes = 4096
"#
        ),
    );
    std::fs::write(dir.path().join("hcp.secret"), "hcp-signing-secret\n").unwrap();
    std::fs::write(dir.path().join("forms.secret"), WHSEC_NEW).unwrap();
    // SAFETY: set before the child is spawned; no other thread reads this variable.
    unsafe { std::env::set_var("FORMS_OLD", WHSEC_OLD) };
    let host = Host::start(&config);

    // Housecall Pro: HMAC over "{timestamp}.{body}".
    let hcp = |body: &str, secret: &str, ts: i64| {
        vec![
            ("Api-Timestamp", ts.to_string()),
            (
                "Api-Signature",
                HmacVerifier::sign(
                    secret.as_bytes(),
                    "{timestamp}.{body}",
                    &ts.to_string(),
                    body.as_bytes(),
                ),
            ),
        ]
    };
    let body = r#"{"event":"customer.updated","customer":{"id":"cus_1","first_name":"Ada"}}"#;
    let (s, ack) = host
        .hook(
            "housecallpro",
            &hcp(body, "hcp-signing-secret", now()),
            body,
        )
        .await;
    assert_eq!(s, 202, "{ack}");
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["runs"].as_array().unwrap().len(), 1);
    let hcp_event = ack["event_id"].as_str().unwrap().to_string();
    let tampered = body.replace("Ada", "Eve");
    let (s, e) = host
        .hook(
            "housecallpro",
            &hcp(body, "hcp-signing-secret", now()),
            &tampered,
        )
        .await;
    assert_eq!(s, 401, "tampered body: {e}");
    let (s, _) = host
        .hook("housecallpro", &hcp(body, "wrong-secret", now()), body)
        .await;
    assert_eq!(s, 401, "wrong secret");
    let (s, e) = host
        .hook(
            "housecallpro",
            &hcp(body, "hcp-signing-secret", now() - 600),
            body,
        )
        .await;
    assert_eq!(s, 401, "stale timestamp");
    assert!(e["error"].as_str().unwrap().contains("tolerance"), "{e}");
    // The same delivery again (re-signed, as a sender's retry is): acknowledged, not run.
    let (s, dup) = host
        .hook(
            "housecallpro",
            &hcp(body, "hcp-signing-secret", now()),
            body,
        )
        .await;
    assert_eq!(
        (s, &dup["duplicate"], &dup["event_id"]),
        (202, &json!(true), &json!(hcp_event))
    );
    // A setup ping: signed, no event.
    let ping = r#"{"foo":"bar"}"#;
    let (s, p) = host
        .hook(
            "housecallpro",
            &hcp(ping, "hcp-signing-secret", now()),
            ping,
        )
        .await;
    assert_eq!((s, &p["ping"]), (200, &json!(true)));

    // GoHighLevel: Ed25519 X-GHL-Signature, RSA X-WH-Signature fallback, webhookId dedup.
    let ghl_body = |id: &str, ts: &str| {
        json!({"type": "ContactUpdate", "locationId": "loc1", "id": "c1", "timestamp": ts, "webhookId": id})
            .to_string()
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let fresh = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let b = ghl_body("wh-1", &fresh);
    let ed_sig = |b: &str| vec![("X-GHL-Signature", b64(&ed.sign(b.as_bytes()).to_bytes()))];
    let (s, ack) = host.hook("gohighlevel", &ed_sig(&b), &b).await;
    assert_eq!(s, 202, "{ack}");
    let (s, dup) = host.hook("gohighlevel", &ed_sig(&b), &b).await;
    assert_eq!(
        (s, &dup["duplicate"]),
        (202, &json!(true)),
        "replayed webhookId"
    );
    let b2 = ghl_body("wh-2", &fresh);
    let rsa_sig = |b: &str| {
        vec![(
            "X-WH-Signature",
            b64(&rsa_signer.sign(b.as_bytes()).to_bytes()),
        )]
    };
    let (s, ack) = host.hook("gohighlevel", &rsa_sig(&b2), &b2).await;
    assert_eq!(
        (s, &ack["duplicate"]),
        (202, &json!(false)),
        "RSA fallback: {ack}"
    );
    let (s, _) = host
        .hook("gohighlevel", &ed_sig(&b2), &b2.replace("c1", "c2"))
        .await;
    assert_eq!(s, 401, "tampered GHL body");
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let forged = vec![(
        "X-GHL-Signature",
        b64(&other.sign(b2.as_bytes()).to_bytes()),
    )];
    assert_eq!(
        host.hook("gohighlevel", &forged, &b2).await.0,
        401,
        "wrong key"
    );
    let stale = ghl_body("wh-3", "2025-01-28T14:35:00Z");
    assert_eq!(
        host.hook("gohighlevel", &ed_sig(&stale), &stale).await.0,
        401,
        "stale GHL timestamp"
    );
    // Signed, but without the webhookId GoHighLevel always sends: bad input, named.
    let no_id = json!({"type": "ContactUpdate", "timestamp": fresh}).to_string();
    let (s, e) = host.hook("gohighlevel", &ed_sig(&no_id), &no_id).await;
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("webhookId"), "{e}");

    // Standard Webhooks: two secrets while rotating; the header may carry several signatures.
    let std_headers = |id: &str, body: &str, key: &[u8], ts: i64| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                StandardVerifier::sign(key, id, ts, body.as_bytes()),
            ),
        ]
    };
    let old = StandardVerifier::decode_secret(WHSEC_OLD).unwrap();
    let new = StandardVerifier::decode_secret(WHSEC_NEW).unwrap();
    let lead = r#"{"name":"Grace","phone":"+13035550100"}"#;
    let (s, ack) = host
        .hook("forms", &std_headers("msg_1", lead, &new, now()), lead)
        .await;
    assert_eq!(s, 202, "{ack}");
    let mut both = std_headers("msg_2", lead, &old, now());
    let newer = StandardVerifier::sign(&new, "msg_2", now(), lead.as_bytes());
    both[2].1 = format!("v1,bm90IHRoZSBzaWduYXR1cmU= {} {newer}", both[2].1);
    assert_eq!(
        host.hook("forms", &both, lead).await.0,
        202,
        "several signatures"
    );
    let (s, dup) = host
        .hook("forms", &std_headers("msg_1", lead, &new, now()), lead)
        .await;
    assert_eq!(
        (s, &dup["duplicate"]),
        (202, &json!(true)),
        "replayed webhook-id"
    );
    let wrong = StandardVerifier::decode_secret("whsec_d3Jvbmctc2VjcmV0").unwrap();
    assert_eq!(
        host.hook("forms", &std_headers("msg_3", lead, &wrong, now()), lead)
            .await
            .0,
        401
    );
    assert_eq!(
        host.hook(
            "forms",
            &std_headers("msg_4", lead, &new, now() - 301),
            lead
        )
        .await
        .0,
        401,
        "stale webhook-timestamp"
    );
    assert_eq!(
        host.hook(
            "forms",
            &std_headers("msg_5", lead, &new, now()),
            &lead.replace("Grace", "Mallory")
        )
        .await
        .0,
        401
    );

    // Bad input: each refused with its status and reason, none stored, the server serves on.
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000));
    let (s, e) = host
        .hook("forms", &std_headers("msg_6", &big, &new, now()), &big)
        .await;
    assert_eq!(s, 413, "{e}");
    assert!(e["error"].as_str().unwrap().contains("4096"), "{e}");
    let broken = r#"{"name": "#;
    let (s, e) = host
        .hook("forms", &std_headers("msg_7", broken, &new, now()), broken)
        .await;
    assert_eq!(s, 400);
    assert!(
        e["error"].as_str().unwrap().contains("not valid JSON"),
        "{e}"
    );
    let (s, e) = host.hook("forms", &[], lead).await;
    assert_eq!(s, 401);
    assert!(e["error"].as_str().unwrap().contains("webhook-id"), "{e}");
    let (s, e) = host.hook("nowhere", &[], lead).await;
    assert_eq!(s, 404);
    assert!(e["error"].as_str().unwrap().contains("nowhere"), "{e}");

    // Exactly the accepted deliveries ran: HCP 1, GHL 2, forms 2.
    let runs = host
        .wait_runs("plugin=hello", "5 runs", |r| {
            r.len() == 5 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    let kinds: BTreeSet<&str> = runs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["ContactUpdate", "customer.updated", "lead.created"])
    );
    let (_, health) = host.admin("GET", "/admin/health", None).await;
    assert_eq!(health["counters"]["accepted"], 5, "{health}");
    assert_eq!(health["counters"]["duplicates"], 3, "{health}");
    let rejected = &health["rejected"];
    assert_eq!(
        (
            &rejected["too_large"],
            &rejected["malformed"],
            &rejected["unknown_source"]
        ),
        (&json!(1), &json!(2), &json!(1)),
        "{health}"
    );
    assert_eq!(rejected["unauthorized"], 10, "{health}");
    // The log says why, and never holds a secret.
    let log = host.log();
    assert!(log.contains("webhook refused"), "{log}");
    for secret in ["hcp-signing-secret", WHSEC_NEW, WHSEC_OLD, TOKEN] {
        assert!(!log.contains(secret), "secret in the log");
    }

    // The probes answer without the token, and say nothing else.
    let http = reqwest::Client::new();
    for (path, body) in [
        ("/healthz", json!({"status": "ok"})),
        ("/readyz", json!({"ready": true})),
    ] {
        let r = http
            .get(format!("{}{path}", host.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.json::<Value>().await.unwrap(), body, "{path}");
    }
    // Every admin route refuses without the token.
    for (method, path) in [
        ("GET", "/admin/health"),
        ("GET", "/admin/ready"),
        ("GET", "/admin/plugins"),
        ("GET", "/admin/runs"),
        ("GET", "/admin/runs/x"),
        ("POST", "/admin/runs/x/replay"),
        ("POST", "/admin/runs/replay?plugin=hello"),
        ("POST", "/admin/trigger"),
    ] {
        for auth in [None, Some("Bearer wrong")] {
            let mut r = http.request(method.parse().unwrap(), format!("{}{path}", host.url));
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            assert_eq!(
                r.send().await.unwrap().status(),
                401,
                "{method} {path} {auth:?}"
            );
        }
    }
}

/// An unsigned test source whose delivery id is the body's `n`.
const TEST_SOURCE: &str = r#"
[sources.test]
scheme = "none"
insecure = true
kind = "test.event"
delivery_id_field = "/n"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_events_arrive_loses_no_acknowledged_event() {
    let (_dir, config) = setup(
        &[("hello", HELLO), ("pipe", PIPE)],
        &format!("{TEST_SOURCE}\n[plugins.pipe]\nconcurrency = 2\n"),
    );
    let host = Host::start(&config);
    let url = host.url.clone();
    // Eight senders post as fast as they are answered; each keeps what was acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for sender in 0..8u64 {
        let (url, stop) = (url.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut acked = Vec::new();
            let mut n = sender * 1_000_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let sent = http
                    .post(format!("{url}/hooks/test"))
                    .body(json!({"n": n, "sleep_ms": 5}).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 202 => {
                        let ack: Value = r.json().await.unwrap();
                        acked.push(ack["event_id"].as_str().unwrap().to_string());
                    }
                    Ok(r) => panic!("unexpected answer {}", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
            acked
        }));
    }
    // Let a backlog build, make sure runs are queued and in flight, then kill.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, h) = host.admin("GET", "/admin/health", None).await;
        let pending = h["queued"].as_u64().unwrap() + h["running"].as_u64().unwrap();
        let done = h["counters"]["succeeded"].as_u64().unwrap();
        let accepted = h["counters"]["accepted"].as_u64().unwrap();
        if pending > 20 && done > 20 && accepted > 300 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no backlog: {h}"
        );
    }
    host.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for s in senders {
        acked.extend(s.await.unwrap());
    }
    assert!(
        acked.len() > 100,
        "only {} events acknowledged",
        acked.len()
    );

    let host = Host::start(&config);
    let total = acked.len() * 2;
    let runs = host
        .wait_runs("", "every run to finish", |runs| {
            runs.len() >= total && runs.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    let mut per_event: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &runs {
        let plugins = per_event
            .entry(r["event_id"].as_str().unwrap())
            .or_default();
        assert!(
            plugins.insert(r["plugin"].as_str().unwrap()),
            "two runs of one plugin: {r}"
        );
    }
    for id in &acked {
        assert_eq!(
            per_event.get(id.as_str()).map(|p| p.len()),
            Some(2),
            "acknowledged event {id} did not reach both plugins"
        );
    }
    assert!(
        host.log().contains("resuming unfinished runs"),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_dead_runs_and_bulk_replay_against_the_vendor_sandbox() {
    let sandbox = switchboard::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        switchboard::sandbox::SandboxKeys::default(),
    )
    .await
    .unwrap();
    let (dir, config) = setup(
        &[("probe", PROBE)],
        &format!(
            r#"{TEST_SOURCE}
[pipeline]
max_attempts = 3
retry_base = "50ms"
[connections.ghl]
vendor = "gohighlevel"
secret = {{ file = "ghl.key" }}
location_id = "sandboxLocation01"
base_url = "{}"
max_retries = 0
"#,
            sandbox.base_url("gohighlevel")
        ),
    );
    std::fs::write(dir.path().join("ghl.key"), &sandbox.state.keys.gohighlevel).unwrap();
    let host = Host::start(&config);
    let faults = |f: Value| {
        let url = format!("http://{}/_sandbox/faults/gohighlevel", sandbox.addr);
        async move {
            let s = reqwest::Client::new()
                .put(url)
                .json(&f)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(s, 204);
        }
    };
    let search = |n: u32| {
        json!({"n": n, "op": "contacts-search", "connection": "ghl", "text": "ada"}).to_string()
    };

    // Rate-limited twice (retry after 300 ms), then through.
    faults(json!({"fail_next": 2, "status": 429, "retry_after": 1})).await;
    let (s, ack) = host.hook("test", &[], &search(1)).await;
    assert_eq!(s, 202);
    let run_id = ack["runs"][0].as_str().unwrap().to_string();
    let runs = host
        .wait_runs("plugin=probe", "the rate-limited run to succeed", |r| {
            r.len() == 1 && r[0]["status"] == "succeeded"
        })
        .await;
    assert_eq!(runs[0]["attempts"], 3, "{}", runs[0]);
    let (_, h) = host.admin("GET", "/admin/health", None).await;
    assert_eq!(h["counters"]["retried"], 2, "{h}");

    // An outage: every attempt fails with a retryable 503, so the runs end dead.
    faults(json!({"fail_always": true, "status": 503})).await;
    for n in 2..=3 {
        assert_eq!(host.hook("test", &[], &search(n)).await.0, 202);
    }
    let dead = host
        .wait_runs("plugin=probe&status=dead", "two dead runs", |r| {
            r.len() == 2
        })
        .await;
    for r in &dead {
        assert_eq!(r["attempts"], 3, "{r}");
        assert!(r["reason"].as_str().unwrap().contains("503"), "{r}");
    }
    // `runs show` prints the reason; `runs list` filters.
    let dead_id = dead[0]["id"].as_str().unwrap();
    let out = host.cli(&["runs", "show", dead_id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("dead after 3 attempt(s)") && text.contains("503"),
        "{text}"
    );
    let out = host.cli(&["runs", "list", "--status", "dead"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let out = host.cli(&["runs", "list", "--status", "sleeping"]);
    assert_eq!(out.status.code(), Some(2), "a bad filter is bad input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("sleeping"));

    // The outage ends; a bulk replay of the plugin's dead runs succeeds.
    faults(json!({})).await;
    // A dry run counts; nothing is queued.
    let out = host.cli(&[
        "runs",
        "replay",
        "--plugin",
        "probe",
        "--status",
        "dead",
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 run(s) match; none queued"),
        "{text}"
    );
    assert_eq!(host.runs("plugin=probe&status=dead").await.len(), 2);
    // Only finished runs can be replayed; a filter with none gives a usage error.
    let out = host.cli(&["runs", "replay", "--status", "queued"]);
    assert_eq!(out.status.code(), Some(2), "not finished: bad input");
    assert!(String::from_utf8_lossy(&out.stderr).contains("only finished runs"));
    let out = host.cli(&["runs", "replay"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a run id, or a filter"));
    let out = host.cli(&["runs", "replay", "--plugin", "probe"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("queued 2 of 2 matching run(s)"), "{text}");
    let runs = host
        .wait_runs("plugin=probe", "the replayed runs to succeed", |r| {
            r.len() == 3 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    assert!(runs.iter().filter(|r| r["replays"] == 1).count() == 2);
    // A single replay, and a run that is not finished cannot be replayed twice at once.
    let (s, _) = host
        .admin("POST", &format!("/admin/runs/{run_id}/replay"), None)
        .await;
    assert_eq!(s, 202);
    let (s, e) = host
        .admin("POST", "/admin/runs/evt_nope.probe/replay", None)
        .await;
    assert_eq!(s, 404, "{e}");

    // A non-retryable error fails at once: the payload asks for nothing probe knows.
    assert_eq!(
        host.hook("test", &[], r#"{"n": 9, "op": "fly"}"#).await.0,
        202
    );
    let failed = host
        .wait_runs("plugin=probe&status=failed", "a failed run", |r| {
            r.len() == 1
        })
        .await;
    assert_eq!(failed[0]["attempts"], 1, "{}", failed[0]);

    // `trigger --wait` runs one event through one plugin and prints what happened.
    let event = dir.path().join("event.json");
    std::fs::write(
        &event,
        json!({"kind": "manual.check", "payload": {"op": "kv-set", "key": "k", "value": "v"}})
            .to_string(),
    )
    .unwrap();
    let out = host.cli(&[
        "trigger",
        "probe",
        "--event",
        event.to_str().unwrap(),
        "--wait",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("succeeded"), "{text}");
    std::fs::write(
        &event,
        r#"{"kind": "manual.check", "payload": {"op": "panic", "message": "boom"}}"#,
    )
    .unwrap();
    let out = host.cli(&[
        "trigger",
        "probe",
        "--event",
        event.to_str().unwrap(),
        "--wait",
    ]);
    assert_eq!(out.status.code(), Some(1), "a failed run exits 1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("boom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_fires_on_time_never_overlaps_and_catches_up_after_a_restart() {
    let (_dir, config) = setup(
        &[("pipe", PIPE)],
        "[plugins.pipe]\ncron = \"* * * * * *\"\n[pipeline]\ngrace = \"5s\"\n",
    );
    let host = Host::start(&config);
    let runs = host
        .wait_runs("plugin=pipe&status=succeeded", "three cron runs", |r| {
            r.len() >= 3
        })
        .await;
    // Each run takes 1.2 s on a 1 s schedule: the fires during a run are skipped, so runs
    // never overlap.
    let mut spans: Vec<(i64, i64)> = runs
        .iter()
        .map(|r| {
            (
                ms(r["started_at"].as_str().unwrap()),
                ms(r["finished_at"].as_str().unwrap()),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping cron runs: {spans:?}");
    }
    assert!(host.log().contains("cron fire skipped"), "{}", host.log());
    for r in &runs {
        let detail = host.run_detail(r).await;
        let scheduled = detail["event"]["event"]["payload"]["scheduled_at"]
            .as_str()
            .unwrap();
        assert!(
            scheduled.ends_with(".000Z"),
            "fires on whole seconds: {scheduled}"
        );
        let lag = ms(detail["run"]["started_at"].as_str().unwrap()) - ms(scheduled);
        assert!(
            (0..1000).contains(&lag),
            "started {lag} ms after its time: {detail}"
        );
        assert_eq!(detail["run"]["outcome"]["summary"], "v1.0.0 tick");
        assert_eq!(r["source"], "cron");
    }
    assert!(host.terminate(), "SIGTERM exits 0");
    let stopped = now_ms();
    std::thread::sleep(Duration::from_millis(2500));
    let restarting = now_ms();
    let host = Host::start(&config);
    let listening = now_ms();
    let runs = host
        .wait_runs("plugin=pipe", "the catch-up run", |r| {
            r.iter()
                .any(|r| ms(r["created_at"].as_str().unwrap()) >= restarting)
                && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    let mut scheduled: Vec<i64> = Vec::new();
    for r in &runs {
        let d = host.run_detail(r).await;
        scheduled.push(ms(d["event"]["event"]["payload"]["scheduled_at"]
            .as_str()
            .unwrap()));
    }
    // One fire stands for the seconds missed while down (it fires at start, and the fires
    // during its 1.2 s run are skipped); no second in between runs twice.
    let missed = scheduled
        .iter()
        .filter(|s| **s > stopped && **s <= listening)
        .count();
    assert_eq!(missed, 1, "exactly one catch-up fire: {scheduled:?}");
    let unique: BTreeSet<_> = scheduled.iter().collect();
    assert_eq!(unique.len(), scheduled.len());
}

fn ms(rfc3339: &str) -> i64 {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    t.timestamp_millis()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_plugin_while_serving_switches_versions_with_no_failed_run() {
    let (dir, config) = setup(
        &[("pipe", PIPE)],
        &format!("{TEST_SOURCE}\n[pipeline]\nreload_interval = \"100ms\"\n"),
    );
    let plugin = dir.path().join("plugins").join("pipe.wasm");
    let host = Host::start(&config);
    let url = host.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_sending = stop.clone();
    let sender = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut n = 0;
        while !stop_sending.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let r = http
                .post(format!("{url}/hooks/test"))
                .body(json!({"n": n, "sleep_ms": 10}).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    // Write version 2 in place, slowly: the half-written file must not be loaded.
    let v2 = std::fs::read(PIPE_V2).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&plugin).unwrap();
        f.write_all(&v2[..v2.len() / 2]).unwrap();
        f.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        f.write_all(&v2[v2.len() / 2..]).unwrap();
    }
    // Keep sending until version 2 is in, and a little longer.
    host.wait_plugins("v2 to load", |p| p["plugins"][0]["version"] == "2.0.0")
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.await.unwrap();
    let runs = host
        .wait_runs("plugin=pipe", "every run to finish", |r| {
            r.len() == sent
                && r.iter()
                    .all(|r| r["status"] != "queued" && r["status"] != "running")
        })
        .await;
    assert_eq!(
        status_of(&runs),
        BTreeMap::from([("succeeded".to_string(), sent)])
    );
    let versions: BTreeSet<&str> = runs
        .iter()
        .map(|r| r["plugin_version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, BTreeSet::from(["1.0.0", "2.0.0"]));
    // Newest first: the events sent after the swap ran on version 2.
    assert!(
        runs[..3].iter().all(|r| r["plugin_version"] == "2.0.0"),
        "{runs:?}"
    );
    let (_, p) = host.admin("GET", "/admin/plugins", None).await;
    assert_eq!(p["plugins"][0]["version"], "2.0.0", "{p}");

    // A broken file leaves version 2 serving and says why; removing the file unloads it.
    std::fs::write(&plugin, b"not wasm at all").unwrap();
    let p = host
        .wait_plugins("the load error", |p| p["errors"][0]["error"].is_string())
        .await;
    assert!(
        p["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file"),
        "{p}"
    );
    assert_eq!(p["plugins"][0]["version"], "2.0.0", "{p}");
    let (s, ack) = host
        .hook("test", &[], &json!({"n": 100_000}).to_string())
        .await;
    assert_eq!(s, 202);
    assert_eq!(
        ack["runs"].as_array().unwrap().len(),
        1,
        "still subscribed: {ack}"
    );
    std::fs::remove_file(&plugin).unwrap();
    host.wait_plugins("pipe to unload", |p| {
        p["plugins"].as_array().unwrap().is_empty() && p["errors"].as_array().unwrap().is_empty()
    })
    .await;

    // A new version dropped in beside the old one is refused (same recipe name) until the
    // old file goes; then it loads without being touched again.
    let dir_plugins = dir.path().join("plugins");
    std::fs::copy(PIPE, dir_plugins.join("pipe-a.wasm")).unwrap();
    host.wait_plugins("v1 from pipe-a", |p| p["plugins"][0]["version"] == "1.0.0")
        .await;
    std::fs::copy(PIPE_V2, dir_plugins.join("pipe-b.wasm")).unwrap();
    host.wait_plugins("pipe-b refused as a duplicate", |p| {
        p["errors"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("already loaded"))
    })
    .await;
    std::fs::remove_file(dir_plugins.join("pipe-a.wasm")).unwrap();
    host.wait_plugins("v2 from pipe-b", |p| {
        p["plugins"][0]["version"] == "2.0.0" && p["errors"].as_array().unwrap().is_empty()
    })
    .await;
    // The compiled-component cache holds what is loaded: v2, not every version seen.
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("data/cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let v2 = switchboard::runtime::cache::content_hash(&std::fs::read(PIPE_V2).unwrap());
    assert!(
        cached.len() == 1 && cached[0].starts_with(&v2),
        "{cached:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_short_runs_finish_and_requeues_long_ones() {
    let (_dir, config) = setup(
        &[("pipe", PIPE)],
        &format!("{TEST_SOURCE}\n[pipeline]\ngrace = \"4s\"\n"),
    );
    let mut host = Host::start(&config);
    let (_, short) = host
        .hook("test", &[], &json!({"n": 1, "sleep_ms": 2000}).to_string())
        .await;
    let (_, long) = host
        .hook("test", &[], &json!({"n": 2, "sleep_ms": 6000}).to_string())
        .await;
    host.wait_runs("status=running", "both runs to start", |r| r.len() == 2)
        .await;
    // A run that is not finished cannot be replayed.
    let long_id = long["runs"][0].as_str().unwrap();
    let (s, e) = host
        .admin("POST", &format!("/admin/runs/{long_id}/replay"), None)
        .await;
    assert_eq!(s, 409, "{e}");
    let probe = |path: &'static str| {
        let url = format!("{}{path}", host.url);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(probe("/readyz").await, (200, json!({"ready": true})));
    host.signal_term();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While the short run finishes, the host still answers: alive, not ready.
    assert_eq!(
        probe("/readyz").await,
        (503, json!({"ready": false, "reason": "shutting down"}))
    );
    assert_eq!(probe("/healthz").await, (200, json!({"status": "ok"})));
    // While the short run finishes, nothing new is accepted.
    let sent = reqwest::Client::new()
        .post(format!("{}/hooks/test", host.url))
        .body(json!({"n": 3}).to_string())
        .send()
        .await;
    assert!(
        sent.as_ref().map_or(true, |r| r.status() == 503),
        "accepted during shutdown: {sent:?}"
    );
    assert!(host.alive(), "stopped before the grace period");
    assert!(host.wait_exit(), "SIGTERM exits 0");
    drop(host);

    let host = Host::start(&config);
    let short_run = short["runs"][0].as_str().unwrap();
    let long_run = long["runs"][0].as_str().unwrap();
    let runs = host
        .wait_runs("", "both runs to succeed", |r| {
            r.len() == 2 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    for r in &runs {
        // The short run finished within the grace period; the long one was interrupted by
        // the shutdown, which does not count as an attempt, and ran again after the start.
        assert_eq!(r["attempts"], 1, "{r}");
        if r["id"] == long_run {
            assert!(
                ms(r["started_at"].as_str().unwrap())
                    > ms(
                        runs.iter().find(|r| r["id"] == short_run).unwrap()["finished_at"]
                            .as_str()
                            .unwrap()
                    )
            );
        }
    }
    assert!(
        host.log().contains("resuming unfinished runs"),
        "{}",
        host.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_run_waits_without_spending_attempts_survives_a_crash_and_then_runs() {
    let (_dir, config) = setup(&[("pipe", PIPE)], TEST_SOURCE);
    let host = Host::start(&config);
    // Far enough ahead for a slow CI machine to see the run held.
    let until = chrono::DateTime::from_timestamp(now() + 8, 0).unwrap();
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let (status, _) = host
        .hook(
            "test",
            &[],
            &json!({"n": 1, "defer_until": until}).to_string(),
        )
        .await;
    assert_eq!(status, 202);
    // The recipe said "not now": the run is held until then, no attempt spent.
    let runs = host
        .wait_runs("plugin=pipe", "the deferral", |runs| {
            runs.len() == 1 && runs[0]["outcome"]["status"] == "deferred"
        })
        .await;
    let run = &runs[0];
    assert_eq!(run["status"], "queued", "{run}");
    assert_eq!(run["attempts"], 0, "{run}");
    assert_eq!(run["deferrals"], 1, "{run}");
    assert_eq!(run["outcome"]["until"], until.as_str(), "{run}");
    assert_eq!(run["outcome"]["summary"], "asked to wait", "{run}");
    assert_eq!(ms(run["next_attempt_at"].as_str().unwrap()), ms(&until));

    // A crash while it waits loses nothing: after a restart it runs at its time. (Listed
    // is not yet on disk: run states reach it within half a second, as the README says; a
    // crash before that runs the recipe again, which defers again and spends an attempt.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    host.kill();
    let host = Host::start(&config);
    let runs = host
        .wait_runs("plugin=pipe&status=succeeded", "the deferred run", |runs| {
            runs.len() == 1
        })
        .await;
    let run = &runs[0];
    assert!(now_ms() >= ms(&until), "ran before its time: {run}");
    assert_eq!(run["attempts"], 1, "{run}");
    assert_eq!(run["deferrals"], 1, "{run}");
    assert_eq!(run["outcome"]["status"], "done", "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_deferred_too_often_fails_with_its_reason() {
    let (_dir, config) = setup(
        &[("pipe", PIPE)],
        &format!("{TEST_SOURCE}\n[pipeline]\nmax_deferrals = 2\n"),
    );
    let host = Host::start(&config);
    let body = json!({"n": 1, "always_defer": true}).to_string();
    assert_eq!(host.hook("test", &[], &body).await.0, 202);
    let runs = host
        .wait_runs("plugin=pipe&status=failed", "the run to give up", |runs| {
            runs.len() == 1
        })
        .await;
    let run = &runs[0];
    assert_eq!(run["deferrals"], 2, "{run}");
    assert_eq!(run["attempts"], 1, "{run}");
    assert!(
        run["reason"].as_str().unwrap().contains("deferred 2 times"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_deferred_run_runs_it_now() {
    let (_dir, config) = setup(&[("pipe", PIPE)], TEST_SOURCE);
    let host = Host::start(&config);
    let until = chrono::DateTime::from_timestamp(now() + 3600, 0).unwrap();
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let body = json!({"n": 1, "defer_until": until}).to_string();
    assert_eq!(host.hook("test", &[], &body).await.0, 202);
    let runs = host
        .wait_runs("plugin=pipe", "the deferral", |runs| {
            runs.len() == 1 && runs[0]["deferrals"] == 1
        })
        .await;
    let id = runs[0]["id"].as_str().unwrap().to_string();
    // An operator asks for it now: it runs at once (and its recipe, still not ready, defers
    // it again) instead of in an hour.
    let (status, answer) = host
        .admin("POST", &format!("/admin/runs/{id}/replay"), None)
        .await;
    assert!(status < 300, "{status} {answer}");
    let runs = host
        .wait_runs("plugin=pipe", "the second deferral", |runs| {
            runs[0]["deferrals"] == 2
        })
        .await;
    assert_eq!(runs[0]["status"], "queued", "{}", runs[0]);
    assert_eq!(runs[0]["attempts"], 0, "{}", runs[0]);
}

/// Retention in a running host: finished runs past `keep_succeeded` are swept (and answer
/// 404), while failed runs (kept longer), deferred, running and queued runs stay, and a
/// delivery id within its dedup window is still recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_sweeps_what_expired_and_keeps_what_is_pending_or_within_its_window() {
    let (_dir, config) = setup(
        &[("pipe", PIPE), ("probe", PROBE)],
        &format!(
            "{TEST_SOURCE}\n[pipeline]\nkeep_succeeded = \"2s\"\nkeep_failed = \"1h\"\nsweep_interval = \"500ms\"\n\n[plugins.pipe]\nconcurrency = 1\n"
        ),
    );
    let host = Host::start(&config);
    let trigger = async |plugin: &str, payload: Value| {
        let body = json!({"plugin": plugin, "kind": "test.event", "payload": payload});
        let (status, answer) = host.admin("POST", "/admin/trigger", Some(body)).await;
        assert_eq!(status, 202, "{answer}");
        answer["ack"]["runs"][0].as_str().unwrap().to_string()
    };
    let succeeded = trigger("pipe", json!({})).await;
    let failed = trigger("probe", json!({"op": "fail", "bytes": 3})).await;
    let deferred = trigger("probe", json!({"op": "defer", "ms": 600_000})).await;
    host.wait_runs("", "the first three to settle", |r| {
        r.iter()
            .any(|r| r["id"] == succeeded && r["status"] == "succeeded")
            && r.iter()
                .any(|r| r["id"] == failed && r["status"] == "failed")
            && r.iter()
                .any(|r| r["id"] == deferred && r["outcome"]["status"] == "deferred")
    })
    .await;
    // A webhook delivery (id 7), whose pipe run succeeds and is swept like the first.
    let (status, hooked) = host
        .hook("test", &[], r#"{"n": 7, "op": "fail", "bytes": 1}"#)
        .await;
    assert_eq!(status, 202, "{hooked}");
    // One long run holds pipe's only slot; the next waits queued.
    let running = trigger("pipe", json!({"sleep_ms": 15_000})).await;
    let queued = trigger("pipe", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = host
            .admin("GET", &format!("/admin/runs/{succeeded}"), None)
            .await;
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the succeeded run was never swept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs = host.runs("").await;
    let find = |id: &str| runs.iter().find(|r| r["id"] == id).cloned();
    assert!(find(&succeeded).is_none());
    assert_eq!(
        find(&failed).expect("failed runs are kept longer")["status"],
        "failed"
    );
    assert_eq!(
        find(&deferred).expect("a deferred run is kept")["status"],
        "queued"
    );
    assert_eq!(
        find(&running).expect("a running run is kept")["status"],
        "running"
    );
    assert_eq!(
        find(&queued).expect("a queued run is kept")["status"],
        "queued"
    );
    // The webhook's delivery id is within its window (7 days): still a duplicate.
    let (status, again) = host
        .hook("test", &[], r#"{"n": 7, "op": "fail", "bytes": 1}"#)
        .await;
    assert_eq!(
        (status, &again["duplicate"]),
        (202, &json!(true)),
        "{again}"
    );
    assert!(host.log().contains("retention: removed"), "{}", host.log());
}
