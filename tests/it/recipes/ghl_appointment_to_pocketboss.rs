//! `ghl-appointment-to-pocketboss` end to end: GoHighLevel appointment webhooks, signed
//! with Ed25519, into a running host; GoHighLevel, PocketBoss and Homebase360 played by
//! the sandbox.

use super::{connections, sandbox, vendor, write_keys};
use crate::serve::{Host, setup};
use base64::Engine;
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use switchboard::sandbox::{GHL_LOCATION, RunningSandbox};
use switchboard_test_guests::GHL_APPOINTMENT_TO_POCKETBOSS;

/// A signed GoHighLevel delivery of `kind` for `appointment`: (headers, body).
fn ghl_hook(
    key: &ed25519_dalek::SigningKey,
    kind: &str,
    webhook_id: &str,
    appointment: &Value,
) -> (Vec<(&'static str, String)>, String) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let body = json!({
        "type": kind, "locationId": GHL_LOCATION, "appointment": appointment,
        "timestamp": now, "webhookId": webhook_id,
    })
    .to_string();
    let signature =
        base64::engine::general_purpose::STANDARD.encode(key.sign(body.as_bytes()).to_bytes());
    (vec![("X-GHL-Signature", signature)], body)
}

/// Every Homebase360 job in 2030.
async fn hb_jobs(sb: &RunningSandbox) -> Vec<Value> {
    let path = "/jobs?startDate=2030-01-01T00:00:00Z&endDate=2031-01-01T00:00:00Z";
    let answer = vendor(sb, "GET", "homebase360", path, None).await;
    answer["data"].as_array().unwrap().clone()
}

async fn ghl_contact_id(sb: &RunningSandbox, body: Value) -> String {
    let created = vendor(sb, "POST", "gohighlevel", "/contacts/", Some(body)).await;
    created["contact"]["id"].as_str().unwrap().to_string()
}

