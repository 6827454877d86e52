//! `switchboard:recipes/messages`.

use super::contacts::raw_to_json;
use super::effect::typed;
use crate::bindings::switchboard::recipes::messages::Host;
use crate::bindings::types::{Channel, Error, Message};
use crate::state::RunState;
use switchboard_model::{self as model, Capability::Messages, RecipeError};

fn message_from_wit(m: Message) -> Result<model::Message, RecipeError> {
    Ok(model::Message {
        id: m.id,
        channel: match m.channel {
            Channel::Sms => model::Channel::Sms,
            Channel::Mms => model::Channel::Mms,
            Channel::Email => model::Channel::Email,
        },
        to: m.to,
        body: m.body,
        media_url: m.media_url,
        status: m.status,
        sent_at: m.sent_at,
        raw: raw_to_json(m.raw, "message.raw")?,
    })
}

fn message_to_wit(m: model::Message) -> Message {
    Message {
        id: m.id,
        channel: match m.channel {
            model::Channel::Sms => Channel::Sms,
            model::Channel::Mms => Channel::Mms,
            model::Channel::Email => Channel::Email,
        },
        to: m.to,
        body: m.body,
        media_url: m.media_url,
        status: m.status,
        sent_at: m.sent_at,
        raw: m.raw.map(|r| r.to_string()),
    }
}

impl Host for RunState {
    async fn send(&mut self, connection: String, message: Message) -> Result<Message, Error> {
        let (c, call) = self.connector(Messages, "send", &connection)?;
        let message = message_from_wit(message)?;
        let send = async { c.messages_send(&call, &message).await };
        let sent = self
            .effect("messages.send", &connection, &message, typed, send)
            .await?;
        Ok(message_to_wit(sent))
    }

    async fn stats(&mut self, connection: String) -> Result<String, Error> {
        let (c, call) = self.connector(Messages, "stats", &connection)?;
        Ok(c.messages_stats(&call).await?.to_string())
    }
}
