//! `switchboard:recipes/log`: always granted; lines go to the run's bounded log.

use crate::bindings::switchboard::recipes::log::{Host, Level as WitLevel};
use crate::state::{Level, RunState};

impl Host for RunState {
    fn log(&mut self, level: WitLevel, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        };
        RunState::log(self, level, message, fields);
    }
}
