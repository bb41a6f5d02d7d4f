//! The governed write: the evidence row and the mutation it governs commit
//! in one transaction, or neither does.
//!
//! The evidence row goes first and claims the idempotency key
//! ([`super::idempotency`]). Only then, and only if the decision allows it,
//! the operator's mutation runs, and its result goes to an append-only side
//! table. A failing mutation rolls all of it back; its evidence is then
//! written alone, with outcome `error`.

use std::sync::Arc;

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tracing::Instrument as _;

use super::error::cause;
use super::governed::{Execution, GovernedWrite};
use super::group_commit::{Committed, Written};
use super::idempotency::{self, Claim, Claiming};
use super::one_statement::{OneStatementWrite, WriteParams};
use super::returning::{MutationResult, row_to_map, rows_json};
use super::row::EvidenceRow;
use super::transaction::Transaction;
use super::{EvidenceError, EvidenceStore};
use crate::error::{ServiceError as _, ServiceErrorCode};
use crate::mutations::{Builtin, Builtins, Mutation, SqlValue};
use crate::postgres::failure::{db_message, is_connection_loss, is_read_only, is_retryable};

/// Attempts for a transaction that fails with a serialization failure or deadlock.
const MAX_ATTEMPTS: usize = 3;

impl EvidenceStore {
    /// Records the decision and, if it allows, applies the mutation, atomically.
    pub async fn execute(&self, write: GovernedWrite<'_>) -> Result<Execution, EvidenceError> {
        let executed = self.execute_with_retries(write).await;
        if executed.as_ref().is_err_and(|e| e.error_code() == ServiceErrorCode::Unavailable) {
            self.unavailable.notify_one();
        }
        executed
    }

    async fn execute_with_retries(&self, write: GovernedWrite<'_>) -> Result<Execution, EvidenceError> {
        idempotency::check_key(write.request)?;
        write.mutation.check_caller_params(write.caller_params)?;
        let row = EvidenceRow::new(&write, &self.redactor, self.max_recorded_request_bytes)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let transaction = tracing::info_span!(
                "transaction",
                otel.name = "PostgreSQL transaction",
                otel.kind = "client",
                db.system = "postgresql",
                attempt,
                mutation = write.mutation.name,
            );
            match self.try_execute(&row).instrument(transaction).await {
                Err(EvidenceError::Database(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    tracing::info!(attempt, sqlstate = ?e.code(), "retrying the transaction");
                }
                Err(EvidenceError::KeyExpired) if attempt < MAX_ATTEMPTS => {
                    tracing::info!(attempt, "the idempotency key's lifetime had ended: writing as a new request");
                }
                Err(EvidenceError::Database(e)) if is_read_only(&e) => {
                    // Never write to a standby: its connections go, and new
                    // ones look for a writable server (target_session_attrs).
                    self.forget_connections("a connection answered read-only");
                    if attempt == MAX_ATTEMPTS {
                        return Err(EvidenceError::Unavailable("no writable PostgreSQL is reachable".into()));
                    }
                }
                Err(EvidenceError::Database(e)) if is_connection_loss(&e) => {
                    return Err(EvidenceError::Unavailable(db_message(&e)));
                }
                Err(EvidenceError::Database(e)) if e.as_db_error().is_some() && !is_retryable(&e) => {
                    return Err(self.record_failure(&row, &e).await);
                }
                other => return other,
            }
        }
    }

    /// The write, in as few round trips as its dependencies allow, by one of
    /// three strategies: a decision that writes nothing (or a gateway's check,
    /// whose mutation has no statements) is one autocommitted
    /// INSERT ([`Self::write_evidence_only`]); so is a write whose mutation can
    /// be composed into one statement with it ([`Self::write_one_statement`],
    /// shared by concurrent callers in group commits); any other write is a
    /// transaction of two round trips ([`Self::write_in_transaction`]).
    async fn try_execute(&self, row: &EvidenceRow<'_>) -> Result<Execution, EvidenceError> {
        let write = row.write;
        // Bound before a connection is taken: a caller's bad parameter costs the
        // database nothing. (The evidence id, if used, is bound again once known.)
        let writes = write.allows_write() && !write.mutation.statements.is_empty();
        let values = if writes { Some(bind(row, 0)?) } else { None };
        match (values, self.one_statement.get(&write.mutation.name)) {
            (None, _) => self.write_evidence_only(row).await,
            (Some(values), Some(one_statement)) => self.write_one_statement(one_statement, row, &values).await,
            (Some(values), None) => self.write_in_transaction(row, values).await,
        }
    }

