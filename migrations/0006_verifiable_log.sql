-- The verifiable log: every evidence row becomes a leaf of an RFC 6962 Merkle
-- tree, in the order the sequencer gives it; signed checkpoints commit to the
-- tree. See docs/verifiable-log.md and src/log/.

-- SHA-256 of response_json::text, which the log's leaf commits to; the
-- sidecar computes it when it writes the row, from the value in hand, so that
-- sequencing need not have PostgreSQL print every response again. NULL on
-- rows written otherwise: the sequencer then computes it. (verify always
-- recomputes it from the stored JSON.)
ALTER TABLE governance_events ADD COLUMN response_json_sha256 bytea;

-- The transaction that wrote the row (PostgreSQL's 64-bit xid, which does not
-- wrap). The sequencer takes rows in (xact_id, id) order, and only those whose
-- transaction is older than every transaction still running, so that a row
-- committing later can never sort before one already sequenced. Rows written
-- before this migration keep NULL and are sequenced first, by id. The default
-- costs the governed transaction no lock and no round trip.
ALTER TABLE governance_events ADD COLUMN xact_id xid8;
ALTER TABLE governance_events ALTER COLUMN xact_id SET DEFAULT pg_current_xact_id();
-- Transaction ids only grow, so inserts land on the index's rightmost page.
-- (On a large table, create both indexes CONCURRENTLY by hand first, under these names.)
CREATE INDEX IF NOT EXISTS governance_events_xact_id ON governance_events (xact_id, id);
-- The rows from before the log, which are sequenced first (an index that
-- new rows, never NULL here, do not enter).
CREATE INDEX IF NOT EXISTS governance_events_before_log ON governance_events (id) WHERE xact_id IS NULL;

-- The log, one row per batch the sequencer cut: which evidence rows it
-- added (their positions are first_index, first_index + 1, ...), the cursor
-- after it, and the tree hashes it added. One row per batch instead of a few
-- per leaf keeps the log's cost to the database small.
CREATE TABLE governance_log_batches (
    first_index bigint PRIMARY KEY,
    evidence_ids bigint[] NOT NULL CHECK (cardinality(evidence_ids) > 0),
    -- The last row's (xact_id, id); xact_id 0 while rows from before the log
    -- (whose xact_id is NULL) are sequenced.
    last_xact_id xid8 NOT NULL,
    last_evidence_id bigint NOT NULL,
    -- Every tree hash the batch added (leaf hashes and each completed
    -- subtree's), 32 bytes each, at Go's sumdb/tlog stored-hash indexes
    -- first_stored, first_stored + 1, ...: a proof reads O(log n) of them.
    -- Leaf hashes outlive rows removed by retention.
    first_stored bigint NOT NULL UNIQUE,
    hashes bytea NOT NULL CHECK (length(hashes) % 32 = 0),
    sequenced_at timestamptz NOT NULL DEFAULT now()
);
-- Uncompressed (hashes do not compress), so that reading one hash reads one chunk.
ALTER TABLE governance_log_batches ALTER COLUMN hashes SET STORAGE EXTERNAL;
-- Which batch holds a row: the first whose last key is at or after the row's.
CREATE INDEX governance_log_batches_last_key ON governance_log_batches (last_xact_id, last_evidence_id);

-- Signed tree heads: a C2SP tlog-checkpoint in a C2SP signed note.
CREATE TABLE governance_log_checkpoints (
    tree_size bigint PRIMARY KEY,
    root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
    signed_note text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- What retention removed: rows at log positions below `pruned_below` may be
-- gone (their leaf hashes stay); every other sequenced row must be present.
CREATE TABLE governance_log_retention (
    pruned_below bigint NOT NULL,
    cutoff timestamptz NOT NULL,
    purged bigint NOT NULL,
    purged_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER governance_log_batches_append_only
    BEFORE UPDATE OR DELETE ON governance_log_batches
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON governance_log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_retention_append_only
    BEFORE UPDATE OR DELETE ON governance_log_retention
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_batches_no_truncate
    BEFORE TRUNCATE ON governance_log_batches
    FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_checkpoints_no_truncate
    BEFORE TRUNCATE ON governance_log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_retention_no_truncate
    BEFORE TRUNCATE ON governance_log_retention
    FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_change();

-- Retention, once the log exists: only whole batches at the start of the
-- log go, and only while every row of the batch is older than `cutoff`, so
-- that every kept row's proof stays valid (the batches, with their leaf
-- hashes, stay). Rows not yet sequenced are kept. Without a log (no
-- checkpoint yet) it removes rows by age as before.
CREATE OR REPLACE FUNCTION governance_purge_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    purged bigint := 0;
    removed bigint;
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
        keep_from := coalesce((SELECT max(pruned_below) FROM governance_log_retention), 0);
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
        INSERT INTO governance_log_retention (pruned_below, cutoff, purged) VALUES (keep_from, cutoff, purged);
    END IF;
    PERFORM set_config('governance.purging', 'off', true);
    RETURN purged;
END $$;

REVOKE ALL ON FUNCTION governance_purge_before(timestamptz) FROM PUBLIC;
