//! Webhooks the sandbox delivers when its data changes, signed the way the vendors sign
//! them: Housecall Pro with HMAC-SHA256 over `"{timestamp}.{body}"` (`Api-Timestamp`,
//! `Api-Signature`, hex), GoHighLevel with Ed25519 over the raw body (`X-GHL-Signature`,
//! base64) and a body `timestamp` and `webhookId`.
//!
//! Register a receiver with `PUT /_sandbox/webhooks/<vendor>` and `{"url": ..., "secret":
//! ...}` (the secret is for Housecall Pro's HMAC); the GoHighLevel public key is served at
//! `GET /_sandbox/webhooks/gohighlevel/public-key` (base64 of the 32-byte key).

use super::{SandboxState, now};
use base64::Engine;
use ed25519_dalek::Signer;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;

/// Where to deliver one vendor's webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub url: String,
    /// Housecall Pro's signing secret.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A delivery attempt, as the sandbox made it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub vendor: String,
    pub event: String,
    pub status: Option<u16>,
}

/// The Housecall Pro signature of a body sent at `timestamp`.
pub fn hcp_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl SandboxState {
    /// The base64 public key GoHighLevel webhooks are signed with.
    pub fn ghl_public_key(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(self.ghl_signing.verifying_key().as_bytes())
    }

    /// Deliveries made so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// Deliver a Housecall Pro event (`customer.created`, ...) with `object` under `key`.
    pub(crate) fn emit_hcp(self: &Arc<Self>, event: &str, key: &str, object: &Value) {
        let Some(target) = self.webhooks.lock().unwrap().get("housecallpro").cloned() else {
            return;
        };
        let body = json!({ "event": event, key: object }).to_string();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut headers = vec![("Api-Timestamp".to_string(), timestamp.clone())];
        if let Some(secret) = &target.secret {
            headers.push((
                "Api-Signature".into(),
                hcp_signature(secret, &timestamp, body.as_bytes()),
            ));
        }
        self.deliver("housecallpro", event, target.url, headers, body);
    }

    /// Deliver a GoHighLevel event (`ContactCreate`, ...) for a contact.
    pub(crate) fn emit_ghl(self: &Arc<Self>, kind: &str, contact: &Value) {
        let Some(target) = self.webhooks.lock().unwrap().get("gohighlevel").cloned() else {
            return;
        };
        let mut payload = contact.clone();
        payload["type"] = json!(kind);
        payload["timestamp"] = json!(now());
        payload["webhookId"] = json!(super::new_id());
        let body = payload.to_string();
        let signature = base64::engine::general_purpose::STANDARD
            .encode(self.ghl_signing.sign(body.as_bytes()).to_bytes());
        self.deliver(
            "gohighlevel",
            kind,
            target.url,
            vec![("X-GHL-Signature".into(), signature)],
            body,
        );
    }

    fn deliver(
        self: &Arc<Self>,
        vendor: &str,
        event: &str,
        url: String,
        headers: Vec<(String, String)>,
        body: String,
    ) {
        let state = self.clone();
        let (vendor, event) = (vendor.to_string(), event.to_string());
        tokio::spawn(async move {
            let mut request = state
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body);
            for (k, v) in headers {
                request = request.header(k, v);
            }
            let status = match request.send().await {
                Ok(r) => Some(r.status().as_u16()),
                Err(e) => {
                    tracing::warn!(%vendor, %event, %url, "sandbox webhook delivery failed: {e}");
                    None
                }
            };
            state.deliveries.lock().unwrap().push(Delivery {
                vendor,
                event,
                status,
            });
        });
    }
}
