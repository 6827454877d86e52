//! The operator's console in a real browser: `tests/browser/console.mjs` (Playwright, with
//! the system's Chromium) against a real `switchboard serve`, the webhooks sent through its
//! real endpoint. Screenshots of the runs page and a run page are left in
//! `target/browser/`.

use crate::serve::{Host, TOKEN, setup};
use crate::support::{ghl_connection, skipped};
use std::path::{Path, PathBuf};
use switchboard_test_guests::PROBE;

const SECRET: &str = "whsec_dGVzdC1zZWNyZXQtZm9yLXJvdGF0aW9uLTEyMzQ=";
const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// What is missing to run the browser test, if anything.
fn missing() -> Option<String> {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node is not installed (Debian: apt-get install nodejs npm)".into());
    }
    if !Path::new(CHROMIUM).exists() {
        return Some(format!(
            "{CHROMIUM} is missing (Debian: apt-get install chromium)"
        ));
    }
    if !browser_dir().join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci in tests/browser)".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    if let Some(why) = missing() {
        let required = std::env::var("SWITCHBOARD_BROWSER_TESTS").is_ok_and(|v| v == "required")
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!required, "the browser test cannot run: {why}");
        skipped("console::the_console_in_a_real_browser", &why);
        return;
    }
    // GoHighLevel's sandbox, for a run's vendor requests.
    let sandbox = switchboard::sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        switchboard::sandbox::SandboxKeys::default(),
    )
    .await
    .unwrap();
    let (dir, config) = setup(
        &[("probe", PROBE)],
        &format!(
            r#"
[sources.test]
secrets = [{{ file = "test.secret" }}]
kind = "probe"
[pipeline]
max_attempts = 1
reload_interval = "100ms"
[plugins.probe]
deadline = "300ms"
{}"#,
            ghl_connection(&sandbox)
        ),
    );
    std::fs::write(dir.path().join("test.secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("ghl.key"), &sandbox.state.keys.gohighlevel).unwrap();
    let host = Host::start(&config);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    for shot in ["runs.png", "run.png"] {
        let _ = std::fs::remove_file(artifacts.join(shot));
    }
    let mut node = std::process::Command::new("node");
    node.arg(browser_dir().join("console.mjs"))
        .env("SB_URL", &host.url)
        .env("SB_TOKEN", TOKEN)
        .env("SB_SECRET", SECRET)
        .env("SB_PLUGINS", dir.path().join("plugins"))
        .env("SB_ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM);
    let out = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nhost log:\n{}",
        host.log()
    );
    assert!(stdout.contains("every step held"), "{stdout}");
    for shot in ["runs.png", "run.png"] {
        let size = std::fs::metadata(artifacts.join(shot)).map_or(0, |m| m.len());
        assert!(size > 1000, "screenshot {shot}: {size} bytes");
    }
    // Each reveal of a payload is logged.
    assert!(
        host.log().contains("an event's payload was revealed"),
        "{}",
        host.log()
    );
}
