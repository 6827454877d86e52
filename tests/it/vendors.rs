//! Vendor clients against the vendor sandbox: real HTTP on loopback, from recipes and
//! from the clients directly; error mapping, retries and secrets.

use crate::support::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard::model::{Contact, Outcome, PhoneKind, Query, RecipeError};
use switchboard::runtime::{RunError, RunReport};
use switchboard::sandbox::{self, GHL_LOCATION, RunningSandbox, SandboxKeys};
use switchboard::secrets::SecretSource;
use switchboard::store::Store;
use switchboard::vendors::{Call, ConnectionConfig, Connections, Vendor};
use switchboard_test_guests::PROBE;

/// A sandbox with keys unique to this test, and a secret file holding each key.
struct Fixture {
    sandbox: RunningSandbox,
    dir: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    async fn new() -> Self {
        let n = fastrand::u64(..);
        let keys = SandboxKeys {
            gohighlevel: format!("ghl-secret-{n:016x}"),
            housecallpro: format!("hcp-secret-{n:016x}"),
            homebase360: format!("hb-secret-{n:016x}"),
            pocketboss: format!("pb-secret-{n:016x}"),
            welcomehome: format!("wh-secret-{n:016x}"),
        };
        let sandbox = sandbox::start("127.0.0.1:0".parse().unwrap(), keys)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vendor-store")).unwrap();
        Fixture {
            sandbox,
            dir,
            store,
        }
    }

    fn secret_file(&self, name: &str, value: &str) -> SecretSource {
        let path = self.dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(value.as_bytes())
            .unwrap();
        SecretSource::File(path)
    }

    fn config(&self, retries: Option<u32>) -> BTreeMap<String, ConnectionConfig> {
        let keys = &self.sandbox.state.keys;
        BTreeMap::from([
            (
                "ghl".to_string(),
                ConnectionConfig {
                    vendor: Vendor::Gohighlevel,
                    secret: self.secret_file("ghl", &keys.gohighlevel),
                    base_url: Some(self.sandbox.base_url("gohighlevel")),
                    location_id: Some(GHL_LOCATION.into()),
                    community_id: None,
                    company_id: None,
                    max_retries: retries,
                },
            ),
            (
                "hcp".to_string(),
                ConnectionConfig {
                    vendor: Vendor::Housecallpro,
                    secret: self.secret_file("hcp", &keys.housecallpro),
                    base_url: Some(self.sandbox.base_url("housecallpro")),
                    location_id: None,
                    community_id: None,
                    company_id: None,
                    max_retries: retries,
                },
            ),
            (
                "pb".to_string(),
                ConnectionConfig {
                    vendor: Vendor::Pocketboss,
                    secret: self.secret_file("pb", &keys.pocketboss),
                    base_url: Some(self.sandbox.base_url("pocketboss")),
                    location_id: None,
                    community_id: None,
                    company_id: None,
                    max_retries: retries,
                },
            ),
            (
                "wh".to_string(),
                ConnectionConfig {
                    vendor: Vendor::Welcomehome,
                    secret: self.secret_file("wh", &keys.welcomehome),
                    base_url: Some(self.sandbox.base_url("welcomehome")),
                    location_id: None,
                    community_id: None,
                    company_id: None,
                    max_retries: retries,
                },
            ),
            (
                "hb".to_string(),
                ConnectionConfig {
                    vendor: Vendor::Homebase360,
                    secret: self.secret_file("hb", &keys.homebase360),
                    base_url: Some(self.sandbox.base_url("homebase360")),
                    location_id: None,
                    community_id: None,
                    company_id: None,
                    max_retries: retries,
                },
            ),
        ])
    }

    fn connections(&self) -> Connections {
        self.build(&self.config(None))
    }

    fn build(&self, config: &BTreeMap<String, ConnectionConfig>) -> Connections {
        let counters: Arc<dyn switchboard::vendors::Counters> =
            Arc::new(self.store.quota().unwrap());
        Connections::from_config(config, &counters).unwrap()
    }

    fn secrets(&self) -> [String; 5] {
        let k = &self.sandbox.state.keys;
        [
            k.gohighlevel.clone(),
            k.housecallpro.clone(),
            k.homebase360.clone(),
            k.pocketboss.clone(),
            k.welcomehome.clone(),
        ]
    }

    async fn faults(&self, vendor: &str, faults: serde_json::Value) {
        let status = reqwest::Client::new()
            .put(format!(
                "http://{}/_sandbox/faults/{vendor}",
                self.sandbox.addr
            ))
            .json(&faults)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 204);
    }

    /// GET a GoHighLevel path as a client of the sandbox would.
    async fn ghl_get(&self, path: &str) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.sandbox.base_url("gohighlevel")))
            .bearer_auth(&self.sandbox.state.keys.gohighlevel)
            .header("Version", "2021-07-28")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn done(report: &RunReport) -> &str {
    match &report.outcome {
        Some(Outcome::Done(s)) => s,
        other => panic!("expected done, got {other:?} / {:?}", report.error),
    }
}

#[tokio::test]
async fn a_recipe_upsert_lands_in_the_sandbox_state() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), f.connections());
    let probe = load(&rt, PROBE).await;
    let op = json!({"op": "contacts-upsert", "connection": "ghl", "first_name": "Ada", "email": "ada@example.com"});
    let first = rt.run(&probe, &event("probe", op.clone())).await;
    let (id, created) = done(&first).split_once(' ').unwrap();
    assert_eq!(created, "created=true");
    // Seen through the sandbox's own API.
    let stored = f.ghl_get(&format!("/contacts/{id}")).await;
    assert_eq!(stored["contact"]["firstName"], "Ada");
    assert_eq!(stored["contact"]["email"], "ada@example.com");
    assert_eq!(stored["contact"]["locationId"], GHL_LOCATION);
    // The same email again matches the same contact.
    let second = rt.run(&probe, &event("probe", op)).await;
    assert_eq!(done(&second), format!("{id} created=false"));
    let found = rt
        .run(
            &probe,
            &event(
                "probe",
                json!({"op": "contacts-search", "connection": "ghl", "text": "ada"}),
            ),
        )
        .await;
    assert_eq!(done(&found), "Ada");
}

#[tokio::test]
async fn vendor_http_reaches_an_endpoint_the_typed_interfaces_do_not_cover() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), f.connections());
    let probe = load(&rt, PROBE).await;
    let r = rt
        .run(
            &probe,
            &event(
                "probe",
                json!({"op": "http", "connection": "ghl", "path": "/contacts/business/biz-1"}),
            ),
        )
        .await;
    assert_eq!(done(&r), r#"200 {"contacts":[],"count":0}"#);
}

