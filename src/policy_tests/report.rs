//! What `policy test` prints: per file, one line per case (`ok` or `FAIL`),
//! under each failure its first difference and Kernite's reason codes, and
//! a closing count.
//!
//! ```text
//! deploy/examples/invoice/policy.tests.json
//!   ok    an invoice of 250 USD is approved
//!   FAIL  an invoice of 5000 USD is denied
//!         decision: expected "denied", got "approved"
//!         Kernite's reason codes: []
//! 2 cases: 1 passed, 1 failed
//! ```

use std::fmt;

use super::TestedFile;
use super::run::{Difference, Failure, Verdict, list};
use super::suite::quoted;

/// How many cases ran, passed and failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub cases: usize,
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn of(files: &[TestedFile]) -> Summary {
        let outcomes = files.iter().flat_map(|file| &file.outcomes);
        let failed = outcomes.clone().filter(|outcome| outcome.verdict != Verdict::Passed).count();
        let cases = outcomes.count();
        Summary { cases, passed: cases - failed, failed }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Summary { cases, passed, failed } = self;
        let noun = if *cases == 1 { "case" } else { "cases" };
        write!(f, "{cases} {noun}: {passed} passed, {failed} failed")
    }
}

/// The lines explaining a failure: the first difference, then (unless that
/// was about them) the reason codes Kernite gave, which say why it decided
/// as it did.
pub fn failure_lines(failure: &Failure) -> Vec<String> {
    let mut lines = vec![failure.difference.to_string()];
    if !matches!(failure.difference, Difference::ReasonCodes { .. }) {
        lines.push(format!("Kernite's reason codes: {}", list(&failure.reason_codes)));
    }
    lines
}

/// A case's name on one line: quoted when it holds a line break or another
/// control character.
pub fn one_line(name: &str) -> String {
    if name.chars().any(char::is_control) { quoted(name) } else { name.to_owned() }
}

/// The whole report, summary last.
pub fn text(files: &[TestedFile]) -> String {
    let mut out = String::new();
    for file in files {
        out.push_str(&file.path);
        out.push('\n');
        for outcome in &file.outcomes {
            let name = one_line(&outcome.name);
            match &outcome.verdict {
                Verdict::Passed => out.push_str(&format!("  ok    {name}\n")),
                Verdict::Failed(failure) => {
                    out.push_str(&format!("  FAIL  {name}\n"));
                    for line in failure_lines(failure) {
                        out.push_str(&format!("        {line}\n"));
                    }
                }
            }
        }
    }
    out.push_str(&format!("{}\n", Summary::of(files)));
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decision::Decision;
    use crate::policy_tests::run::Outcome;

    fn outcome(name: &str, verdict: Verdict) -> Outcome {
        Outcome { name: name.to_owned(), verdict, elapsed: Duration::from_micros(40) }
    }

    #[test]
    fn each_case_is_one_line_and_a_failure_says_what_differs_and_why() {
        let files = [
            TestedFile {
                path: "a.tests.json".into(),
                outcomes: vec![
                    outcome("small", Verdict::Passed),
                    outcome(
                        "large",
                        Verdict::Failed(Failure {
                            difference: Difference::Decision { expected: Decision::Denied, actual: Decision::Approved },
                            reason_codes: vec![],
                        }),
                    ),
                ],
            },
            TestedFile {
                path: "b.tests.json".into(),
                outcomes: vec![outcome(
                    "two\nlines",
                    Verdict::Failed(Failure {
                        difference: Difference::ReasonCodes { expected: vec!["x".into()], actual: vec!["y".into()] },
                        reason_codes: vec!["y".into()],
                    }),
                )],
            },
        ];
        assert_eq!(
            text(&files),
            "a.tests.json\n\
             \x20 ok    small\n\
             \x20 FAIL  large\n\
             \x20       decision: expected \"denied\", got \"approved\"\n\
             \x20       Kernite's reason codes: []\n\
             b.tests.json\n\
             \x20 FAIL  \"two\\nlines\"\n\
             \x20       reason_codes: expected [\"x\"], got [\"y\"]\n\
             3 cases: 1 passed, 2 failed\n"
        );
    }

    #[test]
    fn the_summary_counts_one_case_as_one() {
        let files = [TestedFile { path: "a".into(), outcomes: vec![outcome("only", Verdict::Passed)] }];
        assert_eq!(Summary::of(&files).to_string(), "1 case: 1 passed, 0 failed");
    }
}
