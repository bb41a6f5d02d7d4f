//! What keeps a web page from driving the HTTP routes.
//!
//! A page open in a browser on the machine that runs `dev` or compose can
//! send requests to `127.0.0.1`. Two rules close that door:
//!
//! - **A JSON content type on every POST** (415 otherwise), as Kernite's own
//!   clients send it. A cross-site page can POST only the "simple" types
//!   (`text/plain`, forms) without asking the server first (CORS preflight),
//!   and the sidecar answers no preflight.
//! - **A loopback name or an address in `Host`** (421 otherwise), or one of
//!   `--allowed-hosts`, on a listener on loopback or on every interface (as in
//!   a container whose port is published on the host's loopback). A page that
//!   rebinds its own name to 127.0.0.1 is same-origin with the sidecar, but its
//!   requests still carry that name; an address is never a rebound name.
//!
//! The Governance gRPC service keeps the same host rule (PERMISSION_DENIED),
//! and takes only requests sent as gRPC (`application/grpc…`, 415 otherwise):
//! a page may send any bytes in a `text/plain` POST, and tonic would read
//! them as a call.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;

/// Whether the body is declared JSON: `application/json`, or a `+json`
/// type, any parameters (a charset) allowed.
pub(super) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = declared.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let is_json = essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|subtype| subtype.ends_with("+json"));
    if is_json { Ok(()) } else { Err(ApiError::NotJsonContentType) }
}

/// The host names a listener answers HTTP requests for.
#[derive(Debug, Clone)]
pub(crate) enum HostGate {
    /// A listener on one routable address: whatever name reached it.
    AnyHost,
    /// A listener on loopback, or on every interface: loopback names,
    /// addresses, and these names.
    Guarded(Arc<[String]>),
}

impl HostGate {
    /// The gate of a listener on `address`, allowing `also` beside loopback names.
    pub(crate) fn for_listener(address: IpAddr, also: &[String]) -> HostGate {
        if address.is_loopback() || address.is_unspecified() {
            HostGate::Guarded(also.iter().map(|name| normalise(name)).collect())
        } else {
            HostGate::AnyHost
        }
    }

    /// Whether a request naming `host` (`name[:port]`, or `[v6]:port`) is answered.
    fn allows(&self, host: &str) -> bool {
        let HostGate::Guarded(also) = self else { return true };
        let name = match host.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
            None => host
                .rsplit_once(':')
                .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
        };
        let name = normalise(name);
        name == "localhost" || name.ends_with(".localhost") || name.parse::<IpAddr>().is_ok() || also.contains(&name)
    }
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host a request names: HTTP/2's `:authority`, else HTTP/1's `Host`.
/// `Err` for a host no browser would send (absent, or not text).
fn named_host<B>(request: &http::Request<B>) -> Result<String, ApiError> {
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str().rsplit('@').next().unwrap_or("").to_owned()),
        None => request.headers().get(header::HOST).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    host.ok_or_else(|| ApiError::HostNotAllowed(String::new()))
}

impl HostGate {
    fn check<B>(&self, request: &http::Request<B>) -> Result<(), ApiError> {
        if matches!(self, HostGate::AnyHost) {
            return Ok(());
        }
        let host = named_host(request)?;
        if self.allows(&host) { Ok(()) } else { Err(ApiError::HostNotAllowed(host)) }
    }
}

/// The HTTP routes' middleware: 421 for a request whose host the listener does not answer.
pub(crate) async fn check_host(State(gate): State<HostGate>, request: Request, next: Next) -> Response {
    match gate.check(&request) {
        Ok(()) => next.run(request).await,
        Err(refused) => super::http::error_response(refused),
    }
}

/// A Governance gRPC call's checks: that it is sent as gRPC (415) and its
/// host (PERMISSION_DENIED). The answer to a call refused, if it is.
pub(super) fn grpc_refusal<B>(
    request: &http::Request<B>,
    gate: &HostGate,
) -> Option<http::Response<tonic::body::Body>> {
    let content_type = request.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()).unwrap_or_default();
    if !content_type.starts_with(b"application/grpc") {
        return Some(super::http::error_response(ApiError::NotGrpcContentType).map(tonic::body::Body::new));
    }
    gate.check(request).err().map(|refused| tonic::Status::from(refused).into_http())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_content_type(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_json_content_types_are_accepted() {
        for json in ["application/json", "Application/JSON; charset=utf-8", "application/merge-patch+json"] {
            assert!(check_json_content_type(&with_content_type(json)).is_ok(), "{json}");
        }
        for other in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json"] {
            assert!(check_json_content_type(&with_content_type(other)).is_err(), "{other}");
        }
        assert!(check_json_content_type(&HeaderMap::new()).is_err(), "no content type");
    }

    #[test]
    fn a_loopback_listener_answers_loopback_names_addresses_and_the_configured_names_only() {
        let gate = HostGate::for_listener("127.0.0.1".parse().unwrap(), &["Governance.Internal".into()]);
        for allowed in [
            "localhost",
            "localhost:50051",
            "app.localhost:80",
            "127.0.0.1:50051",
            "127.8.9.1",
            "[::1]:50051",
            "[::1]",
            "LOCALHOST.",
            "governance.internal:50051",
            "10.0.0.1:50051",
            "[fd00::2]:1",
        ] {
            assert!(gate.allows(allowed), "{allowed}");
        }
        for refused in ["evil.example:50051", "evil.example", "localhost.evil.example", "evil.example:x", ""] {
            assert!(!gate.allows(refused), "{refused}");
        }
    }

    #[test]
    fn a_listener_on_every_interface_is_guarded_and_one_on_a_routable_address_is_not() {
        for everywhere in ["0.0.0.0", "::"] {
            let gate = HostGate::for_listener(everywhere.parse().unwrap(), &[]);
            assert!(!gate.allows("evil.example:50051") && gate.allows("localhost:50051"), "{everywhere}");
        }
        let gate = HostGate::for_listener("10.1.2.3".parse().unwrap(), &[]);
        assert!(gate.allows("governance.payments.svc.cluster.local:50051"));
    }
}
