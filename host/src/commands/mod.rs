//! Command bodies: each takes parsed arguments and returns an exit code.

mod admin;
mod connections;
mod demo;
mod new;
mod plugins;
mod run;
mod sandbox;
pub mod serve;
mod store;

use crate::cli::{Cli, Command, ConnectionsCommand, GlobalArgs, PluginsCommand, StoreCommand};
use crate::config::{Config, ConfigError, StoreBackend};
use crate::pipeline::backend::Backend;
use crate::runtime::plugin::LoadError;
use crate::runtime::{Runtime, RuntimeError};
use crate::secrets::SecretSource;
use crate::sled::SledBackend;
use crate::store::StoreError;
use crate::vendors::Connections;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Exit code of a failed recipe run.
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code of bad input: config, event, plugin file, a request the server refused.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code when the server cannot be reached, or fails.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Exit code of `serve` when its store failed (a full disk, a read-only remount): start it
/// again once the store can be written (`EX_IOERR` of sysexits).
pub const EXIT_STORE_FAILED: u8 = 74;

/// What stops a command before it can do its work.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{}: {source}", config.as_ref().map_or("config".into(), |p| p.display().to_string()))]
    Connection {
        config: Option<PathBuf>,
        #[source]
        source: crate::vendors::ConnectionError,
    },
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error("{url}: {message}")]
    Server { url: String, message: String },
    #[error(
        "{}: the store failed: {message}; stopped so that a supervisor starts the host again once the store can be written (every acknowledged event is on disk)",
        path.display()
    )]
    StoreFailed { path: PathBuf, message: String },
    /// A command line clap accepts but the command cannot act on.
    #[error("{0}")]
    Usage(String),
    /// The database could not be reached or used.
    #[error("the database: {0}")]
    Database(String),
    #[error("the server refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("no recipe named '{name}' in {}{}", dir.display(), if available.is_empty() { String::new() } else { format!(" (found: {})", available.join(", ")) })]
    UnknownRecipe {
        name: String,
        dir: PathBuf,
        available: Vec<String>,
    },
}

impl CommandError {
    /// Bad input named by `path` (a file, an address, a name) and what is wrong with it.
    pub fn input(path: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        CommandError::Input {
            path: path.to_string(),
            message: message.to_string(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Server { .. } | CommandError::Pipeline(_) | CommandError::Database(_) => {
                EXIT_UNAVAILABLE
            }
            CommandError::StoreFailed { .. } => EXIT_STORE_FAILED,
            _ => EXIT_BAD_INPUT,
        }
    }
}

/// The resolved settings of one invocation: flags over config file over defaults.
pub struct Context {
    pub config_path: Option<PathBuf>,
    pub config: Config,
    pub data_dir: PathBuf,
    pub plugins_dir: PathBuf,
}

impl Context {
    pub fn from_args(global: &GlobalArgs) -> Result<Self, CommandError> {
        let config = match &global.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let data_dir = global
            .data_dir
            .clone()
            .or_else(|| config.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(".switchboard"));
        let plugins_dir = global
            .plugins_dir
            .clone()
            .or_else(|| config.plugins_dir.clone())
            .unwrap_or_else(|| PathBuf::from("plugins"));
        Ok(Context {
            config_path: global.config.clone(),
            config,
            data_dir,
            plugins_dir,
        })
    }

    /// The config file's name, for errors.
    pub fn config_display(&self) -> String {
        self.config_path
            .as_ref()
            .map_or("config".into(), |p| p.display().to_string())
    }

