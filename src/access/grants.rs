//! What a caller may do: the operations it may use, in which workspaces,
//! and (for `execute`) with which mutations.

use std::collections::BTreeSet;
use std::fmt;

/// The four things a caller can be granted, one per kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Evaluate, and Kernite's HTTP decision and validation routes.
    Decide,
    /// ExecuteWithEvidence: a governed write and its evidence.
    Execute,
    /// GetEvidence, ListEvidence and inclusion proofs: a workspace's evidence.
    Read,
    /// Checkpoints and consistency proofs: the log as a whole, no row's content.
    Log,
    /// Kernite's authoring routes (policies generated from an OpenAPI
    /// document, coverage checks): no workspace's data, only computation.
    Author,
}

impl Operation {
    pub const ALL: [Operation; 5] =
        [Operation::Decide, Operation::Execute, Operation::Read, Operation::Log, Operation::Author];

    pub const fn as_str(self) -> &'static str {
        match self {
            Operation::Decide => "decide",
            Operation::Execute => "execute",
            Operation::Read => "read",
            Operation::Log => "log",
            Operation::Author => "author",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Operation {
    type Err = String;

    fn from_str(word: &str) -> Result<Operation, String> {
        Operation::ALL
            .into_iter()
            .find(|operation| operation.as_str() == word)
            .ok_or_else(|| format!("unknown operation `{word}`: use decide, execute, read, log or author"))
    }
}

/// One workspace, or every workspace whose name starts with a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspacePattern {
    /// `acme`: that workspace and no other.
    Exact(String),
    /// `acme-*`: every workspace whose name starts with `acme-` (and `*`, every workspace).
    Prefix(String),
}

impl WorkspacePattern {
    /// A name, or a prefix followed by one `*`. A `*` anywhere else is
    /// refused: it would read as a wildcard and match nothing.
    pub fn parse(text: &str) -> Result<WorkspacePattern, String> {
        match text.split_once('*') {
            None if text.is_empty() => Err("an empty workspace name".into()),
            None => Ok(WorkspacePattern::Exact(text.to_owned())),
            Some((prefix, "")) => Ok(WorkspacePattern::Prefix(prefix.to_owned())),
            Some(_) => Err(format!("`{text}`: `*` may only end a workspace pattern")),
        }
    }

    pub fn matches(&self, workspace: &str) -> bool {
        match self {
            WorkspacePattern::Exact(name) => workspace == name,
            WorkspacePattern::Prefix(prefix) => workspace.starts_with(prefix.as_str()),
        }
    }
}

/// A caller's grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub workspaces: Vec<WorkspacePattern>,
    pub operations: BTreeSet<Operation>,
    /// `execute` is limited to these mutations; `None`: any registered one.
    pub mutations: Option<BTreeSet<String>>,
}

impl Grants {
    pub fn has(&self, operation: Operation) -> bool {
        self.operations.contains(&operation)
    }

    pub fn covers(&self, workspace: &str) -> bool {
        self.workspaces.iter().any(|pattern| pattern.matches(workspace))
    }

    pub fn may_run(&self, mutation: &str) -> bool {
        self.mutations.as_ref().is_none_or(|names| names.contains(mutation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_name_matches_only_itself() {
        let exact = WorkspacePattern::parse("ws_1").unwrap();
        assert!(exact.matches("ws_1"));
        for other in ["ws_10", "ws_1-eu", "ws_", "WS_1", ""] {
            assert!(!exact.matches(other), "{other}");
        }
    }

    #[test]
    fn a_wildcard_matches_its_prefix_and_no_shorter_or_different_prefix() {
        let tenants = WorkspacePattern::parse("acme-*").unwrap();
        assert!(tenants.matches("acme-") && tenants.matches("acme-eu") && tenants.matches("acme-eu-2"));
        for other in ["acme", "acmecorp", "acme_eu", "xacme-eu", "ACME-eu"] {
            assert!(!tenants.matches(other), "{other}");
        }
        assert!(WorkspacePattern::parse("*").unwrap().matches("anything"));
    }

    #[test]
    fn a_star_that_does_not_end_the_pattern_is_refused() {
        assert!(WorkspacePattern::parse("a*b").is_err());
        assert!(WorkspacePattern::parse("**").is_err());
        assert!(WorkspacePattern::parse("").is_err());
    }

    #[test]
    fn operations_read_as_their_names() {
        for operation in Operation::ALL {
            assert_eq!(operation.as_str().parse::<Operation>().unwrap(), operation);
        }
        assert!("write".parse::<Operation>().is_err());
    }
}
