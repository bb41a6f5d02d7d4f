//! The JUnit XML report (`--junit FILE`) that CI systems (GitLab, Jenkins,
//! GitHub test reporters) read: one `<testsuite>` per test file, one
//! `<testcase>` per case, a `<failure>` under each failed one.
//!
//! A run that cannot be trusted (exit 2) still writes the file, with an
//! `<error>` for each problem and no passed case, so that a CI system shows
//! why, and never reads an earlier run's report as this one's.
//!
//! Names and messages come from test files and may hold anything: they are
//! escaped, and the characters XML 1.0 cannot hold at all (most control
//! characters, U+FFFE, U+FFFF) are dropped.

use std::fmt::Write as _;
use std::time::Duration;

use super::report::{Summary, failure_lines};
use super::run::Verdict;
use super::{Problem, TestedFile};

const HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// The report of a run whose files all ran.
pub fn report(files: &[TestedFile]) -> String {
    let total = Summary::of(files);
    let all_time: Duration = files.iter().flat_map(|file| &file.outcomes).map(|outcome| outcome.elapsed).sum();
    let mut out = String::from(HEADER);
    let _ = writeln!(
        out,
        r#"<testsuites name="governance-sidecar policy test" tests="{}" failures="{}" errors="0" time="{}">"#,
        total.cases,
        total.failed,
        seconds(all_time)
    );
    for file in files {
        let summary = Summary::of(std::slice::from_ref(file));
        let time: Duration = file.outcomes.iter().map(|outcome| outcome.elapsed).sum();
        let path = attribute(&file.path);
        let _ = writeln!(
            out,
            r#"  <testsuite name="{path}" tests="{}" failures="{}" errors="0" skipped="0" time="{}">"#,
            summary.cases,
            summary.failed,
            seconds(time)
        );
        for outcome in &file.outcomes {
            let opening = format!(
                r#"    <testcase name="{}" classname="{path}" time="{}""#,
                attribute(&outcome.name),
                seconds(outcome.elapsed)
            );
            match &outcome.verdict {
                Verdict::Passed => out.push_str(&format!("{opening}/>\n")),
                Verdict::Failed(failure) => {
                    let lines = failure_lines(failure);
                    let _ = writeln!(
                        out,
                        "{opening}>\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        attribute(&lines[0]),
                        FAILURE_TYPE,
                        text(&lines.join("\n"))
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// What a failure is, for tools that group failures by type.
const FAILURE_TYPE: &str = "policy decision";

/// The report of a run stopped by problems: an `<error>` for each, grouped
/// by the file it is about, and no passed case.
pub fn errors(problems: &[Problem]) -> String {
    let mut sources: Vec<&str> = Vec::new();
    for problem in problems {
        if !sources.contains(&problem.source.as_str()) {
            sources.push(&problem.source);
        }
    }
    let mut out = String::from(HEADER);
    let _ = writeln!(
        out,
        r#"<testsuites name="governance-sidecar policy test" tests="{0}" failures="0" errors="{0}" time="0">"#,
        problems.len()
    );
    for source in sources {
        let of_source: Vec<&Problem> = problems.iter().filter(|problem| problem.source == source).collect();
        let source = attribute(source);
        let _ = writeln!(
            out,
            r#"  <testsuite name="{source}" tests="{0}" failures="0" errors="{0}" skipped="0" time="0">"#,
            of_source.len()
        );
        for problem in of_source {
            let name = problem.case.as_ref().map_or_else(|| "(the file itself)".to_owned(), ToString::to_string);
            let _ = writeln!(
                out,
                "    <testcase name=\"{}\" classname=\"{source}\" time=\"0\">\n      <error message=\"{}\" type=\"malformed\">{}</error>\n    </testcase>",
                attribute(&name),
                attribute(&problem.message),
                text(&problem.to_string())
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Seconds, as JUnit's `time` attributes give them.
fn seconds(duration: Duration) -> String {
    format!("{:.6}", duration.as_secs_f64())
}

/// Whether XML 1.0 can hold `c` at all (its `Char` production; a Rust
/// string holds no surrogates).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Text for an element's content.
fn text(raw: &str) -> String {
    escape(raw, false)
}

/// Text for a double-quoted attribute: line breaks and tabs as character
/// references too, since a parser would turn them into spaces.
fn attribute(raw: &str) -> String {
    escape(raw, true)
}

fn escape(raw: &str, in_attribute: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars().filter(|&c| is_xml_char(c)) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attribute => out.push_str("&quot;"),
            '\n' if in_attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if in_attribute => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;
    use crate::policy_tests::run::{Difference, Failure, Outcome};

    #[test]
    fn markup_is_escaped_and_what_xml_cannot_hold_is_dropped() {
        assert_eq!(text("a < b && c > \"d\""), "a &lt; b &amp;&amp; c &gt; \"d\"");
        assert_eq!(attribute("say \"hi\"\n\tthere"), "say &quot;hi&quot;&#10;&#9;there");
        assert_eq!(
            text("bell\u{7}null\u{0}\u{FFFE}\u{FFFF} kept: \u{1F600}\u{E000}\r"),
            "bellnull kept: \u{1F600}\u{E000}&#13;"
        );
    }

    #[test]
    fn a_suite_per_file_with_its_counts_and_failures() {
        let failure = Failure {
            difference: Difference::Decision { expected: Decision::Denied, actual: Decision::Approved },
            reason_codes: vec!["out_of_scope_phase1".into()],
        };
        let files = [TestedFile {
            path: "a&b.tests.json".into(),
            outcomes: vec![
                Outcome { name: "<ok>".into(), verdict: Verdict::Passed, elapsed: Duration::from_micros(15) },
                Outcome { name: "no".into(), verdict: Verdict::Failed(failure), elapsed: Duration::from_micros(5) },
            ],
        }];
        assert_eq!(
            report(&files),
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="governance-sidecar policy test" tests="2" failures="1" errors="0" time="0.000020">
  <testsuite name="a&amp;b.tests.json" tests="2" failures="1" errors="0" skipped="0" time="0.000020">
    <testcase name="&lt;ok&gt;" classname="a&amp;b.tests.json" time="0.000015"/>
    <testcase name="no" classname="a&amp;b.tests.json" time="0.000005">
      <failure message="decision: expected &quot;denied&quot;, got &quot;approved&quot;" type="policy decision">decision: expected "denied", got "approved"
Kernite's reason codes: ["out_of_scope_phase1"]</failure>
    </testcase>
  </testsuite>
</testsuites>
"#
        );
    }

    #[test]
    fn problems_are_errors_and_nothing_passes() {
        let problems = [
            Problem::new("bundle.json", "not valid JSON"),
            Problem { source: "x.tests.json".into(), case: None, message: "cases: must hold at least one case".into() },
        ];
        let xml = errors(&problems);
        assert!(xml.contains(r#"<testsuites name="governance-sidecar policy test" tests="2" failures="0" errors="2""#));
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert_eq!(xml.matches("<error ").count(), 2);
        assert!(xml.contains(r#"<testsuite name="x.tests.json" tests="1" failures="0" errors="1""#), "{xml}");
    }
}
