//! Evidence in PostgreSQL: the decision row and the write it governs commit
//! in one transaction, or neither does; and reading it back.
//!
//! | question | file |
//! | --- | --- |
//! | How is PostgreSQL reached (pool, TLS, single connections)? | `connection.rs`, `tls.rs` |
//! | What is a governed write, and what did it come to? | `governed.rs` |
//! | What does a governed write send, in which order, and how does it end? | `write.rs` |
//! | How is an approved write one statement, and when can it be? | `one_statement.rs` |
//! | How do concurrent callers' writes share one transaction? | `group_commit.rs` |
//! | How is an idempotency key claimed, replayed or refused? | `idempotency.rs` |
//! | Which columns does an evidence row hold, and how are secrets kept out? | `row.rs`, [`redact`] |
//! | What does a mutation's result look like stored? | `returning.rs` |
//! | How is a transaction kept from leaking onto a pooled connection? | `transaction.rs` |
//! | How is evidence read back (the audit API)? | [`audit`] |
//! | How does the schema evolve? | [`migrate`], `migrations/` |
//! | Which layouts can the tables have, and how does one become the other? | [`layout`] |
//! | How are months created and dropped, and expired keys forgotten? | [`upkeep`] |
//! | Which failures are retried, and what does each become? | `error.rs` |
//! | How can an auditor check the evidence without trusting the database? | [`log`] |

pub mod audit;
mod connection;
mod error;
mod governed;
mod group_commit;
mod idempotency;
pub mod layout;
mod libpq;
pub mod local_postgres;
pub mod log;
pub mod migrate;
mod one_statement;
pub mod redact;
mod returning;
mod row;
mod tls;
mod transaction;
pub mod upkeep;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;

pub use connection::{DatabaseSettings, connect_once};
pub use error::EvidenceError;
pub use governed::{Execution, GovernedWrite};
pub use idempotency::{Fingerprint, MAX_IDEMPOTENCY_KEY_BYTES};
pub use returning::MutationResult;

use crate::decision::NormalizedRequest;
use crate::mutations::{Mutation, Registry};
use crate::vocabulary::Mode;
use group_commit::GroupCommit;
use idempotency::KeyLifetime;
use one_statement::OneStatementWrite;
use redact::Redactor;

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
    default_mode: Mode,
    redactor: Redactor,
    /// What the log's sequencer reports, when this sidecar keeps the log.
    log: Option<tokio::sync::watch::Receiver<log::sequencer::LogState>>,
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
        let pool = connection::pool(settings)?;
        let client = pool.get().await.map_err(EvidenceError::from)?;
        migrate::check_schema(&client).await?;
        let key_lifetime = match layout::detect(&client).await? {
            layout::EvidenceLayout::Reference => KeyLifetime::Forever,
            layout::EvidenceLayout::Partitioned => KeyLifetime::Expires(settings.upkeep.key_lifetime),
        };
        let mut one_statement = HashMap::new();
        for mutation in registry.iter() {
            let mut returning = Vec::new();
            for (i, statement) in mutation.statements.iter().enumerate() {
                let prepared =
                    client.prepare_typed(&statement.sql, &mutation.param_types(statement)).await.map_err(|e| {
                        anyhow::anyhow!("mutation `{}`, statement {}: {}", mutation.name, i + 1, error::db_message(&e))
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
                        error = error::db_message(&e),
                        "the mutation cannot be written as one statement; it takes two round trips"
                    ),
                }
            }
        }
        let group_commit = (settings.group_commit > 0).then(|| GroupCommit::start(pool.clone(), settings.group_commit));
        Ok(EvidenceStore {
            pool,
            registry: Arc::new(registry),
            one_statement,
            group_commit,
            key_lifetime,
            default_mode,
            redactor,
            log: None,
        })
    }

    /// Starts this sidecar's log sequencer, which sequences whenever no other
    /// sidecar on the database does.
    pub fn keep_log(&mut self, database: &DatabaseSettings, settings: log::sequencer::LogSettings) {
        let (state, watched) = tokio::sync::watch::channel(log::sequencer::LogState::default());
        tokio::spawn(log::sequencer::run(database.clone(), settings, state));
        self.log = Some(watched);
    }

    /// Runs the partitioned layout's upkeep now and then every
    /// [`upkeep::UPKEEP_INTERVAL`] (nothing in the reference layout), each
    /// pass on a connection of its own; a failed pass is logged and tried
    /// again at the next.
    pub fn keep_up(&self, database: &DatabaseSettings) {
        if self.key_lifetime == KeyLifetime::Forever {
            return;
        }
        let database = database.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(upkeep::UPKEEP_INTERVAL);
            loop {
                interval.tick().await;
                let pass = async {
                    let client = connect_once(&database.url, database.ca_file.as_deref()).await?;
                    anyhow::Ok(upkeep::run_once(&client, &database.upkeep).await?)
                };
                match pass.await {
                    Ok(Some(report)) => tracing::info!(?report, "upkeep done"),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(error = format!("{error:#}"), "upkeep failed; trying again later"),
                }
            }
        });
    }

    /// The sequencer's latest report, when this sidecar keeps the log.
    pub fn log_state(&self) -> Option<tokio::sync::watch::Receiver<log::sequencer::LogState>> {
        self.log.clone()
    }

    /// Open connections, idle ones, and calls waiting for one.
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (status.size, status.available, status.waiting)
    }

    /// Whether a writable PostgreSQL answers now (for the health of the
    /// Governance service). A connection that finds its server read-only (a
    /// standby, or a demoted primary) takes the pool's idle connections with
    /// it, so that the next ones look for the primary.
    pub async fn ping(&self) -> bool {
        let Ok(client) = self.pool.get().await else { return false };
        let writable = "SELECT NOT (pg_is_in_recovery() OR current_setting('transaction_read_only')::bool) AS writable";
        match client.query_one(writable, &[]).await {
            Ok(row) if row.try_get("writable").unwrap_or(false) => true,
            Ok(_) => {
                drop(client);
                self.forget_connections("the database answers read-only");
                false
            }
            Err(_) => false,
        }
    }

    /// Closes every idle connection: after a failover they lead to the old
    /// primary. Connections in use are closed as their calls fail.
    pub(super) fn forget_connections(&self, why: &str) {
        let before = self.pool.status().size;
        self.pool.retain(|_, _| false);
        let closed = before.saturating_sub(self.pool.status().size);
        tracing::warn!(why, closed, "closed the pool's idle connections");
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
}
