//! What keeps a web page from driving the HTTP routes.
//!
//! A page open in a browser on the machine that runs `dev` or compose can
//! send requests to `127.0.0.1`. Two rules close that door:
//!
//! - **A JSON content type on every POST** (415 otherwise), as Kernite's own
//!   clients send it. A cross-site page can POST only the "simple" types
//!   (`text/plain`, forms) without asking the server first (CORS preflight),
//!   and the sidecar answers no preflight.
//! - **A loopback name in `Host` on a loopback listener** (421 otherwise),
//!   or one of `--allowed-hosts`. A page that rebinds its own name to
//!   127.0.0.1 is same-origin with the sidecar, but its requests still carry
//!   that name.
//!
//! gRPC is not concerned: a browser cannot make a gRPC call.

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
    /// A listener on a routable address: whatever name reached it.
    AnyHost,
    /// A loopback listener: loopback names and addresses, and these.
    Loopback(Arc<[String]>),
}

impl HostGate {
    /// The gate of a listener on `address`, allowing `also` beside loopback names.
    pub(crate) fn for_listener(address: IpAddr, also: &[String]) -> HostGate {
        if address.is_loopback() {
            HostGate::Loopback(also.iter().map(|name| normalise(name)).collect())
        } else {
            HostGate::AnyHost
        }
    }

    /// Whether a request naming `host` (`name[:port]`, or `[v6]:port`) is answered.
    fn allows(&self, host: &str) -> bool {
        let HostGate::Loopback(also) = self else { return true };
        let name = match host.strip_prefix('[') {
            Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
            None => host
                .rsplit_once(':')
                .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host }),
        };
        let name = normalise(name);
        name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || also.contains(&name)
    }
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The middleware: 421 for a request whose host the listener does not answer.
/// A request without any host (HTTP/1.0) is no browser's.
pub(crate) async fn check_host(State(gate): State<HostGate>, request: Request, next: Next) -> Response {
    let host = request
        .uri()
        .authority()
        .map(|authority| authority.as_str().rsplit('@').next().unwrap_or("").to_owned())
        .or_else(|| request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned));
    match host {
        Some(host) if !gate.allows(&host) => super::http::error_response(ApiError::HostNotAllowed(host)),
        _ => next.run(request).await,
    }
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
    fn a_loopback_listener_answers_loopback_names_and_the_configured_ones_only() {
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
        ] {
            assert!(gate.allows(allowed), "{allowed}");
        }
        for refused in ["evil.example:50051", "evil.example", "10.0.0.1:50051", "localhost.evil.example", "[::2]:1", ""]
        {
            assert!(!gate.allows(refused), "{refused}");
        }
    }

    #[test]
    fn a_routable_listener_answers_any_host() {
        let gate = HostGate::for_listener("0.0.0.0".parse().unwrap(), &[]);
        assert!(gate.allows("governance.payments.svc.cluster.local:50051"));
    }
}
