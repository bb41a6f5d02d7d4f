//! `governance-sidecar replay`: the command line around [`super::replay`].
//! Prints the tally, every flip and the rows set aside on stdout, progress
//! on stderr, and each row that did not come out unchanged (then a summary)
//! as JSON Lines to `--jsonl`. Exit 0, 1 when `--fail-on` finds what it
//! names, 2 when the replay cannot be made (the bundle, the database).

use std::io::Write as _;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::judge::{Class, Judge};
use super::report::{self, Tally};
use super::run::{Judged, Pace, Pages, Progress, replay};
use super::selection::Selection;
use crate::policies::PolicyBundle;
use crate::postgres::DatabaseTarget;

/// How many rows of each class set aside are named on stdout (all are in `--jsonl`).
const NAMED_PER_CLASS: usize = 20;

/// `replay`'s own flags (the database's are `serve`'s, beside them in `Command::Replay`).
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The candidate policy bundle (kernite.policy.bundle.v1) to re-decide the evidence under.
    #[arg(long)]
    pub policy_bundle: PathBuf,
    /// Only this workspace's evidence.
    #[arg(long)]
    pub workspace: Option<String>,
    /// Only evidence written at or after this: a time PostgreSQL reads (`2026-11-29T00:00:00Z`), or an age
    /// (`7d`, `24h`, `30m`, `45s`) before the database's clock.
    #[arg(long, value_parser = TimeBound::parse)]
    pub since: Option<TimeBound>,
    /// Only evidence written before this (the same forms as --since).
    #[arg(long, value_parser = TimeBound::parse)]
    pub until: Option<TimeBound>,
    /// Only this object type (as stored: normalised, lower case).
    #[arg(long)]
    pub object_type: Option<String>,
    /// Only this operation (as stored).
    #[arg(long)]
    pub operation: Option<String>,
    /// Replay at most this many rows, drawn uniformly at random from the selection (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
    /// The sample's seed: the same seed over the same evidence draws the same rows.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Read at most this many rows per second (0: as fast as they can be judged): on a host shared with
    /// production writes, any CPU a replay takes slows them.
    #[arg(long, default_value_t = crate::defaults::DEFAULT_REPLAY_ROWS_PER_SECOND)]
    pub max_rows_per_second: u32,
    /// Write each row not unchanged, then a summary, as JSON Lines to this file (`-`: stdout, instead of the text).
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// Exit 1 when the replay finds flips of this kind: `flips` (either way), `approvals-lost`
    /// (approved→denied) or `denials-lost` (denied→approved).
    #[arg(long)]
    pub fail_on: Option<FailOn>,
}

/// What makes `replay` a failing CI step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Flips,
    ApprovalsLost,
    DenialsLost,
}

impl FailOn {
    fn tripped(self, tally: &Tally) -> bool {
        let (lost_approvals, lost_denials) =
            (tally.total.of(Class::ApprovedToDenied), tally.total.of(Class::DeniedToApproved));
        match self {
            FailOn::Flips => lost_approvals + lost_denials > 0,
            FailOn::ApprovalsLost => lost_approvals > 0,
            FailOn::DenialsLost => lost_denials > 0,
        }
    }
}

/// One end of the time range, as given.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeBound {
    /// This long before the database's clock.
    Ago(Duration),
    /// A time for PostgreSQL to read as `timestamptz`.
    At(String),
}

impl TimeBound {
    fn parse(text: &str) -> Result<TimeBound, String> {
        let unit = |suffix: char| match suffix {
            's' => Some(1),
            'm' => Some(60),
            'h' => Some(3_600),
            'd' => Some(86_400),
            'w' => Some(604_800),
            _ => None,
        };
        let (digits, suffix) = text.split_at(text.len() - text.chars().last().map_or(0, char::len_utf8));
        match (digits.parse::<u64>(), suffix.chars().next().and_then(unit)) {
            // Sent to PostgreSQL as microseconds, which must fit an i64.
            (Ok(count), Some(seconds)) => count
                .checked_mul(seconds)
                .filter(|&s| s <= i64::MAX as u64 / 1_000_000)
                .map(|s| TimeBound::Ago(Duration::from_secs(s)))
                .ok_or_else(|| format!("{text} is too long ago")),
            _ if text.trim().is_empty() => Err("give a time or an age such as 7d".into()),
            _ => Ok(TimeBound::At(text.to_owned())),
        }
    }

