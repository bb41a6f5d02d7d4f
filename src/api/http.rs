//! The HTTP/JSON face of the service, on the gRPC port: what `kernite serve`
//! answers, route for route, so existing Kernite HTTP clients move over
//! unchanged, plus a JSON route for ExecuteWithEvidence.
//!
//! | route | answers |
//! | --- | --- |
//! | `POST /execute`, `/v1/execute` | Kernite's decision (200) or its validation errors (400) |
//! | `POST /validate/execute`, `/v1/validate/execute` | Kernite's validation body (200, `valid` true or false) |
//! | `POST /policy/generate`, `/v1/policy/generate` | Kernite's policy bundle, operation map and report from an OpenAPI document (200, or 400) |
//! | `POST /policy/check`, `/v1/policy/check` | Kernite's coverage report of an OpenAPI document (200, or 400) |
//! | `GET /health` | `{"status": "ok"}` |
//! | `POST /v1/execute-with-evidence` | `{"request": …, "mutation": {"name", "params"}}` → the governed write |
//! | `GET\|POST /v1/forward-auth` | a proxy's check of the request in `X-Forwarded-Method`/`-Uri` (`check.rs`): 200, or a denial |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |
//!
//! As in Kernite: the key comes from the `Idempotency-Key` header, an empty
//! body means `{}`, unparsable JSON is `400 {"message": "Invalid JSON payload"}`,
//! and anything else is `404 {"message": "Not found"}`. Unlike Kernite, a POST
//! must say its body is JSON (415), and a loopback listener answers loopback
//! host names only (421): see `browsers.rs`. Bodies are written the
//! way Python's `json.dumps(body, ensure_ascii=False)` writes them.

use std::borrow::Cow;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::Instrument as _;

use super::browsers::{self, HostGate};
use super::call::{CTX_ID_HEADER, Call};
use super::deadline::Deadline;
use super::error::{ApiError, http_error};
use super::gate::Credentials;
use super::{GovernanceApi, authoring, check, evaluate, execute};
use crate::access::Operation;
use crate::decision::json::{self, Dialect, Layout};
use crate::decision::value::object;
use crate::decision::{Map, Value};
use crate::metrics::metrics;

/// The routes, sharing `api` (and its admission) with gRPC,
/// answering the host names `hosts` allows.
pub(crate) fn router(api: GovernanceApi, limits: BodyLimits, hosts: HostGate, serve_metrics: bool) -> Router {
    let router = Router::new()
        .route("/health", get(health))
        .route("/execute", post(execute))
        .route("/v1/execute", post(execute))
        .route("/validate/execute", post(validate))
        .route("/v1/validate/execute", post(validate))
        .route("/v1/execute-with-evidence", post(execute_with_evidence))
        .route("/v1/forward-auth", get(forward_auth).post(forward_auth))
        .route("/policy/generate", post(policy_generate))
        .route("/v1/policy/generate", post(policy_generate))
        .route("/policy/check", post(policy_check))
        .route("/v1/policy/check", post(policy_check));
    let router = if serve_metrics { router.route("/metrics", get(prometheus)) } else { router };
    router
        .method_not_allowed_fallback(not_found)
        .with_state(HttpState { api, limits })
        .layer(axum::middleware::from_fn_with_state(hosts, browsers::check_host))
}

#[derive(Clone)]
struct HttpState {
    api: GovernanceApi,
    limits: BodyLimits,
}

/// The largest bodies read: a request's, and an OpenAPI document's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub request: usize,
    pub document: usize,
}

/// How a route reads its body: up to how many bytes, in which JSON dialect.
#[derive(Clone, Copy)]
struct Reading {
    limit: usize,
    dialect: Dialect,
}

