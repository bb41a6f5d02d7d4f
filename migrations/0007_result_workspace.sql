-- The workspace of a mutation's result, beside its evidence id: in the
-- partitioned layout (migrations/layout_partitioned.sql) the result table is
-- keyed and distributed by workspace, and the sidecar writes the same INSERT
-- in both layouts. Rows from before this migration keep NULL.
ALTER TABLE governance_mutation_results ADD COLUMN workspace_id text;