    /// Nothing to write but the evidence: a single statement is atomic by itself.
    async fn write_evidence_only(&self, row: &EvidenceRow<'_>) -> Result<Execution, EvidenceError> {
        let client = self.pool.get().await?;
        client
            .guard(async {
                match idempotency::claim(&*client, row, Claiming::NotApplied).await? {
                    Claim::Inserted(evidence_id) => Ok(Execution {
                        evidence_id,
                        mutation_applied: false,
                        result: None,
                        replayed: false,
                        recorded: None,
                    }),
                    Claim::Taken => idempotency::replay(&*client, row.write, self.key_lifetime).await,
                }
            })
            .await
    }

    /// BEGIN, the evidence INSERT and the mutation sent together (the
    /// mutation waits for the INSERT only if it needs the evidence id), then
    /// the result INSERT with COMMIT: two round trips.
    async fn write_in_transaction(
        &self,
        row: &EvidenceRow<'_>,
        values: Vec<SqlValue>,
    ) -> Result<Execution, EvidenceError> {
        let (write, mutation) = (row.write, row.write.mutation);
        let transaction = Transaction::open(self.pool.get().await?);
        let client = transaction.client();
        let begin = async { transaction.begin().await.map_err(EvidenceError::from) };
        let outcome = if mutation.uses_builtin(Builtin::EvidenceId) {
            // The mutation needs the id: it waits for the evidence row.
            let first = async {
                match idempotency::claim(client, row, Claiming::Applied).await? {
                    Claim::Inserted(evidence_id) => {
                        let values = bind(row, evidence_id)?;
                        Ok(Some((evidence_id, run_mutation(client, mutation, &values).await?)))
                    }
                    Claim::Taken => Ok(None),
                }
            };
            let (began, outcome) = tokio::join!(begin, first);
            match (began, outcome) {
                (Ok(()), outcome) => outcome,
                (Err(error), Ok(_)) => Err(error),
                (Err(a), Err(b)) => Err(cause(a, b)),
            }
        } else {
            let (began, inserted, result) = tokio::join!(
                begin,
                idempotency::claim(client, row, Claiming::Applied),
                run_mutation(client, mutation, &values)
            );
            match (began, inserted, result) {
                (Ok(()), Ok(Claim::Inserted(evidence_id)), Ok(result)) => Ok(Some((evidence_id, result))),
                // The failed INSERT aborted the transaction: whatever the
                // mutation reports, it is rolled back with it.
                (Ok(()), Ok(Claim::Taken), _) => Ok(None),
                (began, inserted, result) => Err([began.err(), inserted.err(), result.err()]
                    .into_iter()
                    .flatten()
                    .reduce(cause)
                    .expect("one of them failed")),
            }
        };
        let (evidence_id, result) = match outcome {
            Ok(Some(inserted)) => inserted,
            Ok(None) => {
                // The key is taken: undo what ran beside the insert, then replay.
                let client = transaction.rollback().await?;
                return client.guard(idempotency::replay(&*client, write, self.key_lifetime)).await;
            }
            Err(error) => {
                if !matches!(&error, EvidenceError::Database(e) if e.is_closed()) {
                    let _ = transaction.rollback().await;
                }
                return Err(error);
            }
        };
        let returning = rows_json(&self.redactor.redact_rows(&result.returning));
        let rows_affected = result.rows_affected as i64;
        let statement = client.prepare_typed_cached(INSERT_RESULT, &[]).await?;
        let workspace_id = write.request.workspace_id.as_str();
        transaction.commit_with_execute(&statement, &[&evidence_id, &workspace_id, &rows_affected, &returning]).await?;
        Ok(Execution { evidence_id, mutation_applied: true, result: Some(result), replayed: false, recorded: None })
    }

