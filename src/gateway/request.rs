//! What a proxy tells the sidecar about the request it holds, in one shape
//! for every front end: Envoy's `CheckRequest` and a forward-auth request
//! are both read into an [`HttpRequest`] by `api/check.rs`.

use crate::decision::Map;

/// The request a proxy asks about.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// As sent: `POST`, `delete`, … (compared without regard to case).
    pub method: &'a str,
    /// The path and query string as sent, percent-encoded: `/invoices/7?draft=yes`.
    pub path_and_query: &'a str,
    pub headers: Headers<'a>,
    /// The body, when the proxy sends it (Envoy's `with_request_body`);
    /// nginx and Caddy send none.
    pub body: Option<&'a [u8]>,
    /// The verified JWT payloads Envoy's `jwt_authn` filter passed on in its
    /// metadata, in the order of their keys (gRPC Check only).
    pub jwt_payloads: &'a [Map],
}

/// The request's headers, as each front end holds them.
#[derive(Debug, Clone, Copy)]
pub enum Headers<'a> {
    /// Envoy's map: names in lower case, a repeated header's values joined by commas.
    Envoy(&'a std::collections::HashMap<String, String>),
    /// A forward-auth request's own headers.
    Http(&'a http::HeaderMap),
    /// Name and value pairs, names in lower case (tests).
    Pairs(&'a [(String, String)]),
}

impl<'a> Headers<'a> {
    /// The value of the header `name` (lower case), if present and text.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        match *self {
            Headers::Envoy(map) => map.get(name).map(String::as_str),
            Headers::Http(map) => map.get(name).and_then(|value| value.to_str().ok()),
            Headers::Pairs(pairs) => pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()),
        }
    }
}
