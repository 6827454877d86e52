-- Each attempt of a run as it ended (outcome, error, duration, version, trace id: JSON), kept
-- with the run across replays and removed with it; written by the settle that ends it. `seq`
-- orders them (two attempts of a run may end in the same millisecond with the same number:
-- a deferral due at once, say).
CREATE TABLE run_attempts (
    run_id text   NOT NULL,
    seq    bigint GENERATED ALWAYS AS IDENTITY,
    record text   NOT NULL,
    PRIMARY KEY (run_id, seq)
);
ALTER TABLE run_attempts SET (autovacuum_vacuum_scale_factor = 0,
                              autovacuum_vacuum_threshold = 1000,
                              autovacuum_vacuum_cost_delay = 0);
