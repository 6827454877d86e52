//! `welcomehome-prospects-to-ghl` end to end: prospects seeded through the WelcomeHome
//! sandbox's API, the export pulled by the recipe on cron or a manual trigger, the contacts
//! checked through the GoHighLevel sandbox's API and its exchange log.

use super::{connections, sandbox, vendor, write_keys};
use crate::serve::{Host, setup};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use switchboard::sandbox::RunningSandbox;
use switchboard_test_guests::WELCOMEHOME_PROSPECTS_TO_GHL;

const PLUGIN: &str = "welcomehome-prospects-to-ghl";

/// A work dir with the recipe, the `wh` and `ghl` connections on the sandbox, and `extra`.
fn configure(sb: &RunningSandbox, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let (dir, config) = setup(
        &[(PLUGIN, WELCOMEHOME_PROSPECTS_TO_GHL)],
        &format!(
            r#"
{}
{extra}
"#,
            connections(sb, &[("wh", "welcomehome"), ("ghl", "gohighlevel")]),
        ),
    );
    write_keys(sb, dir.path());
    (dir, config)
}

/// Create a prospect in WelcomeHome (its influencer is the person); returns its id.
async fn prospect(sb: &RunningSandbox, community: u64, person: Value) -> u64 {
    let body = json!({"prospect": {"community_id": community, "influencers": [person]}});
    let p = vendor(sb, "POST", "welcomehome", "/prospects", Some(body)).await;
    p["id"].as_u64().unwrap()
}

/// A prospect's person: `n` gives the name, email and phone.
fn person(n: u32) -> Value {
    json!({
        "first_name": format!("Pat{n}"), "last_name": "Lee",
        "email": format!("pat{n}@example.com"), "phone": format!("(303) 555-01{n:02}"),
    })
}

/// Every GoHighLevel contact, by email, from the sandbox's API.
async fn ghl_contacts(sb: &RunningSandbox) -> BTreeMap<String, Value> {
    let path = "/contacts/?locationId=sandboxLocation01&limit=100";
    let list = vendor(sb, "GET", "gohighlevel", path, None).await;
    list["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["email"].as_str().unwrap_or_default().to_string(),
                c.clone(),
            )
        })
        .collect()
}

/// A manual sync, waited for: (status, answer).
async fn sync_now(host: &Host) -> (u16, Value) {
    let body = json!({"plugin": PLUGIN, "kind": "sync", "wait": true});
    host.admin("POST", "/admin/trigger", Some(body)).await
}

/// How often each email was upserted into GoHighLevel (the sandbox's exchange log).
fn upserts(sb: &RunningSandbox) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in sb.state.exchanges("gohighlevel") {
        if e.method == "POST" && e.path == "/contacts/upsert" {
            let email = e.request.as_ref().map(|r| r["email"].clone());
            let email = email.and_then(|e| e.as_str().map(str::to_string));
            *counts.entry(email.unwrap_or_default()).or_default() += 1;
        }
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(e, n)| (e.to_string(), *n)).collect()
}

/// The prospects a run's outcome says it synced (`N prospect(s) synced, ...`).
fn synced(run: &Value) -> u64 {
    let summary = run["outcome"]["summary"].as_str().unwrap_or_default();
    match run["outcome"]["status"].as_str() {
        Some("done") => summary.split_whitespace().next().unwrap().parse().unwrap(),
        _ => 0,
    }
}

