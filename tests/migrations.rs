//! The evidence schema: migrations applied once under concurrent start-ups,
//! newer schemas and bad mutation statements refused at start-up, evidence
//! tables that only the purge function can delete from, and a purge that
//! removes a write whole or not at all.

mod common;

use common::evidence::{call, database, fixture, invoice_request};
use common::postgres::{connect, fresh_database};
use governance_sidecar::evidence::redact::Redactor;
use governance_sidecar::evidence::{EvidenceStore, WriteSettings};
use governance_sidecar::mutations::Registry;
use governance_sidecar::schema::migrate;

#[tokio::test]
async fn concurrent_migrators_apply_each_version_once_and_newer_schemas_are_refused() {
    let url = fresh_database().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = connect(&url).await;
            migrate::migrate(&mut client).await.unwrap()
        }));
    }
    let mut applied = Vec::new();
    for task in tasks {
        applied.extend(task.await.unwrap());
    }
    applied.sort();
    assert_eq!(applied, (1..=migrate::latest_version()).collect::<Vec<_>>());

    let client = connect(&url).await;
    migrate::check_schema(&client).await.unwrap();
    client
        .execute("INSERT INTO governance_schema_migrations (version, name) VALUES (999, 'future')", &[])
        .await
        .unwrap();
    let error = migrate::check_schema(&client).await.unwrap_err();
    assert!(error.to_string().contains("newer than this binary knows"), "{error}");
}

#[tokio::test]
async fn a_bad_statement_stops_start_up_naming_the_mutation() {
    let url = fresh_database().await;
    let mut admin = connect(&url).await;
    migrate::migrate(&mut admin).await.unwrap();
    let registry = Registry::parse(
        "[[mutations]]\nname = \"broken\"\nobject_type = \"x\"\noperation = \"create\"\nstatements = [\"INSERT INTO no_such_table VALUES (1)\"]\n",
    )
    .unwrap();
    let error = EvidenceStore::connect(&database(&url), WriteSettings::default(), registry, Redactor::default())
        .await
        .err()
        .expect("start-up must fail");
    assert!(error.to_string().contains("mutation `broken`"), "{error}");
}

#[tokio::test]
async fn evidence_is_append_only_except_through_the_purge_function() {
    let f = fixture().await;
    f.execute(call(invoice_request(250, "USD"), Some("k-keep"), "create_invoice")).await.unwrap();
    f.execute(call(invoice_request(5000, "USD"), Some("k-denied"), "create_invoice")).await.unwrap();

    for tampering in [
        "UPDATE governance_events SET decision = 'approved'",
        "DELETE FROM governance_events",
        "TRUNCATE governance_events CASCADE",
        "UPDATE governance_mutation_results SET rows_affected = 0",
        "DELETE FROM governance_mutation_results",
        "TRUNCATE governance_mutation_results",
    ] {
        let error = f.db.batch_execute(tampering).await.expect_err(tampering);
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{tampering}: {error}"
        );
    }
    // Another role with DELETE privilege cannot open the door by setting the flag itself.
    f.db.batch_execute("CREATE ROLE evidence_tamperer; GRANT DELETE, SELECT ON governance_events TO evidence_tamperer")
        .await
        .unwrap();
    let error = f
        .db
        .batch_execute("BEGIN; SET LOCAL ROLE evidence_tamperer; SET LOCAL governance.purging = 'on'; DELETE FROM governance_events; COMMIT")
        .await
        .expect_err("flag set by another role");
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{error}");
    f.db.batch_execute("ROLLBACK").await.unwrap();
    // Nobody may run the purge function until it is granted.
    let error =
        f.db.batch_execute("BEGIN; SET LOCAL ROLE evidence_tamperer; SELECT governance_purge_before(now()); COMMIT")
            .await
            .expect_err("purge without a grant");
    assert_eq!(error.code(), Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{error}");
    f.db.batch_execute("ROLLBACK; DROP OWNED BY evidence_tamperer; DROP ROLE evidence_tamperer").await.unwrap();
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 2);

    // Retention: the purge function deletes what is older than the cutoff, results included.
    let purged: i64 =
        f.db.query_one("SELECT governance_purge_before(now() + interval '1 minute')", &[]).await.unwrap().get(0);
    assert_eq!(purged, 2);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM governance_mutation_results").await, 0);
    // ...and the door closes behind it.
    assert!(f.db.batch_execute("DELETE FROM governance_events").await.is_ok(), "nothing left to refuse");
    f.execute(call(invoice_request(250, "USD"), Some("k-after"), "create_invoice")).await.unwrap();
    assert!(f.db.batch_execute("DELETE FROM governance_events").await.is_err());
}

