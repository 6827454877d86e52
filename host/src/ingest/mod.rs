//! Webhook sources: how a delivery to `POST /hooks/<source>` is verified and turned into
//! an [`Incoming`] event.
//!
//! ```toml
//! [sources.housecallpro]            # HMAC-SHA256 over "{timestamp}.{body}" (defaults)
//! secret = { env = "HCP_WEBHOOK_SECRET" }
//!
//! [sources.gohighlevel]             # Ed25519 X-GHL-Signature; RSA X-WH-Signature fallback
//! ed25519_public_keys = ["<base64 or PEM>"]
//!
//! [sources.forms]                   # any other name: Standard Webhooks
//! secrets = [{ env = "FORMS_SECRET" }]   # whsec_...; several while rotating
//! kind = "lead.created"             # or kind_field = "/type" (a JSON pointer)
//!
//! [sources.legacy]
//! scheme = "none"
//! insecure = true                   # unsigned: only when the config says so
//! ```

pub mod verify;

use crate::pipeline::Incoming;
use crate::secrets::{SecretError, SecretSource};
use axum::http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use verify::{GhlVerifier, HmacVerifier, StandardVerifier, VerifyError};

/// How a source signs its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SchemeKind {
    /// Housecall Pro: HMAC-SHA256, hex, over a template of timestamp and body.
    Housecallpro,
    /// GoHighLevel: Ed25519 `X-GHL-Signature`, RSA `X-WH-Signature`.
    Gohighlevel,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
    /// Unsigned; needs `insecure = true`.
    None,
}

/// `[sources.<name>]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Default: `housecallpro` and `gohighlevel` for sources of those names, else `standard`.
    pub scheme: Option<SchemeKind>,
    /// The signing secret (Housecall Pro, Standard Webhooks).
    pub secret: Option<SecretSource>,
    /// More secrets, accepted alongside `secret` (rotation).
    #[serde(default)]
    pub secrets: Vec<SecretSource>,
    /// Housecall Pro: header names and what is signed (`{timestamp}` and `{body}`).
    pub timestamp_header: Option<String>,
    pub signature_header: Option<String>,
    pub signed_content: Option<String>,
    /// GoHighLevel: Ed25519 public keys (base64 of 32 bytes, or PEM).
    #[serde(default)]
    pub ed25519_public_keys: Vec<String>,
    /// GoHighLevel: RSA public keys (PEM) for the legacy `X-WH-Signature`; default: the key
    /// GoHighLevel documents.
    pub rsa_public_keys: Option<Vec<String>>,
    /// How far a delivery's timestamp may be from now.
    #[serde(default, with = "humantime_serde")]
    pub tolerance: Option<Duration>,
    /// Accept unsigned deliveries (scheme `none`).
    #[serde(default)]
    pub insecure: bool,
    /// A fixed kind for every event of this source.
    pub kind: Option<String>,
    /// Where the kind is in the JSON body (a JSON pointer); defaults: Housecall Pro
    /// `/event`, otherwise `/type`.
    pub kind_field: Option<String>,
    /// Where a delivery id is in the body, for schemes whose headers carry none (Housecall
    /// Pro, `none`); without it, the SHA-256 of the body is the delivery id.
    pub delivery_id_field: Option<String>,
}

/// Why the sources in the config cannot be used; names the source and field.
#[derive(Debug, thiserror::Error)]
#[error("sources.{source_name}.{field}: {reason}")]
pub struct SourceError {
    pub source_name: String,
    pub field: String,
    pub reason: String,
}

enum Verifier {
    Hmac(HmacVerifier),
    Ghl(GhlVerifier),
    Standard(StandardVerifier),
    Insecure,
}

/// One configured webhook source.
pub struct Source {
    name: String,
    scheme: SchemeKind,
    verifier: Verifier,
    kind: Option<String>,
    kind_field: String,
    delivery_id_field: Option<String>,
}

/// Why a delivery was refused. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("unknown source '{0}'")]
    UnknownSource(String),
    #[error("signature check failed: {0}")]
    Unauthorized(VerifyError),
    #[error("{0}")]
    Malformed(String),
}

impl From<VerifyError> for Refusal {
    fn from(e: VerifyError) -> Self {
        match e {
            // A signed body that lacks what the scheme needs (GoHighLevel's `timestamp`,
            // `webhookId`, `type`), or is not JSON: bad input, not a bad signature.
            VerifyError::Malformed { what, reason } if what.starts_with("body") => {
                Refusal::Malformed(format!("{what}: {reason}"))
            }
            e => Refusal::Unauthorized(e),
        }
    }
}

impl Refusal {
    /// The HTTP status this refusal answers with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::UnknownSource(_) => 404,
            Refusal::Unauthorized(_) => 401,
            Refusal::Malformed(_) => 400,
        }
    }
}

/// What a verified delivery is.
#[derive(Debug)]
pub enum Received {
    /// An event to journal.
    Event(Incoming),
    /// A Housecall Pro setup ping (a signed body with no event): acknowledged, not stored.
    Ping,
}

