-- The reference evidence table of Kernite's "evidence sink: Postgres" integration, exactly.
CREATE TABLE governance_events (
    id bigserial PRIMARY KEY,
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
    response_json jsonb NOT NULL
);

CREATE UNIQUE INDEX governance_events_workspace_idempotency_uq
    ON governance_events (workspace_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
