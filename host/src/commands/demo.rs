//! `switchboard serve --sandbox [--tour]`: the host with an embedded vendor sandbox, its
//! connections, webhook sources and admin token wired automatically — the one-command demo.

use super::{CommandError, Context};
use crate::config::Config;
use crate::ingest::SourceConfig;
use crate::model::{Outcome, Trigger};
use crate::pipeline::journal::{RunRecord, RunStatus};
use crate::pipeline::{Incoming, Pipeline};
use crate::sandbox::{self, GHL_LOCATION, RunningSandbox, SandboxKeys};
use crate::secrets::SecretSource;
use crate::vendors::{ConnectionConfig, Vendor};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The secret the sandbox signs Housecall Pro webhooks with, and the host checks.
const HCP_WEBHOOK_SECRET_FILE: &str = "hcp-webhook.secret";

/// A running sandbox and where its keys were written.
pub struct Demo {
    pub sandbox: RunningSandbox,
    pub dir: PathBuf,
    hcp_secret: String,
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
    pub fn print_guide(&self, pipeline: &Pipeline, host: &str, bin: &str) {
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
            let kind = plugin
                .manifest
                .triggers
                .iter()
                .find_map(|t| match t {
                    Trigger::Webhook { kind, .. } => Some(kind.replace('*', "demo")),
                    Trigger::Cron { .. } => None,
                })
                .unwrap_or_else(|| "demo.ping".into());
            println!("# {}: a manual event", plugin.name);
            println!(
                "echo '{{\"kind\": \"{kind}\", \"payload\": {{}}}}' | {token}{bin}{flag} trigger {} --server {host} --event - --wait",
                plugin.name
            );
        }
        println!("\n# what ran, and why\n{token}{bin}{flag} runs list --server {host}");
    }

    /// The scripted tour: drive each loaded recipe once through the sandbox, print what it
    /// did, and return whether every run succeeded.
    pub async fn tour(&self, pipeline: &Pipeline) -> bool {
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
                    (Some(Outcome::Done(s)), _) => format!("done: {s}"),
                    (Some(Outcome::Skipped(s)), _) => format!("skipped: {s}"),
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
            let http = reqwest::Client::new();
            let base = self.sandbox.base_url("housecallpro");
            let auth = format!("Token {}", self.sandbox.state.keys.housecallpro);
            let created = http
                .post(format!("{base}/customers"))
                .header("authorization", &auth)
                .json(&json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
                    "mobile_number": "(303) 555-0100", "lead_source": "Tour"}))
                .send()
                .await;
            let customer: serde_json::Value = match created {
                Ok(r) => r.json().await.unwrap_or_default(),
                Err(e) => {
                    println!("  the sandbox refused the customer: {e}");
                    return false;
                }
            };
            let hcp_run = |kind: &'static str| {
                move |r: &RunRecord| r.plugin == "hcp-contact-to-ghl" && r.kind == kind
            };
            let created = wait_for(&hcp_run("customer.created")).await;
            ok &= report("customer.created -> hcp-contact-to-ghl", created);
            let id = customer["id"].as_str().unwrap_or_default();
            let _ = http
                .put(format!("{base}/customers/{id}"))
                .header("authorization", &auth)
                .json(&json!({"last_name": "King"}))
                .send()
                .await;
            let updated = wait_for(&hcp_run("customer.updated")).await;
            // The outcome names the contact: "GHL contact <id> updated from HCP <id>".
            let ghl_id = updated
                .as_ref()
                .and_then(|r| r.outcome.as_ref())
                .and_then(|o| match o {
                    Outcome::Done(s) => s.split_whitespace().nth(2).map(str::to_string),
                    Outcome::Skipped(_) => None,
                });
            ok &= report("customer.updated -> hcp-contact-to-ghl", updated);
            if let Some(ghl_id) = ghl_id {
                let contact: serde_json::Value = match http
                    .get(format!(
                        "{}/contacts/{ghl_id}",
                        self.sandbox.base_url("gohighlevel")
                    ))
                    .bearer_auth(&self.sandbox.state.keys.gohighlevel)
                    .header("Version", "2021-07-28")
                    .send()
                    .await
                {
                    Ok(r) => r.json().await.unwrap_or_default(),
                    Err(_) => serde_json::Value::Null,
                };
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
        for plugin in plugins.iter().filter(|p| &*p.name != "hcp-contact-to-ghl") {
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
            ok &= report("tour.ping", wait_for(&|r: &RunRecord| r.id == run_id).await);
        }
        ok
    }
}
