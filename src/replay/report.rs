//! What a replay found: counts per scope and class, the flips and the rows
//! set aside named one by one, as text for people and JSON Lines for tools.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::json;

use super::judge::{Class, Verdict};
use super::selection::RecordedRow;

/// The counts of one scope (or of all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub rows: u64,
    by_class: [u64; Class::ALL.len()],
    /// Unchanged rows whose reason codes changed.
    pub reasons_changed: u64,
    /// Rows replayed under the bundle that decided them, unmasked, and how
    /// many of those came out exactly as recorded.
    pub same_bundle: u64,
    pub reproduced: u64,
}

impl Counts {
    pub fn of(&self, class: Class) -> u64 {
        self.by_class[class as usize]
    }

    fn add(&mut self, verdict: &Verdict) {
        self.rows += 1;
        self.by_class[verdict.class as usize] += 1;
        self.reasons_changed += u64::from(verdict.reasons_changed);
        if let Some(reproduced) = verdict.reproduced {
            self.same_bundle += 1;
            self.reproduced += u64::from(reproduced);
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut counts = serde_json::Map::new();
        counts.insert("rows".into(), self.rows.into());
        for class in Class::ALL {
            counts.insert(class.as_str().into(), self.of(class).into());
        }
        counts.insert("reasons_changed".into(), self.reasons_changed.into());
        counts.insert("same_bundle".into(), self.same_bundle.into());
        counts.insert("reproduced".into(), self.reproduced.into());
        serde_json::Value::Object(counts)
    }
}

/// Counts per scope, and in all.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// By object type, then operation: looked up by the row's own strings,
    /// with no copy of them but for a scope's first row.
    by_scope: BTreeMap<String, BTreeMap<String, Counts>>,
    pub total: Counts,
}

impl Tally {
    pub fn add(&mut self, row: &RecordedRow, verdict: &Verdict) {
        self.total.add(verdict);
        if !self.by_scope.contains_key(&row.object_type) {
            self.by_scope.insert(row.object_type.clone(), BTreeMap::new());
        }
        let operations = self.by_scope.get_mut(&row.object_type).expect("inserted above");
        if !operations.contains_key(&row.operation) {
            operations.insert(row.operation.clone(), Counts::default());
        }
        operations.get_mut(&row.operation).expect("inserted above").add(verdict);
    }

    /// Each scope's counts, in object type then operation order.
    pub fn scopes(&self) -> impl Iterator<Item = ((&str, &str), &Counts)> {
        self.by_scope.iter().flat_map(|(object_type, operations)| {
            operations.iter().map(move |(operation, counts)| ((object_type.as_str(), operation.as_str()), counts))
        })
    }

    /// The table people read: one line per scope, one column per class
    /// that occurred (the three that compare always).
    pub fn table(&self) -> String {
        let shown: Vec<Class> = Class::ALL
            .into_iter()
            .filter(|&class| class <= Class::DeniedToApproved || self.total.of(class) > 0)
            .collect();
        let label = |class: Class| match class {
            Class::ApprovedToDenied => "approved→denied".to_owned(),
            Class::DeniedToApproved => "denied→approved".to_owned(),
            class => class.as_str().replace('_', " "),
        };
        let mut lines: Vec<Vec<String>> = vec![
            std::iter::once("scope".to_owned())
                .chain(std::iter::once("rows".to_owned()))
                .chain(shown.iter().map(|&c| label(c)))
                .collect(),
        ];
        let scopes =
            self.scopes().map(|((object_type, operation), counts)| (format!("{object_type}/{operation}"), counts));
        for (name, counts) in scopes.chain(std::iter::once(("all".to_owned(), &self.total))) {
            let cells = shown.iter().map(|&class| counts.of(class).to_string());
            lines.push(std::iter::once(name).chain(std::iter::once(counts.rows.to_string())).chain(cells).collect());
        }
        let widths: Vec<usize> =
            (0..lines[0].len()).map(|i| lines.iter().map(|line| line[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for line in lines {
            for (i, cell) in line.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i == 0 {
                    let _ = write!(out, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(out, "  {}{cell}", " ".repeat(pad));
                }
            }
            out.push('\n');
        }
        out
    }

    /// The summary as JSON: the candidate, the counts in all and per scope.
    pub fn to_json(&self, candidate_sha256: &str) -> serde_json::Value {
        let scopes: Vec<serde_json::Value> = self
            .scopes()
            .map(|((object_type, operation), counts)| {
                json!({"object_type": object_type, "operation": operation, "counts": counts.to_json()})
            })
            .collect();
        json!({"summary": {"candidate_sha256": candidate_sha256, "total": self.total.to_json(), "scopes": scopes}})
    }
}

/// One row's line for a person: `evidence 12 invoice/create approved→denied: …`.
pub fn describe(row: &RecordedRow, verdict: &Verdict) -> String {
    let mut line = format!("evidence {} {}/{} {}", row.id, row.object_type, row.operation, verdict.class.as_str());
    if let Some(new) = &verdict.new {
        let _ = write!(
            line,
            ": was {} {:?}, now {} {:?}",
            row.decision,
            row.reason_codes,
            new.decision,
            new.reason_codes.iter().map(|c| c.as_str()).collect::<Vec<_>>()
        );
        if new.mode != crate::vocabulary::Mode::Enforce {
            let _ = write!(line, " in {} mode", new.mode);
        }
        let _ = write!(line, ", decided by {}", new.decided_by.join(", "));
    }
    if let Some(detail) = &verdict.detail {
        let _ = write!(line, ": {detail}");
    }
    line
}

/// One row's JSON Lines record.
pub fn to_json_line(row: &RecordedRow, verdict: &Verdict) -> serde_json::Value {
    let candidate = verdict.new.as_ref().map(|new| {
        json!({
            "decision": new.decision.as_str(),
            "mode": new.mode.as_str(),
            "reason_codes": new.reason_codes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            "decided_by": new.decided_by,
            "trace_hash": new.trace_hash,
        })
    });
    json!({
        "evidence_id": row.id,
        "created_at": rfc3339(row.created_at_micros),
        "workspace_id": row.workspace_id,
        "object_type": row.object_type,
        "operation": row.operation,
        "class": verdict.class.as_str(),
        "recorded": {"decision": row.decision.as_str(), "mode": row.mode.as_str(), "reason_codes": row.reason_codes,
                     "trace_hash": row.trace_hash, "policy_bundle_sha256": row.policy_bundle_sha256},
        "candidate": candidate,
        "detail": verdict.detail,
        "reasons_changed": verdict.reasons_changed,
        "reproduced": verdict.reproduced,
    })
}

/// Microseconds since the Unix epoch as RFC 3339 in UTC
/// (`2026-12-06T17:00:00.123456Z`), by Howard Hinnant's civil-from-days.
pub fn rfc3339(micros: i64) -> String {
    let (seconds, micros) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (second_of_day / 3_600, second_of_day % 3_600 / 60, second_of_day % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_796_580_000_123_456), "2026-12-06T18:00:00.123456Z");
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }
}
