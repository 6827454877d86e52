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
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().parent().unwrap().to_owned();
    for dir in [
        "wit",
        "sdk",
        "recipes/hello",
        "tests/guests/probe",
        "tests/guests/other-world",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    ensure_wasm_target();
    let target_dir = root.join("target").join("guests");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
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

    let out = target_dir.join("wasm32-wasip2").join("wasm");
    let mut consts = String::new();
    for (package, name) in GUESTS {
        let file = out.join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.is_file(), "expected guest at {}", file.display());
        consts.push_str(&format!(
            "/// `{package}`, built to a wasm32-wasip2 component.\npub const {name}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(dest, consts).unwrap();
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
