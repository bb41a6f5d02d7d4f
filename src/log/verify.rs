//! `governance-sidecar verify`: checks the evidence against the signed
//! checkpoints, trusting nothing in the database but what the log's key signed.
//!
//! It reads, never writes: every checkpoint (signature, origin, and that the
//! stored columns say what the signed note says); every leaf, recomputed from
//! its row (or, for a row retention removed, taken from the stored leaf
//! hashes); the tree's root at each checkpoint's size against the signed
//! root; the log's order; and the rows the log does not hold.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use tlog_tiles::Hash;
use tokio_postgres::Client;
use tokio_stream::StreamExt as _;

use super::checkpoint::{LogVerifier, OpenedCheckpoint};
use super::entry;
use super::retention::{self, Retention};
use super::sequencer::MAX_BATCH_ROWS;
use super::sql;
use super::tree::{self, Frontier};
use crate::defaults::{DEFAULT_MAX_LAG, DEFAULT_MAX_TRANSACTION_AGE};
use crate::evidence::EvidenceError;

/// How much slack the checks allow.
#[derive(Debug, Clone, Copy)]
pub struct VerifySettings {
    /// The longest a governed transaction may take from its start (its rows'
    /// `created_at`) to its commit. A row sorting below rows already signed,
    /// yet older than that before the checkpoint that preceded it, was added
    /// after the fact.
    pub max_transaction_age: Duration,
    /// Rows not yet sequenced are a discrepancy once older than this.
    pub max_lag: Duration,
}

impl Default for VerifySettings {
    fn default() -> VerifySettings {
        VerifySettings { max_transaction_age: DEFAULT_MAX_TRANSACTION_AGE, max_lag: DEFAULT_MAX_LAG }
    }
}

/// One thing that does not verify, named by evidence id where there is one.
#[derive(Debug, Clone, PartialEq)]
pub enum Discrepancy {
    CheckpointNotSigned { size: u64, why: String },
    CheckpointRewritten { size: u64 },
    CheckpointBeyondLog { size: u64, leaves: u64 },
    CheckpointMismatch { size: u64, later: usize },
    CheckpointDoesNotExtend { size: u64, previous: u64 },
    LeafMissing { from: u64, to: u64 },
    LeafTwice { evidence_id: i64, index: u64 },
    StoredTreeMismatch { first_index: u64 },
    Retention(retention::Finding),
    LeafHashMissing { index: u64 },
    RowDeleted { evidence_id: i64, index: u64 },
    RowModified { evidence_id: i64, index: u64 },
    RowMoved { evidence_id: i64, index: u64, sequenced_at: u64 },
    OutOfOrder { evidence_id: i64, index: u64 },
    AddedAfterTheFact { evidence_id: i64, why: &'static str },
    NotSequenced { evidence_id: i64, age_seconds: f64 },
}

impl fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Discrepancy::*;
        match self {
            CheckpointNotSigned { size, why } => write!(f, "checkpoint of size {size}: {why}"),
            CheckpointRewritten { size } => {
                write!(f, "checkpoint of size {size}: its stored size or root differs from its signed note")
            }
            CheckpointBeyondLog { size, leaves } => {
                write!(f, "checkpoint of size {size}: the log holds only {leaves} leaves")
            }
            CheckpointMismatch { size, later } => write!(
                f,
                "checkpoint of size {size}: its signed root is not the root of the rows it covers \
                 ({later} later checkpoints do not match either)"
            ),
            CheckpointDoesNotExtend { size, previous } => {
                write!(f, "checkpoint of size {size} does not extend the checkpoint of size {previous}")
            }
            LeafMissing { from, to } => write!(f, "log indexes {from} to {to}: no leaves (a gap in the log)"),
            LeafTwice { evidence_id, index } => {
                write!(f, "evidence {evidence_id} (log index {index}): in the log twice, or two batches overlap")
            }
            StoredTreeMismatch { first_index } => write!(
                f,
                "the batch from log index {first_index}: its stored tree hashes are not those of its leaves \
                 (proofs served from them would not verify)"
            ),
            Retention(finding) => finding.fmt(f),
            LeafHashMissing { index } => write!(f, "log index {index}: its stored leaf hash is missing"),
            RowDeleted { evidence_id, index } => {
                write!(f, "evidence {evidence_id} (log index {index}): deleted, and not by retention")
            }
            RowModified { evidence_id, index } => {
                write!(f, "evidence {evidence_id} (log index {index}): modified since it was sequenced")
            }
            RowMoved { evidence_id, index, sequenced_at } => write!(
                f,
                "evidence {evidence_id}: reordered, now at log index {index}, sequenced at log index {sequenced_at}"
            ),
            OutOfOrder { evidence_id, index } => {
                write!(f, "evidence {evidence_id} (log index {index}): out of the log's (xact_id, id) order")
            }
            AddedAfterTheFact { evidence_id, why } => write!(f, "evidence {evidence_id}: added after the fact ({why})"),
            NotSequenced { evidence_id, age_seconds } => {
                write!(f, "evidence {evidence_id}: not yet sequenced, {age_seconds:.0} s after it was written")
            }
        }
    }
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    pub leaves: u64,
    pub checkpoints: u64,
    /// Leaves whose rows retention removed (checked by their stored hashes).
    pub pruned: u64,
    /// Rows written within `max_lag` and not yet sequenced (not discrepancies).
    pub pending: u64,
    /// What each retention record says it removed, oldest first.
    pub retention: Vec<String>,
    pub discrepancies: Vec<Discrepancy>,
}

