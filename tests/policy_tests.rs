//! `governance-sidecar policy test`, run as a CI job runs it: the real
//! binary on real files, its exit status, what it prints, and the JUnit XML
//! it writes, read back by a real XML parser (Python's ElementTree).

use std::path::{Path, PathBuf};
use std::process::Command;

use governance_sidecar::decision::json;
use governance_sidecar::decision::{Map, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_governance-sidecar");

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn invoice_bundle() -> PathBuf {
    repository().join("deploy/examples/invoice/policy-bundle.json")
}

/// What one run of the binary did.
#[derive(Debug)]
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(arguments: &[&str], directory: &Path) -> Ran {
    let output = Command::new(BINARY).args(arguments).current_dir(directory).output().unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// `policy test --policy-bundle <the invoice bundle> <arguments>`, in `directory`.
fn test_with_invoice_bundle(arguments: &[&str], directory: &Path) -> Ran {
    let bundle = invoice_bundle();
    let mut all = vec!["policy", "test", "--policy-bundle", bundle.to_str().unwrap()];
    all.extend(arguments);
    run(&all, directory)
}

/// A test file of `cases` (JSON, comma-separated) with the fixture `invoice`
/// (250 USD), written to `directory/name`.
fn write_tests(directory: &Path, name: &str, cases: &str) -> PathBuf {
    let text = format!(
        r#"{{"schema_version": "governance-sidecar.policy-tests.v1",
            "fixtures": {{"invoice": {{"workspace_id": "ws_1", "principal": {{"type": "user", "id": "usr_42"}},
                "object_type": "invoice", "operation": "create", "payload": {{"amount": 250, "currency": "USD"}}}}}},
            "cases": [{cases}]}}"#
    );
    let path = directory.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

const APPROVED: &str = r#"{"name": "250 USD is approved", "fixture": "invoice", "expect": {"decision": "approved"}}"#;

/// A JUnit report as an XML parser reads it: per suite its counts, and per
/// case its name and whether it has a `<failure>` or an `<error>` (their
/// messages).
fn parsed_junit(path: &Path) -> Value {
    const READER: &str = r#"
import json, sys, xml.etree.ElementTree as ElementTree

def counts(element):
    return {key: int(element.get(key)) for key in ("tests", "failures", "errors")}

def message(case, tag):
    found = case.find(tag)
    return None if found is None else found.get("message")

def case(c):
    return {"name": c.get("name"), "classname": c.get("classname"), "time": float(c.get("time")),
            "failure": message(c, "failure"), "error": message(c, "error")}

def suite(s):
    return dict(counts(s), name=s.get("name"), cases=[case(c) for c in s.findall("testcase")])

root = ElementTree.parse(sys.argv[1]).getroot()
print(json.dumps(dict(counts(root), tag=root.tag, suites=[suite(s) for s in root.findall("testsuite")])))
"#;
    let output = Command::new("python3").args(["-c", READER]).arg(path).output().expect("python3 runs");
    assert!(output.status.success(), "the JUnit report does not parse: {}", String::from_utf8_lossy(&output.stderr));
    json::parse(&String::from_utf8(output.stdout).unwrap()).unwrap()
}

fn get<'v>(value: &'v Value, key: &str) -> &'v Value {
    Value::or_null(value.as_object().and_then(|map: &Map| map.get(key)))
}

fn items(value: &Value) -> &[Value] {
    value.as_sequence().unwrap()
}

#[test]
fn the_invoice_examples_tests_pass_against_its_bundle() {
    let ran = test_with_invoice_bundle(&["deploy/examples/invoice/policy.tests.json"], repository());
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines[0], "deploy/examples/invoice/policy.tests.json");
    assert_eq!(lines[1..lines.len() - 1].iter().filter(|line| line.starts_with("  ok    ")).count(), 7, "{ran:?}");
    assert_eq!(lines.last(), Some(&"7 cases: 7 passed, 0 failed"));
    assert_eq!(ran.stderr, "");
}

