-- Switchboard's pipeline store on PostgreSQL: everything the sled backend keeps, as tables.
-- Times are Unix milliseconds (bigint). Names live in the schema the host is configured with
-- ([store] schema, default "switchboard").

-- Events as received (the payload byte for byte), while a run of theirs is kept.
CREATE TABLE events (
    id          text PRIMARY KEY,
    source      text   NOT NULL,
    kind        text   NOT NULL,
    time        text   NOT NULL,
    payload     text   NOT NULL,
    delivery_id text   NOT NULL,
    received_ms bigint NOT NULL,
    window_ms   bigint
);
CREATE INDEX events_delivery ON events (delivery_id);

-- Delivery marks: a (source, delivery id) seen at at_ms is a duplicate within its window.
CREATE TABLE deliveries (
    source      text   NOT NULL,
    delivery_id text   NOT NULL,
    event_id    text   NOT NULL,
    at_ms       bigint NOT NULL,
    PRIMARY KEY (source, delivery_id)
);
CREATE INDEX deliveries_at ON deliveries (at_ms);

-- Acceptance order of runs (per-key order), and fencing tokens of leases.
CREATE SEQUENCE run_seq;
CREATE SEQUENCE lease_tokens;
-- Event ids are handed out in blocks: block n is ids n * 1024 .. n * 1024 + 1023.
CREATE SEQUENCE event_id_blocks;

-- One row per (event, recipe). due_ms is set while the run is unfinished: when it may run
-- (queued) or when its lease expires (running); a finished run has none, so the claim index
-- holds only unfinished runs.
CREATE TABLE runs (
    id              text    PRIMARY KEY,
    event_id        text    NOT NULL,
    plugin          text    NOT NULL,
    source          text    NOT NULL,
    kind            text    NOT NULL,
    status          text    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    seq             bigint  NOT NULL,
    order_key       text,
    attempts        integer NOT NULL DEFAULT 0,
    replays         integer NOT NULL DEFAULT 0,
    deferrals       integer NOT NULL DEFAULT 0,
    created_ms      bigint  NOT NULL,
    updated_ms      bigint  NOT NULL,
    next_attempt_ms bigint,
    started_ms      bigint,
    finished_ms     bigint,
    due_ms          bigint,
    lease_token     bigint,
    lease_holder    text,
    unconfirmed     boolean NOT NULL DEFAULT false,
    -- The last attempt's outcome, error, reason, unconfirmed calls, duration, version (JSON).
    detail          text,
    CHECK ((due_ms IS NULL) = (status IN ('succeeded', 'failed', 'dead')))
);
CREATE INDEX runs_due ON runs (due_ms, seq) WHERE due_ms IS NOT NULL;
CREATE INDEX runs_running ON runs (plugin) WHERE status = 'running';
CREATE INDEX runs_plugin_due ON runs (plugin, due_ms, seq) WHERE due_ms IS NOT NULL;
CREATE INDEX runs_key ON runs (plugin, order_key, seq)
    WHERE order_key IS NOT NULL AND due_ms IS NOT NULL;
CREATE INDEX runs_created ON runs (created_ms DESC, id DESC);
CREATE INDEX runs_status ON runs (status, created_ms DESC, id DESC);
CREATE INDEX runs_plugin ON runs (plugin, status, created_ms DESC, id DESC);
CREATE INDEX runs_event ON runs (event_id);
CREATE INDEX runs_finished ON runs (finished_ms) WHERE finished_ms IS NOT NULL AND due_ms IS NULL;

-- Claim up to p_max due runs for p_holder, in one round trip, so the lock that makes
-- claimers decide one at a time (over every host) is held only while the server works:
-- recipes at their concurrency (p_plugins / p_limits, else p_default; counting unexpired
-- leases anywhere) are left out, each key's first unfinished run only, oldest due first,
-- a running run whose lease expired is due again; rows a settle or replay holds are skipped.
CREATE FUNCTION claim_runs(p_holder text, p_now bigint, p_expires bigint, p_max integer,
                           p_default integer, p_plugins text[], p_limits integer[])
RETURNS SETOF runs
LANGUAGE plpgsql
AS $$
DECLARE
    full_ text[];
    chosen text[];
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
    RETURN QUERY
    WITH claimed AS (
        UPDATE runs SET status = 'running', attempts = attempts + 1, started_ms = p_now,
            updated_ms = p_now, next_attempt_ms = NULL, due_ms = p_expires,
            lease_token = nextval('lease_tokens'), lease_holder = p_holder
        WHERE id IN (SELECT id FROM runs WHERE id = ANY(chosen) AND due_ms IS NOT NULL
                       AND due_ms <= p_now FOR UPDATE SKIP LOCKED)
        RETURNING *
    )
    SELECT * FROM claimed;
