//! Build tasks for Switchboard, as a cargo alias (`cargo xtask <task>`).
//!
//! - `ci`: what CI runs: format check, clippy with `-D warnings`, every test.
//! - `demo`: the main job: build the recipes into `plugins/` and serve them with the vendor
//!   sandbox wired in (`demo --tour`: a scripted tour that exits).
//! - `recipes`: build every crate under `recipes/` to a wasm component in `plugins/`.
//! - `layers`: check the crate graph against the architecture (also a step of `ci`).
//!
//! Every task installs the `wasm32-wasip2` target (and rustfmt/clippy) when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <ci|demo|recipes>

  ci        format check, clippy -D warnings, all tests (what .ci/run runs)
  demo      build the recipes and serve them with the vendor sandbox wired in
            (`demo --tour`: drive each recipe once through the sandbox, then exit)
  recipes   build every recipe under recipes/ to plugins/<name>.wasm
  layers    check that no crate depends on a layer it must not know (cargo metadata)";

/// The throwaway PostgreSQL cluster, shared with the backend's tests (std only).
#[path = "../../crates/postgres/src/cluster.rs"]
#[allow(dead_code)] // xtask uses part of it
mod cluster;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("demo") => demo(std::env::args().nth(2).as_deref() == Some("--tour")),
        Some("recipes") => recipes().map(|_| ()),
        Some("layers") => layers(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    println!("==> {step}");
    let status = cmd
        .status()
        .map_err(|e| format!("{step}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{step}: failed ({status})"))
    }
}

/// Install what the build needs: the wasm target, rustfmt and clippy.
fn setup() -> Result<(), String> {
    run(
        "rustup target add wasm32-wasip2",
        Command::new("rustup")
            .current_dir(root())
            .args(["target", "add", "wasm32-wasip2"]),
    )?;
    run(
        "rustup component add rustfmt clippy",
        Command::new("rustup")
            .current_dir(root())
            .args(["component", "add", "rustfmt", "clippy"]),
    )
}

/// Build every recipe crate to a component and copy it into `plugins/`.
fn recipes() -> Result<Vec<PathBuf>, String> {
    setup()?;
    let root = root();
    let mut names: Vec<String> = std::fs::read_dir(root.join("recipes"))
        .map_err(|e| format!("reading recipes/: {e}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // Crates with a workspace of their own (as `switchboard new` makes them) build on
    // their own, in release; the others are members of ours.
    let standalone = |name: &String| {
        std::fs::read_to_string(root.join("recipes").join(name).join("Cargo.toml"))
            .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
    };
    let (own, names): (Vec<String>, Vec<String>) = names.into_iter().partition(standalone);
    // The same target dir as the tests' guest build, so each is built once.
    let target_dir = root.join("target").join("guests");
    let mut built = Vec::new();
    let plugins = root.join("plugins");
    std::fs::create_dir_all(&plugins).map_err(|e| format!("creating plugins/: {e}"))?;
    for name in &own {
        let dir = root.join("recipes").join(name);
        run(
            &format!("build recipes/{name} (its own workspace) to wasm32-wasip2"),
            cargo()
                .current_dir(&dir)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--target-dir",
                ])
                .arg(&target_dir),
        )?;
        let from = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let to = plugins.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
        built.push(to);
    }
    if names.is_empty() {
        return Ok(built);
    }
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--profile",
        "wasm",
        "--target",
        "wasm32-wasip2",
        "--target-dir",
    ])
    .arg(&target_dir);
    for name in &names {
        cmd.args(["-p", name]);
    }
    run("build recipes to wasm32-wasip2", &mut cmd)?;
    for name in &names {
        let from = target_dir
            .join("wasm32-wasip2/wasm")
            .join(format!("{}.wasm", name.replace('-', "_")));
        let to = plugins.join(format!("{name}.wasm"));
        std::fs::copy(&from, &to)
            .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))?;
        println!("    {}", to.strip_prefix(&root).unwrap_or(&to).display());
        built.push(to);
    }
    Ok(built)
}

/// What each layer must not depend on, directly or through another crate (normal and
/// build dependencies; tests may use anything).
const LAYERS: &[(&str, &[&str], &str)] = &[
    (
        "switchboard-model",
        &["tokio", "sled", "wasmtime", "reqwest", "axum", "sqlx"],
        "the model does no I/O",
    ),
    (
        "switchboard-vendors",
        &[
            "wasmtime",
            "switchboard-runtime",
            "switchboard-pipeline",
            "switchboard",
        ],
        "the vendor clients know nothing of wasm",
    ),
    (
        "switchboard-runtime",
        &[
            "switchboard-pipeline",
            "switchboard-postgres",
            "switchboard",
            "axum",
            "sled",
            "sqlx",
        ],
        "the runtime knows nothing of HTTP servers, triggers, the pipeline or its store",
    ),
    (
        "switchboard-sandbox",
        &[
            "wasmtime",
            "switchboard-runtime",
            "switchboard-pipeline",
            "switchboard",
        ],
        "the vendor sandbox is the vendors' side: no wasm, no pipeline",
    ),
    (
        "switchboard-pipeline",
        &[
            "switchboard",
            "axum",
            "switchboard-sled",
            "switchboard-postgres",
            "sled",
            "sqlx",
        ],
        "the pipeline knows nothing of the server, the binary or its backends' stores",
    ),
    (
        "switchboard-postgres",
        &["switchboard", "axum", "switchboard-sled", "sled"],
        "the PostgreSQL backend knows nothing of the server, the binary or sled",
    ),
    (
        "switchboard-sled",
        &["switchboard", "axum", "switchboard-postgres", "sqlx"],
        "the sled backend knows nothing of the server, the binary or PostgreSQL",
    ),
];

