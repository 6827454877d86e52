//! `probe`: a test guest that does what each event's payload asks, to exercise the sandbox:
//! kv, capability grants, loops, memory bombs, panics, output floods, WASI reach.

use serde::Deserialize;
use switchboard_sdk::prelude::*;

struct Probe;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum Op {
    KvGet {
        key: String,
    },
    KvSet {
        key: String,
        value: String,
    },
    KvSetBytes {
        key: String,
        len: usize,
    },
    KvList {
        prefix: String,
    },
    KvGetRaw {
        key: String,
    },
    KvIncrement {
        key: String,
        by: i64,
    },
    Loop,
    /// Loop, calling the host (the clock) on every turn.
    LoopCalls,
    /// Text `to` through `connection`.
    Sms {
        connection: String,
        to: String,
    },
    Alloc {
        mib: usize,
    },
    Bomb,
    Panic {
        message: String,
    },
    Print {
        bytes: usize,
    },
    LeadsList {
        connection: String,
    },
    ContactsGet {
        connection: String,
        id: String,
    },
    ContactsUpsert {
        connection: String,
        first_name: String,
        email: String,
    },
    ContactsSearch {
        connection: String,
        text: String,
    },
    Http {
        connection: String,
        path: String,
    },
    /// A raw `POST` (journaled by the host).
    HttpPost {
        connection: String,
        path: String,
    },
    Export {
        connection: String,
        table: String,
        page_size: u32,
    },
    Sandbox,
    /// An outcome of `bytes` bytes.
    Outcome {
        bytes: usize,
    },
    /// An error whose message is `bytes` bytes.
    Fail {
        bytes: usize,
    },
    /// `lines` warn lines of `bytes` bytes each.
    LogFlood {
        lines: usize,
        bytes: usize,
    },
    /// Write keys of `value_len`-byte values until kv refuses; the refusal is the outcome.
    KvFlood {
        value_len: usize,
    },
    /// Recurse `depth` deep (a stack overflow when it is too deep).
    Recurse {
        depth: u64,
    },
    /// Defer the run `ms` milliseconds.
    Defer {
        ms: u64,
    },
    /// Fail while kv has no `key`; succeed once it has (a run that a replay can fix).
    FailUnless {
        key: String,
    },
}

/// A function that cannot be turned into a loop: each frame keeps a buffer alive.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buffer = std::hint::black_box([depth as u8; 256]);
    if depth == 0 {
        return buffer[0] as u64;
    }
    recurse(depth - 1) + std::hint::black_box(buffer[255]) as u64
}

impl Recipe for Probe {
    fn manifest() -> Manifest {
        Manifest::new("probe", "0.1.0")
            .description("Test guest: does what the payload says")
            .on_webhook("test", "*")
            .uses(Capability::Kv)
            .uses(Capability::Contacts)
            .uses(Capability::VendorHttp)
            .uses(Capability::DataExport)
            .uses(Capability::Messages)
            .connection("ghl")
            .connection("wh")
    }

