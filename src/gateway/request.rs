//! What a proxy tells the sidecar about the request it holds, in one shape
//! for every front end: Envoy's `CheckRequest` and a forward-auth request
//! are both read into an [`HttpRequest`] by `api/check.rs`.

use super::Untranslatable;
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
    /// The value of the header `name` (lower case), if present and text. A
    /// header sent more than once is refused: the sidecar and the upstream
    /// could each read another of its values. (Envoy's map joins a repeated
    /// header's values with commas: see [`Headers::one`].)
    pub fn get(&self, name: &str) -> Result<Option<&'a str>, Untranslatable> {
        let repeated = || Untranslatable::RepeatedHeader(name.to_owned());
        match *self {
            Headers::Envoy(map) => Ok(map.get(name).map(String::as_str)),
            Headers::Http(map) => {
                Ok(at_most_one(map.get_all(name).iter()).ok_or_else(repeated)?.and_then(|value| value.to_str().ok()))
            }
            Headers::Pairs(pairs) => {
                at_most_one(pairs.iter().filter(|(key, _)| key == name).map(|(_, value)| value.as_str()))
                    .ok_or_else(repeated)
            }
        }
    }

    /// The one value of the header `name`, which must not be a list: a comma
    /// is refused too, since Envoy passes a repeated header's values joined
    /// by commas (and HTTP reads a comma-separated value as several).
    pub fn one(&self, name: &str) -> Result<Option<&'a str>, Untranslatable> {
        match self.get(name)? {
            Some(value) if value.contains(',') => Err(Untranslatable::RepeatedHeader(name.to_owned())),
            value => Ok(value),
        }
    }
}

/// The one item of `items` (`Some(None)` for none), or `None` when there are several.
fn at_most_one<T>(mut items: impl Iterator<Item = T>) -> Option<Option<T>> {
    match (items.next(), items.next()) {
        (_, Some(_)) => None,
        (item, None) => Some(item),
    }
}
