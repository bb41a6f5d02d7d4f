//! The gateway: how a request that a proxy asks about (Envoy's `ext_authz`,
//! nginx's `auth_request`, Caddy's `forward_auth`) becomes a Kernite request.
//! One translation for every front end, pure (no I/O): the API's `check.rs`
//! hands it what the proxy sent ([`HttpRequest`]) and gets back the request
//! to decide, with the route it took ([`Gateway::translate`]).
//!
//! - The route: the request's method and path matched against the templates
//!   of Kernite's operation map ([`routes`]), which give its scope.
//! - The workspace and the principal: from where the operator says the mesh
//!   puts them ([`sources`]).
//! - The payload: the JSON body when the proxy sends it, with the path's and
//!   the query's parameters ([`payload`]).
//! - The idempotency key: the proxy's `x-request-id`, so that a retried check
//!   replays its recorded decision instead of writing a second row.
//!
//! What the API does with it (decide, commit the evidence, answer) is
//! `api/check.rs`; `docs/gateway.md` is the operator's page.

mod payload;
mod request;
mod routes;
mod sources;

use std::sync::Arc;

pub use request::{Headers, HttpRequest};
pub use routes::Route;
pub use sources::{PrincipalSource, WorkspaceSource};

use crate::decision::Value;
use crate::decision::value::object;
use crate::error::{ServiceError, ServiceErrorCode};
use crate::policies::OperationMap;
pub use crate::vocabulary::{FailureMode, Unmapped};
use routes::Routes;

/// The header a proxy's request id travels in: Envoy sets it on every
/// request, and nginx and Caddy are configured to (`deploy/gateway/`).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the operator configured (`--gateway-*`).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub workspace: WorkspaceSource,
    pub principal: PrincipalSource,
    /// The principal's `type`; `None`: `service` for a certificate's
    /// identity, `user` otherwise.
    pub principal_type: Option<String>,
    pub unmapped: Unmapped,
    pub failure: FailureMode,
}

/// The gateway: its routes and where the request's parts come from.
#[derive(Debug)]
pub struct Gateway {
    routes: Routes,
    workspace: WorkspaceSource,
    principal: PrincipalSource,
    principal_type: String,
    pub unmapped: Unmapped,
    pub failure: FailureMode,
}

/// What a request came to.
#[derive(Debug)]
pub enum Translation {
    /// A governed route: the Kernite request to decide (the body as a caller
    /// of ExecuteWithEvidence would send it) and its idempotency key.
    Governed { route: Arc<Route>, body: Value, idempotency_key: Option<String> },
    /// No governed route matches: `what` names the method and path.
    Unmapped { what: String },
}

/// Why a request cannot be turned into a Kernite request. Each is answered
/// to the proxy as a denial with its status; none writes evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untranslatable {
    #[error("the request's path is malformed: {0}")]
    BadPath(String),
    #[error("the request's query string is malformed: {0}")]
    BadQuery(String),
    #[error("the request's body is not a JSON object: {0}")]
    BadBody(String),
    #[error("the proxy sent part of the body only: a truncated body cannot be decided")]
    PartialBody,
    #[error("`{0}` is given twice with different values (body, path or query): the request is ambiguous")]
    Ambiguous(String),
    #[error("the request names no workspace ({0})")]
    NoWorkspace(String),
    #[error("the request names no principal ({0})")]
    NoPrincipal(String),
    #[error("the header `{0}` is sent more than once, or as a list: which value the upstream reads is not clear")]
    RepeatedHeader(String),
    #[error("the proxy did not say which request it asks about: {0}")]
    NoOriginalRequest(&'static str),
}

impl ServiceError for Untranslatable {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Untranslatable::NoPrincipal(_) => ServiceErrorCode::Unauthenticated,
            _ => ServiceErrorCode::BadRequest,
        }
    }
}

impl Gateway {
    /// The gateway over `operations`' governed routes. Two routes a request
    /// could match alike (the same method, the same template but for the
    /// parameters' names) are refused: which would decide is not clear.
    pub fn new(settings: GatewaySettings, operations: &OperationMap) -> anyhow::Result<Gateway> {
        let routes = Routes::new(operations)?;
        if let WorkspaceSource::PathParameter(name) = &settings.workspace {
            routes.check_all_have(name)?;
        }
        let principal_type = settings.principal_type.unwrap_or_else(|| settings.principal.default_type().to_owned());
        Ok(Gateway {
            routes,
            workspace: settings.workspace,
            principal: settings.principal,
            principal_type,
            unmapped: settings.unmapped,
            failure: settings.failure,
        })
    }

