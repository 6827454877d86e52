//! Command-line arguments. Command bodies live in [`crate::commands`].

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Switchboard runs CRM integration recipes as sandboxed WebAssembly components.
///
/// Exit codes: 0 success; 1 a recipe run failed (its error is printed); 2 bad input
/// (arguments, config, event file, or a plugin that was refused at load, or a request the
/// server refused); 3 the server could not be reached or failed.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// Configuration file (TOML); see docs in the README.
    #[arg(long, global = true, env = "SWITCHBOARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the store and the compiled-component cache live [default: .switchboard].
    #[arg(long, global = true, env = "SWITCHBOARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The folder recipe plugins (`*.wasm`) are loaded from [default: plugins].
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_PLUGINS_DIR",
        value_name = "DIR"
    )]
    pub plugins_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one event through one recipe, in-process, and print the outcome and its logs.
    Run(RunArgs),
    /// List and inspect recipe plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Check the vendor connections in the config.
    #[command(subcommand)]
    Connections(ConnectionsCommand),
    /// Serve the vendor sandbox: the vendors' APIs on loopback, with state and faults.
    Sandbox(SandboxArgs),
    /// Run the host: webhook intake, cron, the durable pipeline and the admin API.
    Serve(ServeArgs),
    /// Inspect and replay runs on a running server (admin API).
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Send a manual event to a running server (admin API).
    Trigger(TriggerArgs),
    /// Scaffold a recipe crate that builds to a component and passes its own test.
    New(NewArgs),
    /// Maintain the store in the data dir (while no host is using it).
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The recipe's name: lowercase letters, digits and '-'.
    pub name: String,
    /// What starts it.
    #[arg(long, value_enum, default_value_t = NewTrigger::Webhook)]
    pub trigger: NewTrigger,
    /// Where to create it [default: recipes/<name> if ./recipes exists, else ./<name>].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The switchboard-sdk crate [default: an sdk/ folder found above this one].
    #[arg(long, value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

/// The trigger of a new recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewTrigger {
    /// A webhook (`lead.created` from any source).
    Webhook,
    /// A cron schedule (every five minutes).
    Cron,
}

impl NewTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            NewTrigger::Webhook => "webhook",
            NewTrigger::Cron => "cron",
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: `[server] listen`, else 127.0.0.1:8080]; port 0 picks one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Start the vendor sandbox too, and wire every connection, webhook source and the
    /// admin token the config does not set to it (keys under `<data dir>/sandbox/`).
    #[arg(long)]
    pub sandbox: bool,
    /// With --sandbox: drive each loaded recipe once through the sandbox, print what it did,
    /// and exit (0 when every run succeeded, 1 otherwise).
    #[arg(long, requires = "sandbox")]
    pub tour: bool,
}

/// How to reach a running server's admin API.
#[derive(Debug, Args, Clone)]
pub struct AdminArgs {
    /// The server's base URL [default: http://<[server] listen>, else http://127.0.0.1:8080].
    #[arg(long, env = "SWITCHBOARD_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The admin bearer token [default: `[server] admin_token` of the config].
    #[arg(
        long,
        env = "SWITCHBOARD_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first, a page at a time.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(flatten)]
        filter: RunFilterArgs,
        /// Only runs with calls whose outcome is unknown (to check by hand).
        #[arg(long)]
        unconfirmed: bool,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Continue after a previous page (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one run with its logs and its event.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// The run id (`evt_….<plugin>`).
        id: String,
    },
    /// Queue finished runs again: one by id, or every finished run a filter matches (failed
    /// and dead by default). Replays run on the recipe's current version.
    Replay {
        #[command(flatten)]
        admin: AdminArgs,
        /// The run id; or filter with --plugin, --status, --since, ...
        #[arg(conflicts_with_all = ["plugin", "status", "source", "since", "until", "dry_run"])]
        id: Option<String>,
        #[command(flatten)]
        filter: RunFilterArgs,
        /// With a filter: only count the runs it matches.
        #[arg(long)]
        dry_run: bool,
        /// With an id: send the run's unconfirmed calls again (after checking by hand that
        /// they did not take effect); calls that took effect are never sent again.
        #[arg(long, requires = "id")]
        resend_unconfirmed: bool,
    },
}

/// Which runs: the filters `runs list` and `runs replay` share.
#[derive(Debug, Clone, Default, Args)]
pub struct RunFilterArgs {
    /// Only this recipe's runs.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Only runs in these states (comma-separated: queued, running, succeeded, failed, dead).
    #[arg(long)]
    pub status: Option<String>,
    /// Only runs of events from this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only runs created at or after this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs created before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct TriggerArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Only this plugin; default: every plugin subscribed to the event's source and kind.
    #[arg(value_name = "PLUGIN")]
    pub plugin: Option<String>,
    /// The event, as a JSON file or `-` for stdin: `{"kind": "...", "payload": {...}}`,
    /// optionally with `source` [default: manual].
    #[arg(long, short, value_name = "FILE|-")]
    pub event: String,
    /// Wait for the runs to finish (or be deferred by their recipe) and print them; exit 1
    /// if any failed.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Call each connection's cheapest authenticated endpoint; exit 1 if any fails.
    Check,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A plugin file (`plugins/hello.wasm`) or the name of a recipe in the plugins folder.
    #[arg(value_name = "PLUGIN")]
    pub plugin: String,
    /// The event, as a JSON file, or `-` for standard input:
    /// `{"kind": "...", "payload": {...}}`, optionally with `id`, `source` and `time`.
    #[arg(long, short, value_name = "FILE|-")]
    pub event: String,
    /// Print the run report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Give the disk space of swept records back to the system: rewrite the store into a
    /// fresh one and swap it in. The host must be stopped (a store in use is refused,
    /// unchanged); the store reuses freed space by itself, this only shrinks its files.
    Compact,
    /// Apply the store's migrations and stop: PostgreSQL's embedded, versioned migrations
    /// (`serve` applies them at start too; this lets a deploy run them first), or the sled
    /// store's layout upgrade.
    Migrate,
    /// Copy the embedded (sled) store into a PostgreSQL database, to move to several hosts:
    /// recipe kv, queued and deferred runs, the history kept (with logs and the effect
    /// journal), delivery ids within the dedup window, cron ticks, quota counters. The sled
    /// store must not be in use (a live host's store is refused) and the target schema must
    /// be empty. Then set `[store] backend = "postgres"` and start the hosts.
    Copy {
        /// The sled store: a data dir (its `store/` folder) or the store folder itself.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database, as a URL (`postgres://user:password@host/db`).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The schema to copy into [default: `[store] schema`, else switchboard].
        #[arg(long)]
        schema: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Load every plugin in the plugins folder and list them (exit 2 if any is refused).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a plugin's manifest, limits and WIT imports.
    Inspect {
        /// The plugin file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
