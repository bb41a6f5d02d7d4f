//! `governance-sidecar policy test`: unit tests for policies, run by the
//! engine that decides in production.
//!
//! A test file (`*.tests.json`, [`suite`]) lists requests and what the
//! policies under test ([`policies`]: an operator's bundle, or one Kernite
//! policy) must decide for each. Every case is decided exactly as `serve`
//! decides a request ([`run`]), so a bundle whose tests pass in CI decides
//! the same way once deployed. The results are printed for people
//! ([`report`]) and written as JUnit XML for CI systems ([`junit`]).
//!
//! A run is all or nothing: every file is read and every case decided
//! before anything is reported, and one malformed file or case (or policies
//! that do not load) stops the run with exit 2 and no case reported as
//! passed, so that a typo can never turn into a green build. The one part
//! that touches files is [`command_line`]; the rest is pure.

pub mod command_line;
pub mod junit;
mod merge_patch;
pub mod policies;
pub mod report;
pub mod run;
pub mod suite;

use std::fmt;

use suite::{CaseLabel, Malformed};

/// A test file and how its cases went, in the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct TestedFile {
    /// As the user named it, or as found under a directory they named.
    pub path: String,
    pub outcomes: Vec<run::Outcome>,
}

/// Why a run cannot be trusted (exit 2): the file it is about (a test file,
/// the policies, or a path given), the case if one is at fault, and what is
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub source: String,
    pub case: Option<CaseLabel>,
    pub message: String,
}

impl Problem {
    pub fn new(source: impl fmt::Display, message: impl fmt::Display) -> Problem {
        Problem { source: source.to_string(), case: None, message: message.to_string() }
    }

    /// A test file's malformed part: its case apart, to name it in JUnit.
    pub fn malformed(source: impl fmt::Display, malformed: Malformed) -> Problem {
        let Malformed { case, field, message } = malformed;
        let message = match field {
            Some(field) => format!("{field}: {message}"),
            None => message,
        };
        Problem { source: source.to_string(), case, message }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(case) = &self.case {
            write!(f, "{case}: ")?;
        }
        f.write_str(&self.message)
    }
}
