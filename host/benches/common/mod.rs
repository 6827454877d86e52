//! What the benchmarks that post webhooks share: signed requests, built before timing.

use axum::body::Bytes;
use switchboard::ingest::verify::StandardVerifier;

/// The Standard Webhooks secret of the benchmarks' `bench` source.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A webhook ready to send.
pub struct Prepared {
    pub body: Bytes,
    pub headers: [(String, String); 3],
}

/// Signed requests, unique ids, built before timing.
pub fn prepare(n: usize, tag: &str) -> Vec<Prepared> {
    let key = StandardVerifier::decode_secret(SECRET).unwrap();
    let ts = chrono::Utc::now().timestamp();
    (0..n)
        .map(|i| {
            let body = format!(
                r#"{{"type":"lead.created","lead":{{"id":"{tag}-{i}","name":"Ada Lovelace","phone":"+13035550100","source":"web form"}}}}"#
            );
            let id = format!("msg_{tag}_{i}");
            let signature = StandardVerifier::sign(&key, &id, ts, body.as_bytes());
            Prepared {
                body: Bytes::from(body),
                headers: [
                    ("webhook-id".into(), id),
                    ("webhook-timestamp".into(), ts.to_string()),
                    ("webhook-signature".into(), signature),
                ],
            }
        })
        .collect()
}
