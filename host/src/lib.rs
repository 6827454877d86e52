//! Switchboard: a host that runs CRM integration recipes as sandboxed WebAssembly components.
//!
//! This crate is the binary's: the command line ([`cli`], [`commands`]), the configuration
//! ([`config`]), webhook intake ([`ingest`]), the HTTP server ([`server`]) and logs and
//! traces ([`telemetry`]). The layers
//! below it are crates of their own, so that the compiler keeps each in its place:
//!
//! - [`model`] (`switchboard-model`): events, runs, outcomes, errors, schedules; no I/O;
//! - [`vendors`] (`switchboard-vendors`): the vendor clients; no wasm;
//! - [`runtime`] (`switchboard-runtime`): the wasm engine, plugins, per-run isolation and the
//!   host side of each capability; no HTTP server, no pipeline;
//! - [`sandbox`] (`switchboard-sandbox`): the vendor sandbox;
//! - [`pipeline`] (`switchboard-pipeline`): the durable pipeline and its store backends.

pub use switchboard_model as model;
pub use switchboard_pipeline as pipeline;
pub use switchboard_postgres as postgres;
pub use switchboard_runtime as runtime;
pub use switchboard_runtime::capabilities;
pub use switchboard_sandbox as sandbox;
pub use switchboard_sled as sled;
pub use switchboard_sled::store;
pub use switchboard_vendors as vendors;
pub use switchboard_vendors::secrets;

pub mod alerts;
pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod ingest;
pub mod server;
pub mod telemetry;