/// Poll `done` (up to 30 s).
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn faults(sb: &RunningSandbox, faults: Option<Value>) {
    let url = format!("http://{}/_sandbox/faults/welcomehome", sb.addr);
    let client = reqwest::Client::new();
    let request = match faults {
        Some(f) => client.put(url).json(&f),
        None => client.delete(url),
    };
    assert!(request.send().await.unwrap().status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcomehome_prospects_sync_to_ghl_on_cron_incrementally_and_on_demand() {
    let sb = sandbox().await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(prospect(&sb, 1, person(n)).await);
    }
    // Another community: out of scope. No email or phone: nothing to match on, skipped.
    prospect(&sb, 2, person(5)).await;
    prospect(&sb, 1, json!({"first_name": "Nobody"})).await;
    let (_dir, config) = configure(
        &sb,
        &format!(
            r#"
[plugins.{PLUGIN}]
cron = "* * * * * *"
[plugins.{PLUGIN}.settings]
community = "1"
tags = ["senior-living"]
page_size = 2
run_seconds = 60   # one run per sync here (slices have a test of their own)
"#
        ),
    );
    let host = Host::start(&config);
    let query = format!("plugin={PLUGIN}&status=succeeded");

    // The first tick syncs the whole community, two rows a page.
    let runs = host
        .wait_runs(&query, "the first sync", |r| {
            r.iter().any(|r| synced(r) > 0)
        })
        .await;
    let first = runs.iter().find(|r| synced(r) > 0).unwrap();
    assert_eq!(first["source"], "cron", "{first}");
    let summary = first["outcome"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("4 prospect(s) synced, 1 skipped"),
        "{first}"
    );
    let contacts = ghl_contacts(&sb).await;
    assert_eq!(contacts.len(), 4, "{contacts:#?}");
    for n in 1..=4 {
        let c = &contacts[&format!("pat{n}@example.com")];
        assert_eq!(c["firstName"], format!("Pat{n}"), "{c}");
        assert_eq!(c["lastName"], "Lee");
        assert_eq!(c["phone"], format!("+130355501{n:02}"), "E.164: {c}");
        assert_eq!(c["source"], "WelcomeHome");
        assert_eq!(c["tags"], json!(["senior-living"]), "{c}");
    }
    assert_eq!(
        upserts(&sb),
        counts(&[
            ("pat1@example.com", 1),
            ("pat2@example.com", 1),
            ("pat3@example.com", 1),
            ("pat4@example.com", 1),
        ])
    );

    // Later ticks find nothing new and upsert nothing.
    host.wait_runs(&query, "a tick with nothing new", |r| {
        r.iter().any(|r| r["outcome"]["status"] == "skipped")
    })
    .await;
    assert_eq!(upserts(&sb).values().sum::<usize>(), 4);

    // A prospect changes and one is added: only those two sync.
    assert!(
        sb.state
            .edit_wh_prospect(ids[1], &json!({"last_name": "Lee-Hart"}))
    );
    prospect(&sb, 1, person(6)).await;
    host.wait_runs(&query, "the two changes", |r| {
        r.iter().map(synced).sum::<u64>() == 6
    })
    .await;
    assert_eq!(
        upserts(&sb),
        counts(&[
            ("pat1@example.com", 1),
            ("pat2@example.com", 2),
            ("pat3@example.com", 1),
            ("pat4@example.com", 1),
            ("pat6@example.com", 1),
        ])
    );
    let contacts = ghl_contacts(&sb).await;
    assert_eq!(contacts.len(), 5, "{contacts:#?}");
    assert_eq!(contacts["pat2@example.com"]["lastName"], "Lee-Hart");
    assert_eq!(contacts["pat6@example.com"]["phone"], "+13035550106");

    // A manual trigger runs the same sync: nothing changed since.
    let (status, answer) = sync_now(&host).await;
    assert_eq!(status, 200, "{answer}");
    let run = &answer["runs"][0];
    assert_eq!(
        (&run["source"], &run["status"], &run["outcome"]["status"]),
        (&json!("manual"), &json!("succeeded"), &json!("skipped")),
        "{answer}"
    );
    assert!(
        run["outcome"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("no prospect changed after "),
        "{run}"
    );
    assert_eq!(upserts(&sb).values().sum::<usize>(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_export_resumes_after_the_last_synced_prospect() {
    let sb = sandbox().await;
    let mut ids = Vec::new();
    for n in 1..=8 {
        ids.push(prospect(&sb, 1, person(n)).await);
    }
    let (_dir, config) = configure(
        &sb,
        &format!(
            "[plugins.{PLUGIN}]\ncron = \"off\"\n[plugins.{PLUGIN}.settings]\npage_size = 3\nrun_seconds = 60\n"
        ),
    );
    let host = Host::start(&config);
    // Slow WelcomeHome pages, so the host can be killed while it waits for the second.
    faults(&sb, Some(json!({"latency_ms": 1500}))).await;
    let asked = sb.state.requests("welcomehome");
    let (status, ack) = host
        .admin(
            "POST",
            "/admin/trigger",
            Some(json!({"plugin": PLUGIN, "kind": "sync"})),
        )
        .await;
    assert_eq!(status, 202, "{ack}");
    let run_id = ack["ack"]["runs"][0].as_str().unwrap().to_string();
    // The second page is asked for only once the first page's rows are upserted and the
    // progress after each of them is in kv.
    wait_until("the second page", || {
        sb.state.requests("welcomehome") >= asked + 2
    })
    .await;
    assert_eq!(
        upserts(&sb),
        counts(&[
            ("pat1@example.com", 1),
            ("pat2@example.com", 1),
            ("pat3@example.com", 1),
        ])
    );
    // kv writes reach the disk within 500 ms; an acknowledged event is flushed at once, and
    // with it everything written before, so this makes the progress durable without a sleep.
    let (status, barrier) = host
        .admin("POST", "/admin/trigger", Some(json!({"kind": "flush"})))
        .await;
    assert_eq!(
        (status, &barrier["ack"]["runs"]),
        (202, &json!([])),
        "{barrier}"
    );
    host.kill();

    // While the host is down, a synced prospect changes (it moves to the end of the export:
    // an old page cursor would now skip a row) and one is added.
    assert!(
        sb.state
            .edit_wh_prospect(ids[1], &json!({"first_name": "Patricia"}))
    );
    prospect(&sb, 1, person(9)).await;
    faults(&sb, None).await;

    // The restarted host runs the interrupted run again; it continues after prospect 3.
    let host = Host::start(&config);
    let runs = host
        .wait_runs(
            &format!("plugin={PLUGIN}&status=succeeded"),
            "the resumed sync",
            |r| r.len() == 1,
        )
        .await;
    let run = &runs[0];
    assert_eq!(run["id"], run_id, "the same run: {run}");
    let summary = run["outcome"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("7 prospect(s) synced, 0 skipped"),
        "{run}"
    );
    assert!(
        summary.ends_with("(resumed an export 3 row(s) in)"),
        "{run}"
    );
    // Prospects 1 and 3 were not upserted again; 2 was, because it changed.
    let mut expected: Vec<(String, usize)> = (1..=9)
        .map(|n| (format!("pat{n}@example.com"), 1))
        .collect();
    expected[1].1 = 2;
    assert_eq!(upserts(&sb), expected.into_iter().collect());
    let contacts = ghl_contacts(&sb).await;
    assert_eq!(contacts.len(), 9, "{contacts:#?}");
    assert_eq!(contacts["pat2@example.com"]["firstName"], "Patricia");

    // The export is complete: the next sync finds nothing new.
    let (_, answer) = sync_now(&host).await;
    assert_eq!(
        answer["runs"][0]["outcome"]["status"], "skipped",
        "{answer}"
    );
    assert_eq!(upserts(&sb).values().sum::<usize>(), 10);
}

/// A long sync works in slices: each run stops after `run_seconds` (0 here: after every
/// prospect), saves its progress and defers the rest, so no deadline cuts the export short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_export_goes_on_in_slices_without_spending_attempts() {
    let sb = sandbox().await;
    let (_dir, config) = configure(
        &sb,
        &format!(
            "[plugins.{PLUGIN}]\ncron = \"off\"\n[plugins.{PLUGIN}.settings]\nrun_seconds = 0\n"
        ),
    );
    for n in 1..=3 {
        prospect(&sb, 1, person(n)).await;
    }
    let host = Host::start(&config);
    let (status, answer) = host
        .admin(
            "POST",
            "/admin/trigger",
            Some(json!({"plugin": PLUGIN, "kind": "sync"})),
        )
        .await;
    assert!(status < 300, "{answer}");
    let runs = host
        .wait_runs(
            &format!("plugin={PLUGIN}&status=succeeded"),
            "the sliced sync",
            |runs| runs.len() == 1,
        )
        .await;
    let run = &runs[0];
    assert_eq!(run["attempts"], 1, "{run}");
    assert!(
        run["deferrals"].as_u64().unwrap() >= 2,
        "one slice per prospect: {run}"
    );
    assert_eq!(
        upserts(&sb),
        counts(&[
            ("pat1@example.com", 1),
            ("pat2@example.com", 1),
            ("pat3@example.com", 1)
        ])
    );
    assert_eq!(ghl_contacts(&sb).await.len(), 3);
}
