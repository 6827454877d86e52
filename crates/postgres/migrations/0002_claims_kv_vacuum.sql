-- The statements inside claim_runs and kv_write are planned once per connection and then
-- reused (generic plans) instead of planned again on every call: planning took as long as
-- running them (pg_stat_statements: half of each call's time was outside its statements).
-- A generic plan is made for the table as it is at the time (empty at a host's first
-- claim; a backlog of due runs when autovacuum's ANALYZE makes it plan again), so each of
-- claim_runs' statements is a plain index probe or range whose plan cannot turn into a scan
-- of the backlog (sequential, bitmap and sorting plans are off for it; seen: a bitmap scan
-- of every due run, 8 ms a claim), and it claims its runs one primary key at a time. A
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
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
#variable_conflict use_column
DECLARE
    recipe record;
    ids text[] := '{}';
    dues bigint[] := '{}';
    seqs bigint[] := '{}';
    chosen text[];
    one text;
BEGIN
    -- One lock per schema: deployments in other schemas of the database claim apart.
    PERFORM pg_advisory_xact_lock(hashtext('switchboard claims'), hashtext(current_schema()));
    -- Each statement below sees every claim committed before the lock was ours.
    -- The recipes with unfinished runs (a skip scan: one index probe per recipe), each with
    -- its room (its limit less its runs in flight anywhere under an unexpired lease)...
    FOR recipe IN
        WITH RECURSIVE recipes(plugin) AS (
            (SELECT r.plugin FROM runs r WHERE r.due_ms IS NOT NULL ORDER BY r.plugin LIMIT 1)
            UNION ALL
            SELECT (SELECT r.plugin FROM runs r
                    WHERE r.due_ms IS NOT NULL AND r.plugin > recipes.plugin
                    ORDER BY r.plugin LIMIT 1)
            FROM recipes WHERE recipes.plugin IS NOT NULL
        )
        SELECT recipes.plugin,
               coalesce(lim.l, p_default)
                 - (SELECT count(*) FROM runs b WHERE b.plugin = recipes.plugin
                      AND b.status = 'running' AND b.due_ms > p_now) AS room
        FROM recipes
        LEFT JOIN unnest(p_plugins, p_limits) AS lim(plugin, l) ON lim.plugin = recipes.plugin
        WHERE recipes.plugin IS NOT NULL
    LOOP
        CONTINUE WHEN recipe.room <= 0;
        -- ...and the first due runs of each recipe with room, each key's first only: one
        -- range of the (recipe, due, seq) index, so the work does not grow with a backlog.
        -- A run of a key one of whose runs is running under a live lease waits too: two
        -- accepts committing out of their seq order (batches written at once, or hosts)
        -- must not let the later-numbered run that committed first run beside the other.
        SELECT ids || coalesce(array_agg(c.id), '{}'), dues || coalesce(array_agg(c.due_ms), '{}'),
               seqs || coalesce(array_agg(c.seq), '{}')
        INTO ids, dues, seqs
        FROM (SELECT r.id, r.due_ms, r.seq FROM runs r
              WHERE r.plugin = recipe.plugin AND r.due_ms IS NOT NULL AND r.due_ms <= p_now
                AND (r.order_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM runs o WHERE o.plugin = r.plugin
                      AND o.order_key = r.order_key AND o.due_ms IS NOT NULL AND o.id <> r.id
                      AND (o.seq < r.seq OR (o.status = 'running' AND o.due_ms > p_now))))
              ORDER BY r.due_ms, r.seq
              LIMIT least(recipe.room, p_max)) c;
    END LOOP;
    -- The oldest due of them all.
    SELECT array_agg(x.id ORDER BY x.due_ms, x.seq) INTO chosen
    FROM (SELECT * FROM unnest(ids, dues, seqs) AS t(id, due_ms, seq)
          ORDER BY t.due_ms, t.seq LIMIT p_max) x;
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

-- kv_write again: writers of one key take turns on a lock of the key (an advisory lock:
-- a key not yet written has no row to lock), and only a write that changes the space's
-- size holds the recipe's usage row, after the key's lock (one order: no deadlock). Same-
-- size overwrites of different keys no longer wait for each other, and none rewrites the
-- usage row. o_keys and o_bytes are null when the usage was not read (nothing changed).
CREATE OR REPLACE FUNCTION kv_write(p_recipe text, p_key text, p_check boolean,
                                    p_expected bytea, p_new bytea, p_max_keys bigint,
                                    p_max_bytes bigint,
                                    OUT o_written boolean, OUT o_existed boolean,
                                    OUT o_keys bigint, OUT o_bytes bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    old bytea;
    dk bigint;
    db bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '/' || p_recipe),
                                  hashtext(p_key));
    -- A statement after the lock: sees what the previous holder committed.
    SELECT k.value INTO old FROM kv k WHERE k.recipe = p_recipe AND k.key = p_key;
    o_existed := FOUND;
    IF p_check AND old IS DISTINCT FROM p_expected THEN
        o_written := false;
        RETURN;
    END IF;
    dk := (p_new IS NOT NULL)::int - o_existed::int;
    db := coalesce(octet_length(p_key) + octet_length(p_new), 0)
          - coalesce(octet_length(p_key) + octet_length(old), 0);
    IF dk <> 0 OR db <> 0 THEN
        -- Within the quota, or not at all (growing); shrinking always fits.
        UPDATE kv_usage u SET keys = u.keys + dk, bytes = u.bytes + db
        WHERE u.recipe = p_recipe
          AND (dk <= 0 OR u.keys + dk <= p_max_keys)
          AND (db <= 0 OR u.bytes + db <= p_max_bytes)
        RETURNING u.keys, u.bytes INTO o_keys, o_bytes;
        IF NOT FOUND THEN
            INSERT INTO kv_usage (recipe) VALUES (p_recipe) ON CONFLICT (recipe) DO NOTHING;
            UPDATE kv_usage u SET keys = u.keys + dk, bytes = u.bytes + db
            WHERE u.recipe = p_recipe
              AND (dk <= 0 OR u.keys + dk <= p_max_keys)
              AND (db <= 0 OR u.bytes + db <= p_max_bytes)
            RETURNING u.keys, u.bytes INTO o_keys, o_bytes;
        END IF;
        IF NOT FOUND THEN
            -- Refused: say what the space would have held.
            SELECT u.keys + dk, u.bytes + db INTO o_keys, o_bytes
            FROM kv_usage u WHERE u.recipe = p_recipe;
            o_written := NULL;
            RETURN;
        END IF;
    END IF;
    IF p_new IS NULL THEN
        DELETE FROM kv k WHERE k.recipe = p_recipe AND k.key = p_key;
    ELSE
        INSERT INTO kv AS k (recipe, key, value) VALUES (p_recipe, p_key, p_new)
        ON CONFLICT (recipe, key) DO UPDATE SET value = EXCLUDED.value;
    END IF;
    o_written := true;
