//! Group commit: concurrent callers' one-statement writes share a
//! transaction, and each caller still gets the answer it would have had
//! alone. Rows written in one transaction share its `xact_id`.

mod common;

use common::TestServer;
use common::evidence::{REGISTRY, call, database, fixture, invoice_request, store_writing};
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::ServerSettings;
use governance_sidecar::evidence::WriteSettings;
use governance_sidecar::proto::ExecuteWithEvidenceResponse;
use governance_sidecar::proto::governance_client::GovernanceClient;
use tonic::Code;
use tonic::transport::Channel;

/// A sidecar on the fixture's database with `committers` group committers (0: off).
async fn server(url: &str, committers: usize) -> TestServer {
    let writes = WriteSettings { group_commit: committers, ..WriteSettings::default() };
    let store = store_writing(database(url), writes, REGISTRY).await;
    TestServer::start(ServerSettings::default(), GovernanceApi::with_evidence(store).allowing_request_policies(true))
        .await
}

/// Sends every `(amount, key)` at once, each on its own stream.
async fn all_at_once(
    client: &GovernanceClient<Channel>,
    calls: Vec<(i64, String)>,
) -> Vec<Result<ExecuteWithEvidenceResponse, tonic::Status>> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|(amount, key)| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let request = call(invoice_request(amount, "USD"), Some(&key), "create_invoice_plain");
                client.execute_with_evidence(request).await.map(tonic::Response::into_inner)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn concurrent_writes_share_transactions_and_every_one_commits_with_its_evidence() {
    let f = fixture().await;
    let server = server(&f.url, 1).await;
    let client = server.client().await;
    let answers = all_at_once(&client, (0..32).map(|i| (250, format!("k-{i}"))).collect()).await;
    for answer in answers {
        let answer = answer.unwrap();
        assert!(answer.mutation_applied && !answer.replayed);
        assert_eq!(answer.mutation_result.unwrap().rows_affected, 1);
    }
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 32);
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE outcome = 'applied'").await, 32);
    assert_eq!(f.count("SELECT count(*) FROM governance_mutation_results").await, 32);
    let transactions = f.count("SELECT count(DISTINCT xact_id) FROM governance_events").await;
    assert!(transactions < 32, "32 writes queued behind one committer share transactions ({transactions})");
}

#[tokio::test]
async fn with_group_commit_off_every_write_is_its_own_transaction() {
    let f = fixture().await;
    let server = server(&f.url, 0).await;
    let client = server.client().await;
    let answers = all_at_once(&client, (0..16).map(|i| (250, format!("k-{i}"))).collect()).await;
    assert!(answers.iter().all(|answer| answer.as_ref().is_ok_and(|a| a.mutation_applied)));
    assert_eq!(f.count("SELECT count(DISTINCT xact_id) FROM governance_events").await, 16);
}

#[tokio::test]
async fn a_failing_write_fails_alone_and_the_writes_batched_with_it_commit() {
    let f = fixture().await;
    let server = server(&f.url, 1).await;
    let client = server.client().await;
    // The policy allows a negative amount; the table's CHECK does not.
    let mut calls: Vec<(i64, String)> = (0..15).map(|i| (250, format!("k-{i}"))).collect();
    calls.insert(7, (-5, "k-negative".to_owned()));
    let answers = all_at_once(&client, calls).await;
    let failed: Vec<_> = answers.iter().filter_map(|answer| answer.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].code(), Code::Aborted);
    assert!(failed[0].message().contains("SQLSTATE 23514"), "{}", failed[0].message());
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 15);
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE outcome = 'applied'").await, 15);
    assert_eq!(f.count("SELECT count(*) FROM governance_events WHERE outcome = 'error'").await, 1);
    // The failed call claimed no key: a corrected retry succeeds.
    let mut client = client.clone();
    let retry =
        client.execute_with_evidence(call(invoice_request(5, "USD"), Some("k-negative"), "create_invoice_plain"));
    assert!(retry.await.unwrap().into_inner().mutation_applied);
}

#[tokio::test]
async fn one_key_sent_many_times_at_once_is_written_once_and_replayed_to_the_rest() {
    let f = fixture().await;
    let server = server(&f.url, 2).await;
    let client = server.client().await;
    let mut calls: Vec<(i64, String)> = (0..12).map(|_| (250, "k-same".to_owned())).collect();
    calls.extend((0..12).map(|i| (250, format!("k-{i}"))));
    let answers: Vec<_> = all_at_once(&client, calls).await.into_iter().map(Result::unwrap).collect();
    let same: Vec<_> = answers[..12].iter().collect();
    assert_eq!(same.iter().filter(|a| !a.replayed).count(), 1, "one write for the shared key");
    assert!(same.iter().all(|a| a.mutation_applied && a.evidence_id == same[0].evidence_id));
    assert!(answers[12..].iter().all(|a| a.mutation_applied && !a.replayed));
    assert_eq!(f.count("SELECT count(*) FROM invoices").await, 13);
    assert_eq!(f.count("SELECT count(*) FROM governance_events").await, 13);
}