/// Check the workspace's crate graph against [`LAYERS`].
fn layers() -> Result<(), String> {
    println!("==> crate graph (cargo metadata)");
    let out = cargo()
        .args(["metadata", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cargo metadata: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let violations = layer_violations(&meta)?;
    if violations.is_empty() {
        for (krate, _, why) in LAYERS {
            println!("    {krate}: ok ({why})");
        }
        Ok(())
    } else {
        Err(format!(
            "the crate graph breaks the layering:\n  {}",
            violations.join("\n  ")
        ))
    }
}

/// Every forbidden dependency in `meta` (`cargo metadata` output), with the path to it.
fn layer_violations(meta: &serde_json::Value) -> Result<Vec<String>, String> {
    use std::collections::{HashMap, VecDeque};
    let bad = || "cargo metadata: unexpected shape".to_string();
    let packages = meta["packages"].as_array().ok_or_else(bad)?;
    let name_of: HashMap<&str, &str> = packages
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
        .collect();
    // Normal and build edges only: dev-dependencies serve tests.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().ok_or_else(bad)? {
        let id = node["id"].as_str().ok_or_else(bad)?;
        let deps = node["deps"].as_array().ok_or_else(bad)?;
        let targets = deps
            .iter()
            .filter(|d| {
                d["dep_kinds"].as_array().is_some_and(|kinds| {
                    kinds
                        .iter()
                        .any(|k| k["kind"].is_null() || k["kind"] == "build")
                })
            })
            .filter_map(|d| d["pkg"].as_str())
            .collect();
        edges.insert(id, targets);
    }
    let mut violations = Vec::new();
    for (krate, forbidden, why) in LAYERS {
        let Some(start) = name_of.iter().find(|(_, n)| *n == krate).map(|(id, _)| *id) else {
            return Err(format!("{krate}: not in the workspace (update LAYERS)"));
        };
        // Breadth first, remembering how each crate was reached.
        let mut via: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(id) = queue.pop_front() {
            for &dep in edges.get(id).into_iter().flatten() {
                if dep == start || via.contains_key(dep) {
                    continue;
                }
                via.insert(dep, id);
                queue.push_back(dep);
            }
        }
        for &id in via.keys() {
            let name = name_of.get(id).copied().unwrap_or(id);
            if forbidden.contains(&name) {
                let mut path = vec![name];
                let mut at = id;
                while let Some(&from) = via.get(at) {
                    path.push(name_of.get(from).copied().unwrap_or(from));
                    at = from;
                }
                path.push(krate);
                path.reverse();
                path.dedup();
                violations.push(format!("{} ({why})", path.join(" -> ")));
            }
        }
    }
    violations.sort();
    Ok(violations)
}

fn ci() -> Result<(), String> {
    setup()?;
    layers()?;
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run(
        "cargo clippy -D warnings",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    recipes()?;
    browser()?;
    // Kept until the tests are done: dropping it stops and removes the cluster.
    let (url, _cluster) = postgres()?;
    test_with_summary(&url)
}

/// What the console's browser tests need: Debian's `chromium` (installed when missing and
/// we are root) and `playwright-core` from the npm registry (`npm ci` in tests/browser).
fn browser() -> Result<(), String> {
    const HINT: &str = "the console's browser tests need Chromium and Node.js: `apt-get install chromium nodejs npm` (Debian), then `npm ci` in tests/browser";
    if !Path::new(CHROMIUM).exists() {
        if !is_root() {
            return Err(HINT.to_string());
        }
        run(
            "apt-get install chromium",
            Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        if !Path::new(CHROMIUM).exists() {
            return Err(format!(
                "installed chromium, yet {CHROMIUM} is missing: {HINT}"
            ));
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        run(
            "npm ci (tests/browser: playwright-core)",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )
        .map_err(|e| format!("{e}; {HINT}"))?;
    }
    println!("==> browser tests: {CHROMIUM}, playwright-core in tests/browser");
    Ok(())
}

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The PostgreSQL server the tests use: `$SWITCHBOARD_TEST_DATABASE_URL` when set, else a
/// throwaway cluster from the system's binaries (Debian's `postgresql` package, installed
/// when missing and we are root).
fn postgres() -> Result<(String, Option<cluster::Cluster>), String> {
    if let Ok(url) = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        println!("==> PostgreSQL for the tests: $SWITCHBOARD_TEST_DATABASE_URL");
        return Ok((url, None));
    }
    if cluster::bin_dir().is_none() {
        if !is_root() {
            return Err(cluster::INSTALL_HINT.to_string());
        }
        run(
            "apt-get install postgresql",
            Command::new("sh")
                .args([
                    "-c",
                    "apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        if cluster::bin_dir().is_none() {
            return Err(format!(
                "installed postgresql, yet: {}",
                cluster::INSTALL_HINT
            ));
        }
    }
    println!("==> PostgreSQL for the tests: a throwaway cluster");
    let cluster = cluster::Cluster::start(None, &[])?;
    println!(
        "    {} (in {}, removed at the end)",
        cluster.url,
        cluster.dir().display()
    );
    Ok((cluster.url.clone(), Some(cluster)))
}

/// `cargo test --workspace`, echoing its output, then one closing line with the totals of
/// every test binary and doctest run (the last binary cargo runs often has no tests).
fn test_with_summary(database_url: &str) -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    println!("==> cargo test");
    let mut child = cargo()
        .args(["test", "--workspace"])
        .env("SWITCHBOARD_TEST_DATABASE_URL", database_url)
        // Installed above: the browser tests must run, not skip.
        .env("SWITCHBOARD_BROWSER_TESTS", "required")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: cannot start: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut skipped = Vec::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("cargo test: reading output: {e}"))?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
        // Tests that skip themselves say so on a line of their own (tests/it/support.rs).
        if let Some(at) = line.find("SKIPPED ") {
            skipped.push(line[at + "SKIPPED ".len()..].to_string());
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo test: waiting: {e}"))?;
    println!(
        "\nci: {passed} passed, {failed} failed, {} skipped themselves",
        skipped.len()
    );
    for line in &skipped {
        println!("    skipped {line}");
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test: failed ({status})"))
    }
}

/// The number before `label` in a `test result:` line, e.g. `ok. 7 passed; 0 failed; ...`.
fn count(result: &str, label: &str) -> u64 {
    result
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
                .map(str::trim)
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn demo(tour: bool) -> Result<(), String> {
    recipes()?;
    run(
        "build switchboard",
        cargo().args(["build", "-p", "switchboard"]),
    )?;
    let root = root();
    let bin = root.join("target/debug/switchboard");
    let mut cmd = Command::new(&bin);
    cmd.current_dir(&root).args(["serve", "--sandbox"]);
    if tour {
        cmd.arg("--tour");
    }
    let what = if tour {
        "switchboard serve --sandbox --tour"
    } else {
        "switchboard serve --sandbox   (Ctrl-C stops it)"
    };
    run(what, &mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph where the runtime reaches the pipeline through another crate.
    fn graph(runtime_deps: &[&str]) -> serde_json::Value {
        let names = [
            "switchboard-model",
            "switchboard-vendors",
            "switchboard-runtime",
            "switchboard-sandbox",
            "switchboard-pipeline",
            "switchboard",
            "middle",
            "switchboard-postgres",
            "switchboard-sled",
        ];
        let packages: Vec<_> = names
            .iter()
            .map(|n| serde_json::json!({"id": format!("id-{n}"), "name": n}))
            .collect();
        let dep =
            |n: &str| serde_json::json!({"pkg": format!("id-{n}"), "dep_kinds": [{"kind": null}]});
        let nodes: Vec<_> = names
            .iter()
            .map(|n| {
                let deps: Vec<_> = match *n {
                    "switchboard-runtime" => runtime_deps.iter().map(|d| dep(d)).collect(),
                    "middle" => vec![dep("switchboard-pipeline")],
                    "switchboard-pipeline" => vec![dep("switchboard-runtime")],
                    _ => vec![],
                };
                serde_json::json!({"id": format!("id-{n}"), "deps": deps})
            })
            .collect();
        serde_json::json!({"packages": packages, "resolve": {"nodes": nodes}})
    }

    #[test]
    fn a_wrong_way_edge_is_found_with_its_path() {
        assert_eq!(
            layer_violations(&graph(&["switchboard-model"])).unwrap(),
            Vec::<String>::new()
        );
        let found = layer_violations(&graph(&["middle"])).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("switchboard-runtime -> middle -> switchboard-pipeline"),
            "{found:?}"
        );
    }

    #[test]
    fn dev_dependencies_do_not_count() {
        let mut g = graph(&[]);
        g["resolve"]["nodes"][2]["deps"] = serde_json::json!([
            {"pkg": "id-switchboard-pipeline", "dep_kinds": [{"kind": "dev"}]}
        ]);
        assert!(layer_violations(&g).unwrap().is_empty());
    }
}
