-- Every table holding evidence rows compresses its large columns with lz4:
-- the partitions too (a review of migration 12).
--
-- `ALTER TABLE … SET COMPRESSION` on a partitioned table sets the parent's
-- default only: partitions created afterwards take it, those that existed
-- keep theirs. So in a database converted to the partitioned layout before
-- migration 12, the partitions of that time (past months, this one, the three
-- ahead) kept pglz. Each is set here, with the table itself (the reference
-- layout's, or the parent), once more. Existing rows are untouched, as in 12.
--
-- Only a server without lz4 (feature_not_supported) is let off with a NOTICE;
-- any other failure fails the migration, which is then tried again. The
-- statements run through EXECUTE: before PostgreSQL 14, which has no
-- SET COMPRESSION, a DO block naming it would not even compile.
DO $$
DECLARE
    target regclass;
BEGIN
    IF current_setting('server_version_num')::int < 140000 THEN
        RAISE NOTICE 'PostgreSQL before 14 has no lz4 column compression: evidence keeps pglz';
        RETURN;
    END IF;
    FOR target IN
        SELECT 'governance_events'::regclass
        UNION ALL
        SELECT relid FROM pg_partition_tree('governance_events') WHERE level > 0
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN response_json SET COMPRESSION lz4, '
                       'ALTER COLUMN request_json SET COMPRESSION lz4', target);
    END LOOP;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'response_json and request_json keep pglz: %', SQLERRM;
END $$;
