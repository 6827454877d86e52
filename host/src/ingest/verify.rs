//! Verification of signed webhook deliveries.
//!
//! Three schemes are supported:
//!
//! * [`HmacVerifier`] — Housecall Pro style: a hex HMAC-SHA256 in `Api-Signature` over a
//!   configurable template (default `{timestamp}.{body}`) with the unix time in `Api-Timestamp`.
//! * [`GhlVerifier`] — GoHighLevel: a base64 Ed25519 signature over the raw body in
//!   `X-GHL-Signature` (current scheme), or, only when that header is absent, the legacy base64
//!   RSA PKCS#1 v1.5 SHA-256 signature in `X-WH-Signature`; the body's `timestamp` bounds replay.
//! * [`StandardVerifier`] — [Standard Webhooks](https://www.standardwebhooks.com) (and Svix):
//!   `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>` entries over
//!   `{webhook-id}.{webhook-timestamp}.{body}`.
//!
//! Signatures are checked before timestamps, so [`VerifyError::Stale`] is only reported for
//! authentic deliveries. All comparisons of MACs are constant-time, and errors never contain
//! secrets. Every `verify` takes `now_unix` (seconds) so callers and tests control the clock.

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use ed25519_dalek::VerifyingKey;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest as _, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The replay window used by the `new` constructors: five minutes either side of now.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const B64_STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const B64_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Why a delivery was refused. Maps to HTTP 401 in the server.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header or body field is present but cannot be parsed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The header or field at fault.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The signature is well-formed but matches none of the configured secrets or keys.
    #[error("signature does not match")]
    BadSignature,
    /// The delivery is authentic but its timestamp is outside the tolerance.
    #[error(
        "timestamp is {age_secs} s old (negative: in the future); the tolerance is ±{tolerance_secs} s"
    )]
    Stale {
        /// `now - timestamp` in seconds.
        age_secs: i64,
        /// The configured tolerance in seconds.
        tolerance_secs: u64,
    },
}

fn malformed(what: &str, reason: impl Into<String>) -> VerifyError {
    VerifyError::Malformed {
        what: what.into(),
        reason: reason.into(),
    }
}

/// The first value of a header (`None` if absent); non-visible-ASCII values are malformed.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, VerifyError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| malformed(name, "not visible ASCII")),
    }
}

fn required<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    header(headers, name)?.ok_or_else(|| VerifyError::MissingHeader(name.into()))
}

/// Parses integer unix seconds; values above 10^12 are taken as milliseconds.
fn parse_unix(what: &str, text: &str) -> Result<i64, VerifyError> {
    let n: i64 = text
        .parse()
        .map_err(|_| malformed(what, "not an integer unix time"))?;
    Ok(if n > 1_000_000_000_000 { n / 1000 } else { n })
}

fn check_age(timestamp: i64, now_unix: i64, tolerance: Duration) -> Result<(), VerifyError> {
    let age = now_unix.saturating_sub(timestamp);
    if age.unsigned_abs() > tolerance.as_secs() {
        return Err(VerifyError::Stale {
            age_secs: age,
            tolerance_secs: tolerance.as_secs(),
        });
    }
    Ok(())
}

fn b64(text: &str) -> Option<Vec<u8>> {
    B64_STD.decode(text).or_else(|_| B64_URL.decode(text)).ok()
}

