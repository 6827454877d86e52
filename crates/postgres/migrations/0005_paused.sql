-- Recipes paused by an operator (console, admin API): no host starts their runs, which wait,
-- queued, until the recipe is resumed. Kept across restarts; every host reads it.
CREATE TABLE paused (
    recipe   text   PRIMARY KEY,
    since_ms bigint NOT NULL
);
