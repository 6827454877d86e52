//! `new-lead-sms` end to end: leads from a signed web-form webhook and from a cron poll of
//! Homebase360, each texted once, across restarts; quiet hours and the daily SMS cap defer
//! runs and drop nothing.

use super::{connections, sandbox, vendor, write_keys};
use crate::serve::{Host, setup};
use serde_json::{Value, json};
use switchboard::ingest::verify::StandardVerifier;
use switchboard::sandbox::RunningSandbox;
use switchboard_test_guests::NEW_LEAD_SMS;

const LEADS_SECRET: &str = "whsec_bGVhZC1mb3JtLXNpZ25pbmcta2V5LTAxMjM0NTY3";

/// A host running `new-lead-sms` against the sandbox's Homebase360, with a `leads` source.
fn start(sb: &RunningSandbox, plugin_toml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, config) = setup(
        &[("new-lead-sms", NEW_LEAD_SMS)],
        &format!(
            r#"
[sources.leads]
secret = {{ file = "leads.secret" }}
kind = "lead.created"
{}
[plugins.new-lead-sms]
connections = {{ hb = "homebase" }}   # the recipe's `hb` is this config's `homebase`
{plugin_toml}
"#,
            connections(sb, &[("homebase", "homebase360")])
        ),
    );
    write_keys(sb, dir.path());
    std::fs::write(dir.path().join("leads.secret"), LEADS_SECRET).unwrap();
    (dir, config)
}

/// Deliver a web-form lead, signed as Standard Webhooks with delivery id `id`.
async fn post_lead(host: &Host, id: &str, lead: &Value) -> (u16, Value) {
    let body = lead.to_string();
    let ts = chrono::Utc::now().timestamp();
    let key = StandardVerifier::decode_secret(LEADS_SECRET).unwrap();
    let headers = vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            StandardVerifier::sign(&key, id, ts, body.as_bytes()),
        ),
    ];
    host.hook("leads", &headers, &body).await
}

/// The texts Homebase360 sent, as the bodies of its successful `POST /messages`.
fn texts(sb: &RunningSandbox) -> Vec<Value> {
    sb.state
        .exchanges("homebase360")
        .into_iter()
        .filter(|e| e.method == "POST" && e.path == "/messages" && e.status == 200)
        .filter_map(|e| e.request)
        .collect()
}

/// A lead created in Homebase360 directly (as its own web app would), with a new customer.
async fn hb_lead(sb: &RunningSandbox, first: &str, mobile: &str) -> Value {
    let body = json!({"firstName": first, "lastName": "Test", "phone": {"mobile": mobile}});
    vendor(sb, "POST", "homebase360", "/leads", Some(body)).await["data"].clone()
}

async fn hb_leads(sb: &RunningSandbox, query: &str) -> Vec<Value> {
    let page = vendor(
        sb,
        "GET",
        "homebase360",
        &format!("/leads?limit=100&{query}"),
        None,
    )
    .await;
    page["data"].as_array().unwrap().clone()
}

