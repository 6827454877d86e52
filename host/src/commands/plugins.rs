//! `switchboard plugins list|inspect`.

use super::{CommandError, Context, EXIT_BAD_INPUT};
use crate::model::Trigger;
use crate::runtime::plugin::Plugin;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

fn describe(p: &Plugin) -> serde_json::Value {
    json!({
        "file": p.path.display().to_string(),
        "sha256": p.hash,
        "manifest": p.manifest,
        "limits": {
            "deadline_ms": p.limits.deadline.as_millis() as u64,
            "memory_limit_bytes": p.limits.memory_limit,
        },
        "imports": p.imports,
    })
}

fn triggers(p: &Plugin) -> String {
    p.manifest
        .triggers
        .iter()
        .map(|t| match t {
            Trigger::Webhook { source, kind } => format!("webhook {source}/{kind}"),
            Trigger::Cron { schedule, timezone } => format!(
                "cron '{schedule}'{}",
                timezone
                    .as_ref()
                    .map(|z| format!(" {z}"))
                    .unwrap_or_default()
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn join<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub async fn list(ctx: &Context, as_json: bool) -> Result<ExitCode, CommandError> {
    let runtime = ctx.runtime_without_connections().await?;
    let (plugins, errors) =
        runtime
            .load_dir(&ctx.plugins_dir)
            .await
            .map_err(|e| CommandError::Input {
                path: ctx.plugins_dir.display().to_string(),
                message: format!("cannot read the plugins folder: {e}"),
            })?;
    if as_json {
        let value = json!({
            "plugins": plugins.iter().map(|p| describe(p)).collect::<Vec<_>>(),
            "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value).expect("json"));
    } else {
        if plugins.is_empty() && errors.is_empty() {
            println!("no plugins in {}", ctx.plugins_dir.display());
        }
        for p in plugins.iter() {
            println!(
                "{} {}  {}\n  file: {}\n  triggers: {}\n  capabilities: {}\n  connections: {}",
                p.name,
                p.manifest.version,
                p.manifest.description,
                p.path.display(),
                if p.manifest.triggers.is_empty() {
                    "(none)".into()
                } else {
                    triggers(p)
                },
                join(&p.manifest.capabilities),
                join(&p.manifest.connections),
            );
        }
        for e in &errors {
            eprintln!("error: {e}");
        }
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_INPUT)
    })
}

pub async fn inspect(ctx: &Context, file: &Path, as_json: bool) -> Result<ExitCode, CommandError> {
    let runtime = ctx.runtime_without_connections().await?;
    let p = runtime.load(file).await?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&describe(&p)).expect("json")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let m = &p.manifest;
    println!("{} {}", m.name, m.version);
    if !m.description.is_empty() {
        println!("  {}", m.description);
    }
    println!("file: {}", p.path.display());
    println!("sha256: {}", p.hash);
    println!("manifest:");
    println!("  triggers:");
    for t in m.triggers.iter() {
        match t {
            Trigger::Webhook { source, kind } => {
                println!("    - webhook: source={source} kind={kind}")
            }
            Trigger::Cron { schedule, timezone } => println!(
                "    - cron: schedule='{schedule}' timezone={}",
                timezone.as_deref().unwrap_or("UTC")
            ),
        }
    }
    println!("  capabilities: {}", join(&m.capabilities));
    println!("  connections: {}", join(&m.connections));
    println!(
        "limits: deadline {} ms, memory {} MiB",
        p.limits.deadline.as_millis(),
        p.limits.memory_limit >> 20
    );
    println!("imports:");
    for i in &p.imports {
        println!("  {i}");
    }
    Ok(ExitCode::SUCCESS)
}
