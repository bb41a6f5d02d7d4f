//! Evidence in Postgres: the decision row and the write it governs commit in
//! one transaction, or neither does.
//!
//! The evidence row is inserted first. With an idempotency key, that insert
//! claims `(workspace_id, idempotency_key)` through the unique index: a
//! concurrent duplicate waits on it, then finds the row and replays, so one
//! key never yields two writes. Only then, and only if the decision allows
//! it, the operator's mutation runs, and its result goes to an append-only
//! side table. A failing mutation rolls all of it back; its evidence is then
//! written alone, with outcome `error`, without claiming the key.

pub mod audit;
pub mod local_postgres;
pub mod migrate;
pub mod redact;
mod tls;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::decision::json::{self, Layout};
use crate::decision::record::object;
use crate::decision::{Decision, DecisionRecord, Map, NormalizedRequest, Value};
use crate::mutations::{BindError, Builtin, Builtins, Mode, Mutation, Registry, SqlValue};
use redact::Redactor;
use transaction::Transaction;

/// Longest idempotency key accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// Attempts for a transaction that fails with a serialization failure or deadlock.
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Shown with its SQLSTATE only: PostgreSQL's messages may quote values.
    #[error("database error: {}", .0.code().map_or_else(|| .0.to_string(), |c| format!("SQLSTATE {}", c.code())))]
    Database(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Schema(String),
    #[error("no mutation named `{0}` is registered")]
    UnknownMutation(String),
    #[error("mutation `{name}` is bound to {object_type}/{operation}, not to this request's scope")]
    MutationScope { name: String, object_type: String, operation: String },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("the idempotency key is longer than {MAX_IDEMPOTENCY_KEY_BYTES} bytes")]
    KeyTooLong,
    #[error("the idempotency key was already used with a different request (evidence id {evidence_id})")]
    KeyReused { evidence_id: i64 },
    #[error(
        "the mutation failed with SQLSTATE {sqlstate} and was rolled back (ctx_id {ctx_id}, trace_hash {trace_hash}, error evidence id {evidence_id})"
    )]
    MutationFailed { sqlstate: String, ctx_id: String, trace_hash: String, evidence_id: i64 },
    #[error("ExecuteWithEvidence needs a database: start with --database-url or use `governance-sidecar dev`")]
    NotConfigured,
}

impl From<deadpool_postgres::PoolError> for EvidenceError {
    fn from(error: deadpool_postgres::PoolError) -> EvidenceError {
        EvidenceError::Unavailable(error.to_string())
    }
}

impl From<EvidenceError> for tonic::Status {
    fn from(error: EvidenceError) -> tonic::Status {
        use tonic::Status;
        let message = error.to_string();
        match error {
            EvidenceError::Unavailable(_) => Status::unavailable(message),
            EvidenceError::Database(e) if e.is_closed() || e.as_db_error().is_none() => Status::unavailable(message),
            EvidenceError::Database(_) | EvidenceError::Schema(_) => Status::internal(message),
            EvidenceError::UnknownMutation(_) => Status::not_found(message),
            EvidenceError::MutationScope { .. } => Status::permission_denied(message),
            EvidenceError::Bind(_) | EvidenceError::KeyTooLong => Status::invalid_argument(message),
            EvidenceError::KeyReused { .. } => Status::already_exists(message),
            EvidenceError::MutationFailed { sqlstate, .. } if sqlstate == SqlState::QUERY_CANCELED.code() => {
                Status::deadline_exceeded(message)
            }
            EvidenceError::MutationFailed { .. } => Status::aborted(message),
            EvidenceError::NotConfigured => Status::failed_precondition(message),
        }
    }
}

/// How to reach Postgres.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    /// How long a call waits for a pooled connection (and to open one).
    pub wait_timeout: Duration,
    /// Longest any statement may run; a mutation over it is cancelled and rolled back.
    pub statement_timeout: Duration,
    /// PEM file of the CA that signs the server's certificate, for `sslmode=require`
    /// (and stricter); the system's roots are used without it.
    pub ca_file: Option<std::path::PathBuf>,
}

/// What a mutation did.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationResult {
    pub rows_affected: u64,
    pub returning: Vec<Map>,
}

/// How an ExecuteWithEvidence call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    pub evidence_id: i64,
    pub mutation_applied: bool,
    pub result: Option<MutationResult>,
    pub replayed: bool,
}

