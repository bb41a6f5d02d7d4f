//! The partitioned layout's upkeep: months created ahead of the clock,
//! months past retention dropped, and expired idempotency keys forgotten.
//!
//! One pass ([`run_once`]) is what `governance-sidecar maintain` runs;
//! `serve` runs one at start and then every [`UPKEEP_INTERVAL`]. Several
//! sidecars may try at once: a pass holds a session advisory lock on a
//! connection of its own, and one that finds it held skips its turn.
//!
//! **Never blocking writers for more than a moment.** A month is let go with
//! `DETACH PARTITION … CONCURRENTLY`, which waits for the transactions that
//! might see the partition instead of making writers wait for it, and the
//! detached table is then dropped on its own. Creating a month takes a brief
//! exclusive lock on the parent, so it is done months ahead, with a short
//! `lock_timeout` (a pass that cannot have the lock tries again next time).
//!
//! **Never dropping what the verifiable log needs.** With the log kept, a
//! month goes only once every row in it is sequenced, and the log positions
//! its rows held are recorded first ([`retention::record_month`]), which
//! `verify` reads as "these rows may be gone". Leaf hashes stay in the log's
//! own tables, so every kept row's proof stays valid.

use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::defaults::{DEFAULT_KEY_LIFETIME, DEFAULT_MONTHS_AHEAD};
use crate::evidence::EvidenceError;
use crate::evidence::idempotency::forget_expired_keys;
use crate::log::retention::{self, MonthInLog};
use crate::postgres::DatabaseTarget;
use crate::postgres::failure::db_message;
use crate::schema::layout::{self, EvidenceLayout};

/// How often `serve` runs a pass.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// Key of the upkeep's advisory lock ("govupkep" in ASCII).
const LOCK_KEY: i64 = 0x676f_7675_706b_6570;
/// Expired keys deleted per statement.
const KEY_BATCH: i64 = 10_000;

/// What the upkeep keeps, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upkeep {
    /// How long a claimed idempotency key is replayed.
    pub key_lifetime: Duration,
    /// A month is dropped once all of it lies more than this many months in
    /// the past (its end is at least this long ago); `None` keeps all.
    pub retention_months: Option<u32>,
    /// Months created ahead of the current one.
    pub months_ahead: u32,
}

impl Default for Upkeep {
    fn default() -> Upkeep {
        Upkeep { key_lifetime: DEFAULT_KEY_LIFETIME, retention_months: None, months_ahead: DEFAULT_MONTHS_AHEAD }
    }
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UpkeepReport {
    /// Partitions created (two a month: evidence and results).
    pub partitions_created: i32,
    /// The evidence partitions dropped, oldest first.
    pub months_dropped: Vec<String>,
    /// A month past retention kept because the log has not sequenced all its rows.
    pub kept_for_log: Option<String>,
    pub keys_forgotten: u64,
}

/// Runs a pass now and then every [`UPKEEP_INTERVAL`], each on a connection
/// of its own, for as long as the database has the partitioned layout; a
/// failed pass is logged and tried again at the next.
pub fn keep_up(database: DatabaseTarget, upkeep: Upkeep) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            interval.tick().await;
            let pass = async {
                let client = database.connect_once().await?;
                if layout::detect(&client).await? != EvidenceLayout::Partitioned {
                    return anyhow::Ok(false);
                }
                if let Some(report) = run_locked(&client, &upkeep).await? {
                    tracing::info!(?report, "upkeep done");
                }
                Ok(true)
            };
            match pass.await {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => tracing::warn!(error = format!("{error:#}"), "upkeep failed; trying again later"),
            }
        }
    });
}

/// One pass on `client` (a connection of its own, for the session lock).
/// `None` when another pass holds the lock, or the layout is the reference one.
pub async fn run_once(client: &Client, upkeep: &Upkeep) -> Result<Option<UpkeepReport>, EvidenceError> {
    if layout::detect(client).await? != EvidenceLayout::Partitioned {
        return Ok(None);
    }
    run_locked(client, upkeep).await
}

/// A pass on the partitioned layout, under the upkeep's lock; `None` when
/// another pass holds it.
async fn run_locked(client: &Client, upkeep: &Upkeep) -> Result<Option<UpkeepReport>, EvidenceError> {
    let locked: bool =
        client.query_one("SELECT pg_try_advisory_lock($1) AS locked", &[&LOCK_KEY]).await?.try_get("locked")?;
    if !locked {
        return Ok(None);
    }
    let report = pass(client, upkeep).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY]).await?;
    report.map(Some)
}