    /// The admin API's bearer token: `[server] admin_token`, else `$SWITCHBOARD_ADMIN_TOKEN`.
    pub fn admin_token(&self) -> Result<Option<crate::secrets::Secret>, CommandError> {
        if let Some(source) = &self.config.server.admin_token {
            return source.load().map(Some).map_err(|e| CommandError::Input {
                path: self.config_display(),
                message: format!("server.admin_token: {e}"),
            });
        }
        Ok(std::env::var("SWITCHBOARD_ADMIN_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| crate::secrets::Secret::new(t.trim())))
    }

    /// Open the configured store: the embedded backend in the data dir, or PostgreSQL
    /// (migrated first).
    pub async fn backend(&self) -> Result<Arc<dyn Backend>, CommandError> {
        match self.config.store.backend {
            StoreBackend::Sled => Ok(SledBackend::open(&self.data_dir.join("store"))?),
            StoreBackend::Postgres => {
                let config = self.postgres()?;
                let backend = switchboard_postgres::PgBackend::open(&config)
                    .await
                    .map_err(|e| self.database_error(e))?;
                Ok(backend)
            }
        }
    }

    /// The PostgreSQL settings: `[store] url` (default `$SWITCHBOARD_DATABASE_URL`),
    /// `schema`, `pool_size`.
    pub fn postgres(&self) -> Result<switchboard_postgres::PgConfig, CommandError> {
        use switchboard_postgres::PgConfig;
        let store = &self.config.store;
        let source = store
            .url
            .clone()
            .unwrap_or_else(|| SecretSource::Env("SWITCHBOARD_DATABASE_URL".into()));
        let url = source.load().map_err(|e| {
            CommandError::input(
                self.config_display(),
                format!("store.url: {e} (the PostgreSQL database to use)"),
            )
        })?;
        Ok(PgConfig {
            url: url.expose().to_string(),
            schema: store
                .schema
                .clone()
                .unwrap_or_else(|| PgConfig::DEFAULT_SCHEMA.into()),
            pool_size: store
                .pool_size
                .map_or(PgConfig::DEFAULT_POOL_SIZE, |n| n.get()),
        })
    }

    /// A database error as the command reports it: bad settings are bad input (exit 2), a
    /// database that cannot be reached is unavailable (exit 3).
    pub fn database_error(&self, e: switchboard_postgres::PgError) -> CommandError {
        use switchboard_postgres::PgError;
        match e {
            PgError::Url(_) => {
                CommandError::input(self.config_display(), format!("store.url: {e}"))
            }
            PgError::Schema(_) => {
                CommandError::input(self.config_display(), format!("store.schema: {e}"))
            }
            PgError::NotEmpty(_) => CommandError::Usage(e.to_string()),
            e => CommandError::Database(e.to_string()),
        }
    }

    /// Build the configured vendor connections (reading their secrets), counting vendor
    /// quotas in `backend`.
    pub fn connections(&self, backend: &dyn Backend) -> Result<Connections, CommandError> {
        Connections::from_config(&self.config.connections, &backend.counters()).map_err(|source| {
            CommandError::Connection {
                config: self.config_path.clone(),
                source,
            }
        })
    }

    /// Build the runtime over `backend`, with the configured connections.
    pub fn runtime(&self, backend: &dyn Backend) -> Result<Runtime, CommandError> {
        self.build_runtime(backend, true)
    }

    /// The runtime for commands that only load plugins: no connection is built, so no
    /// secret is read.
    pub async fn runtime_without_connections(&self) -> Result<Runtime, CommandError> {
        self.build_runtime(&*self.backend().await?, false)
    }

    fn build_runtime(
        &self,
        backend: &dyn Backend,
        with_connections: bool,
    ) -> Result<Runtime, CommandError> {
        let connections = if with_connections {
            let connections = self.connections(backend)?;
            // A recipe's connection mapped to one that does not exist: say so now, not in
            // every run.
            for (recipe, plugin) in &self.config.plugins {
                for (name, target) in &plugin.connections {
                    if connections.get(target).is_err() {
                        return Err(CommandError::input(
                            self.config_display(),
                            format!(
                                "plugins.{recipe}.connections.{name}: no connection named '{target}' is configured"
                            ),
                        ));
                    }
                }
            }
            connections
        } else {
            Connections::default()
        };
        let options = self.config.runtime_options(&self.data_dir);
        Ok(Runtime::new(options, backend.recipe_store(), connections)?)
    }
}

/// Run the parsed command line.
pub async fn dispatch(cli: Cli) -> Result<ExitCode, CommandError> {
    let ctx = Context::from_args(&cli.global)?;
    // Logging once the config is read; traces are exported by `serve` only.
    let serving = matches!(cli.command, Command::Serve(_));
    let telemetry = crate::telemetry::init(serving.then_some(&ctx.config.telemetry))
        .map_err(|e| CommandError::input(ctx.config_display(), e))?;
    match cli.command {
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Plugins(PluginsCommand::List { json }) => plugins::list(&ctx, json).await,
        Command::Plugins(PluginsCommand::Inspect { file, json }) => {
            plugins::inspect(&ctx, &file, json).await
        }
        Command::Connections(ConnectionsCommand::Check) => connections::check(&ctx).await,
        Command::Sandbox(args) => sandbox::serve(args).await,
        Command::Serve(args) => serve::serve(&ctx, args, telemetry).await,
        Command::Runs(command) => admin::runs(&ctx, command).await,
        Command::Trigger(args) => admin::trigger(&ctx, args).await,
        Command::New(args) => new::new(args),
        Command::Store(StoreCommand::Compact) => store::compact(&ctx),
        Command::Store(StoreCommand::Migrate) => store::migrate(&ctx).await,
        Command::Store(StoreCommand::Copy { from, to, schema }) => {
            store::copy(&ctx, &from, to, schema).await
        }
    }
}
