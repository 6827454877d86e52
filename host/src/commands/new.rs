//! `switchboard new <name>`: scaffold a recipe crate that builds to a component and passes
//! its own test out of the box.

use super::CommandError;
use crate::cli::{NewArgs, NewTrigger};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

/// The SDK: `--sdk`, else an `sdk/` beside a folder above the current one.
fn find_sdk(given: Option<&Path>) -> Result<PathBuf, CommandError> {
    if let Some(p) = given {
        return std::fs::canonicalize(p)
            .map_err(|e| CommandError::input(p.display(), format!("--sdk: {e}")));
    }
    let cwd = std::env::current_dir().map_err(|e| CommandError::input(".", e))?;
    cwd.ancestors()
        .map(|a| a.join("sdk"))
        .find(|sdk| {
            std::fs::read_to_string(sdk.join("Cargo.toml"))
                .is_ok_and(|t| t.contains("name = \"switchboard-sdk\""))
        })
        .ok_or_else(|| {
            CommandError::input(cwd.display(),
                "cannot find the switchboard-sdk crate above this folder; pass --sdk <path to sdk/>",
            )
        })
}

/// `to` relative to `from` (both absolute), for a path dependency.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<Component>, Vec<Component>) =
        (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to[common..] {
        out.push(c);
    }
    out
}

pub fn new(args: NewArgs) -> Result<ExitCode, CommandError> {
    let name = &args.name;
    if !crate::runtime::plugin::valid_name(name) {
        return Err(CommandError::input(
            name,
            "a recipe name is 1-64 lowercase letters, digits or '-', not starting with '-'",
        ));
    }
    let dir = args.dir.clone().unwrap_or_else(|| {
        if Path::new("recipes").is_dir() {
            Path::new("recipes").join(name)
        } else {
            PathBuf::from(name)
        }
    });
    if dir.exists() {
        return Err(CommandError::input(
            dir.display(),
            "already exists; choose another name or --dir",
        ));
    }
    let sdk = find_sdk(args.sdk.as_deref())?;
    std::fs::create_dir_all(dir.join("src")).map_err(|e| CommandError::input(dir.display(), e))?;
    let abs = std::fs::canonicalize(&dir).map_err(|e| CommandError::input(dir.display(), e))?;
    let sdk_path = relative(&abs, &sdk);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk_path)),
        ("src/lib.rs", lib_rs(name, args.trigger)),
        (".gitignore", "/target\n".to_string()),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| CommandError::input(path.display(), e))?;
    }
    println!(
        "created {} (a {} recipe)",
        dir.display(),
        args.trigger.as_str()
    );
    println!("  cargo test --manifest-path {}/Cargo.toml", dir.display());
    println!(
        "  cargo build --release --target wasm32-wasip2 --manifest-path {}/Cargo.toml",
        dir.display()
    );
    println!(
        "  then copy target/wasm32-wasip2/release/{}.wasm into the plugins folder",
        name.replace('-', "_")
    );
    Ok(ExitCode::SUCCESS)
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
switchboard-sdk = {{ path = "{}" }}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
lto = true
panic = "abort"

# A workspace of its own: build it on its own, wherever it lives.
[workspace]
"#,
        sdk.display()
    )
}

fn lib_rs(name: &str, trigger: NewTrigger) -> String {
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let ty = if ty.starts_with(|c: char| c.is_ascii_digit()) {
        format!("Recipe{ty}")
    } else {
        ty
    };
    let (trigger_line, handle, helper, test) = match trigger {
        NewTrigger::Webhook => (
            r#".on_webhook("*", "lead.created")"#,
            r#"        let lead: Lead = event.payload()?; // a bad payload is an `invalid` error naming it
        // Each lead once, even if the webhook is delivered again.
        if !kv::set_if_absent(&format!("seen/{}", lead.email), &event.id)? {
            return Ok(Outcome::skipped("seen before"));
        }
        log::info(&greeting(&lead));
        Ok(Outcome::done(greeting(&lead)))"#,
            r#"/// The payload this recipe expects.
#[derive(Deserialize)]
struct Lead {
    name: String,
    email: String,
}

fn greeting(lead: &Lead) -> String {
    format!("welcome, {} <{}>", lead.name, lead.email)
}"#,
            r##"    #[test]
    fn greets_the_lead() {
        let lead: Lead =
            serde_json::from_str(r#"{"name": "Ada", "email": "ada@example.com"}"#).unwrap();
        assert_eq!(greeting(&lead), "welcome, Ada <ada@example.com>");
    }"##,
        ),
        NewTrigger::Cron => (
            r#".on_cron("0 */5 * * * *") // every five minutes, on the minute"#,
            r#"        let ticks = kv::update("ticks", |n: Option<u64>| n.unwrap_or(0) + 1)?;
        Ok(Outcome::done(summary(ticks, &event.time)))"#,
            r#"fn summary(ticks: u64, time: &str) -> String {
    format!("tick #{ticks} at {time}")
}"#,
            r#"    #[test]
    fn counts_ticks() {
        assert_eq!(summary(3, "2026-01-01T00:00:00Z"), "tick #3 at 2026-01-01T00:00:00Z");
    }"#,
        ),
    };
    let (use_serde, uses_json) = match trigger {
        NewTrigger::Webhook => (
            "use serde::Deserialize;\n",
            "    use switchboard_sdk::serde_json;\n",
        ),
        NewTrigger::Cron => ("", ""),
    };
    format!(
        r#"//! `{name}`: a Switchboard recipe. Build it with
//! `cargo build --release --target wasm32-wasip2` and drop
//! `target/wasm32-wasip2/release/{file}.wasm` into the host's plugins folder.

{use_serde}use switchboard_sdk::prelude::*;

struct {ty};

impl Recipe for {ty} {{
    fn manifest() -> Manifest {{
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"))
            .description("What {name} does")
            {trigger_line}
            .uses(Capability::Kv)
    }}

    fn handle(event: Event) -> Result<Outcome> {{
{handle}
    }}
}}

{helper}

export_recipe!({ty});

#[cfg(test)]
mod tests {{
    use super::*;
{uses_json}
{test}
}}
"#,
        file = name.replace('-', "_"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/recipes/x"), Path::new("/a/b/sdk")),
            PathBuf::from("../../sdk")
        );
        assert_eq!(
            relative(Path::new("/tmp/x"), Path::new("/work/sdk")),
            PathBuf::from("../../work/sdk")
        );
    }
}