#[tokio::test]
async fn gohighlevel_client_covers_contacts_tags_and_notes() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let ghl = connections.get("ghl").unwrap();
    let c = call();
    let created = ghl
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Grace".into()),
                last_name: Some("Hopper".into()),
                emails: vec!["grace@example.com".into()],
                phones: vec![switchboard::model::Phone {
                    kind: PhoneKind::Mobile,
                    number: "+13035550100".into(),
                }],
                tags: vec!["navy".into()],
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    let id = created.id.clone().unwrap();
    assert!(created.raw.is_some(), "the vendor JSON is kept");
    // Creating a duplicate is refused with the vendor's message.
    let dup = ghl.contacts_create(&c, &created).await.unwrap_err();
    assert!(
        matches!(&dup, RecipeError::Invalid { reason, .. } if reason.contains("duplicated contacts")),
        "{dup:?}"
    );
    let updated = ghl
        .contacts_update(
            &c,
            &id,
            &Contact {
                company: Some("US Navy".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.company.as_deref(), Some("US Navy"));
    assert_eq!(
        updated.first_name.as_deref(),
        Some("Grace"),
        "unset fields are kept"
    );
    ghl.contacts_add_tags(&c, &id, &["vip".into()])
        .await
        .unwrap();
    ghl.contacts_remove_tags(&c, &id, &["navy".into()])
        .await
        .unwrap();
    let note = ghl
        .contacts_add_note(&c, &id, "Prefers mornings")
        .await
        .unwrap();
    assert!(!note.is_empty());
    let got = ghl.contacts_get(&c, &id).await.unwrap();
    assert_eq!(got.tags, vec!["vip".to_string()]);
    assert_eq!(got.phone(PhoneKind::Mobile), Some("+13035550100"));
    let notes = f.ghl_get(&format!("/contacts/{id}/notes")).await;
    assert_eq!(notes["notes"][0]["body"], "Prefers mornings");
    let page = ghl
        .contacts_search(
            &c,
            &Query {
                text: Some("hopper".into()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, Some(1));
    ghl.contacts_delete(&c, &id).await.unwrap();
    assert!(matches!(
        ghl.contacts_get(&c, &id).await,
        Err(RecipeError::NotFound { .. })
    ));
    assert!(ghl.check(&c).await.unwrap().contains(GHL_LOCATION));
}

#[tokio::test]
async fn validation_happens_before_a_request_leaves_the_host() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let ghl = connections.get("ghl").unwrap();
    let c = call();
    let bad_email = Contact {
        emails: vec!["not-an-email".into()],
        ..Contact::default()
    };
    let err = ghl.contacts_upsert(&c, &bad_email).await.unwrap_err();
    assert_eq!(
        err,
        RecipeError::invalid("emails[0]", "'not-an-email' is not an email address")
    );
    let err = ghl
        .contacts_upsert(&c, &Contact::default())
        .await
        .unwrap_err();
    assert!(matches!(err, RecipeError::Invalid { field, .. } if field == "emails"));
    let err = ghl
        .contacts_search(
            &c,
            &Query {
                limit: Some(101),
                ..Query::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RecipeError::Invalid { field, .. } if field == "limit"));
    assert_eq!(
        f.sandbox.state.requests("gohighlevel"),
        0,
        "nothing was sent"
    );
}

#[tokio::test]
async fn housecallpro_client_pages_through_customers() {
    let f = Fixture::new().await;
    let http = reqwest::Client::new();
    for name in ["Ann", "Bob", "Cid"] {
        let status = http
            .post(format!("{}/customers", f.sandbox.base_url("housecallpro")))
            .header(
                "Authorization",
                format!("Token {}", f.sandbox.state.keys.housecallpro),
            )
            .json(&json!({"first_name": name, "mobile_number": "+13035550199", "addresses": [{"street": "1 Main St", "city": "Denver", "state": "CO", "zip": "80202"}]}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let connections = f.connections();
    let hcp = connections.get("hcp").unwrap();
    let c = call();
    let first = hcp
        .contacts_search(
            &c,
            &Query {
                limit: Some(2),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.total, Some(3));
    let second = hcp
        .contacts_search(
            &c,
            &Query {
                limit: Some(2),
                cursor: first.next.clone(),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.next, None);
    let cid = &second.items[0];
    assert_eq!(cid.first_name.as_deref(), Some("Cid"));
    assert_eq!(cid.addresses[0].postal_code.as_deref(), Some("80202"));
    let again = hcp
        .contacts_get(&c, cid.id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(again.phone(PhoneKind::Mobile), Some("+13035550199"));
    assert!(matches!(
        hcp.contacts_get(&c, "cus_missing").await,
        Err(RecipeError::NotFound { message }) if message == "customer not found"
    ));
    assert!(hcp.check(&c).await.unwrap().contains("sandbox-company"));
    let mut config = f.config(Some(0));
    config.get_mut("hcp").unwrap().company_id = Some("another-company".into());
    let err = f
        .build(&config)
        .get("hcp")
        .unwrap()
        .check(&c)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RecipeError::Forbidden { message } if message.contains("not the configured another-company")),
        "{err:?}"
    );
    // HCP has no upsert: the capability says so instead of guessing.
    assert!(matches!(
        hcp.contacts_upsert(&c, &Contact::default()).await,
        Err(RecipeError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn vendor_errors_map_to_the_wit_variants() {
    let f = Fixture::new().await;
    let mut config = f.config(Some(0));
    config.get_mut("ghl").unwrap().secret = f.secret_file("wrong", "not-the-right-token");
    let connections = f.build(&config);
    let c = call();
    let err = connections
        .get("ghl")
        .unwrap()
        .contacts_get(&c, "x1")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RecipeError::Unauthorized {
            message: "Invalid JWT".into()
        }
    );
    let connections = f.connections();
    let ghl = connections.get("ghl").unwrap();
    for (status, expected) in [
        (403, "forbidden"),
        (500, "upstream"),
        (503, "upstream"),
        (422, "invalid"),
    ] {
        f.faults("gohighlevel", json!({"fail_next": 10, "status": status}))
            .await;
        let no_retry = f.build(&f.config(Some(0)));
        let err = no_retry
            .get("ghl")
            .unwrap()
            .contacts_get(&c, "x1")
            .await
            .unwrap_err();
        let kind = serde_json::to_value(&err).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(kind, expected, "{status}: {err:?}");
    }
    f.faults("gohighlevel", json!({})).await;
    assert!(matches!(
        ghl.contacts_get(&c, "nope1").await,
        Err(RecipeError::NotFound { .. })
    ));
    f.faults(
        "gohighlevel",
        json!({"fail_next": 1, "status": 429, "retry_after": 7}),
    )
    .await;
    let no_retry = f.build(&f.config(Some(0)));
    assert_eq!(
        no_retry
            .get("ghl")
            .unwrap()
            .contacts_get(&c, "x1")
            .await
            .unwrap_err(),
        RecipeError::RateLimited {
            retry_after_ms: Some(7000)
        }
    );
}

#[tokio::test]
async fn a_429_then_200_succeeds_within_the_deadline() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let ghl = connections.get("ghl").unwrap();
    let c = call();
    f.faults(
        "gohighlevel",
        json!({"fail_next": 2, "status": 429, "retry_after": 1}),
    )
    .await;
    let before = f.sandbox.state.requests("gohighlevel");
    let started = Instant::now();
    let page = ghl.contacts_search(&c, &Query::default()).await.unwrap();
    assert_eq!(page.total, Some(0));
    assert_eq!(
        f.sandbox.state.requests("gohighlevel") - before,
        3,
        "two 429s, then 200"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After was honoured"
    );
    assert!(Instant::now() < c.deadline);
}

#[tokio::test]
async fn a_500_forever_fails_as_upstream_before_the_deadline_after_the_documented_retries() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let ghl = connections.get("ghl").unwrap();
    let c = call();
    f.faults("gohighlevel", json!({"fail_always": true, "status": 500}))
        .await;
    let before = f.sandbox.state.requests("gohighlevel");
    let err = ghl.contacts_get(&c, "abc123").await.unwrap_err();
    assert!(
        matches!(err, RecipeError::Upstream { status: 500, .. }),
        "{err:?}"
    );
    let default_retries = switchboard::vendors::http::RetryPolicy::default().max_retries;
    assert_eq!(
        f.sandbox.state.requests("gohighlevel") - before,
        u64::from(default_retries) + 1
    );
    assert!(Instant::now() < c.deadline);
    // A create is not blindly retried.
    let before = f.sandbox.state.requests("gohighlevel");
    let err = ghl
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Once".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RecipeError::Upstream { .. }));
    assert_eq!(f.sandbox.state.requests("gohighlevel") - before, 1);
}

#[tokio::test]
async fn retries_stop_at_the_run_deadline() {
    let f = Fixture::new().await;
    let connections = f.build(&f.config(Some(50)));
    let ghl = connections.get("ghl").unwrap();
    f.faults("gohighlevel", json!({"fail_always": true, "status": 503}))
        .await;
    let c = Call::until(Instant::now() + Duration::from_millis(1500));
    let err = ghl.contacts_get(&c, "abc123").await.unwrap_err();
    assert!(
        matches!(err, RecipeError::Upstream { status: 503, .. }),
        "{err:?}"
    );
    assert!(Instant::now() <= c.deadline + Duration::from_millis(50));
}

/// A writer that keeps everything tracing prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_reaches_a_log_line_a_report_or_a_response() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let (reports, secrets, check_error) = tracing::subscriber::with_default(subscriber, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let f = Fixture::new().await;
                let mut config = f.config(Some(1));
                // A second GoHighLevel connection whose token the sandbox refuses.
                let mut wrong = config["ghl"].clone();
                wrong.secret = f.secret_file("wrong", "wrong-token-0123456789abcdef");
                config.insert("bad".into(), wrong);
                let connections = f.build(&config);
                let dir = tempfile::tempdir().unwrap();
                let rt = runtime_at(dir.path(), options(), connections);
                let probe = load(&rt, PROBE).await;
                f.faults("gohighlevel", json!({"fail_next": 1, "status": 500})).await;
                let mut reports = Vec::new();
                for op in [
                    json!({"op": "contacts-upsert", "connection": "ghl", "first_name": "Ada", "email": "ada@example.com"}),
                    json!({"op": "http", "connection": "ghl", "path": "/contacts/business/b1"}),
                    json!({"op": "http", "connection": "hcp", "path": "/customers"}),
                    json!({"op": "contacts-get", "connection": "ghl", "id": "missing1"}),
                    json!({"op": "contacts-get", "connection": "hcp", "id": "missing1"}),
                ] {
                    reports.push(rt.run(&probe, &event("probe", op)).await);
                }
                let check_error = connections_check_error(&f.build(&config)).await;
                let mut secrets = f.secrets().to_vec();
                secrets.push("wrong-token-0123456789abcdef".into());
                (reports, secrets, check_error)
            })
    });
    let mut everything = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    everything.push_str(&check_error);
    for r in &reports {
        everything.push_str(&serde_json::to_string(r).unwrap());
    }
    assert!(
        everything.contains("created=true"),
        "the capture holds the runs: {everything}"
    );
    assert!(
        everything.contains("200 {"),
        "raw responses are in the capture"
    );
    assert!(
        everything.contains("Invalid JWT"),
        "the refused check is in the capture"
    );
    for s in &secrets {
        assert!(
            !everything.contains(s.as_str()),
            "secret {s} leaked:\n{everything}"
        );
    }
    assert!(
        reports
            .iter()
            .any(|r| matches!(r.error, Some(RunError::Recipe { .. })))
    );
}

/// The error a check of the misconfigured connection reports.
async fn connections_check_error(connections: &Connections) -> String {
    let err = connections
        .get("bad")
        .unwrap()
        .check(&call())
        .await
        .unwrap_err();
    assert!(matches!(err, RecipeError::Unauthorized { .. }), "{err:?}");
    format!("{err}")
}

#[tokio::test]
async fn homebase360_customers_jobs_and_leads() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let hb = connections.get("hb").unwrap();
    let c = call();
    assert_eq!(hb.check(&c).await.unwrap(), "API authentication successful");
    let mobile = |n: &str| switchboard::model::Phone {
        kind: PhoneKind::Mobile,
        number: n.into(),
    };
    // Validation names the field before anything is sent.
    let err = hb
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Jo".into()),
                phones: vec![mobile("303-555-0100")],
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RecipeError::Invalid { field, .. } if field == "phones[0]"),
        "{err:?}"
    );
    let err = hb
        .contacts_create(
            &c,
            &Contact {
                emails: vec!["x@example.com".into()],
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(&err, RecipeError::Invalid { field, .. } if field == "first_name"));
    assert_eq!(
        f.sandbox.state.requests("homebase360"),
        1,
        "only the ping went out"
    );

    let jo = hb
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Jo".into()),
                last_name: Some("Park".into()),
                phones: vec![mobile("+13035550100")],
                emails: vec!["jo@example.com".into()],
                addresses: vec![switchboard::model::Address {
                    street: Some("1 Main St".into()),
                    city: Some("Denver".into()),
                    state: Some("CO".into()),
                    postal_code: Some("80202".into()),
                    country: None,
                }],
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    let jo_id = jo.id.clone().unwrap();
    assert_eq!(
        jo.addresses[0].street.as_deref(),
        Some("1 Main St, Denver, CO 80202")
    );
    let found = hb
        .contacts_search(
            &c,
            &Query {
                phone: Some("+13035550100".into()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let updated = hb
        .contacts_update(
            &c,
            &jo_id,
            &Contact {
                notes: Some("gate code 1234".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.notes.as_deref(), Some("gate code 1234"));
    assert_eq!(
        hb.contacts_get(&c, &jo_id)
            .await
            .unwrap()
            .first_name
            .as_deref(),
        Some("Jo")
    );

    // Jobs.
    let job = switchboard::model::Job {
        contact_id: Some(jo_id.clone()),
        title: Some("Furnace tune-up".into()),
        start: Some("2030-05-15T14:30:00Z".into()),
        end: Some("2030-05-15T14:00:00Z".into()),
        ..Default::default()
    };
    let err = hb.jobs_create(&c, &job).await.unwrap_err();
    assert_eq!(err, RecipeError::invalid("end", "must be after start"));
    let job = switchboard::model::Job {
        end: Some("2030-05-15T16:30:00Z".into()),
        ..job
    };
    let created = hb.jobs_create(&c, &job).await.unwrap();
    let job_id = created.id.clone().unwrap();
    assert_eq!(created.title.as_deref(), Some("Furnace tune-up"));
    let listed = hb
        .jobs_list(
            &c,
            &Query {
                starts_after: Some("2030-05-15T00:00:00Z".into()),
                starts_before: Some("2030-05-15T23:59:59Z".into()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let moved = hb
        .jobs_update(
            &c,
            &job_id,
            &switchboard::model::Job {
                start: Some("2030-05-15T15:00:00Z".into()),
                end: Some("2030-05-15T17:00:00Z".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.start.as_deref(), Some("2030-05-15T15:00:00Z"));
    assert_eq!(
        hb.jobs_get(&c, &job_id).await.unwrap().id,
        Some(job_id.clone())
    );
    let orphan = switchboard::model::Job {
        contact_id: Some("noSuchCustomer".into()),
        end: Some("2030-05-15T16:30:00Z".into()),
        ..job
    };
    assert!(matches!(
        hb.jobs_create(&c, &orphan).await,
        Err(RecipeError::NotFound { .. })
    ));

    // Leads: the three lookup scenarios.
    let lead = |contact: Option<Contact>, id: Option<String>| switchboard::model::Lead {
        contact_id: id,
        contact,
        source: Some("Online".into()),
        notes: Some("wants a quote".into()),
        ..Default::default()
    };
    let (by_id, _) = hb
        .leads_create(&c, &lead(None, Some(jo_id.clone())))
        .await
        .unwrap();
    assert_eq!(by_id.contact_id.as_deref(), Some(jo_id.as_str()));
    let same_mobile = Contact {
        first_name: Some("Joanna".into()),
        phones: vec![mobile("+13035550100")],
        ..Contact::default()
    };
    let (merged, _) = hb
        .leads_create(&c, &lead(Some(same_mobile), None))
        .await
        .unwrap();
    assert_eq!(
        merged.contact_id.as_deref(),
        Some(jo_id.as_str()),
        "matched by phone.mobile"
    );
    assert_eq!(merged.raw.as_ref().unwrap()["customerAction"], "merged");
    let no_mobile = Contact {
        first_name: Some("Jo".into()),
        emails: vec!["jo@example.com".into()],
        ..Contact::default()
    };
    let (fresh, _) = hb
        .leads_create(&c, &lead(Some(no_mobile), None))
        .await
        .unwrap();
    assert_ne!(
        fresh.contact_id.as_deref(),
        Some(jo_id.as_str()),
        "no mobile: a new customer"
    );
    let missing = hb
        .leads_create(&c, &lead(None, Some("noSuchCustomer".into())))
        .await;
    assert!(matches!(missing, Err(RecipeError::NotFound { .. })));
    let bad = switchboard::model::Lead {
        status: Some("hot".into()),
        ..lead(None, Some(jo_id.clone()))
    };
    assert!(
        matches!(hb.leads_create(&c, &bad).await, Err(RecipeError::Invalid { field, .. }) if field == "status")
    );
    let lead_id = by_id.id.clone().unwrap();
    let moved = hb
        .leads_update(
            &c,
            &lead_id,
            &switchboard::model::Lead {
                status: Some("first_contact".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.status.as_deref(), Some("first_contact"));
    let new_ones = hb
        .leads_list(
            &c,
            &Query {
                status: Some("new".into()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(new_ones.items.len(), 2);
    assert_eq!(
        hb.leads_get(&c, &lead_id).await.unwrap().status.as_deref(),
        Some("first_contact")
    );
}

#[tokio::test]
async fn homebase360_texts_are_checked_and_capped_at_500_a_day_across_restarts() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let hb = connections.get("hb").unwrap();
    let c = call();
    let customer = hb
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Sam".into()),
                phones: vec![switchboard::model::Phone {
                    kind: PhoneKind::Mobile,
                    number: "+13035550111".into(),
                }],
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    let sms = |body: &str| switchboard::model::Message {
        id: None,
        channel: switchboard::model::Channel::Sms,
        to: "+13035550111".into(),
        body: Some(body.into()),
        media_url: None,
        status: None,
        sent_at: None,
        raw: None,
    };
    let long = "x".repeat(201);
    assert!(
        matches!(hb.messages_send(&c, &sms(&long)).await, Err(RecipeError::Invalid { field, .. }) if field == "body")
    );
    let mms = switchboard::model::Message {
        body: None,
        media_url: Some("http://example.com/a.png".into()),
        ..sms("")
    };
    assert!(
        matches!(hb.messages_send(&c, &mms).await, Err(RecipeError::Invalid { field, .. }) if field == "media_url")
    );
    let photo = switchboard::model::Message {
        channel: switchboard::model::Channel::Mms,
        media_url: Some("https://example.com/estimate.png".into()),
        ..mms.clone()
    };
    assert_eq!(
        hb.messages_send(&c, &photo).await.unwrap().raw.unwrap()["type"],
        "mms"
    );
    let to_id = switchboard::model::Message {
        to: customer.id.clone().unwrap(),
        ..sms("by customer id")
    };
    let sent = hb.messages_send(&c, &to_id).await.unwrap();
    assert_eq!(sent.status.as_deref(), Some("sent"));
    // A text the vendor refuses does not count.
    let stranger = switchboard::model::Message {
        to: "+13035550999".into(),
        ..sms("who?")
    };
    assert!(matches!(
        hb.messages_send(&c, &stranger).await,
        Err(RecipeError::NotFound { .. })
    ));
    for i in 2..500 {
        hb.messages_send(&c, &sms(&format!("#{i}"))).await.unwrap();
    }
    let stats = hb.messages_stats(&c).await.unwrap();
    assert_eq!(stats["sentToday"], 500);
    let before = f.sandbox.state.requests("homebase360");
    let err = hb
        .messages_send(&c, &sms("one too many"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, RecipeError::RateLimited { retry_after_ms: Some(ms) } if ms <= 86_400_000),
        "{err:?}"
    );
    assert_eq!(
        f.sandbox.state.requests("homebase360"),
        before,
        "refused in the host"
    );
    // A new connection on the same store (a restart) still knows today's count.
    let restarted = f.connections();
    let err = restarted
        .get("hb")
        .unwrap()
        .messages_send(&c, &sms("after restart"))
        .await
        .unwrap_err();
    assert!(matches!(err, RecipeError::RateLimited { .. }));
}

#[tokio::test]
async fn pocketboss_merges_leads_by_email_then_phone_and_books_appointments() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let pb = connections.get("pb").unwrap();
    let c = call();
    assert!(pb.check(&c).await.is_ok());
    let person = |email: Option<&str>, phone: Option<&str>| Contact {
        first_name: Some("John".into()),
        last_name: Some("Smith".into()),
        emails: email.map(String::from).into_iter().collect(),
        phones: phone
            .map(|p| switchboard::model::Phone {
                kind: PhoneKind::Mobile,
                number: p.into(),
            })
            .into_iter()
            .collect(),
        ..Contact::default()
    };
    let lead = |contact: Contact, raw: serde_json::Value| switchboard::model::Lead {
        contact: Some(contact),
        source: Some("HomeAdvisor".into()),
        external_id: Some("LEAD-12345".into()),
        raw: Some(raw),
        ..Default::default()
    };
    let (first, created) = pb
        .leads_create(
            &c,
            &lead(
                person(Some("john@example.com"), Some("5551234567")),
                json!({"urgency": "high", "serviceRequested": "Kitchen Remodel"}),
            ),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(first.external_id.as_deref(), Some("LEAD-12345"));
    assert_eq!(
        first.raw.as_ref().unwrap()["serviceRequested"],
        "Kitchen Remodel"
    );
    let (by_email, created) = pb
        .leads_create(&c, &lead(person(Some("JOHN@example.com"), None), json!({})))
        .await
        .unwrap();
    assert!(!created, "merged by email");
    assert_eq!(by_email.id, first.id);
    let (by_phone, created) = pb
        .leads_create(&c, &lead(person(None, Some("(555) 123-4567")), json!({})))
        .await
        .unwrap();
    assert!(!created, "merged by phone");
    assert_eq!(by_phone.id, first.id);
    let err = pb
        .leads_create(
            &c,
            &lead(
                person(Some("a@example.com"), None),
                json!({"urgency": "asap"}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RecipeError::Invalid { field, .. } if field == "raw.urgency"),
        "{err:?}"
    );
    let err = pb
        .leads_create(&c, &lead(person(None, None), json!({})))
        .await
        .unwrap_err();
    assert!(matches!(&err, RecipeError::Invalid { field, .. } if field == "contact.emails"));

    let visit = switchboard::model::Job {
        title: Some("HVAC quarterly maintenance".into()),
        start: Some("2030-05-15T14:00:00Z".into()),
        duration_minutes: Some(90),
        category: Some("Maintenance".into()),
        contact: Some(person(Some("sarah@example.com"), None)),
        raw: Some(json!({"externalId": "calendar-event-99887"})),
        ..Default::default()
    };
    let booked = pb.jobs_create(&c, &visit).await.unwrap();
    assert_eq!(booked.end.as_deref(), Some("2030-05-15T15:30:00Z"));
    assert_eq!(booked.status.as_deref(), Some("Scheduled"));
    assert_eq!(booked.raw.as_ref().unwrap()["clientName"], "John Smith");
    let bad = switchboard::model::Job {
        category: Some("Plumbing".into()),
        ..visit.clone()
    };
    assert!(
        matches!(pb.jobs_create(&c, &bad).await, Err(RecipeError::Invalid { field, .. }) if field == "category")
    );
    let nameless = switchboard::model::Job {
        contact: None,
        ..visit
    };
    assert!(matches!(
        pb.jobs_create(&c, &nameless).await,
        Err(RecipeError::Invalid { .. })
    ));

    let mut config = f.config(Some(0));
    config.get_mut("pb").unwrap().secret = f.secret_file("pb-wrong", "definitely-wrong-key");
    let wrong = f.build(&config);
    assert_eq!(
        wrong.get("pb").unwrap().check(&c).await.unwrap_err(),
        RecipeError::Unauthorized {
            message: "Missing or invalid API key.".into()
        }
    );
}

/// The WelcomeHome client behind the `wh` connection.
fn welcomehome(f: &Fixture) -> switchboard::vendors::welcomehome::WelcomeHome {
    switchboard::vendors::welcomehome::WelcomeHome::new(
        Some(&f.sandbox.base_url("welcomehome")),
        &switchboard::secrets::Secret::new(f.sandbox.state.keys.welcomehome.clone()),
        None,
        Default::default(),
    )
    .unwrap()
}

fn prospect(first: &str) -> switchboard::model::Lead {
    switchboard::model::Lead {
        contact: Some(Contact {
            first_name: Some(first.into()),
            last_name: Some("Rivera".into()),
            emails: vec![format!("{}@example.com", first.to_lowercase())],
            ..Contact::default()
        }),
        notes: Some("Tour requested".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn welcomehome_prospects_activities_events_and_lookups() {
    use switchboard::vendors::Connector;
    use switchboard::vendors::welcomehome::Lookup;
    let f = Fixture::new().await;
    let wh = welcomehome(&f);
    let c = call();
    assert_eq!(wh.check(&c).await.unwrap(), "account 2");
    let (p, created) = wh.leads_create(&c, &prospect("Maria")).await.unwrap();
    assert!(created);
    let pid = p.id.clone().unwrap();
    assert_eq!(
        p.contact.as_ref().unwrap().first_name.as_deref(),
        Some("Maria")
    );
    let nameless = switchboard::model::Lead::default();
    assert!(
        matches!(wh.leads_create(&c, &nameless).await, Err(RecipeError::Invalid { field, .. }) if field == "contact")
    );

    let tour = switchboard::model::Job {
        contact_id: Some(pid.clone()),
        description: Some("Community tour".into()),
        category: Some("2".into()),
        start: Some("2030-05-15T14:00:00Z".into()),
        end: Some("2030-05-15T15:00:00Z".into()),
        raw: Some(json!({"time_zone": "Mountain Time (US & Canada)"})),
        ..Default::default()
    };
    let no_zone = switchboard::model::Job {
        raw: None,
        ..tour.clone()
    };
    assert!(
        matches!(wh.jobs_create(&c, &no_zone).await, Err(RecipeError::Invalid { field, .. }) if field == "raw.time_zone")
    );
    let bad_zone = switchboard::model::Job {
        raw: Some(json!({"time_zone": "Mars"})),
        ..tour.clone()
    };
    assert!(matches!(
        wh.jobs_create(&c, &bad_zone).await,
        Err(RecipeError::Invalid { .. })
    ));
    let activity = wh.jobs_create(&c, &tour).await.unwrap();
    assert_eq!(activity.raw.as_ref().unwrap()["add_to_calendar"], true);
    let moved = wh
        .jobs_update(
            &c,
            activity.id.as_deref().unwrap(),
            &switchboard::model::Job {
                start: Some("2030-05-16T14:00:00Z".into()),
                end: Some("2030-05-16T15:00:00Z".into()),
                ..tour.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.start.as_deref(), Some("2030-05-16T14:00:00Z"));
    let of_prospect = wh
        .jobs_list(
            &c,
            &Query {
                text: Some(pid.clone()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(of_prospect.items.len(), 1);

    for what in [
        Lookup::ActivityTypes,
        Lookup::CareTypes,
        Lookup::Communities,
        Lookup::FloorPlans,
        Lookup::LeadSources,
        Lookup::PrivacyLevels,
        Lookup::ProspectFields,
    ] {
        let list = wh.lookup(&c, what).await.unwrap();
        assert!(!list.as_array().unwrap().is_empty(), "{what:?}");
    }

    let event = wh
        .create_event(&c, &json!({"name": "Spring open house", "community_id": 1}))
        .await
        .unwrap();
    let event_id = event["id"].to_string();
    assert_eq!(
        wh.events(&c, &Query::default())
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let answered = wh
        .rsvp(&c, &event_id, None, Some("maria@example.com"), "accepted")
        .await
        .unwrap();
    assert_eq!(answered["updated"], 1);
    assert!(matches!(
        wh.rsvp(&c, &event_id, None, Some("nobody@example.com"), "accepted")
            .await,
        Err(RecipeError::NotFound { .. })
    ));
    assert!(matches!(
        wh.rsvp(&c, &event_id, None, Some("maria@example.com"), "maybe").await,
        Err(RecipeError::Invalid { field, .. }) if field == "status"
    ));
    let contracts = wh
        .housing_contracts(&c, &[("community_id", "2")], Some(10))
        .await
        .unwrap();
    assert_eq!(contracts.as_array().unwrap().len(), 1);

    let influencer_id = p.raw.as_ref().unwrap()["influencers"][0]["id"].to_string();
    let updated = wh
        .update_influencer(&c, &influencer_id, &json!({"birthdate": "1950-02-01"}))
        .await
        .unwrap();
    assert_eq!(updated["birthdate"], "1950-02-01");
    assert_eq!(
        wh.influencer(&c, &influencer_id).await.unwrap()["first_name"],
        "Maria"
    );
    assert!(matches!(
        wh.update_influencer(&c, &influencer_id, &json!({"first_name": "X"}))
            .await,
        Err(RecipeError::Invalid { .. })
    ));
}

#[tokio::test]
async fn welcomehome_exports_page_through_link_headers_within_the_cursor_limit() {
    use switchboard::model::ExportRequest;
    use switchboard::vendors::Connector;
    let f = Fixture::new().await;
    let wh = welcomehome(&f);
    let c = call();
    for i in 0..25 {
        wh.leads_create(&c, &prospect(&format!("P{i:02}")))
            .await
            .unwrap();
    }
    let request = ExportRequest {
        table: "Prospects".into(),
        page_size: Some(10),
        ..ExportRequest::default()
    };
    let first = wh.export_open(&c, &request).await.unwrap();
    assert_eq!(first.columns[..3], ["id", "first_name", "last_name"]);
    assert_eq!(first.rows.len(), 10);
    let cursor = first.next.clone().expect("a next page");
    assert!(cursor.starts_with("/exports/"), "{cursor}");
    let second = wh.export_next(&c, &cursor).await.unwrap();
    let third = wh
        .export_next(&c, second.next.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (second.rows.len(), third.rows.len(), third.next.clone()),
        (10, 5, None)
    );
    let mut names: Vec<&str> = [&first, &second, &third]
        .iter()
        .flat_map(|p| p.rows.iter().map(|r| r[1].as_str()))
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 25, "every prospect exactly once");

    // Incremental: only rows updated after the first page's last row.
    let since = first.rows[9][6].clone();
    let newer = wh
        .export_open(
            &c,
            &ExportRequest {
                updated_after: Some(since),
                ..request.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(newer.rows.len(), 10);
    assert!(newer.next.is_some());

    // A cursor may be used 3 times a minute: the fourth use waits, or past the deadline
    // is refused in the host without a request.
    wh.export_next(&c, &cursor).await.unwrap();
    wh.export_next(&c, &cursor).await.unwrap();
    let before = f.sandbox.state.requests("welcomehome");
    let soon = Call::until(Instant::now() + Duration::from_secs(2));
    assert!(matches!(
        wh.export_next(&soon, &cursor).await,
        Err(RecipeError::RateLimited { retry_after_ms: Some(ms) }) if ms > 2000
    ));
    assert_eq!(f.sandbox.state.requests("welcomehome"), before);
    // The sandbox enforces the same limit on clients that do not count.
    let raw = reqwest::Client::new()
        .get(format!("{}{cursor}", f.sandbox.base_url("welcomehome")))
        .header(
            "Authorization",
            format!("Token token={}", f.sandbox.state.keys.welcomehome),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);

    let snapshot = wh
        .export_open(
            &c,
            &ExportRequest {
                snapshot: true,
                ..request.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!((snapshot.rows.len(), snapshot.next), (25, None));
    let bad = ExportRequest {
        table: "Passwords".into(),
        ..request
    };
    assert!(
        matches!(wh.export_open(&c, &bad).await, Err(RecipeError::Invalid { field, .. }) if field == "table")
    );
    assert!(matches!(
        wh.export_next(&c, "https://evil.example/exports/x").await,
        Err(RecipeError::Invalid { field, .. }) if field == "cursor"
    ));
}

#[tokio::test]
async fn a_recipe_streams_an_export_page_by_page() {
    use switchboard::vendors::Connector;
    let f = Fixture::new().await;
    let wh = welcomehome(&f);
    let c = call();
    for i in 0..7 {
        wh.leads_create(&c, &prospect(&format!("R{i}")))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_at(dir.path(), options(), f.connections());
    let probe = load(&rt, PROBE).await;
    let r = rt
        .run(
            &probe,
            &event(
                "probe",
                json!({"op": "export", "connection": "wh", "table": "Prospects", "page_size": 3}),
            ),
        )
        .await;
    assert_eq!(
        done(&r),
        "7 rows in 3 pages, columns id|first_name|last_name|email|community_id|created_at|updated_at|phone"
    );
}

#[tokio::test]
async fn housecallpro_jobs_and_leads() {
    let f = Fixture::new().await;
    let http = reqwest::Client::new();
    let hcp_post = |path: &str, body: serde_json::Value| {
        http.post(format!("{}{path}", f.sandbox.base_url("housecallpro")))
            .header(
                "Authorization",
                format!("Token {}", f.sandbox.state.keys.housecallpro),
            )
            .json(&body)
            .send()
    };
    let customer: serde_json::Value = hcp_post(
        "/customers",
        json!({"first_name": "Ann", "email": "ann@example.com", "addresses": [{"street": "1 Main St", "city": "Denver", "state": "CO", "zip": "80202", "country": "US"}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let cid = customer["id"].as_str().unwrap();
    let address = customer["addresses"][0]["id"].as_str().unwrap();
    for (day, what) in [("10", "Drain cleaning"), ("20", "Water heater")] {
        let r = hcp_post(
            "/jobs",
            json!({"customer_id": cid, "description": what, "schedule": {"scheduled_start": format!("2030-01-{day}T15:00:00Z"), "scheduled_end": format!("2030-01-{day}T17:00:00Z")}, "address_id": address}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = hcp_post(
        "/leads",
        json!({"customer_id": cid, "lead_source": "Google"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let missing = hcp_post("/jobs", json!({"description": "no customer"}))
        .await
        .unwrap();
    assert_eq!(missing.status(), 422);

    let connections = f.connections();
    let hcp = connections.get("hcp").unwrap();
    let c = call();
    let jobs = hcp
        .jobs_list(
            &c,
            &Query {
                starts_after: Some("2030-01-15T00:00:00Z".into()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
    let job = &jobs.items[0];
    assert_eq!(job.title.as_deref(), Some("Water heater"));
    assert_eq!(job.contact_id.as_deref(), Some(cid));
    assert_eq!(job.start.as_deref(), Some("2030-01-20T15:00:00Z"));
    assert_eq!(
        job.address.as_ref().unwrap().postal_code.as_deref(),
        Some("80202")
    );
    let again = hcp.jobs_get(&c, job.id.as_deref().unwrap()).await.unwrap();
    assert_eq!(again.id, job.id);
    let all = hcp
        .jobs_list(
            &c,
            &Query {
                limit: Some(1),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (all.items.len(), all.total, all.next.as_deref()),
        (1, Some(2), Some("2"))
    );
    let leads = hcp.leads_list(&c, &Query::default()).await.unwrap();
    assert_eq!(leads.items.len(), 1);
    let lead = hcp
        .leads_get(&c, leads.items[0].id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(lead.source.as_deref(), Some("Google"));
    assert_eq!(
        lead.contact.unwrap().emails,
        vec!["ann@example.com".to_string()]
    );
    assert!(matches!(
        hcp.jobs_get(&c, "job_missing").await,
        Err(RecipeError::NotFound { .. })
    ));
}

#[tokio::test]
async fn gohighlevel_tasks_notes_appointments_and_business_contacts() {
    let f = Fixture::new().await;
    let ghl = ghl_client(&f.sandbox, &f.sandbox.state.keys.gohighlevel);
    use switchboard::vendors::Connector;
    let c = call();
    let contact = ghl
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Lin".into()),
                emails: vec!["lin@example.com".into()],
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    let id = contact.id.unwrap();

    let err = ghl
        .create_task(&c, &id, &json!({"title": "Call back"}))
        .await
        .unwrap_err();
    assert_eq!(err, RecipeError::invalid("task.dueDate", "is required"));
    let task = ghl
        .create_task(
            &c,
            &id,
            &json!({"title": "Call back", "dueDate": "2030-01-01T10:00:00Z"}),
        )
        .await
        .unwrap();
    let tid = task["id"].as_str().unwrap();
    assert_eq!(task["completed"], false);
    let renamed = ghl
        .update_task(&c, &id, tid, &json!({"title": "Call back today"}))
        .await
        .unwrap();
    assert_eq!(renamed["title"], "Call back today");
    assert_eq!(
        ghl.complete_task(&c, &id, tid, true).await.unwrap()["completed"],
        true
    );
    assert_eq!(ghl.task(&c, &id, tid).await.unwrap()["completed"], true);
    assert_eq!(
        ghl.tasks(&c, &id).await.unwrap().as_array().unwrap().len(),
        1
    );
    ghl.delete_task(&c, &id, tid).await.unwrap();
    assert!(matches!(
        ghl.task(&c, &id, tid).await,
        Err(RecipeError::NotFound { .. })
    ));
    assert!(
        matches!(
            ghl.delete_task(&c, &id, tid).await,
            Err(RecipeError::NotFound { .. })
        ),
        "a second delete is not-found, like every other missing record"
    );

    let note = ghl.contacts_add_note(&c, &id, "first").await.unwrap();
    assert_eq!(
        ghl.update_note(&c, &id, &note, "edited").await.unwrap()["body"],
        "edited"
    );
    assert_eq!(ghl.note(&c, &id, &note).await.unwrap()["body"], "edited");
    assert_eq!(
        ghl.notes(&c, &id).await.unwrap().as_array().unwrap().len(),
        1
    );
    ghl.delete_note(&c, &id, &note).await.unwrap();
    assert!(
        ghl.notes(&c, &id)
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .is_empty()
    );

    f.sandbox.state.add_ghl_appointment(
        &id,
        json!({"id": "apt1", "title": "Estimate", "startTime": "2030-01-02T15:00:00Z"}),
    );
    assert_eq!(ghl.appointments(&c, &id).await.unwrap()[0]["id"], "apt1");

    f.sandbox.state.set_ghl_business(&id, "biz9");
    let page = ghl.business_contacts(&c, "biz9", 10, 0).await.unwrap();
    assert_eq!((page.items.len(), page.total), (1, Some(1)));
    assert_eq!(page.items[0].first_name.as_deref(), Some("Lin"));
    assert!(matches!(
        ghl.business_contacts(&c, "biz9", 101, 0).await,
        Err(RecipeError::Invalid { .. })
    ));
}

#[tokio::test]
async fn a_dropped_connection_is_retried_for_reads_but_not_for_creates() {
    let f = Fixture::new().await;
    let connections = f.connections();
    let ghl = connections.get("ghl").unwrap();
    let c = call();
    f.faults("gohighlevel", json!({"drop_next": 1})).await;
    let page = ghl.contacts_search(&c, &Query::default()).await.unwrap();
    assert_eq!(page.total, Some(0), "the search was resent after the drop");
    f.faults("gohighlevel", json!({"drop_next": 1})).await;
    let err = ghl
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Once".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    // Not resent, and not called a failure: the request may have reached GoHighLevel.
    assert!(
        matches!(&err, RecipeError::UnknownOutcome { message } if message.contains("may have taken effect")),
        "{err:?}"
    );
    // The same when GoHighLevel did create the contact and only its answer was lost: one
    // contact, one request, and the client says it cannot know.
    f.faults("gohighlevel", json!({"drop_after_next": 1})).await;
    let err = ghl
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Twice".into()),
                emails: vec!["twice@example.com".into()],
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RecipeError::UnknownOutcome { .. }), "{err:?}");
    let found = ghl
        .contacts_search(
            &c,
            &Query {
                email: Some("twice@example.com".into()),
                ..Query::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1, "created once, and not resent");
}

#[tokio::test]
async fn the_sandbox_delivers_signed_webhooks_when_its_data_changes() {
    use axum::extract::State;
    use base64::Engine;
    use ed25519_dalek::Verifier;
    type Received = Arc<Mutex<Vec<(String, axum::http::HeaderMap, String)>>>;
    let received: Received = Arc::default();
    async fn hook(
        State(received): State<Received>,
        axum::extract::Path(vendor): axum::extract::Path<String>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> &'static str {
        received.lock().unwrap().push((vendor, headers, body));
        "ok"
    }
    let app = axum::Router::new()
        .route("/hooks/{vendor}", axum::routing::post(hook))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let f = Fixture::new().await;
    let http = reqwest::Client::new();
    let admin = |vendor: &str, body: serde_json::Value| {
        http.put(format!(
            "http://{}/_sandbox/webhooks/{vendor}",
            f.sandbox.addr
        ))
        .json(&body)
        .send()
    };
    let hcp_secret = "hcp-signing-secret";
    assert_eq!(
        admin(
            "housecallpro",
            json!({"url": format!("http://{receiver}/hooks/housecallpro"), "secret": hcp_secret})
        )
        .await
        .unwrap()
        .status(),
        204
    );
    assert_eq!(
        admin(
            "gohighlevel",
            json!({"url": format!("http://{receiver}/hooks/gohighlevel")})
        )
        .await
        .unwrap()
        .status(),
        204
    );
    let public_key = http
        .get(format!(
            "http://{}/_sandbox/webhooks/gohighlevel/public-key",
            f.sandbox.addr
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let created = http
        .post(format!("{}/customers", f.sandbox.base_url("housecallpro")))
        .header(
            "Authorization",
            format!("Token {}", f.sandbox.state.keys.housecallpro),
        )
        .json(&json!({"first_name": "Hook", "email": "hook@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let connections = f.connections();
    connections
        .get("ghl")
        .unwrap()
        .contacts_upsert(
            &call(),
            &Contact {
                first_name: Some("Hook".into()),
                emails: vec!["hook@example.com".into()],
                ..Contact::default()
            },
        )
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while received.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "both deliveries arrived");
    for (vendor, headers, body) in got {
        let payload: serde_json::Value = serde_json::from_str(&body).unwrap();
        match vendor.as_str() {
            "housecallpro" => {
                assert_eq!(payload["event"], "customer.created");
                assert_eq!(payload["customer"]["first_name"], "Hook");
                let ts = headers["api-timestamp"].to_str().unwrap();
                let expected =
                    switchboard::sandbox::webhooks::hcp_signature(hcp_secret, ts, body.as_bytes());
                assert_eq!(headers["api-signature"].to_str().unwrap(), expected);
                assert_ne!(
                    switchboard::sandbox::webhooks::hcp_signature(
                        "another-secret",
                        ts,
                        body.as_bytes()
                    ),
                    expected
                );
            }
            "gohighlevel" => {
                assert_eq!(payload["type"], "ContactCreate");
                assert_eq!(payload["locationId"], GHL_LOCATION);
                assert!(payload["webhookId"].is_string() && payload["timestamp"].is_string());
                let b64 = base64::engine::general_purpose::STANDARD;
                let key: [u8; 32] = b64.decode(&public_key).unwrap().try_into().unwrap();
                let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
                let sig = b64
                    .decode(headers["x-ghl-signature"].to_str().unwrap())
                    .unwrap();
                let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
                key.verify(body.as_bytes(), &sig)
                    .expect("a valid Ed25519 signature");
                assert!(key.verify(b"tampered", &sig).is_err());
            }
            other => panic!("unexpected vendor {other}"),
        }
    }
    assert!(
        f.sandbox
            .state
            .deliveries()
            .iter()
            .all(|d| d.status == Some(200))
    );
    server.abort();
}

#[tokio::test]
async fn gohighlevel_lists_contacts_with_start_after_paging() {
    let f = Fixture::new().await;
    let ghl = ghl_client(&f.sandbox, &f.sandbox.state.keys.gohighlevel);
    use switchboard::vendors::Connector;
    let c = call();
    for i in 0..5 {
        ghl.contacts_create(
            &c,
            &Contact {
                first_name: Some(format!("N{i}")),
                emails: vec![format!("n{i}@example.com")],
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = ghl.list_contacts(&c, 2, cursor.as_deref()).await.unwrap();
        assert_eq!(page.total, Some(5));
        seen.extend(page.items.into_iter().map(|c| c.first_name.unwrap()));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["N0", "N1", "N2", "N3", "N4"]);
    assert!(matches!(
        ghl.list_contacts(&c, 2, Some("garbage")).await,
        Err(RecipeError::Invalid { field, .. }) if field == "cursor"
    ));
}

#[tokio::test]
async fn injected_latency_past_the_deadline_is_a_timeout() {
    let f = Fixture::new().await;
    let connections = f.build(&f.config(Some(0)));
    let hcp = connections.get("hcp").unwrap();
    f.faults("housecallpro", json!({"latency_ms": 2000})).await;
    let c = Call::until(Instant::now() + Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(
        hcp.contacts_search(&c, &Query::default())
            .await
            .unwrap_err(),
        RecipeError::Timeout
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    f.faults("housecallpro", json!({"error_rate": 1.0, "status": 503}))
        .await;
    assert!(matches!(
        hcp.contacts_search(&call(), &Query::default()).await,
        Err(RecipeError::Upstream { status: 503, .. })
    ));
}

#[tokio::test]
async fn each_request_a_call_sends_is_logged_with_its_status_retry_and_time_and_bounded() {
    use switchboard::vendors::{CallLog, Connector, VendorCalls};
    let keys = SandboxKeys::default();
    let sb = sandbox::start("127.0.0.1:0".parse().unwrap(), keys.clone())
        .await
        .unwrap();
    let ghl = ghl_client(&sb, &keys.gohighlevel);
    let created = ghl
        .contacts_create(
            &call(),
            &Contact {
                first_name: Some("Ada".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    let id = created.id.unwrap();
    let logged = |calls: &Arc<Mutex<VendorCalls>>| {
        let mut c = call();
        c.log = Some(CallLog {
            operation: "contacts.get".into(),
            connection: "ghl".into(),
            calls: calls.clone(),
        });
        c
    };
    // A 503, retried: two requests, each with its status and retry number.
    sb.state.set_faults(
        "gohighlevel",
        sandbox::Faults {
            fail_next: 1,
            status: Some(503),
            ..sandbox::Faults::default()
        },
    );
    let calls = Arc::new(Mutex::new(VendorCalls::default()));
    ghl.contacts_get(&logged(&calls), &id).await.unwrap();
    // A connection broken mid-answer: no status, and why none in words of our own.
    sb.state.set_faults(
        "gohighlevel",
        sandbox::Faults {
            drop_next: 1,
            ..sandbox::Faults::default()
        },
    );
    ghl.contacts_get(&logged(&calls), &id).await.unwrap();
    {
        let seen = calls.lock().unwrap();
        let summary: Vec<_> = seen
            .calls
            .iter()
            .map(|c| (c.status, c.retry, c.error.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (Some(503), 0, None),
                (Some(200), 1, None),
                (None, 0, Some("no answer (connection failed or broke)")),
                (Some(200), 1, None),
            ],
            "{seen:#?}"
        );
        for c in &seen.calls {
            assert_eq!(
                (
                    c.operation.as_str(),
                    c.connection.as_str(),
                    c.vendor.as_str(),
                    c.method.as_str()
                ),
                ("contacts.get", "ghl", "gohighlevel", "GET")
            );
        }
    }
    // Bounded: the first 50 of a run are kept, the rest counted.
    let calls = Arc::new(Mutex::new(VendorCalls::default()));
    for _ in 0..53 {
        ghl.contacts_get(&logged(&calls), &id).await.unwrap();
    }
    let seen = calls.lock().unwrap();
    assert_eq!((seen.calls.len(), seen.dropped), (50, 3));
}
