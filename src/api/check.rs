//! The gateway's check, for proxies that ask before they forward a request:
//! Envoy's `envoy.service.auth.v3.Authorization/Check` over gRPC, and
//! forward-auth (`GET|POST /v1/forward-auth`) for nginx, Caddy and Traefik.
//!
//! The story of one check, in [`verdict`]: turn the proxy's request into a
//! Kernite request (`crate::gateway`), decide it under the operator's bundle
//! as ExecuteWithEvidence would, check the proxy may act in its workspace,
//! commit the evidence row (the proxy's `x-request-id` is its idempotency
//! key, so a retried check replays the recorded decision), and only then
//! answer: pass, with the decision's headers for the upstream, or deny, with
//! Kernite's reasons. A check whose evidence cannot be committed is denied
//! (503), unless the operator chose fail-open for approved requests.
//!
//! Only the proxy's own credentials are answered as a failed call (gRPC
//! UNAUTHENTICATED or PERMISSION_DENIED, HTTP 401 or 403, before anything
//! is read); everything about the request it asks about is an answer to
//! that request: a denial with the status of [`crate::error`]'s table.

use std::collections::HashMap;

use http::StatusCode;

use super::call::Call;
use super::decide::{decide, resolve, validate};
use super::error::http_error;
use super::{ApiError, GovernanceApi, convert};
use crate::decision::json::{self, Layout};
use crate::decision::{DecisionRecord, Map};
use crate::error::ServiceError as _;
use crate::evidence::{EvidenceError, Execution, Fingerprint, GovernedWrite, RecordedAnswer};
use crate::gateway::{FailureMode, Headers, HttpRequest, Translation, Unmapped};
use crate::metrics::metrics;
use crate::proto::envoy::config::core::v3::{HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction};
use crate::proto::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response::HttpResponse,
};
use crate::proto::envoy::r#type::v3::HttpStatus;
use crate::vocabulary::{Decision, Mode, RecordedDecision};

/// The headers a check answers with: to the upstream when it passes, to
/// the client when it is denied. A client's own headers of these names
/// never reach the upstream (Envoy: overwritten or removed; nginx and
/// Caddy: set from the answer, `deploy/gateway/`).
pub(crate) const DECISION_HEADER: &str = "x-governance-decision";
pub(crate) const CTX_ID_HEADER: &str = "x-governance-ctx-id";
pub(crate) const TRACE_HASH_HEADER: &str = "x-governance-trace-hash";
pub(crate) const EVIDENCE_ID_HEADER: &str = "x-governance-evidence-id";
pub(crate) const REASON_CODES_HEADER: &str = "x-governance-reason-codes";
pub(crate) const FAIL_OPEN_HEADER: &str = "x-governance-fail-open";
const ALL_HEADERS: [&str; 6] =
    [DECISION_HEADER, CTX_ID_HEADER, TRACE_HASH_HEADER, EVIDENCE_ID_HEADER, REASON_CODES_HEADER, FAIL_OPEN_HEADER];

/// Which front end asked, for the metrics.
#[derive(Debug, Clone, Copy)]
pub(super) enum Front {
    Envoy,
    ForwardAuth,
}

impl Front {
    fn as_str(self) -> &'static str {
        match self {
            Front::Envoy => "envoy",
            Front::ForwardAuth => "forward_auth",
        }
    }
}

/// A passing answer carries every header of [`ALL_HEADERS`], those without
/// a value empty: a proxy that copies headers from the answer (Caddy's
/// `copy_headers`, nginx's `auth_request_set`) then clears a client's own
/// copy instead of forwarding it, or (Caddy 2.6) its placeholder's text.
fn with_every_header(mut headers: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    for name in ALL_HEADERS {
        if !headers.iter().any(|(set, _)| *set == name) {
            headers.push((name, String::new()));
        }
    }
    headers
}

