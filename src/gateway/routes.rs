//! The routes: method and path template to scope, from Kernite's operation
//! map, as an OpenAPI document names them (`/invoices/{invoiceId}`).
//!
//! A template matches a path segment by segment: a literal segment equals
//! the decoded segment, a `{parameter}` segment takes any non-empty one.
//! When several templates match, the one with a literal segment where the
//! others have a parameter, earliest, wins (OpenAPI's rule: `/invoices/mine`
//! before `/invoices/{id}`). A path with a trailing `/` takes the route
//! without it unless a template has the `/` too: many servers route both
//! alike, so such a request is decided, never passed as unmapped. Literal
//! segments compare exactly, case included.

use std::sync::Arc;

use anyhow::bail;

use crate::decision::Map;
use crate::mutations::Mutation;
use crate::policies::OperationMap;

/// One governed route, with what its evidence rows record.
#[derive(Debug)]
pub struct Route {
    /// `POST /invoices/{invoiceId}`: the `mutation` its evidence rows record.
    pub name: String,
    pub object_type: String,
    pub operation: String,
    /// The evidence store's view of the route: a write with no statements,
    /// so that its row is the evidence alone (`evidence/write.rs`).
    pub mutation: Mutation,
    method: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter(String),
}

/// Every governed route of the map.
#[derive(Debug)]
pub(super) struct Routes(Vec<Arc<Route>>);

impl Routes {
    pub fn new(operations: &OperationMap) -> anyhow::Result<Routes> {
        let mut routes: Vec<Arc<Route>> = Vec::new();
        for (id, operation) in operations.iter().filter(|(_, operation)| operation.governed) {
            let method = operation.method.to_ascii_uppercase();
            let segments = template_segments(&operation.path)?;
            if let Some(twin) = routes.iter().find(|r| r.method == method && same_shape(&r.segments, &segments)) {
                bail!("operations `{id}` and `{}` match the same requests ({method} {})", twin.name, operation.path);
            }
            let name = format!("{method} {}", operation.path);
            let mutation = Mutation::evidence_only(&name, &operation.object_type, &operation.operation);
            routes.push(Arc::new(Route {
                name,
                object_type: operation.object_type.clone(),
                operation: operation.operation.clone(),
                mutation,
                method,
                segments,
            }));
        }
        Ok(Routes(routes))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter().map(|route| &**route)
    }

    /// Every route must have the parameter `name` (the workspace's source).
    pub fn check_all_have(&self, name: &str) -> anyhow::Result<()> {
        let parameter = Segment::Parameter(name.to_owned());
        match self.0.iter().find(|route| !route.segments.contains(&parameter)) {
            Some(route) => {
                bail!("the workspace is read from the path parameter `{name}`, which `{}` lacks", route.name)
            }
            None => Ok(()),
        }
    }

    /// The route `method` and the decoded `segments` take, with the values of its parameters.
    pub fn find(&self, method: &str, segments: &[String]) -> Option<(&Arc<Route>, Map)> {
        self.find_exact(method, segments).or_else(|| match segments.split_last() {
            Some((last, rest)) if last.is_empty() => self.find_exact(method, rest),
            _ => None,
        })
    }

    fn find_exact(&self, method: &str, segments: &[String]) -> Option<(&Arc<Route>, Map)> {
        let candidates =
            self.0.iter().filter(|r| r.method.eq_ignore_ascii_case(method) && matches(&r.segments, segments));
        let route = candidates.max_by(|a, b| literal_mask(&a.segments).cmp(&literal_mask(&b.segments)))?;
        let mut parameters = Map::default();
        for (segment, value) in route.segments.iter().zip(segments) {
            if let Segment::Parameter(name) = segment {
                parameters.insert(name.as_str().into(), crate::decision::Value::str(value));
            }
        }
        Some((route, parameters))
    }
}

fn template_segments(template: &str) -> anyhow::Result<Vec<Segment>> {
    let Some(rest) = template.strip_prefix('/') else { bail!("the path `{template}` does not start with /") };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !name.is_empty() && !name.contains(['{', '}']) => Ok(Segment::Parameter(name.to_owned())),
            // `{id}.json` or `{name}:void`: a parameter inside a segment, which would
            // otherwise be a literal no request matches, the route silently unmapped.
            _ if segment.contains(['{', '}']) => {
                bail!("the path `{template}` has a parameter inside the segment `{segment}`, which the gateway does not match: give it a segment of its own, or mark the operation \"governed\": false")
            }
            _ => Ok(Segment::Literal(segment.to_owned())),
        })
        .collect()
}

fn matches(template: &[Segment], segments: &[String]) -> bool {
    template.len() == segments.len()
        && template.iter().zip(segments).all(|(t, s)| match t {
            Segment::Literal(literal) => literal == s,
            Segment::Parameter(_) => !s.is_empty(),
        })
}

/// Whether two templates match the same paths.
fn same_shape(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            (Segment::Parameter(_), Segment::Parameter(_)) => true,
            _ => false,
        })
}

/// Literal segments as `true`, compared in order: the earliest literal wins.
fn literal_mask(segments: &[Segment]) -> Vec<bool> {
    segments.iter().map(|s| matches!(s, Segment::Literal(_))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        let map = OperationMap::parse(
            r#"{"operations": [
            {"operation_id": "one", "method": "get", "path": "/invoices/{id}", "object_type": "invoice", "operation": "read"},
            {"operation_id": "mine", "method": "get", "path": "/invoices/mine", "object_type": "invoice", "operation": "list_mine"}]}"#,
        )
        .unwrap();
        let routes = Routes::new(&map).unwrap();
        let find = |path: &[&str]| {
            let segments: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
            routes.find("GET", &segments).map(|(route, _)| route.operation.clone())
        };
        assert_eq!(find(&["invoices", "mine"]).as_deref(), Some("list_mine"));
        assert_eq!(find(&["invoices", "7"]).as_deref(), Some("read"));
        assert_eq!(find(&["invoices", ""]), None);
        assert_eq!(find(&["invoices"]), None);
        assert_eq!(find(&["invoices", "7", ""]).as_deref(), Some("read"), "a trailing / takes the route without it");
        assert_eq!(find(&["Invoices", "7"]), None, "literal segments compare exactly");
    }

    #[test]
    fn a_parameter_inside_a_segment_is_refused_at_start() {
        for path in ["/invoices/{id}.json", "/invoices/{id}:void", "/x/{a}{b}", "/x/{"] {
            let map = format!(
                r#"{{"operations": [{{"operation_id": "a", "method": "get", "path": "{path}", "object_type": "x", "operation": "a"}}]}}"#
            );
            let error = Routes::new(&OperationMap::parse(&map).unwrap()).unwrap_err();
            assert!(error.to_string().contains("inside the segment"), "{path}: {error}");
        }
    }
}
