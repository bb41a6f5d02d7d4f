//! The verifiable log: every evidence row is a leaf of an RFC 6962 Merkle
//! tree, and signed checkpoints commit to the tree, so that an auditor can
//! check the evidence without trusting whoever runs the database.
//!
//! | question | file |
//! | --- | --- |
//! | Which bytes does a leaf commit to? | `entry.rs` (the response's jsonb text: `crate::evidence::jsonb`) |
//! | How are rows given log positions, by whom, and when? | `sequencer.rs` |
//! | How is the tree stored, and proofs made from it? | `tree.rs` |
//! | How are checkpoints signed and checked? | `checkpoint.rs` |
//! | What did retention remove, and how is that checked? | `retention.rs` |
//! | How is everything checked offline? | `verify.rs` |
//! | Which tables hold it? | `migrations/0006_verifiable_log.sql`, `0009_retention_records_what_it_removed.sql` |

pub mod checkpoint;
pub mod entry;
pub mod retention;
pub mod sequencer;
mod sql;
mod tree;
pub mod verify;

use tlog_tiles::Hash;
use tokio_postgres::GenericClient;

use crate::evidence::idempotency::KEY_HOLDER;
use crate::evidence::{EvidenceError, EvidenceStore};
use crate::postgres::Pool;

/// A checkpoint as stored.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    pub root_hash: Hash,
    pub signed_note: String,
    pub created_at: std::time::SystemTime,
}

/// Which row to prove.
#[derive(Debug, Clone)]
pub enum LeafKey {
    EvidenceId(i64),
    Idempotency { workspace_id: String, idempotency_key: String },
}

/// A row's inclusion in the tree of a checkpoint.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub evidence_id: i64,
    pub leaf_index: u64,
    pub leaf_hash: Hash,
    pub entry: Vec<u8>,
    pub audit_path: Vec<Hash>,
    pub checkpoint: StoredCheckpoint,
}

/// Whether the log has been started (it has a checkpoint).
pub async fn in_use(client: &impl GenericClient) -> Result<bool, EvidenceError> {
    Ok(client.query_one(sql::IN_USE, &[]).await?.try_get("in_use")?)
}

/// The log's answers to auditors (checkpoints and proofs), from the evidence store's pool.
#[derive(Clone)]
pub struct LogReader {
    pool: Pool,
}

impl LogReader {
    pub fn new(store: &EvidenceStore) -> LogReader {
        LogReader { pool: store.pool().clone() }
    }

    /// The latest checkpoint, or the one of a given size.
    pub async fn checkpoint(&self, size: Option<u64>) -> Result<StoredCheckpoint, EvidenceError> {
        let client = self.pool.get().await?;
        client.guard(checkpoint(client.client(), size)).await
    }

    /// The audit path of a row in the tree of the latest checkpoint (or of
    /// the one of `size`). A row of a workspace not `readable` is answered
    /// as a row that does not exist.
    pub async fn inclusion_proof(
        &self,
        key: &LeafKey,
        size: Option<u64>,
        readable: impl Fn(&str) -> bool + Send,
    ) -> Result<InclusionProof, EvidenceError> {
        let lease = self.pool.get().await?;
        lease.guard(Self::prove_inclusion(lease.client(), key, size, readable)).await
    }

    async fn prove_inclusion(
        client: &tokio_postgres::Client,
        key: &LeafKey,
        size: Option<u64>,
        readable: impl Fn(&str) -> bool + Send,
    ) -> Result<InclusionProof, EvidenceError> {
        let (evidence_id, leaf_index) = leaf(client, key, readable).await?;
        let checkpoint = checkpoint(client, size).await?;
        if leaf_index >= checkpoint.tree_size {
            return Err(EvidenceError::NotInLog(format!(
                "evidence {evidence_id} is at log index {leaf_index}, beyond the checkpoint of size {}; \
                 ask again after the next checkpoint",
                checkpoint.tree_size
            )));
        }
        let audit_path = tree::inclusion_proof(client, checkpoint.tree_size, leaf_index).await?;
        let leaf_hash = *tree::load(client, &[tlog_tiles::stored_hash_index(0, leaf_index)])
            .await?
            .values()
            .next()
            .ok_or_else(|| EvidenceError::Log(format!("the leaf hash at log index {leaf_index} is missing")))?;
        let row = client.query_one(sql::ENTRY_BY_ID.as_str(), &[&evidence_id]).await?;
        let entry = entry::from_row(&row)?;
        Ok(InclusionProof { evidence_id, leaf_index, leaf_hash, entry, audit_path, checkpoint })
    }

    /// The proof that the tree of `first` leaves is a prefix of the tree of `second` leaves.
    pub async fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, EvidenceError> {
        if first > second {
            return Err(EvidenceError::BadLogRange(format!("first_size {first} is larger than second_size {second}")));
        }
        let lease = self.pool.get().await?;
        lease.guard(Self::prove_consistency(lease.client(), first, second)).await
    }

    async fn prove_consistency(
        client: &tokio_postgres::Client,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, EvidenceError> {
        let latest = checkpoint(client, None).await?.tree_size;
        if second > latest {
            return Err(EvidenceError::NotInLog(format!(
                "second_size {second} is beyond the latest checkpoint (size {latest})"
            )));
        }
        if first == 0 || first == second {
            return Ok(Vec::new());
        }
        tree::consistency_proof(client, first, second).await
    }
}

async fn checkpoint(client: &impl GenericClient, size: Option<u64>) -> Result<StoredCheckpoint, EvidenceError> {
    let row = match size {
        None => client.query_opt(sql::LATEST_CHECKPOINT, &[]).await?,
        Some(size) => client.query_opt(sql::CHECKPOINT_OF_SIZE, &[&(size as i64)]).await?,
    };
    let row = row.ok_or_else(|| {
        EvidenceError::NotInLog(match size {
            None => "no checkpoint yet: is a sidecar with --log-signing-key-file running?".to_owned(),
            Some(size) => format!("no checkpoint of size {size}"),
        })
    })?;
    Ok(StoredCheckpoint {
        tree_size: row.try_get::<_, i64>("tree_size")? as u64,
        root_hash: tree::to_hash(row.try_get("root_hash")?)?,
        signed_note: row.try_get("signed_note")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The evidence id and log index of the row a key names: its position in the
/// batch whose key range holds it (the first batch whose last key is at or
/// after the row's).
async fn leaf(
    client: &impl GenericClient,
    key: &LeafKey,
    readable: impl Fn(&str) -> bool,
) -> Result<(i64, u64), EvidenceError> {
    let row = match key {
        LeafKey::EvidenceId(id) => {
            client.query_opt(&format!("{} WHERE e.id = $1", sql::ROW_AND_POSITION), &[id]).await?
        }
        LeafKey::Idempotency { workspace_id, idempotency_key } => {
            let sql = format!("{} {KEY_HOLDER}", sql::ROW_AND_POSITION);
            client.query_opt(&sql, &[workspace_id, idempotency_key]).await?
        }
    };
    let row = match row {
        Some(row) if readable(row.try_get("workspace_id")?) => row,
        _ => return Err(EvidenceError::NotInLog("no evidence row has that key".to_owned())),
    };
    let evidence_id: i64 = row.try_get("evidence_id")?;
    match row.try_get::<_, Option<i64>>("log_index")? {
        Some(index) => Ok((evidence_id, index as u64)),
        None => Err(EvidenceError::NotInLog(format!(
            "evidence {evidence_id} is not sequenced yet; ask again after the next checkpoint"
        ))),
    }
}
