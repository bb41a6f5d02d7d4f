//! The authoring tools on the command line, as Kernite's `cli.py` runs them:
//! its flags (long ones may be abbreviated, a repeated one keeps its last
//! value), its files, its standard output line for line, and its exit codes:
//! 0 when the report is valid, 1 when it is not (or, for `start`, when the
//! directory is in the way), 2 when the input cannot be read. The one part of
//! [`crate::authoring`] that touches files.

use std::path::Path;

use super::{check, generate, starter};
use crate::decision::Value;
use crate::decision::json::{self, Dialect, to_indented_string};
use crate::decision::python::is_python_space;

/// `policy generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Path to OpenAPI JSON file.
    #[arg(long)]
    pub schema: String,
    /// Output directory for generated artifacts.
    #[arg(long)]
    pub out_dir: String,
    /// Default x-kernite mode when not explicitly defined.
    #[arg(long, default_value = "enforce", value_parser = ["enforce", "observe", "skip"])]
    pub default_mode: String,
    /// Mark report invalid when unsupported OpenAPI constraints are found.
    #[arg(long)]
    pub fail_on_unsupported: bool,
}

/// `check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Path to OpenAPI JSON file.
    #[arg(long)]
    pub schema: String,
    /// Optional policy mapping JSON file.
    #[arg(long)]
    pub mapping: Option<String>,
    /// Optional policy bundle JSON file.
    #[arg(long)]
    pub bundle: Option<String>,
    /// Path to write machine-readable check report JSON.
    #[arg(long, default_value = "kernite-check-report.json")]
    pub report_out: String,
    /// Fail on uncovered governance checks (default behavior).
    #[arg(long, overrides_with = "no_strict")]
    pub strict: bool,
    /// Downgrade coverage-only violations to warnings.
    #[arg(long, overrides_with = "strict")]
    pub no_strict: bool,
}

/// `start` and `scaffold`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Target directory for starter bundle (default: ./kernite)
    #[arg(long, default_value = "kernite")]
    pub dir: String,
    /// Overwrite files when target directory is non-empty.
    #[arg(long)]
    pub force: bool,
}

/// An input that cannot be used: its message (for standard error) and exit code.
struct Refused {
    message: String,
    exit: u8,
}

impl Refused {
    fn input(message: impl Into<String>) -> Refused {
        Refused { message: message.into(), exit: 2 }
    }

    fn report(self) -> u8 {
        eprintln!("{}", self.message);
        self.exit
    }
}

/// Runs `policy generate`; the exit code.
pub fn generate(args: &GenerateArgs) -> u8 {
    let artifacts = load_openapi(&args.schema).and_then(|openapi| {
        generate::artifacts(&openapi, &args.default_mode, args.fail_on_unsupported)
            .map_err(|error| Refused::input(error.to_string()))
    });
    let artifacts = match artifacts {
        Ok(artifacts) => artifacts,
        Err(refused) => return refused.report(),
    };
    let out_dir = python_path(&args.out_dir);
    let files = [
        (join(&out_dir, "policy-bundle.generated.json"), &artifacts.bundle),
        (join(&out_dir, "policy-map.generated.json"), &artifacts.mapping),
        (join(&out_dir, "policy-generation-report.json"), &artifacts.report),
    ];
    for (path, value) in &files {
        if let Err(error) = write_json(path, value) {
            eprintln!("{path}: {error}");
            return 1;
        }
    }
    for (path, _) in &files {
        println!("Wrote {path}");
    }
    let summary = |key: &str| summary_field(&artifacts.report, key);
    println!(
        "Policy generation summary: write_operations={} governed_operations={} policies_generated={} \
         unsupported_constraints={}",
        summary("write_operations"),
        summary("governed_operations"),
        summary("policies_generated"),
        summary("unsupported_constraints"),
    );
    if artifacts.valid() { 0 } else { 1 }
}

/// Runs `check`; the exit code.
pub fn check(args: &CheckArgs) -> u8 {
    let optional = |path: &Option<String>| match path.as_deref() {
        None | Some("") => Ok(Value::Null),
        Some(path) => read_text(path)
            .and_then(|text| json::parse_as(&text, Dialect::Python).map_err(|error| Refused::input(error.to_string()))),
    };
    let inputs = (|| Ok((load_openapi(&args.schema)?, optional(&args.mapping)?, optional(&args.bundle)?)))();
    let report = inputs.and_then(|(openapi, mapping, bundle)| {
        check::coverage(&openapi, &mapping, &bundle, !args.no_strict).map_err(|error| Refused::input(error.to_string()))
    });
    let report = match report {
        Ok(report) => report,
        Err(refused) => return refused.report(),
    };
    let report_out = python_path(&args.report_out);
    if let Err(error) = write_json(&report_out, &report) {
        eprintln!("{report_out}: {error}");
        return 1;
    }
    let summary = |key: &str| summary_field(&report, key);
    println!(
        "Policy check summary: write_operations={} violations={} warnings={} strict={}",
        summary("write_operations"),
        summary("violations"),
        summary("warnings"),
        summary("strict"),
    );
    let field = |map: &Value, key: &str| Value::or_null(map.as_object().and_then(|m| m.get(key))).clone();
    for violation in field(&report, "violations").as_sequence().unwrap_or_default().iter().take(10) {
        let text = |key| crate::decision::python::to_str(&field(violation, key));
        println!("- {}: {}", text("code"), text("message"));
    }
    println!("Wrote {report_out}");
    if super::report_is_valid(&report) { 0 } else { 1 }
}