    /// Microseconds since the Unix epoch, by the database's reading and clock.
    async fn micros(&self, client: &tokio_postgres::Client, flag: &str) -> anyhow::Result<i64> {
        let row = match self {
            TimeBound::Ago(age) => {
                let sql = "SELECT (extract(epoch FROM now()) * 1000000)::bigint - $1::bigint AS micros";
                let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
                client.query_one(sql, &[&micros]).await
            }
            TimeBound::At(text) => {
                let sql = "SELECT (extract(epoch FROM $1::text::timestamptz) * 1000000)::bigint AS micros";
                client.query_one(sql, &[text]).await
            }
        };
        let row = row
            .map_err(|e| anyhow::anyhow!("--{flag}: PostgreSQL cannot read it as a time: {}", postgres_message(&e)))?;
        Ok(row.try_get("micros")?)
    }
}

fn postgres_message(error: &tokio_postgres::Error) -> String {
    error.as_db_error().map_or_else(|| error.to_string(), |db| db.message().to_owned())
}

/// Runs the command against `database` (an error when none was named);
/// every failure to replay is exit 2, after its message.
pub fn run(database: anyhow::Result<DatabaseTarget>, args: &ReplayArgs) -> ExitCode {
    // Reading, like judging, takes only CPU nothing else wants: a replay
    // beside production writes on the same host makes room for them.
    super::run::yield_this_thread_to_other_work();
    let replayed = database.and_then(|database| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(replay_command(&database, args))
    });
    match replayed {
        Ok(code) => code,
        Err(error) => {
            eprintln!("governance-sidecar replay: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn replay_command(database: &DatabaseTarget, args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.policy_bundle)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.policy_bundle.display()))?;
    let candidate = PolicyBundle::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("the candidate bundle {}: {e}", args.policy_bundle.display()))?;
    let candidate_sha256 = candidate.sha256.clone();
    let jsonl = match &args.jsonl {
        None => None,
        Some(path) if path.as_os_str() == "-" => Some(Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>),
        Some(path) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?,
        )) as Box<dyn std::io::Write + Send>),
    };
    let text = args.jsonl.as_deref().is_none_or(|path| path.as_os_str() != "-");

    let client = database.connect_once().await?;
    let mut selection = Selection {
        workspace_id: args.workspace.clone(),
        object_type: args.object_type.clone(),
        operation: args.operation.clone(),
        sample: args.sample,
        seed: args.seed,
        ..Selection::default()
    };
    if let Some(since) = &args.since {
        selection.since_micros = Some(since.micros(&client, "since").await?);
    }
    if let Some(until) = &args.until {
        selection.until_micros = Some(until.micros(&client, "until").await?);
    }

    let mut printer = Printer {
        jsonl,
        text,
        started: Instant::now(),
        shown: Instant::now(),
        named: Vec::new(),
        named_per_class: [0; Class::ALL.len()],
        unnamed: 0,
        write_error: None,
    };
    let pace = Pace::rows_per_second(args.max_rows_per_second);
    let tally = replay(&client, &selection, pace, Judge::new(Arc::new(candidate)), &mut printer).await?;
    printer.show(Progress { done: tally.total.rows, total: args.sample.map(|_| tally.total.rows) });
    if let Some(error) = printer.write_error {
        anyhow::bail!("writing --jsonl: {error}");
    }
    if let Some(out) = &mut printer.jsonl {
        writeln!(out, "{}", tally.to_json(&candidate_sha256))?;
        out.flush()?;
    }

    if text {
        print_report(&tally, &candidate_sha256, &printer.named, printer.unnamed, printer.started.elapsed());
    }
    let tripped = args.fail_on.filter(|fail_on| fail_on.tripped(&tally));
    if let Some(fail_on) = tripped {
        eprintln!(
            "replay: --fail-on {}: the candidate changes decisions",
            clap::ValueEnum::to_possible_value(&fail_on).map_or_else(String::new, |v| v.get_name().to_owned())
        );
    }
    Ok(if tripped.is_some() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What the command does with each judged page: JSON Lines for the rows
/// not unchanged, a line of text for each flip (and for the first rows of
/// each class set aside), and progress on stderr once a second.
struct Printer {
    jsonl: Option<Box<dyn std::io::Write + Send>>,
    /// Whether the text report is printed: the rows it names are kept only then.
    text: bool,
    started: Instant,
    shown: Instant,
    named: Vec<String>,
    named_per_class: [usize; Class::ALL.len()],
    unnamed: u64,
    write_error: Option<std::io::Error>,
}

impl Pages for Printer {
    async fn take(&mut self, page: &[Judged], progress: Progress) -> ControlFlow<()> {
        for Judged { row, verdict } in page {
            if verdict.class == Class::Unchanged && verdict.reproduced != Some(false) {
                continue;
            }
            if let Some(out) = &mut self.jsonl
                && let Err(error) = writeln!(out, "{}", report::to_json_line(row, verdict))
            {
                self.write_error = Some(error);
                return ControlFlow::Break(());
            }
            if !self.text {
                continue;
            }
            let count = &mut self.named_per_class[verdict.class as usize];
            if verdict.class.is_flip() || verdict.reproduced == Some(false) || *count < NAMED_PER_CLASS {
                *count += 1;
                self.named.push(report::describe(row, verdict));
            } else {
                self.unnamed += 1;
            }
        }
        if self.shown.elapsed() >= Duration::from_secs(1) {
            self.shown = Instant::now();
            self.show(progress);
        }
        ControlFlow::Continue(())
    }
}

impl Printer {
    /// `replay: 120000 rows (5000 rows/s)`, or `… of 300000 rows` for a sample.
    fn show(&self, progress: Progress) {
        let rate = progress.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let of = progress.total.map(|total| format!(" of {total}")).unwrap_or_default();
        eprintln!("replay: {}{of} rows ({rate:.0} rows/s)", progress.done);
    }
}

fn print_report(tally: &Tally, candidate_sha256: &str, named: &[String], unnamed: u64, took: Duration) {
    let total = &tally.total;
    if total.rows == 0 {
        println!("no evidence matches the selection: nothing to replay under {candidate_sha256}");
        return;
    }
    println!("replayed {} evidence rows under {candidate_sha256} in {:.1} s", total.rows, took.as_secs_f64());
    print!("{}", tally.table());
    if total.reasons_changed > 0 {
        println!("{} unchanged rows would be decided for other reasons", total.reasons_changed);
    }
    if total.same_bundle > 0 {
        println!(
            "{} rows were replayed under the bundle that decided them: {} reproduced exactly (decision and trace_hash)",
            total.same_bundle, total.reproduced
        );
    }
    for line in named {
        println!("{line}");
    }
    if unnamed > 0 {
        println!("… and {unnamed} more rows set aside (each is in --jsonl)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_counted_in_seconds_and_anything_else_is_left_to_postgresql() {
        assert_eq!(TimeBound::parse("7d"), Ok(TimeBound::Ago(Duration::from_secs(7 * 86_400))));
        assert_eq!(TimeBound::parse("90m"), Ok(TimeBound::Ago(Duration::from_secs(5_400))));
        assert_eq!(TimeBound::parse("2026-11-29"), Ok(TimeBound::At("2026-11-29".into())));
        assert_eq!(TimeBound::parse("yesterday"), Ok(TimeBound::At("yesterday".into())));
        assert!(TimeBound::parse("").is_err());
        assert!(TimeBound::parse("99999999999999999w").is_err());
        // Fits in seconds, not in the microseconds PostgreSQL is sent.
        assert!(TimeBound::parse("9999999999999w").is_err());
    }
}
