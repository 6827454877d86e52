//! Contract tests: what our clients send and what the vendor sandbox answers, checked
//! against the vendors' own API descriptions in `../shared/specs/` (the official
//! GoHighLevel OpenAPI and the Housecall Pro spec), so neither can drift from the real API.
//!
//! Every exchange the sandbox records during a flow is matched to its operation; its
//! status must be one the spec documents, and its JSON bodies must validate against the
//! documented request and response schemas.

use crate::support::*;
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use switchboard::model::{Contact, Query};
use switchboard::sandbox::{self, Exchange, GHL_LOCATION, SandboxKeys};
use switchboard::secrets::Secret;
use switchboard::vendors::Connector;

/// The vendor specs: `SWITCHBOARD_SPECS`, else `shared/specs` beside this repository (where
/// CI checks it out). Without them a contract test is skipped with a line saying so, except
/// under `CI=true` (and when `SWITCHBOARD_SPECS` names a folder without them), where that
/// is a failure.
fn specs_dir(test: &str) -> Option<PathBuf> {
    let (dir, explicit) = match std::env::var_os("SWITCHBOARD_SPECS") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/specs"),
            false,
        ),
    };
    if dir.join("VENDORS.md").is_file() {
        return Some(dir);
    }
    let missing = format!("the vendor specs are not at {}", dir.display());
    assert!(!explicit, "{missing} (SWITCHBOARD_SPECS names it)");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{missing}, and CI=true requires them: set SWITCHBOARD_SPECS to the shared/specs folder"
    );
    skipped(
        test,
        &format!("{missing}; set SWITCHBOARD_SPECS to the shared/specs folder to run it"),
    );
    None
}

/// YAML to JSON, with map keys (e.g. status codes) as strings.
fn yaml_to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(s) => Value::Array(s.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_norway::to_string(&other).unwrap().trim().to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// An OpenAPI document's operations and its schemas as JSON Schema `$defs`.
struct Spec {
    paths: Map<String, Value>,
    defs: Map<String, Value>,
}

/// Rewrite OpenAPI 3.0 into JSON Schema: `$ref`s into `$defs`, `nullable` into a type union.
fn to_json_schema(v: &mut Value, local_prefix: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                let name = r.rsplit('/').next().unwrap_or_default().to_string();
                *r = if r.starts_with("#/") {
                    format!("#/$defs/{local_prefix}{name}")
                } else {
                    format!("#/$defs/common_{name}")
                };
            }
            if m.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(t)) = m.get("type").cloned()
            {
                m.insert("type".into(), json!([t, "null"]));
            }
            for child in m.values_mut() {
                to_json_schema(child, local_prefix);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| to_json_schema(c, local_prefix)),
        _ => {}
    }
}

impl Spec {
    fn new(doc: Value, common: Option<Value>) -> Self {
        let mut defs = Map::new();
        for (prefix, d) in [("", Some(&doc)), ("common_", common.as_ref())] {
            let Some(d) = d else { continue };
            for (name, schema) in d["components"]["schemas"].as_object().unwrap() {
                let mut schema = schema.clone();
                to_json_schema(&mut schema, prefix);
                defs.insert(format!("{prefix}{name}"), schema);
            }
        }
        Spec {
            paths: doc["paths"].as_object().unwrap().clone(),
            defs,
        }
    }

    fn gohighlevel(specs: &std::path::Path) -> Self {
        let dir = specs.join("gohighlevel");
        let read =
            |p: &str| serde_json::from_str(&std::fs::read_to_string(dir.join(p)).unwrap()).unwrap();
        Spec::new(
            read("apps/contacts.json"),
            Some(read("common/common-schemas.json")),
        )
    }

    fn housecallpro(specs: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(specs.join("housecallpro/housecall_v1.yaml")).unwrap();
        Spec::new(yaml_to_json(serde_norway::from_str(&text).unwrap()), None)
    }

