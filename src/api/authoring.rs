//! Kernite's authoring routes over HTTP: the document goes to
//! [`crate::authoring`] on a blocking thread (a large document takes a
//! while to resolve, and the decision calls sharing these workers should
//! not wait for it), and its answer comes back with Kernite's status. The
//! answer's `ctx_id` is the call's, in its log line and `x-ctx-id` header.

use axum::http::StatusCode;
use tokio::sync::Semaphore;

use super::call::Call;
use super::error::ApiError;
use super::http::Answered;
use crate::authoring::{check, generate};
use crate::ctx_id;
use crate::decision::Value;
use crate::decision::json::{self, Layout};

/// `POST /policy/generate`.
pub(super) async fn generate(body: Value, call: &Call) -> Result<Answered, ApiError> {
    let ctx_id = answer_id(call);
    off_the_workers(move || generate::respond(&body, ctx_id)).await
}

/// `POST /policy/check`.
pub(super) async fn check(body: Value, call: &Call) -> Result<Answered, ApiError> {
    let ctx_id = answer_id(call);
    off_the_workers(move || check::respond(&body, ctx_id)).await
}

/// A fresh `ctx_id`, as Kernite gives each authoring answer, noted on the call.
fn answer_id(call: &Call) -> String {
    let ctx_id = ctx_id::random();
    call.record_ctx_id(&ctx_id);
    ctx_id
}

/// Authoring calls run one at a time, the others waiting within their
/// deadline: a document may take its whole `$ref` budget of memory and
/// seconds of CPU, and a call whose deadline passes leaves its blocking work
/// running to its end, so such work must never pile up.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

async fn off_the_workers(respond: impl FnOnce() -> (u16, Value) + Send + 'static) -> Result<Answered, ApiError> {
    let permit = ONE_AT_A_TIME.acquire().await.map_err(|_| ApiError::AuthoringPanicked)?;
    let (status, body) = tokio::task::spawn_blocking(move || {
        // Held until the work ends, whether or not the caller still waits.
        let _permit = permit;
        let (status, body) = respond();
        (status, json::to_string(&body, Layout::Response))
    })
    .await
    .map_err(|_| ApiError::AuthoringPanicked)?;
    let status = StatusCode::from_u16(status).expect("Kernite's statuses are valid");
    Ok(Answered { status, body, headers: Vec::new() })
}
