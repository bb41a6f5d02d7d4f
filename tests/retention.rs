//! Retention with the verifiable log kept (the partitioned layout): a month
//! goes only once the log holds every row of it, the log positions its rows
//! held are recorded exactly, and `verify` passes after any honest drop,
//! even where months interleave in the log (a transaction that straddles
//! midnight, back-dated rows), while it still names every other missing row.

mod common;

use std::time::Duration;

use common::evidence::{Fixture, call, fixture_in, invoice_request};
use common::months::{month, partitions, sequenced, start_of_month, write_at, write_months_ago};
use common::verify_log;
use governance_sidecar::log::checkpoint::LogVerifier;
use governance_sidecar::log::entry;
use governance_sidecar::log::sequencer::LogKeeping;
use governance_sidecar::proto::GetInclusionProofRequest;
use governance_sidecar::proto::get_inclusion_proof_request::Key;
use governance_sidecar::schema::layout::EvidenceLayout;
use governance_sidecar::upkeep::{self, Upkeep};
use tlog_tiles::Hash;

/// A partitioned database whose sidecar keeps the log (a 50 ms interval); the verifier key.
async fn logged(name: &str) -> (Fixture, String) {
    let (key_file, verifier_key) = common::log_key_pair(name);
    let log = LogKeeping { signing_key_file: key_file, interval: Duration::from_millis(50) };
    (fixture_in(EvidenceLayout::Partitioned, Upkeep::default(), Some(log)).await, verifier_key)
}

/// Drops the months whose end is at least `months` months ago; the months dropped.
async fn drop_past(f: &Fixture, months: u32) -> Vec<String> {
    let upkeep = Upkeep { retention_months: Some(months), ..Upkeep::default() };
    upkeep::run_once(&f.db, &upkeep).await.unwrap().expect("the partitioned layout has upkeep").months_dropped
}

fn assert_verifies(f: &Fixture, verifier_key: &str, after: &str) {
    let (verified, printed) = verify_log(&f.url, verifier_key);
    assert!(verified, "verify after {after}:\n{printed}");
}

