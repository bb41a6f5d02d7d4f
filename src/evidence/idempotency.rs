//! Idempotency keys: one key, one write, however often a caller retries.
//!
//! How a key travels, from the wire to the database:
//! 1. It arrives as `idempotency_key` (gRPC) or the `Idempotency-Key` header
//!    (HTTP, read as Latin-1 as Python's `http.server` reads it, in
//!    `api/http.rs`). Kernite hashes it into the `trace_hash` pre-image
//!    (`decision/trace.rs`): that part is Kernite's contract, not ours.
//! 2. A key over [`MAX_IDEMPOTENCY_KEY_BYTES`] is refused before a connection
//!    is taken ([`check_key`]).
//! 3. The request's fingerprint (`governed.rs`) says what "the same request" means: the
//!    whole body, the mutation's name and the caller's parameters.
//! 4. The claim: the evidence row is inserted with the key by a plain
//!    INSERT ([`claim`], or the statement of `one_statement.rs`), and a
//!    unique constraint named [`IDEMPOTENCY_INDEX`] decides who owns it: in
//!    the reference layout the unique index on the evidence table's
//!    `(workspace_id, idempotency_key)` (migration 0001); in the partitioned
//!    layout the primary key of `governance_idempotency_keys`, which a trigger
//!    fills from the same INSERT (`migrations/layout_partitioned.sql`). Its
//!    unique violation fails the INSERT and aborts the transaction
//!    ([`is_key_taken`]). A concurrent duplicate waits on the index entry of
//!    the row not yet committed, then finds the key taken. So one key never
//!    yields two writes, and no lock is taken besides the index's own.
//! 5. Whoever finds the key taken rolls back what it sent beside the insert
//!    (a failed statement has rolled back by itself) and [`replay`]s the
//!    newest row holding the key ([`KEY_HOLDER`]): the same fingerprint from
//!    the same caller answers the stored outcome (`replayed: true`); another
//!    fingerprint, or another caller (a row that records one), is
//!    [`EvidenceError::KeyReused`] (ALREADY_EXISTS), so that no caller is
//!    handed another's write.
//! 6. In the partitioned layout a key has a lifetime (`--idempotency-key-lifetime-seconds`,
//!    24 hours by default, as Stripe's): a holder older than that is not
//!    replayed; its claim is released and the call is written as a new
//!    request ([`EvidenceError::KeyExpired`], retried by `write.rs`).
//!    Maintenance deletes expired claims in bulk ([`forget_expired_keys`]).
//!    The reference layout keeps every key for ever, as Kernite's table does.
//! 7. A mutation that fails is rolled back and its evidence written again
//!    alone, with outcome `error`, *without* the key ([`insert_failure`]),
//!    so that a corrected retry with the same key can still succeed.
//! 8. Replays and refused reuses are counted (`governance_idempotent_replays_total`,
//!    `governance_idempotency_conflicts_total`, counted in `api/execute.rs`).

use std::sync::LazyLock;

use deadpool_postgres::GenericClient;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;

use super::EvidenceError;
use super::governed::{Execution, GovernedWrite, RecordedAnswer};
use super::returning::stored_result;
use super::row::{self, Ending, EvidenceRow};
use crate::decision::json;
use crate::decision::{NormalizedRequest, Value};
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
/// goes in). A taken key has failed the INSERT: inside a transaction, the
/// caller must roll back before it replays.
pub(super) async fn claim(
    client: &impl GenericClient,
    row: &EvidenceRow<'_>,
    claiming: Claiming,
) -> Result<Claim, EvidenceError> {
    let outcome = match claiming {
        Claiming::Applied => Outcome::Applied,
        Claiming::NotApplied => Outcome::NotApplied,
    };
    let statement = insert_statement(client).await?;
    let ending = Ending::claiming(row, outcome);
    match client.query_one(&statement, &row.params(&ending).map(|p| p as _)).await {
        Ok(inserted) => Ok(Claim::Inserted(inserted.try_get("id")?)),
        Err(error) if is_key_taken(&error) => Ok(Claim::Taken),
        Err(error) => Err(error.into()),
    }
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
    let ending = Ending::failure(sqlstate);
    Ok(client.query_one(&statement, &row.params(&ending).map(|p| p as _)).await?.try_get("id")?)
}

/// The evidence INSERT, a plain one in both layouts: with the key already
/// held (or being inserted by a transaction not yet ended, which it waits
/// for), it fails with a unique violation on [`IDEMPOTENCY_INDEX`]. (`ON
/// CONFLICT DO NOTHING` would need the unique index on the evidence table
/// itself, which a table partitioned by time cannot have.) It also stores
/// the SHA-256 of the response as PostgreSQL prints it, which the verifiable
/// log's leaf commits to (see `log/entry.rs`).
async fn insert_statement(client: &impl GenericClient) -> Result<Statement, EvidenceError> {
    static INSERT: LazyLock<String> = LazyLock::new(|| format!("{} RETURNING id", row::insert_sql(1)));
    Ok(client.prepare_typed_cached(&INSERT, &[]).await?)
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

/// The unique constraint that owns the keys: an index of the evidence table
/// (migration 0001), or the primary key of `governance_idempotency_keys` in
/// the partitioned layout, under the same name.
const IDEMPOTENCY_INDEX: &str = "governance_events_workspace_idempotency_uq";

/// The evidence row holding a key (`$1` the workspace, `$2` the key), as the
/// end of a query on `governance_events e`: the newest row with the key, for
/// in the partitioned layout a key whose lifetime ended may be on older rows too.
pub const KEY_HOLDER: &str =
    "WHERE e.workspace_id = $1 AND e.idempotency_key = $2 ORDER BY e.created_at DESC, e.id DESC LIMIT 1";

/// How long a claimed key is replayed: for ever in the reference layout,
/// for the configured lifetime in the partitioned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLifetime {
    Forever,
    Expires(std::time::Duration),
}

