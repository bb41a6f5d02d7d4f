-- Which policies a decision was made under: the operator's bundle (sha256 of
-- the file's bytes; NULL when the request brought its own policy_context) and
-- the policy Kernite reports as `policy` (key and version; NULL when none
-- applied). Added columns only: the append-only triggers stay as they are.
ALTER TABLE governance_events
    ADD COLUMN policy_bundle_sha256 text,
    ADD COLUMN policy_key text,
    ADD COLUMN policy_version bigint,
    -- The caller's W3C trace id (from `traceparent`), joining the row to its trace.
    ADD COLUMN trace_id text;

-- The audit API's reads: a workspace's rows newest first (keyset pages on
-- created_at, id), and single rows by ctx_id or trace_hash.
CREATE INDEX IF NOT EXISTS governance_events_workspace_created ON governance_events (workspace_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS governance_events_ctx_id ON governance_events (ctx_id);
CREATE INDEX IF NOT EXISTS governance_events_trace_hash ON governance_events (trace_hash);
