-- The mutation's result row no longer checks its evidence row through a
-- foreign key (issue 32).
--
-- The check cost every approved write a lookup of the evidence row it had
-- just inserted and a row lock on it (a second WAL record): measured with
-- pgbench on the sidecar's own one-statement write, three to a transaction,
-- PostgreSQL spent 15–20% less CPU per write without it
-- (docs/performance.md, "Issue 32"). What it guarded holds without it:
-- - a result row is written only by the statement (or transaction) that
--   writes its evidence row, so it cannot name a row that was not written;
-- - both tables are append-only (0004), and retention's one door deletes a
--   row's result before the row (0004, 0009);
-- - the partitioned layout has never had it (PostgreSQL cannot reference a
--   partitioned table's id alone), so the sidecar already relies on neither.
-- Existing rows are untouched; nothing is rewritten or rechecked.
ALTER TABLE governance_mutation_results
    DROP CONSTRAINT IF EXISTS governance_mutation_results_evidence_id_fkey;