/// Checks everything; `progress` hears (leaves checked, leaves in the log) now and then.
pub async fn verify(
    client: &Client,
    verifier: &LogVerifier,
    settings: VerifySettings,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, EvidenceError> {
    // One snapshot for every read, so that retention running meanwhile is not
    // mistaken for deletion. Read-only: it holds back no one's sequencing.
    client.batch_execute(sql::READ_ONLY_SNAPSHOT).await?;
    let report = check(client, verifier, settings, &mut progress).await;
    client.batch_execute(sql::END_SNAPSHOT).await?;
    report
}

async fn check(
    client: &Client,
    verifier: &LogVerifier,
    settings: VerifySettings,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Report, EvidenceError> {
    let mut report = Report::default();
    let signed = checkpoints(client, verifier, &mut report).await?;
    let retention = Retention::load(client).await?;
    report.retention = retention.describe();
    let total = client.query_one(sql::SIZE, &[]).await?.try_get::<_, i64>("n")? as u64;
    let mut pass = Pass { walk: Walk::new(&signed, settings), retention, sequenced: HashSet::new(), report };
    let (mut after, mut shown) = (-1_i64, 0);
    while let Some(batch) = client.query_opt(sql::BATCH_AFTER, &[&after]).await? {
        after = batch.try_get("first_index")?;
        pass.batch(client, &batch).await?;
        if pass.report.leaves >= shown + 100_000 {
            shown = pass.report.leaves;
            progress(shown, total);
        }
    }
    let Pass { mut walk, retention, sequenced, mut report } = pass;
    // Missing rows only a record the kept rows contradict accounted for were deleted.
    let mut findings = Vec::new();
    let deleted = retention.finish(&mut findings);
    report.discrepancies.extend(findings.into_iter().map(Discrepancy::Retention));
    report.pruned -= deleted.len() as u64;
    for (evidence_id, index) in deleted {
        report.discrepancies.push(Discrepancy::RowDeleted { evidence_id, index });
    }
    progress(report.leaves, total);
    walk.finish(&mut report, client).await?;
    unsequenced(client, &sequenced, walk.last_key, settings, &mut report).await?;
    Ok(report)
}

/// What the walk over the batches carries from one to the next.
struct Pass<'a> {
    walk: Walk<'a>,
    retention: Retention,
    /// The evidence ids the log holds.
    sequenced: HashSet<i64>,
    report: Report,
}

impl Pass<'_> {
    /// One batch: each leaf recomputed from its row (or taken from its stored
    /// hash where retention removed the row), then the batch's stored tree hashes.
    async fn batch(&mut self, client: &Client, batch: &tokio_postgres::Row) -> Result<(), EvidenceError> {
        let first_index: i64 = batch.try_get("first_index")?;
        let evidence_ids: Vec<i64> = batch.try_get("evidence_ids")?;
        let stored = StoredRun { first_stored: batch.try_get("first_stored")?, hashes: batch.try_get("hashes")? };
        let rows = client.query(sql::ENTRIES_OF.as_str(), &[&evidence_ids]).await?;
        let mut rows: HashMap<i64, &tokio_postgres::Row> =
            rows.iter().map(|row| Ok((row.try_get("evidence_id")?, row))).collect::<Result<_, EvidenceError>>()?;
        let mut stored_leaves = Vec::with_capacity(evidence_ids.len());
        for (evidence_id, index) in evidence_ids.iter().copied().zip(first_index as u64..) {
            if !self.sequenced.insert(evidence_id) || index < self.walk.expected_index {
                self.report.discrepancies.push(Discrepancy::LeafTwice { evidence_id, index });
                continue;
            }
            let stored_leaf = stored.at(tlog_tiles::stored_hash_index(0, index));
            stored_leaves.extend(stored_leaf);
            let leaf = self.leaf(rows.remove(&evidence_id), evidence_id, index, stored_leaf)?;
            self.walk.append(&mut self.report, client, index, leaf).await?;
        }
        // The batch's stored tree hashes must be the ones its stored leaves imply.
        let implied = self.walk.stored_tree.append(&stored_leaves);
        let expected_first = tlog_tiles::stored_hash_index(0, first_index as u64);
        let matches = stored.first_stored == expected_first as i64
            && stored.hashes.len() == implied.len() * 32
            && implied.iter().zip(expected_first..).all(|(hash, i)| stored.at(i) == Some(*hash));
        if !matches {
            self.report.discrepancies.push(Discrepancy::StoredTreeMismatch { first_index: first_index as u64 });
        }
        Ok(())
    }

    /// The leaf at `index`: recomputed from its row, or, for a row retention
    /// removed (and one deleted otherwise, which is named), its stored hash.
    fn leaf(
        &mut self,
        row: Option<&tokio_postgres::Row>,
        evidence_id: i64,
        index: u64,
        stored: Option<Hash>,
    ) -> Result<Option<Hash>, EvidenceError> {
        let report = &mut self.report;
        Ok(match row {
            Some(row) => {
                let (key, created_at_us) = RowKey::of(row)?;
                let mut findings = Vec::new();
                self.retention.kept(evidence_id, index, created_at_us, &mut findings);
                report.discrepancies.extend(findings.into_iter().map(Discrepancy::Retention));
                let computed = entry::leaf_hash(&entry::from_row(row)?);
                self.walk.row(report, index, evidence_id, (key, created_at_us), computed, stored)
            }
            None if self.retention.removed(evidence_id, index) => {
                report.pruned += 1;
                self.walk.pruned(report, index, stored)
            }
            None => {
                report.discrepancies.push(Discrepancy::RowDeleted { evidence_id, index });
                self.walk.pruned(report, index, stored)
            }
        })
    }
}

