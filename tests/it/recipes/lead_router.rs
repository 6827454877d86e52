//! `lead-router` end to end: leads signed the Standard Webhooks way into a running host;
//! PocketBoss, Homebase360 and GoHighLevel played by the sandbox.

use super::{connections, ghl_contact, sandbox, vendor, write_keys};
use crate::serve::{Host, setup};
use serde_json::{Value, json};
use switchboard::ingest::verify::StandardVerifier;
use switchboard::sandbox::{GHL_LOCATION, RunningSandbox};
use switchboard_test_guests::LEAD_ROUTER;

const FORMS_SECRET: &str = "whsec_bGVhZC1yb3V0ZXItdGVzdC1zZWNyZXQ=";

/// Standard Webhooks headers for a delivery `id` of `body`.
fn signed(id: &str, body: &str) -> Vec<(&'static str, String)> {
    let key = StandardVerifier::decode_secret(FORMS_SECRET).unwrap();
    let ts = chrono::Utc::now().timestamp();
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            StandardVerifier::sign(&key, id, ts, body.as_bytes()),
        ),
    ]
}

async fn hb(sb: &RunningSandbox, path: &str) -> Vec<Value> {
    let answer = vendor(sb, "GET", "homebase360", path, None).await;
    answer["data"].as_array().unwrap().clone()
}

async fn ghl_contacts(sb: &RunningSandbox) -> Vec<Value> {
    let path = format!("/contacts/?locationId={GHL_LOCATION}&limit=100");
    let answer = vendor(sb, "GET", "gohighlevel", &path, None).await;
    answer["contacts"].as_array().unwrap().clone()
}

