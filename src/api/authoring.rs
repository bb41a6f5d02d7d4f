//! Kernite's authoring routes over HTTP: the document goes to
//! [`crate::authoring`] on a blocking thread (a large document takes a
//! while to resolve, and the decision calls sharing these workers should
//! not wait for it), and its answer comes back with Kernite's status.

use axum::http::StatusCode;

use super::error::ApiError;
use super::http::Answered;
use crate::authoring::{check, generate};
use crate::ctx_id;
use crate::decision::Value;
use crate::decision::json::{self, Layout};

/// `POST /policy/generate`.
pub(super) async fn generate(body: Value) -> Result<Answered, ApiError> {
    off_the_workers(move || generate::respond(&body, ctx_id::random())).await
}

/// `POST /policy/check`.
pub(super) async fn check(body: Value) -> Result<Answered, ApiError> {
    off_the_workers(move || check::respond(&body, ctx_id::random())).await
}

async fn off_the_workers(respond: impl FnOnce() -> (u16, Value) + Send + 'static) -> Result<Answered, ApiError> {
    let (status, body) = tokio::task::spawn_blocking(move || {
        let (status, body) = respond();
        (status, json::to_string(&body, Layout::Response))
    })
    .await
    .map_err(|_| ApiError::AuthoringPanicked)?;
    let status = StatusCode::from_u16(status).expect("Kernite's statuses are valid");
    Ok(Answered { status, body })
}
