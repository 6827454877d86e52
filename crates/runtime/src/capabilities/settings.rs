//! `switchboard:recipes/settings`: always granted; the recipe's own settings from the
//! config, checked against the recipe's settings type when the plugin loaded.

use crate::bindings::switchboard::recipes::settings::Host;
use crate::state::RunState;

impl Host for RunState {
    fn get(&mut self) -> String {
        self.settings.to_string()
    }
}
