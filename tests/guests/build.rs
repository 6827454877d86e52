//! Builds the test guests and the `hello` recipe to `wasm32-wasip2` components, from source,
//! and writes their paths as constants for the tests (see `src/lib.rs`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, constant) for every guest the tests use.
const GUESTS: &[(&str, &str)] = &[
    ("hello", "HELLO"),
    ("probe", "PROBE"),
    ("other-world", "OTHER_WORLD"),
    ("old-contract", "OLD_CONTRACT"),
    ("pipe", "PIPE"),
    ("hcp-contact-to-ghl", "HCP_CONTACT_TO_GHL"),
    ("new-lead-sms", "NEW_LEAD_SMS"),
    ("lead-router", "LEAD_ROUTER"),
    (
        "ghl-appointment-to-pocketboss",
        "GHL_APPOINTMENT_TO_POCKETBOSS",
    ),
    (
        "welcomehome-prospects-to-ghl",
        "WELCOMEHOME_PROSPECTS_TO_GHL",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().parent().unwrap().to_owned();
    for dir in [
        "wit",
        "sdk",
        "recipes",
        "tests/guests/probe",
        "tests/guests/other-world",
        "tests/guests/old-contract",
        "tests/guests/pipe",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    ensure_wasm_target();
    let target_dir = root.join("target").join("guests");
    let out = target_dir.join("wasm32-wasip2").join("wasm");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut consts = String::new();
    // `pipe` as version 2 first (its file is overwritten by the version 1 build below).
    build(&root, &target_dir, &["-p", "pipe", "--features", "v2"]);
    let v2 = out_dir.join("pipe-v2.wasm");
    std::fs::copy(out.join("pipe.wasm"), &v2).expect("copying pipe v2");
    consts.push_str(&format!(
        "/// `pipe` built with its `v2` feature: the same recipe, version 2.0.0.\npub const PIPE_V2: &str = {:?};\n",
        v2.display().to_string()
    ));
    let packages: Vec<&str> = GUESTS.iter().flat_map(|(p, _)| ["-p", *p]).collect();
    build(&root, &target_dir, &packages);

    for (package, name) in GUESTS {
        let file = out.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.is_file(), "expected guest at {}", file.display());
        consts.push_str(&format!(
            "/// `{package}`, built to a wasm32-wasip2 component.\npub const {name}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("guests.rs"), consts).unwrap();
}

/// `cargo build` wasm guests with these extra arguments.
fn build(root: &Path, target_dir: &Path, extra: &[&str]) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir)
        .args(extra);
    // The outer cargo's settings are not for wasm (and clippy's wrapper is not for builds).
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the wasm guests");
    assert!(
        status.success(),
        "building the wasm guests failed: {status}"
    );
}

/// Install the wasm32-wasip2 target for the active toolchain if it is missing.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed = sysroot
        .map(|s| Path::new(&s).join("lib/rustlib/wasm32-wasip2").is_dir())
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .expect("running rustup to add the wasm32-wasip2 target");
        assert!(status.success(), "rustup target add wasm32-wasip2 failed");
    }
}