fn summary(run: &Value) -> &str {
    run["outcome"]["summary"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_router_pushes_each_lead_once_to_pocketboss_homebase360_and_ghl() {
    let sb = sandbox().await;
    let (dir, config) = setup(
        &[("lead-router", LEAD_ROUTER)],
        &format!(
            r#"
[sources.forms]
secrets = [{{ file = "forms.secret" }}]
kind = "lead.created"
[pipeline]
retry_base = "50ms"
{}
[plugins.lead-router.settings]
tags = ["new-lead"]
"#,
            connections(
                &sb,
                &[
                    ("pb", "pocketboss"),
                    ("hb", "homebase360"),
                    ("ghl", "gohighlevel")
                ]
            ),
        ),
    );
    std::fs::write(dir.path().join("forms.secret"), FORMS_SECRET).unwrap();
    write_keys(&sb, dir.path());
    let host = Host::start(&config);

    // Ada is already a Homebase360 customer (by her mobile) and a tagged GHL contact.
    let customer = vendor(
        &sb,
        "POST",
        "homebase360",
        "/customers",
        Some(json!({"firstName": "Ada", "lastName": "K", "phone": {"mobile": "+13035550100"}})),
    )
    .await;
    let customer_id = customer["data"]["customerId"].as_str().unwrap().to_string();
    let existing = vendor(
        &sb,
        "POST",
        "gohighlevel",
        "/contacts/",
        Some(json!({"locationId": GHL_LOCATION, "firstName": "Ada",
                    "email": "ada@example.com", "tags": ["vip"]})),
    )
    .await;
    let ghl_id = existing["contact"]["id"].as_str().unwrap().to_string();

    // Homebase360 fails once (a 503 on the lead create): the run is retried, and the retry
    // does not push the PocketBoss lead a second time.
    let faults = format!("http://{}/_sandbox/faults/homebase360", sb.addr);
    let put = reqwest::Client::new()
        .put(&faults)
        .json(&json!({"fail_next": 1, "status": 503}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 204);
    let lead = json!({
        "id": "HA-1001", "source": "HomeAdvisor", "first_name": "Ada", "last_name": "King",
        "email": "ada@example.com", "phone": "(303) 555-0100", "service": "Water heater",
        "notes": "Leaking since Monday", "street": "1 Main St", "city": "Denver",
        "state": "CO", "zip": "80202",
    })
    .to_string();
    let (status, ack) = host.hook("forms", &signed("msg_1", &lead), &lead).await;
    assert_eq!((status, &ack["duplicate"]), (202, &json!(false)), "{ack}");
    let runs = host
        .wait_runs("plugin=lead-router", "the lead routed", |r| {
            r.len() == 1 && r[0]["status"] == "succeeded"
        })
        .await;
    assert_eq!(runs[0]["attempts"], 2, "one failed attempt: {}", runs[0]);
    assert_eq!(runs[0]["outcome"]["status"], "done", "{}", runs[0]);
    assert!(
        summary(&runs[0]).starts_with("lead HomeAdvisor/HA-1001: PocketBoss lead "),
        "{}",
        runs[0]
    );
    // The retry pushed only what was left: PocketBoss was sent the lead once.
    let pb_posts = |sb: &RunningSandbox| {
        let posts = sb.state.exchanges("pocketboss").into_iter();
        posts
            .filter(|e| e.method == "POST" && e.path == "/leads")
            .count()
    };
    assert_eq!(pb_posts(&sb), 1);

    // PocketBoss (no read API: its sandbox state): one lead, with the origin's id.
    let pb = sb.state.pocketboss_leads();
    assert_eq!(pb.len(), 1, "{pb:?}");
    assert_eq!(pb[0]["externalId"], "HA-1001");
    assert_eq!(pb[0]["phone"], "+13035550100");
    assert_eq!(pb[0]["source"], "HomeAdvisor");
    assert_eq!(pb[0]["serviceRequested"], "Water heater");
    assert_eq!(pb[0]["city"], "Denver");
    // Homebase360: the lead is on the customer found by mobile, merged, not a new one.
    let hb_leads = hb(&sb, "/leads").await;
    assert_eq!(hb_leads.len(), 1, "{hb_leads:?}");
    assert_eq!(hb_leads[0]["customerId"], customer_id.as_str());
    assert_eq!(hb_leads[0]["leadSource"], "HomeAdvisor");
    assert_eq!(hb_leads[0]["note"], "Water heater: Leaking since Monday");
    let customers = hb(&sb, "/customers?phone=%2B13035550100").await;
    assert_eq!(customers.len(), 1, "{customers:?}");
    assert_eq!(customers[0]["lastName"], "King", "merged: {customers:?}");
    assert_eq!(customers[0]["email"], json!(["ada@example.com"]));
    // GoHighLevel: the same contact, updated and tagged; its own tag kept.
    assert_eq!(ghl_contacts(&sb).await.len(), 1);
    let contact = ghl_contact(&sb, &ghl_id).await;
    assert_eq!(contact["lastName"], "King", "{contact}");
    assert_eq!(contact["phone"], "+13035550100");
    assert_eq!(contact["source"], "HomeAdvisor");
    let tags: Vec<&str> = contact["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for tag in ["vip", "new-lead", "HomeAdvisor"] {
        assert!(tags.contains(&tag), "{tag} in {tags:?}");
    }

    // The same delivery again: acknowledged as a duplicate, not run.
    let (_, dup) = host.hook("forms", &signed("msg_1", &lead), &lead).await;
    assert_eq!(dup["duplicate"], true, "{dup}");
    // The same lead in a new delivery (the form was sent twice): run, and skipped.
    let pb_requests = sb.state.requests("pocketboss");
    let hb_requests = sb.state.requests("homebase360");
    let (_, again) = host.hook("forms", &signed("msg_2", &lead), &lead).await;
    assert_eq!(again["duplicate"], false, "{again}");
    let runs = host
        .wait_runs("plugin=lead-router", "the resent lead", |r| {
            r.len() == 2 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    assert_eq!(runs[0]["outcome"]["status"], "skipped", "{}", runs[0]);
    assert!(summary(&runs[0]).contains("routed already"), "{}", runs[0]);
    assert_eq!(sb.state.requests("pocketboss"), pb_requests);
    assert_eq!(sb.state.requests("homebase360"), hb_requests);
    assert_eq!(sb.state.pocketboss_leads().len(), 1);
    assert_eq!(hb(&sb, "/leads").await.len(), 1);
    assert_eq!(ghl_contacts(&sb).await.len(), 1);

    // Another lead, camelCase from another provider, numeric id, no email: a new person
    // everywhere.
    let other = json!({
        "type": "lead.created", "externalId": 778, "source": "Thumbtack",
        "name": "Grace Hopper", "phone": "+1 720 555 0199", "serviceRequested": "Furnace",
    })
    .to_string();
    host.hook("forms", &signed("msg_3", &other), &other).await;
    let runs = host
        .wait_runs("plugin=lead-router", "the second lead", |r| {
            r.len() == 3 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    assert!(
        summary(&runs[0]).starts_with("lead Thumbtack/778: PocketBoss lead "),
        "{}",
        runs[0]
    );
    let pb = sb.state.pocketboss_leads();
    assert_eq!(pb.len(), 2, "{pb:?}");
    assert_eq!(
        (
            &pb[1]["externalId"],
            &pb[1]["firstName"],
            &pb[1]["lastName"]
        ),
        (&json!("778"), &json!("Grace"), &json!("Hopper"))
    );
    assert_eq!(pb[1]["phone"], "+17205550199");
    let hb_leads = hb(&sb, "/leads").await;
    assert_eq!(hb_leads.len(), 2, "{hb_leads:?}");
    assert_ne!(hb_leads[1]["customerId"], customer_id.as_str());
    let contacts = ghl_contacts(&sb).await;
    assert_eq!(contacts.len(), 2);
    let grace = contacts.iter().find(|c| c["firstName"] == "Grace").unwrap();
    assert_eq!(grace["tags"], json!(["new-lead", "Thumbtack"]), "{grace}");

    // A lead without its id fails at once, naming the field, and pushes nothing.
    let bad = json!({"first_name": "Eve", "email": "eve@example.com"}).to_string();
    host.hook("forms", &signed("msg_4", &bad), &bad).await;
    let failed = host
        .wait_runs("plugin=lead-router&status=failed", "the bad lead", |r| {
            r.len() == 1
        })
        .await;
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("missing field `id`"),
        "{}",
        failed[0]
    );
    assert_eq!(sb.state.pocketboss_leads().len(), 2);

    // Homebase360 records a lead and its answer is lost: the run cannot know, so it fails
    // with the call unconfirmed, and neither a retry nor a replay records it again.
    sb.state.set_faults(
        "homebase360",
        serde_json::from_value(json!({"drop_after_next": 1, "path": "/leads"})).unwrap(),
    );
    let lost = json!({"id": "HA-2002", "source": "HomeAdvisor", "first_name": "Lin",
        "phone": "+13035550177"})
    .to_string();
    host.hook("forms", &signed("msg_5", &lost), &lost).await;
    let failed = host
        .wait_runs(
            "plugin=lead-router&unconfirmed=true",
            "the unconfirmed lead",
            |r| r.len() == 1 && r[0]["status"] == "failed",
        )
        .await;
    let run = &failed[0];
    assert!(
        run["reason"].as_str().unwrap().contains("unknown outcome"),
        "{run}"
    );
    assert_eq!(run["unconfirmed"][0]["call"], "leads.create", "{run}");
    assert_eq!(run["unconfirmed"][0]["connection"], "hb", "{run}");
    assert_eq!(hb(&sb, "/leads").await.len(), 3);
    let (status, _) = host
        .admin(
            "POST",
            &format!("/admin/runs/{}/replay", run["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 202);
    host.wait_runs("plugin=lead-router&unconfirmed=true", "the replay", |r| {
        r.len() == 1 && r[0]["replays"] == 1 && r[0]["status"] == "failed"
    })
    .await;
    assert_eq!(hb(&sb, "/leads").await.len(), 3, "recorded twice");
    assert_eq!(
        sb.state.pocketboss_leads().len(),
        3,
        "PocketBoss merges a resent lead"
    );
}
