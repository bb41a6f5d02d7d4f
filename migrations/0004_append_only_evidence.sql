-- Evidence is append-only: rows are never updated, deleted or truncated away,
-- whoever asks, table owner included. Retention is the one exception, and it
-- has its own door: governance_purge_before(), which runs as its owner and is
-- executable by nobody until an administrator grants it (see docs/evidence.md).

CREATE FUNCTION governance_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Only governance_purge_before() may delete: it sets this flag for its own
    -- transaction and runs as its owner. A session that sets the flag itself,
    -- as any other role, is still refused.
    IF TG_OP = 'DELETE'
       AND current_setting('governance.purging', true) = 'on'
       AND current_user = (SELECT pg_get_userbyid(proowner) FROM pg_proc
                           WHERE oid = 'governance_purge_before(timestamptz)'::regprocedure)
    THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'governance evidence is append-only: % on % is not allowed', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Retention goes through governance_purge_before(cutoff).';
END $$;

CREATE TRIGGER governance_events_append_only
    BEFORE UPDATE OR DELETE ON governance_events
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_events_no_truncate
    BEFORE TRUNCATE ON governance_events
    FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_mutation_results_append_only
    BEFORE UPDATE OR DELETE ON governance_mutation_results
    FOR EACH ROW EXECUTE FUNCTION governance_refuse_change();
CREATE TRIGGER governance_mutation_results_no_truncate
    BEFORE TRUNCATE ON governance_mutation_results
    FOR EACH STATEMENT EXECUTE FUNCTION governance_refuse_change();

-- Deletes the evidence (and mutation results) created before `cutoff`;
-- returns how many evidence rows went.
CREATE FUNCTION governance_purge_before(cutoff timestamptz) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    purged bigint;
BEGIN
    PERFORM set_config('governance.purging', 'on', true);
    DELETE FROM governance_mutation_results r
        USING governance_events e
        WHERE r.evidence_id = e.id AND e.created_at < cutoff;
    DELETE FROM governance_events WHERE created_at < cutoff;
    GET DIAGNOSTICS purged = ROW_COUNT;
    PERFORM set_config('governance.purging', 'off', true);
    RETURN purged;
END $$;

REVOKE ALL ON FUNCTION governance_purge_before(timestamptz) FROM PUBLIC;
