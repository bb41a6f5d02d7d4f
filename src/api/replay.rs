//! ReplayEvidence: [`crate::replay`] as a read-only gRPC call for tools that
//! cannot run the command line, streaming what the command prints.
//!
//! One replay runs at a time on a sidecar (a second is RESOURCE_EXHAUSTED),
//! on one pooled connection, at the default pace (the writes this sidecar
//! serves come first), within the call's deadline (`--request-timeout-ms` at
//! most: the command line has no such bound). The caller must be granted
//! `read` in the workspace, which the request must name.

use std::ops::ControlFlow;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::call::Call;
use super::convert::{storable_text, timestamp_micros};
use super::deadline::Deadline;
use super::{ApiError, GovernanceApi};
use crate::policies::PolicyBundle;
use crate::postgres::Lease;
use crate::proto::{self, replay_evidence_response::Event};
use crate::replay::report::Counts;
use crate::replay::run::{Judged, Pace, Pages, Progress, ReplayError};
use crate::replay::{Class, Judge, Selection, Tally, replay};

/// The stream a ReplayEvidence call answers with.
pub(super) type ReplayStream = ReceiverStream<Result<proto::ReplayEvidenceResponse, Status>>;

/// Stream messages waiting for the caller to read them.
const STREAM_BUFFER: usize = 64;

/// The largest `sample` a call may ask for: the draw holds every id it
/// keeps, and a replay over gRPC must end within its deadline anyway (the
/// command line has no such bound).
const MAX_SAMPLE: u64 = 100_000;

/// How long the last message (the summary, or why there is none) may wait
/// for a caller that has stopped reading: the replay's slot is freed before.
const LAST_MESSAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(super) async fn replay_evidence(
    api: &GovernanceApi,
    request: proto::ReplayEvidenceRequest,
    call: &Call,
) -> Result<ReplayStream, ApiError> {
    let store = api.store()?;
    if request.workspace_id.is_empty() {
        return Err(ApiError::BadAuditRequest("workspace_id is required".into()));
    }
    let workspace_id = storable_text(request.workspace_id, "workspace_id")?;
    call.may_in(&workspace_id)?;
    if request.sample > MAX_SAMPLE {
        return Err(ApiError::BadAuditRequest(format!("sample must be at most {MAX_SAMPLE} over gRPC")));
    }
    // The slot first: a second caller's candidate is not even parsed.
    let permit = Arc::clone(&api.replays).try_acquire_owned().map_err(|_| ApiError::ReplayRunning)?;
    let candidate = match request.candidate_bundle {
        // Off the runtime's threads: a large bundle takes a while to check.
        Some(bytes) => match tokio::task::spawn_blocking(move || PolicyBundle::parse(&bytes)).await {
            Ok(parsed) => Arc::new(parsed.map_err(|e| ApiError::BadCandidate(e.to_string()))?),
            Err(_) => return Err(ApiError::BadCandidate("the candidate could not be checked".into())),
        },
        None => api.decider.policies.as_ref().ok_or(ApiError::NoPolicyBundle)?.current(),
    };
    let scope = |text: String, field: &str| match text.is_empty() {
        true => Ok(None),
        false => storable_text(text, field).map(Some),
    };
    let selection = Selection {
        workspace_id: Some(workspace_id),
        since_micros: request.since.map(timestamp_micros),
        until_micros: request.until.map(timestamp_micros),
        object_type: scope(request.object_type, "object_type")?,
        operation: scope(request.operation, "operation")?,
        sample: (request.sample > 0).then_some(request.sample),
        seed: request.seed,
    };
    let lease = store.pool().get().await.map_err(crate::evidence::EvidenceError::from)?;
    let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
    let stream = Streamed { sender, include_unchanged: request.include_unchanged };
    tokio::spawn(stream.run(lease, selection, candidate, *call.deadline(), permit));
    Ok(ReceiverStream::new(receiver))
}

/// The replay's side of the stream.
struct Streamed {
    sender: mpsc::Sender<Result<proto::ReplayEvidenceResponse, Status>>,
    include_unchanged: bool,
}

