-- What the sidecar adds to the reference row: how the governed write ended,
-- and what makes a retry recognisable. Reference columns are never renamed or dropped.
ALTER TABLE governance_events
    -- 'applied' (mutation committed), 'not_applied' (denied: nothing written), 'error' (rolled back).
    ADD COLUMN outcome text NOT NULL DEFAULT 'applied',
    ADD COLUMN mutation_name text,
    -- sha256 of the canonical request, mutation name and caller parameters.
    ADD COLUMN request_fingerprint text,
    -- SQLSTATE of a failed mutation (outcome 'error').
    ADD COLUMN error_sqlstate text;

-- The mutation's result, in its own append-only table so that the evidence
-- row can be written first (claiming the idempotency key) and never updated.
CREATE TABLE governance_mutation_results (
    evidence_id bigint PRIMARY KEY REFERENCES governance_events (id),
    rows_affected bigint NOT NULL,
    returning_rows jsonb NOT NULL
);
