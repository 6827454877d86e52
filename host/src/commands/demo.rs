//! `switchboard serve --sandbox [--tour]`: the host with an embedded vendor sandbox, its
//! connections, webhook sources and admin token wired automatically — the one-command demo.

use super::{CommandError, Context};
use crate::config::Config;
use crate::ingest::SourceConfig;
use crate::model::{Outcome, Trigger};
use crate::model::{RunRecord, RunStatus};
use crate::pipeline::{Incoming, Pipeline};
use crate::sandbox::{self, GHL_LOCATION, RunningSandbox, SandboxKeys};
use crate::secrets::SecretSource;
use crate::vendors::{ConnectionConfig, Vendor};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The secret the sandbox signs Housecall Pro webhooks with, and the host checks.
const HCP_WEBHOOK_SECRET_FILE: &str = "hcp-webhook.secret";

/// Recipes the tour drives with their own steps; any other gets a manual event.
const TOURED: &[&str] = &[
    "hcp-contact-to-ghl",
    "new-lead-sms",
    "lead-router",
    "ghl-appointment-to-pocketboss",
    "welcomehome-prospects-to-ghl",
];

/// Recipes the tour fires a cron tick for.
const TICKED: &[&str] = &["new-lead-sms", "welcomehome-prospects-to-ghl"];

/// The run `id` once it has finished or been deferred (within 30 s).
async fn run_finished(pipeline: &Pipeline, id: &str) -> Option<RunRecord> {
    for _ in 0..600 {
        match pipeline.run(id).await {
            Ok(run) if run.status.is_terminal() || run.is_deferred() => return Some(run),
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(_) => return None,
        }
    }
    None
}

/// Fire `plugin`'s cron trigger once, now; the run's id.
async fn tick(pipeline: &Pipeline, plugin: &str) -> Option<String> {
    let now = crate::pipeline::rfc3339(crate::pipeline::now_ms());
    let payload = json!({"schedule": "tour", "timezone": "UTC", "scheduled_at": now}).to_string();
    let incoming = Incoming {
        event_id: None,
        source: crate::pipeline::cron::SOURCE.into(),
        kind: "tour".into(),
        delivery_id: None,
        payload: serde_json::value::RawValue::from_string(payload).expect("JSON"),
    };
    match pipeline.ingest(incoming, Some(plugin)).await {
        Ok(ack) => ack.runs.into_iter().next(),
        Err(e) => {
            println!("  not accepted: {e}");
            None
        }
    }
}

/// A GoHighLevel appointment tomorrow at 09:00 UTC for 90 minutes.
fn appointment(contact: &str, title: &str) -> serde_json::Value {
    let day = chrono::Utc::now()
        .date_naive()
        .succ_opt()
        .unwrap_or(chrono::NaiveDate::MAX);
    let start = day
        .and_hms_opt(9, 0, 0)
        .unwrap_or(chrono::NaiveDateTime::MIN)
        .and_utc();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    json!({"id": format!("appt-{}", &random_hex()[..8]), "contactId": contact, "title": title,
        "calendarId": "demo-calendar", "address": "1 Main St, Denver, CO",
        "startTime": at(start), "endTime": at(start + chrono::TimeDelta::minutes(90)),
        "dateUpdated": at(chrono::Utc::now())})
}

/// A running sandbox and where its keys were written.
pub struct Demo {
    pub sandbox: RunningSandbox,
    pub dir: PathBuf,
    hcp_secret: String,
    /// The Standard Webhooks secret of the `leads` source (a web form's).
    leads_secret: String,
    /// How the printed commands get the admin token: `SWITCHBOARD_ADMIN_TOKEN=$(cat …) `
    /// for a generated one, `--config …` when the config has it, nothing for the env.
    token_prefix: String,
    config_flag: String,
}

/// 32 hex characters from the OS's randomness.
fn random_hex() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !from_os {
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    hex::encode(bytes)
}

