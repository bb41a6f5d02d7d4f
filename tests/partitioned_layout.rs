//! The partitioned layout (`migrate --layout partitioned`): the governed
//! write, replays and the audit reads as in the reference layout; the
//! conversion keeps every row; idempotency keys live as long as configured;
//! retention drops whole months while writes go on (with the verifiable log:
//! `retention.rs`).

mod common;

use std::time::Duration;

use common::TestServer;
use common::evidence::{BOTH_PATHS, Fixture, REGISTRY, call, fixture_in, invoice_request};
use common::months::{month, partitions, write_months_ago};
use common::postgres::connect;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::proto::{GetEvidenceRequest, IdempotencyRef, ListEvidenceRequest, get_evidence_request};
use governance_sidecar::schema::layout::{self, EvidenceLayout};
use governance_sidecar::schema::migrate;
use governance_sidecar::upkeep::{self, Upkeep};

async fn partitioned(upkeep: Upkeep) -> Fixture {
    fixture_in(EvidenceLayout::Partitioned, upkeep, None).await
}

/// The compression of every partition's large columns (`l` for lz4), by table.
async fn partition_compression(db: &tokio_postgres::Client) -> Vec<(String, String)> {
    let rows = db
        .query(
            "SELECT c.relname::text, a.attcompression::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname LIKE 'governance_events%' AND c.relkind IN ('r', 'p') \
               AND a.attname IN ('response_json', 'request_json') ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| (row.get(0), row.get(1))).collect()
}

/// A database converted before migration 12 kept pglz on the partitions it
/// had then, since a parent's setting reaches only partitions created after
/// it: migration 14 sets every one.
#[tokio::test]
async fn migration_14_compresses_partitions_that_kept_pglz_with_lz4() {
    let f = partitioned(Upkeep::default()).await;
    let mut owner = connect(&f.url).await;
    for (table, _) in partition_compression(&f.db).await {
        owner
            .batch_execute(&format!(
                "ALTER TABLE {table} ALTER COLUMN response_json SET COMPRESSION pglz, \
                 ALTER COLUMN request_json SET COMPRESSION pglz"
            ))
            .await
            .unwrap();
    }
    owner.batch_execute("DELETE FROM governance_schema_migrations WHERE version >= 14").await.unwrap();
    assert_eq!(migrate::migrate(&mut owner).await.unwrap(), [14, 15]);
    let compression = partition_compression(&f.db).await;
    assert!(compression.len() >= 2 * 5, "the parent and its four partitions: {compression:?}");
    assert!(compression.iter().all(|(_, method)| method == "l"), "{compression:?}");
}

#[tokio::test]
async fn a_new_database_has_this_month_and_three_ahead_and_writes_replay_and_read_back_as_before() {
    let f = partitioned(Upkeep::default()).await;
    assert_eq!(layout::detect(&f.db).await.unwrap(), EvidenceLayout::Partitioned);
    // The parent's lz4 (migration 12, set again by the conversion) holds for every partition.
    let compression = partition_compression(&f.db).await;
    assert!(compression.len() >= 2 * 5, "the parent and its four partitions: {compression:?}");
    assert!(compression.iter().all(|(_, method)| method == "l"), "{compression:?}");
    for table in ["governance_events", "governance_mutation_results"] {
        let expected: Vec<String> = futures_util::future::join_all((0..=3).map(|m| month(&f, table, m))).await;
        assert_eq!(partitions(&f, table).await, expected);
    }
    for (n, mutation) in BOTH_PATHS.into_iter().enumerate() {
        let key = format!("part-{n}");
        let first = f.execute(call(invoice_request(250, "USD"), Some(&key), mutation)).await.unwrap();
        assert!(first.mutation_applied && !first.replayed, "{mutation}");
        let again = f.execute(call(invoice_request(250, "USD"), Some(&key), mutation)).await.unwrap();
        assert!(again.replayed && again.evidence_id == first.evidence_id, "{mutation}: {again:?}");
        let reused = f.execute(call(invoice_request(999, "USD"), Some(&key), mutation)).await.unwrap_err();
        assert_eq!(reused.code(), tonic::Code::AlreadyExists, "{mutation}");

        // The row, its result and its key claim, in this month's partitions.
        let this_month = month(&f, "governance_events", 0).await;
        let in_partition = format!("SELECT count(*) FROM {this_month} WHERE id = {}", first.evidence_id);
        assert_eq!(f.count(&in_partition).await, 1);
        let result = format!(
            "SELECT count(*) FROM governance_mutation_results r JOIN governance_events e \
             ON e.id = r.evidence_id AND e.workspace_id = r.workspace_id AND e.created_at = r.created_at \
             WHERE e.id = {}",
            first.evidence_id
        );
        assert_eq!(f.count(&result).await, 1, "{mutation}: the result row shares the row's month and workspace");
        let claim =
            format!("SELECT count(*) FROM governance_idempotency_keys WHERE evidence_id = {}", first.evidence_id);
        assert_eq!(f.count(&claim).await, 1);

        let mut client = f.server.client().await;
        let by_key = get_evidence_request::Key::Idempotency(IdempotencyRef {
            workspace_id: "ws_1".into(),
            idempotency_key: key.clone(),
        });
        let stored = client.get_evidence(GetEvidenceRequest { key: Some(by_key) }).await.unwrap().into_inner();
        assert_eq!(stored.evidence_id, first.evidence_id);
    }
    let mut client = f.server.client().await;
    let page = ListEvidenceRequest { workspace_id: "ws_1".into(), page_size: 1, ..Default::default() };
    let page = client.list_evidence(page).await.unwrap().into_inner();
    assert_eq!(page.records.len(), 1);
    assert!(!page.next_page_token.is_empty());
}

#[tokio::test]
async fn converting_a_reference_database_keeps_every_row_its_id_and_its_key() {
    let f = fixture_in(EvidenceLayout::Reference, Upkeep::default(), None).await;
    let mut ids = Vec::new();
    for (n, mutation) in BOTH_PATHS.into_iter().enumerate() {
        ids.push(f.execute(call(invoice_request(250, "USD"), Some(&format!("old-{n}")), mutation)).await.unwrap());
    }
    f.execute(call(invoice_request(5000, "USD"), Some("old-denied"), "create_invoice")).await.unwrap();
    f.execute(call(invoice_request(300, "USD"), None, "create_invoice")).await.unwrap();
    let snapshot = "SELECT string_agg(e::text || coalesce(r.rows_affected::text || r.returning_rows::text, ''), E'\\n' \
                    ORDER BY e.id) FROM governance_events e \
                    LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id";
    let before: String = f.db.query_one(snapshot, &[]).await.unwrap().get(0);

    let mut admin = connect(&f.url).await;
    migrate::migrate_to(&mut admin, Some(EvidenceLayout::Partitioned)).await.unwrap();
    assert_eq!(layout::detect(&admin).await.unwrap(), EvidenceLayout::Partitioned);
    let after: String = f.db.query_one(snapshot, &[]).await.unwrap().get(0);
    assert_eq!(before, after, "every row as it was, with its result");
    let back = migrate::migrate_to(&mut admin, Some(EvidenceLayout::Reference)).await.unwrap_err();
    assert!(back.to_string().contains("cannot be turned back"), "{back}");

    // A sidecar started on the converted database (its role keeps its rights) replays the old keys.
    let store = common::evidence::store(&f.sidecar_url, REGISTRY).await;
    let converted = TestServer::start(
        ServerSettings::default(),
        GovernanceApi::with_evidence(store).allowing_request_policies(true),
    )
    .await;
    let mut client = converted.client().await;
    for (n, mutation) in BOTH_PATHS.into_iter().enumerate() {
        let retry = call(invoice_request(250, "USD"), Some(&format!("old-{n}")), mutation);
        let again = client.execute_with_evidence(retry).await.unwrap().into_inner();
        assert!(again.replayed && again.evidence_id == ids[n].evidence_id, "{mutation}: {again:?}");
    }
    let new = call(invoice_request(250, "USD"), Some("new"), "create_invoice");
    let new = client.execute_with_evidence(new).await.unwrap().into_inner();
    assert!(new.evidence_id > ids.iter().map(|w| w.evidence_id).max().unwrap(), "ids go on");
}

#[tokio::test]
async fn a_retry_within_the_key_lifetime_replays_and_one_after_it_is_a_new_request() {
    let lifetime = Duration::from_secs(2);
    let f = partitioned(Upkeep { key_lifetime: lifetime, ..Upkeep::default() }).await;
    for (n, mutation) in BOTH_PATHS.into_iter().enumerate() {
        let key = format!("life-{n}");
        let first = f.execute(call(invoice_request(250, "USD"), Some(&key), mutation)).await.unwrap();
        let within = f.execute(call(invoice_request(250, "USD"), Some(&key), mutation)).await.unwrap();
        assert!(within.replayed && within.evidence_id == first.evidence_id, "{mutation}");
        tokio::time::sleep(lifetime + Duration::from_millis(200)).await;
        let after = f.execute(call(invoice_request(250, "USD"), Some(&key), mutation)).await.unwrap();
        assert!(after.mutation_applied && !after.replayed, "{mutation}: a new request after the lifetime");
        assert!(after.evidence_id > first.evidence_id);
        let again = f.execute(call(invoice_request(250, "USD"), Some(&key), mutation)).await.unwrap();
        assert!(again.replayed && again.evidence_id == after.evidence_id, "{mutation}: the new claim replays");
    }
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 4, "two writes per key: before and after expiry");

    // The sidecar's own upkeep forgets what has expired, and only that; its
    // role may not create partitions (the owner's right), which it survives.
    tokio::time::sleep(lifetime + Duration::from_millis(200)).await;
    f.execute(call(invoice_request(250, "USD"), Some("fresh"), "create_invoice")).await.unwrap();
    let upkeep = Upkeep { key_lifetime: lifetime, months_ahead: 6, ..Upkeep::default() };
    let sidecar_role = connect(&f.sidecar_url).await;
    let report = upkeep::run_once(&sidecar_role, &upkeep).await.unwrap().expect("the partitioned layout has upkeep");
    assert_eq!((report.partitions_created, report.keys_forgotten), (0, 2));
    let left = "SELECT string_agg(idempotency_key, ',') FROM governance_idempotency_keys";
    assert_eq!(f.db.query_one(left, &[]).await.unwrap().get::<_, String>(0), "fresh");
}

