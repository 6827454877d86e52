//! `switchboard runs …` and `switchboard trigger`: clients of a running server's admin API.

use super::{CommandError, Context, EXIT_RUN_FAILED};
use crate::api::{
    BulkReplayed, ErrorBody, ReplayParams, Replayed, RunFilter, RunView, RunsPage, TriggerBody,
    Triggered,
};
use crate::cli::{AdminArgs, RunFilterArgs, RunsCommand, TriggerArgs};
use crate::model::{RunRecord, RunStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
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

    /// Call `path` and read its answer as `T` (the raw JSON too, for `--json`).
    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &impl Serialize,
        body: Option<&impl Serialize>,
    ) -> Result<(T, Value), CommandError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|e| CommandError::Server {
            url: url.clone(),
            message: format!("cannot reach the server: {e}"),
        })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = serde_json::from_value::<ErrorBody>(value)
                .map(|e| e.error)
                .unwrap_or_else(|_| status.to_string());
            return Err(if status.is_server_error() {
                CommandError::Server { url, message }
            } else {
                CommandError::Refused {
                    status: status.as_u16(),
                    message,
                }
            });
        }
        let answer = T::deserialize(&value).map_err(|e| CommandError::Server {
            url,
            message: format!("the server's answer is not what this client expects: {e}"),
        })?;
        Ok((answer, value))
    }
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// What a run came to, in a line: its error, else its outcome's summary.
fn summary(run: &RunRecord) -> String {
    match (&run.reason, &run.outcome) {
        (Some(reason), _) => reason.clone(),
        (None, Some(outcome)) => outcome.summary().to_string(),
        (None, None) => String::new(),
    }
}

/// The filter of `runs list` and `runs replay`, as the admin API takes it.
fn filter(args: RunFilterArgs) -> RunFilter {
    RunFilter {
        status: args.status,
        plugin: args.plugin,
        source: args.source,
        since: args.since,
        until: args.until,
        ..RunFilter::default()
    }
}

const NO_BODY: Option<&()> = None;

