-- Settle a run and claim the next in one round trip: the worker slot the run held takes its
-- next run as it gives this one back, so a busy host makes one call per run where it made a
-- settle and a claim (plus a wake-up of its dispatcher between them). Measured: with a
-- recipe at its concurrency most of the time went to waiting between those calls, the server
-- half idle.
--
-- The settle is refused (SQLSTATE SBL01, nothing written) unless the lease is still the
-- run's; the claim (claim_runs, as a host's dispatcher calls it, for up to p_max runs of
-- p_holder) is made only when the settle was written, in the same transaction, so it
-- counts the slot the settle freed. p_max = 0 settles alone.
CREATE FUNCTION settle_claim(p_id text, p_status text, p_attempts integer, p_replays integer,
                             p_deferrals integer, p_now bigint, p_next_attempt bigint,
                             p_started bigint, p_finished bigint, p_due bigint,
                             p_unconfirmed boolean, p_detail text, p_token bigint,
                             p_holder text, p_logs text, p_clear_logs boolean, p_attempt text,
                             p_expires bigint, p_max integer, p_default integer,
                             p_plugins text[], p_limits integer[])
RETURNS TABLE (id text, event_id text, plugin text, source text, kind text, status text,
               order_key text, attempts integer, replays integer, deferrals integer,
               created_ms bigint, updated_ms bigint, next_attempt_ms bigint, started_ms bigint,
               due_ms bigint, finished_ms bigint, lease_token bigint, lease_holder text,
               detail text, waiting_for text,
               e_id text, e_source text, e_kind text, e_time text, e_payload text,
               e_delivery text, e_received bigint, e_window bigint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    written bigint;
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
        RETURNING runs.id
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
    SELECT count(*) INTO written FROM u;
    IF written = 0 THEN
        RAISE EXCEPTION 'run %: lease % is no longer the run''s', p_id, p_token
            USING ERRCODE = 'SBL01';
    END IF;
    IF p_max > 0 THEN
        RETURN QUERY SELECT * FROM claim_runs(p_holder, p_now, p_expires, p_max, p_default,
                                              p_plugins, p_limits);
    END IF;
END
$$;