/// Write `value` to `dir/name` (owner-only) and return it as a secret source.
fn secret_file(dir: &Path, name: &str, value: &str) -> Result<SecretSource, CommandError> {
    let path = dir.join(name);
    std::fs::write(&path, value).map_err(|e| CommandError::input(path.display(), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(SecretSource::File(path))
}

impl Demo {
    /// Start the sandbox and return `ctx` with every connection and source the config does
    /// not set wired to it: `ghl`, `hcp`, `hb`, `pb`, `wh`; sources `housecallpro` and
    /// `gohighlevel`; an admin token in `<data dir>/sandbox/admin-token`.
    pub async fn start(ctx: &Context) -> Result<(Demo, Context), CommandError> {
        let keys = SandboxKeys::default();
        let running = sandbox::start("127.0.0.1:0".parse().expect("an address"), keys.clone())
            .await
            .map_err(|e| {
                CommandError::input("sandbox", format!("cannot start the vendor sandbox: {e}"))
            })?;
        let dir = ctx.data_dir.join("sandbox");
        std::fs::create_dir_all(&dir).map_err(|e| CommandError::input(dir.display(), e))?;
        let mut config: Config = ctx.config.clone();
        for (name, vendor, key, file) in [
            ("ghl", Vendor::Gohighlevel, &keys.gohighlevel, "gohighlevel"),
            (
                "hcp",
                Vendor::Housecallpro,
                &keys.housecallpro,
                "housecallpro",
            ),
            ("hb", Vendor::Homebase360, &keys.homebase360, "homebase360"),
            ("pb", Vendor::Pocketboss, &keys.pocketboss, "pocketboss"),
            ("wh", Vendor::Welcomehome, &keys.welcomehome, "welcomehome"),
        ] {
            if config.connections.contains_key(name) {
                continue;
            }
            let secret = secret_file(&dir, &format!("{file}.key"), key)?;
            config.connections.insert(
                name.to_string(),
                ConnectionConfig {
                    vendor,
                    secret,
                    base_url: Some(running.base_url(file)),
                    location_id: (vendor == Vendor::Gohighlevel).then(|| GHL_LOCATION.to_string()),
                    community_id: None,
                    company_id: None,
                    max_retries: None,
                },
            );
        }
        let hcp_secret = random_hex();
        let hcp_source = secret_file(&dir, HCP_WEBHOOK_SECRET_FILE, &hcp_secret)?;
        config
            .sources
            .entry("housecallpro".into())
            .or_insert_with(|| SourceConfig {
                secret: Some(hcp_source),
                ..SourceConfig::default()
            });
        let leads_secret = {
            use base64::Engine as _;
            format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(random_hex())
            )
        };
        let leads_source = secret_file(&dir, "leads-webhook.secret", &leads_secret)?;
        config
            .sources
            .entry("leads".into())
            .or_insert_with(|| SourceConfig {
                secret: Some(leads_source),
                kind: Some("lead.created".into()),
                ..SourceConfig::default()
            });
        config
            .sources
            .entry("gohighlevel".into())
            .or_insert_with(|| SourceConfig {
                ed25519_public_keys: vec![running.state.ghl_public_key()],
                ..SourceConfig::default()
            });
        let (mut token_prefix, mut config_flag) = (String::new(), String::new());
        if config.server.admin_token.is_none() && ctx.admin_token()?.is_none() {
            config.server.admin_token = Some(secret_file(&dir, "admin-token", &random_hex())?);
            token_prefix = format!(
                "SWITCHBOARD_ADMIN_TOKEN=$(cat {}) ",
                dir.join("admin-token").display()
            );
        } else if config.server.admin_token.is_some()
            && let Some(path) = &ctx.config_path
        {
            config_flag = format!(" --config {}", path.display());
        }
        let ctx = Context {
            config_path: ctx.config_path.clone(),
            config,
            data_dir: ctx.data_dir.clone(),
            plugins_dir: ctx.plugins_dir.clone(),
        };
        Ok((
            Demo {
                sandbox: running,
                dir,
                hcp_secret,
                leads_secret,
                token_prefix,
                config_flag,
            },
            ctx,
        ))
    }

    /// Have the sandbox deliver its vendors' webhooks to the host at `host`.
    pub async fn connect_webhooks(&self, host: &str) -> Result<(), CommandError> {
        let http = reqwest::Client::new();
        for (vendor, body) in [
            (
                "housecallpro",
                json!({"url": format!("{host}/hooks/housecallpro"), "secret": self.hcp_secret}),
            ),
            (
                "gohighlevel",
                json!({"url": format!("{host}/hooks/gohighlevel")}),
            ),
        ] {
            let url = format!("http://{}/_sandbox/webhooks/{vendor}", self.sandbox.addr);
            let sent = http.put(&url).json(&body).send().await;
            if !sent.as_ref().is_ok_and(|r| r.status().is_success()) {
                return Err(CommandError::Server {
                    url,
                    message: format!("the sandbox refused the webhook target: {sent:?}"),
                });
            }
        }
        Ok(())
    }

    /// Print where things are and a ready-to-paste command per loaded recipe.
    pub async fn print_guide(&self, pipeline: &Pipeline, host: &str, bin: &str) {
        let keys = &self.sandbox.state.keys;
        let (token, flag) = (&self.token_prefix, &self.config_flag);
        println!(
            "vendor sandbox on http://{} (connections ghl, hcp, hb, pb, wh; keys in {})",
            self.sandbox.addr,
            self.dir.display()
        );
        println!("\nTry one of these in another terminal:");
        for plugin in pipeline.registry().current().iter() {
            println!();
            if &*plugin.name == "hcp-contact-to-ghl" {
                println!(
                    "# {}: create a Housecall Pro customer; the sandbox sends the signed webhook",
                    plugin.name
                );
                println!(
                    "curl -s -X POST {}/customers -H 'Authorization: Token {}' -H 'content-type: application/json' \\\n  -d '{{\"first_name\":\"Ada\",\"last_name\":\"Lovelace\",\"email\":\"ada@example.com\",\"mobile_number\":\"(303) 555-0100\"}}'",
                    self.sandbox.base_url("housecallpro"),
                    keys.housecallpro
                );
                continue;
            }
            let (what, event) = match self.example(&plugin.name).await {
                Some(example) => example,
                None => {
                    let kind = plugin
                        .manifest
                        .triggers
                        .iter()
                        .find_map(|t| match t {
                            Trigger::Webhook { kind, .. } => Some(kind.replace('*', "demo")),
                            Trigger::Cron { .. } => None,
                        })
                        .unwrap_or_else(|| "demo.ping".into());
                    (
                        "a manual event".to_string(),
                        json!({"kind": kind, "payload": {}}),
                    )
                }
            };
            println!("# {}: {what}", plugin.name);
            println!(
                "echo '{event}' | {token}{bin}{flag} trigger {} --server {host} --event - --wait",
                plugin.name
            );
        }
        println!("\n# what ran, and why\n{token}{bin}{flag} runs list --server {host}");
    }

    /// What to tell a recipe in the printed guide, and the event (`switchboard trigger`'s
    /// JSON) that does it; `None` for recipes without an example of their own.
    async fn example(&self, recipe: &str) -> Option<(String, serde_json::Value)> {
        let lead = json!({"id": format!("web-{}", &random_hex()[..6]), "first_name": "Ada",
            "last_name": "Lovelace", "phone": "+13035550100", "email": "ada@example.com",
            "source": "Website", "notes": "Leaky faucet"});
        Some(match recipe {
            "new-lead-sms" => (
                "a web-form lead (as the signed `leads` source would deliver it); Homebase360 texts Ada".into(),
                json!({"source": "leads", "kind": "lead.created", "payload": lead}),
            ),
            "lead-router" => (
                "a web-form lead, routed to PocketBoss, Homebase360 and GoHighLevel".into(),
                json!({"source": "leads", "kind": "lead.created", "payload": lead}),
            ),
            "ghl-appointment-to-pocketboss" => {
                let contact = self.ghl_contact("Ada", "Lovelace", "+13035550100").await?;
                (
                    format!("a GoHighLevel appointment for contact {contact} (Ada)"),
                    json!({"source": "gohighlevel", "kind": "AppointmentCreate", "payload":
                        {"appointment": appointment(&contact, "Furnace repair")}}),
                )
            }
            "welcomehome-prospects-to-ghl" => {
                self.seed_prospects().await;
                (
                    "sync the WelcomeHome prospects (two are seeded) into GoHighLevel now".into(),
                    json!({"kind": "sync"}),
                )
            }
            _ => return None,
        })
    }

    /// A call to one of the sandbox's vendors, authenticated as that vendor's clients are;
    /// the answer's JSON (`null` when the call failed).
    async fn vendor(
        &self,
        method: reqwest::Method,
        vendor: &str,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let keys = &self.sandbox.state.keys;
        let mut r = reqwest::Client::new()
            .request(method, format!("{}{path}", self.sandbox.base_url(vendor)));
        r = match vendor {
            "gohighlevel" => r
                .bearer_auth(&keys.gohighlevel)
                .header("Version", "2021-07-28"),
            "homebase360" => r.header("x-api-key", &keys.homebase360),
            "welcomehome" => r.header("authorization", format!("Token token={}", keys.welcomehome)),
            "housecallpro" => r.header("authorization", format!("Token {}", keys.housecallpro)),
            _ => r.bearer_auth(&keys.pocketboss),
        };
        if !body.is_null() {
            r = r.json(&body);
        }
        match r.send().await {
            Ok(answer) => answer.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }

    /// A GoHighLevel contact (created or matched by phone); its id.
    async fn ghl_contact(&self, first: &str, last: &str, phone: &str) -> Option<String> {
        let body = json!({"locationId": GHL_LOCATION, "firstName": first, "lastName": last, "phone": phone});
        let up = self
            .vendor(
                reqwest::Method::POST,
                "gohighlevel",
                "/contacts/upsert",
                body,
            )
            .await;
        up["contact"]["id"].as_str().map(str::to_string)
    }

    /// Two WelcomeHome prospects, for the prospects recipe to find.
    async fn seed_prospects(&self) {
        for (first, phone) in [("Rose", "(303) 555-0170"), ("Walter", "(303) 555-0171")] {
            let person = json!({"first_name": first, "last_name": "Demo", "phone": phone,
                "email": format!("{}@example.com", first.to_lowercase())});
            let body = json!({"prospect": {"community_id": 1, "influencers": [person]}});
            self.vendor(reqwest::Method::POST, "welcomehome", "/prospects", body)
                .await;
        }
    }

    /// Post a web-form lead to the host's `leads` source, signed; the runs it queued.
    async fn post_lead(&self, host: &str, lead: &serde_json::Value) -> Result<Vec<String>, String> {
        use base64::Engine as _;
        let body = lead.to_string();
        let id = format!("msg_{}", random_hex());
        let ts = chrono::Utc::now().timestamp();
        let secret = self.leads_secret.trim_start_matches("whsec_");
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|e| e.to_string())?;
        let signature =
            crate::ingest::verify::StandardVerifier::sign(&key, &id, ts, body.as_bytes());
        let answer = reqwest::Client::new()
            .post(format!("{host}/hooks/leads"))
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let ack: serde_json::Value = answer.json().await.map_err(|e| e.to_string())?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("{status}: {ack}"));
        }
        Ok(ack["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A lead entered in Homebase360 itself, for the poll to find.
    async fn seed_hb_lead(&self) {
        let lead = json!({"firstName": "Linus", "lastName": "Torvalds",
            "phone": {"mobile": "+13035550143"}, "leadSource": "Phone call"});
        self.vendor(reqwest::Method::POST, "homebase360", "/leads", lead)
            .await;
    }

    /// The texts Homebase360 has sent, as the sandbox answered them.
    fn texts(&self) -> Vec<serde_json::Value> {
        let exchanges = self.sandbox.state.exchanges("homebase360").into_iter();
        exchanges
            .filter(|e| e.method == "POST" && e.path == "/messages" && e.status == 200)
            .filter_map(|e| e.response.map(|mut r| r["data"].take()))
            .collect()
    }

    /// Print the texts sent after the first `since`.
    fn print_texts(&self, since: usize) {
        for m in self.texts().iter().skip(since) {
            println!(
                "  Homebase360 texted {}: \"{}\"",
                m["to"].as_str().unwrap_or("?"),
                m["message"].as_str().unwrap_or("")
            );
        }
    }

    /// The scripted tour: drive each loaded recipe once through the sandbox, print what it
    /// did, and return whether every run succeeded.
    pub async fn tour(&self, pipeline: &Pipeline, host: &str) -> bool {
        let plugins = pipeline.registry().current();
        let mut finished = pipeline.subscribe();
        let mut ok = true;
        let mut wait_for = async |wanted: &dyn Fn(&RunRecord) -> bool| {
            let wait = async {
                loop {
                    match finished.recv().await {
                        Ok(run) if wanted(&run) => return Some(run),
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), wait)
                .await
                .ok()
                .flatten()
        };
        let report = |step: &str, run: Option<RunRecord>| match run {
            Some(run) => {
                let result = match (&run.outcome, &run.reason) {
                    (Some(outcome), _) => outcome.to_string(),
                    (None, Some(reason)) => reason.clone(),
                    (None, None) => String::new(),
                };
                println!("  {step}: {} {} — {result}", run.id, run.status.as_str());
                run.status == RunStatus::Succeeded
            }
            None => {
                println!("  {step}: no run finished within 30 s");
                false
            }
        };
        println!("\nTour:");
        if plugins.get("hcp-contact-to-ghl").is_some() {
            println!(
                "- Housecall Pro: a customer is created and then updated; the sandbox signs and sends customer.created and customer.updated"
            );
            let ada = json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                "mobile_number": "(303) 555-0100", "lead_source": "Tour"});
            let customer = self
                .vendor(reqwest::Method::POST, "housecallpro", "/customers", ada)
                .await;
            if customer.is_null() {
                println!("  the sandbox did not answer the customer");
                return false;
            }
            let hcp_run = |kind: &'static str| {
                move |r: &RunRecord| r.plugin == "hcp-contact-to-ghl" && r.kind == kind
            };
            let created = wait_for(&hcp_run("customer.created")).await;
            ok &= report("customer.created -> hcp-contact-to-ghl", created);
            let id = customer["id"].as_str().unwrap_or_default();
            let path = format!("/customers/{id}");
            let king = json!({"last_name": "King"});
            self.vendor(reqwest::Method::PUT, "housecallpro", &path, king)
                .await;
            let updated = wait_for(&hcp_run("customer.updated")).await;
            // The outcome names the contact: "GHL contact <id> updated from HCP <id>".
            let ghl_id = updated
                .as_ref()
                .and_then(|r| r.outcome.as_ref())
                .and_then(|o| match o {
                    Outcome::Done(s) => s.split_whitespace().nth(2).map(str::to_string),
                    _ => None,
                });
            ok &= report("customer.updated -> hcp-contact-to-ghl", updated);
            if let Some(ghl_id) = ghl_id {
                let path = format!("/contacts/{ghl_id}");
                let contact = self
                    .vendor(reqwest::Method::GET, "gohighlevel", &path, json!(null))
                    .await;
                let c = &contact["contact"];
                println!(
                    "  GoHighLevel contact {ghl_id}: {} {} <{}> {} tags {}",
                    c["firstName"].as_str().unwrap_or(""),
                    c["lastName"].as_str().unwrap_or(""),
                    c["email"].as_str().unwrap_or(""),
                    c["phone"].as_str().unwrap_or(""),
                    c["tags"]
                );
            }
        }
        let loaded = |name: &str| plugins.get(name).is_some();
        if loaded("new-lead-sms") || loaded("lead-router") {
            println!(
                "- a web form posts a new lead to /hooks/leads, signed with Standard Webhooks"
            );
            let lead = json!({"id": format!("tour-{}", &random_hex()[..8]), "first_name": "Grace",
                "last_name": "Hopper", "phone": "+13035550142", "email": "grace@example.com",
                "source": "Website", "notes": "Water heater quote"});
            let sent = self.texts().len();
            match self.post_lead(host, &lead).await {
                Ok(runs) => {
                    for run in runs {
                        let step =
                            format!("lead.created -> {}", run.rsplit('.').next().unwrap_or(""));
                        ok &= report(&step, run_finished(pipeline, &run).await);
                    }
                    self.print_texts(sent);
                }
                Err(e) => {
                    println!("  the host refused the lead: {e}");
                    ok = false;
                }
            }
        }
        if loaded("ghl-appointment-to-pocketboss") {
            println!(
                "- GoHighLevel: an appointment is booked for Grace; the sandbox signs and sends AppointmentCreate"
            );
            // Grace is a GoHighLevel contact and a Homebase360 customer (by her mobile).
            let phone = "+13035550142";
            let path = format!("/customers?phone={}", phone.replace('+', "%2B"));
            let found = self
                .vendor(reqwest::Method::GET, "homebase360", &path, json!(null))
                .await;
            if found["data"].as_array().is_none_or(|c| c.is_empty()) {
                let customer =
                    json!({"firstName": "Grace", "lastName": "Hopper", "phone": {"mobile": phone}});
                self.vendor(reqwest::Method::POST, "homebase360", "/customers", customer)
                    .await;
            }
            match self.ghl_contact("Grace", "Hopper", phone).await {
                Some(contact) => {
                    let booked = self
                        .sandbox
                        .state
                        .book_ghl_appointment(appointment(&contact, "Water heater repair"));
                    let id = booked["id"].as_str().unwrap_or_default().to_string();
                    let run = wait_for(&|r: &RunRecord| {
                        r.plugin == "ghl-appointment-to-pocketboss" && r.kind == "AppointmentCreate"
                    })
                    .await;
                    ok &= report("AppointmentCreate -> ghl-appointment-to-pocketboss", run);
                    let pushed = self.sandbox.state.pocketboss_appointments();
                    if let Some(a) = pushed.iter().rev().find(|a| a["externalId"] == id.as_str()) {
                        println!("  PocketBoss appointment: {a}");
                    }
                }
                None => {
                    println!("  the sandbox refused the GoHighLevel contact");
                    ok = false;
                }
            }
        }
        for plugin in plugins.iter().filter(|p| TICKED.contains(&&*p.name)) {
            println!("- a cron tick of {}", plugin.name);
            match &*plugin.name {
                "new-lead-sms" => self.seed_hb_lead().await,
                _ => self.seed_prospects().await,
            }
            let sent = self.texts().len();
            let Some(run_id) = tick(pipeline, &plugin.name).await else {
                ok = false;
                continue;
            };
            ok &= report("cron tick", run_finished(pipeline, &run_id).await);
            self.print_texts(sent);
        }
        for plugin in plugins.iter().filter(|p| !TOURED.contains(&&*p.name)) {
            println!("- {}: a manual event", plugin.name);
            let incoming = Incoming {
                event_id: None,
                source: "manual".into(),
                kind: "tour.ping".into(),
                delivery_id: None,
                payload: serde_json::value::RawValue::from_string("{}".into()).expect("JSON"),
            };
            let run_id = match pipeline.ingest(incoming, Some(&plugin.name)).await {
                Ok(ack) => ack.runs.into_iter().next().unwrap_or_default(),
                Err(e) => {
                    println!("  not accepted: {e}");
                    ok = false;
                    continue;
                }
            };
            ok &= report("tour.ping", run_finished(pipeline, &run_id).await);
        }
        ok
    }
}
