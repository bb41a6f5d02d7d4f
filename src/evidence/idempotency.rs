//! Idempotency keys: one key, one write, however often a caller retries.
//!
//! How a key travels, from the wire to the database:
//! 1. It arrives as `idempotency_key` (gRPC) or the `Idempotency-Key` header
//!    (HTTP, read as Latin-1 as Python's `http.server` reads it, in
//!    `api/http.rs`). Kernite hashes it into the `trace_hash` pre-image
//!    (`decision/trace.rs`): that part is Kernite's contract, not ours.
//! 2. A key over [`MAX_IDEMPOTENCY_KEY_BYTES`] is refused before a connection
//!    is taken ([`check_key`]).
//! 3. The request's [`Fingerprint`] says what "the same request" means: the
//!    whole body, the mutation's name and the caller's parameters.
//! 4. The claim: the evidence row is inserted with the key, and the unique
//!    index on `(workspace_id, idempotency_key)` (migration 0001) decides who
//!    owns it: by `ON CONFLICT DO NOTHING` ([`claim`]), or, in a write sent
//!    as one statement (`one_statement.rs`), by a plain INSERT whose unique
//!    violation on that index fails the whole statement ([`is_key_taken`]).
//!    A concurrent duplicate waits on the index entry of the row not yet
//!    committed, then finds the key taken. So one key never yields two
//!    writes, and no lock is taken besides the index's own.
//! 5. Whoever finds the key taken rolls back what it sent beside the insert
//!    (a failed statement has rolled back by itself) and [`replay`]s: the
//!    same fingerprint answers the stored outcome (`replayed: true`), another
//!    fingerprint is [`EvidenceError::KeyReused`] (ALREADY_EXISTS).
//! 6. A mutation that fails is rolled back and its evidence written again
//!    alone, with outcome `error`, *without* the key ([`insert_failure`]),
//!    so that a corrected retry with the same key can still succeed.
//! 7. Replays and refused reuses are counted (`governance_idempotent_replays_total`,
//!    `governance_idempotency_conflicts_total`, in `api/telemetry.rs`).

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::EvidenceError;
use super::governed::{Execution, GovernedWrite};
use super::returning::stored_result;
use super::row::{self, EvidenceRow};
use crate::decision::json::{Layout, write_value};
use crate::decision::{Map, NormalizedRequest, Value};
use crate::vocabulary::Outcome;

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// Refuses a key over [`MAX_IDEMPOTENCY_KEY_BYTES`].
pub(super) fn check_key(request: &NormalizedRequest) -> Result<(), EvidenceError> {
    match &request.idempotency_key {
        Some(key) if key.len() > MAX_IDEMPOTENCY_KEY_BYTES => {
            Err(EvidenceError::KeyTooLong { max_bytes: MAX_IDEMPOTENCY_KEY_BYTES })
        }
        _ => Ok(()),
    }
}

/// What makes two calls "the same request": the SHA-256 of the whole body
/// as canonical JSON, the mutation's name and the caller's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Taken from the body as the caller sent it, before validation
    /// normalises it: two bodies Kernite reads alike are still two requests.
    pub fn of(body: &Value, mutation: &str, caller_params: &Map) -> Fingerprint {
        let mut canonical = String::new();
        write_value(&mut canonical, body, Layout::Canonical);
        canonical.push('\n');
        canonical.push_str(mutation);
        canonical.push('\n');
        write_value(&mut canonical, &Value::Object(caller_params.clone()), Layout::Canonical);
        Fingerprint(format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes()))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a claiming insert records of the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claiming {
    /// The mutation runs in the row's transaction.
    Applied,
    /// Only the evidence is written.
    NotApplied,
}

/// Whether the insert won the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// The row is in (uncommitted, inside a transaction); its id.
    Inserted(i64),
    /// Another row holds the key: replay.
    Taken,
}

/// Inserts the evidence row, claiming its key (a row without a key always
/// goes in).
pub(super) async fn claim(
    client: &impl GenericClient,
    row: &EvidenceRow<'_>,
    claiming: Claiming,
) -> Result<Claim, EvidenceError> {
    let outcome = match claiming {
        Claiming::Applied => Outcome::Applied,
        Claiming::NotApplied => Outcome::NotApplied,
    };
    let key = row.write.request.idempotency_key.as_deref();
    let statement = insert_statement(client).await?;
    let params: [&(dyn ToSql + Sync); row::INSERT_PARAMS] = insert_params!(row, outcome, key, None::<&str>);
    Ok(match client.query_opt(&statement, &params).await? {
        Some(inserted) => Claim::Inserted(inserted.try_get("id")?),
        None => Claim::Taken,
    })
}