    /// The operation for a method and concrete path: the matching template with the most
    /// literal segments.
    fn operation(&self, method: &str, path: &str) -> Option<(&str, &Value)> {
        let segments: Vec<&str> = path.split('/').collect();
        self.paths
            .iter()
            .filter_map(|(template, ops)| {
                let t: Vec<&str> = template.split('/').collect();
                if t.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (a, b) in t.iter().zip(&segments) {
                    if a.starts_with('{') && a.ends_with('}') {
                        if b.is_empty() {
                            return None;
                        }
                    } else if a == b {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                ops.get(method.to_lowercase())
                    .map(|op| (literal, template.as_str(), op))
            })
            .max_by_key(|(literal, _, _)| *literal)
            .map(|(_, t, op)| (t, op))
    }

    fn validator(&self, schema: &Value, prefix: &str) -> jsonschema::Validator {
        let mut schema = schema.clone();
        to_json_schema(&mut schema, prefix);
        let root = json!({"$defs": self.defs, "allOf": [schema]});
        jsonschema::validator_for(&root).expect("a valid schema")
    }

    /// Problems with one exchange, empty when it matches the spec.
    fn check(&self, e: &Exchange) -> Vec<String> {
        let what = format!("{} {} -> {}", e.method, e.path, e.status);
        let Some((template, op)) = self.operation(&e.method, &e.path) else {
            return vec![format!("{what}: no such operation in the spec")];
        };
        let mut problems = Vec::new();
        let mut validate = |schema: &Value, body: &Value, side: &str| {
            let v = self.validator(schema, "");
            for err in v.iter_errors(body) {
                problems.push(format!(
                    "{what} ({template}) {side}: {err} at {}",
                    err.instance_path()
                ));
            }
        };
        if let (Some(body), Some(schema)) = (
            &e.request,
            op.pointer("/requestBody/content/application~1json/schema"),
        ) {
            validate(schema, body, "request");
        }
        match op["responses"].get(e.status.to_string()) {
            None => problems.push(format!("{what} ({template}): status not documented")),
            Some(response) => {
                if let (Some(body), Some(schema)) = (
                    &e.response,
                    response.pointer("/content/application~1json/schema"),
                ) {
                    validate(schema, body, "response");
                }
            }
        }
        problems
    }

    fn check_all(&self, exchanges: &[Exchange]) {
        let problems: Vec<String> = exchanges.iter().flat_map(|e| self.check(e)).collect();
        assert!(
            problems.is_empty(),
            "{} contract problems:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}

#[tokio::test]
async fn the_contract_check_catches_a_wrong_body() {
    let Some(specs) = specs_dir("contracts::the_contract_check_catches_a_wrong_body") else {
        return;
    };
    let spec = Spec::gohighlevel(&specs);
    let good = Exchange {
        vendor: "gohighlevel".into(),
        method: "POST".into(),
        path: "/contacts/upsert".into(),
        request: Some(json!({"locationId": "l1", "email": "a@example.com", "tags": ["x"]})),
        status: 200,
        response: None,
    };
    assert!(spec.check(&good).is_empty(), "{:?}", spec.check(&good));
    let mut bad = good.clone();
    bad.request = Some(json!({"locationId": "l1", "tags": "x"}));
    assert!(
        !spec.check(&bad).is_empty(),
        "a string where the spec has an array"
    );
    bad = good.clone();
    bad.request = Some(json!({"email": "a@example.com"}));
    assert!(!spec.check(&bad).is_empty(), "locationId is required");
    bad = good;
    bad.status = 204;
    assert!(!spec.check(&bad).is_empty(), "an undocumented status");
    let _ = runtime_at; // keep support in scope for helpers shared with other modules
}

#[tokio::test]
async fn gohighlevel_requests_and_sandbox_answers_match_the_official_openapi() {
    let Some(specs) =
        specs_dir("contracts::gohighlevel_requests_and_sandbox_answers_match_the_official_openapi")
    else {
        return;
    };
    let spec = Spec::gohighlevel(&specs);
    let keys = SandboxKeys::default();
    let sb = sandbox::start("127.0.0.1:0".parse().unwrap(), keys.clone())
        .await
        .unwrap();
    let ghl = ghl_client(&sb, &keys.gohighlevel);
    let c = call();
    let created = ghl
        .contacts_create(
            &c,
            &Contact {
                first_name: Some("Ada".into()),
                last_name: Some("Lovelace".into()),
                emails: vec!["ada@example.com".into()],
                tags: vec!["math".into()],
                addresses: vec![switchboard::model::Address {
                    street: Some("12 St James's Sq".into()),
                    city: Some("London".into()),
                    ..Default::default()
                }],
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    let id = created.id.unwrap();
    ghl.contacts_get(&c, &id).await.unwrap();
    ghl.contacts_update(
        &c,
        &id,
        &Contact {
            company: Some("Analytical Engines".into()),
            ..Contact::default()
        },
    )
    .await
    .unwrap();
    let existing = Contact {
        emails: vec!["ada@example.com".into()],
        source: Some("web".into()),
        ..Contact::default()
    };
    ghl.contacts_upsert(&c, &existing).await.unwrap();
    let fresh = Contact {
        first_name: Some("Grace".into()),
        phones: vec![switchboard::model::Phone {
            kind: switchboard::model::PhoneKind::Mobile,
            number: "+13035550100".into(),
        }],
        ..Contact::default()
    };
    ghl.contacts_upsert(&c, &fresh).await.unwrap();
    ghl.contacts_search(
        &c,
        &Query {
            text: Some("ada".into()),
            ..Query::default()
        },
    )
    .await
    .unwrap();
    let listed = ghl.list_contacts(&c, 1, None).await.unwrap();
    ghl.list_contacts(&c, 1, listed.next.as_deref())
        .await
        .unwrap();
    ghl.contacts_add_tags(&c, &id, &["vip".into()])
        .await
        .unwrap();
    ghl.contacts_remove_tags(&c, &id, &["math".into()])
        .await
        .unwrap();
    let note = ghl
        .contacts_add_note(&c, &id, "met at the salon")
        .await
        .unwrap();
    ghl.notes(&c, &id).await.unwrap();
    ghl.note(&c, &id, &note).await.unwrap();
    ghl.update_note(&c, &id, &note, "met at the salon, 1833")
        .await
        .unwrap();
    ghl.delete_note(&c, &id, &note).await.unwrap();
    let task = ghl
        .create_task(
            &c,
            &id,
            &json!({"title": "Send notes", "dueDate": "2030-01-01T10:00:00Z"}),
        )
        .await
        .unwrap();
    let tid = task["id"].as_str().unwrap();
    ghl.tasks(&c, &id).await.unwrap();
    ghl.task(&c, &id, tid).await.unwrap();
    ghl.update_task(&c, &id, tid, &json!({"body": "the Bernoulli ones"}))
        .await
        .unwrap();
    ghl.complete_task(&c, &id, tid, true).await.unwrap();
    ghl.delete_task(&c, &id, tid).await.unwrap();
    ghl.appointments(&c, &id).await.unwrap();
    sb.state.set_ghl_business(&id, "biz1");
    ghl.business_contacts(&c, "biz1", 10, 0).await.unwrap();
    // Documented errors: a missing contact, a refused token, a body the API rejects.
    assert!(ghl.contacts_get(&c, "missing1").await.is_err());
    let wrong = ghl_client(&sb, "wrong-token");
    assert!(wrong.contacts_get(&c, &id).await.is_err());
    let rejected = reqwest::Client::new()
        .post(format!("{}/contacts/upsert", sb.base_url("gohighlevel")))
        .bearer_auth(&keys.gohighlevel)
        .header("Version", "2021-07-28")
        .json(&json!({"locationId": GHL_LOCATION, "email": "not-an-email"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 422);
    ghl.contacts_delete(&c, &id).await.unwrap();

    let exchanges = sb.state.exchanges("gohighlevel");
    assert!(
        exchanges.len() >= 25,
        "the flow was recorded: {}",
        exchanges.len()
    );
    for status in [200, 201, 400, 401, 422] {
        assert!(
            exchanges.iter().any(|e| e.status == status),
            "no {status} was checked"
        );
    }
    spec.check_all(&exchanges);
}

#[tokio::test]
async fn housecallpro_sandbox_answers_match_the_housecall_spec() {
    let Some(specs) = specs_dir("contracts::housecallpro_sandbox_answers_match_the_housecall_spec")
    else {
        return;
    };
    let spec = Spec::housecallpro(&specs);
    let keys = SandboxKeys::default();
    let sb = sandbox::start("127.0.0.1:0".parse().unwrap(), keys.clone())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", sb.base_url("housecallpro")))
            .header("Authorization", format!("Token {}", keys.housecallpro))
            .json(&body)
            .send()
    };
    let customer: Value = post(
        "/customers",
        json!({"first_name": "Ann", "last_name": "Lee", "email": "ann@example.com", "mobile_number": "3035550100", "tags": ["vip"], "addresses": [{"street": "1 Main St", "city": "Denver", "state": "CO", "zip": "80202", "country": "US"}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let cid = customer["id"].as_str().unwrap();
    let address = customer["addresses"][0]["id"].as_str().unwrap();
    let job = post(
        "/jobs",
        json!({"customer_id": cid, "address_id": address, "schedule": {"scheduled_start": "2030-01-10T15:00:00Z", "scheduled_end": "2030-01-10T17:00:00Z"}}),
    )
    .await
    .unwrap();
    assert_eq!(job.status(), 201);
    let new_customer_lead = post(
        "/leads",
        json!({"customer": {"first_name": "Bo", "email": "bo@example.com"}, "lead_source": "Yelp"}),
    )
    .await
    .unwrap();
    assert_eq!(new_customer_lead.status(), 201);
    post(
        "/leads",
        json!({"customer_id": cid, "lead_source": "Google"}),
    )
    .await
    .unwrap();

    let hcp = switchboard::vendors::housecallpro::HousecallPro::new(
        Some(&sb.base_url("housecallpro")),
        &Secret::new(keys.housecallpro.clone()),
        Some("sandbox-company".into()),
        Default::default(),
    )
    .unwrap();
    let c = call();
    assert_eq!(
        hcp.check(&c).await.unwrap(),
        "company Sandbox Plumbing Co (sandbox-company)"
    );
    hcp.contacts_search(&c, &Query::default()).await.unwrap();
    hcp.contacts_get(&c, cid).await.unwrap();
    let jobs = hcp.jobs_list(&c, &Query::default()).await.unwrap();
    hcp.jobs_get(&c, jobs.items[0].id.as_deref().unwrap())
        .await
        .unwrap();
    assert!(hcp.jobs_get(&c, "job_missing").await.is_err());
    let leads = hcp.leads_list(&c, &Query::default()).await.unwrap();
    hcp.leads_get(&c, leads.items[0].id.as_deref().unwrap())
        .await
        .unwrap();

    let exchanges = sb.state.exchanges("housecallpro");
    assert!(
        exchanges.len() >= 10,
        "the flow was recorded: {}",
        exchanges.len()
    );
    assert!(exchanges.iter().any(|e| e.status == 404));
    spec.check_all(&exchanges);
}