/// docs/policy-tests.md shows the invoice example's run as it prints.
#[test]
fn the_policy_tests_page_shows_what_the_invoice_example_prints() {
    let ran = test_with_invoice_bundle(&["deploy/examples/invoice"], repository());
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let page = std::fs::read_to_string(repository().join("docs/policy-tests.md")).unwrap();
    assert!(
        page.contains(&format!("```text\n{}```", ran.stdout)),
        "docs/policy-tests.md does not show:\n{}",
        ran.stdout
    );
}

#[test]
fn the_starter_that_start_writes_passes_its_own_tests() {
    let scratch = tempfile::tempdir().unwrap();
    assert_eq!(run(&["start", "--dir", "starter"], scratch.path()).code, Some(0));
    let ran = run(&["policy", "test", "--policy", "starter/policy.json", "starter"], scratch.path());
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stdout.starts_with("starter/policy.tests.json\n  ok    "), "{}", ran.stdout);
    assert!(ran.stdout.ends_with("\n3 cases: 3 passed, 0 failed\n"), "{}", ran.stdout);
}

#[test]
fn a_failing_case_exits_1_and_prints_its_first_difference_and_kernites_reason_codes() {
    let scratch = tempfile::tempdir().unwrap();
    write_tests(
        scratch.path(),
        "invoice.tests.json",
        &format!(
            r#"{APPROVED},
            {{"name": "a delete is denied", "fixture": "invoice", "patch": {{"operation": "delete"}},
             "expect": {{"decision": "denied", "reason_codes": ["nothing_like_it"]}}}},
            {{"name": "5000 is denied for currency", "fixture": "invoice", "patch": {{"payload": {{"amount": 5000}}}},
             "expect": {{"decision": "denied", "reason_codes": ["currency_denied"]}}}},
            {{"name": "GBP is denied by another policy", "fixture": "invoice", "patch": {{"payload": {{"currency": "GBP"}}}},
             "expect": {{"decision": "denied", "matched_policies": ["invoice_create", "gbp"]}}}}"#
        ),
    );
    let ran = test_with_invoice_bundle(&["invoice.tests.json"], scratch.path());
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert_eq!(
        ran.stdout,
        r#"invoice.tests.json
  ok    250 USD is approved
  FAIL  a delete is denied
        decision: expected "denied", got "approved"
        Kernite's reason codes: ["out_of_scope_phase1"]
  FAIL  5000 is denied for currency
        reason_codes: expected ["currency_denied"], got ["max_amount_denied"]
  FAIL  GBP is denied by another policy
        matched_policies: expected ["gbp", "invoice_create"], got ["invoice_create"]
        Kernite's reason codes: ["currency_denied"]
4 cases: 1 passed, 3 failed
"#
    );
}

#[test]
fn a_malformed_test_file_exits_2_naming_the_file_the_case_and_the_field_and_passes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    for (case, refusal) in [
        (
            r#"{"name": "typo", "fixture": "invoice", "expect": {"decision": "approved"}, "expcet": {}}"#,
            r#"cases[1] "typo": expcet: unknown key"#,
        ),
        (
            r#"{"name": "no decision", "fixture": "invoice", "expect": {"reason_codes": []}}"#,
            r#"cases[1] "no decision": expect.decision: must be "approved" or "denied""#,
        ),
        (
            r#"{"name": "lost", "fixture": "invoices", "expect": {"decision": "approved"}}"#,
            r#"cases[1] "lost": fixture: no fixture is named "invoices" (fixtures: invoice)"#,
        ),
        (
            r#"{"name": "own policies", "fixture": "invoice", "patch": {"policy_context": {"governed": false}},
               "expect": {"decision": "approved"}}"#,
            r#"cases[1] "own policies": request.policy_context: not allowed"#,
        ),
        (
            r#"{"name": "nobody", "fixture": "invoice", "patch": {"principal": {"id": null}},
               "expect": {"decision": "approved"}}"#,
            r#"cases[1] "nobody": request.principal.id: Kernite's validation rejects it"#,
        ),
        (r#"{"name": "unclosed", "fixture": "invoice", "expect": {"decision": "approved"}"#, "not valid JSON: "),
    ] {
        let file = write_tests(scratch.path(), "bad.tests.json", &format!("{APPROVED}, {case}"));
        let junit = scratch.path().join("junit.xml");
        let ran =
            test_with_invoice_bundle(&["--junit", junit.to_str().unwrap(), file.to_str().unwrap()], scratch.path());
        assert_eq!(ran.code, Some(2), "{ran:?}");
        assert!(ran.stderr.starts_with(&format!("{}: {refusal}", file.display())), "{refusal}\n{}", ran.stderr);
        assert_eq!(ran.stdout, "", "nothing is reported as passed");
        let report = parsed_junit(&junit);
        assert_eq!((get(&report, "failures"), get(&report, "errors")), (&Value::Int(0), &Value::Int(1)));
        for suite in items(get(&report, "suites")) {
            for case in items(get(suite, "cases")) {
                assert!(!get(case, "error").is_null(), "a case without an error in {report:?}");
            }
        }
    }
}

