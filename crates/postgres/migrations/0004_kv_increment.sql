-- Add to a kv counter in one round trip (kv.increment): under the key's lock, as kv_write,
-- so counting runs on any host never conflict. The value is decimal text, as JSON writes an
-- integer (what serde_json reads as an i64: JSON whitespace around it allowed); an absent key
-- counts as 0. o_integer is false (nothing written) when the value is not such an integer;
-- o_sum is null (nothing written) when the sum leaves bigint's range, o_current then saying
-- what the key held; o_written, o_keys and o_bytes are kv_write's (null o_written: over the
-- quota).
CREATE FUNCTION kv_increment(p_recipe text, p_key text, p_delta bigint,
                             p_max_keys bigint, p_max_bytes bigint,
                             OUT o_integer boolean, OUT o_current bigint, OUT o_sum bigint,
                             OUT o_written boolean, OUT o_keys bigint, OUT o_bytes bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    old bytea;
    total numeric;
    w record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(current_schema() || '/' || p_recipe),
                                  hashtext(p_key));
    SELECT k.value INTO old FROM kv k WHERE k.recipe = p_recipe AND k.key = p_key;
    o_integer := true;
    o_current := 0;
    IF FOUND THEN
        -- encode(.., 'escape') keeps ASCII as it is (other bytes become escapes, which the
        -- pattern refuses). No "-0": serde_json reads it as a float.
        IF encode(old, 'escape') !~ '^[ \t\n\r]*(0|-?[1-9][0-9]*)[ \t\n\r]*$' THEN
            o_integer := false;
            RETURN;
        END IF;
        total := btrim(encode(old, 'escape'), E' \t\n\r')::numeric;
        IF total NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
            o_integer := false;
            RETURN;
        END IF;
        o_current := total::bigint;
    END IF;
    total := o_current::numeric + p_delta;
    IF total NOT BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
        RETURN;
    END IF;
    o_sum := total::bigint;
    IF old IS NOT NULL AND octet_length(old) = octet_length(o_sum::text) THEN
        -- The space keeps its size (the usual case): no quota to check, no usage to change.
        UPDATE kv k SET value = convert_to(o_sum::text, 'UTF8')
        WHERE k.recipe = p_recipe AND k.key = p_key;
        o_written := true;
        RETURN;
    END IF;
    -- The key's lock is already ours (taking it again is a no-op), so the value is still
    -- `old`: the write cannot lose the swap, only be refused by the quota.
    SELECT * INTO w FROM kv_write(p_recipe, p_key, true, old,
                                  convert_to(o_sum::text, 'UTF8'), p_max_keys, p_max_bytes);
    o_written := w.o_written;
    o_keys := w.o_keys;
    o_bytes := w.o_bytes;
END
$$;
