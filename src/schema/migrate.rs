//! Schema migrations, embedded in the binary.
//!
//! Several sidecars may start at once against one database: the migrator
//! holds a session advisory lock on a connection of its own (not a pooled
//! one, whose session could be reused) while it reads and applies versions.
//! The same lock covers the conversion to the partitioned layout
//! ([`super::layout`]). A migration after that conversion must apply to
//! both layouts.

use tokio_postgres::Client;

use super::SchemaError;
use super::layout::{self, EvidenceLayout};

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "governance_events",
        sql: include_str!("../../migrations/0001_governance_events.sql"),
    },
    Migration {
        version: 2,
        name: "execution_outcome",
        sql: include_str!("../../migrations/0002_execution_outcome.sql"),
    },
    Migration {
        version: 3,
        name: "mode_and_redaction",
        sql: include_str!("../../migrations/0003_mode_and_redaction.sql"),
    },
    Migration {
        version: 4,
        name: "append_only_evidence",
        sql: include_str!("../../migrations/0004_append_only_evidence.sql"),
    },
    Migration {
        version: 5,
        name: "policy_provenance_and_audit",
        sql: include_str!("../../migrations/0005_policy_provenance_and_audit.sql"),
    },
    Migration { version: 6, name: "verifiable_log", sql: include_str!("../../migrations/0006_verifiable_log.sql") },
    Migration { version: 7, name: "result_workspace", sql: include_str!("../../migrations/0007_result_workspace.sql") },
    Migration {
        version: 8,
        name: "trace_hash_through_ctx_id",
        sql: include_str!("../../migrations/0008_trace_hash_through_ctx_id.sql"),
    },
    Migration {
        version: 9,
        name: "retention_records_what_it_removed",
        sql: include_str!("../../migrations/0009_retention_records_what_it_removed.sql"),
    },
    Migration { version: 10, name: "caller", sql: include_str!("../../migrations/0010_caller.sql") },
    Migration { version: 11, name: "request", sql: include_str!("../../migrations/0011_request.sql") },
    Migration {
        version: 12,
        name: "evidence_compression",
        sql: include_str!("../../migrations/0012_evidence_compression.sql"),
    },
    Migration {
        version: 13,
        name: "result_without_foreign_key",
        sql: include_str!("../../migrations/0013_result_without_foreign_key.sql"),
    },
    Migration {
        version: 14,
        name: "every_partition_compressed",
        sql: include_str!("../../migrations/0014_every_partition_compressed.sql"),
    },
    Migration {
        version: 15,
        name: "retention_in_one_snapshot",
        sql: include_str!("../../migrations/0015_retention_in_one_snapshot.sql"),
    },
];

pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Key of the advisory lock serialising migrators ("govsidec" in ASCII).
const LOCK_KEY: i64 = 0x676f_7673_6964_6563;

const CREATE_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS governance_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())";

async fn current_version(client: &Client) -> Result<i32, SchemaError> {
    let exists: bool =
        client.query_one("SELECT to_regclass('governance_schema_migrations') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client.query_one("SELECT coalesce(max(version), 0) FROM governance_schema_migrations", &[]).await?.get(0))
}

/// Applies the pending migrations; returns the versions applied. The
/// layout stays what it is (the reference layout on a new database).
pub async fn migrate(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    migrate_to(client, None).await
}

/// Applies the pending migrations, then converts to `layout` if given
/// (see [`layout::convert`]); returns the versions applied.
pub async fn migrate_to(client: &mut Client, layout: Option<EvidenceLayout>) -> Result<Vec<i32>, SchemaError> {
    client.execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY]).await?;
    let result = async {
        let applied = apply_pending(client).await?;
        if let Some(layout) = layout {
            layout::convert(client, layout).await?;
        }
        Ok(applied)
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await?;
    result
}

async fn apply_pending(client: &mut Client) -> Result<Vec<i32>, SchemaError> {
    client.batch_execute(CREATE_VERSION_TABLE).await?;
    let current = current_version(client).await?;
    refuse_newer(current)?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let transaction = client.transaction().await?;
        transaction.batch_execute(migration.sql).await?;
        transaction
            .execute(
                "INSERT INTO governance_schema_migrations (version, name) VALUES ($1, $2)",
                &[&migration.version, &migration.name],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
        applied.push(migration.version);
    }
    Ok(applied)
}

fn refuse_newer(current: i32) -> Result<(), SchemaError> {
    if current > latest_version() {
        return Err(SchemaError::Incompatible(format!(
            "the database schema is at version {current}, newer than this binary knows ({}); \
             run a newer governance-sidecar",
            latest_version()
        )));
    }
    Ok(())
}

/// Serving needs exactly the schema this binary knows.
pub async fn check_schema(client: &Client) -> Result<(), SchemaError> {
    let current = current_version(client).await?;
    refuse_newer(current)?;
    if current < latest_version() {
        return Err(SchemaError::Incompatible(format!(
            "the database schema is at version {current}, this binary needs {}; run `governance-sidecar migrate` \
             or serve with --migrate",
            latest_version()
        )));
    }
    Ok(())
}
