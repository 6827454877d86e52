//! `switchboard store`: maintenance of the store in the data dir.

use super::{CommandError, Context};
use crate::pipeline::sled::SledBackend;
use std::process::ExitCode;

/// Rewrite the store into a fresh one, giving back the space of swept records.
pub fn compact(ctx: &Context) -> Result<ExitCode, CommandError> {
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
