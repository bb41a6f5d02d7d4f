//! Where a request's workspace and principal come from: what the operator
//! says the mesh puts where (`--gateway-workspace`, `--gateway-principal`).
//!
//! The principal must come from something the proxy vouches for, never from
//! what a client may set at will. Envoy adds to `x-forwarded-client-cert`
//! an element for the peer certificate it verified, last: Istio's sidecars
//! append it to what the client sent (`APPEND_FORWARD`), its gateways
//! replace the client's header (`SANITIZE_SET`). So the principal is the
//! last element's one `URI`, and a header that could be read two ways (a
//! quote left open, which would fold the proxy's element into a client's,
//! or two `URI`s in the last element) names no principal. `jwt_authn`
//! passes on only payloads it verified. A header source is as trustworthy
//! as the proxy's handling of that header (`docs/gateway.md`).

use anyhow::bail;

use super::Untranslatable;
use super::request::HttpRequest;
use crate::decision::{Map, Value};

/// Where the workspace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceSource {
    /// `header:NAME`
    Header(String),
    /// `path:PARAMETER`, a `{parameter}` of every route's template.
    PathParameter(String),
    /// `value:WORKSPACE`, one workspace for everything this proxy guards.
    Fixed(String),
}

/// Where the principal comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalSource {
    /// `header:NAME`, a header the proxy sets from what it verified.
    Header(String),
    /// `xfcc`: the `URI` (a SPIFFE ID) of the last element of
    /// `x-forwarded-client-cert`, the peer Envoy verified.
    ClientCertificate,
    /// `jwt:CLAIM`: a string claim of a payload Envoy's `jwt_authn` verified.
    JwtClaim(String),
}

const XFCC_HEADER: &str = "x-forwarded-client-cert";

impl WorkspaceSource {
    pub fn parse(text: &str) -> anyhow::Result<WorkspaceSource> {
        Ok(match text.split_once(':') {
            Some(("header", name)) => WorkspaceSource::Header(header_name(name)?),
            Some(("path", name)) if !name.is_empty() => WorkspaceSource::PathParameter(name.to_owned()),
            Some(("value", workspace)) if !workspace.is_empty() => WorkspaceSource::Fixed(workspace.to_owned()),
            _ => bail!("`{text}` is not a workspace source: header:NAME, path:PARAMETER or value:WORKSPACE"),
        })
    }

    pub(super) fn read(&self, request: &HttpRequest<'_>, parameters: &Map) -> Result<String, Untranslatable> {
        let found = match self {
            WorkspaceSource::Header(name) => request.headers.one(name)?.map(str::trim).map(str::to_owned),
            WorkspaceSource::PathParameter(name) => match parameters.get(name.as_str()) {
                // Validation would trim it, and the upstream would not: one workspace read two ways.
                Some(Value::Str(value)) if value.trim() != value.as_str() => {
                    return Err(Untranslatable::BadPath(format!("the workspace `{value}` has surrounding spaces")));
                }
                Some(Value::Str(value)) => Some(value.to_string()),
                _ => None,
            },
            WorkspaceSource::Fixed(workspace) => Some(workspace.clone()),
        };
        found.filter(|w| !w.is_empty()).ok_or_else(|| Untranslatable::NoWorkspace(self.to_string()))
    }
}

impl std::fmt::Display for WorkspaceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkspaceSource::Header(name) => write!(f, "header {name}"),
            WorkspaceSource::PathParameter(name) => write!(f, "path parameter {{{name}}}"),
            WorkspaceSource::Fixed(workspace) => write!(f, "the fixed workspace {workspace}"),
        }
    }
}

impl PrincipalSource {
    pub fn parse(text: &str) -> anyhow::Result<PrincipalSource> {
        Ok(match text.split_once(':') {
            None if text == "xfcc" => PrincipalSource::ClientCertificate,
            Some(("header", name)) => PrincipalSource::Header(header_name(name)?),
            Some(("jwt", claim)) if !claim.is_empty() => PrincipalSource::JwtClaim(claim.to_owned()),
            _ => bail!("`{text}` is not a principal source: header:NAME, xfcc or jwt:CLAIM"),
        })
    }

    /// The principal's `type` when the operator sets none.
    pub(super) fn default_type(&self) -> &'static str {
        match self {
            PrincipalSource::ClientCertificate => "service",
            PrincipalSource::Header(_) | PrincipalSource::JwtClaim(_) => "user",
        }
    }

    pub(super) fn read(&self, request: &HttpRequest<'_>) -> Result<String, Untranslatable> {
        let found = match self {
            PrincipalSource::Header(name) => request.headers.one(name)?.map(str::trim).map(str::to_owned),
            PrincipalSource::ClientCertificate => request.headers.get(XFCC_HEADER)?.and_then(xfcc_uri),
            PrincipalSource::JwtClaim(claim) => {
                request.jwt_payloads.iter().find_map(|payload| match payload.get(claim.as_str()) {
                    Some(Value::Str(value)) => Some(value.to_string()),
                    _ => None,
                })
            }
        };
        found.filter(|p| !p.is_empty()).ok_or_else(|| Untranslatable::NoPrincipal(self.to_string()))
    }
}