/// The stored outcome of the earlier call that holds the key, or a refusal
/// if that call was a different request. A holder older than the key's
/// lifetime has its claim released instead ([`EvidenceError::KeyExpired`]).
pub(super) async fn replay(
    client: &impl GenericClient,
    write: &GovernedWrite<'_>,
    lifetime: KeyLifetime,
) -> Result<Execution, EvidenceError> {
    let request = write.request;
    let (workspace_id, key) = (request.workspace_id.as_str(), request.idempotency_key.as_deref());
    let sql = format!(
        "SELECT e.id, e.request_fingerprint, e.caller, r.rows_affected, r.returning_rows::text AS returning_rows, \
         e.decision, e.ctx_id, e.trace_hash, e.reason_codes::text AS reason_codes, e.response_json::text AS response_json, \
         (extract(epoch FROM now() - e.created_at) * 1000000)::bigint AS age_micros \
         FROM governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id {KEY_HOLDER}"
    );
    let holder = client.query_opt(&sql, &[&workspace_id, &key]).await?;
    if let KeyLifetime::Expires(lifetime) = lifetime {
        let age = holder.as_ref().map(|row| row.try_get::<_, i64>("age_micros")).transpose()?;
        // No holder: its month was dropped by retention, longer ago than any lifetime.
        if age.is_none_or(|age| age >= lifetime.as_micros() as i64) {
            release_expired_key(client, workspace_id, key, lifetime).await?;
            return Err(EvidenceError::KeyExpired);
        }
    }
    let row = holder.ok_or(EvidenceError::Unexpected("the idempotency key is held by no evidence row"))?;
    let evidence_id: i64 = row.try_get("id")?;
    let same_request = row.try_get::<_, Option<&str>>("request_fingerprint")? == Some(write.fingerprint.as_str());
    // Rows written before callers were recorded hold none, and replay to whoever asks.
    let same_caller = row.try_get::<_, Option<&str>>("caller")?.is_none_or(|caller| caller == write.caller);
    if !(same_request && same_caller) {
        return Err(EvidenceError::KeyReused { evidence_id: Some(evidence_id) });
    }
    let result = stored_result(row.try_get("rows_affected")?, row.try_get("returning_rows")?);
    let recorded = recorded_answer(&row)?;
    Ok(Execution { evidence_id, mutation_applied: result.is_some(), result, replayed: true, recorded: Some(recorded) })
}

/// The decision the holder of a key records, read by column name.
fn recorded_answer(row: &tokio_postgres::Row) -> Result<RecordedAnswer, EvidenceError> {
    let decision: &str = row.try_get("decision")?;
    let decision =
        decision.parse().map_err(|_| EvidenceError::Unexpected("an evidence row records an unknown decision"))?;
    let reason_codes: &str = row.try_get("reason_codes")?;
    let reason_codes = match json::parse(reason_codes) {
        Ok(Value::Array(codes)) => codes.iter().filter_map(|code| code.as_str().map(str::to_owned)).collect(),
        _ => return Err(EvidenceError::Unexpected("an evidence row's reason codes are not a JSON array")),
    };
    Ok(RecordedAnswer {
        decision,
        ctx_id: row.try_get("ctx_id")?,
        trace_hash: row.try_get("trace_hash")?,
        reason_codes,
        response_json: row.try_get("response_json")?,
    })
}

/// Deletes the claim on a key whose lifetime has ended (the condition is
/// checked again: a concurrent call may have claimed it anew meanwhile).
async fn release_expired_key(
    client: &impl GenericClient,
    workspace_id: &str,
    key: Option<&str>,
    lifetime: std::time::Duration,
) -> Result<(), EvidenceError> {
    let lifetime_micros = lifetime.as_micros() as i64;
    client
        .execute(
            "DELETE FROM governance_idempotency_keys \
             WHERE workspace_id = $1 AND idempotency_key = $2 AND created_at <= now() - $3::bigint * interval '1 microsecond'",
            &[&workspace_id, &key, &lifetime_micros],
        )
        .await?;
    Ok(())
}

/// Deletes up to `limit` claims whose lifetime has ended (partitioned
/// layout); returns how many went. Maintenance calls it until none are left,
/// so that each DELETE stays short.
pub async fn forget_expired_keys(
    client: &tokio_postgres::Client,
    lifetime: std::time::Duration,
    limit: i64,
) -> Result<u64, EvidenceError> {
    let lifetime_micros = lifetime.as_micros() as i64;
    Ok(client
        .execute(
            "DELETE FROM governance_idempotency_keys WHERE ctid = ANY (ARRAY(\
             SELECT ctid FROM governance_idempotency_keys \
             WHERE created_at <= now() - $1::bigint * interval '1 microsecond' LIMIT $2))",
            &[&lifetime_micros, &limit],
        )
        .await?)
}
