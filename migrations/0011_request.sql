-- What was decided, kept so that it can be decided again: the request as the
-- engine read it (Kernite's normalised request, the `input` its trace_hash
-- commits to) in canonical JSON (keys sorted, no spaces, Python's number
-- spellings), with secrets masked as in the response, and where they were
-- masked. `governance-sidecar replay` re-decides rows from these
-- (docs/replay.md). Text, not jsonb: jsonb would respell numbers (`1e+20`
-- becomes an integer) and drop duplicate keys, and the copy must be exactly
-- what was decided. NULL on rows written before this migration (and by older
-- sidecars): replay reports those as unrecorded; their verifiable-log entries
-- keep versions 1 and 2, and a row with a request has a version 3 entry,
-- which commits to both columns (docs/verifiable-log.md, "The entry").
-- Nothing is rewritten: the columns are added empty, in both layouts.
ALTER TABLE governance_events ADD COLUMN request_json text;
ALTER TABLE governance_events ADD COLUMN request_redacted_paths jsonb;
COMMENT ON COLUMN governance_events.request_json IS
    'The normalised request, canonical JSON, secrets masked (docs/replay.md); NULL before migration 11.';
COMMENT ON COLUMN governance_events.request_redacted_paths IS
    'Where secrets were masked in request_json (request paths, e.g. payload.card_number); NULL before migration 11.';
