-- Settle a run and claim the next in one round trip: the worker slot the run held takes its
-- next run as it gives this one back, so a busy host makes one call per run where it made a
-- settle and a claim (plus a wake-up of its dispatcher between them). Measured: with a
-- recipe at its concurrency most of the time went to waiting between those calls, the server
-- half idle.
--
-- The settle is refused (SQLSTATE SBL01, nothing written) unless the lease is still the
-- run's. Then, in the same transaction, up to p_max runs are claimed for p_holder (p_max = 0
-- settles alone):
-- - p_handover, and the run's lease had not expired (p_live): the slot hands the room its run
--   held in the recipe's concurrency to the recipe's next due run (per-key order as in
--   claim_runs), without the claim lock. One run ends and one starts, so the recipe's count of
--   runs in flight is what it was, whoever counts meanwhile; and none is handed over if the
--   recipe's limit (paused: 0) is below its other runs in flight plus one. The host asks for
--   this only while it has other free worker slots, whose claims take the other recipes' due
--   runs, oldest first: a recipe with a backlog cannot keep another recipe's runs waiting.
-- - otherwise: as claim_runs, under its lock, oldest due first over every recipe.
CREATE FUNCTION settle_claim(p_id text, p_status text, p_attempts integer, p_replays integer,
                             p_deferrals integer, p_now bigint, p_next_attempt bigint,
                             p_started bigint, p_finished bigint, p_due bigint,
                             p_unconfirmed boolean, p_detail text, p_token bigint,
                             p_holder text, p_logs text, p_clear_logs boolean, p_attempt text,
                             p_expires bigint, p_max integer, p_default integer,
                             p_plugins text[], p_limits integer[], p_handover boolean,
                             p_live boolean)
RETURNS TABLE (id text, event_id text, plugin text, source text, kind text, status text,
               order_key text, attempts integer, replays integer, deferrals integer,
               created_ms bigint, updated_ms bigint, next_attempt_ms bigint, started_ms bigint,
               due_ms bigint, finished_ms bigint, lease_token bigint, lease_holder text,
               detail text, waiting_for text,
               e_id text, e_source text, e_kind text, e_time text, e_payload text,
               e_delivery text, e_received bigint, e_window bigint)
LANGUAGE plpgsql
-- Plans as claim_runs' (migration 2): made once per connection, index ranges only.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
#variable_conflict use_column
DECLARE
    written bigint;
    recipe text;
BEGIN
    -- The run, its log (kept, replaced or removed) and its attempt, if the lease is its own.
    WITH u AS (
        UPDATE runs SET status = p_status, attempts = p_attempts, replays = p_replays,
            deferrals = p_deferrals, updated_ms = p_now, next_attempt_ms = p_next_attempt,
            started_ms = p_started, finished_ms = p_finished, due_ms = p_due,
            lease_token = NULL, lease_holder = NULL, unconfirmed = p_unconfirmed,
            detail = p_detail
        WHERE runs.id = p_id AND runs.status = 'running' AND runs.lease_token = p_token
          AND runs.lease_holder = p_holder
        RETURNING runs.id, runs.plugin
    ), put AS (
        INSERT INTO run_logs (run_id, lines) SELECT u.id, p_logs FROM u WHERE p_logs IS NOT NULL
        ON CONFLICT (run_id) DO UPDATE SET lines = EXCLUDED.lines
    ), gone AS (
        DELETE FROM run_logs WHERE p_clear_logs AND p_logs IS NULL
          AND run_id IN (SELECT u.id FROM u)
    ), attempt AS (
        INSERT INTO run_attempts (run_id, record)
        SELECT u.id, p_attempt FROM u WHERE p_attempt IS NOT NULL
    )
    SELECT count(*), min(u.plugin) INTO written, recipe FROM u;
    IF written = 0 THEN
        RAISE EXCEPTION 'run %: lease % is no longer the run''s', p_id, p_token
            USING ERRCODE = 'SBL01';
    END IF;
    IF p_max <= 0 THEN
        RETURN;
    END IF;
    IF NOT (p_handover AND p_live) THEN
        RETURN QUERY SELECT * FROM claim_runs(p_holder, p_now, p_expires, p_max, p_default,
                                              p_plugins, p_limits);
        RETURN;
    END IF;
    -- One statement: the room check is evaluated once, before any run is looked at.
    RETURN QUERY
    WITH next AS (
        SELECT r.id FROM runs r
        WHERE coalesce((SELECT lim.l FROM unnest(p_plugins, p_limits) AS lim(plugin, l)
                        WHERE lim.plugin = recipe LIMIT 1), p_default)
              > (SELECT count(*) FROM runs b WHERE b.plugin = recipe
                   AND b.status = 'running' AND b.due_ms > p_now)
          AND r.plugin = recipe AND r.due_ms IS NOT NULL AND r.due_ms <= p_now
          AND (r.order_key IS NULL OR NOT EXISTS (
              SELECT 1 FROM runs o WHERE o.plugin = r.plugin
                AND o.order_key = r.order_key AND o.due_ms IS NOT NULL AND o.id <> r.id
                AND (o.seq < r.seq OR (o.status = 'running' AND o.due_ms > p_now))))
        ORDER BY r.due_ms, r.seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE runs SET status = 'running', attempts = attempts + 1, started_ms = p_now,
            updated_ms = p_now, next_attempt_ms = NULL, due_ms = p_expires,
            lease_token = nextval('lease_tokens'), lease_holder = p_holder
        WHERE runs.id = (SELECT next.id FROM next)
        RETURNING *
    )
    SELECT c.id, c.event_id, c.plugin, c.source, c.kind, c.status, c.order_key,
           c.attempts, c.replays, c.deferrals, c.created_ms, c.updated_ms,
           c.next_attempt_ms, c.started_ms, c.due_ms, c.finished_ms, c.lease_token,
           c.lease_holder, c.detail, NULL::text,
           e.id, e.source, e.kind, e.time, e.payload, e.delivery_id, e.received_ms,
           e.window_ms
    FROM claimed c LEFT JOIN events e ON e.id = c.event_id;
END
$$;
