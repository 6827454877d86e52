//! `switchboard store`: maintenance of the store in the data dir.

use super::{CommandError, Context};
use crate::config::StoreBackend;
use crate::sled::SledBackend;
use std::path::Path;
use std::process::ExitCode;

/// Rewrite the store into a fresh one, giving back the space of swept records.
pub fn compact(ctx: &Context) -> Result<ExitCode, CommandError> {
    if ctx.config.store.backend == StoreBackend::Postgres {
        return Err(CommandError::Usage(
            "store compact rewrites the embedded (sled) store; this config uses PostgreSQL, whose space autovacuum and VACUUM FULL give back".into(),
        ));
    }
    let path = ctx.data_dir.join("store");
    if !path.exists() {
        return Err(CommandError::input(
            path.display(),
            "no store here (nothing to compact); is the data dir right?",
        ));
    }
    eprintln!("compacting {} ...", path.display());
    let done = SledBackend::compact(&path).map_err(|e| {
        CommandError::input(
            path.display(),
            format!("{e} (is a host running on this store? stop it first)"),
        )
    })?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "compacted {}: {:.1} MiB -> {:.1} MiB",
        path.display(),
        mib(done.before),
        mib(done.after)
    );
    Ok(ExitCode::SUCCESS)
}

/// Apply the store's migrations, and say which.
pub async fn migrate(ctx: &Context) -> Result<ExitCode, CommandError> {
    match ctx.config.store.backend {
        StoreBackend::Postgres => {
            let config = ctx.postgres()?;
            let applied = switchboard_postgres::migrate(&config)
                .await
                .map_err(|e| ctx.database_error(e))?;
            if applied.is_empty() {
                println!("schema {}: up to date", config.schema);
            } else {
                let versions: Vec<String> = applied.iter().map(i64::to_string).collect();
                println!(
                    "schema {}: applied migration(s) {}",
                    config.schema,
                    versions.join(", ")
                );
            }
        }
        StoreBackend::Sled => {
            let path = ctx.data_dir.join("store");
            SledBackend::open(&path)?;
            println!("{}: up to date", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Copy the sled store at `from` (a data dir or the store itself) into PostgreSQL at `to`.
pub async fn copy(
    ctx: &Context,
    from: &Path,
    to: String,
    schema: Option<String>,
) -> Result<ExitCode, CommandError> {
    use switchboard_postgres::{PgBackend, PgConfig};
    // Never create an empty store where the user pointed by mistake.
    let store = [from.join("store"), from.to_path_buf()]
        .into_iter()
        .find(|dir| dir.join("db").is_file())
        .ok_or_else(|| {
            CommandError::input(
                from.display(),
                "no sled store here (expected a data dir with store/, or the store folder)",
            )
        })?;
    let source = SledBackend::open(&store).map_err(|e| {
        CommandError::input(
            store.display(),
            format!(
                "{e} (is a host running on this store? stop it first: a live store is never copied)"
            ),
        )
    })?;
    let window = ctx.config.pipeline_options().dedup_window.as_millis() as i64;
    let snapshot = source
        .export(crate::model::now_ms(), window)
        .await
        .map_err(|e| CommandError::input(store.display(), e))?;
    drop(source);
    eprintln!("read {}: {}", store.display(), snapshot.summary());
    let config = PgConfig {
        url: to,
        schema: schema
            .or_else(|| ctx.config.store.schema.clone())
            .unwrap_or_else(|| PgConfig::DEFAULT_SCHEMA.into()),
        pool_size: 2,
    };
    let target = PgBackend::open(&config)
        .await
        .map_err(|e| ctx.database_error(e))?;
    target
        .import(&snapshot)
        .await
        .map_err(|e| ctx.database_error(e))?;
    println!(
        "copied {} to schema {}: {}",
        store.display(),
        config.schema,
        snapshot.summary()
    );
    Ok(ExitCode::SUCCESS)
}
