-- The partitioned layout, for large deployments and for Citus (docs/scale.md,
-- "Evidence at scale"): `governance-sidecar migrate --layout partitioned`.
--
-- Run once, in one transaction, under the migration lock, on a schema at the
-- latest version in the reference layout; the rows there are kept. Every
-- later migration is written to apply to both layouts.
--
-- What changes, and why:
-- * governance_events and governance_mutation_results are partitioned by
--   created_at, one partition a month (UTC), so that retention drops whole
--   months instead of deleting rows, and the month being written has indexes
--   a fraction of the table's size.
-- * A unique index of a partitioned table must contain the partition key,
--   so the idempotency keys move to governance_idempotency_keys: one row per
--   (workspace, key), filled by a trigger from the evidence INSERT itself,
--   whose primary key carries the name the sidecar recognises a taken key by.
--   Keys have a lifetime there (the sidecar's --idempotency-key-lifetime-seconds).
-- * Every primary key and unique constraint contains workspace_id, the
--   column Citus distributes these tables by (deploy/citus/).
-- * The result table has no foreign key to the evidence: a foreign key to a
--   partitioned table makes every month's detachment scan the referencing
--   table, and Citus cannot check one between distributed partitioned
--   tables. Both rows are written by one statement or one transaction of the
--   sidecar, and retention drops both tables' month together.

LOCK TABLE governance_events, governance_mutation_results IN ACCESS EXCLUSIVE MODE;

-- The reference tables step aside, with their indexes (whose names the new tables take).
ALTER TABLE governance_events RENAME TO governance_events_reference;
ALTER TABLE governance_mutation_results RENAME TO governance_mutation_results_reference;
DO $$
DECLARE
    index_name name;
BEGIN
    FOR index_name IN
        SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
        WHERE x.indrelid IN ('governance_events_reference'::regclass, 'governance_mutation_results_reference'::regclass)
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', index_name, left(index_name, 48) || '_reference');
    END LOOP;
END $$;
-- The ids go on from where the reference table's left off.
ALTER SEQUENCE governance_events_id_seq OWNED BY NONE;

-- The same columns in the same order as the reference table.
CREATE TABLE governance_events (
    id bigint NOT NULL DEFAULT nextval('governance_events_id_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    workspace_id text NOT NULL,
    principal_id text NOT NULL,
    object_type text NOT NULL,
    operation text NOT NULL,
    decision text NOT NULL,
    reason_codes jsonb NOT NULL,
    ctx_id text NOT NULL,
    trace_hash text NOT NULL,
    idempotency_key text,
    response_json jsonb NOT NULL,
    outcome text NOT NULL DEFAULT 'applied',
    mutation_name text,
    request_fingerprint text,
    error_sqlstate text,
    mode text NOT NULL DEFAULT 'enforce',
    redacted_paths jsonb NOT NULL DEFAULT '[]',
    policy_bundle_sha256 text,
    policy_key text,
    policy_version bigint,
    trace_id text,
    response_json_sha256 bytea,
    xact_id xid8 DEFAULT pg_current_xact_id(),
    caller text,
    request_json text,
    request_redacted_paths jsonb,
    -- id first: GetEvidence and the result's lookups go by id.
    CONSTRAINT governance_events_pkey PRIMARY KEY (id, created_at, workspace_id)
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE governance_events_id_seq OWNED BY governance_events.id;
-- The large columns compressed with lz4 where the server has it, as migration 12 sets.
DO $$
BEGIN
    -- Through EXECUTE: before PostgreSQL 14 the statement is not even SQL, and
    -- a DO block naming it directly would fail to compile, handler and all.
    EXECUTE 'ALTER TABLE governance_events '
            'ALTER COLUMN response_json SET COMPRESSION lz4, ALTER COLUMN request_json SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'response_json and request_json keep pglz: %', SQLERRM;
END $$;

CREATE INDEX governance_events_workspace_created ON governance_events (workspace_id, created_at DESC, id DESC);
CREATE INDEX governance_events_ctx_id ON governance_events (ctx_id);
CREATE INDEX governance_events_xact_id ON governance_events (xact_id, id);
CREATE INDEX governance_events_before_log ON governance_events (id) WHERE xact_id IS NULL;
-- Replays and GetEvidence by key: the newest row holding a key.
CREATE INDEX governance_events_workspace_idempotency
    ON governance_events (workspace_id, idempotency_key, created_at DESC) WHERE idempotency_key IS NOT NULL;

CREATE TABLE governance_mutation_results (
    evidence_id bigint NOT NULL,
    rows_affected bigint NOT NULL,
    returning_rows jsonb NOT NULL,
    workspace_id text NOT NULL,
    -- The transaction's start, as the evidence row's: both land in the same month.
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT governance_mutation_results_pkey PRIMARY KEY (evidence_id, created_at, workspace_id)
) PARTITION BY RANGE (created_at);

CREATE TABLE governance_idempotency_keys (
    workspace_id text NOT NULL,
    idempotency_key text NOT NULL,
    evidence_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT governance_events_workspace_idempotency_uq PRIMARY KEY (workspace_id, idempotency_key)
);
-- Maintenance forgets the claims whose lifetime has ended, oldest first.
CREATE INDEX governance_idempotency_keys_created_at ON governance_idempotency_keys (created_at);

-- The claim: the evidence INSERT also inserts its key here, in the same
-- statement, so that a key already held fails it (SQLSTATE 23505 on
-- governance_events_workspace_idempotency_uq) exactly as in the reference layout.
CREATE FUNCTION governance_claim_idempotency_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO governance_idempotency_keys (workspace_id, idempotency_key, evidence_id, created_at)
    VALUES (NEW.workspace_id, NEW.idempotency_key, NEW.id, NEW.created_at);
    RETURN NEW;
END $$;
CREATE TRIGGER governance_events_claim_idempotency_key
    BEFORE INSERT ON governance_events
    FOR EACH ROW WHEN (NEW.idempotency_key IS NOT NULL)
    EXECUTE FUNCTION governance_claim_idempotency_key();

-- The months: each table's partition for [first, first + 1 month), UTC,
-- named <table>_pYYYYMM. Creates what is missing from `from_time`'s month
-- to `to_time`'s; returns how many it created. Maintenance calls it to stay
-- months ahead of the clock.
CREATE FUNCTION governance_create_month_partitions(from_time timestamptz, to_time timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    month timestamp := date_trunc('month', from_time AT TIME ZONE 'UTC');
    created integer := 0;
    parent text;
BEGIN
    WHILE month <= to_time AT TIME ZONE 'UTC' LOOP
        FOREACH parent IN ARRAY ARRAY['governance_events', 'governance_mutation_results'] LOOP
            IF to_regclass(parent || to_char(month, '"_p"YYYYMM')) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               parent || to_char(month, '"_p"YYYYMM'), parent,
                               month::text || '+00', (month + interval '1 month')::text || '+00');
                created := created + 1;
            END IF;
        END LOOP;
        month := month + interval '1 month';
    END LOOP;
    RETURN created;
END $$;

SELECT governance_create_month_partitions(
    coalesce((SELECT min(created_at) FROM governance_events_reference), now()), now() + interval '3 months');

-- The rows, as they were (ids, transaction ids and all). The trigger claims their keys.
INSERT INTO governance_events SELECT * FROM governance_events_reference ORDER BY id;
INSERT INTO governance_mutation_results (evidence_id, rows_affected, returning_rows, workspace_id, created_at)
    SELECT r.evidence_id, r.rows_affected, r.returning_rows, e.workspace_id, e.created_at
    FROM governance_mutation_results_reference r JOIN governance_events_reference e ON e.id = r.evidence_id;
-- Whoever was granted something on the reference tables keeps it; whoever
-- may add evidence may claim keys, and release the expired ones.
DO $$
DECLARE
    grant_row record;
BEGIN
    FOR grant_row IN
        SELECT t.new_name, a.privilege_type, a.grantee::regrole::text AS grantee
        FROM (VALUES ('governance_events_reference', 'governance_events'),
                     ('governance_mutation_results_reference', 'governance_mutation_results')) AS t (old_name, new_name)
        CROSS JOIN LATERAL aclexplode((SELECT relacl FROM pg_class WHERE oid = t.old_name::regclass)) a
        WHERE a.grantee <> 0 AND a.grantee <> (SELECT relowner FROM pg_class WHERE oid = t.old_name::regclass)
    LOOP
        EXECUTE format('GRANT %s ON %I TO %s', grant_row.privilege_type, grant_row.new_name, grant_row.grantee);
        IF grant_row.new_name = 'governance_events' AND grant_row.privilege_type = 'INSERT' THEN
            EXECUTE format('GRANT INSERT, SELECT, DELETE ON governance_idempotency_keys TO %s', grant_row.grantee);
        END IF;
    END LOOP;
END $$;
DROP TABLE governance_mutation_results_reference;
DROP TABLE governance_events_reference;

-- Append-only, as in the reference layout (migration 0004); the triggers
-- reach every partition. Retention drops whole months instead (it is DDL,
-- which the table's owner alone may run).
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
