//! `switchboard serve`: the host itself.

use super::demo::Demo;
use super::{CommandError, Context};
use crate::cli::ServeArgs;
use crate::config::unknown_plugins;
use crate::ingest::Sources;
use crate::pipeline::registry::Registry;
use crate::pipeline::{Pipeline, cron};
use crate::server::listener::{self, ConnectionCounters};
use crate::server::{AppState, DEFAULT_MAX_BODY, Rejections, router};
use crate::telemetry::Telemetry;
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// The address `serve` listens on when neither flag nor config says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub async fn serve(
    ctx: &Context,
    args: ServeArgs,
    telemetry: Option<Telemetry>,
) -> Result<ExitCode, CommandError> {
    // With --sandbox: the vendor sandbox, and a context whose config points at it.
    let sandboxed;
    let (demo, ctx) = if args.sandbox {
        let (demo, wired) = Demo::start(ctx).await?;
        sandboxed = wired;
        (Some(demo), &sandboxed)
    } else {
        (None, ctx)
    };
    let sources = Sources::from_config(&ctx.config.sources)
        .map_err(|e| CommandError::input(ctx.config_display(), e))?;
    let admin_token = ctx.admin_token()?;
    if admin_token.is_none() {
        tracing::warn!(
            "no admin token: the admin API refuses every request (set [server] admin_token or SWITCHBOARD_ADMIN_TOKEN)"
        );
    }
    std::fs::create_dir_all(&ctx.plugins_dir).map_err(|e| {
        CommandError::input(
            ctx.plugins_dir.display(),
            format!("cannot create the plugins folder: {e}"),
        )
    })?;
    // Before anything runs, so that everything is counted and traced.
    crate::server::metrics::handle();
    let backend = ctx.backend().await?;
    let runtime = Arc::new(ctx.runtime(&*backend)?);
    let registry = Registry::open(runtime.clone(), ctx.plugins_dir.clone()).await;
    for (path, e) in registry.errors() {
        eprintln!("warning: {}: not loaded: {e}", path.display());
    }
    let configured: Vec<String> = ctx.config.plugins.keys().cloned().collect();
    let config_name = ctx.config_display();
    let warned = warn_unknown_plugins(&config_name, &configured, &registry, &BTreeSet::new());
    let options = ctx.config.pipeline_options();
    let reload = options.reload_interval;
    // Traces and alerts are set up before the first run can start (a restart resumes runs
    // at once): none of them goes untraced or unseen by the alerts.
    let pipeline = Pipeline::new(runtime, registry.clone(), backend.clone(), options);
    if let Some(t) = &telemetry {
        pipeline.set_traces(t.traces());
    }
    if let Some(section) = &ctx.config.alerts {
        crate::alerts::start(&pipeline, section)
            .map_err(|e| CommandError::input(ctx.config_display(), e))?;
    }
    pipeline.clone().go();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    registry.watch(reload, stopped.clone());
    if !configured.is_empty() {
        // Again whenever the plugins change: a reload may leave a configured name without
        // its recipe (or bring it in).
        let registry = registry.clone();
        let mut changes = registry.subscribe();
        let mut stop = stopped.clone();
        let mut warned = warned;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        warned =
                            warn_unknown_plugins(&config_name, &configured, &registry, &warned);
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    cron::start(pipeline.clone(), stopped);

    let addr: SocketAddr = args
        .listen
        .or(ctx.config.server.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));
    let bound = tokio::net::TcpListener::bind(addr)
        .await
        .and_then(|l| Ok((l.local_addr()?, l)));
    let (local, socket) =
        bound.map_err(|e| CommandError::input(addr, format!("cannot listen: {e}")))?;
    let server_config = &ctx.config.server;
    let mut limits = server_config.connection_limits();
    limits.max_connections = listener::fit_to_file_limit(limits.max_connections);
    let connections = Arc::new(ConnectionCounters::default());
    let state = Arc::new(AppState {
        pipeline: pipeline.clone(),
        sources,
        admin_token,
        max_body: server_config
            .max_body_bytes
            .map_or(DEFAULT_MAX_BODY, NonZeroUsize::get),
        body_timeout: server_config
            .body_timeout
            .unwrap_or(crate::config::ServerSection::BODY_TIMEOUT),
        rejections: Rejections::default(),
        connections: connections.clone(),
        started: Instant::now(),
        console: Default::default(),
    });
    if let Some(addr) = server_config.metrics_listen {
        let socket = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CommandError::input(addr, format!("cannot listen for metrics: {e}")))?;
        let local = socket.local_addr().unwrap_or(addr);
        tracing::info!(%local, "metrics listening");
        println!("switchboard metrics on http://{local}/metrics");
        let app = crate::server::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(socket, app).await {
                tracing::error!("the metrics listener failed: {e}");
            }
        });
    }
    let names: Vec<String> = registry
        .current()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    tracing::info!(%local, plugins = ?names, "switchboard listening");
    println!(
        "switchboard listening on http://{local} ({} plugin(s): {})",
        names.len(),
        names.join(", ")
    );
    let (quit, quitting) = tokio::sync::oneshot::channel::<()>();
    let stopping = pipeline.clone();
    // A failed store does not come back in this process (sled keeps failing until it is
    // opened anew): answer "not ready" and 503 for a grace period, so load balancers and
    // senders see it, then stop, and exit for a supervisor to start the host again.
    let store_failed = {
        let backend = backend.clone();
        let grace = ctx.config.pipeline_options().grace;
        async move {
            let e = backend.failed().await;
            tracing::error!(
                "the store failed ({e}): not ready; stopping in {}, to be started again once the disk can be written (nothing acknowledged is lost)",
                humantime::format_duration(grace)
            );
            tokio::time::sleep(grace).await;
        }
    };
    let server = tokio::spawn(listener::serve(
        socket,
        router(state),
        limits,
        connections,
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = quitting => {}
                _ = store_failed => {}
            }
            // Refuse new events and runs at once, and answer `/readyz` with 503, while the
            // runs in flight finish (within the grace period): the listener stays open
            // meanwhile, so a load balancer sees the host go unready before it goes away.
            stopping.stop_accepting();
            tracing::info!("stopping: finishing runs in flight");
            let _ = stop.send(true);
            stopping.shutdown().await;
        },
    ));
    let mut code = ExitCode::SUCCESS;
    if let Some(demo) = &demo {
        let url = format!("http://{local}");
        demo.connect_webhooks(&url).await?;
        if args.tour {
            if !demo.tour(&pipeline, &url).await {
                code = ExitCode::from(super::EXIT_RUN_FAILED);
            }
            let _ = quit.send(());
        } else {
            let bin = std::env::args()
                .next()
                .unwrap_or_else(|| "switchboard".into());
            demo.print_guide(&pipeline, &url, &bin).await;
        }
    }
    let _ = std::io::stdout().flush();
    let served = server.await;
    served.map_err(|e| CommandError::input(local, format!("server failed: {e}")))?;
    if let Some(e) = pipeline.store_failure() {
        return Err(CommandError::StoreFailed {
            path: ctx.data_dir.join("store"),
            message: e,
        });
    }
    if let Some(t) = telemetry {
        // Send what is left (a blocking wait for the exporter's thread).
        let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
    }
    eprintln!("switchboard stopped");
    Ok(code)
}

/// Warn of each `[plugins.<name>]` of `configured` that names no recipe loaded in
/// `registry` (not an error: the recipe may be dropped in later), except those in `warned`;
/// returns the names that name none now.
fn warn_unknown_plugins(
    config: &str,
    configured: &[String],
    registry: &Registry,
    warned: &BTreeSet<String>,
) -> BTreeSet<String> {
    let loaded: Vec<String> = registry
        .current()
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let unknown = unknown_plugins(configured, &loaded);
    for u in unknown.iter().filter(|u| !warned.contains(&u.name)) {
        tracing::warn!("{config}: {u}");
    }
    unknown.into_iter().map(|u| u.name).collect()
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