/// One governed write, ready to commit.
pub struct GovernedWrite<'a> {
    pub request: &'a NormalizedRequest,
    /// The decision; `None` in skip mode, where nothing is evaluated.
    pub decision: Option<&'a DecisionRecord>,
    pub mode: Mode,
    pub mutation: &'a Mutation,
    pub caller_params: &'a Map,
    /// Identifies the request for idempotency: same key and fingerprint replay.
    pub fingerprint: String,
    /// `sha256:…` of the policy bundle the decision was made under, if any.
    pub policy_bundle: Option<&'a str>,
    /// The caller's W3C trace id, joining the row to its distributed trace.
    pub trace_id: Option<&'a str>,
}

impl GovernedWrite<'_> {
    /// Whether the mutation may run: the decision gates it only in enforce mode.
    fn allows_write(&self) -> bool {
        match self.mode {
            Mode::Enforce => self.decision.is_some_and(|d| d.decision == Decision::Approved),
            Mode::Observe | Mode::Skip => true,
        }
    }
}

/// The evidence columns of one call, computed once (redaction included).
struct EvidenceRow {
    decision: &'static str,
    reason_codes: String,
    ctx_id: String,
    trace_hash: String,
    response_json: String,
    redacted_paths: String,
    /// The `policy` Kernite reports: key and version, when one applied.
    policy_key: Option<String>,
    policy_version: Option<i64>,
}

/// One connection outside the pool (for migrations), with TLS whenever the
/// URL's `sslmode` asks for it, exactly as the pool connects.
pub async fn connect_once(url: &str, ca_file: Option<&std::path::Path>) -> anyhow::Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url.parse()?;
    let client = match config.get_ssl_mode() {
        tokio_postgres::config::SslMode::Disable => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            client
        }
        _ => {
            let (client, connection) = config.connect(tls::connector(ca_file)?).await?;
            tokio::spawn(connection);
            client
        }
    };
    Ok(client)
}

pub struct EvidenceStore {
    pool: Pool,
    registry: Arc<Registry>,
    default_mode: Mode,
    redactor: Redactor,
}

