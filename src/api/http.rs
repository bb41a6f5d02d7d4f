//! The HTTP/JSON face of the service, on the gRPC port: what `kernite serve`
//! answers, route for route, so existing Kernite HTTP clients move over
//! unchanged, plus a JSON route for ExecuteWithEvidence.
//!
//! | route | answers |
//! | --- | --- |
//! | `POST /execute`, `/v1/execute` | Kernite's decision (200) or its validation errors (400) |
//! | `POST /validate/execute`, `/v1/validate/execute` | Kernite's validation body (200, `valid` true or false) |
//! | `GET /health` | `{"status": "ok"}` |
//! | `POST /v1/execute-with-evidence` | `{"request": …, "mutation": {"name", "params"}}` → the governed write |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |
//!
//! As in Kernite: the key comes from the `Idempotency-Key` header, an empty
//! body means `{}`, unparsable JSON is `400 {"message": "Invalid JSON payload"}`,
//! and anything else is `404 {"message": "Not found"}`. Bodies are written the
//! way Python's `json.dumps(body, ensure_ascii=False)` writes them.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::deadline::Deadline;
use super::error::{ApiError, http_error};
use super::telemetry::{CTX_ID_HEADER, RpcSpan};
use super::{GovernanceApi, WriteCall};
use crate::ctx_id;
use crate::decision::json::{self, Layout};
use crate::decision::record::object;
use crate::decision::{self, Map, Value};
use crate::metrics::metrics;

/// The routes, sharing `api` (and its concurrency limit) with gRPC.
pub fn router(api: GovernanceApi, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/execute", post(execute))
        .route("/v1/execute", post(execute))
        .route("/validate/execute", post(validate))
        .route("/v1/validate/execute", post(validate))
        .route("/v1/execute-with-evidence", post(execute_with_evidence))
        .route("/metrics", get(prometheus))
        .method_not_allowed_fallback(not_found)
        .with_state(HttpState { api, max_body_bytes })
}

#[derive(Clone)]
struct HttpState {
    api: GovernanceApi,
    max_body_bytes: usize,
}

/// Kernite's answer to any route it does not serve. gRPC calls to unknown
/// methods still get gRPC's UNIMPLEMENTED.
pub async fn not_found(request: Request) -> Response {
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        return tonic::Status::unimplemented("no such method").into_http::<Body>();
    }
    json_response(StatusCode::NOT_FOUND, &message("Not found"))
}

async fn prometheus(State(state): State<HttpState>) -> Response {
    if let Some(store) = state.api.evidence() {
        let (connections, idle, waiters) = store.pool_status();
        metrics().pool(connections, idle, waiters);
    }
    let mut response = metrics().render().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}

async fn health() -> Response {
    json_response(StatusCode::OK, &object([("status", Value::str("ok"))]))
}

async fn execute(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(_permit) = state.api.permit().await else { return unavailable() };
    let rpc = RpcSpan::start("POST /v1/execute", traceparent(&headers));
    let result = async {
        let body = read_json(body, state.max_body_bytes).await?;
        state.api.decide_body(body, idempotency_key(&headers).as_deref(), &rpc)
    }
    .await;
    respond(rpc, result.map(|record| (StatusCode::OK, record.response_json())))
}

async fn validate(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(_permit) = state.api.permit().await else { return unavailable() };
    let rpc = RpcSpan::start("POST /v1/validate/execute", traceparent(&headers));
    let result = async {
        let body = read_json(body, state.max_body_bytes).await?;
        let ctx_id = ctx_id::random();
        rpc.record_ctx_id(&ctx_id);
        let answer = match decision::validate(body, idempotency_key(&headers).as_deref())? {
            Ok(validation) => decision::valid_body(&validation, &ctx_id),
            Err(invalid) => invalid.to_value(&ctx_id),
        };
        Ok((StatusCode::OK, json::to_string(&answer, Layout::Response)))
    }
    .await;
    respond(rpc, result)
}