/// What a handler answers: Kernite's status and body text (and, for a
/// proxy's check, the decision's headers).
pub(super) struct Answered {
    pub status: StatusCode,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Answered {
    fn ok(body: String) -> Answered {
        Answered { status: StatusCode::OK, body, headers: Vec::new() }
    }
}

/// Kernite's answer to any route it does not serve. gRPC calls to unknown
/// methods still get gRPC's UNIMPLEMENTED.
pub(crate) async fn not_found(request: Request) -> Response {
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

async fn execute(State(state): State<HttpState>, request: Request) -> Response {
    state
        .call("POST /v1/execute", Operation::Decide, state.request_reading(), request, async |call, headers, body| {
            evaluate::execute_json(&state.api, body, idempotency_key(headers).as_deref(), call).map(Answered::ok)
        })
        .await
}

async fn validate(State(state): State<HttpState>, request: Request) -> Response {
    state
        .call(
            "POST /v1/validate/execute",
            Operation::Decide,
            state.request_reading(),
            request,
            async |call, headers, body| {
                evaluate::validate_json(body, idempotency_key(headers).as_deref(), call).map(Answered::ok)
            },
        )
        .await
}

async fn execute_with_evidence(State(state): State<HttpState>, request: Request) -> Response {
    state
        .call(
            "POST /v1/execute-with-evidence",
            Operation::Execute,
            state.request_reading(),
            request,
            async |call, headers, body| {
                execute::execute_with_evidence_json(&state.api, body, idempotency_key(headers), call)
                    .await
                    .map(Answered::ok)
            },
        )
        .await
}

async fn policy_generate(State(state): State<HttpState>, request: Request) -> Response {
    let reading = state.document_reading();
    state
        .call("POST /v1/policy/generate", Operation::Author, reading, request, async |call, _, body| {
            authoring::generate(body, call).await
        })
        .await
}

async fn policy_check(State(state): State<HttpState>, request: Request) -> Response {
    let reading = state.document_reading();
    state
        .call("POST /v1/policy/check", Operation::Author, reading, request, async |call, _, body| {
            authoring::check(body, call).await
        })
        .await
}

/// `GET|POST /v1/forward-auth`: nginx's `auth_request`, Caddy's
/// `forward_auth` and Traefik's `ForwardAuth` ask here (`check.rs`). Its body,
/// if any, is the original request's: read as bytes, whatever its type.
async fn forward_auth(State(state): State<HttpState>, request: Request) -> Response {
    let limit = state.limits.request;
    state
        .call_with(
            "GET /v1/forward-auth",
            Operation::Execute,
            limit,
            request,
            |_| Ok(()),
            async |call, headers, body| {
                let verdict = check::forward_auth(&state.api, headers, &body, call).await;
                Ok(Answered { status: verdict.status, body: verdict.body, headers: verdict.headers })
            },
        )
        .await
}

impl HttpState {
    fn request_reading(&self) -> Reading {
        Reading { limit: self.limits.request, dialect: Dialect::Strict }
    }

    fn document_reading(&self) -> Reading {
        Reading { limit: self.limits.document, dialect: Dialect::Python }
    }

    /// What every JSON call goes through: [`Self::call_with`], its body
    /// declared and read as JSON.
    async fn call(
        &self,
        method: &'static str,
        operation: Operation,
        reading: Reading,
        request: Request,
        handler: impl AsyncFnOnce(&Call, &HeaderMap, Value) -> Result<Answered, ApiError>,
    ) -> Response {
        let accept = browsers::check_json_content_type;
        self.call_with(method, operation, reading.limit, request, accept, async |call, headers, bytes| {
            handler(call, headers, parse_json(&bytes, reading.dialect)?).await
        })
        .await
    }

    /// What every HTTP call goes through: its span, its caller (`gate.rs`),
    /// whether its headers are acceptable (`accept`), its admission, its body
    /// read up to `limit`, the handler, and the answer (the handler's, or the
    /// error's status and body) carrying `x-ctx-id` when known.
    async fn call_with(
        &self,
        method: &'static str,
        operation: Operation,
        limit: usize,
        request: Request,
        accept: impl FnOnce(&HeaderMap) -> Result<(), ApiError>,
        handler: impl AsyncFnOnce(&Call, &HeaderMap, Bytes) -> Result<Answered, ApiError>,
    ) -> Response {
        let (parts, body) = request.into_parts();
        let headers = &parts.headers;
        let deadline = Deadline::within(self.api.request_timeout);
        let call = Call::start(method, operation, traceparent(headers), deadline);
        let work = async {
            call.identify(&self.api.gate, Credentials::of(headers, &parts.extensions))?;
            accept(headers)?;
            // Admitted by the size it declares (a chunked body, by the most it may be).
            let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
            let declared = declared.unwrap_or(limit).min(limit);
            let _admitted = self.api.admission.admit(declared).await;
            let body = read_body(body, limit).await?;
            handler(&call, headers, body).instrument(call.span().clone()).await
        };
        let result = call.deadline().bound(work).await;
        let ctx_id = call.answered_ctx_id(&result).and_then(|c| HeaderValue::from_str(&c).ok());
        let (status, body, headers, failure) = match result {
            Ok(Answered { status, body, headers }) => (status, body, headers, None),
            Err(error) => {
                let failure = error.failure();
                let (status, body) = http_error(error);
                (status, json::to_string(&body, Layout::Response), Vec::new(), failure)
            }
        };
        call.finish(Cow::Owned(status.as_u16().to_string()), failure.as_deref());
        let mut response = json_text_response(status, body);
        if let Some(ctx_id) = ctx_id {
            response.headers_mut().insert(CTX_ID_HEADER, ctx_id);
        }
        for (name, value) in headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// An error's answer outside a call (the host check).
pub(super) fn error_response(error: ApiError) -> Response {
    let (status, body) = http_error(error);
    json_response(status, &body)
}

/// The body, up to `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        match error.into_inner().downcast_ref::<http_body_util::LengthLimitError>() {
            Some(_) => ApiError::BodyTooLarge(limit),
            None => ApiError::BodyUnreadable,
        }
    })
}

/// The body as JSON, as Kernite reads it: empty is `{}`.
fn parse_json(bytes: &[u8], dialect: Dialect) -> Result<Value, ApiError> {
    if bytes.is_empty() {
        return Ok(Value::Object(Map::default()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApiError::NotJson)?;
    json::parse_as(text, dialect).map_err(|_| ApiError::NotJson)
}

/// The `Idempotency-Key` header as Python's http.server reads it (Latin-1).
fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers.get("idempotency-key").map(|value| value.as_bytes().iter().map(|&b| char::from(b)).collect())
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