fn hmac(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Housecall Pro style HMAC-SHA256 verification.
#[derive(Clone)]
pub struct HmacVerifier {
    /// One or more secrets (rotation): a signature made with any of them is accepted.
    pub secrets: Vec<Vec<u8>>,
    /// Header holding the unix timestamp (seconds, or milliseconds if above 10^12).
    pub timestamp_header: String,
    /// Header holding the hex signature (either case, optionally prefixed `sha256=`).
    pub signature_header: String,
    /// What is signed, with `{timestamp}` and `{body}` placeholders; default `{timestamp}.{body}`.
    /// Without `{timestamp}` the timestamp header is neither required nor checked.
    pub signed_content: String,
    /// How far the timestamp may be from now, either way.
    pub tolerance: Duration,
}

impl std::fmt::Debug for HmacVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacVerifier")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("timestamp_header", &self.timestamp_header)
            .field("signature_header", &self.signature_header)
            .field("signed_content", &self.signed_content)
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// Feeds `template` into `mac`, substituting placeholders without copying the body.
fn feed_template(mac: &mut HmacSha256, template: &str, timestamp: &str, body: &[u8]) {
    let mut rest = template;
    loop {
        let next = [("{timestamp}", timestamp.as_bytes()), ("{body}", body)]
            .into_iter()
            .filter_map(|(p, value)| rest.find(p).map(|at| (at, p.len(), value)))
            .min_by_key(|&(at, ..)| at);
        let Some((at, len, value)) = next else {
            mac.update(rest.as_bytes());
            return;
        };
        mac.update(&rest.as_bytes()[..at]);
        mac.update(value);
        rest = &rest[at + len..];
    }
}

impl HmacVerifier {
    /// A verifier with the Housecall Pro defaults: `Api-Timestamp`, `Api-Signature`,
    /// `{timestamp}.{body}` and a five-minute tolerance.
    pub fn new(secrets: Vec<Vec<u8>>) -> Self {
        Self {
            secrets,
            timestamp_header: "Api-Timestamp".into(),
            signature_header: "Api-Signature".into(),
            signed_content: "{timestamp}.{body}".into(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Accepts the delivery if its signature matches any secret and its timestamp is fresh.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), VerifyError> {
        let timestamp = if self.signed_content.contains("{timestamp}") {
            let text = required(headers, &self.timestamp_header)?;
            Some((text, parse_unix(&self.timestamp_header, text)?))
        } else {
            None
        };
        let sig_text = required(headers, &self.signature_header)?;
        let hex_text = sig_text.strip_prefix("sha256=").unwrap_or(sig_text);
        let sig =
            hex::decode(hex_text).map_err(|_| malformed(&self.signature_header, "not hex"))?;
        let ts_text = timestamp.map_or("", |(text, _)| text);
        let matched = self.secrets.iter().any(|secret| {
            let mut mac = hmac(secret);
            feed_template(&mut mac, &self.signed_content, ts_text, body);
            mac.verify_slice(&sig).is_ok()
        });
        if !matched {
            return Err(VerifyError::BadSignature);
        }
        match timestamp {
            Some((_, ts)) => check_age(ts, now_unix, self.tolerance),
            None => Ok(()),
        }
    }

    /// Lowercase hex HMAC-SHA256 of `signed_content` with the placeholders substituted.
    pub fn sign(secret: &[u8], signed_content: &str, timestamp: &str, body: &[u8]) -> String {
        let mut mac = hmac(secret);
        feed_template(&mut mac, signed_content, timestamp, body);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// GoHighLevel verification: Ed25519 `X-GHL-Signature`, falling back to RSA `X-WH-Signature`
/// only when `X-GHL-Signature` is absent.
#[derive(Debug, Clone)]
pub struct GhlVerifier {
    /// Keys accepted for `X-GHL-Signature`.
    pub ed25519_keys: Vec<VerifyingKey>,
    /// Keys accepted for the legacy `X-WH-Signature`.
    pub rsa_keys: Vec<RsaPublicKey>,
    /// How far the body's `timestamp` may be from now, either way.
    pub tolerance: Duration,
}

/// What a verified GoHighLevel delivery carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhlDelivery {
    /// The body's `webhookId`: the delivery id, for de-duplication.
    pub webhook_id: String,
    /// The body's `type`, e.g. `ContactCreate`.
    pub kind: String,
    /// The body's `timestamp`, as sent (RFC 3339 text, or the number's decimal form).
    pub timestamp: String,
}

impl GhlVerifier {
    /// The RSA public key GoHighLevel documents for `X-WH-Signature`
    /// (oauth/WebhookAuthentication.md).
    pub const DOCUMENTED_RSA_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
";

    /// A verifier with the given keys and a five-minute tolerance.
    pub fn new(ed25519_keys: Vec<VerifyingKey>, rsa_keys: Vec<RsaPublicKey>) -> Self {
        Self {
            ed25519_keys,
            rsa_keys,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Parses an Ed25519 public key: base64 (standard or URL-safe, padding optional) of the
    /// 32 raw bytes, or a PEM SPKI `-----BEGIN PUBLIC KEY-----` block.
    pub fn parse_ed25519_key(text: &str) -> Result<VerifyingKey, String> {
        let text = text.trim().replace("\\n", "\n");
        if text.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(&text)
                .map_err(|e| format!("not an Ed25519 PEM public key: {e}"));
        }
        let bytes = b64(&text).ok_or("neither PEM nor base64")?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("an Ed25519 key is 32 bytes, this is {}", b.len()))?;
        VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid Ed25519 point".into())
    }

    /// Parses an RSA public key from PEM SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`). Literal `\n` escapes (as in env vars) are accepted.
    pub fn parse_rsa_key(text: &str) -> Result<RsaPublicKey, String> {
        let text = text.trim().replace("\\n", "\n");
        if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            RsaPublicKey::from_pkcs1_pem(&text).map_err(|e| format!("bad PKCS#1 RSA key: {e}"))
        } else {
            rsa::pkcs8::DecodePublicKey::from_public_key_pem(&text)
                .map_err(|e| format!("bad PEM SPKI RSA key: {e}"))
        }
    }

    /// Verifies the signature, then the body's `timestamp`, `webhookId` and `type`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<GhlDelivery, VerifyError> {
        let matched = if let Some(text) = header(headers, "X-GHL-Signature")? {
            let bytes = b64(text).ok_or_else(|| malformed("X-GHL-Signature", "not base64"))?;
            let sig = ed25519_dalek::Signature::from_slice(&bytes)
                .map_err(|_| malformed("X-GHL-Signature", "an Ed25519 signature is 64 bytes"))?;
            self.ed25519_keys
                .iter()
                .any(|k| k.verify_strict(body, &sig).is_ok())
        } else if let Some(text) = header(headers, "X-WH-Signature")? {
            let sig = b64(text).ok_or_else(|| malformed("X-WH-Signature", "not base64"))?;
            let digest = Sha256::digest(body);
            let scheme = || Pkcs1v15Sign::new::<Sha256>();
            self.rsa_keys
                .iter()
                .any(|k| k.verify(scheme(), &digest, &sig).is_ok())
        } else {
            return Err(VerifyError::MissingHeader("X-GHL-Signature".into()));
        };
        if !matched {
            return Err(VerifyError::BadSignature);
        }
        let json: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| malformed("body", format!("not JSON: {e}")))?;
        let field = |name: &str| match json.get(name) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            _ => Err(malformed(
                &format!("body field {name}"),
                "missing or not a string",
            )),
        };
        const TS: &str = "body field timestamp";
        let (timestamp, unix) = match json.get("timestamp") {
            Some(serde_json::Value::String(s)) => {
                let t = chrono::DateTime::parse_from_rfc3339(s)
                    .map_err(|e| malformed(TS, format!("not RFC 3339: {e}")))?;
                (s.clone(), t.timestamp())
            }
            Some(serde_json::Value::Number(n)) => {
                let text = n.to_string();
                (text.clone(), parse_unix(TS, &text)?)
            }
            _ => return Err(malformed(TS, "missing, or neither a string nor a number")),
        };
        check_age(unix, now_unix, self.tolerance)?;
        Ok(GhlDelivery {
            webhook_id: field("webhookId")?,
            kind: field("type")?,
            timestamp,
        })
    }
}

