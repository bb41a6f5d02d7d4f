-- Distributing the sidecar's tables with Citus (docs/scale.md, "Citus").
--
-- On the coordinator, as the tables' owner, after
-- `governance-sidecar migrate --layout partitioned` and before serving.
-- Written to Citus 12's rules; not run here (Citus cannot be installed on the
-- machine this was built on). tests/citus_rules.rs checks the schema against
-- the rules below, and that every governance table is named in this file.

-- The governance triggers (append-only evidence, the idempotency key claim)
-- act on the shard of the row that fired them only; Citus runs triggers on
-- distributed tables only when told so.
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET citus.enable_unsafe_triggers = on', current_database());
END $$;
SET citus.enable_unsafe_triggers = on;

-- The evidence, its results and its key claims: distributed by workspace,
-- co-located, so that a governed write touches one shard group.
SELECT create_distributed_table('governance_events', 'workspace_id');
SELECT create_distributed_table('governance_mutation_results', 'workspace_id', colocate_with => 'governance_events');
SELECT create_distributed_table('governance_idempotency_keys', 'workspace_id', colocate_with => 'governance_events');

-- Global, small, written rarely: copied to every node.
SELECT create_reference_table('governance_schema_migrations');
SELECT create_reference_table('governance_log_batches');
SELECT create_reference_table('governance_log_checkpoints');
SELECT create_reference_table('governance_log_retention');

-- Your governed tables, co-located on workspace_id, with workspace_id in
-- their primary key, e.g. the invoice example's:
--   ALTER TABLE invoices DROP CONSTRAINT invoices_pkey, ADD PRIMARY KEY (workspace_id, id);
--   SELECT create_distributed_table('invoices', 'workspace_id', colocate_with => 'governance_events');