/// The three steps. Creating and dropping partitions is the owner's right:
/// a sidecar running as a role without it says so and still forgets keys.
async fn pass(client: &Client, upkeep: &Upkeep) -> Result<UpkeepReport, EvidenceError> {
    let mut report = UpkeepReport::default();
    let months = async {
        report.partitions_created = create_months_ahead(client, upkeep.months_ahead).await?;
        if let Some(months) = upkeep.retention_months {
            for month in months_past(client, months).await? {
                if !drop_month(client, &month).await? {
                    report.kept_for_log = Some(month);
                    break;
                }
                report.months_dropped.push(month);
            }
        }
        Ok::<_, EvidenceError>(())
    };
    match months.await {
        Err(EvidenceError::Database(e)) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => tracing::warn!(
            error = db_message(&e),
            "this role may not create or drop partitions: run `governance-sidecar maintain` as the tables' owner"
        ),
        other => other?,
    }
    loop {
        let forgotten = forget_expired_keys(client, upkeep.key_lifetime, KEY_BATCH).await?;
        report.keys_forgotten += forgotten;
        if forgotten < KEY_BATCH as u64 {
            break;
        }
    }
    Ok(report)
}

/// Creates the missing months from the current one to `ahead` months on.
async fn create_months_ahead(client: &Client, ahead: u32) -> Result<i32, EvidenceError> {
    let ahead = i32::try_from(ahead).unwrap_or(i32::MAX);
    // Creating a partition locks its parent exclusively: never queue writers behind it for long.
    client.batch_execute("SET lock_timeout = '500ms'").await?;
    let row = client
        .query_one(
            "SELECT governance_create_month_partitions(now(), now() + make_interval(months => $1)) AS created",
            &[&ahead],
        )
        .await;
    client.batch_execute("RESET lock_timeout").await?;
    match row {
        Ok(row) => Ok(row.try_get("created")?),
        // The parent's lock is busy: next pass.
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// The evidence partitions whose whole month ended at least `months` months ago, oldest first.
async fn months_past(client: &Client, months: u32) -> Result<Vec<String>, EvidenceError> {
    let months = i32::try_from(months).unwrap_or(i32::MAX);
    let rows = client
        .query(
            "SELECT c.relname::text AS partition FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'governance_events'::regclass AND c.relname ~ '^governance_events_p[0-9]{6}$' \
             AND to_date(right(c.relname, 6), 'YYYYMM')::timestamp AT TIME ZONE 'UTC' + interval '1 month' \
                 <= now() - make_interval(months => $1) \
             ORDER BY c.relname",
            &[&months],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get("partition")?)).collect()
}

/// Drops one month of evidence and of results; false if the log still needs it.
async fn drop_month(client: &Client, evidence_partition: &str) -> Result<bool, EvidenceError> {
    let month = evidence_partition.trim_start_matches("governance_events_p");
    let recorded = if crate::log::in_use(client).await? {
        match retention::record_month(client, evidence_partition).await? {
            MonthInLog::NotSequenced => return Ok(false),
            MonthInLog::Empty => None,
            MonthInLog::Recorded { rows } => Some(rows),
        }
    } else {
        None
    };
    let results_partition = format!("governance_mutation_results_p{month}");
    detach(client, "governance_mutation_results", &results_partition).await?;
    detach(client, "governance_events", evidence_partition).await?;
    // Rows that reached the month after its record was written are not in the
    // record: keep the detached table for the operator rather than lose them.
    if let Some(rows) = recorded {
        let now: i64 = client
            .query_one(&format!("SELECT count(*) AS rows FROM {evidence_partition}"), &[])
            .await?
            .try_get("rows")?;
        if now != rows {
            return Err(EvidenceError::Log(format!(
                "{evidence_partition} holds {now} rows, but retention recorded {rows}: it is detached and kept; \
                 attach it again, or drop it once its rows are accounted for"
            )));
        }
    }
    for partition in [&results_partition, evidence_partition] {
        client.batch_execute(&format!("DROP TABLE IF EXISTS {partition}")).await?;
    }
    tracing::info!(month, "dropped a month of evidence past retention");
    Ok(true)
}

/// Detaches a partition without blocking writers. A detach interrupted
/// earlier (the partition is "pending detach") is finished instead.
async fn detach(client: &Client, parent: &str, partition: &str) -> Result<(), EvidenceError> {
    let attached = client
        .query_opt(
            "SELECT i.inhdetachpending AS pending FROM pg_inherits i \
             WHERE i.inhrelid = to_regclass($1) AND i.inhparent = to_regclass($2)",
            &[&partition, &parent],
        )
        .await?;
    if let Some(attached) = attached {
        let how = if attached.try_get("pending")? { "FINALIZE" } else { "CONCURRENTLY" };
        client.batch_execute(&format!("ALTER TABLE {parent} DETACH PARTITION {partition} {how}")).await?;
    }
    Ok(())
}
