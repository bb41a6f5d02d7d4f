-- The verifiable log: every evidence row becomes a leaf of an RFC 6962 Merkle
-- tree, in the order the sequencer gives it; signed checkpoints commit to the
-- tree. See README, "Verifiable evidence", and src/evidence/log/.

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

-- Which row is at which position of the log.
CREATE TABLE governance_log_leaves (
    log_index bigint PRIMARY KEY,
    evidence_id bigint NOT NULL UNIQUE,
    -- The row's (xact_id, id) is the sequencer's cursor.
    xact_id xid8,
    sequenced_at timestamptz NOT NULL DEFAULT now()
);

-- Every hash of the tree the sequencer has stored (leaf hashes and each
-- complete subtree's), by the index of Go's sumdb/tlog (`stored_hash_index`).
-- Proofs are served from here; leaf hashes outlive rows removed by retention.
CREATE TABLE governance_log_hashes (
    stored_index bigint PRIMARY KEY,
    hash bytea NOT NULL CHECK (length(hash) = 32)
);

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

CREATE TRIGGER governance_log_leaves_append_only
    BEFORE UPDATE OR DELETE ON governance_log_leaves
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_hashes_append_only
    BEFORE UPDATE OR DELETE ON governance_log_hashes
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON governance_log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_log_retention_append_only
    BEFORE UPDATE OR DELETE ON governance_log_retention
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();

-- Retention, once the log exists: only a prefix of the log goes, and only
-- rows already sequenced, so that every kept row's proof stays valid (the
-- leaf hashes of removed rows stay in governance_log_hashes). Without a log
-- (no checkpoint yet) it removes rows by age as before.
CREATE OR REPLACE FUNCTION governance_purge_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    purged bigint;
    keep_from bigint;
BEGIN
    PERFORM set_config('governance.purging', 'on', true);
    IF NOT EXISTS (SELECT 1 FROM governance_log_checkpoints) THEN
        DELETE FROM governance_mutation_results r
            USING governance_events e
            WHERE r.evidence_id = e.id AND e.created_at < cutoff;
        DELETE FROM governance_events WHERE created_at < cutoff;
        GET DIAGNOSTICS purged = ROW_COUNT;
    ELSE
        -- The first log position whose row is to be kept (or the log's end).
        SELECT coalesce(min(l.log_index), (SELECT coalesce(max(log_index) + 1, 0) FROM governance_log_leaves))
            INTO keep_from
            FROM governance_log_leaves l JOIN governance_events e ON e.id = l.evidence_id
            WHERE e.created_at >= cutoff;
        DELETE FROM governance_mutation_results r
            USING governance_log_leaves l
            WHERE r.evidence_id = l.evidence_id AND l.log_index < keep_from;
        DELETE FROM governance_events e
            USING governance_log_leaves l
            WHERE e.id = l.evidence_id AND l.log_index < keep_from;
        GET DIAGNOSTICS purged = ROW_COUNT;
        INSERT INTO governance_log_retention (pruned_below, cutoff, purged) VALUES (keep_from, cutoff, purged);
    END IF;
    PERFORM set_config('governance.purging', 'off', true);
    RETURN purged;
END $$;

REVOKE ALL ON FUNCTION governance_purge_before(timestamptz) FROM PUBLIC;
