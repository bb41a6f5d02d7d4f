//! What retention removed from the log, recorded exactly, and how `verify`
//! reads the records.
//!
//! Rows leave the log two ways: the partitioned layout's upkeep drops a whole
//! month ([`record_month`]), and the reference layout's
//! `governance_purge_before` deletes a prefix of batches. Each writes a row of
//! `governance_log_retention` naming the **log positions it removed**, as
//! ranges: a month's rows are not a prefix of the log, because a transaction
//! that starts before midnight and commits after it is sequenced after the
//! next month's first rows, and back-dated rows after current ones. The
//! leaf hashes stay in the log's batches, so every kept row's proof stays
//! valid and `verify` checks a removed leaf by its stored hash.
//!
//! Records from before migration 9 name only `pruned_below` ("positions below
//! this may be gone"). `verify` still reads them: a missing row below it is
//! taken as removed, and a row that remains below it must have been written
//! at or after the record's cutoff (a later month's row sequenced early);
//! one that was not makes the record unreadable, and `verify` names it.
//!
//! docs/verifiable-log.md, "Retention records", is the specification.

use std::fmt;

use tokio_postgres::GenericClient;

use super::sql;
use crate::evidence::EvidenceError;

/// One retention record, as `verify` reads it.
#[derive(Debug, Clone)]
struct Record {
    /// How a report names it: when it was written, and what it removed.
    name: String,
    /// Rows written from here (microseconds since the epoch; a dropped
    /// month's first instant, else none) up to the cutoff are what it removes.
    from_us: Option<i64>,
    cutoff_us: i64,
    purged: i64,
    form: Form,
}

#[derive(Debug, Clone)]
enum Form {
    /// The positions it removed, as ranges [low, high).
    Exact,
    /// A record from before migration 9: positions below this may be gone.
    Prefix { pruned_below: u64, unreadable: Option<(i64, u64)> },
}

/// Every retention record, and what `verify` has found against them.
#[derive(Debug, Default)]
pub struct Retention {
    records: Vec<Record>,
    /// Every exact record's ranges, by their start: (low, high, record).
    ranges: Vec<(u64, u64, usize)>,
    /// Missing rows that only a prefix record accounts for: (evidence id, index).
    by_prefix: Vec<(i64, u64)>,
}

/// Something a retention record says that the log contradicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A record from before migration 9 whose prefix holds a row it should have removed.
    PrefixUnreadable { record: String, pruned_below: u64, evidence_id: i64, index: u64 },
    /// A record lists a position whose row remains, written outside what it removed.
    ListsAKeptRow { record: String, evidence_id: i64, index: u64 },
    /// A row of a dropped month remains at a position the drop does not list.
    MissesARow { record: String, evidence_id: i64, index: u64 },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::PrefixUnreadable { record, pruned_below, evidence_id, index } => write!(
                f,
                "retention record {record}: says the log's first {pruned_below} rows may be gone, but evidence \
                 {evidence_id} (log index {index}), written before its cutoff, remains: it cannot be read as a drop, \
                 and the rows missing below it were not removed by it"
            ),
            Finding::ListsAKeptRow { record, evidence_id, index } => write!(
                f,
                "retention record {record}: lists log index {index} as removed, but evidence {evidence_id} there \
                 was written outside what the record removed"
            ),
            Finding::MissesARow { record, evidence_id, index } => write!(
                f,
                "evidence {evidence_id} (log index {index}): written in a month that retention record {record} \
                 dropped, at a position the record does not list"
            ),
        }
    }
}

impl Retention {
    /// Reads every record (in the caller's snapshot).
    pub async fn load(client: &impl GenericClient) -> Result<Retention, EvidenceError> {
        let mut retention = Retention::default();
        let mut last: Option<(String, String, Option<i64>)> = None;
        for row in client.query(sql::RETENTION_RECORDS, &[]).await? {
            let purged_at: String = row.try_get("purged_at")?;
            let cutoff: String = row.try_get("cutoff")?;
            let pruned_below: i64 = row.try_get("pruned_below")?;
            let key = (purged_at.clone(), cutoff.clone(), Some(pruned_below));
            if last.as_ref() != Some(&key) {
                let month: Option<String> = row.try_get("dropped_month")?;
                let removed = match &month {
                    Some(month) => format!("month {month}"),
                    None => format!("rows before {cutoff}"),
                };
                let exact: bool = row.try_get("exact")?;
                retention.records.push(Record {
                    name: format!("of {purged_at} ({removed})"),
                    from_us: row.try_get("month_us")?,
                    cutoff_us: row.try_get("cutoff_us")?,
                    purged: row.try_get("purged")?,
                    form: if exact {
                        Form::Exact
                    } else {
                        Form::Prefix { pruned_below: pruned_below.max(0) as u64, unreadable: None }
                    },
                });
                last = Some(key);
            }
            let (low, high): (Option<i64>, Option<i64>) = (row.try_get("low")?, row.try_get("high")?);
            if let (Some(low), Some(high)) = (low, high) {
                retention.ranges.push((low.max(0) as u64, high.max(0) as u64, retention.records.len() - 1));
            }
        }
        retention.ranges.sort_unstable();
        Ok(retention)
    }

