-- The statements inside claim_runs and kv_write are planned once per connection and then
-- reused (generic plans) instead of planned again on every call: planning took as long as
-- running them (pg_stat_statements: half of each call's time was outside its statements).
-- A generic plan is made for the table as it is then (empty, at a host's first claim), so
-- both forbid sequential scans, and claim_runs claims its runs one primary key at a time. A
-- claim also returns each run's event (one round trip instead of two).
DROP FUNCTION claim_runs(text, bigint, bigint, integer, integer, text[], integer[]);
CREATE FUNCTION claim_runs(p_holder text, p_now bigint, p_expires bigint, p_max integer,
                           p_default integer, p_plugins text[], p_limits integer[])
RETURNS TABLE (id text, event_id text, plugin text, source text, kind text, status text,
               order_key text, attempts integer, replays integer, deferrals integer,
               created_ms bigint, updated_ms bigint, next_attempt_ms bigint, started_ms bigint,
               due_ms bigint, finished_ms bigint, lease_token bigint, lease_holder text,
               detail text, waiting_for text,
               e_id text, e_source text, e_kind text, e_time text, e_payload text,
               e_delivery text, e_received bigint, e_window bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    full_ text[];
    chosen text[];
    one text;
BEGIN
    -- One lock per schema: deployments in other schemas of the database claim apart.
    PERFORM pg_advisory_xact_lock(hashtext('switchboard claims'), hashtext(current_schema()));
    -- Each statement below sees every claim committed before the lock was ours.
    SELECT coalesce(array_agg(b.plugin), '{}') INTO full_
    FROM (SELECT plugin, count(*) AS n FROM runs
          WHERE status = 'running' AND due_ms > p_now GROUP BY plugin) b
    LEFT JOIN unnest(p_plugins, p_limits) AS lim(plugin, l) ON lim.plugin = b.plugin
    WHERE b.n >= coalesce(lim.l, p_default);
    -- The recipes with unfinished runs (a skip scan: one index probe per recipe), those
    -- with room, and each one's first due runs (one index range per recipe): the work
    -- does not grow with a backlog of a recipe at its concurrency.
    SELECT array_agg(x.id ORDER BY x.due_ms, x.seq) INTO chosen FROM (
        WITH RECURSIVE recipes(plugin) AS (
            (SELECT r.plugin FROM runs r WHERE r.due_ms IS NOT NULL ORDER BY r.plugin LIMIT 1)
            UNION ALL
            SELECT (SELECT r.plugin FROM runs r
                    WHERE r.due_ms IS NOT NULL AND r.plugin > recipes.plugin
                    ORDER BY r.plugin LIMIT 1)
            FROM recipes WHERE recipes.plugin IS NOT NULL
        ), room AS (
            SELECT recipes.plugin,
                   coalesce(lim.l, p_default) - coalesce(busy.n, 0) AS n
            FROM recipes
            LEFT JOIN (SELECT b.plugin, count(*) AS n FROM runs b
                       WHERE b.status = 'running' AND b.due_ms > p_now GROUP BY b.plugin) busy
                   ON busy.plugin = recipes.plugin
            LEFT JOIN unnest(p_plugins, p_limits) AS lim(plugin, l)
                   ON lim.plugin = recipes.plugin
            WHERE recipes.plugin IS NOT NULL AND recipes.plugin <> ALL(full_)
        )
        SELECT c.id, c.due_ms, c.seq
        FROM room, LATERAL (
            SELECT r.id, r.due_ms, r.seq FROM runs r
            WHERE r.plugin = room.plugin AND r.due_ms IS NOT NULL AND r.due_ms <= p_now
              AND (r.order_key IS NULL OR NOT EXISTS (
                  SELECT 1 FROM runs o WHERE o.plugin = r.plugin
                    AND o.order_key = r.order_key AND o.due_ms IS NOT NULL AND o.seq < r.seq))
            ORDER BY r.due_ms, r.seq
            LIMIT least(room.n, p_max)
        ) c
        WHERE room.n > 0
        ORDER BY c.due_ms, c.seq
        LIMIT p_max
    ) x;
    IF chosen IS NULL THEN
        RETURN;
    END IF;
    -- Each chosen run with its event, claimed by its primary key (a plan that stays right
    -- however big the table has grown since it was made), in the statement that claims it
    -- (so it sees the event its accept wrote).
    FOREACH one IN ARRAY chosen LOOP
        RETURN QUERY
        WITH claimed AS (
            UPDATE runs SET status = 'running', attempts = attempts + 1, started_ms = p_now,
                updated_ms = p_now, next_attempt_ms = NULL, due_ms = p_expires,
                lease_token = nextval('lease_tokens'), lease_holder = p_holder
            WHERE id = (SELECT r.id FROM runs r WHERE r.id = one AND r.due_ms IS NOT NULL
                          AND r.due_ms <= p_now FOR UPDATE SKIP LOCKED)
            RETURNING *
        )
        SELECT c.id, c.event_id, c.plugin, c.source, c.kind, c.status, c.order_key,
               c.attempts, c.replays, c.deferrals, c.created_ms, c.updated_ms,
               c.next_attempt_ms, c.started_ms, c.due_ms, c.finished_ms, c.lease_token,
               c.lease_holder, c.detail, NULL::text,
               e.id, e.source, e.kind, e.time, e.payload, e.delivery_id, e.received_ms,
               e.window_ms
        FROM claimed c LEFT JOIN events e ON e.id = c.event_id;
    END LOOP;
END
$$;

ALTER FUNCTION kv_write(text, text, boolean, bytea, bytea, bigint, bigint)
    SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION kv_write(text, text, boolean, bytea, bytea, bigint, bigint)
    SET enable_seqscan = off;
