//! Our recipes end to end: signed webhooks into a running host, the vendors played by the
//! sandbox, results checked through the sandbox's own API.

use crate::serve::{Host, setup};
use serde_json::{Value, json};
use switchboard::ingest::verify::HmacVerifier;
use switchboard::sandbox::{self, RunningSandbox, SandboxKeys};
use switchboard_test_guests::HCP_CONTACT_TO_GHL;

mod ghl_appointment_to_pocketboss;
mod lead_router;
mod new_lead_sms;
mod welcomehome_prospects_to_ghl;

const HCP_SECRET: &str = "hcp-webhook-secret";

async fn sandbox() -> RunningSandbox {
    sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxKeys::default())
        .await
        .unwrap()
}

/// `[connections.<name>]` tables pointing `(name, vendor)` pairs at the sandbox, their keys
/// in files that [`write_keys`] writes next to the config.
fn connections(sb: &RunningSandbox, pairs: &[(&str, &str)]) -> String {
    let mut toml = String::new();
    for (name, vendor) in pairs {
        toml.push_str(&format!(
            "[connections.{name}]\nvendor = \"{vendor}\"\nsecret = {{ file = \"{vendor}.key\" }}\nbase_url = \"{}\"\n",
            sb.base_url(vendor)
        ));
        if *vendor == "gohighlevel" {
            toml.push_str(&format!("location_id = \"{}\"\n", sandbox::GHL_LOCATION));
        }
    }
    toml
}

/// The sandbox's API keys, as `<vendor>.key` files in `dir` (see [`connections`]).
fn write_keys(sb: &RunningSandbox, dir: &std::path::Path) {
    let k = &sb.state.keys;
    for (vendor, key) in [
        ("gohighlevel", &k.gohighlevel),
        ("housecallpro", &k.housecallpro),
        ("homebase360", &k.homebase360),
        ("pocketboss", &k.pocketboss),
        ("welcomehome", &k.welcomehome),
    ] {
        std::fs::write(dir.join(format!("{vendor}.key")), key).unwrap();
    }
}