/// What a check answers the proxy.
pub(super) struct Verdict {
    /// Whether the request passes to the upstream.
    pub passes: bool,
    /// The HTTP status of a denial (200 when it passes).
    pub status: StatusCode,
    /// The gRPC code Envoy's `CheckResponse.status` carries.
    pub code: tonic::Code,
    pub headers: Vec<(&'static str, String)>,
    /// A denial's JSON body; empty when it passes.
    pub body: String,
}

/// The check of `request`: decided, its evidence committed, answered.
pub(super) async fn verdict(api: &GovernanceApi, request: &HttpRequest<'_>, call: &Call, front: Front) -> Verdict {
    match govern(api, request, call).await {
        Ok((verdict, answer)) => {
            metrics().gateway_check(front.as_str(), answer);
            verdict
        }
        Err(error) => refused(front, error),
    }
}

async fn govern(
    api: &GovernanceApi,
    request: &HttpRequest<'_>,
    call: &Call,
) -> Result<(Verdict, &'static str), ApiError> {
    let gateway = api.gateway.as_deref().ok_or(ApiError::GatewayNotConfigured)?;
    let (route, body, idempotency_key) = match gateway.translate(request)? {
        Translation::Governed { route, body, idempotency_key } => (route, body, idempotency_key),
        Translation::Unmapped { what } => return Ok(unmapped(gateway.unmapped, what)),
    };
    let store = api.store()?;
    let bundle = api.decider.policies.as_ref().map(|policies| policies.current()).ok_or(ApiError::NoPolicyBundle)?;
    // The key is the client's to choose (a proxy may keep its x-request-id):
    // a retry replays its recorded decision only under the bundle that made
    // it; under a newer bundle the same key is a conflict (409), so a
    // tightened bundle cannot be sidestepped by replaying an old approval.
    let fingerprint = Fingerprint::of(&body, &format!("{}\n{}", route.name, bundle.sha256), &Map::default());
    let validation = validate(body, idempotency_key.as_deref())?;
    call.may_in(&validation.request.workspace_id)?;
    let bundle_mode =
        resolve(&bundle, &validation).mode.ok_or_else(|| ApiError::RouteNotGoverned(route.name.clone()))?;
    let mode = store.registry().mode_for(&route.mutation, Some(bundle_mode));
    let record = match mode {
        Mode::Skip => None,
        Mode::Enforce | Mode::Observe => Some(decide(&validation, Some(&bundle))?),
    };
    if let Some(record) = &record {
        call.record_decision(record, &validation.request, mode);
    }
    call.deadline().check()?;
    let caller_params = Map::default();
    let execution = store
        .execute(GovernedWrite {
            request: &validation.request,
            decision: record.as_ref(),
            mode,
            mutation: &route.mutation,
            caller_params: &caller_params,
            fingerprint,
            policy_bundle: Some(bundle.sha256.as_str()),
            trace_id: call.trace_id(),
            caller: call.caller().name(),
        })
        .await;
    super::execute::count(&execution);
    let passes_if_written = mode != Mode::Enforce || record.as_ref().is_some_and(|r| r.decision == Decision::Approved);
    match execution {
        Ok(execution) => Ok(decided(&execution, record.as_ref(), mode)),
        Err(error) if error.error_code() == crate::error::ServiceErrorCode::Unavailable => {
            if passes_if_written && gateway.failure == FailureMode::Open {
                tracing::warn!(parent: call.span(), error = %error, "the evidence could not be committed: passing (fail-open)");
                metrics().gateway_fail_open();
                Ok((fail_open(record.as_ref()), "fail_open"))
            } else {
                Err(error.into())
            }
        }
        // The denial reaches the proxy's client, who may not read the
        // workspace's evidence whatever the proxy may: no other row's id.
        Err(EvidenceError::KeyReused { .. }) => Err(EvidenceError::KeyReused { evidence_id: None }.into()),
        Err(error) => Err(error.into()),
    }
}

/// The answer to a check whose row is committed: the decision made now, or
/// the one recorded when a retry of the same request replays its row.
fn decided(execution: &Execution, record: Option<&DecisionRecord>, mode: Mode) -> (Verdict, &'static str) {
    let answer = match (&execution.recorded, record) {
        (Some(recorded), _) => recorded.clone(),
        (None, Some(record)) => RecordedAnswer {
            decision: RecordedDecision::from(Some(record.decision)),
            ctx_id: record.ctx_id.to_string(),
            trace_hash: record.trace_hash.clone(),
            reason_codes: record.reason_codes.iter().map(|code| code.to_string()).collect(),
            response_json: record.response_text().to_owned(),
        },
        (None, None) => RecordedAnswer {
            decision: RecordedDecision::Skipped,
            ctx_id: String::new(),
            trace_hash: String::new(),
            reason_codes: Vec::new(),
            response_json: String::new(),
        },
    };
    let passes = mode != Mode::Enforce || answer.decision != RecordedDecision::Denied;
    let mut headers = vec![(DECISION_HEADER, answer.decision.as_str().to_owned())];
    if !answer.ctx_id.is_empty() {
        headers.push((CTX_ID_HEADER, answer.ctx_id));
        headers.push((TRACE_HASH_HEADER, answer.trace_hash));
    }
    headers.push((EVIDENCE_ID_HEADER, execution.evidence_id.to_string()));
    if passes {
        let headers = with_every_header(headers);
        let verdict = Verdict { passes, status: StatusCode::OK, code: tonic::Code::Ok, headers, body: String::new() };
        return (verdict, "allowed");
    }
    headers.push((REASON_CODES_HEADER, answer.reason_codes.join(",")));
    let verdict = Verdict {
        passes,
        status: StatusCode::FORBIDDEN,
        code: tonic::Code::PermissionDenied,
        headers,
        body: answer.response_json,
    };
    (verdict, "denied")
}

/// An approved request passed without its row (fail-open).
fn fail_open(record: Option<&DecisionRecord>) -> Verdict {
    let decision = RecordedDecision::from(record.map(|r| r.decision));
    let mut headers = vec![(DECISION_HEADER, decision.as_str().to_owned()), (FAIL_OPEN_HEADER, "true".to_owned())];
    if let Some(record) = record {
        headers.push((CTX_ID_HEADER, record.ctx_id.to_string()));
        headers.push((TRACE_HASH_HEADER, record.trace_hash.clone()));
    }
    let headers = with_every_header(headers);
    Verdict { passes: true, status: StatusCode::OK, code: tonic::Code::Ok, headers, body: String::new() }
}

/// A request no governed route matches: passed or denied as the operator says, without a row.
fn unmapped(policy: Unmapped, what: String) -> (Verdict, &'static str) {
    let headers = vec![(DECISION_HEADER, "unmapped".to_owned())];
    match policy {
        Unmapped::Allow => {
            let headers = with_every_header(headers);
            let verdict =
                Verdict { passes: true, status: StatusCode::OK, code: tonic::Code::Ok, headers, body: String::new() };
            (verdict, "unmapped_allowed")
        }
        Unmapped::Deny => {
            let message = format!("{what} is not a governed route of this sidecar's operation map");
            let body = crate::decision::value::object([
                ("message", crate::decision::Value::str(message)),
                ("code", crate::decision::Value::str("PERMISSION_DENIED")),
            ]);
            let body = json::to_string(&body, Layout::Response);
            let verdict = Verdict {
                passes: false,
                status: StatusCode::FORBIDDEN,
                code: tonic::Code::PermissionDenied,
                headers,
                body,
            };
            (verdict, "unmapped_denied")
        }
    }
}

/// A check that could not be read, decided or recorded: counted, and denied
/// with the error's status.
fn refused(front: Front, error: ApiError) -> Verdict {
    metrics().gateway_check(front.as_str(), "refused");
    let code = error.error_code();
    let (status, body) = http_error(error);
    Verdict {
        passes: false,
        status,
        code: code.grpc(),
        headers: vec![(DECISION_HEADER, "refused".to_owned())],
        body: json::to_string(&body, Layout::Response),
    }
}

/// gRPC `envoy.service.auth.v3.Authorization/Check`.
pub(super) async fn check(api: &GovernanceApi, request: CheckRequest, call: &Call) -> Result<CheckResponse, ApiError> {
    let http = request.attributes.as_ref().and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref());
    let Some(http) = http else {
        let missing = crate::gateway::Untranslatable::NoOriginalRequest("no attributes.request.http");
        return Ok(into_check_response(refused(Front::Envoy, missing.into())));
    };
    // Envoy sends `header_map` instead of `headers` when told to encode raw
    // headers; a repeated header's values are joined with commas, as in `headers`.
    let mut from_header_map: HashMap<String, String> = HashMap::new();
    let headers = match (&http.headers, &http.header_map) {
        (headers, Some(map)) if headers.is_empty() => {
            for header in &map.headers {
                let value = if header.raw_value.is_empty() {
                    header.value.as_str()
                } else {
                    let Ok(value) = std::str::from_utf8(&header.raw_value) else { continue };
                    value
                };
                from_header_map
                    .entry(header.key.to_ascii_lowercase())
                    .and_modify(|joined| {
                        joined.push(',');
                        joined.push_str(value);
                    })
                    .or_insert_with(|| value.to_owned());
            }
            &from_header_map
        }
        (headers, _) => headers,
    };
    let body = if http.raw_body.is_empty() { http.body.as_bytes() } else { http.raw_body.as_slice() };
    let jwt_payloads = match jwt_payloads(&request) {
        Ok(payloads) => payloads,
        Err(error) => return Ok(into_check_response(refused(Front::Envoy, error))),
    };
    let request = HttpRequest {
        method: &http.method,
        path_and_query: &http.path,
        headers: Headers::Envoy(headers),
        body: Some(body),
        jwt_payloads: &jwt_payloads,
    };
    Ok(into_check_response(verdict(api, &request, call, Front::Envoy).await))
}

