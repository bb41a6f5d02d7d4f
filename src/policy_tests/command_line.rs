//! `policy test` on the command line: the files it reads and writes, what
//! it prints, and its exit status (0 every case passed, 1 some failed, 2 the
//! run cannot be trusted: policies that do not load, a test file that is
//! malformed or unreadable, a path with no test file).

use std::path::{Path, PathBuf};

use super::policies::Policies;
use super::report::{self, Summary};
use super::run::{self, Outcome};
use super::suite::Suite;
use super::{Problem, TestedFile, junit};

/// `policy test`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("policies").required(true).args(["policy_bundle", "policy"])))]
pub struct TestArgs {
    /// Kernite policy bundle (`kernite.policy.bundle.v1`) to decide with, as `serve --policy-bundle` loads it.
    #[arg(long, value_name = "FILE")]
    pub policy_bundle: Option<PathBuf>,
    /// One Kernite policy (such as the starter's `policy.json`) that governs every request's scope.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Also write a JUnit XML report to this file, for CI systems.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Test files, or directories whose `*.tests.json` files are run (recursively, sorted by path).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Which flag named the policies under test.
enum PolicyFile<'a> {
    Bundle(&'a Path),
    Single(&'a Path),
}

impl TestArgs {
    fn policy_file(&self) -> PolicyFile<'_> {
        match (&self.policy_bundle, &self.policy) {
            (Some(bundle), _) => PolicyFile::Bundle(bundle),
            (None, Some(policy)) => PolicyFile::Single(policy),
            (None, None) => unreachable!("clap requires --policy-bundle or --policy"),
        }
    }
}

/// Runs `policy test`; the exit code.
pub fn test(args: &TestArgs) -> u8 {
    match tested_files(args) {
        Ok(files) => {
            // The report file first: on 2, nothing is printed on stdout.
            if let Some(path) = &args.junit
                && let Err(problem) = write(path, &junit::report(&files))
            {
                eprintln!("{problem}");
                return 2;
            }
            print!("{}", report::text(&files));
            if Summary::of(&files).failed == 0 { 0 } else { 1 }
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            if let Some(path) = &args.junit
                && let Err(problem) = write(path, &junit::errors(&problems))
            {
                eprintln!("{problem}");
            }
            2
        }
    }
}

/// Every test file run, or every problem that stops the run.
fn tested_files(args: &TestArgs) -> Result<Vec<TestedFile>, Vec<Problem>> {
    let policies = load_policies(args.policy_file()).map_err(|problem| vec![problem])?;
    let paths = test_files(&args.paths).map_err(|problem| vec![problem])?;
    let mut tested = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for path in paths {
        match test_file(&path, &policies) {
            Ok(outcomes) => tested.push(TestedFile { path: path.display().to_string(), outcomes }),
            Err(found) => problems.extend(found),
        }
    }
    if problems.is_empty() { Ok(tested) } else { Err(problems) }
}

fn load_policies(file: PolicyFile<'_>) -> Result<Policies, Problem> {
    let (path, policies) = match file {
        PolicyFile::Bundle(path) => (path, std::fs::read(path).map(|bytes| Policies::bundle(&bytes))),
        PolicyFile::Single(path) => (path, std::fs::read_to_string(path).map(|text| Policies::single(&text))),
    };
    let problem = |message: &dyn std::fmt::Display| Problem::new(path.display(), message);
    policies.map_err(|error| problem(&error))?.map_err(|error| problem(&error))
}

/// The outcomes of one test file's cases, or what is wrong with it.
fn test_file(path: &Path, policies: &Policies) -> Result<Vec<Outcome>, Vec<Problem>> {
    let source = &path.display();
    let text = std::fs::read_to_string(path).map_err(|error| vec![Problem::new(source, error)])?;
    let suite = Suite::parse(&text).map_err(|malformed| vec![Problem::malformed(source, malformed)])?;
    run::run(&suite, policies)
        .map_err(|malformed| malformed.into_iter().map(|malformed| Problem::malformed(source, malformed)).collect())
}

/// The suffix that marks a test file in a directory.
const TEST_FILE_SUFFIX: &str = ".tests.json";

/// The test files `paths` name, each once: a file as it is, a directory's
/// `*.tests.json` files at any depth, sorted by path. A directory without
/// one is a problem: a mistyped path must not pass by testing nothing.
fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problem> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        let metadata = std::fs::metadata(path).map_err(|error| Problem::new(path.display(), error))?;
        let mut found = Vec::new();
        if metadata.is_dir() {
            collect_test_files(path, &mut found)?;
            if found.is_empty() {
                return Err(Problem::new(path.display(), format!("no *{TEST_FILE_SUFFIX} file in this directory")));
            }
            found.sort();
        } else {
            found.push(path.clone());
        }
        for file in found {
            if !files.contains(&file) {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// The `*.tests.json` files under `directory`. Symbolic links to
/// directories are not followed, so that a link cycle cannot loop.
fn collect_test_files(directory: &Path, found: &mut Vec<PathBuf>) -> Result<(), Problem> {
    let unreadable = |error: std::io::Error| Problem::new(directory.display(), error);
    for entry in std::fs::read_dir(directory).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let path = entry.path();
        if entry.file_type().map_err(unreadable)?.is_dir() {
            collect_test_files(&path, found)?;
        } else if entry.file_name().to_string_lossy().ends_with(TEST_FILE_SUFFIX) && path.is_file() {
            found.push(path);
        }
    }
    Ok(())
}

/// Writes a report file.
fn write(path: &Path, contents: &str) -> Result<(), Problem> {
    std::fs::write(path, contents).map_err(|error| Problem::new(path.display(), format!("writing the report: {error}")))
}