/// A batch's stored tree hashes, 32 bytes each from stored-hash index `first_stored` on.
struct StoredRun<'r> {
    first_stored: i64,
    hashes: &'r [u8],
}

impl StoredRun<'_> {
    /// The hash at a stored-hash index. Stored values may have been tampered
    /// with: no arithmetic on them may panic.
    fn at(&self, stored_index: u64) -> Option<Hash> {
        let offset = usize::try_from((stored_index as i64).checked_sub(self.first_stored)?).ok()?.checked_mul(32)?;
        self.hashes.get(offset..offset.checked_add(32)?).map(|h| Hash(h.try_into().expect("32 bytes")))
    }
}

/// Every stored checkpoint, in size order; those that do not open are reported.
async fn checkpoints(
    client: &Client,
    verifier: &LogVerifier,
    report: &mut Report,
) -> Result<Vec<OpenedCheckpoint>, EvidenceError> {
    let rows = client.query(sql::EVERY_CHECKPOINT, &[]).await?;
    let mut signed = Vec::new();
    for row in rows {
        report.checkpoints += 1;
        let size = row.try_get::<_, i64>("tree_size")? as u64;
        match verifier.open(row.try_get("signed_note")?) {
            Err(why) => report.discrepancies.push(Discrepancy::CheckpointNotSigned { size, why }),
            Ok(opened) => {
                if opened.size != size || opened.root.0.as_slice() != row.try_get::<_, &[u8]>("root_hash")? {
                    report.discrepancies.push(Discrepancy::CheckpointRewritten { size });
                }
                signed.push(opened);
            }
        }
    }
    signed.sort_by_key(|s| s.size);
    Ok(signed)
}

/// A row's place in the log's order, and what the after-the-fact check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RowKey {
    /// `None` (rows from before the log) sorts first.
    xact_id: Option<i64>,
    id: i64,
}

impl RowKey {
    fn of(row: &tokio_postgres::Row) -> Result<(RowKey, i64), EvidenceError> {
        let number = |field: &str| -> Result<Option<i64>, EvidenceError> {
            Ok(row.try_get::<_, Option<&str>>(field)?.and_then(|v| v.parse().ok()))
        };
        let key = RowKey { xact_id: number("xact_id")?, id: number("id")?.unwrap_or_default() };
        Ok((key, number("created_at_us")?.unwrap_or_default()))
    }
}