    /// One line per record, oldest first: what it says it removed, for an
    /// auditor to hold against the retention policy.
    pub fn describe(&self) -> Vec<String> {
        let lines = self.records.iter().enumerate().map(|(position, record)| {
            let removed = match record.form {
                Form::Prefix { pruned_below, .. } => format!("log positions below {pruned_below} (first form)"),
                Form::Exact => {
                    let mut ranges: Vec<_> = self.ranges.iter().filter(|&&(_, _, r)| r == position).collect();
                    ranges.sort_unstable();
                    let ranges: Vec<String> = ranges.iter().map(|(low, high, _)| format!("[{low},{high})")).collect();
                    format!("log positions {}", ranges.join(" "))
                }
            };
            format!("retention record {}: {} rows, {removed}", record.name, record.purged)
        });
        lines.collect()
    }

    /// The exact records that list `index`.
    fn listing(&self, index: u64) -> impl Iterator<Item = &Record> {
        let end = self.ranges.partition_point(|&(low, _, _)| low <= index);
        self.ranges[..end].iter().filter(move |&&(_, high, _)| index < high).map(|&(_, _, r)| &self.records[r])
    }

    /// Whether a row missing at `index` was removed by retention, as far as
    /// the records say; one only a prefix record accounts for is settled by
    /// [`Retention::finish`], once every kept row has been seen.
    pub fn removed(&mut self, evidence_id: i64, index: u64) -> bool {
        if self.listing(index).next().is_some() {
            return true;
        }
        let by_prefix =
            self.records.iter().any(|r| matches!(r.form, Form::Prefix { pruned_below, .. } if index < pruned_below));
        if by_prefix {
            self.by_prefix.push((evidence_id, index));
        }
        by_prefix
    }

    /// Checks a row that remains against every record.
    pub fn kept(&mut self, evidence_id: i64, index: u64, created_at_us: i64, findings: &mut Vec<Finding>) {
        let removes = |r: &Record| r.from_us.is_none_or(|from| from <= created_at_us) && created_at_us < r.cutoff_us;
        for record in self.listing(index) {
            // Listed while still there: the drop is under way, if the row is the record's.
            if !removes(record) {
                findings.push(Finding::ListsAKeptRow { record: record.name.clone(), evidence_id, index });
            }
        }
        for (position, record) in self.records.iter_mut().enumerate() {
            let removes_it = removes(record);
            match &mut record.form {
                Form::Exact if record.from_us.is_some() && removes_it => {
                    let listed =
                        self.ranges.iter().any(|&(low, high, r)| r == position && (low..high).contains(&index));
                    if !listed {
                        findings.push(Finding::MissesARow { record: record.name.clone(), evidence_id, index });
                    }
                }
                Form::Prefix { pruned_below, unreadable }
                    if index < *pruned_below && created_at_us < record.cutoff_us =>
                {
                    unreadable.get_or_insert((evidence_id, index));
                }
                _ => {}
            }
        }
    }

    /// After the walk: the prefix records a kept row contradicts, and the
    /// missing rows no readable record accounts for, which were deleted.
    pub fn finish(self, findings: &mut Vec<Finding>) -> Vec<(i64, u64)> {
        let mut readable_below = 0;
        for record in &self.records {
            if let Form::Prefix { pruned_below, unreadable } = record.form {
                match unreadable {
                    Some((evidence_id, index)) => findings.push(Finding::PrefixUnreadable {
                        record: record.name.clone(),
                        pruned_below,
                        evidence_id,
                        index,
                    }),
                    None => readable_below = readable_below.max(pruned_below),
                }
            }
        }
        self.by_prefix.into_iter().filter(|&(_, index)| index >= readable_below).collect()
    }
}

/// What [`record_month`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthInLog {
    /// No rows: nothing to record.
    Empty,
    /// Some row is not in the log yet: the month must stay.
    NotSequenced,
    /// The month's positions are recorded; it had this many rows.
    Recorded { rows: i64 },
}

/// Records that the month in `evidence_partition` (named
/// `governance_events_pYYYYMM`) is removed, if every row in it is in the log.
/// Written before the month goes, so that no reader ever sees it gone
/// unrecorded; while the month is still there, `verify` checks its rows as
/// any others.
pub async fn record_month(client: &impl GenericClient, evidence_partition: &str) -> Result<MonthInLog, EvidenceError> {
    let month = evidence_partition
        .strip_prefix("governance_events_p")
        .filter(|m| m.len() == 6 && m.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| EvidenceError::Log(format!("{evidence_partition} is not a month of evidence")))?;
    let found = client.query_one(&sql::RECORD_MONTH.replace("{partition}", evidence_partition), &[&month]).await?;
    let (rows, recorded): (i64, i64) = (found.try_get("rows")?, found.try_get("recorded")?);
    Ok(match (rows, recorded) {
        (0, _) => MonthInLog::Empty,
        (_, 0) => MonthInLog::NotSequenced,
        (rows, _) => MonthInLog::Recorded { rows },
    })
}