END
$$;

-- The list indexes by status hold finished runs only: a claim (queued to running) or a
-- retry no longer writes entries to them (runs move through the queue many times a second;
-- a list of queued or running runs reads the claim indexes' unfinished runs instead).
DROP INDEX runs_status;
CREATE INDEX runs_status ON runs (status, created_ms DESC, id DESC) WHERE due_ms IS NULL;
DROP INDEX runs_plugin;
CREATE INDEX runs_plugin ON runs (plugin, status, created_ms DESC, id DESC) WHERE due_ms IS NULL;

-- Vacuumed as soon as a thousand rows died: every claim and settle leaves a dead version of
-- a run (and one entry in each of its indexes), a kv counter a dead version per update.
-- Between vacuums the dead entries make every claim and settle slower (measured: the cost
-- per event doubled within minutes with the server's default autovacuum_naptime of a
-- minute; steady with 5 s). autovacuum_naptime is the server's; the README recommends 5 s.
ALTER TABLE runs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                      autovacuum_analyze_scale_factor = 0.05, autovacuum_vacuum_cost_delay = 0);
ALTER TABLE kv SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                    autovacuum_vacuum_cost_delay = 0);
ALTER TABLE kv_usage SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                          autovacuum_vacuum_cost_delay = 0);
ALTER TABLE run_logs SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                          autovacuum_vacuum_cost_delay = 0);
