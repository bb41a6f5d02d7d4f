//! The sequencer: gives committed evidence rows their places in the log, a
//! batch at a time, and signs a checkpoint after each batch.
//!
//! **Order without serialising writers.** Rows are taken in `(xact_id, id)`
//! order, `xact_id` being the 64-bit id of the transaction that wrote the row
//! (a column default: the governed write takes no extra lock and makes no
//! extra round trip). A batch takes only rows whose transaction is older than
//! `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still
//! running: every transaction below it has ended, and every transaction that
//! has not yet written will get a larger id. So no row can ever commit with a
//! key below one already sequenced, and the cursor (the last leaf's key) is
//! all the sequencer needs to remember. Rows written before the log existed
//! have no `xact_id`; they come first, by id. (bigserial order alone would
//! not do: a row with a lower id can commit after one with a higher id.)
//!
//! **One sequencer per database.** Every sidecar with a signing key runs this
//! loop; the one holding a session advisory lock sequences, the others wait.
//! When it dies its session ends, the lock is free, and another takes over
//! within an interval. Each batch is one transaction (its batch row, with the
//! tree hashes, and its checkpoint), so a batch cut short leaves no trace; the
//! primary keys on the batch's first position and the checkpoint's size stop
//! a second writer (and the size check at each batch's start says so early).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::{Client, GenericClient};

use super::checkpoint::LogSigner;
use super::tree::Frontier;
use super::{entry, sql};
use crate::evidence::EvidenceError;
use crate::metrics::metrics;
use crate::postgres::DatabaseTarget;

/// Key of the advisory lock held by the sequencing sidecar ("govslog" in ASCII).
const LOCK_KEY: i64 = 0x0067_6f76_736c_6f67;

/// The most rows one batch (one transaction) takes.
pub const MAX_BATCH_ROWS: usize = 10_000;

/// The longest a batch, or a lag query, may take before the sequencer gives
/// up its connection (and with it the lock) and starts over.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Unsequenced rows older than this make the log unhealthy.
pub const MAX_HEALTHY_LAG: Duration = Duration::from_secs(30);

/// How this sidecar keeps the log: the signer key's file, and how often a
/// batch is cut and a checkpoint signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKeeping {
    pub signing_key_file: PathBuf,
    pub interval: Duration,
}

/// What the sequencer reports, for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LogState {
    /// This sidecar holds the lock and sequences.
    pub leader: bool,
    /// Rows written but not yet in a checkpoint (counted by the sequencing
    /// sidecar only), and the age of the oldest.
    pub lag_rows: Option<u64>,
    pub lag_seconds: f64,
    /// The size of the latest checkpoint.
    pub checkpoint_size: u64,
    /// When the sequencer last reached the database (`None`: not yet).
    pub reported_at: Option<Instant>,
}

impl LogState {
    /// Whether evidence reaches signed checkpoints in good time, as lately seen.
    pub fn keeping_up(&self) -> bool {
        self.reported_at.is_some_and(|at| at.elapsed() <= MAX_HEALTHY_LAG)
            && self.lag_seconds <= MAX_HEALTHY_LAG.as_secs_f64()
    }
}

/// Where the log ends: its size, the key of its last row, and the right edge of its tree.
struct Tail {
    cursor: Cursor,
    frontier: Frontier,
}

/// The `(xact_id, id)` of the last sequenced row. Rows from before the log
/// have no `xact_id` and sort first, as 0 (no transaction has id 0).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cursor {
    xact_id: i64,
    id: i64,
}

impl Cursor {
    const START: Cursor = Cursor { xact_id: 0, id: 0 };

    /// The cursor as the last batch stored it.
    async fn stored(client: &impl GenericClient) -> Result<(u64, Cursor), EvidenceError> {
        let last = client.query_opt(sql::LAST_BATCH, &[]).await?;
        Ok(match last {
            None => (0, Cursor::START),
            Some(row) => (
                row.try_get::<_, i64>("size")? as u64,
                Cursor { xact_id: row.try_get("last_xact_id")?, id: row.try_get("last_evidence_id")? },
            ),
        })
    }
}

/// Starts this sidecar's sequencer, which sequences whenever no other
/// sidecar on the database does; its reports, for health and metrics.
pub fn spawn(database: DatabaseTarget, keeping: &LogKeeping) -> anyhow::Result<watch::Receiver<LogState>> {
    let signer = Arc::new(LogSigner::load(&keeping.signing_key_file)?);
    tracing::info!(origin = signer.origin(), "keeping the verifiable log");
    let (state, watched) = watch::channel(LogState::default());
    tokio::spawn(run(database, Keeper { signer, interval: keeping.interval }, state));
    Ok(watched)
}