    /// An approved write as one statement: queued for a group commit, or
    /// sent alone when group commit is off or its batch rolled back.
    async fn write_one_statement(
        &self,
        one_statement: &Arc<OneStatementWrite>,
        row: &EvidenceRow<'_>,
        values: &[SqlValue],
    ) -> Result<Execution, EvidenceError> {
        let params = one_statement.params(row, values);
        let written = match &self.group_commit {
            Some(group) => {
                let request = row.write.request;
                let key = request
                    .idempotency_key
                    .as_ref()
                    .map(|key| (request.workspace_id.as_str().to_owned(), key.to_string()));
                match group.write(one_statement.clone(), params, key).await {
                    Committed::Done(written) => written?,
                    Committed::Alone(params) => self.write_alone(one_statement, &params).await?,
                }
            }
            None => self.write_alone(one_statement, &params).await?,
        };
        match written {
            Some((evidence_id, result)) => Ok(Execution {
                evidence_id,
                mutation_applied: true,
                result: Some(result),
                replayed: false,
                recorded: None,
            }),
            None => {
                let client = self.pool.get().await?;
                client.guard(idempotency::replay(&*client, row.write, self.key_lifetime)).await
            }
        }
    }

    /// A one-statement write on a connection of its own.
    async fn write_alone(&self, one_statement: &OneStatementWrite, params: &WriteParams) -> Written {
        let client = self.pool.get().await?;
        client.guard(one_statement.execute(&*client, params)).await
    }

    /// After a rollback: the evidence of the failed attempt, alone and
    /// without the idempotency key, so that a corrected retry can succeed.
    async fn record_failure(&self, row: &EvidenceRow<'_>, error: &tokio_postgres::Error) -> EvidenceError {
        let sqlstate = error.code().map_or("XX000", SqlState::code);
        tracing::warn!(sqlstate, mutation = row.write.mutation.name, "mutation failed; transaction rolled back");
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(e) => return e.into(),
        };
        match client.guard(idempotency::insert_failure(&*client, row, sqlstate)).await {
            Ok(evidence_id) => EvidenceError::MutationFailed {
                sqlstate: sqlstate.to_owned(),
                ctx_id: row.ctx_id.clone(),
                trace_hash: row.trace_hash.clone(),
                evidence_id,
            },
            Err(e) => e,
        }
    }
}

/// The mutation's parameters for this call, the evidence id given (0 until it is known).
fn bind(row: &EvidenceRow<'_>, evidence_id: i64) -> Result<Vec<SqlValue>, EvidenceError> {
    let write = row.write;
    let builtins = Builtins { request: write.request, ctx_id: &row.ctx_id, trace_hash: &row.trace_hash, evidence_id };
    Ok(write.mutation.bind(&builtins, write.caller_params)?)
}

/// The mutation's result beside its evidence row (the general path; the
/// one-statement write inserts it in its own statement).
const INSERT_RESULT: &str = "INSERT INTO governance_mutation_results (evidence_id, workspace_id, rows_affected, \
     returning_rows) VALUES ($1, $2, $3, $4::text::jsonb)";

async fn run_mutation(
    client: &impl GenericClient,
    mutation: &Mutation,
    values: &[SqlValue],
) -> Result<MutationResult, EvidenceError> {
    let mut result = MutationResult { rows_affected: 0, returning: Vec::new() };
    for statement in &mutation.statements {
        let prepared = client.prepare_typed_cached(&statement.sql, &mutation.param_types(statement)).await?;
        let params: Vec<&(dyn ToSql + Sync)> = statement.params.iter().map(|&i| &values[i] as _).collect();
        if prepared.columns().is_empty() {
            result.rows_affected += client.execute(&prepared, &params).await?;
        } else {
            let rows = client.query(&prepared, &params).await?;
            result.rows_affected += rows.len() as u64;
            result.returning.extend(rows.iter().map(row_to_map));
        }
    }
    Ok(result)
}
