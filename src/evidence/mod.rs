//! The governed write: the decision's evidence row and the write it governs
//! commit in one transaction, or neither does; and reading evidence back.
//!
//! | question | file |
//! | --- | --- |
//! | What is a governed write, and what did it come to? | `governed.rs` |
//! | What does a governed write send, in which order, and how does it end? | `write.rs` |
//! | How is an approved write one statement, and when can it be? | `one_statement.rs` |
//! | How do concurrent callers' writes share one transaction? | `group_commit.rs` |
//! | How is an idempotency key claimed, replayed or refused? | [`idempotency`] |
//! | Which columns does an evidence row hold, in which order? | `row.rs` |
//! | How are secrets kept out of it? | [`redact`] |
//! | What must a value be to be stored as jsonb, and how does PostgreSQL print it? | [`jsonb`] |
//! | What does a mutation's result look like stored? | `returning.rs` |
//! | How is a transaction kept from leaking onto a pooled connection? | `transaction.rs` |
//! | How is evidence read back (the audit API)? | [`audit`] |
//! | Which failures are retried, and what does each become? | `error.rs`, `crate::postgres::failure` |
//!
//! Around it: [`crate::postgres`] reaches the database, [`crate::schema`]
//! migrates it, [`crate::log`] makes the rows a verifiable log, and
//! [`crate::upkeep`] keeps the partitioned layout's months.

pub mod audit;
mod error;
mod governed;
mod group_commit;
pub mod idempotency;
pub mod jsonb;
mod one_statement;
pub mod redact;
mod returning;
mod row;
mod transaction;
mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use error::EvidenceError;
pub use governed::{Execution, Fingerprint, GovernedWrite, RecordedAnswer};
pub use idempotency::MAX_IDEMPOTENCY_KEY_BYTES;
pub use returning::MutationResult;
pub use row::COLUMNS as EVIDENCE_COLUMNS;

use crate::defaults::{DEFAULT_GROUP_COMMIT, DEFAULT_KEY_LIFETIME, DEFAULT_MAX_RECORDED_REQUEST_BYTES};
use crate::mutations::Registry;
use crate::postgres::{DatabaseSettings, Pool, failure};
use crate::schema::{layout, migrate};
use group_commit::GroupCommit;
use idempotency::KeyLifetime;
use one_statement::OneStatementWrite;
use redact::Redactor;

/// How governed writes are sent and their keys kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSettings {
    /// How many group-commit transactions may be in flight at once; 0 sends
    /// every write on its own ([`group_commit`]).
    pub group_commit: usize,
    /// How long a claimed idempotency key is replayed in the partitioned
    /// layout (the reference layout keeps keys for ever).
    pub key_lifetime: Duration,
    /// The largest request a row keeps for replay; a larger one is not kept.
    pub max_recorded_request_bytes: usize,
}

impl Default for WriteSettings {
    fn default() -> WriteSettings {
        WriteSettings {
            group_commit: DEFAULT_GROUP_COMMIT,
            key_lifetime: DEFAULT_KEY_LIFETIME,
            max_recorded_request_bytes: DEFAULT_MAX_RECORDED_REQUEST_BYTES,
        }
    }
}

/// The pool, the operator's registry of mutations, and how evidence is kept.
pub struct EvidenceStore {
    pool: Pool,
    registry: Arc<Registry>,
    /// The mutations whose approved write is one statement, by name.
    one_statement: HashMap<String, Arc<OneStatementWrite>>,
    /// Where one-statement writes share transactions, unless turned off.
    group_commit: Option<GroupCommit>,
    /// How long a key is replayed: for ever, unless the layout is the partitioned one.
    key_lifetime: KeyLifetime,
    redactor: Redactor,
    /// The largest request a row keeps ([`WriteSettings::max_recorded_request_bytes`]).
    max_recorded_request_bytes: usize,
    /// Woken when a call finds no database to write to, so that health
    /// says so at once rather than at its next check.
    unavailable: tokio::sync::Notify,
}

