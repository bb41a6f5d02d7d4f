-- A trace hash names its ctx_id (Kernite's ctx_id is `ctx_` and the hash's
-- first 12 hex digits), so the audit API finds a row by trace hash through
-- the ctx_id index, and the trace_hash index goes: on a large table it was
-- the largest of the indexes whose keys are random, each insert landing on a
-- page of its own (the growth bench, docs/performance.md). Both layouts.
DROP INDEX IF EXISTS governance_events_trace_hash;
