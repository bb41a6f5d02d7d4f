//! The `governance-sidecar` binary: parse the command line, set up logging,
//! and run the chosen command.

use std::io::Read as _;
use std::process::ExitCode;

use clap::Parser as _;
use governance_sidecar::api::GovernanceApi;
use governance_sidecar::config::{Cli, Command, LogFormat};
use governance_sidecar::decision::json::{self, Layout};
use governance_sidecar::decision::{self, Answer};
use governance_sidecar::server;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("governance-sidecar: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = args.resolve()?;
            init_logging(settings.log_format);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(settings.listen).await?;
                server::serve(listener, &settings, GovernanceApi::new(), server::termination_signal()).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Evaluate { idempotency_key } => evaluate_stdin(idempotency_key.as_deref()),
    }
}

/// Offline debugging: one request on stdin, Kernite's response body on stdout.
fn evaluate_stdin(idempotency_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let body = json::parse(&input).map_err(|e| anyhow::anyhow!("stdin is not valid JSON: {e}"))?;
    let (response, code) = match decision::execute(&body, idempotency_key)? {
        Answer::Decided(decided) => (decided.record.to_value(), ExitCode::SUCCESS),
        Answer::Invalid(invalid) => (invalid.to_value("ctx_offline"), ExitCode::from(2)),
    };
    println!("{}", json::to_string(&response, Layout::Response));
    Ok(code)
}

/// Logs go to stderr; `RUST_LOG` filters them (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