/// Runs `start` (or `scaffold`); the exit code.
pub fn start(args: &StartArgs) -> u8 {
    let target = python_path(&args.dir);
    let directory = Path::new(&target);
    let refused = |message: String| {
        eprintln!("{message}");
        1
    };
    if directory.exists() {
        if !directory.is_dir() {
            return refused(format!("Target path is not a directory: {target}"));
        }
        let has_entries = std::fs::read_dir(directory).map(|mut entries| entries.next().is_some());
        match has_entries {
            Ok(true) if !args.force => {
                return refused(format!("Target directory is not empty: {target}. Use --force to overwrite."));
            }
            Err(error) => return refused(format!("{target}: {error}")),
            _ => {}
        }
    } else if let Err(error) = std::fs::create_dir_all(directory) {
        return refused(format!("{target}: {error}"));
    }
    for (name, text) in starter::files() {
        if let Err(error) = std::fs::write(directory.join(name), text) {
            return refused(format!("{}: {error}", join(&target, name)));
        }
    }
    println!("kernite starter bundle created at {target}");
    0
}

/// The OpenAPI document of a file, as Kernite's `load_openapi_json_file` reads it.
fn load_openapi(path: &str) -> Result<Value, Refused> {
    if matches!(python_suffix(path).to_lowercase().as_str(), ".yaml" | ".yml") {
        return Err(Refused::input("YAML OpenAPI is not supported in v1. Convert to JSON and retry."));
    }
    let text = read_text(path)?;
    let document = json::parse_as(&text, Dialect::Python).map_err(|error| {
        let start = text.trim_start_matches(is_python_space);
        if start.starts_with("openapi:") || start.starts_with("---") {
            Refused::input("Detected non-JSON input. YAML OpenAPI is not supported in v1; convert to JSON and retry.")
        } else {
            Refused::input(format!("Invalid JSON schema: {error}"))
        }
    })?;
    super::openapi::ensure_document(&document).map_err(|error| Refused::input(error.to_string()))?;
    Ok(document)
}

/// A file's text. Text that is not UTF-8 makes Kernite fail with a
/// traceback, hence exit code 1.
fn read_text(path: &str) -> Result<String, Refused> {
    let bytes = std::fs::read(path).map_err(|error| Refused::input(format!("{path}: {error}")))?;
    String::from_utf8(bytes).map_err(|error| Refused { message: format!("{path} is not UTF-8 text: {error}"), exit: 1 })
}

/// Writes `value` as Kernite's CLI does (`indent=2`, sorted keys, a final
/// newline), making the directories above it.
fn write_json(path: &str, value: &Value) -> std::io::Result<()> {
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, to_indented_string(value) + "\n")
}

/// A number or boolean of a report's `summary`, as Python prints it.
fn summary_field(report: &Value, key: &str) -> String {
    let summary = report.as_object().and_then(|r| r.get("summary")).and_then(Value::as_object);
    crate::decision::python::to_str(Value::or_null(summary.and_then(|s| s.get(key)))).into()
}

/// A path as Python's `pathlib` prints it: empty and `.` segments and
/// trailing slashes dropped, `..` kept, `.` for nothing; two leading slashes
/// (exactly two) kept.
fn python_path(path: &str) -> String {
    let root = if path.starts_with("//") && !path.starts_with("///") {
        "//"
    } else if path.starts_with('/') {
        "/"
    } else {
        ""
    };
    let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
    match (root, parts.is_empty()) {
        ("", true) => ".".to_owned(),
        _ => format!("{root}{}", parts.join("/")),
    }
}

/// `Path(directory) / name`, printed.
fn join(directory: &str, name: &str) -> String {
    match directory {
        "." => name.to_owned(),
        root if root.ends_with('/') => format!("{root}{name}"),
        directory => format!("{directory}/{name}"),
    }
}

/// `PurePath.suffix`: the last dot and what follows it in the final
/// component, unless the dot starts or ends the name.
fn python_suffix(path: &str) -> String {
    let path = python_path(path);
    let name = path.rsplit('/').next().unwrap_or_default();
    match name.rfind('.') {
        Some(i) if i > 0 && i < name.len() - 1 => name[i..].to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_as_pathlib_prints_them() {
        for (given, printed) in [
            ("out", "out"),
            ("out/", "out"),
            ("./out", "out"),
            ("a//b/./c", "a/b/c"),
            ("a/b/../c", "a/b/../c"),
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//x", "//x"),
            ("///x", "/x"),
        ] {
            assert_eq!(python_path(given), printed, "{given:?}");
        }
        assert_eq!(join(".", "f.json"), "f.json");
        assert_eq!(join("/", "f.json"), "/f.json");
        assert_eq!(join("out", "f.json"), "out/f.json");
    }

    #[test]
    fn suffixes_are_read_as_pathlib_reads_them() {
        assert_eq!(python_suffix("api.YAML"), ".YAML");
        assert_eq!(python_suffix("dir.yaml/api.json"), ".json");
        assert_eq!(python_suffix(".yaml"), "");
        assert_eq!(python_suffix("api."), "");
        assert_eq!(python_suffix("api.yml/"), ".yml");
    }
}