fn summary(run: &Value) -> &str {
    run["outcome"]["summary"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ghl_appointments_reach_pocketboss_once_and_homebase360_for_known_customers() {
    let sb = sandbox().await;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let public =
        base64::engine::general_purpose::STANDARD.encode(signing.verifying_key().as_bytes());
    let (dir, config) = setup(
        &[(
            "ghl-appointment-to-pocketboss",
            GHL_APPOINTMENT_TO_POCKETBOSS,
        )],
        &format!(
            r#"
[sources.gohighlevel]
ed25519_public_keys = ["{public}"]
{}
[plugins.ghl-appointment-to-pocketboss.settings]
categories = {{ "cal-maint" = "Maintenance", "install" = "Installation" }}
default_duration_minutes = 45
"#,
            connections(
                &sb,
                &[
                    ("ghl", "gohighlevel"),
                    ("pb", "pocketboss"),
                    ("hb", "homebase360")
                ]
            ),
        ),
    );
    write_keys(&sb, dir.path());
    let host = Host::start(&config);

    // Ada is a GHL contact and a Homebase360 customer (same mobile); Bob only a GHL contact.
    let ada = ghl_contact_id(
        &sb,
        json!({"locationId": GHL_LOCATION, "firstName": "Ada", "lastName": "King",
               "email": "ada@example.com", "phone": "+13035550100"}),
    )
    .await;
    let bob = ghl_contact_id(
        &sb,
        json!({"locationId": GHL_LOCATION, "firstName": "Bob", "email": "bob@example.com",
               "phone": "+17205550111"}),
    )
    .await;
    let customer = vendor(
        &sb,
        "POST",
        "homebase360",
        "/customers",
        Some(json!({"firstName": "Ada", "lastName": "King", "phone": {"mobile": "+13035550100"}})),
    )
    .await;
    let ada_customer = customer["data"]["customerId"].as_str().unwrap().to_string();

    // Created: a PocketBoss appointment (90 minutes, the calendar's category) and a
    // Homebase360 job for Ada.
    let mut a1 = json!({
        "id": "appt-1", "contactId": ada, "calendarId": "cal-maint", "title": "Furnace check",
        "address": "1 Main St, Denver", "notes": "Dog in the yard",
        "appointmentStatus": "confirmed",
        "startTime": "2030-06-01T15:00:00Z", "endTime": "2030-06-01T16:30:00Z",
        "dateUpdated": "2030-01-01T10:00:00Z",
    });
    let (headers, body) = ghl_hook(&signing, "AppointmentCreate", "wh-1", &a1);
    let (status, ack) = host.hook("gohighlevel", &headers, &body).await;
    assert_eq!((status, &ack["duplicate"]), (202, &json!(false)), "{ack}");
    let runs = host
        .wait_runs("plugin=ghl-appointment-to-pocketboss", "the create", |r| {
            r.len() == 1 && r[0]["status"] == "succeeded"
        })
        .await;
    assert_eq!(runs[0]["outcome"]["status"], "done", "{}", runs[0]);
    let pb = sb.state.pocketboss_appointments();
    assert_eq!(pb.len(), 1, "{pb:?}");
    let expected = json!({
        "externalId": "appt-1", "title": "Furnace check", "duration": 90,
        "category": "Maintenance", "clientName": "Ada King", "clientEmail": "ada@example.com",
        "clientPhone": "+13035550100", "location": "1 Main St, Denver",
        "notes": "Dog in the yard", "endDate": "2030-06-01T16:30:00Z",
    });
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&pb[0][k], v, "{k}: {}", pb[0]);
    }
    let jobs = hb_jobs(&sb).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["customerId"], ada_customer.as_str());
    assert_eq!(
        (&jobs[0]["start"], &jobs[0]["end"]),
        (&a1["startTime"], &a1["endTime"])
    );
    assert_eq!(jobs[0]["lineItems"][0]["name"], "Furnace check");
    let job_id = jobs[0]["jobId"].as_str().unwrap().to_string();
    assert!(summary(&runs[0]).contains(&job_id), "{}", runs[0]);

    // The same delivery again: a duplicate at intake, nothing runs.
    let (_, dup) = host.hook("gohighlevel", &headers, &body).await;
    assert_eq!(dup["duplicate"], true, "{dup}");
    // An update that changes nothing we sync: skipped, nothing pushed.
    let created = a1.clone();
    a1["appointmentStatus"] = json!("showed");
    a1["dateUpdated"] = json!("2030-01-01T10:01:00Z");
    let (headers, body) = ghl_hook(&signing, "AppointmentUpdate", "wh-2", &a1);
    host.hook("gohighlevel", &headers, &body).await;
    let runs = host
        .wait_runs(
            "plugin=ghl-appointment-to-pocketboss",
            "the no-op update",
            |r| r.len() == 2 && r.iter().all(|r| r["status"] == "succeeded"),
        )
        .await;
    assert_eq!(runs[0]["outcome"]["status"], "skipped", "{}", runs[0]);
    assert!(
        summary(&runs[0]).contains("nothing we sync changed"),
        "{}",
        runs[0]
    );

    // Moved: the Homebase360 job follows; PocketBoss, which cannot update, keeps its one
    // appointment and the outcome says so.
    a1["startTime"] = json!("2030-06-02T09:00:00-06:00");
    a1["endTime"] = json!("2030-06-02T10:00:00-06:00");
    a1["dateUpdated"] = json!("2030-01-01T10:02:00Z");
    let (headers, body) = ghl_hook(&signing, "AppointmentUpdate", "wh-3", &a1);
    host.hook("gohighlevel", &headers, &body).await;
    let runs = host
        .wait_runs("plugin=ghl-appointment-to-pocketboss", "the move", |r| {
            r.len() == 3 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    assert_eq!(runs[0]["outcome"]["status"], "done", "{}", runs[0]);
    assert!(summary(&runs[0]).contains("cannot update"), "{}", runs[0]);
    let jobs = hb_jobs(&sb).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["jobId"], job_id.as_str());
    assert_eq!(
        (&jobs[0]["start"], &jobs[0]["end"]),
        (&a1["startTime"], &a1["endTime"])
    );
    let pb = sb.state.pocketboss_appointments();
    assert_eq!(pb.len(), 1, "no second PocketBoss appointment: {pb:?}");
    assert_eq!(pb[0]["startDate"], "2030-06-01T15:00:00Z");
    // A late delivery of the created state (webhooks arrive out of order) changes nothing.
    let (headers, body) = ghl_hook(&signing, "AppointmentUpdate", "wh-late", &created);
    host.hook("gohighlevel", &headers, &body).await;
    let runs = host
        .wait_runs(
            "plugin=ghl-appointment-to-pocketboss",
            "the late delivery",
            |r| r.len() == 4 && r.iter().all(|r| r["status"] == "succeeded"),
        )
        .await;
    assert!(summary(&runs[0]).contains("older than"), "{}", runs[0]);
    let jobs = hb_jobs(&sb).await;
    assert_eq!(jobs[0]["start"], a1["startTime"], "{jobs:?}");

    // Bob is not a Homebase360 customer: PocketBoss only. His appointment has no usable end
    // (GoHighLevel's own example has end = start): the default duration; the category
    // comes from a word in the title.
    let a2 = json!({
        "id": "appt-2", "contactId": bob, "calendarId": "cal-other", "title": "Heat pump install",
        "startTime": "2030-06-03T14:00:00Z", "endTime": "2030-06-03T14:00:00Z",
    });
    let (headers, body) = ghl_hook(&signing, "AppointmentCreate", "wh-4", &a2);
    host.hook("gohighlevel", &headers, &body).await;
    let runs = host
        .wait_runs(
            "plugin=ghl-appointment-to-pocketboss",
            "Bob's appointment",
            |r| r.len() == 5 && r.iter().all(|r| r["status"] == "succeeded"),
        )
        .await;
    assert!(
        summary(&runs[0]).contains("no Homebase360 job"),
        "{}",
        runs[0]
    );
    let pb = sb.state.pocketboss_appointments();
    assert_eq!(pb.len(), 2, "{pb:?}");
    assert_eq!(
        (&pb[1]["externalId"], &pb[1]["duration"], &pb[1]["category"]),
        (&json!("appt-2"), &json!(45), &json!("Installation"))
    );
    assert_eq!(pb[1]["clientName"], "Bob");
    assert_eq!(hb_jobs(&sb).await.len(), 1, "no job without a customer");

    // Bob becomes a Homebase360 customer (by email only); the next update of his
    // appointment creates the job, still without a second PocketBoss appointment.
    let bob_customer = vendor(
        &sb,
        "POST",
        "homebase360",
        "/customers",
        Some(json!({"firstName": "Bob", "email": ["bob@example.com"]})),
    )
    .await["data"]["customerId"]
        .as_str()
        .unwrap()
        .to_string();
    let (headers, body) = ghl_hook(&signing, "AppointmentUpdate", "wh-5", &a2);
    host.hook("gohighlevel", &headers, &body).await;
    let runs = host
        .wait_runs(
            "plugin=ghl-appointment-to-pocketboss",
            "Bob's update",
            |r| r.len() == 6 && r.iter().all(|r| r["status"] == "succeeded"),
        )
        .await;
    assert_eq!(runs[0]["outcome"]["status"], "done", "{}", runs[0]);
    let jobs = hb_jobs(&sb).await;
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert_eq!(jobs[1]["customerId"], bob_customer.as_str());
    assert_eq!(
        (&jobs[1]["start"], &jobs[1]["end"]),
        (
            &json!("2030-06-03T14:00:00Z"),
            &json!("2030-06-03T14:45:00Z")
        )
    );
    assert_eq!(sb.state.pocketboss_appointments().len(), 2);
}