/// [Standard Webhooks](https://www.standardwebhooks.com) verification (also accepts the
/// `svix-*` header names when the `webhook-*` ones are absent).
#[derive(Clone)]
pub struct StandardVerifier {
    /// Raw key bytes (see [`StandardVerifier::decode_secret`]); any of them may match.
    pub secrets: Vec<Vec<u8>>,
    /// How far `webhook-timestamp` may be from now, either way.
    pub tolerance: Duration,
}

impl std::fmt::Debug for StandardVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandardVerifier")
            .field(
                "secrets",
                &format_args!("<{} redacted>", self.secrets.len()),
            )
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl StandardVerifier {
    /// A verifier with the given raw keys and a five-minute tolerance.
    pub fn new(secrets: Vec<Vec<u8>>) -> Self {
        Self {
            secrets,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Decode a `whsec_<base64>` secret (the prefix is optional) into key bytes; error names
    /// the problem without echoing the secret.
    pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
        let text = text.trim();
        let b64_text = text.strip_prefix("whsec_").unwrap_or(text);
        match B64_STD.decode(b64_text) {
            Ok(key) if key.is_empty() => Err("the webhook secret is empty".into()),
            Ok(key) => Ok(key),
            Err(_) => {
                Err("the webhook secret is not base64 after the optional whsec_ prefix".into())
            }
        }
    }

    /// Verify; returns the `webhook-id` (the delivery id).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<String, VerifyError> {
        let get = |name: &str| match header(headers, &format!("webhook-{name}"))? {
            Some(v) => Ok(v),
            None => header(headers, &format!("svix-{name}"))?
                .ok_or_else(|| VerifyError::MissingHeader(format!("webhook-{name}"))),
        };
        let (id, ts_text, sig_text) = (get("id")?, get("timestamp")?, get("signature")?);
        let timestamp: i64 = ts_text
            .parse()
            .map_err(|_| malformed("webhook-timestamp", "not integer unix seconds"))?;
        let v1: Vec<&str> = sig_text
            .split_whitespace()
            .filter_map(|e| e.strip_prefix("v1,"))
            .collect();
        let sigs: Vec<Vec<u8>> = v1.iter().filter_map(|s| B64_STD.decode(s).ok()).collect();
        if sigs.is_empty() {
            let reason = if v1.is_empty() {
                "no v1 entry"
            } else {
                "v1 entry is not base64"
            };
            return Err(malformed("webhook-signature", reason));
        }
        let matched = self.secrets.iter().any(|key| {
            let mut mac = hmac(key);
            for part in [id.as_bytes(), b".", ts_text.as_bytes(), b".", body] {
                mac.update(part);
            }
            sigs.iter().any(|sig| mac.clone().verify_slice(sig).is_ok())
        });
        if !matched {
            return Err(VerifyError::BadSignature);
        }
        check_age(timestamp, now_unix, self.tolerance)?;
        Ok(id.to_owned())
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
    pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = hmac(key);
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", B64_STD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::VerifyError::*;
    use super::*;
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::{Signer as _, SigningKey};
    use http::{HeaderName, HeaderValue};

    const NOW: i64 = 1_738_074_900; // 2025-01-28T14:35:00Z
    const BODY: &[u8] =
        br#"{"type":"ContactCreate","webhookId":"wh-1","timestamp":"2025-01-28T14:35:00Z"}"#;
    /// Public half of a 2048-bit test key (`openssl genrsa`); `RSA_SIG` is
    /// `openssl dgst -sha256 -sign key.pem` over `BODY`, base64.
    const RSA_PUB_PKCS1: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEA6dQF+2oj/wsHa+iK8POYZpHSbIN1rXLjaUTrtk/Ps/g2xH2210Sg
Xa+EoGm/LE+nXPRLR+v6umPbTUtIYzFM14fYLB2R8BSxJcVQPMgYQmNgJyv03Zs5
QkAsNB/BGa1zgppg+eDrNMOU5/sBYX/g9e/0+K/IJt+C0jTm81yjHSx8BHsCrL7d
oaT5OSX9WQvSG+WGwsYg3xQq/QaGjz9fiVNBHb4GW1Ff8hsv42nSax44HXodoPyW
nJHCBnDPlpSPhWlEVDYeCx7cH+D2++bWC9mj6PD6iaEWHqWGOQ0+NHziJVt/IdQA
zbhFM5hNEp0uH4e4tFgrCn2Q+Ml6Sa0VAQIDAQAB
-----END RSA PUBLIC KEY-----";
    const RSA_SIG: &str = "EKOrP8oh1508l8TvQWm8gFs1tuk8dljVG8O3r+vQhSC0VS2TIir0NQF7Oj+xu0kvEgVv9scQcoopj5guAHLaCqZK9VBF8qt1muopndJJhiEN2ye8/hFMkjMnMRM0CL5R+Kio35nFQEr9mSrtip9aA0HilZ0EpEGamC634no2Kmd8HNtUK2FYmZSRi5dpdjnWnQwu0ZtrQR0p+wHdvLU6vNDmlzhAjxIgttJsrOJrFQSQgeSvuHDG5ioJjdGcEGxuihXB8RH1crAjl7Cr6t5/eNAx61QoT9ZkOBKOxpyGYoZzd5E82SagrBX5ruO34GX27gtljgpw0erEclCNo+wfkA==";

    /// Headers from `name=value;name=value`.
    fn h(spec: &str) -> HeaderMap {
        let pair = |kv: &str| {
            let (name, value) = kv.split_once('=').unwrap();
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            (name, HeaderValue::from_str(value).unwrap())
        };
        spec.split(';').map(pair).collect()
    }

    /// A short tag for an outcome, so cases fit in tables.
    fn tag<T>(r: Result<T, VerifyError>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(MissingHeader(h)) => format!("missing {h}"),
            Err(Malformed { what, .. }) => format!("malformed {what}"),
            Err(BadSignature) => "bad".into(),
            Err(Stale { age_secs, .. }) => format!("stale {age_secs}"),
        }
    }

    fn hcp(secret: &[u8], ts: &str, body: &[u8]) -> HeaderMap {
        let sig = HmacVerifier::sign(secret, "{timestamp}.{body}", ts, body);
        h(&format!("api-timestamp={ts};api-signature={sig}"))
    }

    #[test]
    fn hmac_scheme() {
        let kat = HmacVerifier::sign(b"s3cret", "{timestamp}.{body}", "1700000000", b"{}");
        let want = "97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf";
        assert_eq!(kat, want); // python3 hmac.new(b"s3cret", b"1700000000.{}", sha256)
        let v = HmacVerifier::new(vec![b"old".to_vec(), b"s3cret".to_vec()]);
        let ms = "1738074900123";
        let upper = HmacVerifier::sign(b"s3cret", "{timestamp}.{body}", ms, BODY).to_uppercase();
        let upper = h(&format!("Api-Timestamp={ms};Api-Signature=sha256={upper}"));
        let raw: &[u8] = &[0xff, 0xfe, 0]; // not UTF-8
        let (no_ts, no_sig) = (h("api-signature=00"), h("api-timestamp=1"));
        let not_hex = h("api-timestamp=1;api-signature=zz");
        let odd_hex = h("api-timestamp=1;api-signature=abc");
        let cases: [(&str, HeaderMap, &[u8]); 12] = [
            ("ok", hcp(b"s3cret", "1738074900", BODY), BODY), // 2nd secret
            ("ok", hcp(b"s3cret", "1738074900", raw), raw),
            ("ok", upper, BODY),
            ("bad", hcp(b"s3cret", "1738074900", BODY), b"{}"),
            ("bad", hcp(b"wrong", "1738074900", BODY), BODY),
            ("stale 360", hcp(b"s3cret", "1738074540", BODY), BODY),
            ("stale -360", hcp(b"s3cret", "1738075260", BODY), BODY),
            ("missing Api-Timestamp", no_ts, BODY),
            ("missing Api-Signature", no_sig, BODY),
            ("malformed Api-Timestamp", hcp(b"k", "x", BODY), BODY),
            ("malformed Api-Signature", not_hex, BODY),
            ("malformed Api-Signature", odd_hex, BODY),
        ];
        for (i, (want, h, body)) in cases.into_iter().enumerate() {
            assert_eq!(tag(v.verify(&h, body, NOW)), want, "case {i}");
        }
        let stale = v.verify(&hcp(b"s3cret", "1738074540", BODY), BODY, NOW);
        let msg = "timestamp is 360 s old (negative: in the future); the tolerance is ±300 s";
        assert_eq!(stale.unwrap_err().to_string(), msg);
        assert!(!format!("{v:?}").contains("115, 51")); // secret bytes are redacted

        let mut v = HmacVerifier::new(vec![b"k".to_vec()]);
        v.signed_content = "v0:{body}:{body}".into();
        let mut mac = hmac(b"k");
        mac.update(&[b"v0:", BODY, b":", BODY].concat());
        let sig = hex::encode(mac.finalize().into_bytes());
        assert_eq!(HmacVerifier::sign(b"k", "v0:{body}:{body}", "", BODY), sig);
        let only_sig = h(&format!("api-signature={sig}")); // no timestamp needed
        assert_eq!(v.verify(&only_sig, BODY, 0), Ok(()));
    }

    fn ed_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn ed_sig(seed: u8, body: &[u8]) -> String {
        B64_STD.encode(ed_key(seed).sign(body).to_bytes())
    }

    fn ed(seed: u8, body: &[u8]) -> HeaderMap {
        h(&format!("X-GHL-Signature={}", ed_sig(seed, body)))
    }

    #[test]
    fn ghl_scheme() {
        let rsa = GhlVerifier::parse_rsa_key(RSA_PUB_PKCS1).unwrap();
        let v = GhlVerifier::new(vec![ed_key(7).verifying_key()], vec![rsa]);
        let want = GhlDelivery {
            webhook_id: "wh-1".into(),
            kind: "ContactCreate".into(),
            timestamp: "2025-01-28T14:35:00Z".into(),
        };
        assert_eq!(v.verify(&ed(7, BODY), BODY, NOW), Ok(want.clone()));
        let rsa = h(&format!("x-wh-signature={RSA_SIG}"));
        assert_eq!(v.verify(&rsa, BODY, NOW + 299), Ok(want));
        let ms = br#"{"type":"T","webhookId":"w","timestamp":1738074900000}"#;
        let got = v.verify(&ed(7, ms), ms, NOW).unwrap().timestamp;
        assert_eq!(got, "1738074900000");

        // A present but wrong X-GHL-Signature is refused even beside a valid X-WH-Signature.
        let both = h(&format!(
            "x-ghl-signature={};x-wh-signature={RSA_SIG}",
            ed_sig(8, BODY)
        ));
        let tampered = &[BODY, b" "].concat()[..];
        let no_id = br#"{"type":"T","timestamp":"2025-01-28T14:35:00Z"}"#;
        let (not_b64, short) = (h("x-ghl-signature=%%%"), h("x-ghl-signature=AAAA"));
        let (rsa_not_b64, rsa_short) = (h("x-wh-signature=%%%"), h("x-wh-signature=AAAA"));
        let cases: [(&str, HeaderMap, &[u8], i64); 12] = [
            ("bad", both, BODY, NOW),
            ("bad", ed(7, BODY), tampered, NOW),
            ("bad", rsa.clone(), tampered, NOW),
            ("bad", rsa_short, BODY, NOW),
            ("missing X-GHL-Signature", HeaderMap::new(), BODY, NOW),
            ("malformed X-GHL-Signature", not_b64, BODY, NOW),
            ("malformed X-GHL-Signature", short, BODY, NOW),
            ("malformed X-WH-Signature", rsa_not_b64, BODY, NOW),
            ("stale -360", ed(7, BODY), BODY, NOW - 360),
            ("stale 360", ed(7, BODY), BODY, NOW + 360),
            ("malformed body field webhookId", ed(7, no_id), no_id, NOW),
            ("malformed body", ed(7, b"type=T"), b"type=T", NOW),
        ];
        for (i, (want, h, body, now)) in cases.into_iter().enumerate() {
            assert_eq!(tag(v.verify(&h, body, now)), want, "case {i}");
        }
        let doc = GhlVerifier::parse_rsa_key(GhlVerifier::DOCUMENTED_RSA_KEY).unwrap();
        let other_key = GhlVerifier::new(vec![], vec![doc]).verify(&rsa, BODY, NOW);
        assert_eq!(other_key, Err(BadSignature));
    }

    #[test]
    fn ghl_key_parsing() {
        let vk = ed_key(7).verifying_key();
        let std = B64_STD.encode(vk.as_bytes());
        assert_eq!(GhlVerifier::parse_ed25519_key(&std), Ok(vk));
        let url = B64_URL.encode(vk.as_bytes()).replace('=', "");
        assert_eq!(GhlVerifier::parse_ed25519_key(&url), Ok(vk));
        let pem = vk.to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(GhlVerifier::parse_ed25519_key(&pem), Ok(vk));
        assert!(GhlVerifier::parse_ed25519_key("AAAA").is_err());
        let doc = GhlVerifier::parse_rsa_key(GhlVerifier::DOCUMENTED_RSA_KEY).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&doc), 512);
        assert!(GhlVerifier::parse_rsa_key(&RSA_PUB_PKCS1.replace('\n', "\\n")).is_ok());
        assert!(GhlVerifier::parse_rsa_key("nope").is_err());
    }

    #[test]
    fn standard_known_answer() {
        // The example from the Svix / Standard Webhooks documentation.
        let key = StandardVerifier::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let (key, id) = (key.unwrap(), "msg_p5jXN8AQM9LWM0D4loKWxJek");
        let body = br#"{"test": 2432232314}"#;
        let sig = StandardVerifier::sign(&key, id, 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let svix = h(&format!(
            "svix-id={id};svix-timestamp=1614265330;svix-signature={sig}"
        ));
        let got = StandardVerifier::new(vec![key]).verify(&svix, body, 1614265330);
        assert_eq!(got, Ok(id.into()));
    }

    fn sw(sig: &str, ts: i64) -> HeaderMap {
        h(&format!(
            "webhook-id=msg_1;webhook-timestamp={ts};webhook-signature={sig}"
        ))
    }

    #[test]
    fn standard_scheme() {
        let (k1, k2) = (b"key-one".to_vec(), b"key-two".to_vec());
        let sign = |key: &[u8], ts| StandardVerifier::sign(key, "msg_1", ts, BODY);
        let (s1, s2) = (sign(&k1, NOW), sign(&k2, NOW));
        let v = StandardVerifier::new(vec![k2.clone()]);
        let both = StandardVerifier::new(vec![k1.clone(), k2.clone()]);
        assert_eq!(both.verify(&sw(&s2, NOW), BODY, NOW), Ok("msg_1".into()));
        let listed = sw(&format!("v1a,xyz {s1} {s2}"), NOW); // only the last entry matches
        let (old, new) = (sign(&k2, NOW - 360), sign(&k2, NOW + 360));
        let bad_ts = h(&format!(
            "webhook-id=m;webhook-timestamp=soon;webhook-signature={s2}"
        ));
        let cases: [(&str, HeaderMap, &[u8]); 11] = [
            ("ok", listed, BODY),
            ("bad", sw(&s2, NOW), b"{}"),
            ("bad", sw(&s1, NOW), BODY),
            ("stale 360", sw(&old, NOW - 360), BODY),
            ("stale -360", sw(&new, NOW + 360), BODY),
            ("missing webhook-id", HeaderMap::new(), BODY),
            ("missing webhook-timestamp", h("webhook-id=m"), BODY),
            ("malformed webhook-timestamp", bad_ts, BODY),
            ("malformed webhook-signature", sw("v1,%%%", NOW), BODY),
            ("malformed webhook-signature", sw("v2,abc", NOW), BODY),
            ("malformed webhook-signature", sw("", NOW), BODY),
        ];
        for (i, (want, h, body)) in cases.into_iter().enumerate() {
            assert_eq!(tag(v.verify(&h, body, NOW)), want, "case {i}");
        }
        assert_eq!(StandardVerifier::decode_secret("a2V5"), Ok(b"key".to_vec()));
        let err = StandardVerifier::decode_secret("whsec_not*base64").unwrap_err();
        assert!(!err.contains("not*base64"), "{err}");
    }
}
