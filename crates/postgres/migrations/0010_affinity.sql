-- A recipe's runs gather on one host. A claimer that holds fewer of a recipe's runs in
-- flight than another holder does takes the recipe's runs only once they have been due for
-- claim_affinity_ms(): until then they are left to the host holding the most (woken by
-- the accept's notification, it takes them at once). A host that has the recipe's runs
-- settles them together, hands its slots over to the recipe's next runs in the same
-- statements, and adds to its counters together; the same runs spread over three hosts
-- made the database write a third as much per statement, and its hand-overs skip the rows
-- the other hosts' hand-overs hold at the head of the queue (docs/benchmarks.md, runs 17
-- and 18). When that host has no free worker slot (or stopped), the others take the runs
-- no earlier than the delay, at their next wake-up (another accept's notification, or
-- their poll within a second: nothing wakes a host when a run it left becomes its to
-- take); nobody holding the recipe's runs, or the claimer holding as many as any, it
-- claims at once, as before. Runs under expired leases count for nobody. Hand-overs are
-- not affected: a host keeps the slots it has while its recipe has due runs. (A batch of
-- settles claims after it settled, so for that claim its host holds fewer runs: the
-- preference can move to another host after a batch that handed nothing over.)
CREATE FUNCTION claim_affinity_ms() RETURNS bigint LANGUAGE sql IMMUTABLE
AS 'SELECT 100::bigint';

CREATE OR REPLACE FUNCTION claim_runs(p_holder text, p_now bigint, p_expires bigint,
                                      p_max integer, p_default integer, p_plugins text[],
                                      p_limits integer[])
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
        SELECT recipes.plugin, coalesce(lim.l, p_default) - f.live AS room,
               CASE WHEN f.mine >= f.most THEN p_now ELSE p_now - claim_affinity_ms() END
                 AS due_by
        FROM recipes
        LEFT JOIN unnest(p_plugins, p_limits) AS lim(plugin, l) ON lim.plugin = recipes.plugin
        -- Its runs in flight, this claimer's, and the most any other holder has.
        CROSS JOIN LATERAL (
            SELECT coalesce(sum(h.n), 0)::bigint AS live,
                   coalesce(max(h.n) FILTER (WHERE h.holder = p_holder), 0) AS mine,
                   coalesce(max(h.n) FILTER (WHERE h.holder <> p_holder), 0) AS most
            FROM (SELECT b.lease_holder AS holder, count(*) AS n FROM runs b
                  WHERE b.plugin = recipes.plugin AND b.status = 'running'
                    AND b.due_ms > p_now
                  GROUP BY b.lease_holder) h
        ) f
        WHERE recipes.plugin IS NOT NULL
    LOOP
        CONTINUE WHEN recipe.room <= 0;
        -- ...and the first runs of each recipe with room due by its `due_by`, each key's
        -- first only: one range of the (recipe, due, seq) index, so the work does not grow
        -- with a backlog.
        -- A run of a key one of whose runs is running under a live lease waits too: two
        -- accepts committing out of their seq order (batches written at once, or hosts)
        -- must not let the later-numbered run that committed first run beside the other.
        SELECT ids || coalesce(array_agg(c.id), '{}'), dues || coalesce(array_agg(c.due_ms), '{}'),
               seqs || coalesce(array_agg(c.seq), '{}')
        INTO ids, dues, seqs
        FROM (SELECT r.id, r.due_ms, r.seq FROM runs r
              WHERE r.plugin = recipe.plugin AND r.due_ms IS NOT NULL AND r.due_ms <= recipe.due_by
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