impl std::fmt::Display for PrincipalSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PrincipalSource::Header(name) => write!(f, "header {name}"),
            PrincipalSource::ClientCertificate => write!(f, "{XFCC_HEADER} URI"),
            PrincipalSource::JwtClaim(claim) => write!(f, "JWT claim {claim}"),
        }
    }
}

/// A header name as HTTP/2 and Envoy hold it: lower case.
fn header_name(name: &str) -> anyhow::Result<String> {
    match http::HeaderName::from_bytes(name.as_bytes()) {
        Ok(header) => Ok(header.as_str().to_owned()),
        Err(_) => bail!("`{name}` is not a header name"),
    }
}

/// The `URI` of the last element of an `x-forwarded-client-cert` value:
/// elements are separated by commas, their pairs by semicolons, and a
/// value may be quoted (a `Subject` holds commas), with `\"` inside.
/// `None` unless the quoting closes and the last element has one `URI`.
fn xfcc_uri(value: &str) -> Option<String> {
    let elements = split_unquoted(value, ',')?;
    let last = elements.last()?;
    let mut uris = split_unquoted(last, ';')?.into_iter().filter_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim().eq_ignore_ascii_case("uri").then(|| unquote(value.trim()))
    });
    match (uris.next(), uris.next()) {
        (Some(uri), None) => Some(uri),
        _ => None,
    }
}

/// `text` split on `separator` outside quotes; `None` if a quote or an
/// escape is left open at the end.
fn split_unquoted(text: &str, separator: char) -> Option<Vec<&str>> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (index, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    (!quoted && !escaped).then_some(parts)
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\""),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_certificate_is_the_last_elements_uri() {
        let one = r#"By=spiffe://cluster.local/ns/a/sa/api;Hash=468;Subject="/C=US/CN=a, b";URI=spiffe://cluster.local/ns/b/sa/web"#;
        assert_eq!(xfcc_uri(one).as_deref(), Some("spiffe://cluster.local/ns/b/sa/web"));
        let two = format!("{one},By=spiffe://x;URI=spiffe://cluster.local/ns/c/sa/edge");
        assert_eq!(xfcc_uri(&two).as_deref(), Some("spiffe://cluster.local/ns/c/sa/edge"));
        assert_eq!(xfcc_uri("By=spiffe://x;Hash=1"), None);
        assert_eq!(xfcc_uri(r#"URI="spiffe://q\"x""#).as_deref(), Some("spiffe://q\"x"));
    }

    #[test]
    fn a_client_cannot_fold_the_proxys_element_into_its_own() {
        // Istio's sidecars append their element to the client's header (APPEND_FORWARD).
        let proxy =
            r#",By=spiffe://cluster.local/ns/a/sa/api;Hash=1;Subject="";URI=spiffe://cluster.local/ns/x/sa/attacker"#;
        for forged in [
            r#"URI=spiffe://cluster.local/ns/prod/sa/admin;X=""#,
            r#"URI=spiffe://cluster.local/ns/prod/sa/admin;X="\"#,
            r#"X="a\"#,
        ] {
            let header = format!("{forged}{proxy}");
            assert_eq!(xfcc_uri(&header), None, "{header}");
        }
        // A client's well-formed element is ignored: the proxy's, last, is the principal.
        let header = format!("URI=spiffe://cluster.local/ns/prod/sa/admin{proxy}");
        assert_eq!(xfcc_uri(&header).as_deref(), Some("spiffe://cluster.local/ns/x/sa/attacker"));
        assert_eq!(xfcc_uri("URI=spiffe://a;URI=spiffe://b"), None);
    }

    #[test]
    fn sources_are_parsed_and_bad_ones_refused() {
        assert_eq!(
            WorkspaceSource::parse("header:X-Workspace").unwrap(),
            WorkspaceSource::Header("x-workspace".into())
        );
        assert_eq!(PrincipalSource::parse("jwt:sub").unwrap(), PrincipalSource::JwtClaim("sub".into()));
        for bad in ["header:", "path:", "value:", "cookie:x", "header:a b"] {
            assert!(WorkspaceSource::parse(bad).is_err(), "{bad}");
        }
        for bad in ["xfcc:x", "jwt:", "header:", "spiffe"] {
            assert!(PrincipalSource::parse(bad).is_err(), "{bad}");
        }
    }
}
