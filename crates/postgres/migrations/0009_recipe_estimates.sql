-- Generic plans (the settles' statements, the claim functions) estimate `plugin = $n` from
-- the number of distinct recipes in the statistics. With one recipe in them, a lone
-- settle's hand-over to another recipe read the due runs of every recipe in due order
-- (runs_due) and filtered them, walking the first recipe's backlog: 7.2 ms and 387
-- buffers past 20,000 due runs, against 0.05 ms and 3 buffers by runs_plugin_due (EXPLAIN
-- ANALYZE, docs/benchmarks.md run 17). Fixed at 100, the estimate makes a recipe's own
-- index the cheaper path whatever ANALYZE saw; values in the statistics' list of most
-- common ones still get their own estimates in custom plans. Takes a SHARE UPDATE
-- EXCLUSIVE lock: hosts keep reading and writing while it runs.
ALTER TABLE runs ALTER COLUMN plugin SET (n_distinct = 100);
ANALYZE runs;