    fn handle(event: Event) -> Result<Outcome> {
        let done = |s: String| Ok(Outcome::done(s));
        match event.payload::<Op>()? {
            Op::KvGet { key } => done(kv::get::<String>(&key)?.unwrap_or_else(|| "<none>".into())),
            Op::KvSet { key, value } => {
                kv::set(&key, &value)?;
                done("set".into())
            }
            Op::KvSetBytes { key, len } => {
                kv::set_raw(&key, &vec![b'x'; len])?;
                done("set".into())
            }
            Op::KvList { prefix } => done(kv::list_keys(&prefix, None)?.join(",")),
            Op::KvGetRaw { key } => done(kv::get_raw(&key)?.map_or_else(
                || "<none>".into(),
                |v| String::from_utf8_lossy(&v).into_owned(),
            )),
            Op::KvIncrement { key, by } => done(kv::increment(&key, by)?.to_string()),
            Op::LoopCalls => loop {
                std::hint::black_box(clock::now("UTC")?);
            },
            Op::Sms { connection, to } => {
                let sent = messages::send(&connection, &messages::sms(&to, "hi"))?;
                done(format!("sent {}", sent.id.unwrap_or_default()))
            }
            Op::Loop => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Op::Alloc { mib } => {
                let v = vec![1u8; mib << 20];
                done(format!("allocated {}", std::hint::black_box(v).len()))
            }
            Op::Bomb => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            Op::Panic { message } => panic!("{message}"),
            Op::Print { bytes } => {
                let line = "x".repeat(99);
                for _ in 0..bytes / 100 {
                    println!("{line}");
                }
                done(format!("printed {bytes}"))
            }
            Op::LeadsList { connection } => {
                let page = leads::list(&connection, &query())?;
                done(format!("{} leads", page.leads.len()))
            }
            Op::ContactsGet { connection, id } => {
                let c = contacts::get(&connection, &id)?;
                done(format!("{:?}", c.id))
            }
            Op::ContactsUpsert {
                connection,
                first_name,
                email,
            } => {
                let up = contacts::upsert(
                    &connection,
                    &Contact {
                        first_name: Some(first_name),
                        emails: vec![email],
                        ..contacts::empty()
                    },
                )?;
                done(format!(
                    "{} created={}",
                    up.contact.id.unwrap_or_default(),
                    up.created
                ))
            }
            Op::ContactsSearch { connection, text } => {
                let page = contacts::search(
                    &connection,
                    &Query {
                        text: Some(text),
                        ..query()
                    },
                )?;
                let names: Vec<String> = page
                    .contacts
                    .into_iter()
                    .filter_map(|c| c.first_name)
                    .collect();
                done(names.join(","))
            }
            Op::Export {
                connection,
                table,
                page_size,
            } => {
                let mut page = data_export::open(
                    &connection,
                    &data_export::ExportRequest {
                        table,
                        scope: None,
                        updated_after: None,
                        page_size: Some(page_size),
                        snapshot: false,
                    },
                )?;
                let mut rows = page.rows.len();
                let mut pages = 1;
                while let Some(cursor) = page.next.clone() {
                    page = data_export::next_page(&connection, &cursor)?;
                    rows += page.rows.len();
                    pages += 1;
                }
                done(format!(
                    "{} rows in {pages} pages, columns {}",
                    rows,
                    page.columns.join("|")
                ))
            }
            Op::HttpPost { connection, path } => {
                let request = vendor_http::Request {
                    method: "POST".into(),
                    path,
                    query: vec![],
                    headers: vec![],
                    body: Some(b"{}".to_vec()),
                };
                let res = vendor_http::send(&connection, &request)?;
                done(format!(
                    "{} {}",
                    res.status,
                    String::from_utf8_lossy(&res.body)
                ))
            }
            Op::Http { connection, path } => {
                let res = vendor_http::get(&connection, &path)?;
                done(format!(
                    "{} {}",
                    res.status,
                    String::from_utf8_lossy(&res.body)
                ))
            }
            Op::Outcome { bytes } => done("o".repeat(bytes)),
            Op::Fail { bytes } => Err(Error::other("e".repeat(bytes))),
            Op::FailUnless { key } => match kv::get::<String>(&key)? {
                Some(_) => done(format!("{key} is set")),
                None => Err(Error::other(format!("{key} is not set yet"))),
            },
            Op::LogFlood { lines, bytes } => {
                let line = "l".repeat(bytes);
                for _ in 0..lines {
                    log::warn(&line);
                }
                done(format!("logged {lines} lines"))
            }
            Op::KvFlood { value_len } => {
                let value = vec![b'v'; value_len];
                for n in 0u64.. {
                    if let Err(e) = kv::set_raw(&format!("flood/{n:08}"), &value) {
                        return done(format!("{n} keys written, then: {e}"));
                    }
                }
                unreachable!()
            }
            Op::Recurse { depth } => done(format!("recursed: {}", recurse(depth))),
            Op::Defer { ms } => Ok(Outcome::deferred(clock::after_ms(ms), "asked to")),
            Op::Sandbox => {
                let env = std::env::vars().count();
                let args = std::env::args().count();
                let fs = std::fs::read_dir("/").is_ok() || std::fs::read_dir(".").is_ok();
                let file = std::fs::read_to_string("/etc/passwd").is_ok();
                let net = std::net::TcpStream::connect("127.0.0.1:1").is_ok();
                done(format!(
                    "env={env} args={args} fs={fs} file={file} net={net}"
                ))
            }
        }
    }
}

export_recipe!(Probe);