/// Wait until the sandbox has sent `n` texts.
async fn wait_texts(sb: &RunningSandbox, n: usize) -> Vec<Value> {
    let start = std::time::Instant::now();
    loop {
        let sent = texts(sb);
        if sent.len() >= n {
            return sent;
        }
        assert!(
            start.elapsed().as_secs() < 60,
            "{} texts, expected {n}",
            sent.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_lead_sms_texts_every_lead_once_from_the_form_and_the_poll_across_restarts() {
    let sb = sandbox().await;
    let (_dir, config) = start(
        &sb,
        r#"cron = "* * * * * *"
[plugins.new-lead-sms.settings]
template = "Hi {first_name}, this is Acme Plumbing."
time_zone = "America/Denver""#,
    );
    // A lead entered in Homebase360 itself: the poll finds it.
    let grace = hb_lead(&sb, "Grace", "+13035550101").await;
    let host = Host::start(&config);
    let sent = wait_texts(&sb, 1).await;
    assert_eq!(sent[0]["customerId"], grace["customerId"]);
    assert_eq!(sent[0]["message"], "Hi Grace, this is Acme Plumbing.");

    // A web-form lead: recorded in Homebase360 (a customer found by phone), then texted.
    let form = json!({"id": "form-1", "first_name": "Ada", "last_name": "Lovelace",
        "phone": "+13035550100", "email": "ada@example.com", "notes": "Leaky faucet"});
    let (status, ack) = post_lead(&host, "msg_1", &form).await;
    assert_eq!(status, 202, "{ack}");
    let sent = wait_texts(&sb, 2).await;
    assert_eq!(sent[1]["message"], "Hi Ada, this is Acme Plumbing.");
    let ada = sent[1]["customerId"].as_str().unwrap().to_string();
    let customers = vendor(
        &sb,
        "GET",
        "homebase360",
        "/customers?phone=%2B13035550100",
        None,
    )
    .await;
    assert_eq!(
        customers["data"][0]["customerId"],
        ada.as_str(),
        "{customers}"
    );

    // The same delivery again is a duplicate; the form resending the lead is a new delivery
    // that texts nobody and records no second lead.
    let (status, ack) = post_lead(&host, "msg_1", &form).await;
    assert_eq!(
        (status, ack["duplicate"].as_bool()),
        (202, Some(true)),
        "{ack}"
    );
    assert_eq!(post_lead(&host, "msg_2", &form).await.0, 202);
    host.wait_runs(
        "plugin=new-lead-sms&status=succeeded",
        "both form deliveries",
        |runs| runs.iter().filter(|r| r["source"] == "leads").count() == 2,
    )
    .await;
    assert_eq!(hb_leads(&sb, &format!("customerId={ada}")).await.len(), 1);

    // Texted leads left `new`, so the poll no longer sees them.
    assert!(hb_leads(&sb, "status=new").await.is_empty());

    // A crash and a restart: ticks go on, nobody is texted again; a lead for a customer
    // already texted is marked but not texted; a new customer is.
    host.kill();
    let host = Host::start(&config);
    hb_lead(&sb, "Grace", "+13035550101").await;
    let linus = hb_lead(&sb, "Linus", "+13035550102").await;
    let sent = wait_texts(&sb, 3).await;
    assert_eq!(sent[2]["customerId"], linus["customerId"]);
    let ticks = |runs: &[Value]| runs.iter().filter(|r| r["source"] == "cron").count();
    let before = ticks(&host.runs("plugin=new-lead-sms&status=succeeded").await);
    host.wait_runs(
        "plugin=new-lead-sms&status=succeeded",
        "two more ticks",
        |runs| ticks(runs) >= before + 2,
    )
    .await;
    assert!(hb_leads(&sb, "status=new").await.is_empty());
    let sent = texts(&sb);
    assert_eq!(sent.len(), 3, "texted twice: {sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_lead_sms_holds_leads_through_quiet_hours_and_across_a_restart() {
    let sb = sandbox().await;
    // Quiet hours from this hour (UTC) for two hours: now is inside them.
    let hour = chrono::Timelike::hour(&chrono::Utc::now());
    let (_dir, config) = start(
        &sb,
        &format!(
            "cron = \"off\"\n[plugins.new-lead-sms.settings]\ntime_zone = \"UTC\"\nquiet_hours = \"{hour:02}:00-{:02}:00\"",
            (hour + 2) % 24
        ),
    );
    let host = Host::start(&config);
    let form = json!({"id": "form-9", "first_name": "Ada", "phone": "+13035550100"});
    assert_eq!(post_lead(&host, "msg_9", &form).await.0, 202);
    let runs = host
        .wait_runs("plugin=new-lead-sms", "the deferral", |runs| {
            runs.len() == 1 && runs[0]["outcome"]["status"] == "deferred"
        })
        .await;
    let end = chrono::Utc::now()
        .date_naive()
        .and_hms_opt((hour + 2) % 24, 0, 0)
        .unwrap()
        .and_utc();
    let end = if end < chrono::Utc::now() {
        end + chrono::TimeDelta::days(1)
    } else {
        end
    };
    let end = end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let run = &runs[0];
    assert_eq!(run["status"], "queued", "{run}");
    assert_eq!(run["attempts"], 0, "{run}");
    assert_eq!(run["outcome"]["summary"], "quiet hours", "{run}");
    assert_eq!(run["outcome"]["until"], end.as_str(), "{run}");
    assert!(texts(&sb).is_empty());

    // Nothing is lost across a crash: the run is still held for the end of quiet hours
    // (if the crash beat the deferral to the disk, the run asks again after the restart).
    host.kill();
    let host = Host::start(&config);
    let after = host
        .wait_runs("plugin=new-lead-sms", "the run held again", |runs| {
            runs.len() == 1
                && runs[0]["status"] == "queued"
                && runs[0]["outcome"]["status"] == "deferred"
        })
        .await;
    let after = &after[0];
    assert_eq!(after["next_attempt_at"], run["next_attempt_at"], "{after}");
    assert!(texts(&sb).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_lead_sms_stops_at_the_daily_cap_and_defers_the_rest_to_tomorrow() {
    let sb = sandbox().await;
    let started = chrono::Utc::now();
    let (_dir, config) = start(&sb, "cron = \"* * * * * *\"");
    // One lead more than Homebase360 texts in a day.
    let cap = switchboard::sandbox::homebase360::SMS_PER_DAY as usize;
    for i in 0..=cap {
        hb_lead(&sb, &format!("Lead{i}"), &format!("+1303600{i:04}")).await;
    }
    let host = Host::start(&config);
    let runs = host
        .wait_runs("plugin=new-lead-sms", "the poll to hit the cap", |runs| {
            runs.iter().any(|r| r["outcome"]["status"] == "deferred")
        })
        .await;
    let held: Vec<&Value> = runs.iter().filter(|r| r["status"] == "queued").collect();
    assert_eq!(held.len(), 1, "{runs:?}");
    let held = held[0];
    assert!(
        held["outcome"]["summary"]
            .as_str()
            .unwrap()
            .contains("SMS cap"),
        "{held}"
    );
    // Held until the quota resets at midnight UTC, not dropped and not failed.
    let midnight = |t: chrono::DateTime<chrono::Utc>| {
        let day = t.date_naive().succ_opt().unwrap();
        day.and_time(chrono::NaiveTime::MIN).and_utc()
    };
    let until = held["outcome"]["until"].as_str().unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
    // (Either midnight, should the test straddle one.)
    let off = |m: chrono::DateTime<chrono::Utc>| (until.to_utc() - m).num_seconds().abs();
    assert!(
        off(midnight(started)).min(off(midnight(chrono::Utc::now()))) <= 5,
        "{held}"
    );
    assert_eq!(texts(&sb).len(), cap);
    // The lead past the cap is still new: the next day's poll texts it.
    assert_eq!(hb_leads(&sb, "status=new").await.len(), 1);

    // A form lead meanwhile is recorded and held too.
    let form = json!({"id": "form-cap", "first_name": "Ada", "phone": "+13035550100"});
    assert_eq!(post_lead(&host, "msg_cap", &form).await.0, 202);
    let runs = host
        .wait_runs("plugin=new-lead-sms", "the form lead's deferral", |runs| {
            runs.iter()
                .any(|r| r["source"] == "leads" && r["outcome"]["status"] == "deferred")
        })
        .await;
    let form_run = runs.iter().find(|r| r["source"] == "leads").unwrap();
    assert_eq!(form_run["status"], "queued", "{form_run}");
    assert_eq!(form_run["attempts"], 0, "{form_run}");
    assert_eq!(texts(&sb).len(), cap);
    assert_eq!(hb_leads(&sb, "status=new").await.len(), 2);
}

/// Set Homebase360's faults in the sandbox (as `PUT /_sandbox/faults/homebase360` does).
fn hb_faults(sb: &RunningSandbox, faults: Value) {
    sb.state
        .set_faults("homebase360", serde_json::from_value(faults).unwrap());
}

/// The form's Homebase360 lead, by its customer's mobile, if there is one; never two.
async fn find_lead(sb: &RunningSandbox, mobile: &str) -> Option<Value> {
    let customers = vendor(
        sb,
        "GET",
        "homebase360",
        &format!("/customers?phone={}", mobile.replace('+', "%2B")),
        None,
    )
    .await;
    let customer = customers["data"][0]["customerId"].as_str()?.to_string();
    let leads = hb_leads(sb, &format!("customerId={customer}")).await;
    assert!(leads.len() <= 1, "one Homebase360 lead per form: {leads:?}");
    leads.first().cloned()
}

async fn lead_of(sb: &RunningSandbox, mobile: &str) -> Value {
    find_lead(sb, mobile)
        .await
        .unwrap_or_else(|| panic!("no lead for {mobile}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_right_after_a_vendor_create_never_creates_it_twice() {
    let sb = sandbox().await;
    let (_dir, config) = start(&sb, "cron = \"off\"");
    // Kill the host right after Homebase360 did something the recipe asked: created the
    // form's lead, or sent its text. Then at several delays after that, as it happens.
    let points = [
        ("/leads", 0),
        ("/messages", 0),
        ("/leads", 5),
        ("/messages", 5),
        ("/messages", 30),
        ("/leads", 100),
        ("/messages", 250),
    ];
    let mut host = Host::start(&config);
    let mut events = Vec::new();
    for (i, (path, delay)) in points.iter().enumerate() {
        let phone = format!("+1303555{i:04}");
        // This form's lead (its phone), or its text (its greeting).
        let marker = if *path == "/leads" {
            phone.clone()
        } else {
            format!("Hi K{i},")
        };
        let done = |sb: &RunningSandbox| {
            sb.state
                .exchanges("homebase360")
                .iter()
                .filter(|e| e.method == "POST" && e.path == *path && e.status < 300)
                .filter(|e| {
                    e.request
                        .as_ref()
                        .is_some_and(|r| r.to_string().contains(&marker))
                })
                .count()
        };
        let form =
            json!({"id": format!("kill-{i}"), "first_name": format!("K{i}"), "phone": phone});
        let (status, ack) = post_lead(&host, &format!("kill_{i}"), &form).await;
        assert_eq!(status, 202, "{ack}");
        events.push(ack["event_id"].as_str().unwrap().to_string());
        let waited = std::time::Instant::now();
        while done(&sb) == 0 {
            assert!(
                waited.elapsed().as_secs() < 30,
                "no POST {path} for form {i}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(*delay)).await;
        host.kill();
        host = Host::start(&config);
    }
    let runs = host
        .wait_runs("plugin=new-lead-sms", "every form's run", |runs| {
            runs.len() == points.len()
                && runs
                    .iter()
                    .all(|r| r["status"] == "succeeded" || r["status"] == "failed")
        })
        .await;
    // Each customer was texted at most once, and each form made at most one lead.
    let sent = texts(&sb);
    let mut customers: Vec<&str> = sent
        .iter()
        .map(|t| t["customerId"].as_str().unwrap())
        .collect();
    customers.sort();
    let before = customers.len();
    customers.dedup();
    assert_eq!(customers.len(), before, "a customer texted twice: {sent:?}");
    for (i, event) in events.iter().enumerate() {
        let run = runs
            .iter()
            .find(|r| r["event_id"] == event.as_str())
            .unwrap();
        let lead = find_lead(&sb, &format!("+1303555{i:04}")).await;
        let texted = |lead: &Value| sent.iter().any(|t| t["customerId"] == lead["customerId"]);
        if run["status"] == "failed" {
            // Killed between journaling a create and learning its answer: the run cannot
            // know whether it took effect, so it ends failed with the call unconfirmed, for
            // an operator, and never creates it again.
            assert!(
                run["reason"].as_str().unwrap().contains("unknown outcome"),
                "{run}"
            );
            assert!(!run["unconfirmed"].as_array().unwrap().is_empty(), "{run}");
            continue;
        }
        let lead = lead.unwrap_or_else(|| panic!("no lead for form {i}: {run}"));
        let summary = run["outcome"]["summary"].as_str().unwrap();
        match lead["status"].as_str().unwrap() {
            // A confirmed text moved the lead on.
            "first_contact" => assert!(texted(&lead), "moved on without a text: {lead}"),
            // A text the host could not confirm left it new, and the run says so.
            "new" => assert!(
                summary.contains(&format!("left new: {}", lead["leadId"].as_str().unwrap())),
                "{run}"
            ),
            other => panic!("lead status {other}"),
        }
    }
    assert!(!sent.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_whose_answer_is_lost_is_never_sent_twice_and_an_operator_can_resend_it() {
    let sb = sandbox().await;
    let (_dir, config) = start(&sb, "cron = \"* * * * * *\"");
    let host = Host::start(&config);

    // Homebase360 sends the text, then the connection breaks before its answer.
    hb_faults(&sb, json!({"drop_after_next": 1, "path": "/messages"}));
    let form = json!({"id": "lost-1", "first_name": "Ada", "phone": "+13035550100"});
    assert_eq!(post_lead(&host, "lost_1", &form).await.0, 202);
    let runs = host
        .wait_runs(
            "plugin=new-lead-sms&unconfirmed=true",
            "the unconfirmed run",
            |runs| runs.len() == 1,
        )
        .await;
    let run = &runs[0];
    assert_eq!(run["status"], "succeeded", "{run}");
    let lead = lead_of(&sb, "+13035550100").await;
    let summary = run["outcome"]["summary"].as_str().unwrap();
    assert!(
        summary.contains(&format!(
            "text unconfirmed, left new: {}",
            lead["leadId"].as_str().unwrap()
        )),
        "{summary}"
    );
    assert_eq!(run["unconfirmed"][0]["call"], "messages.send", "{run}");
    assert_eq!(run["unconfirmed"][0]["connection"], "hb", "{run}");
    assert_eq!(lead["status"], "new");
    assert_eq!(texts(&sb).len(), 1);
    // Polls go on: the lead is still new, and still not texted again.
    let polls = |runs: &[Value]| runs.iter().filter(|r| r["source"] == "cron").count();
    host.wait_runs(
        "plugin=new-lead-sms&status=succeeded",
        "three polls",
        |runs| polls(runs) >= 3,
    )
    .await;
    assert_eq!(texts(&sb).len(), 1, "texted twice");
    assert_eq!(lead_of(&sb, "+13035550100").await["status"], "new");
    // The operator's view.
    let id = run["id"].as_str().unwrap();
    let list = host.cli(&["runs", "list", "--unconfirmed"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains(id) && list.contains("[1 unconfirmed]"),
        "{list}"
    );
    let show = host.cli(&["runs", "show", id]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.contains("unconfirmed messages.send through 'hb'"),
        "{show}"
    );
    assert!(
        show.contains("messages.send through 'hb': unknown"),
        "{show}"
    );

    // Here the connection breaks before Homebase360 did anything: the operator checks, sees
    // no text, and replays the run sending its unconfirmed call again.
    hb_faults(&sb, json!({"drop_next": 1, "path": "/messages"}));
    let form = json!({"id": "lost-2", "first_name": "Bo", "phone": "+13035550111"});
    assert_eq!(post_lead(&host, "lost_2", &form).await.0, 202);
    let runs = host
        .wait_runs(
            "plugin=new-lead-sms&unconfirmed=true",
            "the second unconfirmed run",
            |runs| runs.len() == 2,
        )
        .await;
    let bo = runs.iter().find(|r| r["id"] != run["id"]).unwrap();
    let bo_id = bo["id"].as_str().unwrap();
    assert_eq!(texts(&sb).len(), 1, "nothing was sent for Bo");
    // A plain replay does not send it either: its outcome is still unknown.
    assert_eq!(host.cli(&["runs", "replay", bo_id]).status.code(), Some(0));
    host.wait_runs(
        &format!("event={}", bo["event_id"].as_str().unwrap()),
        "the replay",
        |runs| runs[0]["replays"] == 1 && runs[0]["status"] == "succeeded",
    )
    .await;
    assert_eq!(texts(&sb).len(), 1);
    let out = host.cli(&["runs", "replay", bo_id, "--resend-unconfirmed"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed = host
        .wait_runs(
            &format!("event={}", bo["event_id"].as_str().unwrap()),
            "the resend",
            |runs| runs[0]["replays"] == 2 && runs[0]["status"] == "succeeded",
        )
        .await;
    assert!(replayed[0]["unconfirmed"].is_null(), "{}", replayed[0]);
    let sent = texts(&sb);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["message"], "Hi Bo, we will call you soon!");
    assert_eq!(
        lead_of(&sb, "+13035550111").await["status"],
        "first_contact"
    );
    // Replaying once more repeats nothing that took effect: the journal answers.
    assert_eq!(host.cli(&["runs", "replay", bo_id]).status.code(), Some(0));
    host.wait_runs(
        &format!("event={}", bo["event_id"].as_str().unwrap()),
        "the last replay",
        |runs| runs[0]["replays"] == 3 && runs[0]["status"] == "succeeded",
    )
    .await;
    assert_eq!(texts(&sb).len(), 2, "a replay sent a text again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_while_the_text_is_in_flight_leaves_the_lead_unconfirmed() {
    let sb = sandbox().await;
    let (_dir, config) = start(&sb, "cron = \"off\"");
    let host = Host::start(&config);
    // Homebase360 takes its time over texts; the host dies while one is on its way.
    hb_faults(&sb, json!({"latency_ms": 3000, "path": "/messages"}));
    let form = json!({"id": "flight-1", "first_name": "Ada", "phone": "+13035550100"});
    let before = sb.state.requests("homebase360");
    assert_eq!(post_lead(&host, "flight_1", &form).await.0, 202);
    // The lead (POST /leads), the customer (GET), then the text (POST /messages).
    let waited = std::time::Instant::now();
    while sb.state.requests("homebase360") < before + 3 {
        assert!(waited.elapsed().as_secs() < 30, "the text was never sent");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    host.kill();
    hb_faults(&sb, json!({}));
    let host = Host::start(&config);
    let runs = host
        .wait_runs("plugin=new-lead-sms", "the re-run", |runs| {
            runs.len() == 1 && runs[0]["status"] == "succeeded"
        })
        .await;
    let run = &runs[0];
    let lead = lead_of(&sb, "+13035550100").await;
    assert_eq!(lead["status"], "new", "moved on without a confirmed text");
    assert!(
        run["outcome"]["summary"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "text unconfirmed, left new: {}",
                lead["leadId"].as_str().unwrap()
            )),
        "{run}"
    );
    assert_eq!(run["unconfirmed"][0]["call"], "messages.send", "{run}");
    assert!(
        run["unconfirmed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("stopped before the answer came back"),
        "{run}"
    );
    assert!(texts(&sb).len() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_confirmed_text_never_texts_again_even_if_the_text_would_differ() {
    let sb = sandbox().await;
    let (_dir, config) = start(&sb, "cron = \"off\"\n[pipeline]\nretry_base = \"1s\"");
    let host = Host::start(&config);
    // The text goes out; moving the lead on then fails (the client's own 3 retries too), so
    // the run is retried.
    hb_faults(
        &sb,
        json!({"fail_next": 4, "status": 503, "path": "/leads/", "method": "PUT"}),
    );
    let form = json!({"id": "retry-1", "first_name": "Ada", "phone": "+13035550100"});
    assert_eq!(post_lead(&host, "retry_1", &form).await.0, 202);
    host.wait_runs("plugin=new-lead-sms", "the failed first attempt", |runs| {
        runs.len() == 1 && runs[0]["attempts"] == 1 && runs[0]["status"] == "queued"
    })
    .await;
    assert_eq!(texts(&sb).len(), 1);
    // Before the retry, the customer's name changes: a text built now would differ from the
    // one sent, so the effect journal alone would not recognise it.
    let lead = lead_of(&sb, "+13035550100").await;
    let customer = lead["customerId"].as_str().unwrap();
    vendor(
        &sb,
        "PUT",
        "homebase360",
        &format!("/customers/{customer}"),
        Some(json!({"firstName": "Adeline"})),
    )
    .await;
    let runs = host
        .wait_runs("plugin=new-lead-sms", "the retry", |runs| {
            runs.len() == 1 && runs[0]["status"] == "succeeded"
        })
        .await;
    assert_eq!(runs[0]["attempts"], 2, "{}", runs[0]);
    assert_eq!(texts(&sb).len(), 1, "texted again: {:?}", texts(&sb));
    assert_eq!(
        lead_of(&sb, "+13035550100").await["status"],
        "first_contact"
    );
}
