//! Reading evidence back: one row by a key, or a workspace's rows a page at a
//! time, newest first.
//!
//! Pages are keyset pages on `(created_at, id)`, so a page costs the same
//! however deep it is and rows written meanwhile neither shift nor repeat
//! the pages after it. The page token is that position, opaque to callers.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{EvidenceError, EvidenceStore, MutationResult, parse_rows};
use crate::mutations::Mode;

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
    pub decision: String,
    pub reason_codes: Vec<String>,
    pub ctx_id: String,
    pub trace_hash: String,
    pub idempotency_key: Option<String>,
    pub outcome: String,
    pub mutation_name: String,
    pub mode: Mode,
    pub error_sqlstate: Option<String>,
    pub redacted_paths: Vec<String>,
    pub policy_bundle_sha256: Option<String>,
    pub policy_key: Option<String>,
    pub policy_version: Option<i64>,
    pub response_json: String,
    pub mutation_result: Option<MutationResult>,
}

/// Filters of a listing; `workspace_id` is required.
#[derive(Debug, Clone, Default)]
pub struct EvidenceFilter {
    pub workspace_id: String,
    pub since_micros: Option<i64>,
    pub until_micros: Option<i64>,
    pub decision: Option<String>,
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
    pub fn encode(self) -> String {
        format!("v1.{}.{}", self.created_at_micros, self.id)
    }

    pub fn decode(token: &str) -> Option<PageToken> {
        let mut parts = token.strip_prefix("v1.")?.splitn(2, '.');
        let created_at_micros = parts.next()?.parse().ok()?;
        let id = parts.next()?.parse().ok()?;
        Some(PageToken { created_at_micros, id })
    }
}

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

const COLUMNS: &str = "e.id, (extract(epoch FROM e.created_at) * 1000000)::bigint, e.workspace_id, e.principal_id, \
     e.object_type, e.operation, e.decision, e.reason_codes::text, e.ctx_id, e.trace_hash, e.idempotency_key, \
     e.outcome, coalesce(e.mutation_name, ''), e.mode, e.error_sqlstate, e.redacted_paths::text, \
     e.policy_bundle_sha256, e.policy_key, e.policy_version, e.response_json::text, r.rows_affected, \
     r.returning_rows::text \
     FROM governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id";

impl EvidenceStore {
    pub async fn get_evidence(&self, key: &EvidenceKey) -> Result<Option<StoredEvidence>, EvidenceError> {
        let client = self.pool.get().await?;
        let newest = "ORDER BY e.created_at DESC, e.id DESC LIMIT 1";
        let row = match key {
            EvidenceKey::Id(id) => client.query_opt(&format!("SELECT {COLUMNS} WHERE e.id = $1"), &[id]).await?,
            EvidenceKey::CtxId(ctx_id) => {
                client.query_opt(&format!("SELECT {COLUMNS} WHERE e.ctx_id = $1 {newest}"), &[ctx_id]).await?
            }
            EvidenceKey::TraceHash(hash) => {
                client.query_opt(&format!("SELECT {COLUMNS} WHERE e.trace_hash = $1 {newest}"), &[hash]).await?
            }
            EvidenceKey::Idempotency { workspace_id, idempotency_key } => {
                let sql = format!("SELECT {COLUMNS} WHERE e.workspace_id = $1 AND e.idempotency_key = $2");
                client.query_opt(&sql, &[workspace_id, idempotency_key]).await?
            }
        };
        Ok(row.map(|row| stored(&row)))
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
        for (column, value) in
            [("decision", &filter.decision), ("object_type", &filter.object_type), ("operation", &filter.operation)]
        {
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
        let rows = client.query(&sql, &params).await?;
        let mut records: Vec<StoredEvidence> = rows.iter().map(stored).collect();
        let more = records.len() > page_size;
        records.truncate(page_size);
        let next =
            records.last().filter(|_| more).map(|r| PageToken { created_at_micros: r.created_at_micros, id: r.id });
        Ok((records, next))
    }
}

fn stored(row: &Row) -> StoredEvidence {
    let strings = |text: String| -> Vec<String> { serde_json::from_str(&text).unwrap_or_default() };
    let mode = match row.get::<_, String>(13).as_str() {
        "observe" => Mode::Observe,
        "skip" => Mode::Skip,
        _ => Mode::Enforce,
    };
    let mutation_result = match (row.get::<_, Option<i64>>(20), row.get::<_, Option<String>>(21)) {
        (Some(rows_affected), Some(returning)) => {
            Some(MutationResult { rows_affected: rows_affected as u64, returning: parse_rows(&returning) })
        }
        _ => None,
    };
    StoredEvidence {
        id: row.get(0),
        created_at_micros: row.get(1),
        workspace_id: row.get(2),
        principal_id: row.get(3),
        object_type: row.get(4),
        operation: row.get(5),
        decision: row.get(6),
        reason_codes: strings(row.get(7)),
        ctx_id: row.get(8),
        trace_hash: row.get(9),
        idempotency_key: row.get(10),
        outcome: row.get(11),
        mutation_name: row.get(12),
        mode,
        error_sqlstate: row.get(14),
        redacted_paths: strings(row.get(15)),
        policy_bundle_sha256: row.get(16),
        policy_key: row.get(17),
        policy_version: row.get(18),
        response_json: row.get(19),
        mutation_result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = PageToken { created_at_micros: 1_795_000_000_123_456, id: 42 };
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
        for garbage in ["", "v1.", "v1.12", "v2.1.2", "v1.a.2", "v1.1.2.3"] {
            assert_eq!(PageToken::decode(garbage), None, "{garbage}");
        }
    }
}