/// The evidence id and log index of the row with `ctx_id`.
async fn logged_at(f: &Fixture, ctx_id: &str) -> (i64, i64) {
    let row =
        f.db.query_one(
            "SELECT e.id, b.first_index + array_position(b.evidence_ids, e.id) - 1 \
             FROM governance_events e JOIN governance_log_batches b ON e.id = ANY (b.evidence_ids) \
             WHERE e.ctx_id = $1",
            &[&ctx_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A month, then the next month's first row, then the month's last row: a
/// transaction that began before midnight and committed after the next
/// month's first, so the month's last row is sequenced after it. Months
/// `older` and `older + 1` ago, ctx_ids `ctx_first_1` and `ctx_late_1`.
async fn straddling_months(f: &Fixture, older: i32) {
    write_months_ago(f, older, 10).await;
    write_at(f, &start_of_month(1 - older), "first", 1).await;
    write_at(f, &format!("{} - interval '1 second'", start_of_month(1 - older)), "late", 1).await;
}

/// Checks the inclusion proof of `evidence_id` against the signed root.
async fn assert_proof_checks(f: &Fixture, verifier: &LogVerifier, evidence_id: i64) {
    let mut client = f.server.client().await;
    let request = GetInclusionProofRequest { key: Some(Key::EvidenceId(evidence_id)), tree_size: None };
    let proof = client.get_inclusion_proof(request).await.unwrap().into_inner();
    let opened = verifier.open(&proof.checkpoint.unwrap().signed_note).unwrap();
    let path: Vec<Hash> = proof.audit_path.iter().map(|h| Hash(h.as_slice().try_into().unwrap())).collect();
    tlog_tiles::check_record(&path, opened.size, opened.root, proof.leaf_index, entry::leaf_hash(&proof.entry))
        .unwrap_or_else(|e| panic!("evidence {evidence_id}: {e}"));
}

#[tokio::test]
async fn a_month_whose_last_transaction_committed_after_the_next_months_first_drops_and_verifies() {
    let (f, verifier_key) = logged("retention-straddle").await;
    let verifier = LogVerifier::new(&verifier_key).unwrap();
    straddling_months(&f, 14).await;
    f.execute(call(invoice_request(250, "USD"), Some("now"), "create_invoice")).await.unwrap();
    sequenced(&f).await;
    let (first_of_next, first_index) = logged_at(&f, "ctx_first_1").await;
    let (late, late_index) = logged_at(&f, "ctx_late_1").await;
    assert!(late_index > first_index, "the old month's last row is sequenced after the next month's first");

    assert_eq!(drop_past(&f, 13).await, vec![month(&f, "governance_events", -14).await]);
    assert_verifies(&f, &verifier_key, "a drop whose month interleaves with the next");
    let recorded = "SELECT removed::text FROM governance_log_retention";
    let removed: String = f.db.query_one(recorded, &[]).await.unwrap().get(0);
    assert_eq!(removed, format!("{{\"[0,{first_index})\",\"[{late_index},{})\"}}", late_index + 1));
    // verify lists each record, for an auditor to hold against the retention policy.
    let output = std::process::Command::new(common::dev::BINARY)
        .args(["verify", "--database-url", &f.url, "--public-key", &verifier_key])
        .output()
        .unwrap();
    let name = "SELECT to_char((now() AT TIME ZONE 'UTC') - interval '14 months', 'YYYY-MM')";
    let old_month: String = f.db.query_one(name, &[]).await.unwrap().get(0);
    let listed =
        format!("(month {old_month}): 11 rows, log positions [0,{first_index}) [{late_index},{})", late_index + 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&listed), "expected {listed:?} in:\n{stderr}");

    // The kept row's proof stays valid; the removed row has none.
    assert_proof_checks(&f, &verifier, first_of_next).await;
    let mut client = f.server.client().await;
    let removed = GetInclusionProofRequest { key: Some(Key::EvidenceId(late)), tree_size: None };
    assert_eq!(client.get_inclusion_proof(removed).await.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn back_dated_rows_sequenced_after_current_ones_drop_and_verify() {
    let (f, verifier_key) = logged("retention-back-dated").await;
    let verifier = LogVerifier::new(&verifier_key).unwrap();
    let current = f.execute(call(invoice_request(250, "USD"), Some("now"), "create_invoice")).await.unwrap();
    write_months_ago(&f, 14, 5).await;
    f.execute(call(invoice_request(300, "USD"), Some("later"), "create_invoice")).await.unwrap();
    sequenced(&f).await;
    assert_eq!(logged_at(&f, "ctx_old_14_1").await.1, 1, "the back-dated rows come after the current row");

    assert_eq!(drop_past(&f, 13).await.len(), 1);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 2);
    assert_verifies(&f, &verifier_key, "a drop of back-dated rows");
    assert_proof_checks(&f, &verifier, current.evidence_id).await;
}

#[tokio::test]
async fn two_drops_one_after_the_other_verify() {
    let (f, verifier_key) = logged("retention-two-drops").await;
    straddling_months(&f, 15).await;
    write_months_ago(&f, 14, 3).await;
    write_at(&f, &start_of_month(-13), "second_first", 1).await;
    write_at(&f, &format!("{} - interval '1 second'", start_of_month(-13)), "second_late", 1).await;
    f.execute(call(invoice_request(250, "USD"), Some("now"), "create_invoice")).await.unwrap();
    sequenced(&f).await;

    assert_eq!(drop_past(&f, 14).await, vec![month(&f, "governance_events", -15).await]);
    assert_verifies(&f, &verifier_key, "the first drop");
    assert_eq!(drop_past(&f, 13).await, vec![month(&f, "governance_events", -14).await]);
    assert_verifies(&f, &verifier_key, "the second drop");
    let months = "SELECT count(*) FROM governance_log_retention WHERE dropped_month IS NOT NULL";
    assert_eq!(f.count(months).await, 2);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 2, "month -13's first row and today's");
}

#[tokio::test]
async fn a_kept_row_deleted_after_a_drop_is_still_named() {
    let (f, verifier_key) = logged("retention-then-deletion").await;
    straddling_months(&f, 14).await;
    sequenced(&f).await;
    drop_past(&f, 13).await;
    assert_verifies(&f, &verifier_key, "the drop");

    let (kept, index) = logged_at(&f, "ctx_first_1").await;
    f.db.batch_execute(
        "SET session_replication_role = replica; DELETE FROM governance_events WHERE ctx_id = 'ctx_first_1'; \
         RESET session_replication_role",
    )
    .await
    .unwrap();
    let (verified, printed) = verify_log(&f.url, &verifier_key);
    assert!(!verified, "verify passed after a kept row was deleted");
    let named = format!("evidence {kept} (log index {index}): deleted, and not by retention");
    assert!(printed.contains(&named), "expected {named:?} in:\n{printed}");
}

#[tokio::test]
async fn a_drop_while_eight_keyed_callers_write_loses_nothing_acknowledged() {
    let (f, verifier_key) = logged("retention-under-load").await;
    straddling_months(&f, 14).await;
    sequenced(&f).await;
    let load = common::load::KeyedLoad::start(&f.server.address.to_string(), 8, "during-drop", |key| {
        call(invoice_request(250, "USD"), Some(key), "create_invoice_plain")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(drop_past(&f, 13).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (acknowledged, failed) = load.stop().await;
    assert_eq!(failed, 0, "no write failed while the month was dropped");
    assert!(!acknowledged.is_empty());
    let written = "SELECT count(*) FROM governance_events WHERE idempotency_key LIKE 'during-drop-%'";
    assert_eq!(f.count(written).await, acknowledged.len() as i64, "every acknowledged write is stored");
    sequenced(&f).await;
    assert_verifies(&f, &verifier_key, "a drop under load");
}

#[tokio::test]
async fn a_month_the_log_has_not_sequenced_stays_and_goes_once_it_has() {
    let (f, verifier_key) = logged("retention-unsequenced").await;
    for months in [14, 13] {
        write_months_ago(&f, months, 20).await;
    }
    f.execute(call(invoice_request(250, "USD"), Some("now"), "create_invoice")).await.unwrap();
    sequenced(&f).await;
    // A row the sequencer cannot reach yet: its transaction id is beyond every running one.
    f.db.batch_execute(
        "INSERT INTO governance_events (created_at, xact_id, workspace_id, principal_id, object_type, operation, \
             decision, reason_codes, ctx_id, trace_hash, response_json) \
         VALUES (now() - interval '14 months', '999999999999', 'ws_demo', 'usr_1', 'invoice', 'create', \
                 'denied', '[]', 'ctx_unsequenced', 'sha256:x', '{}')",
    )
    .await
    .unwrap();
    let upkeep = Upkeep { retention_months: Some(12), ..Upkeep::default() };
    let report = upkeep::run_once(&f.db, &upkeep).await.unwrap().unwrap();
    assert_eq!(report.months_dropped, Vec::<String>::new(), "the oldest month holds a row not in the log");
    assert_eq!(report.kept_for_log, Some(month(&f, "governance_events", -14).await));
    assert_eq!(f.count("SELECT count(*) FROM governance_log_retention").await, 0, "nothing recorded");

    // Without it, both months go, and the log still verifies.
    f.db.batch_execute(
        "SET session_replication_role = replica; DELETE FROM governance_events WHERE ctx_id = 'ctx_unsequenced'; \
         RESET session_replication_role",
    )
    .await
    .unwrap();
    assert_eq!(drop_past(&f, 12).await.len(), 2);
    let pruned = f.count("SELECT max(pruned_below) FROM governance_log_retention").await;
    assert_eq!(pruned, 40, "the forty old rows were the log's first forty leaves");
    assert_verifies(&f, &verifier_key, "two drops in one pass");
}

#[tokio::test]
async fn a_record_of_the_first_form_from_a_month_boundary_drop_verifies() {
    let (f, verifier_key) = logged("retention-first-form").await;
    straddling_months(&f, 14).await;
    f.execute(call(invoice_request(250, "USD"), Some("now"), "create_invoice")).await.unwrap();
    sequenced(&f).await;
    // The drop as a sidecar before migration 9 made it: a prefix up to the
    // month's last row, though the next month's first row lies inside it.
    let (_, late_index) = logged_at(&f, "ctx_late_1").await;
    let old_month = month(&f, "governance_events", -14).await;
    let results = month(&f, "governance_mutation_results", -14).await;
    f.db.execute(
        "INSERT INTO governance_log_retention (pruned_below, cutoff, purged) \
         VALUES ($1, date_trunc('month', (now() AT TIME ZONE 'UTC') - interval '13 months') AT TIME ZONE 'UTC', 11)",
        &[&(late_index + 1)],
    )
    .await
    .unwrap();
    for (parent, partition) in [("governance_mutation_results", &results), ("governance_events", &old_month)] {
        f.db.batch_execute(&format!("ALTER TABLE {parent} DETACH PARTITION {partition}; DROP TABLE {partition}"))
            .await
            .unwrap();
    }
    assert!(!partitions(&f, "governance_events").await.contains(&old_month));
    assert_verifies(&f, &verifier_key, "a drop recorded in the first form");
}
