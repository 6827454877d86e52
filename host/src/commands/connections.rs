//! `switchboard connections check`.

use super::{CommandError, Context, EXIT_RUN_FAILED};
use crate::vendors::Call;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub async fn check(ctx: &Context) -> Result<ExitCode, CommandError> {
    let connections = ctx.connections(&*ctx.backend().await?)?;
    let mut failed = 0;
    let mut any = false;
    for (name, connector) in connections.iter() {
        any = true;
        let call = Call::until(Instant::now() + Duration::from_secs(15));
        match connector.check(&call).await {
            Ok(what) => println!("{name} ({}): working: {what}", connector.vendor()),
            Err(e) => {
                failed += 1;
                println!("{name} ({}): failing: {e}", connector.vendor());
            }
        }
    }
    if !any {
        println!("no connections configured (add [connections.<name>] to the config)");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RUN_FAILED)
    })
}
