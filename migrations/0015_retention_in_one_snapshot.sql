-- Retention without a verifiable log deletes results and rows in one
-- statement, under one snapshot (a review of migration 13).
--
-- governance_purge_before's first form, for a database whose log has no
-- checkpoint yet, deleted the old rows' results, then the old rows, in two
-- statements, each with a snapshot of its own. A write committing between
-- them (a transaction begun before the cutoff) had its result missed by the
-- first and its row deleted by the second. The foreign key refused that
-- second DELETE until migration 13 dropped it; since then it would leave a
-- result without its row. One statement sees each write whole or not at
-- all. The log's branch is unchanged: it deletes sequenced batches, whose
-- rows and results were committed together before they were sequenced.
CREATE OR REPLACE FUNCTION governance_purge_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    purged bigint := 0;
    removed bigint;
    start_from bigint;
    keep_from bigint;
    batch record;
BEGIN
    PERFORM set_config('governance.purging', 'on', true);
    IF NOT EXISTS (SELECT 1 FROM governance_log_checkpoints) THEN
        WITH gone AS (
            DELETE FROM governance_events WHERE created_at < cutoff RETURNING id
        ), results AS (
            DELETE FROM governance_mutation_results r USING gone WHERE r.evidence_id = gone.id
        )
        SELECT count(*) INTO purged FROM gone;
    ELSE
        start_from := coalesce((SELECT max(pruned_below) FROM governance_log_retention), 0);
        keep_from := start_from;
        FOR batch IN
            SELECT first_index, evidence_ids FROM governance_log_batches
            WHERE first_index >= keep_from ORDER BY first_index
        LOOP
            EXIT WHEN EXISTS (SELECT 1 FROM governance_events
                              WHERE id = ANY (batch.evidence_ids) AND created_at >= cutoff);
            DELETE FROM governance_mutation_results WHERE evidence_id = ANY (batch.evidence_ids);
            DELETE FROM governance_events WHERE id = ANY (batch.evidence_ids);
            GET DIAGNOSTICS removed = ROW_COUNT;
            purged := purged + removed;
            keep_from := batch.first_index + cardinality(batch.evidence_ids);
        END LOOP;
        INSERT INTO governance_log_retention (pruned_below, cutoff, purged, removed)
        VALUES (keep_from, cutoff, purged,
                CASE WHEN keep_from > start_from THEN ARRAY[int8range(start_from, keep_from)]
                     ELSE '{}'::int8range[] END);
    END IF;
    PERFORM set_config('governance.purging', 'off', true);
    RETURN purged;
END $$;

REVOKE ALL ON FUNCTION governance_purge_before(timestamptz) FROM PUBLIC;