impl EvidenceStore {
    /// Builds the pool, checks the schema and prepares every registered
    /// statement, so that a bad mutation stops start-up with its name.
    pub async fn connect(
        settings: &DatabaseSettings,
        registry: Registry,
        default_mode: Mode,
        redactor: Redactor,
    ) -> anyhow::Result<EvidenceStore> {
        let mut pg_config: tokio_postgres::Config = settings.url.parse()?;
        // Per session, so it costs no round trip per transaction.
        pg_config.options(format!("-c statement_timeout={}", settings.statement_timeout.as_millis()));
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let manager = match pg_config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => Manager::from_config(pg_config, NoTls, manager_config),
            _ => Manager::from_config(pg_config, tls::connector(settings.ca_file.as_deref())?, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.wait_timeout))
            .create_timeout(Some(settings.wait_timeout))
            .recycle_timeout(Some(settings.wait_timeout))
            .runtime(Runtime::Tokio1)
            .build()?;
        let client = pool.get().await.map_err(EvidenceError::from)?;
        migrate::check_schema(&client).await?;
        for mutation in registry.iter() {
            for (i, statement) in mutation.statements.iter().enumerate() {
                let prepared =
                    client.prepare_typed(&statement.sql, &mutation.param_types(statement)).await.map_err(|e| {
                        anyhow::anyhow!("mutation `{}`, statement {}: {}", mutation.name, i + 1, db_message(&e))
                    })?;
                if let Some(column) = prepared.columns().iter().find(|c| !returnable(c.type_())) {
                    anyhow::bail!(
                        "mutation `{}`, statement {}: RETURNING column `{}` has type {}, which cannot be returned \
                         (cast it to text, bigint, double precision, boolean or jsonb)",
                        mutation.name,
                        i + 1,
                        column.name(),
                        column.type_()
                    );
                }
            }
        }
        Ok(EvidenceStore { pool, registry: Arc::new(registry), default_mode, redactor })
    }

    /// Whether Postgres answers now (for the health of the Governance service).
    /// Open connections, idle ones, and calls waiting for one.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (status.size, status.available, status.waiting)
    }

    pub async fn ping(&self) -> bool {
        match self.pool.get().await {
            Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        }
    }

    /// The operator's mode for a mutation: its own, else its scope's in the
    /// policy bundle, else the server's default.
    pub fn mode_for(&self, mutation: &Mutation, bundle_mode: Option<Mode>) -> Mode {
        mutation.mode.or(bundle_mode).unwrap_or(self.default_mode)
    }

    /// The mutation a caller named, if it may govern this request.
    pub fn mutation_for(&self, name: &str, request: &NormalizedRequest) -> Result<&Mutation, EvidenceError> {
        let mutation = self.registry.get(name).ok_or_else(|| EvidenceError::UnknownMutation(name.to_owned()))?;
        if mutation.object_type != request.object_type || mutation.operation != request.operation {
            return Err(EvidenceError::MutationScope {
                name: name.to_owned(),
                object_type: mutation.object_type.clone(),
                operation: mutation.operation.clone(),
            });
        }
        Ok(mutation)
    }

    /// Records the decision and, if approved, applies the mutation, atomically.
    pub async fn execute(&self, write: GovernedWrite<'_>) -> Result<Execution, EvidenceError> {
        if write.request.idempotency_key.as_ref().is_some_and(|k| k.len() > MAX_IDEMPOTENCY_KEY_BYTES) {
            return Err(EvidenceError::KeyTooLong);
        }
        write.mutation.check_caller_params(write.caller_params)?;
        let row = self.evidence_row(&write);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_execute(&write, &row).await {
                Err(EvidenceError::Database(e)) if is_retryable(&e) && attempt < MAX_ATTEMPTS => {
                    tracing::info!(attempt, sqlstate = ?e.code(), "retrying the transaction");
                }
                Err(EvidenceError::Database(e)) if is_connection_loss(&e) => {
                    return Err(EvidenceError::Unavailable(db_message(&e)));
                }
                Err(EvidenceError::Database(e)) if e.as_db_error().is_some() && !is_retryable(&e) => {
                    return Err(self.record_failure(&write, &row, &e).await);
                }
                other => return other,
            }
        }
    }

    /// The evidence columns: the decision (or the skip), with secrets masked.
    fn evidence_row(&self, write: &GovernedWrite<'_>) -> EvidenceRow {
        let (decision, reason_codes, ctx_id, trace_hash, response) = match write.decision {
            Some(record) => (
                record.decision.as_str(),
                Value::Array(record.reason_codes.iter().cloned().map(Value::Str).collect()),
                record.ctx_id.to_string(),
                record.trace_hash.clone(),
                record.to_value(),
            ),
            None => {
                // Nothing was decided, so nothing was hashed: a fresh ctx_id joins the logs.
                let ctx_id = crate::ctx_id::random();
                let response = object([
                    ("ctx_id", Value::str(&ctx_id)),
                    ("message", Value::str("Governance skipped by operator mode.")),
                    ("data", object([("decision", Value::str("skipped")), ("mode", Value::str("skip"))])),
                ]);
                ("skipped", Value::Array(Vec::new()), ctx_id, String::new(), response)
            }
        };
        let policy_key = write.decision.and_then(DecisionRecord::policy_key).map(str::to_owned);
        let policy_version = write.decision.and_then(DecisionRecord::policy_version);
        let mut redacted = self.redactor.redact_response(response);
        jsonb_safe(&mut redacted.value);
        EvidenceRow {
            policy_key,
            policy_version,
            decision,
            reason_codes: json::to_string(&reason_codes, Layout::Canonical),
            ctx_id,
            trace_hash,
            response_json: json::to_string(&redacted.value, Layout::Response),
            redacted_paths: json::to_string(
                &Value::Array(redacted.masked.into_iter().map(Value::str).collect()),
                Layout::Canonical,
            ),
        }
    }

    /// The transaction, in as few round trips as its dependencies allow:
    /// a decision that writes nothing is one autocommitted INSERT; a write is
    /// BEGIN, the evidence INSERT and the mutation sent together (the mutation
    /// waits for the INSERT only if it needs the evidence id), then the result
    /// INSERT with COMMIT: two round trips.
    async fn try_execute(&self, write: &GovernedWrite<'_>, row: &EvidenceRow) -> Result<Execution, EvidenceError> {
        let mutation = write.mutation;
        let bind = |evidence_id| {
            let builtins =
                Builtins { request: write.request, ctx_id: &row.ctx_id, trace_hash: &row.trace_hash, evidence_id };
            mutation.bind(&builtins, write.caller_params)
        };
        // Bound before a connection is taken: a caller's bad parameter costs the
        // database nothing. (The evidence id, if used, is bound again once known.)
        let values = if write.allows_write() { Some(bind(0)?) } else { None };

        let client = self.pool.get().await?;
        let Some(values) = values else {
            // Nothing to write but the evidence: a single statement is atomic by itself.
            return match insert_evidence(&client, write, row, "not_applied", true, None).await? {
                Some(evidence_id) => {
                    Ok(Execution { evidence_id, mutation_applied: false, result: None, replayed: false })
                }
                None => self.replay(write, &client).await,
            };
        };

        let transaction = Transaction::open(client);
        let client = transaction.client();
        let begin = async { transaction.begin().await.map_err(EvidenceError::from) };
        let outcome = if mutation.uses_builtin(Builtin::EvidenceId) {
            // The mutation needs the id: it waits for the evidence row.
            let first = async {
                match insert_evidence(client, write, row, "applied", true, None).await? {
                    Some(evidence_id) => {
                        let values = bind(evidence_id)?;
                        Ok((Some(evidence_id), run_mutation(client, mutation, &values).await?))
                    }
                    None => Ok((None, MutationResult { rows_affected: 0, returning: Vec::new() })),
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
                insert_evidence(client, write, row, "applied", true, None),
                run_mutation(client, mutation, &values)
            );
            match (began, inserted, result) {
                (Ok(()), Ok(evidence_id), Ok(result)) => Ok((evidence_id, result)),
                (began, inserted, result) => Err([began.err(), inserted.err(), result.err()]
                    .into_iter()
                    .flatten()
                    .reduce(cause)
                    .expect("one of them failed")),
            }
        };
        let (evidence_id, result) = match outcome {
            Ok((Some(evidence_id), result)) => (evidence_id, result),
            Ok((None, _)) => {
                // The key is taken: undo what ran beside the insert, then replay.
                let client = transaction.rollback().await?;
                return self.replay(write, &client).await;
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
        let statement = client
            .prepare_typed_cached(
                "INSERT INTO governance_mutation_results (evidence_id, rows_affected, returning_rows) \
                 VALUES ($1, $2, $3::text::jsonb)",
                &[],
            )
            .await?;
        transaction.commit_with_execute(&statement, &[&evidence_id, &rows_affected, &returning]).await?;
        Ok(Execution { evidence_id, mutation_applied: true, result: Some(result), replayed: false })
    }

    /// The stored outcome of an earlier call with the same key, or a refusal
    /// if that call was a different request.
    async fn replay(&self, write: &GovernedWrite<'_>, client: &impl GenericClient) -> Result<Execution, EvidenceError> {
        let request = write.request;
        let row = client
            .query_one(
                "SELECT e.id, e.request_fingerprint, r.rows_affected, r.returning_rows::text \
                 FROM governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id \
                 WHERE e.workspace_id = $1 AND e.idempotency_key = $2",
                &[&request.workspace_id.as_str(), &request.idempotency_key.as_deref()],
            )
            .await?;
        let evidence_id: i64 = row.get(0);
        if row.get::<_, Option<String>>(1).as_deref() != Some(write.fingerprint.as_str()) {
            return Err(EvidenceError::KeyReused { evidence_id });
        }
        let result = match (row.get::<_, Option<i64>>(2), row.get::<_, Option<String>>(3)) {
            (Some(rows_affected), Some(returning)) => {
                Some(MutationResult { rows_affected: rows_affected as u64, returning: parse_rows(&returning) })
            }
            _ => None,
        };
        Ok(Execution { evidence_id, mutation_applied: result.is_some(), result, replayed: true })
    }

    /// After a rollback: the evidence of the failed attempt, alone and
    /// without the idempotency key, so that a corrected retry can succeed.
    async fn record_failure(
        &self,
        write: &GovernedWrite<'_>,
        row: &EvidenceRow,
        error: &tokio_postgres::Error,
    ) -> EvidenceError {
        let sqlstate = error.code().map_or("XX000", SqlState::code).to_owned();
        tracing::warn!(sqlstate, mutation = write.mutation.name, "mutation failed; transaction rolled back");
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(e) => return e.into(),
        };
        match insert_evidence(&client, write, row, "error", false, Some(&sqlstate)).await {
            Ok(Some(evidence_id)) => EvidenceError::MutationFailed {
                sqlstate,
                ctx_id: row.ctx_id.clone(),
                trace_hash: row.trace_hash.clone(),
                evidence_id,
            },
            Ok(None) => EvidenceError::Schema("error evidence was not inserted".into()),
            Err(e) => e,
        }
    }
}

/// Of two failures of one pipeline, the one that caused the other. Once a
/// statement fails, the transaction's later statements only report 25P02
/// (in failed transaction); which one ran first depends on timing.
fn cause(a: EvidenceError, b: EvidenceError) -> EvidenceError {
    let aborted_by_another = |e: &EvidenceError| matches!(e, EvidenceError::Database(db) if db.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    if aborted_by_another(&a) && !aborted_by_another(&b) { b } else { a }
}

fn is_retryable(error: &tokio_postgres::Error) -> bool {
    matches!(error.code(), Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

/// The server went away (connection exception, or an operator/crash
/// shutdown of the backend): nothing committed, and the request is not at fault.
fn is_connection_loss(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => error.is_closed(),
        Some(code) => {
            code.code().starts_with("08")
                || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(code)
        }
    }
}

/// A database error's own message, without the statement or its parameters.
fn db_message(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

/// Inserts the evidence row; `None` when `claim_key` and the key is already taken.
async fn insert_evidence(
    client: &impl GenericClient,
    write: &GovernedWrite<'_>,
    row: &EvidenceRow,
    outcome: &str,
    claim_key: bool,
    sqlstate: Option<&str>,
) -> Result<Option<i64>, EvidenceError> {
    let request = write.request;
    let key = if claim_key { request.idempotency_key.as_deref() } else { None };
    let statement = client
        .prepare_typed_cached(
            "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, \
             reason_codes, ctx_id, trace_hash, idempotency_key, response_json, outcome, mutation_name, \
             request_fingerprint, error_sqlstate, mode, redacted_paths, policy_bundle_sha256, policy_key, \
             policy_version, trace_id) \
             VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7, $8, $9, $10::text::jsonb, $11, $12, $13, $14, $15, \
             $16::text::jsonb, $17, $18, $19, $20) \
             ON CONFLICT (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING id",
            &[],
        )
        .await?;
    let params: [&(dyn ToSql + Sync); 20] = [
        &request.workspace_id.as_str(),
        &request.principal.id.as_str(),
        &request.object_type.as_str(),
        &request.operation.as_str(),
        &row.decision,
        &row.reason_codes,
        &row.ctx_id,
        &row.trace_hash,
        &key,
        &row.response_json,
        &outcome,
        &write.mutation.name,
        &write.fingerprint,
        &sqlstate,
        &write.mode.as_str(),
        &row.redacted_paths,
        &write.policy_bundle,
        &row.policy_key,
        &row.policy_version,
        &write.trace_id,
    ];
    Ok(client.query_opt(&statement, &params).await?.map(|row| row.get(0)))
}

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

fn returnable(ty: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::TEXT,
        Type::VARCHAR,
        Type::BOOL,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::JSONB,
        Type::JSON,
    ]
    .contains(ty)
}

fn row_to_map(row: &Row) -> Map {
    let mut map = Map::default();
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT2 {
            row.get::<_, Option<i16>>(i).map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT4 {
            row.get::<_, Option<i32>>(i).map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT8 {
            row.get::<_, Option<i64>>(i).map(Value::Int)
        } else if *ty == Type::BOOL {
            row.get::<_, Option<bool>>(i).map(Value::Bool)
        } else if *ty == Type::FLOAT4 {
            row.get::<_, Option<f32>>(i).map(|f| Value::Float(f.into()))
        } else if *ty == Type::FLOAT8 {
            row.get::<_, Option<f64>>(i).map(Value::Float)
        } else if *ty == Type::JSONB || *ty == Type::JSON {
            row.get::<_, Option<serde_json::Value>>(i).and_then(|v| json::parse(&v.to_string()).ok())
        } else {
            row.get::<_, Option<String>>(i).map(Value::str)
        };
        map.insert(column.name().into(), value.unwrap_or(Value::Null));
    }
    map
}

fn rows_json(rows: &[Map]) -> String {
    let mut rows = Value::Array(rows.iter().cloned().map(Value::Object).collect());
    jsonb_safe(&mut rows);
    json::to_string(&rows, Layout::Canonical)
}

/// jsonb has no NaN or Infinity, which Kernite's Python JSON (and a float8
/// column) can hold: the stored copy spells them as strings, `"NaN"`,
/// `"Infinity"`, `"-Infinity"`. The caller's answer keeps Kernite's tokens.
fn jsonb_safe(value: &mut Value) {
    match value {
        Value::Float(f) if !f.is_finite() => {
            let token = if f.is_nan() {
                "NaN"
            } else if *f > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            *value = Value::str(token);
        }
        Value::Array(items) => items.iter_mut().for_each(jsonb_safe),
        Value::Object(map) => map.values_mut().for_each(jsonb_safe),
        _ => {}
    }
}

fn parse_rows(text: &str) -> Vec<Map> {
    match json::parse(text) {
        Ok(Value::Array(rows)) => rows.into_iter().filter_map(|r| r.as_object().cloned()).collect(),
        _ => Vec::new(),
    }
}
