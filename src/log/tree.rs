//! The Merkle tree over the log, kept as Go's sumdb/tlog keeps it: every
//! stored hash (leaves and complete subtrees) at its `stored_hash_index`.
//! Each batch of `governance_log_batches` holds the contiguous run of stored
//! hashes it added. Roots and proofs need O(log n) of them.
//!
//! The tlog functions read hashes through a synchronous [`HashReader`], once
//! per call, and which indexes they ask for does not depend on the hashes'
//! values. So each computation runs twice: once to learn the indexes, then,
//! after one query fetched them, for real.

use std::cell::RefCell;
use std::collections::HashMap;

use tlog_tiles::{Hash, HashReader, RecordProof, TreeProof};
use tokio_postgres::GenericClient;

use crate::evidence::EvidenceError;

/// A tlog hash reader: either recording what is asked, or answering from hashes in hand.
pub enum Hashes<'a> {
    Wanted(RefCell<Vec<u64>>),
    Known(&'a HashMap<u64, Hash>),
}

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match self {
            Hashes::Wanted(wanted) => {
                wanted.borrow_mut().extend_from_slice(indexes);
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
            Hashes::Known(known) => indexes
                .iter()
                .map(|index| known.get(index).copied().ok_or(tlog_tiles::Error::IndexesNotInTree))
                .collect(),
        }
    }
}

/// Runs a tlog computation over the stored hashes it needs.
async fn with_stored<T>(
    client: &impl GenericClient,
    compute: impl Fn(&Hashes<'_>) -> Result<T, tlog_tiles::Error>,
) -> Result<T, EvidenceError> {
    let wanted = Hashes::Wanted(RefCell::default());
    let indexes = match compute(&wanted) {
        Ok(answer) => return Ok(answer),
        Err(tlog_tiles::Error::IndexesNotInTree) => match wanted {
            Hashes::Wanted(indexes) => indexes.into_inner(),
            Hashes::Known(_) => unreachable!(),
        },
        Err(other) => return Err(EvidenceError::BadLogRange(other.to_string())),
    };
    let known = load(client, &indexes).await?;
    compute(&Hashes::Known(&known)).map_err(|e| EvidenceError::Log(format!("the stored tree is incomplete: {e}")))
}

/// The stored hashes at `indexes`: each is cut from the batch whose run of
/// hashes holds it (a chunk read, since the column is stored uncompressed).
pub async fn load(client: &impl GenericClient, indexes: &[u64]) -> Result<HashMap<u64, Hash>, EvidenceError> {
    let wanted: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
    let rows = client.query(super::sql::STORED_HASHES, &[&wanted]).await?;
    rows.iter()
        .filter(|row| row.try_get::<_, &[u8]>("hash").is_ok_and(|h| h.len() == 32))
        .map(|row| {
            let index: i64 = row.try_get("stored_index")?;
            let hash: &[u8] = row.try_get("hash")?;
            Ok((index as u64, to_hash(hash)?))
        })
        .collect()
}

/// A 32-byte hash read from the database.
pub fn to_hash(bytes: &[u8]) -> Result<Hash, EvidenceError> {
    Ok(Hash(bytes.try_into().map_err(|_| EvidenceError::Log(format!("a stored hash has {} bytes", bytes.len())))?))
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962's inclusion proof).
pub async fn inclusion_proof(client: &impl GenericClient, size: u64, index: u64) -> Result<RecordProof, EvidenceError> {
    with_stored(client, |hashes| tlog_tiles::prove_record(size, index, hashes)).await
}

/// The proof that the tree of `first` leaves is a prefix of the tree of `second` (RFC 6962's consistency proof).
pub async fn consistency_proof(
    client: &impl GenericClient,
    first: u64,
    second: u64,
) -> Result<TreeProof, EvidenceError> {
    with_stored(client, |hashes| tlog_tiles::prove_tree(second, first, hashes)).await
}

/// The right edge of a tree: the hashes of the complete subtrees its leaves
/// decompose into. They are all that appending leaves, and the new root, need.
#[derive(Debug, Default)]
pub struct Frontier {
    size: u64,
    hashes: HashMap<u64, Hash>,
}

impl Frontier {
    /// The frontier of the stored tree of `size` leaves.
    pub async fn load(client: &impl GenericClient, size: u64) -> Result<Frontier, EvidenceError> {
        let wanted = tlog_tiles::sub_tree_index(0, size, vec![]);
        let hashes = load(client, &wanted).await?;
        if let Some(missing) = wanted.iter().find(|index| !hashes.contains_key(index)) {
            return Err(EvidenceError::Log(format!(
                "the stored tree of size {size} lacks its hash at stored index {missing}: run `governance-sidecar verify`"
            )));
        }
        Ok(Frontier { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends leaves; returns the hashes to store, from `stored_hash_index(0, old size)` on.
    pub fn append(&mut self, leaves: &[Hash]) -> Vec<Hash> {
        let mut stored = Vec::with_capacity(leaves.len() * 2);
        for leaf in leaves {
            let next = tlog_tiles::stored_hashes_for_record_hash(self.size, *leaf, &Hashes::Known(&self.hashes))
                .expect("the frontier holds every hash an append needs");
            let first = tlog_tiles::stored_hash_index(0, self.size);
            self.hashes.extend((first..).zip(next.iter().copied()));
            stored.extend(next);
            self.size += 1;
        }
        let keep = tlog_tiles::sub_tree_index(0, self.size, vec![]);
        self.hashes.retain(|index, _| keep.contains(index));
        stored
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        tlog_tiles::tree_hash(self.size, &Hashes::Known(&self.hashes)).expect("the frontier holds the root's subtrees")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962's MTH, computed directly from the leaves.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH,
            1 => leaves[0],
            n => {
                // The largest power of two below n.
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                tlog_tiles::node_hash(reference_root(&leaves[..k]), reference_root(&leaves[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| tlog_tiles::record_hash(format!("leaf {i}").as_bytes())).collect()
    }

    #[test]
    fn appending_in_batches_gives_rfc_6962_roots() {
        let all = leaves(37);
        let mut frontier = Frontier::default();
        let mut stored = HashMap::new();
        for batch in all.chunks(5) {
            let first = tlog_tiles::stored_hash_index(0, frontier.size());
            stored.extend((first..).zip(frontier.append(batch)));
            let size = frontier.size() as usize;
            assert_eq!(frontier.root(), reference_root(&all[..size]), "root at size {size}");
            assert_eq!(tlog_tiles::tree_hash(size as u64, &Hashes::Known(&stored)).unwrap(), frontier.root());
        }
    }

    #[test]
    fn proofs_from_the_stored_hashes_check() {
        let all = leaves(21);
        let mut frontier = Frontier::default();
        let stored: HashMap<u64, Hash> = (0..).zip(frontier.append(&all)).collect();
        let known = Hashes::Known(&stored);
        let root = frontier.root();
        for (index, leaf) in all.iter().enumerate() {
            let proof = tlog_tiles::prove_record(21, index as u64, &known).unwrap();
            tlog_tiles::check_record(&proof, 21, root, index as u64, *leaf).unwrap();
        }
        let old_root = reference_root(&all[..13]);
        let proof = tlog_tiles::prove_tree(21, 13, &known).unwrap();
        tlog_tiles::check_tree(&proof, 21, root, 13, old_root).unwrap();
    }
}
