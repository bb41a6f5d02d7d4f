//! The audit API: reading evidence back, one record by a key
//! (`GetEvidence`) or a workspace's records a page at a time, newest first
//! (`ListEvidence`).

use super::call::Call;
use super::convert::{self, storable_text};
use super::{ApiError, GovernanceApi};
use crate::defaults::MAX_RESPONSE_BYTES;
use crate::evidence::audit::{
    DEFAULT_PAGE_SIZE, EvidenceFilter, EvidenceKey, MAX_PAGE_SIZE, PageToken, StoredEvidence,
};
use crate::proto;
use crate::vocabulary::RecordedDecision;

/// Evidence of a workspace the caller may not read is answered as missing,
/// whichever key found it, so that ids and keys cannot be probed.
pub(super) async fn get_evidence(
    api: &GovernanceApi,
    request: proto::GetEvidenceRequest,
    call: &Call,
) -> Result<proto::EvidenceRecord, ApiError> {
    let store = api.store()?;
    let key = evidence_key(request)?;
    if let EvidenceKey::Idempotency { workspace_id, .. } = &key
        && !call.can_read(workspace_id)
    {
        return Err(ApiError::EvidenceNotFound);
    }
    let stored = store.get_evidence(&key).await?;
    let readable = stored.filter(|stored| call.can_read(&stored.workspace_id));
    Ok(evidence_record(readable.ok_or(ApiError::EvidenceNotFound)?))
}

pub(super) async fn list_evidence(
    api: &GovernanceApi,
    request: proto::ListEvidenceRequest,
    call: &Call,
) -> Result<proto::ListEvidenceResponse, ApiError> {
    let store = api.store()?;
    let (filter, after, page_size) = evidence_listing(request)?;
    call.may_in(&filter.workspace_id)?;
    let (records, mut next) = store.list_evidence(&filter, after, page_size).await?;
    // A page ends early rather than grow past the largest answer written.
    let (mut page, mut bytes, mut last) = (Vec::with_capacity(records.len()), 0, None);
    for record in records {
        let position = PageToken::after(&record);
        let record = evidence_record(record);
        bytes += prost::Message::encoded_len(&record) + RECORD_FRAMING_BYTES;
        if bytes > MAX_RESPONSE_BYTES {
            if page.is_empty() {
                return Err(ApiError::BadAuditRequest(format!(
                    "evidence {} is larger than the {MAX_RESPONSE_BYTES}-byte limit of an answer",
                    record.evidence_id
                )));
            }
            next = last;
            break;
        }
        last = Some(position);
        page.push(record);
    }
    Ok(proto::ListEvidenceResponse {
        records: page,
        next_page_token: next.map(|token| token.encode()).unwrap_or_default(),
    })
}

/// A record's tag and length within the page, at most.
const RECORD_FRAMING_BYTES: usize = 16;

/// The row to read, from a GetEvidence request.
fn evidence_key(request: proto::GetEvidenceRequest) -> Result<EvidenceKey, ApiError> {
    use proto::get_evidence_request::Key;
    let required = |value: String, name: &str| {
        if value.is_empty() {
            Err(ApiError::BadAuditRequest(format!("{name} is empty")))
        } else {
            storable_text(value, name)
        }
    };
    Ok(
        match request.key.ok_or_else(|| {
            ApiError::BadAuditRequest("set one key: evidence_id, ctx_id, trace_hash or idempotency".into())
        })? {
            Key::EvidenceId(id) => EvidenceKey::Id(id),
            Key::CtxId(ctx_id) => EvidenceKey::CtxId(required(ctx_id, "ctx_id")?),
            Key::TraceHash(hash) => EvidenceKey::TraceHash(required(hash, "trace_hash")?),
            Key::Idempotency(reference) => EvidenceKey::Idempotency {
                workspace_id: required(reference.workspace_id, "idempotency.workspace_id")?,
                idempotency_key: required(reference.idempotency_key, "idempotency.idempotency_key")?,
            },
        },
    )
}

/// A ListEvidence request's filters, page position and size.
fn evidence_listing(
    request: proto::ListEvidenceRequest,
) -> Result<(EvidenceFilter, Option<PageToken>, usize), ApiError> {
    if request.workspace_id.is_empty() {
        return Err(ApiError::BadAuditRequest("workspace_id is required".into()));
    }
    let decision =
        match request.decision.as_str() {
            "" => None,
            word => Some(word.parse::<RecordedDecision>().map_err(|_| {
                ApiError::BadAuditRequest(format!("decision {word:?} is not approved, denied or skipped"))
            })?),
        };
    let non_empty = |s: String, name: &str| match s.is_empty() {
        true => Ok(None),
        false => storable_text(s, name).map(Some),
    };
    let after = match request.page_token.as_str() {
        "" => None,
        token => Some(
            PageToken::decode(token)
                .ok_or_else(|| ApiError::BadAuditRequest("page_token is not one we issued".into()))?,
        ),
    };
    let page_size = match request.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n => (n as usize).min(MAX_PAGE_SIZE),
    };
    let filter = EvidenceFilter {
        workspace_id: storable_text(request.workspace_id, "workspace_id")?,
        since_micros: request.since.map(convert::timestamp_micros),
        until_micros: request.until.map(convert::timestamp_micros),
        decision,
        object_type: non_empty(request.object_type, "object_type")?,
        operation: non_empty(request.operation, "operation")?,
    };
    Ok((filter, after, page_size))
}

fn evidence_record(stored: StoredEvidence) -> proto::EvidenceRecord {
    proto::EvidenceRecord {
        evidence_id: stored.id,
        created_at: Some(prost_types::Timestamp {
            seconds: stored.created_at_micros.div_euclid(1_000_000),
            nanos: (stored.created_at_micros.rem_euclid(1_000_000) * 1_000) as i32,
        }),
        workspace_id: stored.workspace_id,
        principal_id: stored.principal_id,
        object_type: stored.object_type,
        operation: stored.operation,
        decision: stored.decision.as_str().to_owned(),
        reason_codes: stored.reason_codes,
        ctx_id: stored.ctx_id,
        trace_hash: stored.trace_hash,
        idempotency_key: stored.idempotency_key,
        outcome: stored.outcome.as_str().to_owned(),
        mutation_name: stored.mutation_name,
        mode: proto::Mode::from(stored.mode).into(),
        error_sqlstate: stored.error_sqlstate,
        redacted_paths: stored.redacted_paths,
        policy_bundle_sha256: stored.policy_bundle_sha256,
        policy_key: stored.policy_key,
        policy_version: stored.policy_version,
        response_json: stored.response_json,
        mutation_result: stored.mutation_result.as_ref().map(convert::mutation_result),
        caller: stored.caller,
        request_json: stored.request_json,
        request_redacted_paths: stored.request_redacted_paths,
    }
}