/// The compression of a table's `response_json` and `request_json` columns
/// (`l` for lz4, as pg_attribute spells it), by table.
async fn column_compression(client: &tokio_postgres::Client) -> Vec<(String, String, String)> {
    let rows = client
        .query(
            "SELECT c.relname::text, a.attname::text, a.attcompression::text FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname LIKE 'governance_events%' AND c.relkind IN ('r', 'p') \
               AND a.attname IN ('response_json', 'request_json') ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect()
}

#[tokio::test]
async fn the_large_columns_are_compressed_with_lz4_and_a_row_written_after_says_so() {
    let f = fixture().await;
    let compression = column_compression(&f.db).await;
    assert_eq!(compression.len(), 2, "{compression:?}");
    assert!(compression.iter().all(|(_, _, method)| method == "l"), "{compression:?}");
    // A row whose request is large enough to be compressed stores it with lz4.
    let mut request: serde_json::Value = serde_json::from_str(&invoice_request(250, "USD")).unwrap();
    request["payload"]["memo"] = serde_json::Value::String("lz4 or pglz? ".repeat(400));
    let executed = f.execute(call(request.to_string(), Some("lz4-1"), "create_invoice")).await.unwrap();
    let stored =
        f.db.query_one(
            "SELECT pg_column_compression(request_json) AS request FROM governance_events WHERE id = $1",
            &[&executed.evidence_id],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, Option<String>>("request").as_deref(), Some("lz4"));
}

#[tokio::test]
async fn the_result_table_checks_no_foreign_key_and_every_result_still_has_its_row() {
    let f = fixture().await;
    let foreign_keys = f
        .count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'governance_mutation_results'::regclass AND contype = 'f'")
        .await;
    assert_eq!(foreign_keys, 0, "migration 13 drops the result table's foreign key");
    let executed = f.execute(call(invoice_request(250, "USD"), Some("no-fk-1"), "create_invoice")).await.unwrap();
    f.execute(call(invoice_request(5000, "USD"), Some("no-fk-2"), "create_invoice")).await.unwrap();
    // The one result (the denied write has none) belongs to the approved write's row.
    assert_eq!(f.count("SELECT count(*) FROM governance_mutation_results").await, 1);
    let orphans = f
        .count(
            "SELECT count(*) FROM governance_mutation_results r \
             WHERE NOT EXISTS (SELECT 1 FROM governance_events e WHERE e.id = r.evidence_id)",
        )
        .await;
    assert_eq!(orphans, 0);
    let joined = f
        .count(&format!(
            "SELECT count(*) FROM governance_mutation_results WHERE evidence_id = {}",
            executed.evidence_id
        ))
        .await;
    assert_eq!(joined, 1);
}

/// A purge without a log checkpoint, racing a write that commits while it
/// runs, removes that write whole or keeps it whole: never its row without
/// its result (migration 15; before it, the purge's two statements each took
/// a snapshot of their own, and the second deleted a row whose result the
/// first had not seen).
#[tokio::test]
async fn a_purge_racing_a_write_never_leaves_a_result_without_its_row() {
    let f = fixture().await;
    let old = f.execute(call(invoice_request(250, "USD"), Some("race-old"), "create_invoice")).await.unwrap();
    let writer = connect(&f.url).await;
    let purger = connect(&f.url).await;

    // The writer holds the old result's row lock, so the purge waits on it
    // mid-way; meanwhile the writer adds a row (older than the cutoff) and its result.
    writer.batch_execute("BEGIN").await.unwrap();
    writer
        .execute("SELECT 1 FROM governance_mutation_results WHERE evidence_id = $1 FOR UPDATE", &[&old.evidence_id])
        .await
        .unwrap();
    let copied: i64 = writer
        .query_one(
            "INSERT INTO governance_events SELECT (jsonb_populate_record(NULL::governance_events, to_jsonb(e) \
               || jsonb_build_object('id', nextval('governance_events_id_seq'), 'idempotency_key', NULL))).* \
             FROM governance_events e WHERE id = $1 RETURNING id",
            &[&old.evidence_id],
        )
        .await
        .unwrap()
        .get(0);
    writer
        .execute(
            "INSERT INTO governance_mutation_results SELECT (jsonb_populate_record(NULL::governance_mutation_results, \
               to_jsonb(r) || jsonb_build_object('evidence_id', $2::bigint))).* \
             FROM governance_mutation_results r WHERE evidence_id = $1",
            &[&old.evidence_id, &copied],
        )
        .await
        .unwrap();
    let purge = tokio::spawn(async move {
        purger.query_one("SELECT governance_purge_before(now() + interval '1 minute')", &[]).await.map(|_| ())
    });
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE wait_event_type = 'Lock' AND query LIKE '%governance_purge_before%'";
    let started = std::time::Instant::now();
    while f.count(waiting).await == 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "the purge never waited on the lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    writer.batch_execute("COMMIT").await.unwrap();
    purge.await.unwrap().unwrap();

    let orphans = f
        .count(
            "SELECT count(*) FROM governance_mutation_results r \
             WHERE NOT EXISTS (SELECT 1 FROM governance_events e WHERE e.id = r.evidence_id)",
        )
        .await;
    assert_eq!(orphans, 0, "a result outlived its row");
    let kept = f.count(&format!("SELECT count(*) FROM governance_events WHERE id = {copied}")).await;
    let kept_result =
        f.count(&format!("SELECT count(*) FROM governance_mutation_results WHERE evidence_id = {copied}")).await;
    assert_eq!(kept, kept_result, "the racing write was split: row {kept}, result {kept_result}");
    assert_eq!(f.count(&format!("SELECT count(*) FROM governance_events WHERE id = {}", old.evidence_id)).await, 0);
}