/// The key in hand, and the interval.
struct Keeper {
    signer: Arc<LogSigner>,
    interval: Duration,
}

/// Runs the sequencer for as long as the process lives: waits for the lock,
/// sequences while it holds it, and starts over after any failure.
async fn run(database: DatabaseTarget, settings: Keeper, state: watch::Sender<LogState>) {
    loop {
        if let Err(error) = lead(&database, &settings, &state).await {
            tracing::warn!(error = %format!("{error:#}"), "the log sequencer stopped; starting over");
        }
        state.send_modify(|s| s.leader = false);
        metrics().log_leader(false);
        tokio::time::sleep(settings.interval).await;
    }
}

/// Waits for the lock, then sequences until something fails.
async fn lead(database: &DatabaseTarget, settings: &Keeper, state: &watch::Sender<LogState>) -> anyhow::Result<()> {
    let client = database.connect_once().await?;
    while !client.query_one(sql::TRY_SEQUENCER_LOCK, &[&LOCK_KEY]).await?.try_get("locked")? {
        report(state, &client, false).await?;
        tokio::time::sleep(settings.interval).await;
    }
    tracing::info!("this sidecar sequences the verifiable log");
    metrics().log_leader(true);
    let mut client = client;
    let mut tail = load_tail(&client).await?;
    loop {
        // A connection that died without a word must not hold the lock for hours.
        let appended = tokio::time::timeout(STEP_TIMEOUT, batch(&mut client, &settings.signer, &mut tail))
            .await
            .map_err(|_| anyhow::anyhow!("a batch took longer than {STEP_TIMEOUT:?}"))??;
        tokio::time::timeout(STEP_TIMEOUT, report(state, &client, true))
            .await
            .map_err(|_| anyhow::anyhow!("the lag query took longer than {STEP_TIMEOUT:?}"))??;
        if appended < MAX_BATCH_ROWS {
            tokio::time::sleep(settings.interval).await;
        }
    }
}

/// The log's end as stored, checked against its latest checkpoint.
async fn load_tail(client: &Client) -> anyhow::Result<Tail> {
    let (size, cursor) = Cursor::stored(client).await?;
    if cursor.xact_id > 0 {
        let next: i64 = client.query_one(sql::NEXT_XACT_ID, &[]).await?.try_get("next")?;
        anyhow::ensure!(
            cursor.xact_id < next,
            "the log's last row was written by transaction {}, but this server's next transaction id is {next}: \
             was the database restored from a logical dump? New rows would sort before the log's end \
             (see docs/verifiable-log.md, \"Order\")",
            cursor.xact_id
        );
    }
    let frontier = Frontier::load(client, size).await?;
    if let Some(checkpoint) = client.query_opt(sql::CHECKPOINT_OF_SIZE, &[&(size as i64)]).await? {
        let signed_root = super::tree::to_hash(checkpoint.try_get("root_hash")?)?;
        anyhow::ensure!(
            signed_root == frontier.root(),
            "the stored tree of size {size} does not have its checkpoint's root: run `governance-sidecar verify`"
        );
    }
    Ok(Tail { cursor, frontier })
}

/// One batch, in one transaction: the next committed rows become leaves, and
/// the new tree head is signed. Returns how many rows were sequenced.
async fn batch(client: &mut Client, signer: &LogSigner, tail: &mut Tail) -> anyhow::Result<usize> {
    let transaction = client.transaction().await?;
    let now = transaction.query_one(sql::BATCH_START, &[]).await?;
    let stored_size: i64 = now.try_get("size")?;
    anyhow::ensure!(
        stored_size as u64 == tail.frontier.size(),
        "the log has {stored_size} leaves, not the {} this sequencer wrote: another sequencer is writing",
        tail.frontier.size()
    );
    let rows = next_rows(&transaction, tail.cursor, now.try_get("horizon")?).await?;
    if rows.is_empty() && now.try_get::<_, bool>("signed")? {
        return Ok(0);
    }

    let count = rows.len();
    let first_index = tail.frontier.size();
    let first_stored = tlog_tiles::stored_hash_index(0, first_index);
    // Hashing a batch is CPU work for milliseconds: off the runtime's workers.
    let (frontier, cursor) = (std::mem::take(&mut tail.frontier), tail.cursor);
    let hashed = tokio::task::spawn_blocking(move || Batch::hash(&rows, cursor, frontier)).await?;
    // On any error the caller starts over from the stored log, with a new connection.
    let Batch { evidence_ids, cursor, frontier, stored } = hashed?;
    let (size, root) = (frontier.size(), frontier.root());
    let signed_note = signer.sign(size, root, now.try_get("now_us")?)?;

    let hashes: Vec<u8> = stored.iter().flat_map(|h| h.0).collect();
    let written = async {
        // The first checkpoint of an empty log has no batch.
        if !evidence_ids.is_empty() {
            let (first_index, first_stored) = (first_index as i64, first_stored as i64);
            let values: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
                [&first_index, &evidence_ids, &cursor.xact_id, &cursor.id, &first_stored, &hashes];
            transaction.execute(sql::INSERT_BATCH, &values).await?;
        }
        transaction.execute(sql::INSERT_CHECKPOINT, &[&(size as i64), &root.0.as_slice(), &signed_note]).await?;
        transaction.commit().await
    }
    .await;
    written?;
    tail.frontier = frontier;
    tail.cursor = cursor;
    metrics().log_sequenced(count as u64, size);
    tracing::debug!(rows = count, size, "sequenced a batch and signed its checkpoint");
    Ok(count)
}

