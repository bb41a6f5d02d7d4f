//! The verifiable log: every evidence row becomes a leaf of a Merkle tree
//! whose signed checkpoints, inclusion proofs and consistency proofs check
//! with the public key alone; `verify` names each kind of tampering; and a
//! sequencer killed in the middle of a batch leaves one consistent log.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dev::BINARY;
use common::evidence::{Fixture, call, fixture, fixture_keeping, invoice_request};
use governance_sidecar::log::checkpoint::{LogSigner, LogVerifier};
use governance_sidecar::log::entry;
use governance_sidecar::log::sequencer::LogKeeping;
use governance_sidecar::proto::{
    self, GetCheckpointRequest, GetConsistencyProofRequest, GetInclusionProofRequest, IdempotencyRef,
    get_inclusion_proof_request::Key,
};
use tlog_tiles::Hash;
use tonic::Code;

use common::log_key_pair as key_pair;
use common::verify_log as verify;

/// The evidence fixture with its sidecar keeping the log (a 50 ms interval).
async fn logged(name: &str) -> (Fixture, String) {
    let (key_file, verifier) = key_pair(name);
    let f = fixture_keeping(Some(LogKeeping { signing_key_file: key_file, interval: Duration::from_millis(50) })).await;
    (f, verifier)
}

/// Waits for a checkpoint of at least `size` leaves.
async fn checkpoint_of_at_least(f: &Fixture, size: u64) -> proto::Checkpoint {
    let mut client = f.server.client().await;
    let started = Instant::now();
    loop {
        if let Ok(checkpoint) = client.get_checkpoint(GetCheckpointRequest { tree_size: None }).await {
            let checkpoint = checkpoint.into_inner();
            if checkpoint.tree_size >= size {
                return checkpoint;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no checkpoint of {size} leaves");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hashes(bytes: &[Vec<u8>]) -> Vec<Hash> {
    bytes.iter().map(|h| Hash(h.as_slice().try_into().unwrap())).collect()
}

/// Writes approved, denied and approved-without-key rows; returns their evidence ids.
async fn write_rows(f: &Fixture) -> Vec<i64> {
    let mut ids = Vec::new();
    // Both ways an approved write runs: a transaction, and one statement.
    let rows = [
        (250, Some("log-1"), "create_invoice"),
        (5000, Some("log-2"), "create_invoice"),
        (300, None, "create_invoice_plain"),
        (7000, None, "create_invoice"),
    ];
    for (amount, key, mutation) in rows {
        let written = f.execute(call(invoice_request(amount, "USD"), key, mutation)).await.unwrap();
        ids.push(written.evidence_id);
    }
    ids
}

#[tokio::test]
async fn every_row_has_a_leaf_whose_proofs_check_with_the_public_key_alone() {
    let (f, verifier_key) = logged("log-proofs").await;
    let verifier = LogVerifier::new(&verifier_key).unwrap();
    let ids = write_rows(&f).await;
    let earlier = checkpoint_of_at_least(&f, 2).await;
    let later_id = f.execute(call(invoice_request(400, "EUR"), Some("log-5"), "create_invoice")).await.unwrap();
    let latest = checkpoint_of_at_least(&f, 5).await;
    let opened = verifier.open(&latest.signed_note).unwrap();
    assert_eq!((opened.size, opened.root.0.to_vec()), (latest.tree_size, latest.root_hash.clone()));
    assert!(latest.signed_note.starts_with("test.example/evidence\n5\n"), "{}", latest.signed_note);

    let mut client = f.server.client().await;
    let by_key = Key::Idempotency(IdempotencyRef { workspace_id: "ws_1".into(), idempotency_key: "log-2".into() });
    for (key, id) in [
        (Key::EvidenceId(ids[0]), ids[0]),
        (by_key, ids[1]),
        (Key::EvidenceId(later_id.evidence_id), later_id.evidence_id),
    ] {
        let request = GetInclusionProofRequest { key: Some(key), tree_size: None };
        let proof = client.get_inclusion_proof(request).await.unwrap().into_inner();
        assert_eq!(proof.evidence_id, id);
        let leaf = entry::leaf_hash(&proof.entry);
        assert_eq!(leaf.0.to_vec(), proof.leaf_hash, "the leaf hash is SHA-256(0x00 || entry)");
        tlog_tiles::check_record(&hashes(&proof.audit_path), opened.size, opened.root, proof.leaf_index, leaf)
            .expect("the audit path leads to the signed root");
        // The entry is the row as stored, recomputed from a plain SELECT.
        let select = format!("SELECT {} FROM {} WHERE e.id = $1", entry::ENTRY_COLUMNS, entry::ENTRY_FROM);
        let row = f.db.query_one(&select, &[&id]).await.unwrap();
        assert_eq!(entry::from_row(&row).unwrap(), proof.entry);
    }

    // The earlier checkpoint's tree is a prefix of the latest one's.
    let earlier_root = verifier.open(&earlier.signed_note).unwrap().root;
    let request = GetConsistencyProofRequest { first_size: earlier.tree_size, second_size: latest.tree_size };
    let proof = client.get_consistency_proof(request).await.unwrap().into_inner();
    tlog_tiles::check_tree(&hashes(&proof.proof), opened.size, opened.root, earlier.tree_size, earlier_root)
        .expect("the consistency proof checks");
    let sized = client.get_checkpoint(GetCheckpointRequest { tree_size: Some(earlier.tree_size) }).await.unwrap();
    assert_eq!(sized.into_inner().signed_note, earlier.signed_note);

    let unknown = GetInclusionProofRequest { key: Some(Key::EvidenceId(ids[0] + 1000)), tree_size: None };
    assert_eq!(client.get_inclusion_proof(unknown).await.unwrap_err().code(), Code::NotFound);
    let backwards = GetConsistencyProofRequest { first_size: 5, second_size: 2 };
    assert_eq!(client.get_consistency_proof(backwards).await.unwrap_err().code(), Code::InvalidArgument);
    let beyond = GetCheckpointRequest { tree_size: Some(1000) };
    assert_eq!(client.get_checkpoint(beyond).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn without_a_log_the_proof_calls_say_there_is_no_checkpoint() {
    let f = fixture().await;
    let mut client = f.server.client().await;
    let status = client.get_checkpoint(GetCheckpointRequest { tree_size: None }).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("no checkpoint yet"), "{}", status.message());
}

/// A log of four rows, fully signed, that `verify` passes; then the superuser
/// turns the append-only triggers off.
async fn honest_log(name: &str) -> (Fixture, String, Vec<i64>, u64) {
    let (f, verifier_key) = logged(name).await;
    let ids = write_rows(&f).await;
    let size = checkpoint_of_at_least(&f, 4).await.tree_size;
    let (verified, discrepancies) = verify(&f.url, &verifier_key);
    assert!(verified, "an honest log verifies: {discrepancies}");
    f.db.batch_execute("SET session_replication_role = replica").await.unwrap();
    (f, verifier_key, ids, size)
}

fn assert_named(f: &Fixture, verifier_key: &str, expected: &str) {
    let (verified, discrepancies) = verify(&f.url, verifier_key);
    assert!(!verified, "verify passed despite: {expected}");
    assert!(discrepancies.contains(expected), "expected {expected:?} in:\n{discrepancies}");
}

#[tokio::test]
async fn verify_names_a_modified_response() {
    let (f, key, ids, _) = honest_log("log-modified").await;
    let denied = ids[1];
    let rewrite = "UPDATE governance_events SET response_json = jsonb_set(response_json, '{decision}', '\"approved\"') \
                   WHERE id = $1";
    f.db.execute(rewrite, &[&denied]).await.unwrap();
    assert_named(&f, &key, &format!("evidence {denied} (log index 1): modified since it was sequenced"));
}

#[tokio::test]
async fn verify_names_a_caller_rewritten_or_erased() {
    let (f, key, ids, _) = honest_log("log-caller").await;
    f.db.execute("UPDATE governance_events SET caller = 'someone-else' WHERE id = $1", &[&ids[0]]).await.unwrap();
    // Erased, the row would read as a version 1 entry: its leaf differs all the same.
    f.db.execute("UPDATE governance_events SET caller = NULL WHERE id = $1", &[&ids[1]]).await.unwrap();
    assert_named(&f, &key, &format!("evidence {} (log index 0): modified since it was sequenced", ids[0]));
    assert_named(&f, &key, &format!("evidence {} (log index 1): modified since it was sequenced", ids[1]));
}

#[tokio::test]
async fn verify_names_a_recorded_request_rewritten_or_its_masks_erased() {
    let (f, key, ids, _) = honest_log("log-request").await;
    let rewrite = "UPDATE governance_events SET request_json = replace(request_json, '\"amount\":5000', '\"amount\":50') \
                   WHERE id = $1";
    assert_eq!(f.db.execute(rewrite, &[&ids[1]]).await.unwrap(), 1, "the denied request asked for 5000");
    let erase = r#"UPDATE governance_events SET request_redacted_paths = '["payload.amount"]' WHERE id = $1"#;
    f.db.execute(erase, &[&ids[0]]).await.unwrap();
    assert_named(&f, &key, &format!("evidence {} (log index 1): modified since it was sequenced", ids[1]));
    assert_named(&f, &key, &format!("evidence {} (log index 0): modified since it was sequenced", ids[0]));
}

#[tokio::test]
async fn rows_from_before_migrations_10_and_11_keep_their_entry_versions_and_verify_beside_version_3_rows() {
    let (f, verifier_key) = logged("log-versions").await;
    let ids = write_rows(&f).await;
    // As a sidecar from before migration 10 writes: no caller, no request.
    let older = "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, \
                 reason_codes, ctx_id, trace_hash, response_json) \
                 SELECT workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, \
                 trace_hash, response_json FROM governance_events WHERE id = $1 RETURNING id";
    let older_id: i64 = f.db.query_one(older, &[&ids[0]]).await.unwrap().get(0);
    // As a sidecar from before migration 11 writes: a caller, no request.
    let old = "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, \
               reason_codes, ctx_id, trace_hash, response_json, caller) \
               SELECT workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, \
               trace_hash, response_json, caller FROM governance_events WHERE id = $1 RETURNING id";
    let old_id: i64 = f.db.query_one(old, &[&ids[0]]).await.unwrap().get(0);
    checkpoint_of_at_least(&f, 6).await;
    let (verified, discrepancies) = verify(&f.url, &verifier_key);
    assert!(verified, "{discrepancies}");
    let mut client = f.server.client().await;
    for (id, version) in [(ids[0], entry::ENTRY_V3), (old_id, entry::ENTRY_V2), (older_id, entry::ENTRY_V1)] {
        let request = GetInclusionProofRequest { key: Some(Key::EvidenceId(id)), tree_size: None };
        let proof = client.get_inclusion_proof(request).await.unwrap().into_inner();
        assert!(proof.entry.starts_with(version), "evidence {id}");
    }
    let caller = |id: i64| proto::GetEvidenceRequest { key: Some(proto::get_evidence_request::Key::EvidenceId(id)) };
    assert_eq!(client.get_evidence(caller(ids[0])).await.unwrap().into_inner().caller.as_deref(), Some("local"));
    assert_eq!(client.get_evidence(caller(older_id)).await.unwrap().into_inner().caller, None);
}

#[tokio::test]
async fn verify_names_a_deleted_denial() {
    let (f, key, ids, _) = honest_log("log-deleted").await;
    let denied = ids[1];
    f.db.execute("DELETE FROM governance_events WHERE id = $1", &[&denied]).await.unwrap();
    assert_named(&f, &key, &format!("evidence {denied} (log index 1): deleted, and not by retention"));
}

#[tokio::test]
async fn verify_names_rows_forged_between_sequenced_rows() {
    let (f, key, ids, size) = honest_log("log-forged").await;
    // A copy of the approved row placed between the first two leaves: the
    // sequencer has passed that place and will never take it.
    let columns = "workspace_id, principal_id, object_type, operation, decision, reason_codes, ctx_id, trace_hash, \
                   response_json, outcome, mutation_name, request_fingerprint, mode, redacted_paths";
    let between = format!(
        "INSERT INTO governance_events (id, created_at, xact_id, {columns}) \
         SELECT 1000000, created_at, xact_id, {columns} FROM governance_events WHERE id = $1"
    );
    f.db.execute(&between, &[&ids[0]]).await.unwrap();
    assert_named(&f, &key, "evidence 1000000: added after the fact (it sorts before rows already in the log");

    // A backdated row written now: the sequencer logs it, at the end, where
    // its id and created_at place it before rows an earlier checkpoint signed.
    let backdated = "INSERT INTO governance_events (id, created_at, workspace_id, principal_id, object_type, \
                        operation, decision, reason_codes, ctx_id, trace_hash, response_json) \
                     SELECT -1, '2020-01-01', workspace_id, principal_id, object_type, operation, 'approved', \
                            reason_codes, ctx_id, trace_hash, response_json FROM governance_events WHERE id = $1";
    f.db.execute(backdated, &[&ids[1]]).await.unwrap();
    checkpoint_of_at_least(&f, size + 1).await;
    assert_named(&f, &key, "evidence -1: added after the fact (its id and created_at place it before");
}

#[tokio::test]
async fn verify_names_a_deletion_dressed_as_retention() {
    let (f, key, ids, size) = honest_log("log-fake-retention").await;
    let denied = ids[1];
    f.db.execute("DELETE FROM governance_events WHERE id = $1", &[&denied]).await.unwrap();
    // A record of the first form ("the first rows may be gone"), while rows it would have removed remain.
    let claim = "INSERT INTO governance_log_retention (pruned_below, cutoff, purged) VALUES ($1, now(), 1)";
    f.db.execute(claim, &[&(size as i64)]).await.unwrap();
    let unreadable = format!(
        "says the log's first {size} rows may be gone, but evidence {} (log index 0), written before its cutoff, remains",
        ids[0]
    );
    assert_named(&f, &key, &unreadable);
    assert_named(&f, &key, &format!("evidence {denied} (log index 1): deleted, and not by retention"));
}

#[tokio::test]
async fn verify_names_a_deletion_dressed_as_a_dropped_month() {
    let (f, key, ids, _) = honest_log("log-fake-drop").await;
    f.db.execute("DELETE FROM governance_events WHERE id = $1", &[&ids[1]]).await.unwrap();
    // A record listing the deleted row's position as this month's drop: the month's other rows remain.
    let claim = "INSERT INTO governance_log_retention (pruned_below, cutoff, purged, removed, dropped_month) \
                 SELECT 2, (month + interval '1 month') AT TIME ZONE 'UTC', 1, '{\"[1,2)\"}', month::date \
                 FROM date_trunc('month', now() AT TIME ZONE 'UTC') AS month";
    f.db.execute(claim, &[]).await.unwrap();
    let missed = format!("evidence {} (log index 0): written in a month that retention record", ids[0]);
    assert_named(&f, &key, &missed);
    assert_named(&f, &key, "dropped, at a position the record does not list");
}

#[tokio::test]
async fn verify_names_stored_tree_hashes_that_proofs_would_be_served_from_wrongly() {
    let (f, key, _, _) = honest_log("log-tree-hashes").await;
    // Flip a byte of the first interior hash stored: a batch stores, per leaf
    // at index i, its leaf hash and then the subtrees that leaf completes
    // (as many as i + 1 has trailing zero bits). Which batch holds it depends
    // on how the sequencer cut the rows into batches.
    let batches =
        f.db.query("SELECT first_index, cardinality(evidence_ids) FROM governance_log_batches ORDER BY 1", &[]);
    let (first_index, offset) = batches
        .await
        .unwrap()
        .iter()
        .find_map(|row| {
            let (first, leaves): (i64, i32) = (row.get(0), row.get(1));
            // Before the first interior hash, only leaves were stored.
            (first..first + i64::from(leaves))
                .enumerate()
                .find(|(_, index)| (index + 1).trailing_zeros() > 0)
                .map(|(leaves_before, _)| (first, (leaves_before as i32 + 1) * 32))
        })
        .expect("four leaves complete a subtree");
    let corrupt = "UPDATE governance_log_batches SET hashes = set_byte(hashes, $2, 255 - get_byte(hashes, $2)) \
                   WHERE first_index = $1";
    assert_eq!(f.db.execute(corrupt, &[&first_index, &offset]).await.unwrap(), 1);
    assert_named(
        &f,
        &key,
        &format!("the batch from log index {first_index}: its stored tree hashes are not those of its leaves"),
    );
}

#[tokio::test]
async fn verify_names_reordered_rows() {
    let (f, key, _, _) = honest_log("log-reordered").await;
    // Swap the log's first two leaves, in one batch or across two.
    let batches = f.db.query("SELECT first_index, evidence_ids FROM governance_log_batches ORDER BY first_index", &[]);
    let mut batches: Vec<(i64, Vec<i64>)> = batches.await.unwrap().iter().map(|row| (row.get(0), row.get(1))).collect();
    let second = if batches[0].1.len() > 1 { (0, 1) } else { (1, 0) };
    let (first_leaf, second_leaf) = (batches[0].1[0], batches[second.0].1[second.1]);
    batches[0].1[0] = second_leaf;
    batches[second.0].1[second.1] = first_leaf;
    for (first_index, evidence_ids) in &batches[..=second.0] {
        let rewrite = "UPDATE governance_log_batches SET evidence_ids = $2 WHERE first_index = $1";
        f.db.execute(rewrite, &[first_index, evidence_ids]).await.unwrap();
    }
    let moved = second_leaf;
    assert_named(&f, &key, &format!("evidence {moved}: reordered"));
}

#[tokio::test]
async fn verify_names_a_rewritten_checkpoint() {
    let (f, key, _, size) = honest_log("log-rewritten").await;
    let rewrite = "UPDATE governance_log_checkpoints \
                   SET signed_note = regexp_replace(signed_note, '^([^\\n]*\\n)[0-9]+\\n', '\\1999\\n') \
                   WHERE tree_size = $1";
    assert_eq!(f.db.execute(rewrite, &[&(size as i64)]).await.unwrap(), 1);
    assert_named(&f, &key, &format!("checkpoint of size {size}: signature does not verify"));
}

#[tokio::test]
async fn verify_names_a_checkpoint_signed_by_another_key() {
    let (f, key, _, size) = honest_log("log-other-key").await;
    let (other_key_file, _) = key_pair("log-other-key-2");
    let other = LogSigner::load(&other_key_file).unwrap();
    let root: Vec<u8> =
        f.db.query_one("SELECT root_hash FROM governance_log_checkpoints WHERE tree_size = $1", &[&(size as i64)])
            .await
            .unwrap()
            .get(0);
    let forged = other.sign(size, Hash(root.try_into().unwrap()), 0).unwrap();
    let replace = "UPDATE governance_log_checkpoints SET signed_note = $2 WHERE tree_size = $1";
    f.db.execute(replace, &[&(size as i64), &forged]).await.unwrap();
    assert_named(&f, &key, &format!("checkpoint of size {size}: not signed by the log's key"));
}

/// `serve` with the log's key, as a child process.
fn sequencing_sidecar(url: &str, key_file: &std::path::Path) -> Child {
    Command::new(BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url, "--log-interval-ms", "100"])
        .arg("--log-signing-key-file")
        .arg(key_file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn latest_size(db: &tokio_postgres::Client) -> i64 {
    db.query_one("SELECT coalesce(max(tree_size), -1) FROM governance_log_checkpoints", &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_killed_mid_batch_leaves_one_log_that_another_sidecar_completes() {
    let f = fixture().await;
    const ROWS: i64 = 30_000;
    f.db.execute(
        "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, reason_codes, \
             ctx_id, trace_hash, response_json, mutation_name) \
         SELECT 'ws_bulk', 'usr_' || g, 'invoice', 'create', 'approved', '[]', 'ctx_' || g, md5(g::text), \
                jsonb_build_object('n', g, 'pad', repeat('x', 300)), 'create_invoice' \
         FROM generate_series(1, $1::bigint) g",
        &[&ROWS],
    )
    .await
    .unwrap();
    let (key_file, verifier_key) = key_pair("log-takeover");

    let mut first = sequencing_sidecar(&f.url, &key_file);
    let started = Instant::now();
    while latest_size(&f.db).await < 1 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first sidecar never sequenced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut second = sequencing_sidecar(&f.url, &key_file);
    // Wait until the first is inside a batch's transaction, then kill it.
    let inside_a_batch = "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
                          AND (state = 'idle in transaction' OR query LIKE 'INSERT INTO governance_log%')";
    while f.db.query_one(inside_a_batch, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "never caught a batch in flight");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at_size = latest_size(&f.db).await;
    assert!(killed_at_size < ROWS, "killed after the last batch: {killed_at_size}");

    while latest_size(&f.db).await < ROWS {
        assert!(started.elapsed() < Duration::from_secs(120), "the second sidecar did not finish the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leaves =
        f.db.query_one(
            "SELECT count(*), count(DISTINCT evidence_id), coalesce(max(first_index + position), 0) \
             FROM governance_log_batches, unnest(evidence_ids) WITH ORDINALITY AS leaves(evidence_id, position)",
            &[],
        )
        .await
        .unwrap();
    let (count, distinct, next): (i64, i64, i64) = (leaves.get(0), leaves.get(1), leaves.get(2));
    assert_eq!((count, distinct, next), (ROWS, ROWS, ROWS), "no gap, no duplicate index, no row twice");
    let (verified, discrepancies) = verify(&f.url, &verifier_key);
    assert!(verified, "{discrepancies}");
    common::dev::terminate_and_wait(&mut second);
}

#[tokio::test]
async fn retention_removes_a_prefix_of_the_log_and_every_proof_stays_valid() {
    let (f, verifier_key) = logged("log-retention").await;
    let verifier = LogVerifier::new(&verifier_key).unwrap();
    // Two batches at least: the first two rows are signed before the others are written.
    let mut ids = Vec::new();
    for (amount, key) in [(250, "keep-1"), (5000, "keep-2"), (300, "keep-3"), (7000, "keep-4")] {
        ids.push(
            f.execute(call(invoice_request(amount, "USD"), Some(key), "create_invoice")).await.unwrap().evidence_id,
        );
        if ids.len() == 2 {
            checkpoint_of_at_least(&f, 2).await;
        }
    }
    checkpoint_of_at_least(&f, 4).await;
    let cutoff = "SELECT governance_purge_before((SELECT created_at FROM governance_events WHERE id = $1))";
    let purged: i64 = f.db.query_one(cutoff, &[&ids[2]]).await.unwrap().get(0);
    assert_eq!(purged, 2, "the two oldest rows, the log's first two leaves");

    let (verified, discrepancies) = verify(&f.url, &verifier_key);
    assert!(verified, "removed rows are checked by their stored leaf hashes: {discrepancies}");
    let mut client = f.server.client().await;
    let removed = GetInclusionProofRequest { key: Some(Key::EvidenceId(ids[0])), tree_size: None };
    assert_eq!(client.get_inclusion_proof(removed).await.unwrap_err().code(), Code::NotFound);
    for id in [ids[2], ids[3]] {
        let request = GetInclusionProofRequest { key: Some(Key::EvidenceId(id)), tree_size: None };
        let proof = client.get_inclusion_proof(request).await.unwrap().into_inner();
        let opened = verifier.open(&proof.checkpoint.unwrap().signed_note).unwrap();
        let leaf = entry::leaf_hash(&proof.entry);
        tlog_tiles::check_record(&hashes(&proof.audit_path), opened.size, opened.root, proof.leaf_index, leaf)
            .unwrap_or_else(|e| panic!("evidence {id}: {e}"));
    }
}

#[tokio::test]
async fn health_and_metrics_report_the_sequencer() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let (f, _) = logged("log-health").await;
    write_rows(&f).await;
    let size = checkpoint_of_at_least(&f, 4).await.tree_size;
    let mut health = HealthClient::new(f.server.channel().await);
    let started = Instant::now();
    loop {
        let service = governance_sidecar::server::LOG_HEALTH_SERVICE.to_owned();
        let status = health.check(HealthCheckRequest { service }).await.map(|r| r.into_inner().status);
        if matches!(status, Ok(1)) {
            break; // SERVING
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the log never reported SERVING: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = common::http::request(f.server.address, "GET", "/metrics", &[], b"").await.body;
    for line in ["governance_log_sequencer_leader 1", &format!("governance_log_checkpoint_size {size}")] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains("governance_log_lag_seconds "), "{metrics}");
}

/// The corpus's responses and requests, and floats of every magnitude: the text the
/// sidecar computes its digest over is the text PostgreSQL prints.
#[tokio::test]
async fn the_response_digest_taken_at_write_is_over_postgres_own_text() {
    use governance_sidecar::decision::Value;
    use governance_sidecar::decision::json::{self, Layout};
    use governance_sidecar::evidence::jsonb;

    /// jsonb has no NaN or Infinity: the sidecar stores them as strings.
    fn finite(value: &mut Value) {
        match value {
            Value::Float(f) if !f.is_finite() => *value = Value::str(format!("{f}")),
            Value::Array(items) => items.iter_mut().for_each(finite),
            Value::Object(map) => map.values_mut().for_each(finite),
            _ => {}
        }
    }
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/kernite-0.1.6-execute.jsonl");
    let mut values: Vec<Value> = std::fs::read_to_string(corpus)
        .unwrap()
        .lines()
        .flat_map(|line| {
            let case = json::parse(line).unwrap();
            let case = case.as_object().unwrap();
            let request = case.get("request_json").and_then(Value::as_str).and_then(|text| json::parse(text).ok());
            let mut values: Vec<Value> = case.get("response").cloned().into_iter().chain(request).collect();
            values.iter_mut().for_each(finite);
            values
        })
        .collect();
    let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
    let floats = (0..5000)
        .map(|_| {
            bits = bits.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            f64::from_bits(bits)
        })
        .filter(|f| f.is_finite())
        .map(Value::Float);
    values.push(Value::Array(floats.chain([1e16, 1.5e-7, -0.0, 0.1, 123.0, 1e-5].map(Value::Float)).collect()));

    let f = fixture().await;
    let texts: Vec<String> = values.iter().map(|v| json::to_string(v, Layout::Response)).collect();
    let printed =
        f.db.query(
            "SELECT (t::jsonb)::text AS printed FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
            &[&texts],
        )
        .await
        .unwrap();
    assert_eq!(printed.len(), values.len());
    for (value, row) in values.iter().zip(printed) {
        let ours = jsonb::text(value);
        let theirs: &str = row.get("printed");
        assert_eq!(ours, theirs);
    }
}

#[test]
fn log_key_writes_a_private_signer_key_and_prints_its_verifier_key() {
    use std::os::unix::fs::PermissionsExt as _;
    let file = common::scratch("log-key-command").join("signing-key");
    let run = || {
        Command::new(BINARY)
            .args(["log-key", "--origin", "example.com/evidence", "--signing-key-file"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let made = run();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let signer = LogSigner::load(&file).unwrap();
    let verifier = LogVerifier::new(String::from_utf8(made.stdout).unwrap().trim()).unwrap();
    assert_eq!(verifier.origin(), "example.com/evidence");
    verifier.open(&signer.sign(1, tlog_tiles::record_hash(b"x"), 0).unwrap()).unwrap();
    assert!(!run().status.success(), "an existing key is never overwritten");
}