impl EvidenceStore {
    /// Builds the pool, checks the schema and prepares every registered
    /// statement, so that a bad mutation stops start-up with its name.
    pub async fn connect(
        database: &DatabaseSettings,
        writes: WriteSettings,
        registry: Registry,
        redactor: Redactor,
    ) -> anyhow::Result<EvidenceStore> {
        let pool = Pool::new(database)?;
        let client = pool.get().await.map_err(EvidenceError::from)?;
        migrate::check_schema(&client).await?;
        let key_lifetime = match layout::detect(&client).await? {
            layout::EvidenceLayout::Reference => KeyLifetime::Forever,
            layout::EvidenceLayout::Partitioned => KeyLifetime::Expires(writes.key_lifetime),
        };
        let mut one_statement = HashMap::new();
        for mutation in registry.iter() {
            let mut returning = Vec::new();
            for (i, statement) in mutation.statements.iter().enumerate() {
                let prepared =
                    client.prepare_typed(&statement.sql, &mutation.param_types(statement)).await.map_err(|e| {
                        anyhow::anyhow!(
                            "mutation `{}`, statement {}: {}",
                            mutation.name,
                            i + 1,
                            failure::db_message(&e)
                        )
                    })?;
                if let Some(column) = prepared.columns().iter().find(|c| !returning::returnable(c.type_())) {
                    anyhow::bail!(
                        "mutation `{}`, statement {}: RETURNING column `{}` has type {}, which cannot be returned \
                         (cast it to text, bigint, double precision, boolean or jsonb)",
                        mutation.name,
                        i + 1,
                        column.name(),
                        column.type_()
                    );
                }
                returning = prepared.columns().iter().map(|c| (c.name().to_owned(), c.type_().clone())).collect();
            }
            if let Some(write) = OneStatementWrite::compose(mutation, &returning, &redactor) {
                match client.prepare_typed(write.sql(), write.param_types()).await {
                    Ok(_) => {
                        one_statement.insert(mutation.name.clone(), Arc::new(write));
                    }
                    Err(e) => tracing::info!(
                        mutation = mutation.name,
                        error = failure::db_message(&e),
                        "the mutation cannot be written as one statement; it takes two round trips"
                    ),
                }
            }
        }
        let group_commit = (writes.group_commit > 0).then(|| GroupCommit::start(pool.clone(), writes.group_commit));
        Ok(EvidenceStore {
            pool,
            registry: Arc::new(registry),
            one_statement,
            group_commit,
            key_lifetime,
            redactor,
            max_recorded_request_bytes: writes.max_recorded_request_bytes,
            unavailable: tokio::sync::Notify::new(),
        })
    }

    /// The operator's registry of mutations callers may name.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The pool, for readers of the evidence beside the store (the verifiable log's proofs).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Open connections, idle ones, and calls waiting for one.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        self.pool.status()
    }

    /// Whether a writable PostgreSQL answers now (for the health of the
    /// Governance service). A connection that finds its server read-only (a
    /// standby, or a demoted primary) retires every connection of the pool,
    /// so that the next ones look for the primary.
    pub async fn ping(&self) -> bool {
        let Ok(client) = self.pool.get().await else { return false };
        let writable = "SELECT NOT (pg_is_in_recovery() OR current_setting('transaction_read_only')::bool) AS writable";
        match client.guard(client.query_one(writable, &[])).await {
            Ok(row) if row.try_get("writable").unwrap_or(false) => true,
            Ok(_) => {
                drop(client);
                self.forget_connections("the database answers read-only");
                false
            }
            Err(_) => false,
        }
    }

    /// Resolves when a call next finds no writable database (or at once, if
    /// one has since the last wait).
    pub async fn calls_failing(&self) {
        self.unavailable.notified().await;
    }

    /// Retires every connection: after a failover they lead to the old primary.
    pub(super) fn forget_connections(&self, why: &str) {
        self.pool.retire(why);
    }
}
