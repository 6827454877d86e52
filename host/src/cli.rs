//! Command-line arguments. Command bodies live in [`crate::commands`].

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Switchboard runs CRM integration recipes as sandboxed WebAssembly components.
///
/// Exit codes: 0 success; 1 a recipe run failed (its error is printed); 2 bad input
/// (arguments, config, event file, or a plugin that was refused at load).
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
