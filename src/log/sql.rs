//! Every statement the verifiable log sends, named once (as Tessera's
//! PostgreSQL storage does). The log's tables are in
//! `migrations/0006_verifiable_log.sql` and
//! `migrations/0009_retention_records_what_it_removed.sql`.
//!
//! Two ideas recur and are written once each, as fragments: the log's size
//! ([`log_size!`]), and the batch that holds a row of a given `(xact_id, id)`
//! key ([`batch_at_or_after!`]: the first whose last key is at or after it).

use std::sync::LazyLock;

use super::entry::{ENTRY_COLUMNS, ENTRY_FROM, SEQUENCED_COLUMNS};

/// The number of leaves in the log: where the last batch ends.
macro_rules! log_size {
    () => {
        "coalesce((SELECT first_index + cardinality(evidence_ids) FROM governance_log_batches \
         ORDER BY first_index DESC LIMIT 1), 0)"
    };
}

/// The batch holding the row whose `(xact_id, id)` key is `$key` (an SQL
/// row expression): the first batch whose last key is at or after it.
macro_rules! batch_at_or_after {
    ($columns:literal, $key:literal) => {
        concat!(
            "SELECT ",
            $columns,
            " FROM governance_log_batches WHERE (last_xact_id, last_evidence_id) >= (",
            $key,
            ") ORDER BY last_xact_id, last_evidence_id LIMIT 1"
        )
    };
}

// ---- the log as a whole

/// Whether the log has been started (it has a checkpoint).
pub const IN_USE: &str = "SELECT EXISTS (SELECT 1 FROM governance_log_checkpoints) AS in_use";

/// The log's size, as `n`.
pub const SIZE: &str = concat!("SELECT ", log_size!(), " AS n");

/// The last batch: the log's size and the key of its last row (the sequencer's cursor).
pub const LAST_BATCH: &str = "SELECT first_index + cardinality(evidence_ids) AS size, \
     (last_xact_id::text)::bigint AS last_xact_id, last_evidence_id \
     FROM governance_log_batches ORDER BY first_index DESC LIMIT 1";

// ---- checkpoints

pub const LATEST_CHECKPOINT: &str = "SELECT tree_size, root_hash, signed_note, created_at \
     FROM governance_log_checkpoints ORDER BY tree_size DESC LIMIT 1";
pub const CHECKPOINT_OF_SIZE: &str =
    "SELECT tree_size, root_hash, signed_note, created_at FROM governance_log_checkpoints WHERE tree_size = $1";
pub const EVERY_CHECKPOINT: &str =
    "SELECT tree_size, root_hash, signed_note FROM governance_log_checkpoints ORDER BY tree_size";
pub const INSERT_CHECKPOINT: &str = "INSERT INTO governance_log_checkpoints (tree_size, root_hash, signed_note, created_at) \
     VALUES ($1, $2, $3, clock_timestamp())";

// ---- the sequencer

/// Only the sidecar holding it sequences ("govslog" in ASCII).
pub const TRY_SEQUENCER_LOCK: &str = "SELECT pg_try_advisory_lock($1) AS locked";
/// The next transaction id this server will hand out.
pub const NEXT_XACT_ID: &str = "SELECT (pg_snapshot_xmax(pg_current_snapshot())::text)::bigint AS next";
/// A batch's start: the horizon below which every transaction has ended, the
/// time to sign, the log's size, and whether any checkpoint exists.
pub const BATCH_START: &str = concat!(
    "SELECT (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint AS horizon, \
     (extract(epoch FROM now()) * 1000000)::bigint AS now_us, ",
    log_size!(),
    " AS size, EXISTS (SELECT 1 FROM governance_log_checkpoints) AS signed"
);
/// Rows from before the log (no `xact_id`), by id, after `$1`; at most `$2`.
pub static ROWS_BEFORE_LOG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SEQUENCED_COLUMNS}, e.id AS evidence_id FROM {ENTRY_FROM} \
         WHERE e.xact_id IS NULL AND e.id > $1 ORDER BY e.id LIMIT $2"
    )
});
/// Rows after the key `($1, $2)` whose transactions ended before `$3`; at most `$4`.
pub static ROWS_AFTER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SEQUENCED_COLUMNS}, e.id AS evidence_id FROM {ENTRY_FROM} \
         WHERE (e.xact_id, e.id) > (($1::bigint)::text::xid8, $2) AND e.xact_id < ($3::bigint)::text::xid8 \
         ORDER BY e.xact_id, e.id LIMIT $4"
    )
});
pub const INSERT_BATCH: &str = "INSERT INTO governance_log_batches \
     (first_index, evidence_ids, last_xact_id, last_evidence_id, first_stored, hashes) \
     VALUES ($1, $2, ($3::bigint)::text::xid8, $4, $5, $6)";
/// The age of the oldest row after the cursor (`$1`: still before the log;
/// `$2` its id; `$3`, `$4` its key), and the latest checkpoint's size.
pub const LAG: &str = "SELECT coalesce(extract(epoch FROM clock_timestamp() - least(
        (SELECT created_at FROM governance_events
         WHERE $1 AND xact_id IS NULL AND id > $2 ORDER BY id LIMIT 1),
        (SELECT created_at FROM governance_events
         WHERE (xact_id, id) > (($3::bigint)::text::xid8, $4) ORDER BY xact_id, id LIMIT 1))),
    0)::float8 AS seconds,
    coalesce((SELECT max(tree_size) FROM governance_log_checkpoints), 0) AS size";
/// How many rows wait after the cursor (parameters as [`LAG`]'s), up to 10,000.
pub const LAG_ROWS: &str = "SELECT count(*) AS rows FROM (
     (SELECT 1 FROM governance_events WHERE $1 AND xact_id IS NULL AND id > $2
      UNION ALL
      SELECT 1 FROM governance_events WHERE (xact_id, id) > (($3::bigint)::text::xid8, $4))
     LIMIT 10000) pending";