impl Streamed {
    async fn run(
        mut self,
        lease: Lease,
        selection: Selection,
        candidate: Arc<PolicyBundle>,
        deadline: Deadline,
        one_at_a_time: OwnedSemaphorePermit,
    ) {
        let candidate_sha256 = candidate.sha256.clone();
        let replayed = deadline
            .bound(async {
                let pace = Pace::default();
                replay(lease.client(), &selection, pace, Judge::new(candidate), &mut self).await.map_err(ApiError::from)
            })
            .await;
        let last = match replayed {
            Ok(tally) => {
                drop(lease);
                Ok(message(Event::Summary(summary(&tally, candidate_sha256))))
            }
            Err(error) => {
                // The call's own log line was written when its stream began: this one says how it ended.
                tracing::warn!(error = %error.message(), "ReplayEvidence ended before its summary");
                // Cut short (its snapshot may still be open): the connection is not reused.
                lease.discard();
                Err(Status::from(error))
            }
        };
        // A caller that stopped reading must not keep the slot, nor this task.
        drop(one_at_a_time);
        if tokio::time::timeout(LAST_MESSAGE_WAIT, self.sender.send(last)).await.is_err() {
            tracing::warn!("ReplayEvidence's caller stopped reading: the stream ends without its last message");
        }
    }
}

impl Pages for Streamed {
    /// Sends a page's rows (those not unchanged, unless asked for) and the
    /// progress; stops the replay when the caller has gone.
    async fn take(&mut self, page: &[Judged], Progress { done, total }: Progress) -> ControlFlow<()> {
        let rows = page.iter().filter(|judged| {
            self.include_unchanged
                || judged.verdict.class != Class::Unchanged
                || judged.verdict.reproduced == Some(false)
        });
        for judged in rows {
            if self.sender.send(Ok(message(Event::Row(replayed_row(judged))))).await.is_err() {
                return ControlFlow::Break(());
            }
        }
        let progress = message(Event::Progress(proto::ReplayProgress { done, total: total.unwrap_or_default() }));
        match self.sender.send(Ok(progress)).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }
}

impl From<ReplayError> for ApiError {
    fn from(error: ReplayError) -> ApiError {
        match error {
            ReplayError::Database(error) => ApiError::Evidence(error),
            error => ApiError::ReplayFailed(error.to_string()),
        }
    }
}

fn message(event: Event) -> proto::ReplayEvidenceResponse {
    proto::ReplayEvidenceResponse { event: Some(event) }
}

fn replayed_row(judged: &Judged) -> proto::ReplayedRow {
    let (row, verdict) = (&judged.row, &judged.verdict);
    let new = verdict.new.as_ref();
    let micros = row.created_at_micros;
    proto::ReplayedRow {
        evidence_id: row.id,
        created_at: Some(prost_types::Timestamp {
            seconds: micros.div_euclid(1_000_000),
            nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
        }),
        object_type: row.object_type.clone(),
        operation: row.operation.clone(),
        verdict: verdict.class.as_str().to_owned(),
        recorded_decision: row.decision.as_str().to_owned(),
        recorded_reason_codes: row.reason_codes.clone(),
        new_decision: new.map(|n| n.decision.as_str().to_owned()).unwrap_or_default(),
        new_mode: new.map_or(proto::Mode::Unspecified, |n| proto::Mode::from(n.mode)).into(),
        new_reason_codes: new.map(|n| n.reason_codes.iter().map(|c| c.to_string()).collect()).unwrap_or_default(),
        decided_by: new.map(|n| n.decided_by.clone()).unwrap_or_default(),
        detail: verdict.detail.clone().unwrap_or_default(),
        reproduced: verdict.reproduced,
        new_trace_hash: new.map(|n| n.trace_hash.clone()).unwrap_or_default(),
    }
}

fn summary(tally: &Tally, candidate_sha256: String) -> proto::ReplaySummary {
    let scopes = tally
        .scopes()
        .map(|((object_type, operation), counts)| replay_counts(object_type, operation, counts))
        .collect();
    proto::ReplaySummary { candidate_sha256, total: Some(replay_counts("", "", &tally.total)), scopes }
}

fn replay_counts(object_type: &str, operation: &str, counts: &Counts) -> proto::ReplayCounts {
    proto::ReplayCounts {
        object_type: object_type.to_owned(),
        operation: operation.to_owned(),
        rows: counts.rows,
        unchanged: counts.of(Class::Unchanged),
        approved_to_denied: counts.of(Class::ApprovedToDenied),
        denied_to_approved: counts.of(Class::DeniedToApproved),
        undecidable: counts.of(Class::Undecidable),
        caller_policy: counts.of(Class::CallerPolicy),
        not_enforced: counts.of(Class::NotEnforced),
        unrecorded: counts.of(Class::Unrecorded),
        ungoverned: counts.of(Class::Ungoverned),
        unanswerable: counts.of(Class::Unanswerable),
        reasons_changed: counts.reasons_changed,
        same_bundle: counts.same_bundle,
        reproduced: counts.reproduced,
    }
}
