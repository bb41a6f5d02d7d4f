//! Reading evidence back: one row by a key, or a workspace's rows a page at a
//! time, newest first.
//!
//! Pages are keyset pages on `(created_at, id)`, so a page costs the same
//! however deep it is and rows written meanwhile neither shift nor repeat
//! the pages after it. The page token is that position, opaque to callers.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::returning::{MutationResult, stored_result};
use super::{EvidenceError, EvidenceStore};
use crate::vocabulary::{Mode, Outcome, RecordedDecision, UnknownWord};

/// Which row to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvidenceKey {
    Id(i64),
    CtxId(String),
    TraceHash(String),
    Idempotency { workspace_id: String, idempotency_key: String },
}

/// One evidence row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvidence {
    pub id: i64,
    /// Microseconds since the Unix epoch.
    pub created_at_micros: i64,
    pub workspace_id: String,
    pub principal_id: String,
    pub object_type: String,
    pub operation: String,
    pub decision: RecordedDecision,
    pub reason_codes: Vec<String>,
    pub ctx_id: String,
    pub trace_hash: String,
    pub idempotency_key: Option<String>,
    pub outcome: Outcome,
    pub mutation_name: String,
    pub mode: Mode,
    pub error_sqlstate: Option<String>,
    pub redacted_paths: Vec<String>,
    pub policy_bundle_sha256: Option<String>,
    pub policy_key: Option<String>,
    pub policy_version: Option<i64>,
    pub response_json: String,
    pub mutation_result: Option<MutationResult>,
    /// The authenticated caller; `None` on rows written before it was recorded.
    pub caller: Option<String>,
    /// The request as decided, canonical JSON, secrets masked; `None` on
    /// rows written before it was recorded (migration 11).
    pub request_json: Option<String>,
    /// Where secrets were masked in `request_json`.
    pub request_redacted_paths: Vec<String>,
}

/// Filters of a listing; `workspace_id` is required.
#[derive(Debug, Clone, Default)]
pub struct EvidenceFilter {
    pub workspace_id: String,
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
    pub decision: Option<RecordedDecision>,
    pub object_type: Option<String>,
    pub operation: Option<String>,
}

/// Where the previous page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    created_at_micros: i64,
    id: i64,
}

impl PageToken {
    /// The position just after `record`, newest first.
    pub fn after(record: &StoredEvidence) -> PageToken {
        PageToken { created_at_micros: record.created_at_micros, id: record.id }
    }

    pub fn encode(self) -> String {
        format!("v1.{}.{}", self.created_at_micros, self.id)
    }

    /// The token, if it is one the sidecar could have made: a forged time
    /// outside PostgreSQL's years is refused here, not by the database.
    pub fn decode(token: &str) -> Option<PageToken> {
        let mut parts = token.strip_prefix("v1.")?.splitn(2, '.');
        let created_at_micros =
            parts.next()?.parse().ok().filter(|micros| (EARLIEST_MICROS..=LATEST_MICROS).contains(micros))?;
        let id = parts.next()?.parse().ok()?;
        Some(PageToken { created_at_micros, id })
    }
}

/// The first and last microseconds (since the Unix epoch) of the years 1 to
/// 9999, which every timestamp the sidecar reads or is given must fall within.
pub const EARLIEST_MICROS: i64 = -62_135_596_800_000_000;
pub const LATEST_MICROS: i64 = 253_402_300_799_999_999;

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

/// The columns [`stored`] reads, by these names.
const COLUMNS: &str = "e.id, (extract(epoch FROM e.created_at) * 1000000)::bigint AS created_at_micros, \
     e.workspace_id, e.principal_id, e.object_type, e.operation, e.decision, e.reason_codes::text AS reason_codes, \
     e.ctx_id, e.trace_hash, e.idempotency_key, e.outcome, coalesce(e.mutation_name, '') AS mutation_name, e.mode, \
     e.error_sqlstate, e.redacted_paths::text AS redacted_paths, e.policy_bundle_sha256, e.policy_key, \
     e.policy_version, e.response_json::text AS response_json, e.caller, r.rows_affected, \
     r.returning_rows::text AS returning_rows, e.request_json, \
     e.request_redacted_paths::text AS request_redacted_paths \
     FROM governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id";

impl EvidenceStore {
    pub async fn get_evidence(&self, key: &EvidenceKey) -> Result<Option<StoredEvidence>, EvidenceError> {
        let client = self.pool.get().await?;
        let newest = "ORDER BY e.created_at DESC, e.id DESC LIMIT 1";
        let row = client
            .guard(async {
                Ok::<_, EvidenceError>(match key {
                    EvidenceKey::Id(id) => {
                        client.query_opt(&format!("SELECT {COLUMNS} WHERE e.id = $1"), &[id]).await?
                    }
                    EvidenceKey::CtxId(ctx_id) => {
                        client.query_opt(&format!("SELECT {COLUMNS} WHERE e.ctx_id = $1 {newest}"), &[ctx_id]).await?
                    }
                    // Through the ctx_id index: a trace hash names its ctx_id (migration 0008).
                    EvidenceKey::TraceHash(hash) => match crate::decision::ctx_id_of(hash) {
                        Some(ctx_id) => {
                            let sql = format!("SELECT {COLUMNS} WHERE e.ctx_id = $1 AND e.trace_hash = $2 {newest}");
                            client.query_opt(&sql, &[&ctx_id.as_str(), hash]).await?
                        }
                        None => None,
                    },
                    EvidenceKey::Idempotency { workspace_id, idempotency_key } => {
                        let sql = format!("SELECT {COLUMNS} {}", super::idempotency::KEY_HOLDER);
                        client.query_opt(&sql, &[workspace_id, idempotency_key]).await?
                    }
                })
            })
            .await?;
        row.as_ref().map(stored).transpose()
    }

