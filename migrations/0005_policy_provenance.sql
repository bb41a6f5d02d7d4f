-- Which policies a decision was made under: the operator's bundle (sha256 of
-- the file's bytes; NULL when the request brought its own policy_context) and
-- the policy Kernite reports as `policy` (key and version; NULL when none
-- applied). Added columns only: the append-only triggers stay as they are.
ALTER TABLE governance_events
    ADD COLUMN policy_bundle_sha256 text,
    ADD COLUMN policy_key text,
    ADD COLUMN policy_version bigint;