pub async fn runs(ctx: &Context, command: RunsCommand) -> Result<ExitCode, CommandError> {
    match command {
        RunsCommand::List {
            admin,
            filter: args,
            unconfirmed,
            limit,
            cursor,
        } => {
            let client = Client::new(ctx, &admin)?;
            let query = RunFilter {
                unconfirmed: unconfirmed.then_some(true),
                limit: Some(limit),
                cursor,
                ..filter(args)
            };
            let (page, value): (RunsPage, _) = client
                .call(reqwest::Method::GET, "/admin/runs", &query, NO_BODY)
                .await?;
            if admin.json {
                print_json(&value);
                return Ok(ExitCode::SUCCESS);
            }
            if page.runs.is_empty() {
                println!("no runs");
            }
            for r in &page.runs {
                let mut flags = String::new();
                if !r.unconfirmed.is_empty() {
                    flags += &format!("  [{} unconfirmed]", r.unconfirmed.len());
                }
                if let Some(first) = &r.waiting_for {
                    flags += &format!("  [waits for {first}]");
                }
                println!(
                    "{:<40} {:<10} {:>2} {}  {}{flags}",
                    r.id,
                    r.status.as_str(),
                    r.attempts,
                    r.created_at,
                    summary(r)
                );
            }
            if let Some(next) = &page.next {
                println!("(more: --cursor {next})");
            }
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Show { admin, id } => {
            let client = Client::new(ctx, &admin)?;
            let path = format!("/admin/runs/{id}");
            let (view, value): (RunView, _) = client
                .call(reqwest::Method::GET, &path, &(), NO_BODY)
                .await?;
            if admin.json {
                print_json(&value);
                return Ok(ExitCode::SUCCESS);
            }
            show(&view);
            Ok(ExitCode::SUCCESS)
        }
        RunsCommand::Replay {
            admin,
            id,
            filter: args,
            dry_run,
            resend_unconfirmed,
        } => {
            let client = Client::new(ctx, &admin)?;
            if let Some(id) = id {
                let params = ReplayParams { resend_unconfirmed };
                let path = format!("/admin/runs/{id}/replay");
                let (replayed, value): (Replayed, _) = client
                    .call(reqwest::Method::POST, &path, &params, NO_BODY)
                    .await?;
                if admin.json {
                    print_json(&value);
                } else {
                    println!("queued {} again", replayed.run.id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let query = RunFilter {
                dry_run,
                ..filter(args)
            };
            if query == RunFilter::default() {
                return Err(CommandError::Usage(
                    "runs replay: give a run id, or a filter (--plugin, --status, --source, --since, --until)".into(),
                ));
            }
            let (bulk, value): (BulkReplayed, _) = client
                .call(reqwest::Method::POST, "/admin/runs/replay", &query, NO_BODY)
                .await?;
            if admin.json {
                print_json(&value);
            } else if bulk.dry_run {
                println!("{} run(s) match; none queued (dry run)", bulk.matched);
            } else {
                println!(
                    "queued {} of {} matching run(s) again",
                    bulk.queued, bulk.matched
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `runs show`, for people.
fn show(view: &RunView) {
    let r = &view.run.run;
    println!("run        {}", r.id);
    println!(
        "plugin     {} {}",
        r.plugin,
        r.plugin_version.as_deref().unwrap_or("")
    );
    println!("event      {} ({} {})", r.event_id, r.source, r.kind);
    println!(
        "status     {} after {} attempt(s)",
        r.status.as_str(),
        r.attempts
    );
    for (name, time) in [
        ("created", Some(&r.created_at)),
        ("started", r.started_at.as_ref()),
        ("finished", r.finished_at.as_ref()),
        ("next", r.next_attempt_at.as_ref()),
    ] {
        if let Some(t) = time {
            println!("{name:<10} {t}");
        }
    }
    if let Some(key) = &r.order_key {
        println!("order key  {key}");
    }
    if let Some(first) = &r.waiting_for {
        println!("waits for  {first} (an earlier run with the same order key)");
    }
    let s = summary(r);
    if !s.is_empty() {
        println!("result     {s}");
    }
    for u in &r.unconfirmed {
        println!(
            "unconfirmed {} through '{}' (call #{}): {}",
            u.call, u.connection, u.position, u.reason
        );
    }
    if !view.effects.is_empty() {
        println!("effects");
    }
    for e in &view.effects {
        println!(
            "  {} {} through '{}': {} (sent {})",
            e.position,
            e.call,
            e.connection,
            e.state.name(),
            e.sent_at
        );
    }
    for line in &view.run.logs {
        println!("  [{}] {}", line.level.as_str(), line.message);
    }
    if r.logs_dropped > 0 {
        println!(
            "  ({} more log line(s) dropped past the run's log limits)",
            r.logs_dropped
        );
    }
}

pub async fn trigger(ctx: &Context, args: TriggerArgs) -> Result<ExitCode, CommandError> {
    let (origin, text) = super::run::read_input(&args.event)?;
    let mut body: TriggerBody = serde_json::from_str(&text).map_err(|e| CommandError::Input {
        path: origin.clone(),
        message: format!(
            "invalid event: {e} (expected {{\"kind\": \"...\", \"payload\": {{...}}, \"source\"?: \"...\"}})"
        ),
    })?;
    if args.plugin.is_some() {
        body.plugin = args.plugin.clone();
    }
    body.wait |= args.wait;
    let client = Client::new(ctx, &args.admin)?;
    let (triggered, value): (Triggered, _) = client
        .call(reqwest::Method::POST, "/admin/trigger", &(), Some(&body))
        .await?;
    // Answered: succeeded, or held by its recipe until later (the server's `wait` counts a
    // deferral as an answer too).
    let answered = |r: &RunRecord| r.status == RunStatus::Succeeded || r.is_deferred();
    let incomplete = body.wait && triggered.complete == Some(false);
    let failed = !triggered.runs.iter().all(answered) || incomplete;
    if args.admin.json {
        print_json(&value);
    } else {
        println!(
            "event {} queued {} run(s)",
            triggered.ack.event_id,
            triggered.ack.runs.len()
        );
        for r in &triggered.runs {
            println!("  {} {}: {}", r.id, r.status.as_str(), summary(r));
        }
        if incomplete {
            println!("  (not all runs finished within 60 s)");
        }
    }
    Ok(if body.wait && failed {
        ExitCode::from(EXIT_RUN_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}