/// The walk over the leaves in log order.
struct Walk<'a> {
    signed: &'a [OpenedCheckpoint],
    /// The next checkpoint to reach.
    next: usize,
    frontier: Frontier,
    /// The tree of the stored leaf hashes, to check each batch's stored tree hashes.
    stored_tree: Frontier,
    settings: VerifySettings,
    last_key: Option<RowKey>,
    expected_index: u64,
    max_id: i64,
    /// The highest id and the time of the last checkpoint passed, and its size.
    passed: Option<(i64, i64)>,
    passed_size: u64,
    /// Leaves whose rows do not hash to their stored leaf: (index, evidence id, recomputed).
    mismatched: Vec<(u64, i64, Hash)>,
    /// The last checkpoint whose root matched.
    matched: Option<u64>,
    /// Where the first mismatching checkpoint is reported, and how many mismatched after it.
    first_mismatch: Option<(usize, u64)>,
}

impl<'a> Walk<'a> {
    fn new(signed: &'a [OpenedCheckpoint], settings: VerifySettings) -> Walk<'a> {
        Walk {
            signed,
            next: 0,
            frontier: Frontier::default(),
            stored_tree: Frontier::default(),
            settings,
            last_key: None,
            expected_index: 0,
            max_id: 0,
            passed: None,
            passed_size: 0,
            mismatched: Vec::new(),
            matched: None,
            first_mismatch: None,
        }
    }

    /// A present row: its recomputed leaf, after the order and after-the-fact checks.
    fn row(
        &mut self,
        report: &mut Report,
        index: u64,
        evidence_id: i64,
        (key, created_at_us): (RowKey, i64),
        computed: Hash,
        stored: Option<Hash>,
    ) -> Option<Hash> {
        if self.last_key.is_some_and(|last| key <= last) {
            report.discrepancies.push(Discrepancy::OutOfOrder { evidence_id, index });
        }
        if let Some((max_id, time_us)) = self.passed {
            let oldest_allowed = time_us - self.settings.max_transaction_age.as_micros() as i64;
            if key.id < max_id && created_at_us < oldest_allowed {
                report.discrepancies.push(Discrepancy::AddedAfterTheFact {
                    evidence_id,
                    why: "its id and created_at place it before rows an earlier checkpoint signed",
                });
            }
        }
        self.last_key = Some(self.last_key.map_or(key, |last| last.max(key)));
        self.max_id = self.max_id.max(key.id);
        match stored {
            None => report.discrepancies.push(Discrepancy::LeafHashMissing { index }),
            Some(stored) if stored != computed => self.mismatched.push((index, evidence_id, computed)),
            Some(_) => {}
        }
        Some(computed)
    }

    /// A leaf whose row is gone: its stored hash stands in.
    fn pruned(&mut self, report: &mut Report, index: u64, stored: Option<Hash>) -> Option<Hash> {
        if stored.is_none() {
            report.discrepancies.push(Discrepancy::LeafHashMissing { index });
        }
        stored
    }

    /// Adds a leaf to the tree, and checks each checkpoint the tree reaches.
    async fn append(
        &mut self,
        report: &mut Report,
        client: &Client,
        index: u64,
        leaf: Option<Hash>,
    ) -> Result<(), EvidenceError> {
        if self.expected_index < index {
            report.discrepancies.push(Discrepancy::LeafMissing { from: self.expected_index, to: index - 1 });
        }
        self.expected_index = index + 1;
        report.leaves += 1;
        // Without a leaf the tree cannot go on; the checkpoints after it are unchecked.
        let Some(leaf) = leaf else { return Ok(()) };
        if self.frontier.size() != index {
            return Ok(());
        }
        self.frontier.append(&[leaf]);
        self.reach_checkpoints(report, client).await
    }

    async fn reach_checkpoints(&mut self, report: &mut Report, client: &Client) -> Result<(), EvidenceError> {
        let size = self.frontier.size();
        while let Some(checkpoint) = self.signed.get(self.next).filter(|c| c.size <= size) {
            self.next += 1;
            if checkpoint.size < size {
                continue; // a checkpoint at size 0, passed before the first leaf
            }
            if checkpoint.root == self.frontier.root() {
                self.matched = Some(checkpoint.size);
            } else if let Some((_, later)) = &mut self.first_mismatch {
                *later += 1;
            } else {
                self.first_mismatch = Some((report.discrepancies.len(), 0));
                report.discrepancies.push(Discrepancy::CheckpointMismatch { size: checkpoint.size, later: 0 });
                if let Some(previous) = self.matched {
                    self.check_extends(report, client, previous, checkpoint).await?;
                }
            }
            // A batch cut short by its size (the sequencer catching up) may end
            // between two rows that drew their ids and transaction ids in
            // opposite orders: after it, the back-dating rule could not tell.
            let caught_up = checkpoint.size - self.passed_size < MAX_BATCH_ROWS as u64;
            self.passed = checkpoint.time_us.filter(|_| caught_up).map(|time_us| (self.max_id, time_us));
            self.passed_size = checkpoint.size;
        }
        Ok(())
    }

    /// Whether the stored tree proves `checkpoint` extends the checkpoint of `previous` leaves.
    async fn check_extends(
        &self,
        report: &mut Report,
        client: &Client,
        previous: u64,
        checkpoint: &OpenedCheckpoint,
    ) -> Result<(), EvidenceError> {
        let Some(earlier) = self.signed.iter().find(|s| s.size == previous) else { return Ok(()) };
        let extends = match tree::consistency_proof(client, previous, checkpoint.size).await {
            Ok(proof) => {
                tlog_tiles::check_tree(&proof, checkpoint.size, checkpoint.root, previous, earlier.root).is_ok()
            }
            Err(_) => false,
        };
        if !extends {
            report.discrepancies.push(Discrepancy::CheckpointDoesNotExtend { size: checkpoint.size, previous });
        }
        Ok(())
    }

    /// After the last leaf: checkpoints beyond the log, the mismatch count,
    /// and which mismatched rows were modified and which were moved.
    async fn finish(&mut self, report: &mut Report, client: &Client) -> Result<(), EvidenceError> {
        for checkpoint in &self.signed[self.next..] {
            if checkpoint.size > self.frontier.size() {
                report
                    .discrepancies
                    .push(Discrepancy::CheckpointBeyondLog { size: checkpoint.size, leaves: self.expected_index });
            }
        }
        if let Some((position, count)) = self.first_mismatch
            && let Discrepancy::CheckpointMismatch { later, .. } = &mut report.discrepancies[position]
        {
            *later = count as usize;
        }
        if self.mismatched.is_empty() {
            return Ok(());
        }
        // Where, if anywhere, each mismatched row's leaf was sequenced: a second
        // pass over the stored leaf hashes, only when something mismatched.
        let wanted: HashSet<[u8; 32]> = self.mismatched.iter().map(|(_, _, h)| h.0).collect();
        let mut leaf_at: HashMap<[u8; 32], u64> = HashMap::new();
        let batches = client.query(sql::EVERY_BATCH, &[]).await?;
        for batch in batches {
            let (first_index, n): (i64, i32) = (batch.try_get("first_index")?, batch.try_get("n")?);
            let (first_stored, hashes): (i64, &[u8]) = (batch.try_get("first_stored")?, batch.try_get("hashes")?);
            for index in first_index as u64..(first_index + i64::from(n)) as u64 {
                let at = (tlog_tiles::stored_hash_index(0, index) as i64 - first_stored) as usize * 32;
                if let Some(leaf) = hashes.get(at..at + 32).and_then(|h| <[u8; 32]>::try_from(h).ok())
                    && wanted.contains(&leaf)
                {
                    leaf_at.insert(leaf, index);
                }
            }
        }
        for &(index, evidence_id, computed) in &self.mismatched {
            report.discrepancies.push(match leaf_at.get(&computed.0) {
                Some(&sequenced_at) => Discrepancy::RowMoved { evidence_id, index, sequenced_at },
                None => Discrepancy::RowModified { evidence_id, index },
            });
        }
        Ok(())
    }
}

/// Rows the log does not hold: added after the fact when they sort before
/// the log's last row, not yet sequenced otherwise (a discrepancy only once
/// older than `max_lag`).
async fn unsequenced(
    client: &Client,
    sequenced: &HashSet<i64>,
    last: Option<RowKey>,
    settings: VerifySettings,
    report: &mut Report,
) -> Result<(), EvidenceError> {
    let rows = client.query_raw(sql::EVERY_ROW, std::iter::empty::<i64>()).await?;
    tokio::pin!(rows);
    while let Some(row) = rows.next().await {
        let row = row?;
        let evidence_id: i64 = row.try_get("id")?;
        if sequenced.contains(&evidence_id) {
            continue;
        }
        let key = RowKey {
            xact_id: row.try_get::<_, Option<&str>>("xact_id")?.and_then(|x| x.parse().ok()),
            id: evidence_id,
        };
        let age_seconds: f64 = row.try_get("age_seconds")?;
        if last.is_some_and(|last| key < last) {
            report.discrepancies.push(Discrepancy::AddedAfterTheFact {
                evidence_id,
                why: "it sorts before rows already in the log, but is not in it",
            });
        } else if age_seconds > settings.max_lag.as_secs_f64() {
            report.discrepancies.push(Discrepancy::NotSequenced { evidence_id, age_seconds });
        } else {
            report.pending += 1;
        }
    }
    Ok(())
}