/// Source names the host uses for its own events (cron fires, admin triggers).
const RESERVED: &[&str] = &["cron", "manual"];

/// The configured sources, by name.
#[derive(Default)]
pub struct Sources {
    by_name: BTreeMap<String, Source>,
}

fn secret_bytes(
    name: &str,
    field: &str,
    src: &SecretSource,
    standard: bool,
) -> Result<Vec<u8>, SourceError> {
    let err = |reason: String| SourceError {
        source_name: name.to_string(),
        field: field.to_string(),
        reason,
    };
    let secret = src.load().map_err(|e: SecretError| err(e.to_string()))?;
    if standard {
        StandardVerifier::decode_secret(secret.expose()).map_err(err)
    } else {
        Ok(secret.expose().as_bytes().to_vec())
    }
}

impl Sources {
    /// Build the sources, reading their secrets and keys.
    pub fn from_config(config: &BTreeMap<String, SourceConfig>) -> Result<Self, SourceError> {
        let mut by_name = BTreeMap::new();
        for (name, c) in config {
            if RESERVED.contains(&name.as_str()) {
                return Err(SourceError {
                    source_name: name.clone(),
                    field: "name".into(),
                    reason: format!(
                        "'{name}' is the source of the host's own events; choose another name"
                    ),
                });
            }
            by_name.insert(name.clone(), Source::new(name, c)?);
        }
        Ok(Sources { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Source> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Verify a delivery to `source` and turn it into an event.
    pub fn receive(
        &self,
        source: &str,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Received, Refusal> {
        self.get(source)
            .ok_or_else(|| Refusal::UnknownSource(source.to_string()))?
            .receive(headers, body, now_unix)
    }
}

impl Source {
    fn new(name: &str, c: &SourceConfig) -> Result<Self, SourceError> {
        let err = |field: &str, reason: String| SourceError {
            source_name: name.to_string(),
            field: field.to_string(),
            reason,
        };
        let scheme = c.scheme.unwrap_or(match name {
            "housecallpro" => SchemeKind::Housecallpro,
            "gohighlevel" => SchemeKind::Gohighlevel,
            _ => SchemeKind::Standard,
        });
        let secret_sources: Vec<(String, &SecretSource)> = c
            .secret
            .iter()
            .map(|s| ("secret".to_string(), s))
            .chain(
                c.secrets
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("secrets[{i}]"), s)),
            )
            .collect();
        let load_secrets = |standard: bool| -> Result<Vec<Vec<u8>>, SourceError> {
            if secret_sources.is_empty() {
                return Err(err(
                    "secret",
                    "a signed source needs a secret (or scheme = \"none\" with insecure = true)"
                        .into(),
                ));
            }
            secret_sources
                .iter()
                .map(|(field, s)| secret_bytes(name, field, s, standard))
                .collect()
        };
        let verifier = match scheme {
            SchemeKind::Housecallpro => {
                let mut v = HmacVerifier::new(load_secrets(false)?);
                for (field, header, slot) in [
                    (
                        "timestamp_header",
                        &c.timestamp_header,
                        &mut v.timestamp_header,
                    ),
                    (
                        "signature_header",
                        &c.signature_header,
                        &mut v.signature_header,
                    ),
                ] {
                    if let Some(h) = header {
                        if axum::http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                            return Err(err(field, format!("'{h}' is not a valid header name")));
                        }
                        *slot = h.clone();
                    }
                }
                if let Some(t) = &c.signed_content {
                    if !t.contains("{body}") {
                        return Err(err("signed_content", "must contain {body}".into()));
                    }
                    v.signed_content = t.clone();
                }
                if let Some(t) = c.tolerance {
                    v.tolerance = t;
                }
                Verifier::Hmac(v)
            }
            SchemeKind::Gohighlevel => {
                let ed = c
                    .ed25519_public_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        GhlVerifier::parse_ed25519_key(k)
                            .map_err(|e| err(&format!("ed25519_public_keys[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let rsa_texts = c
                    .rsa_public_keys
                    .clone()
                    .unwrap_or_else(|| vec![GhlVerifier::DOCUMENTED_RSA_KEY.to_string()]);
                let rsa = rsa_texts
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        GhlVerifier::parse_rsa_key(k)
                            .map_err(|e| err(&format!("rsa_public_keys[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if ed.is_empty() && rsa.is_empty() {
                    return Err(err(
                        "ed25519_public_keys",
                        "a GoHighLevel source needs at least one public key".into(),
                    ));
                }
                let mut v = GhlVerifier::new(ed, rsa);
                if let Some(t) = c.tolerance {
                    v.tolerance = t;
                }
                Verifier::Ghl(v)
            }
            SchemeKind::Standard => {
                let mut v = StandardVerifier::new(load_secrets(true)?);
                if let Some(t) = c.tolerance {
                    v.tolerance = t;
                }
                Verifier::Standard(v)
            }
            SchemeKind::None => {
                if !c.insecure {
                    return Err(err(
                        "insecure",
                        "scheme \"none\" accepts unsigned deliveries; say insecure = true to allow it"
                            .into(),
                    ));
                }
                Verifier::Insecure
            }
        };
        let kind_field = c.kind_field.clone().unwrap_or_else(|| {
            if scheme == SchemeKind::Housecallpro {
                "/event".into()
            } else {
                "/type".into()
            }
        });
        for (field, pointer) in [
            ("kind_field", Some(&kind_field)),
            ("delivery_id_field", c.delivery_id_field.as_ref()),
        ] {
            if let Some(p) = pointer
                && !p.starts_with('/')
            {
                return Err(err(
                    field,
                    format!("'{p}' is not a JSON pointer (it starts with '/', e.g. \"/type\")"),
                ));
            }
        }
        Ok(Source {
            name: name.to_string(),
            scheme,
            verifier,
            kind: c.kind.clone(),
            kind_field,
            delivery_id_field: c.delivery_id_field.clone(),
        })
    }

    /// Verify one delivery and turn it into an event.
    pub fn receive(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Received, Refusal> {
        // The signature first: nothing from an unverified body is looked at.
        let header_delivery = match &self.verifier {
            Verifier::Hmac(v) => {
                v.verify(headers, body, now_unix)?;
                None
            }
            Verifier::Ghl(v) => Some(v.verify(headers, body, now_unix)?.webhook_id),
            Verifier::Standard(v) => Some(v.verify(headers, body, now_unix)?),
            Verifier::Insecure => None,
        };
        let payload: Box<serde_json::value::RawValue> = serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("body is not valid JSON: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(payload.get())
            .map_err(|e| Refusal::Malformed(format!("body is not valid JSON: {e}")))?;
        let kind = match &self.kind {
            Some(k) => k.clone(),
            None => match value.pointer(&self.kind_field) {
                Some(serde_json::Value::String(k)) if !k.is_empty() => k.clone(),
                Some(other) => {
                    return Err(Refusal::Malformed(format!(
                        "{} must be a non-empty string, not {other}",
                        self.kind_field
                    )));
                }
                None if self.scheme == SchemeKind::Housecallpro => return Ok(Received::Ping),
                None => {
                    return Err(Refusal::Malformed(format!(
                        "missing {} (the event kind); set `kind` or `kind_field` for source {}",
                        self.kind_field, self.name
                    )));
                }
            },
        };
        let delivery_id = match (header_delivery, &self.delivery_id_field) {
            (Some(id), _) => id,
            (None, Some(pointer)) => match value.pointer(pointer) {
                Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(Refusal::Malformed(format!(
                        "missing {pointer} (the delivery id)"
                    )));
                }
            },
            (None, None) => hex::encode(&Sha256::digest(body)[..16]),
        };
        Ok(Received::Event(Incoming {
            event_id: None,
            source: self.name.clone(),
            kind,
            delivery_id: Some(delivery_id),
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<Sources, SourceError> {
        let c: BTreeMap<String, SourceConfig> = toml::from_str(text).unwrap();
        Sources::from_config(&c)
    }

    #[test]
    fn config_errors_name_source_and_field() {
        let e = config("[forms]\n").err().unwrap().to_string();
        assert!(e.starts_with("sources.forms.secret: "), "{e}");
        let e = config("[legacy]\nscheme = \"none\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("sources.legacy.insecure: "), "{e}");
        let e = config("[gohighlevel]\ned25519_public_keys = [\"nope\"]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("sources.gohighlevel.ed25519_public_keys[0]: "),
            "{e}"
        );
        let e = config("[legacy]\nscheme = \"none\"\ninsecure = true\nkind_field = \"type\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("sources.legacy.kind_field: "), "{e}");
        let e = config("[cron]\nscheme = \"none\"\ninsecure = true\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("sources.cron.name: "), "{e}");
    }

    #[test]
    fn insecure_sources_read_kind_and_delivery_from_the_body() {
        let s =
            config("[legacy]\nscheme = \"none\"\ninsecure = true\ndelivery_id_field = \"/id\"\n")
                .unwrap();
        let h = HeaderMap::new();
        let Received::Event(e) = s
            .receive("legacy", &h, br#"{"type":"lead.created","id":7}"#, 0)
            .unwrap()
        else {
            panic!("not an event")
        };
        assert_eq!(
            (e.kind.as_str(), e.delivery_id.as_deref()),
            ("lead.created", Some("7"))
        );
        let err = s.receive("legacy", &h, b"{\"type\":", 0).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        let err = s.receive("legacy", &h, br#"{"id":1}"#, 0).unwrap_err();
        assert!(err.to_string().contains("missing /type"), "{err}");
        assert_eq!(s.receive("nope", &h, b"{}", 0).unwrap_err().status(), 404);
    }
}
