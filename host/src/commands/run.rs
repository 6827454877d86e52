//! `switchboard run`: one event through one recipe.

use super::{CommandError, Context, EXIT_RUN_FAILED};
use crate::cli::RunArgs;
use crate::model::Event;
use crate::runtime::RunReport;
use crate::runtime::plugin::Plugin;
use serde::Deserialize;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// An event as a user writes it: only `kind` is required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventInput {
    id: Option<String>,
    source: Option<String>,
    kind: String,
    time: Option<String>,
    payload: Option<Box<serde_json::value::RawValue>>,
}

/// Parse an event file's text; `origin` names it in errors.
pub fn parse_event(origin: &str, text: &str) -> Result<Event, CommandError> {
    let input: EventInput = serde_json::from_str(text).map_err(|e| CommandError::Input {
        path: origin.to_string(),
        message: format!("invalid event: {e}"),
    })?;
    if input.kind.trim().is_empty() {
        return Err(CommandError::Input {
            path: origin.to_string(),
            message: "invalid event: kind: must not be empty".into(),
        });
    }
    let now = chrono::Utc::now();
    let time = match input.time {
        Some(t) => {
            chrono::DateTime::parse_from_rfc3339(&t).map_err(|e| CommandError::Input {
                path: origin.to_string(),
                message: format!("invalid event: time: '{t}' is not RFC 3339 ({e})"),
            })?;
            t
        }
        None => now.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    };
    Ok(Event {
        id: input
            .id
            .unwrap_or_else(|| format!("cli-{}", now.timestamp_nanos_opt().unwrap_or_default())),
        source: input.source.unwrap_or_else(|| "cli".into()),
        kind: input.kind,
        time,
        payload: match input.payload {
            Some(p) if p.get() != "null" => p,
            _ => serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON"),
        },
    })
}

fn read_event(arg: &str) -> Result<Event, CommandError> {
    let (origin, text) = read_input(arg)?;
    parse_event(&origin, &text)
}

/// Read a file named on the command line, or standard input for `-`: (its name, its text).
pub fn read_input(arg: &str) -> Result<(String, String), CommandError> {
    Ok(if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CommandError::Input {
                path: "<stdin>".into(),
                message: format!("cannot read: {e}"),
            })?;
        ("<stdin>".to_string(), text)
    } else {
        let text = std::fs::read_to_string(arg).map_err(|e| CommandError::Input {
            path: arg.into(),
            message: format!("cannot read: {e}"),
        })?;
        (arg.to_string(), text)
    })
}

/// Find the plugin: a file path, or a recipe name in the plugins folder.
async fn resolve(
    ctx: &Context,
    runtime: &crate::runtime::Runtime,
    plugin: &str,
) -> Result<Arc<Plugin>, CommandError> {
    let as_path = Path::new(plugin);
    if as_path.is_file() || plugin.ends_with(".wasm") || plugin.contains(std::path::MAIN_SEPARATOR)
    {
        return Ok(Arc::new(runtime.load(as_path).await?));
    }
    let (plugins, errors) =
        runtime
            .load_dir(&ctx.plugins_dir)
            .await
            .map_err(|e| CommandError::Input {
                path: ctx.plugins_dir.display().to_string(),
                message: format!("cannot read the plugins folder: {e}"),
            })?;
    for e in &errors {
        tracing::warn!("{e}");
    }
    plugins
        .get(plugin)
        .cloned()
        .ok_or_else(|| CommandError::UnknownRecipe {
            name: plugin.into(),
            dir: ctx.plugins_dir.clone(),
            available: plugins.iter().map(|p| p.name.to_string()).collect(),
        })
}

pub async fn run(ctx: &Context, args: RunArgs) -> Result<ExitCode, CommandError> {
    let event = read_event(&args.event)?;
    let backend = ctx.backend().await?;
    let runtime = ctx.runtime(&*backend)?;
    let plugin = resolve(ctx, &runtime, &args.plugin).await?;
    let report = runtime.run_unjournaled(&plugin, &event).await;
    if let Err(e) = crate::pipeline::backend::Backend::flush(&*backend).await {
        tracing::error!("flushing the store: {e}");
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("a run report serializes")
        );
    } else {
        print_report(&event, &report);
    }
    Ok(if report.error.is_some() {
        ExitCode::from(EXIT_RUN_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(event: &Event, report: &RunReport) {
    println!(
        "{} <- {} {} ({})",
        report.recipe, event.source, event.kind, event.id
    );
    match (&report.outcome, &report.error) {
        (Some(outcome), _) => println!("outcome: {outcome}"),
        (None, Some(e)) => println!("failed: {e}"),
        (None, None) => {}
    }
    if !report.logs.is_empty() {
        println!("logs:");
        for line in &report.logs {
            let fields: String = line
                .fields
                .iter()
                .map(|(k, v)| format!(" {k}={v}"))
                .collect();
            println!(
                "  {:<5} {}{fields}",
                format!("{:?}", line.level).to_uppercase(),
                line.message
            );
        }
    }
    if report.logs_dropped > 0 {
        println!(
            "  ({} log lines dropped past the limit)",
            report.logs_dropped
        );
    }
    println!("took {:.3} ms", report.duration_us as f64 / 1000.0);
}
