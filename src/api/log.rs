//! The verifiable log's reads: a checkpoint (`GetCheckpoint`), a row's
//! inclusion proof (`GetInclusionProof`) and a consistency proof between two
//! tree sizes (`GetConsistencyProof`).

use super::call::Call;
use super::convert::storable_text;
use super::{ApiError, GovernanceApi};
use crate::log::{InclusionProof, LeafKey, StoredCheckpoint};
use crate::proto;

pub(super) async fn get_checkpoint(
    api: &GovernanceApi,
    request: proto::GetCheckpointRequest,
) -> Result<proto::Checkpoint, ApiError> {
    let checkpoint = api.log()?.checkpoint(request.tree_size).await?;
    Ok(checkpoint_message(checkpoint))
}

pub(super) async fn get_inclusion_proof(
    api: &GovernanceApi,
    request: proto::GetInclusionProofRequest,
    call: &Call,
) -> Result<proto::InclusionProof, ApiError> {
    use proto::get_inclusion_proof_request::Key;
    let log = api.log()?;
    let key = match request.key {
        Some(Key::EvidenceId(id)) => LeafKey::EvidenceId(id),
        Some(Key::Idempotency(reference))
            if !reference.workspace_id.is_empty() && !reference.idempotency_key.is_empty() =>
        {
            LeafKey::Idempotency {
                workspace_id: storable_text(reference.workspace_id, "idempotency.workspace_id")?,
                idempotency_key: storable_text(reference.idempotency_key, "idempotency.idempotency_key")?,
            }
        }
        Some(Key::Idempotency(_)) => {
            return Err(ApiError::BadAuditRequest("idempotency needs workspace_id and idempotency_key".into()));
        }
        None => return Err(ApiError::BadAuditRequest("set one key: evidence_id or idempotency".into())),
    };
    // Another workspace's row is answered as no row: its entry names its workspace and principal.
    let proof = log.inclusion_proof(&key, request.tree_size, |workspace| call.can_read(workspace)).await?;
    Ok(inclusion_message(proof))
}

pub(super) async fn get_consistency_proof(
    api: &GovernanceApi,
    request: proto::GetConsistencyProofRequest,
) -> Result<proto::ConsistencyProof, ApiError> {
    let (first_size, second_size) = (request.first_size, request.second_size);
    let proof = api.log()?.consistency_proof(first_size, second_size).await?;
    Ok(proto::ConsistencyProof { first_size, second_size, proof: proof.iter().map(|h| h.0.to_vec()).collect() })
}

fn checkpoint_message(checkpoint: StoredCheckpoint) -> proto::Checkpoint {
    proto::Checkpoint {
        signed_note: checkpoint.signed_note,
        tree_size: checkpoint.tree_size,
        root_hash: checkpoint.root_hash.0.to_vec(),
        created_at: Some(checkpoint.created_at.into()),
    }
}

fn inclusion_message(proof: InclusionProof) -> proto::InclusionProof {
    proto::InclusionProof {
        evidence_id: proof.evidence_id,
        leaf_index: proof.leaf_index,
        leaf_hash: proof.leaf_hash.0.to_vec(),
        entry: proof.entry,
        audit_path: proof.audit_path.iter().map(|h| h.0.to_vec()).collect(),
        checkpoint: Some(checkpoint_message(proof.checkpoint)),
    }
}