/// The payloads Envoy's `jwt_authn` filter verified, in the order of their metadata keys.
fn jwt_payloads(request: &CheckRequest) -> Result<Vec<Map>, ApiError> {
    let metadata = request.attributes.as_ref().and_then(|a| a.metadata_context.as_ref());
    let Some(jwt) = metadata.and_then(|m| m.filter_metadata.get("envoy.filters.http.jwt_authn")) else {
        return Ok(Vec::new());
    };
    let mut entries: Vec<_> = jwt.fields.iter().collect();
    entries.sort_by_key(|(key, _)| key.as_str());
    let mut payloads = Vec::new();
    for (_, value) in entries {
        if let Some(prost_types::value::Kind::StructValue(payload)) = &value.kind {
            payloads.push(convert::map_from_struct(payload.clone(), "metadata_context")?);
        }
    }
    Ok(payloads)
}

fn into_check_response(verdict: Verdict) -> CheckResponse {
    let header = |(key, value): (&str, String)| HeaderValueOption {
        header: Some(HeaderValue { key: key.to_owned(), value, raw_value: Vec::new() }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        ..HeaderValueOption::default()
    };
    // A header without a value is one the upstream must not get from the client either.
    let headers: Vec<_> = verdict.headers.into_iter().filter(|(_, value)| !value.is_empty()).collect();
    let set: Vec<&str> = headers.iter().map(|(key, _)| *key).collect();
    let status =
        crate::proto::google::rpc::Status { code: verdict.code as i32, message: String::new(), details: Vec::new() };
    let http_response = if verdict.passes {
        HttpResponse::OkResponse(OkHttpResponse {
            headers: headers.into_iter().map(header).collect(),
            // A client's own header of these names must not reach the upstream as ours.
            headers_to_remove: ALL_HEADERS
                .iter()
                .filter(|name| !set.contains(name))
                .map(|name| (*name).to_owned())
                .collect(),
            ..OkHttpResponse::default()
        })
    } else {
        let mut headers: Vec<HeaderValueOption> = headers.into_iter().map(header).collect();
        if !verdict.body.is_empty() {
            headers.push(header(("content-type", "application/json; charset=utf-8".to_owned())));
        }
        HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(verdict.status.as_u16()) }),
            headers,
            body: verdict.body,
        })
    };
    CheckResponse { status: Some(status), http_response: Some(http_response), ..CheckResponse::default() }
}