    /// Up to `page_size` rows after `after`, newest first, and the token of
    /// the next page if there is one.
    pub async fn list_evidence(
        &self,
        filter: &EvidenceFilter,
        after: Option<PageToken>,
        page_size: usize,
    ) -> Result<(Vec<StoredEvidence>, Option<PageToken>), EvidenceError> {
        let position = after.map(|a| (a.created_at_micros, a.id));
        let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        // One row more than the page: whether it exists says if there is a next page.
        let limit = page_size as i64 + 1;
        let mut conditions = vec!["e.workspace_id = $1".to_owned()];
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&filter.workspace_id];
        let micros = "'epoch'::timestamptz + $::bigint * interval '1 microsecond'";
        // Each optional filter: its condition, `$` standing for its parameter.
        let mut filters: Vec<(String, &(dyn ToSql + Sync))> = Vec::new();
        if let Some(since) = &filter.since_micros {
            filters.push((format!("e.created_at >= {micros}"), since));
        }
        if let Some(until) = &filter.until_micros {
            filters.push((format!("e.created_at < {micros}"), until));
        }
        let decision = filter.decision.map(RecordedDecision::as_str);
        if let Some(decision) = &decision {
            filters.push(("e.decision = $".to_owned(), decision));
        }
        for (column, value) in [("object_type", &filter.object_type), ("operation", &filter.operation)] {
            if let Some(value) = value {
                filters.push((format!("e.{column} = $"), value));
            }
        }
        for (condition, value) in filters {
            params.push(value);
            conditions.push(condition.replace('$', &format!("${}", params.len())));
        }
        if let Some((created_at, id)) = &position {
            params.push(created_at);
            params.push(id);
            let (at, id) = (params.len() - 1, params.len());
            conditions.push(format!(
                "(e.created_at, e.id) < ('epoch'::timestamptz + ${at}::bigint * interval '1 microsecond', ${id})"
            ));
        }
        params.push(&limit);
        let sql = format!(
            "SELECT {COLUMNS} WHERE {} ORDER BY e.created_at DESC, e.id DESC LIMIT ${}",
            conditions.join(" AND "),
            params.len()
        );
        let client = self.pool.get().await?;
        let rows = client.guard(client.query(&sql, &params)).await?;
        let mut records = rows.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
        let more = records.len() > page_size;
        records.truncate(page_size);
        let next = records.last().filter(|_| more).map(PageToken::after);
        Ok((records, next))
    }
}

/// One row of [`COLUMNS`], read by column name. A word the sidecar never
/// writes (an unknown mode, outcome or decision) is an error, not a default.
fn stored(row: &Row) -> Result<StoredEvidence, EvidenceError> {
    let id: i64 = row.try_get("id")?;
    // A JSON array of strings; NULL (a column newer than the row) is none.
    let strings = |column: &str| -> Result<Vec<String>, EvidenceError> {
        let text: Option<&str> = row.try_get(column)?;
        Ok(text.and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default())
    };
    let word = |column: &str| -> Result<&str, EvidenceError> { Ok(row.try_get(column)?) };
    let known = |word: UnknownWord| EvidenceError::UnknownStoredWord { evidence_id: id, word };
    Ok(StoredEvidence {
        id,
        created_at_micros: row.try_get("created_at_micros")?,
        workspace_id: row.try_get("workspace_id")?,
        principal_id: row.try_get("principal_id")?,
        object_type: row.try_get("object_type")?,
        operation: row.try_get("operation")?,
        decision: word("decision")?.parse().map_err(known)?,
        reason_codes: strings("reason_codes")?,
        ctx_id: row.try_get("ctx_id")?,
        trace_hash: row.try_get("trace_hash")?,
        idempotency_key: row.try_get("idempotency_key")?,
        outcome: word("outcome")?.parse().map_err(known)?,
        mutation_name: row.try_get("mutation_name")?,
        mode: word("mode")?.parse().map_err(known)?,
        error_sqlstate: row.try_get("error_sqlstate")?,
        redacted_paths: strings("redacted_paths")?,
        policy_bundle_sha256: row.try_get("policy_bundle_sha256")?,
        policy_key: row.try_get("policy_key")?,
        policy_version: row.try_get("policy_version")?,
        response_json: row.try_get("response_json")?,
        mutation_result: stored_result(row.try_get("rows_affected")?, row.try_get("returning_rows")?),
        caller: row.try_get("caller")?,
        request_json: row.try_get("request_json")?,
        request_redacted_paths: strings("request_redacted_paths")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_returns_every_column_the_row_writes_but_those_it_names() {
        // Not in the audit API's record: the fingerprint and the trace id
        // serve replays and tracing; the digest is the log's.
        const NOT_RETURNED: [&str; 3] = ["request_fingerprint", "trace_id", "response_json_sha256"];
        for (column, _) in super::super::EVIDENCE_COLUMNS {
            let read = COLUMNS.contains(&format!("e.{column},"))
                || COLUMNS.contains(&format!("e.{column}::"))
                || COLUMNS.contains(&format!("e.{column} "));
            assert!(read != NOT_RETURNED.contains(&column), "{column}: read {read}");
        }
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = PageToken { created_at_micros: 1_795_000_000_123_456, id: 42 };
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
        for garbage in ["", "v1.", "v1.12", "v2.1.2", "v1.a.2", "v1.1.2.3", "v1.9223372036854775807.1"] {
            assert_eq!(PageToken::decode(garbage), None, "{garbage}");
        }
    }
}
