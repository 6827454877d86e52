//! Build tasks for Switchboard, as a cargo alias (`cargo xtask <task>`).
//!
//! - `ci`: what CI runs: format check, clippy with `-D warnings`, every test.
//! - `demo`: the main job: build the recipes into `plugins/` and serve them with the vendor
//!   sandbox wired in (`demo --tour`: a scripted tour that exits).
//! - `recipes`: build every crate under `recipes/` to a wasm component in `plugins/`.
//!
//! Every task installs the `wasm32-wasip2` target (and rustfmt/clippy) when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <ci|demo|recipes>

  ci        format check, clippy -D warnings, all tests (what .ci/run runs)
  demo      build the recipes and serve them with the vendor sandbox wired in
            (`demo --tour`: drive each recipe once through the sandbox, then exit)
  recipes   build every recipe under recipes/ to plugins/<name>.wasm";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let result = match task.as_deref() {
        Some("ci") => ci(),
        Some("demo") => demo(std::env::args().nth(2).as_deref() == Some("--tour")),
        Some("recipes") => recipes().map(|_| ()),
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

fn ci() -> Result<(), String> {
    setup()?;
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
    test_with_summary()
}

/// `cargo test --workspace`, echoing its output, then one closing line with the totals of
/// every test binary and doctest run (the last binary cargo runs often has no tests).
fn test_with_summary() -> Result<(), String> {
    use std::io::{BufRead, BufReader};
    println!("==> cargo test");
    let mut child = cargo()
        .args(["test", "--workspace"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: cannot start: {e}"))?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("cargo test: reading output: {e}"))?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count(rest, " passed");
            failed += count(rest, " failed");
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cargo test: waiting: {e}"))?;
    println!("\nci: {passed} passed, {failed} failed");
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