    /// How many governed routes it knows.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The routes whose scope `bundle` does not mention, by name.
    pub fn routes_ungoverned_by(&self, bundle: &crate::policies::PolicyBundle) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|route| bundle.resolve(&route.object_type, &route.operation).mode.is_none())
            .map(|route| route.name.as_str())
            .collect()
    }

    /// The Kernite request `request` asks for, or why there is none.
    pub fn translate(&self, request: &HttpRequest<'_>) -> Result<Translation, Untranslatable> {
        let (path, query) = request.path_and_query.split_once('?').unwrap_or((request.path_and_query, ""));
        let segments = payload::path_segments(path)?;
        let Some((route, parameters)) = self.routes.find(request.method, &segments) else {
            return Ok(Translation::Unmapped { what: format!("{} {path}", request.method.to_ascii_uppercase()) });
        };
        let workspace = self.workspace.read(request, &parameters)?;
        let principal = self.principal.read(request)?;
        let payload = payload::payload(request, parameters, query)?;
        let body = object([
            ("workspace_id", Value::str(workspace)),
            ("principal", object([("type", Value::str(&self.principal_type)), ("id", Value::str(principal))])),
            ("object_type", Value::str(&route.object_type)),
            ("operation", Value::str(&route.operation)),
            ("payload", Value::Object(payload)),
        ]);
        // An empty id is no id: otherwise every such request of a workspace would share one key.
        let idempotency_key = request.headers.one(REQUEST_ID_HEADER)?.filter(|id| !id.is_empty()).map(str::to_owned);
        Ok(Translation::Governed { route: Arc::clone(route), body, idempotency_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Map;

    const MAP: &str = r#"{"operations": [
        {"operation_id": "createInvoice", "method": "post", "path": "/invoices", "object_type": "invoice", "operation": "create"},
        {"operation_id": "deleteInvoice", "method": "delete", "path": "/invoices/{invoiceId}", "object_type": "invoice", "operation": "delete"},
        {"operation_id": "voidInvoice", "method": "post", "path": "/invoices/{invoiceId}/void", "object_type": "invoice", "operation": "void", "governed": false}
    ]}"#;

    fn gateway(workspace: &str, principal: &str) -> Gateway {
        let settings = GatewaySettings {
            workspace: WorkspaceSource::parse(workspace).unwrap(),
            principal: PrincipalSource::parse(principal).unwrap(),
            principal_type: None,
            unmapped: Unmapped::Deny,
            failure: FailureMode::Closed,
        };
        Gateway::new(settings, &OperationMap::parse(MAP).unwrap()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn translate(
        gateway: &Gateway,
        method: &str,
        uri: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Translation, Untranslatable> {
        let request =
            HttpRequest { method, path_and_query: uri, headers: Headers::Pairs(headers), body, jwt_payloads: &[] };
        gateway.translate(&request)
    }

    fn governed(translation: Translation) -> (Arc<Route>, Map, Option<String>) {
        match translation {
            Translation::Governed { route, body: Value::Object(body), idempotency_key } => {
                (route, body, idempotency_key)
            }
            other => panic!("not governed: {other:?}"),
        }
    }

    #[test]
    fn a_governed_route_becomes_a_kernite_request_with_the_request_id_as_its_key() {
        let gateway = gateway("header:x-workspace-id", "header:x-user-id");
        let h = headers(&[("x-workspace-id", "acme"), ("x-user-id", "u1"), ("x-request-id", "r-1")]);
        let (route, body, key) =
            governed(translate(&gateway, "POST", "/invoices?draft=yes", &h, Some(br#"{"amount": 5}"#)).unwrap());
        assert_eq!(route.name, "POST /invoices");
        assert_eq!(key.as_deref(), Some("r-1"));
        let text = crate::decision::json::to_string(&Value::Object(body), crate::decision::json::Layout::Canonical);
        assert_eq!(
            text,
            r#"{"object_type":"invoice","operation":"create","payload":{"amount":5,"draft":"yes"},"principal":{"id":"u1","type":"user"},"workspace_id":"acme"}"#
        );
    }

    #[test]
    fn unmapped_and_ungoverned_routes_are_unmapped() {
        let gateway = gateway("value:acme", "header:x-user-id");
        let h = headers(&[("x-user-id", "u1")]);
        for (method, uri) in
            [("GET", "/invoices"), ("POST", "/invoices/1/void"), ("POST", "/Invoices"), ("POST", "/other")]
        {
            assert!(
                matches!(translate(&gateway, method, uri, &h, None).unwrap(), Translation::Unmapped { .. }),
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn a_trailing_slash_takes_the_route_and_an_empty_request_id_is_no_key() {
        let gateway = gateway("value:acme", "header:x-user-id");
        let h = headers(&[("x-user-id", "u1"), ("x-request-id", "")]);
        let (route, _, key) = governed(translate(&gateway, "POST", "/invoices/", &h, None).unwrap());
        assert_eq!((route.name.as_str(), key), ("POST /invoices", None));
    }

    #[test]
    fn the_workspace_may_come_from_a_path_parameter_and_parameters_join_the_payload() {
        let settings = r#"{"operations": [{"operation_id": "x", "method": "delete", "path": "/workspaces/{ws}/invoices/{id}", "object_type": "invoice", "operation": "delete"}]}"#;
        let gateway = Gateway::new(
            GatewaySettings {
                workspace: WorkspaceSource::parse("path:ws").unwrap(),
                principal: PrincipalSource::parse("xfcc").unwrap(),
                principal_type: None,
                unmapped: Unmapped::Deny,
                failure: FailureMode::Closed,
            },
            &OperationMap::parse(settings).unwrap(),
        )
        .unwrap();
        let xfcc = r#"By=spiffe://cluster.local/ns/a/sa/api;Hash=abc;Subject="CN=x,O=y";URI=spiffe://cluster.local/ns/b/sa/client"#;
        let h = headers(&[("x-forwarded-client-cert", xfcc)]);
        let (_, body, key) =
            governed(translate(&gateway, "DELETE", "/workspaces/acme%2Deu/invoices/7", &h, None).unwrap());
        assert_eq!(key, None);
        assert_eq!(body["workspace_id"], Value::str("acme-eu"));
        assert_eq!(
            body["principal"],
            object([("type", Value::str("service")), ("id", Value::str("spiffe://cluster.local/ns/b/sa/client"))])
        );
        assert_eq!(body["payload"], object([("ws", Value::str("acme-eu")), ("id", Value::str("7"))]));
        // Validation would trim ` acme`, the upstream would not: refused.
        let error = translate(&gateway, "DELETE", "/workspaces/acme%20/invoices/7", &h, None).unwrap_err();
        assert!(matches!(error, Untranslatable::BadPath(_)), "{error:?}");
    }

    #[test]
    fn a_request_that_cannot_be_read_one_way_only_is_refused() {
        let gateway = gateway("header:x-workspace-id", "header:x-user-id");
        let h = headers(&[("x-workspace-id", "acme"), ("x-user-id", "u1")]);
        let refused =
            |method: &str, uri: &str, body: Option<&[u8]>| translate(&gateway, method, uri, &h, body).unwrap_err();
        assert!(matches!(
            refused("POST", "/invoices?amount=1", Some(br#"{"amount": 2}"#)),
            Untranslatable::Ambiguous(_)
        ));
        assert!(matches!(refused("POST", "/invoices", Some(b"[1]")), Untranslatable::BadBody(_)));
        assert!(matches!(refused("POST", "/invoices", Some(b"amount=5")), Untranslatable::BadBody(_)));
        assert!(matches!(refused("DELETE", "/invoices/..", None), Untranslatable::BadPath(_)));
        assert!(matches!(refused("DELETE", "/invoices/a%2Fb", None), Untranslatable::BadPath(_)));
        assert!(matches!(refused("DELETE", "/invoices/%zz", None), Untranslatable::BadPath(_)));
        assert!(matches!(refused("POST", "/invoices?a=%zz", None), Untranslatable::BadQuery(_)));
        let twice = headers(&[("x-workspace-id", "acme"), ("x-user-id", "u1"), ("x-user-id", "admin")]);
        let error = translate(&gateway, "POST", "/invoices", &twice, None).unwrap_err();
        assert_eq!(error, Untranslatable::RepeatedHeader("x-user-id".into()));
        // How Envoy's map passes a repeated header.
        let joined = headers(&[("x-workspace-id", "acme"), ("x-user-id", "u1,admin")]);
        let error = translate(&gateway, "POST", "/invoices", &joined, None).unwrap_err();
        assert_eq!(error, Untranslatable::RepeatedHeader("x-user-id".into()));
        let anonymous = headers(&[("x-workspace-id", "acme")]);
        let error = translate(&gateway, "POST", "/invoices", &anonymous, None).unwrap_err();
        assert_eq!(error.error_code(), ServiceErrorCode::Unauthenticated);
        // The same name with the same value is no ambiguity: the body's typed value stays.
        let (_, body, _) = governed(
            translate(&gateway, "DELETE", "/invoices/7?invoiceId=7", &h, Some(br#"{"invoiceId": 7}"#)).unwrap(),
        );
        assert_eq!(body["payload"], object([("invoiceId", Value::Int(7))]));
    }

    #[test]
    fn routes_that_would_match_alike_are_refused() {
        let twice = r#"{"operations": [
            {"operation_id": "a", "method": "post", "path": "/x/{a}", "object_type": "x", "operation": "a"},
            {"operation_id": "b", "method": "POST", "path": "/x/{b}", "object_type": "x", "operation": "b"}]}"#;
        let settings = GatewaySettings {
            workspace: WorkspaceSource::parse("value:w").unwrap(),
            principal: PrincipalSource::parse("header:u").unwrap(),
            principal_type: None,
            unmapped: Unmapped::Deny,
            failure: FailureMode::Closed,
        };
        let error = Gateway::new(settings, &OperationMap::parse(twice).unwrap()).unwrap_err();
        assert!(error.to_string().contains("match the same requests"), "{error}");
    }
}
