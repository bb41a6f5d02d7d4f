-- Retention records exactly which log positions it removed. A prefix of the
-- log (`pruned_below`) is not enough: a transaction that starts before
-- midnight on a month's last day and commits after it is sequenced after the
-- next month's first rows, and back-dated rows are sequenced after current
-- ones, so a dropped month's positions interleave with kept ones.
-- See docs/verifiable-log.md, "Retention records".

-- The log positions of the rows the record removed, as ranges [from, to),
-- in order. NULL on the records written before this migration, which `verify`
-- reads by their first form (docs/verifiable-log.md).
ALTER TABLE governance_log_retention ADD COLUMN removed int8range[];
-- The month a drop of the partitioned layout removed, whole; NULL where
-- governance_purge_before removed every row older than `cutoff` in a prefix.
ALTER TABLE governance_log_retention ADD COLUMN dropped_month date;
ALTER TABLE governance_log_retention ADD CONSTRAINT governance_log_retention_month_is_the_cutoffs
    CHECK (dropped_month IS NULL OR (dropped_month = date_trunc('month', dropped_month)
                                     AND cutoff = (dropped_month + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
COMMENT ON COLUMN governance_log_retention.pruned_below IS
    'The position after the last one removed so far; the only record of what was removed before migration 9.';

-- The reference layout's retention, as before, now recording its range.
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
        DELETE FROM governance_mutation_results r
            USING governance_events e
            WHERE r.evidence_id = e.id AND e.created_at < cutoff;
        DELETE FROM governance_events WHERE created_at < cutoff;
        GET DIAGNOSTICS purged = ROW_COUNT;
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
