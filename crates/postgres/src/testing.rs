//! A database for tests: `SWITCHBOARD_TEST_DATABASE_URL` when set, else a throwaway cluster
//! this process starts once ([`crate::cluster`]) and a watcher removes when it ends. Each
//! test takes a schema of its own in it.

use crate::PgConfig;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The URL of the test database server, starting a cluster on first use.
///
/// # Panics
/// When there is no server and none can be started, saying what to install: a test that
/// needs PostgreSQL never passes without it.
pub fn database_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Some(url) = std::env::var("SWITCHBOARD_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        {
            return url;
        }
        crate::cluster::Cluster::start(None, &[])
            .map(crate::cluster::Cluster::keep_until_exit)
            .unwrap_or_else(|e| panic!("no PostgreSQL for the tests: {e}"))
    })
    .clone()
}

/// A schema name no other test (in this process or another) uses.
pub fn unique_schema(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}_{}_{}_{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A config for a fresh schema of the test database.
pub fn fresh_config(prefix: &str) -> PgConfig {
    PgConfig {
        url: database_url(),
        schema: unique_schema(prefix),
        pool_size: 4,
    }
}

/// Count statements in `url`'s database (the server must preload `pg_stat_statements`).
pub async fn enable_statement_counts(url: &str) {
    let pool = connect(url).await;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&pool)
        .await
        .expect("pg_stat_statements (preloaded?)");
}

/// Run `sql` (one statement) in `url`'s database.
pub async fn execute(url: &str, sql: &str) {
    let pool = connect(url).await;
    sqlx::query(sql)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Run `sql` (any number of statements) in `config`'s schema.
pub async fn execute_in(config: &PgConfig, sql: &str) {
    let pool = connect(&config.url).await;
    let sql = format!("SET search_path = {}; {sql}", config.schema);
    sqlx::raw_sql(&sql)
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The plans (`EXPLAIN`, as text) PostgreSQL makes in `config`'s schema for the settles'
/// statements as a host's settle connections run them (one generic plan per statement):
/// a lone settle of run `id` of `recipe` (lease token 1, holder `h`) at `now` that hands
/// its slot over, and a batch of that one settle.
pub async fn settle_plans(config: &PgConfig, id: &str, recipe: &str, now: i64) -> [String; 2] {
    let pool = connect(&config.url).await;
    let mut conn = pool.acquire().await.expect("a connection");
    let plans = format!(
        "SET search_path = {schema}; SET plan_cache_mode = force_generic_plan;          PREPARE one (text, text, int, int, int, bigint, bigint, bigint, bigint, bigint, \
                      bool, text, bigint, text, text, bool, text, bool, bigint, text, \
                      bigint) AS {one}; \
         PREPARE many (text[], text[], int[], int[], int[], bigint[], bigint[], bigint[], \
                       bigint[], bigint[], bool[], text[], bigint[], text, text[], bool[], \
                       text[], bool[], bigint, bigint, int, text[], int[]) AS {many};",
        schema = config.schema,
        one = *crate::settle::ENDED_ONE,
        many = *crate::settle::ENDED,
    );
    sqlx::raw_sql(&plans)
        .execute(&mut *conn)
        .await
        .expect("preparing the settles' statements");
    let (id, recipe) = (format!("'{id}'"), format!("'{recipe}'"));
    let one = format!(
        "EXPLAIN EXECUTE one({id}, 'succeeded', 1, 0, 0, {now}, NULL, {now},          {now}, NULL, false, NULL, 1, 'h', NULL, false, NULL, true, 4, {recipe}, {far})",
        far = now + 60_000,
    );
    let many = format!(
        "EXPLAIN EXECUTE many(ARRAY[{id}], ARRAY['succeeded'], ARRAY[1],          ARRAY[0], ARRAY[0], ARRAY[{now}::bigint], ARRAY[NULL::bigint],          ARRAY[{now}::bigint], ARRAY[{now}::bigint], ARRAY[NULL::bigint], ARRAY[false],          ARRAY[NULL::text], ARRAY[1::bigint], 'h', ARRAY[NULL::text], ARRAY[false],          ARRAY[NULL::text], ARRAY[true], {now}, {far}, 4, ARRAY[{recipe}], ARRAY[4])",
        far = now + 60_000,
    );
    let mut plans = Vec::new();
    for explain in [one, many] {
        let lines: Vec<String> = sqlx::query_scalar(&explain)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{explain}: {e}"));
        plans.push(lines.join("\n"));
    }
    plans.try_into().expect("two plans")
}

/// Forget the statements counted so far.
pub async fn reset_statement_counts(url: &str) {
    let pool = connect(url).await;
    sqlx::query("SELECT pg_stat_statements_reset()")
        .execute(&pool)
        .await
        .expect("resetting pg_stat_statements");
}

/// Statements executed since the last reset (every database and user), less the ones of
/// this counting itself.
pub async fn statement_count(url: &str) -> i64 {
    let pool = connect(url).await;
    sqlx::query_scalar(
        "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements \
         WHERE query NOT LIKE '%pg_stat_statements%'",
    )
    .fetch_one(&pool)
    .await
    .expect("reading pg_stat_statements")
}

async fn connect(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connecting to the database")
}

/// The `n` statements that took the most time since the last reset, one line each: total
/// and mean milliseconds, calls, rows, buffers read (from the cache or not) per call, the
/// milliseconds spent planning it (0 unless the server sets
/// `pg_stat_statements.track_planning`), and the statement's first words.
pub async fn top_statements(url: &str, n: usize) -> Vec<String> {
    let pool = connect(url).await;
    let rows: Vec<(f64, f64, i64, i64, f64, f64, String)> = sqlx::query_as(
        "SELECT total_exec_time, mean_exec_time, calls, rows, \
                (shared_blks_hit + shared_blks_read)::float8 / greatest(calls, 1), \
                total_plan_time, \
                regexp_replace(left(query, 110), '\\s+', ' ', 'g') \
         FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' \
         ORDER BY total_exec_time DESC LIMIT $1",
    )
    .bind(n as i64)
    .fetch_all(&pool)
    .await
    .expect("reading pg_stat_statements");
    rows.into_iter()
        .map(|(total, mean, calls, rows, blocks, planning, query)| {
            format!(
                "{total:>9.0} ms total {mean:>7.3} ms mean {calls:>7} calls {rows:>7} rows \
                 {blocks:>7.0} buffers a call {planning:>6.0} ms planning  {query}"
            )
        })
        .collect()
}

/// How often each index of the run table was read since the cluster started, one line
/// each (schema, index, scans, entries read): an index no statement reads still costs an
/// entry at every write of a run.
pub async fn run_index_scans(url: &str) -> Vec<String> {
    let pool = connect(url).await;
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT schemaname::text, indexrelname::text, idx_scan, idx_tup_read \
         FROM pg_stat_user_indexes WHERE relname = 'runs' ORDER BY schemaname, indexrelname",
    )
    .fetch_all(&pool)
    .await
    .expect("reading pg_stat_user_indexes");
    rows.into_iter()
        .map(|(schema, index, scans, read)| {
            format!("{schema}.{index}: {scans} scans, {read} entries read")
        })
        .collect()
}
