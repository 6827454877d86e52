//! `switchboard runs …` and `switchboard trigger`: clients of a running server's admin API.

use super::{CommandError, Context, EXIT_RUN_FAILED};
use crate::cli::{AdminArgs, RunsCommand, TriggerArgs};
use serde_json::Value;
use std::process::ExitCode;

struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    fn new(ctx: &Context, args: &AdminArgs) -> Result<Self, CommandError> {
        let base = args
            .server
            .clone()
            .or_else(|| ctx.config.server.listen.map(|a| format!("http://{a}")))
            .unwrap_or_else(|| format!("http://{}", super::serve::DEFAULT_LISTEN));
        let token = match &args.token {
            Some(t) => Some(t.clone()),
            None => ctx.admin_token()?.map(|s| s.expose().to_string()),
        };
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, CommandError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.map_err(|e| CommandError::Server {
            url: url.clone(),
            message: format!("cannot reach the server: {e}"),
        })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let message = value["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string());
        if status.is_server_error() {
            Err(CommandError::Server { url, message })
        } else {
            Err(CommandError::Refused {
                status: status.as_u16(),
                message,
            })
        }
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn summary(run: &Value) -> String {
    run["reason"]
        .as_str()
        .map(str::to_string)
        .or_else(|| run["outcome"]["summary"].as_str().map(str::to_string))
        .unwrap_or_default()
}

pub async fn runs(ctx: &Context, command: RunsCommand) -> Result<ExitCode, CommandError> {
    match command {
        RunsCommand::List {
            admin,
            plugin,
            status,
            since,
            until,
            unconfirmed,
            limit,
        } => {
            let client = Client::new(ctx, &admin)?;
            let mut query = vec![("limit", limit.to_string())];
            if unconfirmed {
                query.push(("unconfirmed", "true".into()));
            }
            for (k, v) in [
                ("plugin", plugin),
                ("status", status),
                ("since", since),
                ("until", until),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let value = client
                .call(reqwest::Method::GET, "/admin/runs", &query, None)
                .await?;
            if admin.json {
                print_json(&value);
                return Ok(ExitCode::SUCCESS);
            }
            let runs = value["runs"].as_array().cloned().unwrap_or_default();
            if runs.is_empty() {
                println!("no runs");
            }
            for r in &runs {
                let unconfirmed = r["unconfirmed"].as_array().map_or(0, Vec::len);
                let flag = if unconfirmed > 0 {
                    format!("  [{unconfirmed} unconfirmed]")
                } else {
                    String::new()
                };
                println!(
                    "{:<40} {:<10} {:>2} {}  {}{flag}",
                    r["id"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or(""),
                    r["attempts"],
                    r["created_at"].as_str().unwrap_or(""),
                    summary(r)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { admin, id } => {
            let client = Client::new(ctx, &admin)?;
            let value = client
                .call(
                    reqwest::Method::GET,
                    &format!("/admin/runs/{id}"),
                    &[],
                    None,
                )
                .await?;
            if admin.json {
                print_json(&value);
                return Ok(ExitCode::SUCCESS);
            }
            let r = &value["run"];
            println!("run        {}", r["id"].as_str().unwrap_or(""));
            println!(
                "plugin     {} {}",
                r["plugin"].as_str().unwrap_or(""),
                r["plugin_version"].as_str().unwrap_or("")
            );
            println!(
                "event      {} ({} {})",
                r["event_id"].as_str().unwrap_or(""),
                r["source"].as_str().unwrap_or(""),
                r["kind"].as_str().unwrap_or("")
            );
            println!(
                "status     {} after {} attempt(s)",
                r["status"].as_str().unwrap_or(""),
                r["attempts"]
            );
            for field in ["created_at", "started_at", "finished_at", "next_attempt_at"] {
                if let Some(t) = r[field].as_str() {
                    println!("{:<10} {t}", field.trim_end_matches("_at"));
                }
            }
            let s = summary(r);
            if !s.is_empty() {
                println!("result     {s}");
            }
            for u in r["unconfirmed"].as_array().into_iter().flatten() {
                println!(
                    "unconfirmed {} through '{}' (call #{}): {}",
                    u["call"].as_str().unwrap_or(""),
                    u["connection"].as_str().unwrap_or(""),
                    u["position"],
                    u["reason"].as_str().unwrap_or("")
                );
            }
            let effects = value["effects"].as_array().cloned().unwrap_or_default();
            if !effects.is_empty() {
                println!("effects");
            }
            for e in &effects {
                println!(
                    "  {} {} through '{}': {} (sent {})",
                    e["position"],
                    e["call"].as_str().unwrap_or(""),
                    e["connection"].as_str().unwrap_or(""),
                    e["state"].as_str().unwrap_or(""),
                    e["sent_at"].as_str().unwrap_or("")
                );
            }
            for line in r["logs"].as_array().into_iter().flatten() {
                println!(
                    "  [{}] {}",
                    line["level"].as_str().unwrap_or(""),
                    line["message"].as_str().unwrap_or("")
                );
            }
            if let Some(n) = r["logs_dropped"].as_u64().filter(|n| *n > 0) {
                println!("  ({n} more log line(s) dropped past the run's log limits)");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Replay {
            admin,
            id,
            plugin,
            status,
            resend_unconfirmed,
        } => {
            let client = Client::new(ctx, &admin)?;
            let value = match (id, plugin) {
                (Some(id), _) => {
                    let query = if resend_unconfirmed {
                        vec![("resend_unconfirmed", "true".to_string())]
                    } else {
                        vec![]
                    };
                    client
                        .call(
                            reqwest::Method::POST,
                            &format!("/admin/runs/{id}/replay"),
                            &query,
                            None,
                        )
                        .await?
                }
                (None, Some(plugin)) => {
                    let query: Vec<(&str, String)> =
                        status.into_iter().map(|s| ("status", s)).collect();
                    client
                        .call(
                            reqwest::Method::POST,
                            &format!("/admin/plugins/{plugin}/replay"),
                            &query,
                            None,
                        )
                        .await?
                }
                (None, None) => unreachable!("clap requires an id or --plugin"),
            };
            if admin.json {
                print_json(&value);
            } else if let Some(n) = value["replayed"].as_u64() {
                println!("queued {n} run(s) again");
            } else {
                println!("queued {} again", value["run"]["id"].as_str().unwrap_or(""));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn trigger(ctx: &Context, args: TriggerArgs) -> Result<ExitCode, CommandError> {
    let (origin, text) = super::run::read_input(&args.event)?;
    let mut body: Value = serde_json::from_str(&text).map_err(|e| CommandError::Input {
        path: origin.clone(),
        message: format!("invalid event: {e}"),
    })?;
    let Some(object) = body.as_object_mut() else {
        return Err(CommandError::Input {
            path: origin,
            message: "invalid event: expected a JSON object with `kind`".into(),
        });
    };
    if let Some(p) = &args.plugin {
        object.insert("plugin".into(), Value::String(p.clone()));
    }
    if args.wait {
        object.insert("wait".into(), Value::Bool(true));
    }
    let client = Client::new(ctx, &args.admin)?;
    let value = client
        .call(reqwest::Method::POST, "/admin/trigger", &[], Some(body))
        .await?;
    let runs = value["runs"].as_array().cloned().unwrap_or_default();
    // Answered: succeeded, or held by its recipe until later (the server's `wait` counts a
    // deferral as an answer too).
    let answered = |r: &Value| {
        r["status"] == "succeeded"
            || (r["status"] == "queued" && r["outcome"]["status"] == "deferred")
    };
    let failed = !runs.iter().all(answered) || (args.wait && value["complete"] == false);
    if args.admin.json {
        print_json(&value);
    } else {
        let ack = &value["ack"];
        println!(
            "event {} queued {} run(s)",
            ack["event_id"].as_str().unwrap_or(""),
            ack["runs"].as_array().map_or(0, Vec::len)
        );
        for r in &runs {
            println!(
                "  {} {}: {}",
                r["id"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
                summary(r)
            );
        }
        if args.wait && value["complete"] == false {
            println!("  (not all runs finished within 60 s)");
        }
    }
    Ok(if args.wait && failed {
        ExitCode::from(EXIT_RUN_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
