//! `switchboard sandbox`: serve the vendor sandbox until Ctrl-C.

use super::CommandError;
use crate::cli::SandboxArgs;
use crate::sandbox::{self, GHL_LOCATION, SandboxKeys};
use std::process::ExitCode;

pub async fn serve(args: SandboxArgs) -> Result<ExitCode, CommandError> {
    let keys = SandboxKeys::default();
    let running = sandbox::start(args.listen, keys.clone())
        .await
        .map_err(|e| CommandError::Input {
            path: args.listen.to_string(),
            message: format!("cannot listen: {e}"),
        })?;
    println!("vendor sandbox listening on http://{}", running.addr);
    println!(
        "  gohighlevel   {}  token {}  location {GHL_LOCATION}",
        running.base_url("gohighlevel"),
        keys.gohighlevel
    );
    println!(
        "  housecallpro  {}  key {}",
        running.base_url("housecallpro"),
        keys.housecallpro
    );
    println!(
        "  faults: PUT/DELETE http://{}/_sandbox/faults/<vendor>",
        running.addr
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(ExitCode::SUCCESS)
}
