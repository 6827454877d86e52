//! A database for tests: `SWITCHBOARD_TEST_DATABASE_URL` when set, else a throwaway cluster
//! this process starts once ([`crate::cluster`]) and a watcher removes when it ends. Each
//! test takes a schema of its own in it.

use crate::PgConfig;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The URL of the test database server, starting a cluster on first use.
///
/// # Panics
/// When there is no server and none can be started, saying what to install: a test that
/// needs PostgreSQL never passes without it.
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            return url;
        }
        crate::cluster::Cluster::start(None, &[])
            .and_then(|c| c.remove_when_gone(std::process::id()))
            .unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"))
    })
    .clone()
}

/// A schema name no other test (in this process or another) uses.
pub fn unique_schema(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A config for a fresh schema of the test database.
pub fn fresh_config(prefix: &str) -> PgConfig {
    PgConfig {
        url: database_url(),
        schema: unique_schema(prefix),
        pool_size: 4,
    }
}