async fn execute_with_evidence(State(state): State<HttpState>, headers: HeaderMap, body: Body) -> Response {
    let Ok(_permit) = state.api.permit().await else { return unavailable() };
    let rpc = RpcSpan::start("POST /v1/execute-with-evidence", traceparent(&headers));
    let result = async {
        let call = write_call(read_json(body, state.max_body_bytes).await?, idempotency_key(&headers))?;
        let governed = state.api.govern(call, &Deadline::none(), &rpc).await?;
        let execution = &governed.execution;
        let result = execution.result.as_ref().map_or(Value::Null, |result| {
            object([
                ("rows_affected", Value::Int(result.rows_affected as i64)),
                ("returning", Value::Array(result.returning.iter().cloned().map(Value::Object).collect())),
            ])
        });
        let answer = object([
            ("decision", governed.record.as_ref().map_or(Value::Null, |record| record.to_value())),
            ("evidence_id", Value::Int(execution.evidence_id)),
            ("mutation_applied", Value::Bool(execution.mutation_applied)),
            ("mutation_result", result),
            ("replayed", Value::Bool(execution.replayed)),
            ("mode", Value::str(governed.mode.as_str())),
        ]);
        Ok((StatusCode::OK, json::to_string(&answer, Layout::Response)))
    }
    .await;
    respond(rpc, result)
}

/// `{"request": {Kernite's body}, "mutation": {"name": …, "params": {…}}}`.
fn write_call(body: Value, idempotency_key: Option<String>) -> Result<WriteCall, ApiError> {
    let Value::Object(mut body) = body else { return Err(ApiError::BadStruct("the body must be an object".into())) };
    let request = body.shift_remove("request").ok_or(ApiError::MissingBody)?;
    let Some(Value::Object(mut mutation)) = body.shift_remove("mutation") else {
        return Err(ApiError::MissingMutation);
    };
    let Some(Value::Str(name)) = mutation.shift_remove("name") else { return Err(ApiError::MissingMutation) };
    let caller_params = match mutation.shift_remove("params") {
        None | Some(Value::Null) => Map::default(),
        Some(Value::Object(params)) => params,
        Some(_) => return Err(ApiError::BadStruct("mutation.params must be an object".into())),
    };
    Ok(WriteCall { body: request, idempotency_key, mutation: name.into_string(), caller_params })
}

/// The body as JSON, as Kernite reads it: empty is `{}`.
async fn read_json(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::BodyTooLarge(limit))?;
    if bytes.is_empty() {
        return Ok(Value::Object(Map::default()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::NotJson)?;
    json::parse(text).map_err(|_| ApiError::NotJson)
}

/// The `Idempotency-Key` header as Python's http.server reads it (Latin-1).
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers.get("idempotency-key").map(|value| value.as_bytes().iter().map(|&b| char::from(b)).collect())
}

fn respond(rpc: RpcSpan, result: Result<(StatusCode, String), ApiError>) -> Response {
    if let Err(ApiError::Invalid { ctx_id, .. }) = &result {
        rpc.record_ctx_id(ctx_id);
    }
    let ctx_id = rpc.ctx_id().and_then(|c| HeaderValue::from_str(c).ok());
    let (status, body) = match result {
        Ok(answer) => answer,
        Err(error) => {
            let (status, body) = http_error(error);
            (status, json::to_string(&body, Layout::Response))
        }
    };
    rpc.finish_http(status);
    let mut response = json_text_response(status, body);
    if let Some(ctx_id) = ctx_id {
        response.headers_mut().insert(CTX_ID_HEADER, ctx_id);
    }
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    json_text_response(status, json::to_string(body, Layout::Response))
}

fn json_text_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

/// The caller's W3C `traceparent` header.
fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers.get("traceparent").and_then(|v| v.to_str().ok())
}

fn message(text: &str) -> Value {
    object([("message", Value::str(text))])
}

fn unavailable() -> Response {
    json_response(StatusCode::SERVICE_UNAVAILABLE, &message("shutting down"))
}