#[tokio::test]
async fn retention_drops_whole_months_past_it_while_writes_go_on() {
    let f = partitioned(Upkeep::default()).await;
    for months in [14, 13, 2] {
        write_months_ago(&f, months, 100).await;
    }
    let load = common::load::KeyedLoad::start(&f.server.address.to_string(), 4, "during-drop", |key| {
        call(invoice_request(250, "USD"), Some(key), "create_invoice_plain")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let upkeep = Upkeep { retention_months: Some(12), ..Upkeep::default() };
    let report = upkeep::run_once(&f.db, &upkeep).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (acknowledged, failed) = load.stop().await;
    assert_eq!(failed, 0, "no write failed while months were dropped");
    assert!(!acknowledged.is_empty());

    let dropped = vec![month(&f, "governance_events", -14).await, month(&f, "governance_events", -13).await];
    assert_eq!(report.months_dropped, dropped);
    for table in ["governance_events", "governance_mutation_results"] {
        let left = partitions(&f, table).await;
        assert!(!left.contains(&month(&f, table, -14).await) && !left.contains(&month(&f, table, -13).await));
        assert!(left.contains(&month(&f, table, -2).await), "{table}: a month within retention stays");
        assert!(left.contains(&month(&f, table, 3).await), "{table}: months ahead are kept");
    }
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE ctx_id LIKE 'ctx_old_1%'").await, 0);
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE ctx_id LIKE 'ctx_old_2_%'").await, 100);
    let written = "SELECT count(*) FROM governance_events WHERE idempotency_key LIKE 'during-drop-%'";
    assert_eq!(f.count(written).await, acknowledged.len() as i64, "every acknowledged write is stored");
}
