//! Switchboard: a host that runs CRM integration recipes as sandboxed WebAssembly components.
//!
//! The seams, each in its own module:
//! - [`runtime`]: the wasm engine, plugins, per-run isolation;
//! - [`capabilities`]: the host side of each WIT interface, with grant checks;
//! - [`vendors`]: connections to vendor APIs (no wasm types);
//! - [`store`]: the embedded sled store (recipe kv state);
//! - [`config`], [`cli`] and [`commands`]: the operator's side.

pub mod capabilities;
pub mod cli;
pub mod commands;
pub mod config;
pub mod ingest;
pub mod model;
pub mod pipeline;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod store;
pub mod vendors;