/// A call to the sandbox as the vendor's own API client would make it.
async fn vendor(
    sb: &RunningSandbox,
    method: &str,
    vendor: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let keys = &sb.state.keys;
    let mut r = reqwest::Client::new().request(
        method.parse().unwrap(),
        format!("{}{path}", sb.base_url(vendor)),
    );
    r = match vendor {
        "housecallpro" => r.header("authorization", format!("Token {}", keys.housecallpro)),
        "gohighlevel" => r
            .bearer_auth(&keys.gohighlevel)
            .header("Version", "2021-07-28"),
        "homebase360" => r.header("x-api-key", &keys.homebase360),
        "pocketboss" => r.bearer_auth(&keys.pocketboss),
        "welcomehome" => r.header("authorization", format!("Token token={}", keys.welcomehome)),
        other => panic!("no client for {other}"),
    };
    if let Some(b) = body {
        r = r.json(&b);
    }
    let response = r.send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{method} {path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// A GoHighLevel contact, from the sandbox's API.
async fn ghl_contact(sb: &RunningSandbox, id: &str) -> Value {
    let path = format!("/contacts/{id}");
    vendor(sb, "GET", "gohighlevel", &path, None).await["contact"].clone()
}

/// A GoHighLevel contact's notes, from the sandbox's API.
async fn ghl_notes(sb: &RunningSandbox, id: &str) -> Value {
    let path = format!("/contacts/{id}/notes");
    vendor(sb, "GET", "gohighlevel", &path, None).await
}

fn signed_hcp(body: &str) -> Vec<(&'static str, String)> {
    let ts = chrono::Utc::now().timestamp().to_string();
    vec![
        ("Api-Timestamp", ts.clone()),
        (
            "Api-Signature",
            HmacVerifier::sign(
                HCP_SECRET.as_bytes(),
                "{timestamp}.{body}",
                &ts,
                body.as_bytes(),
            ),
        ),
    ]
}

/// The GHL contact id a run's outcome names (`GHL contact <id> created from HCP ...`).
fn ghl_id(run: &Value) -> String {
    let summary = run["outcome"]["summary"].as_str().unwrap();
    summary.split_whitespace().nth(2).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hcp_contact_to_ghl_syncs_skips_echoes_notes_and_tags_deleted_customers() {
    let sb = sandbox().await;
    let (dir, config) = setup(
        &[("hcp-contact-to-ghl", HCP_CONTACT_TO_GHL)],
        &format!(
            r#"
[sources.housecallpro]
secret = {{ file = "hcp.secret" }}
{}
[plugins.hcp-contact-to-ghl.settings]
tags = ["from-hcp"]
deleted_tag = "gone"
"#,
            connections(&sb, &[("ghl", "gohighlevel")])
        ),
    );
    std::fs::write(dir.path().join("hcp.secret"), HCP_SECRET).unwrap();
    write_keys(&sb, dir.path());
    let host = Host::start(&config);
    // The sandbox's Housecall Pro sends its signed webhooks to the host.
    let status = reqwest::Client::new()
        .put(format!("http://{}/_sandbox/webhooks/housecallpro", sb.addr))
        .json(&json!({"url": format!("{}/hooks/housecallpro", host.url), "secret": HCP_SECRET}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());

    // A customer is created in Housecall Pro.
    let customer = vendor(
        &sb,
        "POST",
        "housecallpro",
        "/customers",
        Some(json!({
            "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
            "mobile_number": "(303) 555-0100", "lead_source": "Google", "notes": "Gate code 1234",
            "addresses": [{"street": "1 Main St", "city": "Denver", "state": "CO", "zip": "80202"}],
        })),
    )
    .await;
    let hcp_id = customer["id"].as_str().unwrap().to_string();
    let runs = host
        .wait_runs(
            "plugin=hcp-contact-to-ghl&status=succeeded",
            "the created sync",
            |r| r.len() == 1,
        )
        .await;
    let id = ghl_id(&runs[0]);
    let contact = ghl_contact(&sb, &id).await;
    assert_eq!(contact["firstName"], "Ada", "{contact}");
    assert_eq!(contact["email"], "ada@example.com");
    assert_eq!(contact["phone"], "+13035550100", "E.164: {contact}");
    assert_eq!(contact["source"], "Google");
    assert_eq!(contact["city"], "Denver");
    assert!(
        contact["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("from-hcp")),
        "{contact}"
    );
    let notes = ghl_notes(&sb, &id).await;
    assert_eq!(notes["notes"].as_array().unwrap().len(), 1, "{notes}");
    assert_eq!(notes["notes"][0]["body"], "Gate code 1234");

    // An update that changes nothing we sync (an echo) is skipped; a real one updates the
    // same contact, and unchanged notes add no second note.
    vendor(
        &sb,
        "PUT",
        "housecallpro",
        &format!("/customers/{hcp_id}"),
        Some(json!({"first_name": "Ada"})),
    )
    .await;
    // (The sandbox sends each webhook on its own task, so two at once may arrive in either
    // order; this test wants the echo first.)
    host.wait_runs("plugin=hcp-contact-to-ghl", "the echo", |r| {
        r.len() == 2 && r.iter().all(|r| r["status"] == "succeeded")
    })
    .await;
    vendor(
        &sb,
        "PUT",
        "housecallpro",
        &format!("/customers/{hcp_id}"),
        Some(json!({"last_name": "King"})),
    )
    .await;
    let runs = host
        .wait_runs("plugin=hcp-contact-to-ghl", "three syncs", |r| {
            r.len() == 3 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    // Newest first.
    assert_eq!(runs[1]["outcome"]["status"], "skipped", "{}", runs[1]);
    assert_eq!(runs[0]["outcome"]["status"], "done", "{}", runs[0]);
    assert_eq!(ghl_id(&runs[0]), id, "the same GHL contact");
    let contact = ghl_contact(&sb, &id).await;
    assert_eq!(contact["lastName"], "King");
    let notes = ghl_notes(&sb, &id).await;
    assert_eq!(notes["notes"].as_array().unwrap().len(), 1, "{notes}");

    // A late delivery of an older state does not overwrite the newer one.
    let stale = json!({"event": "customer.updated", "customer": {
        "id": hcp_id, "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "updated_at": "2020-01-01T00:00:00Z"}})
    .to_string();
    assert_eq!(
        host.hook("housecallpro", &signed_hcp(&stale), &stale)
            .await
            .0,
        202
    );
    let runs = host
        .wait_runs("plugin=hcp-contact-to-ghl", "the stale delivery", |r| {
            r.len() == 4 && r.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    let summary = runs[0]["outcome"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("older than"), "{}", runs[0]);
    assert_eq!(ghl_contact(&sb, &id).await["lastName"], "King");

    // A delivery sent twice runs once.
    let deleted = json!({"event": "customer.deleted", "customer": {"id": hcp_id}}).to_string();
    let (s1, first) = host
        .hook("housecallpro", &signed_hcp(&deleted), &deleted)
        .await;
    let (s2, second) = host
        .hook("housecallpro", &signed_hcp(&deleted), &deleted)
        .await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(
        (&first["duplicate"], &second["duplicate"]),
        (&json!(false), &json!(true))
    );
    // Deleted in HCP: the GHL contact is tagged, not deleted.
    host.wait_runs("plugin=hcp-contact-to-ghl", "the delete", |r| {
        r.len() == 5 && r.iter().all(|r| r["status"] == "succeeded")
    })
    .await;
    let contact = ghl_contact(&sb, &id).await;
    assert!(
        contact["tags"].as_array().unwrap().contains(&json!("gone")),
        "{contact}"
    );
}

/// Per-key order: two `customer.updated` deliveries for one customer, back to back, the
/// first's GoHighLevel upsert held by the sandbox. Without order the second would overtake
/// it and the held, older upsert would land last; with it, the second waits its turn (and
/// says for which run) and the contact ends with the second's data. Repeated, with a fresh
/// customer each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hcp_updates_for_one_customer_apply_in_order_even_when_the_first_is_slow() {
    let sb = sandbox().await;
    let (dir, config) = setup(
        &[("hcp-contact-to-ghl", HCP_CONTACT_TO_GHL)],
        &format!(
            "[sources.housecallpro]\nsecret = {{ file = \"hcp.secret\" }}\n{}",
            connections(&sb, &[("ghl", "gohighlevel")])
        ),
    );
    std::fs::write(dir.path().join("hcp.secret"), HCP_SECRET).unwrap();
    write_keys(&sb, dir.path());
    let host = Host::start(&config);
    let update = |id: &str, last: &str, at: &str| {
        json!({"event": "customer.updated", "customer": {"id": id, "first_name": "Ada",
            "last_name": last, "email": format!("{id}@example.com"), "updated_at": at}})
        .to_string()
    };
    for round in 0..5 {
        let id = format!("cus_order_{round}");
        sb.state.set_faults(
            "gohighlevel",
            sandbox::Faults {
                hold_next: 1,
                hold_ms: 1_500,
                path: Some("/contacts/upsert".into()),
                ..sandbox::Faults::default()
            },
        );
        let first = update(&id, "First", "2026-12-01T10:00:00Z");
        let second = update(&id, "Second", "2026-12-01T10:00:01Z");
        let (s1, a1) = host.hook("housecallpro", &signed_hcp(&first), &first).await;
        let (s2, a2) = host
            .hook("housecallpro", &signed_hcp(&second), &second)
            .await;
        assert_eq!((s1, s2), (202, 202), "{a1} {a2}");
        let (r1, r2) = (
            a1["runs"][0].as_str().unwrap(),
            a2["runs"][0].as_str().unwrap(),
        );
        if round == 0 {
            // While the first is held, the second waits behind it, and says so.
            let (status, view) = host.admin("GET", &format!("/admin/runs/{r2}"), None).await;
            assert_eq!(status, 200);
            assert_eq!(view["run"]["status"], "queued", "{view}");
            assert_eq!(view["run"]["waiting_for"], r1, "{view}");
            assert_eq!(view["run"]["order_key"], id.as_str(), "{view}");
        }
        let runs = host
            .wait_runs(
                "plugin=hcp-contact-to-ghl&source=housecallpro",
                "both updates",
                |r| {
                    r.iter()
                        .filter(|r| r["id"] == r1 || r["id"] == r2)
                        .all(|r| r["status"] == "succeeded")
                        && r.iter().filter(|r| r["id"] == r1 || r["id"] == r2).count() == 2
                },
            )
            .await;
        let done = |run: &str| runs.iter().find(|r| r["id"] == run).unwrap().clone();
        let (d1, d2) = (done(r1), done(r2));
        assert!(
            d2["started_at"].as_str().unwrap() >= d1["finished_at"].as_str().unwrap(),
            "round {round}: the second ran before the first finished: {d1} {d2}"
        );
        let contact = ghl_contact(&sb, &ghl_id(&d2)).await;
        assert_eq!(contact["lastName"], "Second", "round {round}: {contact}");
    }
}

/// The one-command demo: `serve --sandbox` wires the sandbox in and prints commands that
/// work when pasted; `--tour` drives each recipe and exits 0.
#[test]
fn the_sandbox_demo_prints_working_commands_and_the_tour_passes() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    use switchboard_test_guests as guests;
    for (name, wasm) in [
        ("hcp-contact-to-ghl", HCP_CONTACT_TO_GHL),
        ("hello", guests::HELLO),
        ("new-lead-sms", guests::NEW_LEAD_SMS),
        ("lead-router", guests::LEAD_ROUTER),
        (
            "ghl-appointment-to-pocketboss",
            guests::GHL_APPOINTMENT_TO_POCKETBOSS,
        ),
        (
            "welcomehome-prospects-to-ghl",
            guests::WELCOMEHOME_PROSPECTS_TO_GHL,
        ),
    ] {
        std::fs::copy(wasm, plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let switchboard = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.current_dir(dir.path())
            .env_remove("SWITCHBOARD_ADMIN_TOKEN")
            .args(["--plugins-dir", "plugins", "--data-dir", "data"])
            .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
            .args(extra);
        cmd
    };

    let tour = switchboard(&["--tour"]).output().unwrap();
    let text = String::from_utf8_lossy(&tour.stdout);
    assert!(
        tour.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&tour.stderr)
    );
    assert!(
        text.contains("customer.created -> hcp-contact-to-ghl: "),
        "{text}"
    );
    assert!(
        text.contains("Ada King <ada@example.com> +13035550100"),
        "{text}"
    );
    // The tour's steps: a new lead, a GHL appointment, cron ticks, what each recipe did.
    for step in [
        "lead.created -> lead-router: ",
        "lead.created -> new-lead-sms: ",
        "Homebase360 texted +13035550142: \"Hi Grace,",
        "AppointmentCreate -> ghl-appointment-to-pocketboss: ",
        "PocketBoss appointment: ",
        "Homebase360 texted +13035550143: \"Hi Linus,",
        "done: 2 prospect(s) synced",
        "tour.ping: ",
    ] {
        assert!(text.contains(step), "no '{step}' in {text}");
    }
    assert!(
        !text.contains(" failed") && !text.contains("no run finished"),
        "{text}"
    );

    let mut child = switchboard(&[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut guide = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let last = line.contains(" runs list ");
        guide.push(line);
        if last {
            break;
        }
    }
    let pasted = |prefix: &str| {
        let line = guide
            .iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no '{prefix}' line in {guide:#?}"));
        Command::new("sh")
            .arg("-c")
            .arg(line)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // One command per recipe; each, pasted, runs its recipe to success.
    let commands: Vec<&String> = guide.iter().filter(|l| l.starts_with("echo ")).collect();
    assert_eq!(commands.len(), 5, "{guide:#?}");
    for command in commands {
        let out = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("succeeded"),
            "{command}\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listed = pasted("SWITCHBOARD_ADMIN_TOKEN=");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(".hello "),
        "{listed:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
