-- How the two large columns of every row are compressed (issue 32).
--
-- An evidence row is about 3 KB (Kernite's response, ~1.6 KB, and the
-- request it decided, ~1 KB), past PostgreSQL's 2 KB TOAST threshold, so
-- every INSERT compresses `response_json` and `request_json`. With PostgreSQL's
-- default, pglz, that compression was a measured share of the database's CPU
-- per governed write; lz4 compresses several times faster at a similar size
-- (docs/performance.md, "Issue 32"). Kept inline uncompressed instead
-- (toast_tuple_target 8160), the rows cost as much CPU (more WAL) and about
-- twice the disk, so lz4 it is.
--
-- PostgreSQL 14 and later built with lz4 (Debian's, the official images,
-- the managed services) take it; on a server without it, both columns keep
-- pglz and a NOTICE says so. Existing rows are not rewritten: each value keeps
-- the method it was stored with (pg_column_compression shows which), and
-- both read alike. In the partitioned layout the setting is the parent's,
-- which partitions created later take; those that already existed kept
-- pglz until migration 14 set each (layout_partitioned.sql sets it on the
-- table it creates, before its partitions).
DO $$
BEGIN
    -- Through EXECUTE: before PostgreSQL 14 the statement is not even SQL, and
    -- a DO block naming it directly would fail to compile, handler and all.
    EXECUTE 'ALTER TABLE governance_events '
            'ALTER COLUMN response_json SET COMPRESSION lz4, ALTER COLUMN request_json SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'response_json and request_json keep pglz: %', SQLERRM;
END $$;