/// Inserts the evidence of a mutation that failed and was rolled back, with
/// its SQLSTATE and outcome `error`. It claims no key, so a corrected retry
/// with the same key can still succeed.
pub(super) async fn insert_failure(
    client: &impl GenericClient,
    row: &EvidenceRow<'_>,
    sqlstate: &str,
) -> Result<i64, EvidenceError> {
    let statement = insert_statement(client).await?;
    let params: [&(dyn ToSql + Sync); row::INSERT_PARAMS] =
        insert_params!(row, Outcome::Error, None::<&str>, Some(sqlstate));
    Ok(client.query_one(&statement, &params).await?.try_get("id")?)
}

/// The evidence INSERT. `ON CONFLICT … DO NOTHING` is the claim: with the
/// key already held (or being inserted by a transaction not yet ended, which
/// it waits for), it inserts nothing and returns no row. A row without a key
/// never conflicts. It also stores the SHA-256 of the response as PostgreSQL
/// prints it, which the verifiable log's leaf commits to (see `log/entry.rs`).
async fn insert_statement(client: &impl GenericClient) -> Result<Statement, EvidenceError> {
    static CLAIMING_INSERT: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{} ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
            row::insert_sql(1)
        )
    });
    Ok(client.prepare_typed_cached(&CLAIMING_INSERT, &[]).await?)
}

/// Whether a plain evidence INSERT failed because its key is held: a
/// unique violation on the idempotency index, and no other (the operator's
/// own tables have unique constraints too). The transaction it was in is
/// aborted; the caller [`replay`]s.
pub(super) fn is_key_taken(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|e| *e.code() == SqlState::UNIQUE_VIOLATION && e.constraint() == Some(IDEMPOTENCY_INDEX))
}

/// The unique index that owns the keys (migration 0001).
const IDEMPOTENCY_INDEX: &str = "governance_events_workspace_idempotency_uq";

/// The parameters of the evidence INSERT ([`row::insert_sql`]), in its column order:
/// the row's columns, then how the call ended (`outcome`, the claimed `key`, the
/// `sqlstate`). A macro so that the borrowed strings live in the caller; with
/// `owned:` first, each is copied into a box the group committer can keep
/// (`super::row::owned`).
macro_rules! insert_params {
    ($row:expr, $outcome:expr, $key:expr, $sqlstate:expr) => {
        insert_params!(@[] $row, $outcome, $key, $sqlstate)
    };
    (owned: $row:expr, $outcome:expr, $key:expr, $sqlstate:expr) => {
        insert_params!(@[$crate::evidence::row::owned] $row, $outcome, $key, $sqlstate)
    };
    (@[$($wrap:tt)*] $row:expr, $outcome:expr, $key:expr, $sqlstate:expr) => {
        [
            $($wrap)*(&$row.write.request.workspace_id.as_str()),
            $($wrap)*(&$row.write.request.principal.id.as_str()),
            $($wrap)*(&$row.write.request.object_type.as_str()),
            $($wrap)*(&$row.write.request.operation.as_str()),
            $($wrap)*(&$row.decision.as_str()),
            $($wrap)*(&$row.reason_codes),
            $($wrap)*(&$row.ctx_id),
            $($wrap)*(&$row.trace_hash),
            $($wrap)*(&$key),
            $($wrap)*(&$row.response_json),
            $($wrap)*(&$outcome.as_str()),
            $($wrap)*(&$row.write.mutation.name),
            $($wrap)*(&$row.write.fingerprint.as_str()),
            $($wrap)*(&$sqlstate),
            $($wrap)*(&$row.write.mode.as_str()),
            $($wrap)*(&$row.redacted_paths),
            $($wrap)*(&$row.write.policy_bundle),
            $($wrap)*(&$row.policy_key),
            $($wrap)*(&$row.policy_version),
            $($wrap)*(&$row.write.trace_id),
            $($wrap)*(&$row.response_digest.as_slice()),
        ]
    };
}
pub(super) use insert_params;

/// The stored outcome of the earlier call that holds the key, or a refusal
/// if that call was a different request.
pub(super) async fn replay(client: &impl GenericClient, write: &GovernedWrite<'_>) -> Result<Execution, EvidenceError> {
    let request = write.request;
    let row = client
        .query_one(
            "SELECT e.id, e.request_fingerprint, r.rows_affected, r.returning_rows::text AS returning_rows \
             FROM governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id \
             WHERE e.workspace_id = $1 AND e.idempotency_key = $2",
            &[&request.workspace_id.as_str(), &request.idempotency_key.as_deref()],
        )
        .await?;
    let evidence_id: i64 = row.try_get("id")?;
    if row.try_get::<_, Option<&str>>("request_fingerprint")? != Some(write.fingerprint.as_str()) {
        return Err(EvidenceError::KeyReused { evidence_id });
    }
    let result = stored_result(row.try_get("rows_affected")?, row.try_get("returning_rows")?);
    Ok(Execution { evidence_id, mutation_applied: result.is_some(), result, replayed: true })
}