/// A batch's rows as leaves: what to store, and where the log then ends.
struct Batch {
    evidence_ids: Vec<i64>,
    cursor: Cursor,
    frontier: Frontier,
    /// The tree hashes to store, from `stored_hash_index(0, first index)` on.
    stored: Vec<tlog_tiles::Hash>,
}

impl Batch {
    fn hash(rows: &[tokio_postgres::Row], mut cursor: Cursor, mut frontier: Frontier) -> anyhow::Result<Batch> {
        let mut leaves = Vec::with_capacity(rows.len());
        let mut evidence_ids = Vec::with_capacity(rows.len());
        for row in rows {
            leaves.push(entry::leaf_hash(&entry::from_row(row)?));
            let xact_id = row.try_get::<_, Option<&str>>("xact_id")?.map(str::parse).transpose()?;
            cursor = Cursor { xact_id: xact_id.unwrap_or(0), id: row.try_get("evidence_id")? };
            evidence_ids.push(cursor.id);
        }
        let stored = frontier.append(&leaves);
        Ok(Batch { evidence_ids, cursor, frontier, stored })
    }
}

/// The next rows to sequence after `cursor`, whose transactions all ended before `horizon`.
async fn next_rows(
    client: &impl GenericClient,
    cursor: Cursor,
    horizon: i64,
) -> Result<Vec<tokio_postgres::Row>, EvidenceError> {
    let limit = MAX_BATCH_ROWS as i64;
    let mut rows = Vec::new();
    if cursor.xact_id == 0 {
        rows = client.query(sql::ROWS_BEFORE_LOG.as_str(), &[&cursor.id, &limit]).await?;
    }
    if rows.len() < MAX_BATCH_ROWS {
        let (xact_id, id) = if cursor.xact_id == 0 { (0, 0) } else { (cursor.xact_id, cursor.id) };
        let left = limit - rows.len() as i64;
        rows.extend(client.query(sql::ROWS_AFTER.as_str(), &[&xact_id, &id, &horizon, &left]).await?);
    }
    Ok(rows)
}

/// Publishes the log's lag and size (as leader, or as a sidecar waiting for the lock).
async fn report(state: &watch::Sender<LogState>, client: &Client, leader: bool) -> Result<(), EvidenceError> {
    let lag = lag(client, leader).await?;
    let report = LogState { leader, reported_at: Some(Instant::now()), ..lag };
    metrics().log_lag(report.lag_rows, report.lag_seconds, report.checkpoint_size);
    state.send_replace(report);
    Ok(())
}

/// The age of the oldest row not yet in the log (the first after the
/// cursor: one index probe), the latest checkpoint's size, and, when
/// `count_rows` (the sequencing sidecar; the others poll every interval and
/// need not cost the shared database more), how many rows wait, up to 10,000.
pub async fn lag(client: &impl GenericClient, count_rows: bool) -> Result<LogState, EvidenceError> {
    let (_, cursor) = Cursor::stored(client).await?;
    let before_log = cursor.xact_id == 0;
    let (newer_xact, newer_id) = if before_log { (0, 0) } else { (cursor.xact_id, cursor.id) };
    let row = client.query_one(sql::LAG, &[&before_log, &cursor.id, &newer_xact, &newer_id]).await?;
    let lag_rows = if count_rows {
        let pending = client.query_one(sql::LAG_ROWS, &[&before_log, &cursor.id, &newer_xact, &newer_id]).await?;
        Some(pending.try_get::<_, i64>("rows")? as u64)
    } else {
        None
    };
    Ok(LogState {
        leader: false,
        reported_at: None,
        lag_rows,
        lag_seconds: row.try_get::<_, f64>("seconds")?.max(0.0),
        checkpoint_size: row.try_get::<_, i64>("size")? as u64,
    })
}