/// The request a forward-auth call asks about, from the headers nginx,
/// Caddy and Traefik send: `X-Forwarded-Method` and `X-Forwarded-Uri`, or
/// `X-Original-Method` and `X-Original-URI`, each pair whole. A proxy that
/// sets one pair may pass the client's own copy of the other: both present
/// and different is refused, never guessed between.
pub(super) async fn forward_auth(api: &GovernanceApi, headers: &http::HeaderMap, body: &[u8], call: &Call) -> Verdict {
    let (method, uri) = match original_request(headers) {
        Ok(original) => original,
        Err(error) => return refused(Front::ForwardAuth, error.into()),
    };
    let request = HttpRequest {
        method,
        path_and_query: uri,
        headers: Headers::Http(headers),
        body: Some(body),
        jwt_payloads: &[],
    };
    verdict(api, &request, call, Front::ForwardAuth).await
}

/// The original method and URI, from one whole pair of headers.
fn original_request(headers: &http::HeaderMap) -> Result<(&str, &str), crate::gateway::Untranslatable> {
    use crate::gateway::Untranslatable::NoOriginalRequest;
    let header = |name: &str| headers.get(name).map(|value| value.to_str().ok().filter(|v| !v.is_empty()));
    let pair = |method: &str, uri: &str| match (header(method), header(uri)) {
        (None, None) => Ok(None),
        (Some(Some(method)), Some(Some(uri))) => Ok(Some((method, uri))),
        _ => Err(NoOriginalRequest("a method header without its URI header, or one that is empty or not text")),
    };
    match (pair("x-forwarded-method", "x-forwarded-uri")?, pair("x-original-method", "x-original-uri")?) {
        (Some(forwarded), Some(original)) if forwarded != original => {
            Err(NoOriginalRequest("X-Forwarded-Method/-Uri and X-Original-Method/-URI name different requests"))
        }
        (Some(one), _) | (None, Some(one)) => Ok(one),
        (None, None) => Err(NoOriginalRequest(
            "send X-Forwarded-Method and X-Forwarded-Uri (or X-Original-Method and X-Original-URI)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn the_original_request_is_one_whole_pair_of_headers() {
        let forwarded = headers(&[("x-forwarded-method", "POST"), ("x-forwarded-uri", "/invoices")]);
        assert_eq!(original_request(&forwarded).unwrap(), ("POST", "/invoices"));
        let original = headers(&[("x-original-method", "GET"), ("x-original-uri", "/a?b=c")]);
        assert_eq!(original_request(&original).unwrap(), ("GET", "/a?b=c"));
        let agreeing = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/a"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/a"),
        ]);
        assert_eq!(original_request(&agreeing).unwrap(), ("GET", "/a"));
        // A client's forged pair beside the proxy's, a pair split across the two, or half a pair: refused.
        for refused in [
            headers(&[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/invoices?currency=EUR"),
                ("x-original-method", "POST"),
                ("x-original-uri", "/invoices?currency=GBP"),
            ]),
            headers(&[("x-forwarded-method", "POST"), ("x-original-uri", "/invoices")]),
            headers(&[("x-forwarded-uri", "/invoices")]),
            headers(&[("x-forwarded-method", ""), ("x-forwarded-uri", "/invoices")]),
            headers(&[]),
        ] {
            assert!(original_request(&refused).is_err(), "{refused:?}");
        }
    }
}