// ---- rows, leaves and stored hashes

/// A row and its log position (NULL while not sequenced), as the end of a
/// query: `WHERE e.id = $1`, or the idempotency key's holder.
pub const ROW_AND_POSITION: &str = concat!(
    "SELECT e.id AS evidence_id, e.workspace_id, b.first_index + array_position(b.evidence_ids, e.id) - 1 AS log_index \
     FROM governance_events e LEFT JOIN LATERAL (",
    batch_at_or_after!("first_index, evidence_ids", "coalesce(e.xact_id, '0'::xid8), e.id"),
    ") b ON true"
);
/// One row's entry fields.
pub static ENTRY_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE e.id = $1"));
/// The entry fields of the rows with the ids in `$1`.
pub static ENTRIES_OF: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {ENTRY_COLUMNS}, e.id AS evidence_id FROM {ENTRY_FROM} WHERE e.id = ANY($1)"));
/// The stored hashes at the stored-hash indexes in `$1`, each cut from its batch.
pub const STORED_HASHES: &str = "SELECT i AS stored_index, \
     substring(b.hashes FROM (i - b.first_stored)::int * 32 + 1 FOR 32) AS hash \
     FROM unnest($1::bigint[]) i CROSS JOIN LATERAL ( \
         SELECT first_stored, hashes FROM governance_log_batches \
         WHERE first_stored <= i ORDER BY first_stored DESC LIMIT 1) b";

// ---- retention (see `retention.rs`)

/// Records the drop of the month in `{partition}` ($1: its `YYYYMM`), in
/// one statement, if every one of its rows is in the log: the positions its
/// rows hold, found in the batches between its first and its last row's, as
/// ranges. Answers how many rows the month has and how many are sequenced.
pub const RECORD_MONTH: &str = concat!(
    "WITH month AS MATERIALIZED (SELECT id, coalesce((xact_id::text)::bigint, 0) AS xact FROM {partition}),
     ends AS (SELECT count(*) AS rows, min(xact) AS first_xact, max(xact) AS last_xact, max(id) AS last_id
              FROM month),
     span AS (SELECT (",
    batch_at_or_after!("first_index", "(ends.first_xact::text)::xid8, 0"),
    ") AS low,
                     coalesce((",
    batch_at_or_after!("first_index", "(ends.last_xact::text)::xid8, ends.last_id"),
    "), (SELECT max(first_index) FROM governance_log_batches)) AS high
              FROM ends),
     positions AS (SELECT b.first_index + o.n - 1 AS position, o.evidence_id
                   FROM span JOIN governance_log_batches b ON b.first_index BETWEEN span.low AND span.high
                   CROSS JOIN LATERAL unnest(b.evidence_ids) WITH ORDINALITY AS o(evidence_id, n)
                   WHERE o.evidence_id IN (SELECT id FROM month)),
     sequenced AS (SELECT count(DISTINCT evidence_id) AS rows FROM positions),
     runs AS (SELECT min(position) AS low, max(position) + 1 AS high
              FROM (SELECT position, position - row_number() OVER (ORDER BY position) AS run FROM positions) p
              GROUP BY run),
     recorded AS (
         INSERT INTO governance_log_retention (pruned_below, cutoff, purged, removed, dropped_month)
         SELECT greatest((SELECT max(high) FROM runs),
                         (SELECT coalesce(max(pruned_below), 0) FROM governance_log_retention)),
                (to_date($1, 'YYYYMM') + interval '1 month')::timestamp AT TIME ZONE 'UTC',
                ends.rows,
                (SELECT array_agg(int8range(low, high) ORDER BY low) FROM runs),
                to_date($1, 'YYYYMM')
         FROM ends, sequenced WHERE ends.rows > 0 AND sequenced.rows = ends.rows
         RETURNING purged)
SELECT ends.rows, sequenced.rows AS sequenced, (SELECT count(*) FROM recorded) AS recorded FROM ends, sequenced"
);

/// Every record, one row per removed range (a record without ranges: one row, NULLs).
pub const RETENTION_RECORDS: &str = "\
SELECT to_char(r.purged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS purged_at,
       to_char(r.cutoff AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS cutoff,
       to_char(r.dropped_month, 'YYYY-MM') AS dropped_month,
       (extract(epoch FROM r.dropped_month::timestamp AT TIME ZONE 'UTC') * 1000000)::bigint AS month_us,
       (extract(epoch FROM r.cutoff) * 1000000)::bigint AS cutoff_us,
       r.pruned_below, r.purged, r.removed IS NOT NULL AS exact, lower(range) AS low, upper(range) AS high
FROM governance_log_retention r LEFT JOIN LATERAL unnest(r.removed) AS range ON true
ORDER BY r.purged_at, r.cutoff, r.pruned_below, lower(range)";

// ---- verify

/// Every read of `verify` in one snapshot; read-only, it holds back no one's sequencing.
pub const READ_ONLY_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
pub const END_SNAPSHOT: &str = "COMMIT";
/// The next batch after the one at `$1`.
pub const BATCH_AFTER: &str = "SELECT first_index, evidence_ids, first_stored, hashes FROM governance_log_batches \
     WHERE first_index > $1 ORDER BY first_index LIMIT 1";
/// Every batch's leaves' stored hashes.
pub const EVERY_BATCH: &str =
    "SELECT first_index, cardinality(evidence_ids) AS n, first_stored, hashes FROM governance_log_batches";
/// Every evidence row's key and age, by id.
pub const EVERY_ROW: &str = "SELECT id, xact_id::text AS xact_id, \
     extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_seconds \
     FROM governance_events ORDER BY id";