#[test]
fn a_malformed_bundle_or_policy_exits_2_naming_it() {
    let scratch = tempfile::tempdir().unwrap();
    let tests = write_tests(scratch.path(), "fine.tests.json", APPROVED);
    let tests = tests.to_str().unwrap();
    std::fs::write(
        scratch.path().join("bundle.json"),
        r#"{"schema_version": "kernite.policy.bundle.v1", "policies": [{}]}"#,
    )
    .unwrap();
    std::fs::write(scratch.path().join("policy.json"), r#"{"policy_key": "p", "effect": "maybe"}"#).unwrap();
    for (arguments, refusal) in [
        (["--policy-bundle", "bundle.json"], "bundle.json: policies[0].policy_key: must be a non-empty string\n"),
        (["--policy", "policy.json"], "policy.json: effect: effect must be one of: allow, deny.\n"),
        (
            ["--policy", invoice_bundle().to_str().unwrap()],
            &format!("{}: this is a policy bundle: give it with --policy-bundle\n", invoice_bundle().display()),
        ),
        (["--policy-bundle", "missing.json"], "missing.json: No such file or directory (os error 2)\n"),
    ] {
        let ran = run(&["policy", "test", arguments[0], arguments[1], tests], scratch.path());
        assert_eq!((ran.code, ran.stderr.as_str(), ran.stdout.as_str()), (Some(2), refusal, ""));
    }
}

#[test]
fn exactly_one_of_policy_bundle_and_policy_is_required() {
    let scratch = tempfile::tempdir().unwrap();
    let tests = write_tests(scratch.path(), "fine.tests.json", APPROVED);
    let bundle = invoice_bundle();
    let bundle = bundle.to_str().unwrap();
    for arguments in
        [vec![tests.to_str().unwrap()], vec!["--policy-bundle", bundle, "--policy", bundle, tests.to_str().unwrap()]]
    {
        let ran = run(&[&["policy", "test"][..], &arguments].concat(), scratch.path());
        assert_eq!(ran.code, Some(2), "{ran:?}");
        assert!(ran.stderr.contains("--policy-bundle <FILE>|--policy <FILE>"), "{}", ran.stderr);
    }
}

#[test]
fn a_directory_runs_every_tests_file_in_it_depth_first_in_name_order() {
    let scratch = tempfile::tempdir().unwrap();
    for name in ["suite/b.tests.json", "suite/a.tests.json", "suite/a/z.tests.json", "suite/a/deeper/y.tests.json"] {
        write_tests(scratch.path(), name, APPROVED);
    }
    // Neither is a test file: not run (each would be refused if it were).
    std::fs::write(scratch.path().join("suite/notes.json"), "not JSON").unwrap();
    std::fs::write(scratch.path().join("suite/a/tests.json"), "not JSON").unwrap();
    let ran = test_with_invoice_bundle(&["suite"], scratch.path());
    assert_eq!(ran.code, Some(0), "{ran:?}");
    let files: Vec<&str> = ran.stdout.lines().filter(|line| !line.starts_with(' ')).collect();
    assert_eq!(
        files,
        [
            "suite/a/deeper/y.tests.json",
            "suite/a/z.tests.json",
            "suite/a.tests.json",
            "suite/b.tests.json",
            "4 cases: 4 passed, 0 failed"
        ]
    );
}

#[test]
fn a_patch_null_removes_a_field_and_keeps_the_rest_of_the_fixture() {
    let scratch = tempfile::tempdir().unwrap();
    assert_eq!(run(&["start", "--dir", "starter"], scratch.path()).code, Some(0));
    // Had the patch replaced the whole payload, the amount would be gone too
    // and the amount rule would deny as well.
    write_tests(
        scratch.path(),
        "no-currency.tests.json",
        r#"{"name": "without a currency", "fixture": "invoice", "patch": {"payload": {"currency": null}},
            "expect": {"decision": "denied", "reason_codes": ["required_currency"]}}"#,
    );
    let ran = run(&["policy", "test", "--policy", "starter/policy.json", "no-currency.tests.json"], scratch.path());
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

#[test]
fn the_junit_report_parses_with_a_suite_per_file_and_counts_that_match() {
    let scratch = tempfile::tempdir().unwrap();
    let failing = r#"{"name": "<5000> & \"USD\"\u0007 is approved", "fixture": "invoice",
                      "patch": {"payload": {"amount": 5000}}, "expect": {"decision": "approved"}}"#;
    write_tests(scratch.path(), "tests/one.tests.json", &format!("{APPROVED}, {failing}"));
    write_tests(scratch.path(), "tests/two.tests.json", APPROVED);
    let ran = test_with_invoice_bundle(&["--junit", "report.xml", "tests"], scratch.path());
    assert_eq!(ran.code, Some(1), "{ran:?}");
    let report = parsed_junit(&scratch.path().join("report.xml"));
    assert_eq!(get(&report, "tag").as_str(), Some("testsuites"));
    assert_eq!(
        [get(&report, "tests"), get(&report, "failures"), get(&report, "errors")],
        [&Value::Int(3), &Value::Int(1), &Value::Int(0)]
    );
    let suites = items(get(&report, "suites"));
    let names: Vec<&str> = suites.iter().map(|suite| get(suite, "name").as_str().unwrap()).collect();
    assert_eq!(names, ["tests/one.tests.json", "tests/two.tests.json"]);
    assert_eq!([get(&suites[0], "tests"), get(&suites[0], "failures")], [&Value::Int(2), &Value::Int(1)]);
    assert_eq!([get(&suites[1], "tests"), get(&suites[1], "failures")], [&Value::Int(1), &Value::Int(0)]);
    let failed = &items(get(&suites[0], "cases"))[1];
    // The bell (U+0007) cannot be in XML 1.0: it is dropped; the markup is escaped.
    assert_eq!(get(failed, "name").as_str(), Some(r#"<5000> & "USD" is approved"#));
    assert_eq!(get(failed, "classname").as_str(), Some("tests/one.tests.json"));
    assert_eq!(get(failed, "failure").as_str(), Some(r#"decision: expected "approved", got "denied""#));
    assert!(get(&items(get(&suites[1], "cases"))[0], "failure").is_null());
}

#[test]
fn a_junit_report_that_cannot_be_written_exits_2_printing_nothing_on_stdout() {
    let scratch = tempfile::tempdir().unwrap();
    write_tests(scratch.path(), "tests/one.tests.json", APPROVED);
    let ran = test_with_invoice_bundle(&["--junit", "no-such-directory/report.xml", "tests"], scratch.path());
    assert_eq!(ran.code, Some(2), "{ran:?}");
    assert_eq!(ran.stdout, "", "{ran:?}");
    assert!(ran.stderr.contains("no-such-directory/report.xml"), "{ran:?}");
}

#[test]
fn no_test_file_found_or_an_unreadable_path_exits_2() {
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir(scratch.path().join("empty")).unwrap();
    std::fs::write(scratch.path().join("empty/README.md"), "no tests here").unwrap();
    let ran = test_with_invoice_bundle(&["empty"], scratch.path());
    assert_eq!(
        (ran.code, ran.stderr.as_str(), ran.stdout.as_str()),
        (Some(2), "empty: no *.tests.json file in this directory\n", "")
    );
    let ran = test_with_invoice_bundle(&["nowhere.tests.json"], scratch.path());
    assert_eq!(
        (ran.code, ran.stderr.as_str(), ran.stdout.as_str()),
        (Some(2), "nowhere.tests.json: No such file or directory (os error 2)\n", "")
    );
}
