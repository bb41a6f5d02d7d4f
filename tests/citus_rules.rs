//! Citus's rules, asserted against the migrated schema (Citus itself cannot
//! be installed where this is built): every table the sidecar writes is
//! named in `deploy/citus/distribute.sql`, and every distributed table has
//! its distribution column, `workspace_id`, in each primary key, unique
//! index and foreign key. The partitioned layout keeps them; the reference
//! layout (Kernite's table, keyed by id alone) does not, which shows that
//! the check can fail.

mod common;

use common::postgres::{connect, fresh_database};
use governance_sidecar::schema::layout::EvidenceLayout;
use governance_sidecar::schema::migrate;

const DISTRIBUTE: &str = include_str!("../deploy/citus/distribute.sql");
const DISTRIBUTION_COLUMN: &str = "workspace_id";

/// The tables `distribute.sql` passes to `function(`, in order.
fn tables_passed_to(function: &str) -> Vec<String> {
    DISTRIBUTE
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .filter_map(|line| line.split_once(&format!("{function}('")))
        .map(|(_, rest)| rest.split('\'').next().unwrap().to_owned())
        .collect()
}

async fn migrated(layout: EvidenceLayout) -> tokio_postgres::Client {
    let mut client = connect(&fresh_database().await).await;
    migrate::migrate_to(&mut client, Some(layout)).await.unwrap();
    client
}

/// The governance tables (partitions aside).
async fn governance_tables(db: &tokio_postgres::Client) -> Vec<String> {
    let rows = db
        .query(
            "SELECT relname::text FROM pg_class WHERE relname LIKE 'governance\\_%' AND relkind IN ('r', 'p') \
             AND NOT relispartition ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Every way `distributed` breaks Citus's rules, one line each.
async fn violations(db: &tokio_postgres::Client, distributed: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for table in distributed {
        let has_column = db
            .query_one(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped",
                &[table, &DISTRIBUTION_COLUMN],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if has_column == 0 {
            found.push(format!("{table} has no {DISTRIBUTION_COLUMN}"));
        }
    }
    let unique = db
        .query(
            "SELECT c.relname::text AS index, t.relname::text AS table FROM pg_index x \
             JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             WHERE x.indisunique AND t.relname = ANY ($1) AND NOT EXISTS ( \
                 SELECT 1 FROM pg_attribute a WHERE a.attrelid = t.oid AND a.attnum = ANY (x.indkey) AND a.attname = $2) \
             ORDER BY 1",
            &[&distributed, &DISTRIBUTION_COLUMN],
        )
        .await
        .unwrap();
    found.extend(unique.iter().map(|r| {
        format!(
            "unique index {} of {} lacks {DISTRIBUTION_COLUMN}",
            r.get::<_, String>("index"),
            r.get::<_, String>("table")
        )
    }));
    // A foreign key touching a distributed table must pair the distribution
    // columns of both sides, at the same position.
    let foreign = db
        .query(
            "SELECT k.conname::text AS key FROM pg_constraint k \
             JOIN pg_class f ON f.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid \
             WHERE k.contype = 'f' AND NOT f.relispartition AND (f.relname = ANY ($1) OR p.relname = ANY ($1)) \
             AND NOT EXISTS (SELECT 1 FROM generate_subscripts(k.conkey, 1) i \
                 JOIN pg_attribute fa ON fa.attrelid = k.conrelid AND fa.attnum = k.conkey[i] \
                 JOIN pg_attribute pa ON pa.attrelid = k.confrelid AND pa.attnum = k.confkey[i] \
                 WHERE fa.attname = $2 AND pa.attname = $2) \
             ORDER BY 1",
            &[&distributed, &DISTRIBUTION_COLUMN],
        )
        .await
        .unwrap();
    found.extend(
        foreign.iter().map(|r| format!("foreign key {} lacks {DISTRIBUTION_COLUMN}", r.get::<_, String>("key"))),
    );
    found
}

#[tokio::test]
async fn every_governance_table_is_distributed_or_copied_to_every_node() {
    let db = migrated(EvidenceLayout::Partitioned).await;
    let (distributed, reference) =
        (tables_passed_to("create_distributed_table"), tables_passed_to("create_reference_table"));
    assert_eq!(distributed, ["governance_events", "governance_mutation_results", "governance_idempotency_keys"]);
    let mut named: Vec<String> = distributed.into_iter().chain(reference).collect();
    named.sort();
    assert_eq!(
        named,
        governance_tables(&db).await,
        "a table distribute.sql does not place would stay on the coordinator"
    );
    for co_located in ["governance_mutation_results", "governance_idempotency_keys"] {
        let call =
            format!("create_distributed_table('{co_located}', 'workspace_id', colocate_with => 'governance_events')");
        assert!(DISTRIBUTE.contains(&call), "{co_located} is co-located with the evidence");
    }
}

#[tokio::test]
async fn the_partitioned_layout_keeps_the_workspace_in_every_key_and_the_reference_layout_does_not() {
    let distributed = tables_passed_to("create_distributed_table");
    let partitioned = migrated(EvidenceLayout::Partitioned).await;
    assert_eq!(violations(&partitioned, &distributed).await, Vec::<String>::new());

    let reference = migrated(EvidenceLayout::Reference).await;
    let broken = violations(&reference, &distributed).await;
    for expected in [
        "governance_idempotency_keys has no workspace_id",
        "unique index governance_events_pkey of governance_events lacks workspace_id",
    ] {
        assert!(broken.iter().any(|v| v == expected), "expected {expected:?} in {broken:#?}");
    }
}
