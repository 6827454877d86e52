-- Each attempt of a run as it ended (outcome, error, duration, version, trace id: JSON), kept
-- with the run across replays and removed with it; written by the settle that ends it.
CREATE TABLE run_attempts (
    run_id      text    NOT NULL,
    finished_ms bigint  NOT NULL,
    attempt     integer NOT NULL,
    record      text    NOT NULL,
    PRIMARY KEY (run_id, finished_ms, attempt)
);
ALTER TABLE run_attempts SET (autovacuum_vacuum_scale_factor = 0,
                              autovacuum_vacuum_threshold = 1000,
                              autovacuum_vacuum_cost_delay = 0);