END
$$;

-- The last attempt's log lines (JSON), apart from the run so lists never carry them.
CREATE TABLE run_logs (
    run_id text PRIMARY KEY,
    lines  text NOT NULL
);

-- The effect journal: one row per journaled call (run, request fingerprint, occurrence).
CREATE TABLE effects (
    run_id      text    NOT NULL,
    fingerprint bytea   NOT NULL,
    occurrence  integer NOT NULL,
    sent        bigint  GENERATED ALWAYS AS IDENTITY,
    effect      text    NOT NULL,
    PRIMARY KEY (run_id, fingerprint, occurrence)
);

-- Recipe kv (keys in byte order) and what each recipe's space holds.
CREATE TABLE kv (
    recipe text  NOT NULL,
    key    text  COLLATE "C" NOT NULL,
    value  bytea NOT NULL,
    PRIMARY KEY (recipe, key)
);
CREATE TABLE kv_usage (
    recipe text   PRIMARY KEY,
    keys   bigint NOT NULL DEFAULT 0,
    bytes  bigint NOT NULL DEFAULT 0
);

-- Write one kv key in one round trip, within the recipe's quota, holding its usage row only
-- while the server works: `p_new` (null: delete) if `p_check` is false or the value is
-- `p_expected` (null: absent). o_written is null when the quota refused it (o_keys, o_bytes
-- then say what it would have held), false when the value was not the expected one.
CREATE FUNCTION kv_write(p_recipe text, p_key text, p_check boolean, p_expected bytea,
                         p_new bytea, p_max_keys bigint, p_max_bytes bigint,
                         OUT o_written boolean, OUT o_existed boolean,
                         OUT o_keys bigint, OUT o_bytes bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    old bytea;
    dk bigint;
    db bigint;
BEGIN
    INSERT INTO kv_usage AS u (recipe) VALUES (p_recipe)
    ON CONFLICT (recipe) DO UPDATE SET keys = u.keys
    RETURNING u.keys, u.bytes INTO o_keys, o_bytes;
    SELECT k.value INTO old FROM kv k WHERE k.recipe = p_recipe AND k.key = p_key;
    o_existed := FOUND;
    IF p_check AND old IS DISTINCT FROM p_expected THEN
        o_written := false;
        RETURN;
    END IF;
    dk := (p_new IS NOT NULL)::int - o_existed::int;
    db := coalesce(octet_length(p_key) + octet_length(p_new), 0)
          - coalesce(octet_length(p_key) + octet_length(old), 0);
    IF (dk > 0 AND o_keys + dk > p_max_keys) OR (db > 0 AND o_bytes + db > p_max_bytes) THEN
        o_written := NULL;
        o_keys := o_keys + dk;
        o_bytes := o_bytes + db;
        RETURN;
    END IF;
    IF p_new IS NULL THEN
        DELETE FROM kv k WHERE k.recipe = p_recipe AND k.key = p_key;
    ELSE
        INSERT INTO kv AS k (recipe, key, value) VALUES (p_recipe, p_key, p_new)
        ON CONFLICT (recipe, key) DO UPDATE SET value = EXCLUDED.value;
    END IF;
    IF dk <> 0 OR db <> 0 THEN
        UPDATE kv_usage u SET keys = u.keys + dk, bytes = u.bytes + db
        WHERE u.recipe = p_recipe;
    END IF;
    o_keys := o_keys + dk;
    o_bytes := o_bytes + db;
    o_written := true;
END
$$;

-- The last cron tick of each (recipe, trigger) fired or skipped.
CREATE TABLE ticks (
    plugin  text    NOT NULL,
    trigger integer NOT NULL,
    last_ms bigint  NOT NULL,
    PRIMARY KEY (plugin, trigger)
);

-- Counters for vendor quotas (Homebase360's SMS a day).
CREATE TABLE counters (
    key  text   PRIMARY KEY,
    used bigint NOT NULL
);

-- Written by a synchronous commit to make earlier asynchronous commits durable (flush).
CREATE TABLE flushes (
    id smallint PRIMARY KEY,
    at bigint   NOT NULL
);
INSERT INTO flushes VALUES (1, 0);
