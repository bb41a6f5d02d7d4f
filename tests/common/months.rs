//! Months of evidence for the partitioned layout's tests: partitions by
//! name, old rows written by the owner, and the log catching up with them.

use std::time::{Duration, Instant};

use super::evidence::Fixture;

/// The partitions of a table, by name.
pub async fn partitions(f: &Fixture, table: &str) -> Vec<String> {
    let rows =
        f.db.query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = $1::text::regclass ORDER BY 1",
            &[&table],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// The name of the month `months` from now (negative: ago), as partitions are named.
pub async fn month(f: &Fixture, table: &str, months: i32) -> String {
    let sql = "SELECT $1 || to_char((now() AT TIME ZONE 'UTC') + make_interval(months => $2), '\"_p\"YYYYMM')";
    f.db.query_one(sql, &[&table, &months]).await.unwrap().get(0)
}

/// Old evidence, as if written `months` ago: rows (with a result) inserted by the owner.
pub async fn write_months_ago(f: &Fixture, months: i32, rows: i32) {
    write_at(f, &format!("now() - interval '{months} months'"), &format!("old_{months}"), rows).await;
}

/// The start of the month `months` from now (negative: ago), UTC, as SQL.
pub fn start_of_month(months: i32) -> String {
    format!("(date_trunc('month', (now() AT TIME ZONE 'UTC') + interval '{months} months') AT TIME ZONE 'UTC')")
}

/// Rows (with a result) written by the owner at `created_at`, an SQL
/// expression, with ctx_ids `ctx_<label>_<n>`; their months' partitions are
/// created first.
pub async fn write_at(f: &Fixture, created_at: &str, label: &str, rows: i32) {
    f.db.batch_execute(&format!("SELECT governance_create_month_partitions(least({created_at}, now()), now())"))
        .await
        .unwrap();
    f.db.execute(
        &format!(
            "WITH old AS (INSERT INTO governance_events (created_at, workspace_id, principal_id, object_type, \
                 operation, decision, reason_codes, ctx_id, trace_hash, idempotency_key, response_json, mutation_name) \
             SELECT {created_at}, 'ws_demo', 'usr_1', 'invoice', 'create', 'approved', '[]', \
                    'ctx_' || $1::text || '_' || g, 'sha256:old', NULL, '{{\"old\": true}}', 'create_invoice' \
             FROM generate_series(1, $2) g RETURNING id, workspace_id, created_at) \
             INSERT INTO governance_mutation_results (evidence_id, workspace_id, created_at, rows_affected, \
                 returning_rows) \
             SELECT id, workspace_id, created_at, 1, '[]' FROM old"
        ),
        &[&label, &rows],
    )
    .await
    .unwrap();
}

/// Waits until the log's latest checkpoint covers every row; returns its size.
pub async fn sequenced(f: &Fixture) -> i64 {
    let all = f.count("SELECT count(*) FROM governance_events").await;
    let started = Instant::now();
    loop {
        let size = f.count("SELECT coalesce(max(tree_size), 0) FROM governance_log_checkpoints").await;
        if size >= all {
            return size;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the log never reached {all} rows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
