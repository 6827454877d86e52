//! `switchboard:recipes/messages`.

use crate::model::Capability::Messages;
use crate::runtime::bindings::switchboard::recipes::messages::Host;
use crate::runtime::bindings::types::{Error, Message};
use crate::runtime::state::RunState;

impl Host for RunState {
    async fn send(&mut self, connection: String, _message: Message) -> Result<Message, Error> {
        self.not_served(Messages, &connection, "messages.send")
    }

    async fn stats(&mut self, connection: String) -> Result<String, Error> {
        self.not_served(Messages, &connection, "messages.stats")
    }
}
