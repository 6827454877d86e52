-- Settles in batches: the settles a host's worker slots make while its previous batch is
-- being written go in one call (group commit, as accepts do), each statement below written
-- once for the whole batch, not once per run. Measured before: a settle_claim call was ~1 ms
-- of which executor start-up, the call itself and its commit were most; the rows written are
-- the same either way.
--
-- Item i of the arrays is one settle_claim call (migration 6), with the same meaning, except
-- that the claims of a batch are made with one moment (p_claim_now), one lease expiry and
-- one set of limits (a host's, the last settle's). Each row returned names the item it is
-- for (item, 1-based): a run claimed for it, or, with every other column null, a refusal
-- (the lease was no longer the run's; nothing of that item was written). Run ids are
-- distinct within a batch.
CREATE FUNCTION settle_claim_many(p_ids text[], p_status text[], p_attempts integer[],
                                  p_replays integer[], p_deferrals integer[], p_now bigint[],
                                  p_next_attempt bigint[], p_started bigint[],
                                  p_finished bigint[], p_due bigint[], p_unconfirmed boolean[],
                                  p_detail text[], p_tokens bigint[], p_holder text,
                                  p_logs text[], p_clear_logs boolean[], p_attempt text[],
                                  p_max integer[], p_handover boolean[], p_live boolean[],
                                  p_claim_now bigint, p_expires bigint, p_default integer,
                                  p_plugins text[], p_limits integer[])
RETURNS TABLE (item integer, id text, event_id text, plugin text, source text, kind text,
               status text, order_key text, attempts integer, replays integer,
               deferrals integer, created_ms bigint, updated_ms bigint,
               next_attempt_ms bigint, started_ms bigint, due_ms bigint, finished_ms bigint,
               lease_token bigint, lease_holder text, detail text, waiting_for text,
               e_id text, e_source text, e_kind text, e_time text, e_payload text,
               e_delivery text, e_received bigint, e_window bigint)
LANGUAGE plpgsql
-- Plans as claim_runs' (migration 2): made once per connection, index ranges only; and every
-- join a nested loop of index probes. (A hand-over's LIMIT is not a constant, so its plan is
-- made for a tenth of the recipe's due runs: seen, a hash join reading every event, 9 ms a
-- call.)
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
#variable_conflict use_column
DECLARE
    settled integer[];
    recipes text[];
    recipe text;
    items integer[];
    refused integer;
BEGIN
    -- Every run whose lease is still its own, with its log (kept, replaced or removed) and
    -- its attempt, in one statement.
    WITH i AS (
        SELECT * FROM unnest(p_ids, p_status, p_attempts, p_replays, p_deferrals, p_now,
                             p_next_attempt, p_started, p_finished, p_due, p_unconfirmed,
                             p_detail, p_tokens, p_logs, p_clear_logs, p_attempt)
            WITH ORDINALITY AS t(id, status, attempts, replays, deferrals, now, next_attempt,
                                 started, finished, due, unconfirmed, detail, token, logs,
                                 clear_logs, attempt, n)
    ), u AS (
        UPDATE runs SET status = i.status, attempts = i.attempts, replays = i.replays,
            deferrals = i.deferrals, updated_ms = i.now, next_attempt_ms = i.next_attempt,
            started_ms = i.started, finished_ms = i.finished, due_ms = i.due,
            lease_token = NULL, lease_holder = NULL, unconfirmed = i.unconfirmed,
            detail = i.detail
        FROM i
        WHERE runs.id = i.id AND runs.status = 'running' AND runs.lease_token = i.token
          AND runs.lease_holder = p_holder
        RETURNING i.n, runs.id, runs.plugin, i.logs, i.clear_logs, i.attempt
    ), put AS (
        INSERT INTO run_logs (run_id, lines) SELECT u.id, u.logs FROM u WHERE u.logs IS NOT NULL
        ON CONFLICT (run_id) DO UPDATE SET lines = EXCLUDED.lines
    ), gone AS (
        DELETE FROM run_logs WHERE run_id IN (SELECT u.id FROM u
                                              WHERE u.clear_logs AND u.logs IS NULL)
    ), attempt AS (
        INSERT INTO run_attempts (run_id, record)
        SELECT u.id, u.attempt FROM u WHERE u.attempt IS NOT NULL
    )
    SELECT coalesce(array_agg(u.n::integer), '{}'), coalesce(array_agg(u.plugin), '{}')
    INTO settled, recipes FROM u;
    -- The refused, first (every other column of the row is still null).
    FOR refused IN
        SELECT s.n FROM generate_subscripts(p_ids, 1) AS s(n) WHERE s.n <> ALL(settled)
    LOOP
        item := refused;
        RETURN NEXT;
    END LOOP;
    -- Hand-overs, one statement per recipe: its k settled runs' places in its concurrency go
    -- to its next k due runs (fewer if its limit is below its other runs in flight plus k).
    FOR recipe, items IN
        SELECT s.plugin, array_agg(s.n)
        FROM unnest(settled, recipes) AS s(n, plugin)
        WHERE p_max[s.n] > 0 AND p_handover[s.n] AND p_live[s.n]
        GROUP BY s.plugin
    LOOP
        RETURN QUERY
        WITH next AS (
            SELECT r.id FROM runs r
            WHERE r.plugin = recipe AND r.due_ms IS NOT NULL AND r.due_ms <= p_claim_now
              AND (r.order_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM runs o WHERE o.plugin = r.plugin
                    AND o.order_key = r.order_key AND o.due_ms IS NOT NULL AND o.id <> r.id
                    AND (o.seq < r.seq OR (o.status = 'running' AND o.due_ms > p_claim_now))))
            ORDER BY r.due_ms, r.seq
            LIMIT greatest(0, least(cardinality(items),
                coalesce((SELECT lim.l FROM unnest(p_plugins, p_limits) AS lim(plugin, l)
                          WHERE lim.plugin = recipe LIMIT 1), p_default)
                - (SELECT count(*) FROM runs b WHERE b.plugin = recipe
                     AND b.status = 'running' AND b.due_ms > p_claim_now)))
            FOR UPDATE SKIP LOCKED
        ), claimed AS (
            UPDATE runs SET status = 'running', attempts = attempts + 1,
                started_ms = p_claim_now, updated_ms = p_claim_now, next_attempt_ms = NULL,
                due_ms = p_expires, lease_token = nextval('lease_tokens'),
                lease_holder = p_holder
            WHERE runs.id IN (SELECT next.id FROM next)
            RETURNING *
        )
        SELECT items[row_number() OVER ()]::integer, c.id, c.event_id, c.plugin, c.source,
               c.kind, c.status, c.order_key, c.attempts, c.replays, c.deferrals,
               c.created_ms, c.updated_ms, c.next_attempt_ms, c.started_ms, c.due_ms,
               c.finished_ms, c.lease_token, c.lease_holder, c.detail, NULL::text,
               e.id, e.source, e.kind, e.time, e.payload, e.delivery_id, e.received_ms,
               e.window_ms
        FROM claimed c LEFT JOIN events e ON e.id = c.event_id;
    END LOOP;
    -- The rest claim as claim_runs does, under its lock: one call for all of them, its runs
    -- dealt out in item order (an item asking for m runs gets up to m).
    SELECT coalesce(array_agg(s.n), '{}') INTO items
    FROM unnest(settled) AS s(n), generate_series(1, p_max[s.n])
    WHERE p_max[s.n] > 0 AND NOT (p_handover[s.n] AND p_live[s.n]);
    IF cardinality(items) > 0 THEN
        RETURN QUERY
        SELECT items[row_number() OVER ()]::integer, c.*
        FROM claim_runs(p_holder, p_claim_now, p_expires, cardinality(items), p_default,
                        p_plugins, p_limits) AS c;
    END IF;
END
$$;
