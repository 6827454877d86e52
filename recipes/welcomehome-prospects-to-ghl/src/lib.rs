//! `welcomehome-prospects-to-ghl`: every night, upsert the WelcomeHome prospects that changed
//! since the last sync as GoHighLevel contacts (GoHighLevel matches by email, then phone).
//!
//! - Reads WelcomeHome's live `Prospects` export (CSV, sorted by `updated_at`) one page at a
//!   time, rows updated after kv `synced_through` only (the first sync reads them all).
//! - Each prospect becomes a contact: first and last name, email, phone in E.164, the `tags`
//!   and `source` settings. One with neither email nor phone, or that GHL refuses as
//!   invalid, is logged and skipped, so one bad row cannot stall the sync.
//! - Crash-safe: after each prospect, kv `export` records how far the export got. A run cut
//!   short (an outage, its deadline, a host restart) runs again, as a retry or the next
//!   tick, and continues after the last synced row: it reopens the export from that row's
//!   `updated_at` rather than reuse a page cursor, which WelcomeHome allows 3 times a minute
//!   and which skips rows when prospects changed meanwhile. Only a complete export advances
//!   `synced_through`, to the newest `updated_at` seen.
//! - Runs at 02:00 America/Denver (`cron` and `timezone` under
//!   `[plugins.welcomehome-prospects-to-ghl]` change that) and on a manual trigger
//!   (`switchboard trigger welcomehome-prospects-to-ghl`). Give it `concurrency = 1`.
//! - A long sync (a first one: GHL takes 100 calls per 10 s) works in slices of `run_seconds`
//!   (default 5, under the host's run deadline): each slice saves its progress and defers
//!   the run to go on at once, so no deadline or attempt limit cuts a big export short.

use serde::{Deserialize, Serialize};
use switchboard_sdk::prelude::*;

/// `[plugins.welcomehome-prospects-to-ghl.settings]`, every field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// A community id; unset: the connection's `community_id`, else every community.
    community: Option<String>,
    /// Tags every synced contact gets.
    tags: Vec<String>,
    /// The contacts' source in GHL.
    source: String,
    /// Prospects per export page (WelcomeHome allows 1 to 10000).
    page_size: u32,
    /// Work per run before deferring the rest to the next run (keep under the deadline).
    run_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            community: None,
            tags: vec!["welcomehome".into()],
            source: "WelcomeHome".into(),
            page_size: 100,
            run_seconds: 5,
        }
    }
}

/// How far the export in flight got: every row up to `at` is synced, and of the rows at `at`
/// itself those in `ids`. `since` is the `updated_at` before `at`: a resumed export reads
/// from there, so rows sharing `at` are read again and those in `ids` skipped.
#[derive(Serialize, Deserialize, Default)]
struct Progress {
    since: Option<String>,
    at: Option<String>,
    ids: Vec<String>,
    /// Rows handled so far.
    rows: u64,
}

/// The connections; a config may map them (`[plugins.welcomehome-prospects-to-ghl] connections`).
const WH: &str = "wh";
const GHL: &str = "ghl";
const SYNCED_THROUGH: &str = "synced_through";
const IN_FLIGHT: &str = "export";

struct WelcomeHomeProspectsToGhl;

impl Recipe for WelcomeHomeProspectsToGhl {
    fn manifest() -> Manifest {
        Manifest::new("welcomehome-prospects-to-ghl", env!("CARGO_PKG_VERSION"))
            .description("WelcomeHome prospects changed -> upsert GoHighLevel contacts, nightly")
            .on_cron_in("0 0 2 * * *", "America/Denver")
            .uses(Capability::DataExport)
            .uses(Capability::Contacts)
            .uses(Capability::Kv)
            .connection(WH)
            .connection(GHL)
    }

    fn handle(_: Event) -> Result<Outcome> {
        let s: Settings = settings::get()?;
        let through = kv::get::<String>(SYNCED_THROUGH)?;
        let mut p = kv::get::<Progress>(IN_FLIGHT)?.unwrap_or(Progress {
            since: through.clone(),
            at: through,
            ..Progress::default()
        });
        let rows_before = p.rows;
        let started = std::time::Instant::now();
        let (mut synced, mut skipped) = (0, 0);
        let request = data_export::ExportRequest {
            table: "Prospects".into(),
            scope: s.community.clone(),
            updated_after: p.since.clone(),
            page_size: Some(s.page_size),
            snapshot: false,
        };
        let mut page = data_export::open(WH, &request)?;
        loop {
            for row in &page.rows {
                let cell = |name: &str| cell(&page.columns, row, name);
                let (id, updated_at) = (cell("id").unwrap_or_default(), cell("updated_at"));
                if updated_at == p.at && p.ids.contains(&id) {
                    continue; // synced before the run that wrote `p` stopped
                }
                if sync(&s, &id, &cell)? {
                    synced += 1;
                } else {
                    skipped += 1;
                }
                if updated_at != p.at {
                    p.since = std::mem::replace(&mut p.at, updated_at);
                    p.ids.clear();
                }
                p.ids.push(id);
                p.rows += 1;
                kv::set(IN_FLIGHT, &p)?;
                if started.elapsed().as_secs() >= s.run_seconds {
                    let done = format!("{synced} prospect(s) synced, {skipped} skipped; going on");
                    return Ok(Outcome::deferred(clock::after_ms(0), done));
                }
            }
            match page.next.take() {
                Some(cursor) => page = data_export::next_page(WH, &cursor)?,
                None => break,
            }
        }
        // Complete: the next export starts after the newest row seen.
        if let Some(at) = &p.at {
            kv::set(SYNCED_THROUGH, at)?;
        }
        kv::delete(IN_FLIGHT)?;
        let through = p.at.as_deref().unwrap_or("the start");
        if p.rows == 0 {
            return Ok(Outcome::skipped(format!("no prospect changed after {through}")));
        }
        let mut summary =
            format!("{synced} prospect(s) synced, {skipped} skipped, through {through}");
        if rows_before > 0 {
            summary += &format!(" (resumed an export {rows_before} row(s) in)");
        }
        Ok(Outcome::done(summary))
    }
}

/// The cell of `row` in column `name`, if it has a value.
fn cell(columns: &[String], row: &[String], name: &str) -> Option<String> {
    let i = columns.iter().position(|c| c == name)?;
    row.get(i).filter(|v| !v.trim().is_empty()).cloned()
}

/// Upsert one prospect as a GHL contact; `false` when it cannot be (skipped, and logged).
fn sync(s: &Settings, id: &str, cell: &dyn Fn(&str) -> Option<String>) -> Result<bool> {
    let contact = Contact {
        first_name: cell("first_name"),
        last_name: cell("last_name"),
        emails: cell("email").into_iter().collect(),
        phones: (cell("phone").as_deref().and_then(contacts::e164))
            .map(|number| Phone { kind: PhoneKind::Mobile, number })
            .into_iter()
            .collect(),
        tags: s.tags.clone(),
        source: Some(s.source.clone()),
        ..contacts::empty()
    };
    if contact.emails.is_empty() && contact.phones.is_empty() {
        log::warn(&format!("prospect {id} has no email or phone: skipped"));
        return Ok(false);
    }
    match contacts::upsert(GHL, &contact) {
        Ok(_) => Ok(true),
        Err(Error::Invalid { field, reason }) => {
            log::warn(&format!("prospect {id} refused ({field}: {reason}): skipped"));
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

export_recipe!(WelcomeHomeProspectsToGhl, settings = Settings);
