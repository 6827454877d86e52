//! The real `switchboard` binary.

use std::path::Path;
use std::process::{Command, Output};
use switchboard_test_guests::{HELLO, PROBE};

fn switchboard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir)
        .args(["--data-dir", "data", "--plugins-dir", "plugins"])
        .args(args)
        .env_remove("SWITCHBOARD_CONFIG")
        .output()
        .expect("running switchboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("plugins")).unwrap();
    std::fs::copy(HELLO, dir.path().join("plugins/hello.wasm")).unwrap();
    std::fs::copy(PROBE, dir.path().join("plugins/probe.wasm")).unwrap();
    std::fs::write(
        dir.path().join("ev.json"),
        r#"{"kind": "customer.updated", "payload": {"id": 1}}"#,
    )
    .unwrap();
    dir
}

#[test]
fn run_prints_the_outcome_and_the_count_persists() {
    let dir = workdir();
    let first = switchboard(
        dir.path(),
        &["run", "plugins/hello.wasm", "--event", "ev.json"],
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(
        out.contains("outcome: done: customer.updated seen 1 time(s)"),
        "{out}"
    );
    assert!(
        out.contains("customer.updated event #1"),
        "the recipe's log: {out}"
    );
    // By name, from the plugins folder; a new process, the same store.
    let second = switchboard(dir.path(), &["run", "hello", "--event", "ev.json"]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let out = text(&second.stdout);
    assert!(
        out.contains("outcome: done: customer.updated seen 2 time(s)"),
        "{out}"
    );
}

#[test]
fn run_reads_the_event_from_stdin_and_prints_json() {
    use std::io::Write;
    let dir = workdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .current_dir(dir.path())
        .args([
            "--data-dir",
            "data",
            "run",
            "plugins/hello.wasm",
            "--event",
            "-",
            "--json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"id": "e1", "kind": "lead.created"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["event_id"], "e1");
    assert_eq!(report["outcome"]["status"], "done");
    assert_eq!(report["outcome"]["summary"], "lead.created seen 1 time(s)");
}

#[test]
fn a_failing_run_exits_1_with_its_error() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("panic.json"),
        r#"{"kind": "x", "payload": {"op": "panic", "message": "kaboom"}}"#,
    )
    .unwrap();
    let out = switchboard(dir.path(), &["run", "probe", "--event", "panic.json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("failed: trap") && stdout.contains("kaboom"),
        "{stdout}"
    );
}

#[test]
fn a_bad_event_file_exits_2_naming_the_file_and_field() {
    let dir = workdir();
    std::fs::write(dir.path().join("bad.json"), r#"{"payload": {}}"#).unwrap();
    let out = switchboard(dir.path(), &["run", "hello", "--event", "bad.json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("missing field `kind`"),
        "{err}"
    );
}

#[test]
fn an_unknown_recipe_name_lists_what_is_there() {
    let dir = workdir();
    let out = switchboard(dir.path(), &["run", "nope", "--event", "ev.json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no recipe named 'nope'") && err.contains("hello, probe"),
        "{err}"
    );
}

#[test]
fn inspect_prints_the_manifest_and_imports() {
    let dir = workdir();
    let out = switchboard(dir.path(), &["plugins", "inspect", "plugins/hello.wasm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for expected in [
        "hello 0.1.0",
        "Counts events per kind",
        "webhook: source=* kind=*",
        "capabilities: kv",
        "imports:",
        "switchboard:recipes/kv@0.4.0",
        "switchboard:recipes/log@0.4.0",
    ] {
        assert!(s.contains(expected), "missing {expected:?} in:\n{s}");
    }
}

#[test]
fn list_shows_plugins_and_refuses_bad_files_by_name() {
    let dir = workdir();
    let out = switchboard(dir.path(), &["plugins", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("hello 0.1.0") && s.contains("probe 0.1.0"),
        "{s}"
    );
    std::fs::write(dir.path().join("plugins/junk.wasm"), b"junk").unwrap();
    let out = switchboard(dir.path(), &["plugins", "list"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("junk.wasm: not a WebAssembly file"));
    assert!(
        text(&out.stdout).contains("hello 0.1.0"),
        "the good ones are still listed"
    );
}

#[test]
fn a_bad_config_names_the_file_and_field() {
    let dir = workdir();
    std::fs::write(
        dir.path().join("sb.toml"),
        "[runtime]\nmemory_limit_mib = 0\n",
    )
    .unwrap();
    let out = switchboard(dir.path(), &["--config", "sb.toml", "plugins", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("sb.toml: runtime.memory_limit_mib"), "{err}");

    // A recipe's connection mapped to one the config does not have: refused before any run.
    std::fs::write(
        dir.path().join("sb.toml"),
        "[plugins.probe]\nconnections = { ghl = \"ghl-west\" }\n",
    )
    .unwrap();
    let out = switchboard(
        dir.path(),
        &["--config", "sb.toml", "run", "hello", "--event", "ev.json"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "sb.toml: plugins.probe.connections.ghl: no connection named 'ghl-west' is configured"
        ),
        "{err}"
    );
}

#[test]
fn connections_check_says_which_work_and_why_others_fail() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let keys = switchboard::sandbox::SandboxKeys::default();
    let sandbox = rt
        .block_on(switchboard::sandbox::start(
            "127.0.0.1:0".parse().unwrap(),
            keys.clone(),
        ))
        .unwrap();
    let dir = workdir();
    std::fs::write(dir.path().join("ghl.key"), &keys.gohighlevel).unwrap();
    std::fs::write(dir.path().join("hb.key"), "wrong-homebase-key-123").unwrap();
    let config = format!(
        r#"
[connections.ghl]
vendor = "gohighlevel"
secret = {{ file = "ghl.key" }}
location_id = "{location}"
base_url = "{ghl}"

[connections.hb]
vendor = "homebase360"
secret = {{ file = "hb.key" }}
base_url = "{hb}"
"#,
        location = switchboard::sandbox::GHL_LOCATION,
        ghl = sandbox.base_url("gohighlevel"),
        hb = sandbox.base_url("homebase360"),
    );
    std::fs::write(dir.path().join("sb.toml"), config).unwrap();
    let out = switchboard(dir.path(), &["--config", "sb.toml", "connections", "check"]);
    assert_eq!(out.status.code(), Some(1), "one connection fails");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ghl (gohighlevel): working"), "{stdout}");
    assert!(
        stdout.contains("hb (homebase360): failing: unauthorized"),
        "{stdout}"
    );
    let everything = format!("{stdout}{}", text(&out.stderr));
    assert!(
        !everything.contains(&keys.gohighlevel) && !everything.contains("wrong-homebase-key-123")
    );

    // A secret that cannot be read is a config error naming the connection and field.
    std::fs::write(
        dir.path().join("missing.toml"),
        "[connections.ghl]\nvendor = \"gohighlevel\"\nsecret = { env = \"SWITCHBOARD_TEST_NO_SUCH_VAR\" }\nlocation_id = \"x\"\n",
    )
    .unwrap();
    let out = switchboard(dir.path(), &["--config", "missing.toml", "plugins", "list"]);
    assert!(out.status.success(), "listing plugins reads no secret");
    let out = switchboard(
        dir.path(),
        &["--config", "missing.toml", "connections", "check"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(
            "missing.toml: connections.ghl.secret: environment variable SWITCHBOARD_TEST_NO_SUCH_VAR is not set"
        ),
        "{}",
        text(&out.stderr)
    );
    drop(sandbox);
}

#[test]
fn the_sandbox_command_serves_the_vendor_apis() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("vendor sandbox listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    let key = switchboard::sandbox::SandboxKeys::default().welcomehome;
    let answer = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .get(format!("{url}/welcomehome/ping"))
                .header("Authorization", format!("Token token={key}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(answer, r#"{"account_id":2,"lead_source_id":null}"#);
}

/// `switchboard new` makes a crate that passes its own test, builds to a component, and
/// runs in the host; bad names and existing folders are refused.
#[test]
fn new_scaffolds_a_recipe_that_tests_builds_and_runs() {
    let dir = workdir();
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let sdk = sdk.to_str().unwrap();
    let out = switchboard(dir.path(), &["new", "Lead Greeter", "--sdk", sdk]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("lowercase"),
        "{}",
        text(&out.stderr)
    );
    let out = switchboard(dir.path(), &["new", "lead-greeter", "--sdk", sdk]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = switchboard(dir.path(), &["new", "lead-greeter", "--sdk", sdk]);
    assert_eq!(out.status.code(), Some(2), "exists: {}", text(&out.stderr));
    let out = switchboard(
        dir.path(),
        &["new", "ticker", "--trigger", "cron", "--sdk", sdk],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Shared with other runs of this test, so the SDK's dependencies build once.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold");
    let cargo = |crate_dir: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .current_dir(dir.path().join(crate_dir))
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?} in {crate_dir}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    for crate_dir in ["lead-greeter", "ticker"] {
        assert!(cargo(crate_dir, &["test", "--quiet"]).contains("1 passed"));
    }
    cargo(
        "lead-greeter",
        &["build", "--quiet", "--target", "wasm32-wasip2"],
    );
    std::fs::copy(
        target.join("wasm32-wasip2/debug/lead_greeter.wasm"),
        dir.path().join("plugins/lead-greeter.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lead.json"),
        r#"{"kind": "lead.created", "payload": {"name": "Ada", "email": "ada@example.com"}}"#,
    )
    .unwrap();
    let out = switchboard(dir.path(), &["run", "lead-greeter", "--event", "lead.json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("welcome, Ada <ada@example.com>"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn store_compact_rewrites_the_store_and_keeps_what_recipes_stored() {
    let dir = workdir();
    let missing = switchboard(dir.path(), &["store", "compact"]);
    assert_eq!(missing.status.code(), Some(2), "no store yet");
    assert!(
        text(&missing.stderr).contains("no store here"),
        "{}",
        text(&missing.stderr)
    );
    for _ in 0..2 {
        let run = switchboard(dir.path(), &["run", "hello", "--event", "ev.json"]);
        assert!(run.status.success(), "{}", text(&run.stderr));
    }
    let compact = switchboard(dir.path(), &["store", "compact"]);
    assert!(compact.status.success(), "{}", text(&compact.stderr));
    assert!(
        text(&compact.stdout).contains("compacted ") && text(&compact.stdout).contains("MiB ->"),
        "{}",
        text(&compact.stdout)
    );
    assert!(!dir.path().join("data/store.old").exists());
    assert!(!dir.path().join("data/store.compacting").exists());
    // The recipe's kv came along: its count goes on.
    let run = switchboard(dir.path(), &["run", "hello", "--event", "ev.json"]);
    assert!(
        text(&run.stdout).contains("seen 3 time(s)"),
        "{}",
        text(&run.stdout)
    );
}

/// A `[plugins.<name>]` naming no loaded recipe is not an error (it may be dropped in
/// later), but `serve` says so at start, and again when a reload leaves a name without its
/// recipe.
#[test]
fn serve_warns_of_plugin_sections_naming_no_loaded_recipe() {
    use crate::serve::{Host, setup};
    let (dir, config) = setup(
        &[("hello", HELLO), ("probe", PROBE)],
        "[plugins.helo]\ndeadline = \"2s\"\n[plugins.hello]\nconcurrency = 1\n[plugins.probe]\nconcurrency = 1\n",
    );
    let host = Host::start(&config);
    let log = host.log();
    assert!(
        log.contains(
            "switchboard.toml: [plugins.helo] names no loaded recipe (loaded: hello, probe)"
        ),
        "{log}"
    );
    assert!(!log.contains("[plugins.hello]"), "{log}");
    assert!(!log.contains("[plugins.probe]"), "{log}");
    std::fs::remove_file(dir.path().join("plugins/probe.wasm")).unwrap();
    let started = std::time::Instant::now();
    while !host
        .log()
        .contains("[plugins.probe] names no loaded recipe (loaded: hello)")
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            host.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Said once per name, not again at every reload.
    assert_eq!(
        host.log().matches("[plugins.helo]").count(),
        1,
        "{}",
        host.log()
    );
    host.kill();
}
