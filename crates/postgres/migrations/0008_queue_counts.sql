-- The last count of unfinished runs, shared by every host: a health check or a metrics
-- scrape of any host within a second of it reads it instead of counting again (a count
-- reads every unfinished run: tens of milliseconds with a backlog of thousands, and load
-- balancers ask every host).
CREATE TABLE queue_counts (
    one           boolean     PRIMARY KEY DEFAULT true CHECK (one),
    -- The moment the count is for (runs due by then are due), and when it was made.
    asked_ms      bigint      NOT NULL,
    counted_at    timestamptz NOT NULL,
    due           bigint      NOT NULL,
    later         bigint      NOT NULL,
    running       bigint      NOT NULL,
    oldest_due_ms bigint
);
