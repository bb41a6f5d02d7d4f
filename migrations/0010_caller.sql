-- Who called: the name the sidecar's gate authenticated (a callers-file
-- caller, a client certificate's identity, or `local`), next to the
-- `principal_id` the request only claims. NULL on rows written before this
-- migration (and by sidecars older than it), whose verifiable-log entries
-- stay version 1; a row with a caller has a version 2 entry, which commits
-- to it (docs/verifiable-log.md, "The entry"). Both layouts: a column added
-- to a partitioned table reaches every partition.
ALTER TABLE governance_events ADD COLUMN caller text;
COMMENT ON COLUMN governance_events.caller IS
    'The authenticated caller (docs/security.md); NULL before migration 10.';
