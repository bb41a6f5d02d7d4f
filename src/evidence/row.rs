//! The evidence row of one call: every column computed once, before a
//! connection is taken, with secrets masked (see [`super::redact`]).

use sha2::{Digest as _, Sha256};
use tokio_postgres::types::ToSql;

use super::EvidenceError;
use super::governed::GovernedWrite;
use super::redact::Redactor;
use crate::decision::json::{self, Layout};
use crate::decision::value::object;
use crate::decision::{DecisionRecord, Map, Value};
use crate::vocabulary::{Outcome, RecordedDecision};

/// One call's evidence: every column of the row but how the call ended
/// ([`Ending`]), in the order of [`COLUMNS`], which [`EvidenceRow::params`]
/// binds.
pub(super) struct EvidenceRow<'w> {
    pub write: &'w GovernedWrite<'w>,
    workspace_id: &'w str,
    principal_id: &'w str,
    object_type: &'w str,
    operation: &'w str,
    decision: &'static str,
    /// JSON array of Kernite's reason codes.
    reason_codes: String,
    pub ctx_id: String,
    pub trace_hash: String,
    /// Kernite's response as stored: redacted, and jsonb-safe.
    response_json: String,
    mutation_name: &'w str,
    request_fingerprint: &'w str,
    mode: &'static str,
    /// JSON array of the paths redaction masked.
    redacted_paths: String,
    policy_bundle_sha256: Option<&'w str>,
    /// The `policy` Kernite reports: key and version, when one applied.
    policy_key: Option<String>,
    policy_version: Option<i64>,
    trace_id: Option<&'w str>,
    caller: &'w str,
    /// The normalised request, canonical JSON, secrets masked: what replay
    /// re-decides; `None` when it is larger than the operator keeps.
    request_json: Option<String>,
    /// JSON array of the request paths redaction masked in it (with it).
    request_redacted_paths: Option<String>,
    /// SHA-256 of the response as PostgreSQL will print it, for the
    /// verifiable log: taken here from the value in hand, so that the log's
    /// sequencer need not have PostgreSQL print every response again.
    response_json_sha256: Sha256Digest,
}

/// The first field of the request holding U+0000, which PostgreSQL stores
/// neither in `text` nor in `jsonb`; the decision's response quotes only
/// the request and its policies, so a NUL found there alone came from the
/// request's `policy_context`.
fn nul_field(write: &GovernedWrite<'_>, response: &Value) -> Option<&'static str> {
    let request = write.request;
    let texts = [
        ("workspace_id", request.workspace_id.as_str()),
        ("principal.type", request.principal.kind.as_str()),
        ("principal.id", request.principal.id.as_str()),
        ("object_type", request.object_type.as_str()),
        ("operation", request.operation.as_str()),
        ("idempotency_key", request.idempotency_key.as_deref().unwrap_or_default()),
    ];
    let maps = [
        ("principal.attributes", &request.principal.attributes),
        ("payload", &request.payload),
        ("resource", &request.resource),
        ("context", &request.context),
    ];
    let in_map = |map: &Map| map.iter().any(|(key, value)| key.contains('\0') || value.contains_nul());
    texts
        .iter()
        .find(|(_, text)| text.contains('\0'))
        .map(|(field, _)| *field)
        .or_else(|| maps.iter().find(|(_, map)| in_map(map)).map(|(field, _)| *field))
        .or_else(|| response.contains_nul().then_some("policy_context"))
}

/// How a call's evidence ended: the columns the INSERT adds.
pub(super) struct Ending<'a> {
    outcome: &'static str,
    /// The idempotency key the row claims; none for a failure's row, so that
    /// a corrected retry with the same key can still succeed.
    idempotency_key: Option<&'a str>,
    error_sqlstate: Option<&'a str>,
}

impl<'a> Ending<'a> {
    /// The row claims the call's key; the mutation ran beside it, or did not.
    pub fn claiming(row: &'a EvidenceRow<'_>, outcome: Outcome) -> Ending<'a> {
        Ending {
            outcome: outcome.as_str(),
            idempotency_key: row.write.request.idempotency_key.as_deref(),
            error_sqlstate: None,
        }
    }

    /// The mutation failed with `sqlstate` and was rolled back.
    pub fn failure(sqlstate: &'a str) -> Ending<'a> {
        Ending { outcome: Outcome::Error.as_str(), idempotency_key: None, error_sqlstate: Some(sqlstate) }
    }
}

impl<'w> EvidenceRow<'w> {
    /// The columns of `write`: its decision (or the skip), with secrets masked,
    /// and its request when that is at most `max_request_bytes` long.
    /// A request holding text PostgreSQL cannot store (U+0000) is refused
    /// here, before a connection is taken, naming the field.
    pub fn new(
        write: &'w GovernedWrite<'w>,
        redactor: &Redactor,
        max_request_bytes: usize,
    ) -> Result<EvidenceRow<'w>, EvidenceError> {
        let (reason_codes, ctx_id, trace_hash, response) = match write.decision {
            Some(record) => (
                Value::Array(record.reason_codes.iter().cloned().map(Value::Str).collect()),
                record.ctx_id.to_string(),
                record.trace_hash.clone(),
                record.to_value(),
            ),
            None => {
                // Nothing was decided, so nothing was hashed: a fresh ctx_id joins the logs.
                let ctx_id = crate::ctx_id::random();
                let response = object([
                    ("ctx_id", Value::str(&ctx_id)),
                    ("message", Value::str("Governance skipped by operator mode.")),
                    ("data", object([("decision", Value::str("skipped")), ("mode", Value::str("skip"))])),
                ]);
                (Value::Array(Vec::new()), ctx_id, String::new(), response)
            }
        };
        if let Some(field) = nul_field(write, &response) {
            return Err(EvidenceError::Unstorable { field });
        }
        let mut redacted = redactor.redact_response(response);
        let respelled = super::jsonb::make_safe(&mut redacted.value);
        // Nothing masked or respelled: the stored copy is Kernite's own text,
        // which the answer renders too (the record keeps it).
        let response_json = match write.decision {
            Some(record) if redacted.masked.is_empty() && !respelled => record.response_text().to_owned(),
            _ => json::to_string(&redacted.value, Layout::Response),
        };
        let request = write.request;
        let (request_json, request_masked) = match redactor.redact_request(request) {
            None => (request.to_canonical_json(), Vec::new()),
            Some(redacted) => (json::to_string(&redacted.value, Layout::Canonical), redacted.masked),
        };
        let paths = |masked: Vec<String>| {
            json::to_string(&Value::Array(masked.into_iter().map(Value::str).collect()), Layout::Canonical)
        };
        Ok(EvidenceRow {
            write,
            workspace_id: request.workspace_id.as_str(),
            principal_id: request.principal.id.as_str(),
            object_type: request.object_type.as_str(),
            operation: request.operation.as_str(),
            decision: RecordedDecision::from(write.decision.map(|record| record.decision)).as_str(),
            reason_codes: json::to_string(&reason_codes, Layout::Canonical),
            ctx_id,
            trace_hash,
            response_json,
            mutation_name: &write.mutation.name,
            request_fingerprint: write.fingerprint.as_str(),
            mode: write.mode.as_str(),
            redacted_paths: paths(redacted.masked),
            policy_bundle_sha256: write.policy_bundle,
            policy_key: write.decision.and_then(DecisionRecord::policy_key).map(str::to_owned),
            policy_version: write.decision.and_then(DecisionRecord::policy_version),
            trace_id: write.trace_id,
            caller: write.caller,
            request_redacted_paths: (request_json.len() <= max_request_bytes).then(|| paths(request_masked)),
            request_json: Some(request_json).filter(|json| json.len() <= max_request_bytes),
            response_json_sha256: Sha256Digest(Sha256::digest(super::jsonb::text(&redacted.value)).into()),
        })
    }

    /// The evidence INSERT's parameters, in [`COLUMNS`] order: the one place
    /// a column is bound. [`Param::to_owned_param`] copies each for the
    /// group committer.
    pub fn params<'a>(&'a self, ending: &'a Ending<'a>) -> [&'a dyn Param; INSERT_PARAMS] {
        [
            &self.workspace_id,
            &self.principal_id,
            &self.object_type,
            &self.operation,
            &self.decision,
            &self.reason_codes,
            &self.ctx_id,
            &self.trace_hash,
            &ending.idempotency_key,
            &self.response_json,
            &ending.outcome,
            &self.mutation_name,
            &self.request_fingerprint,
            &ending.error_sqlstate,
            &self.mode,
            &self.redacted_paths,
            &self.policy_bundle_sha256,
            &self.policy_key,
            &self.policy_version,
            &self.trace_id,
            &self.response_json_sha256,
            &self.caller,
            &self.request_json,
            &self.request_redacted_paths,
        ]
    }
}

/// The evidence row's columns as the sidecar writes them, in the order of
/// the INSERT's parameters ([`EvidenceRow::params`]), each with the cast its
/// text parameter needs. (The database adds `id`, `created_at` and
/// `xact_id`; the log's entry, `log/entry.rs`, reads them all, and a test
/// there checks it names every column here.)
pub const COLUMNS: [(&str, &str); 24] = [
    ("workspace_id", ""),
    ("principal_id", ""),
    ("object_type", ""),
    ("operation", ""),
    ("decision", ""),
    ("reason_codes", "::text::jsonb"),
    ("ctx_id", ""),
    ("trace_hash", ""),
    ("idempotency_key", ""),
    ("response_json", "::text::jsonb"),
    ("outcome", ""),
    ("mutation_name", ""),
    ("request_fingerprint", ""),
    ("error_sqlstate", ""),
    ("mode", ""),
    ("redacted_paths", "::text::jsonb"),
    ("policy_bundle_sha256", ""),
    ("policy_key", ""),
    ("policy_version", ""),
    ("trace_id", ""),
    ("response_json_sha256", ""),
    ("caller", ""),
    ("request_json", ""),
    ("request_redacted_paths", "::text::jsonb"),
];

/// How many parameters the evidence INSERT takes.
pub(super) const INSERT_PARAMS: usize = COLUMNS.len();

/// `INSERT INTO governance_events (…) VALUES (…)`, its parameters numbered
/// from `$first`: the one-statement write puts the mutation's parameters first.
pub(super) fn insert_sql(first: usize) -> String {
    let columns: Vec<&str> = COLUMNS.iter().map(|(column, _)| *column).collect();
    let values: Vec<String> =
        COLUMNS.iter().enumerate().map(|(i, (_, cast))| format!("${}{cast}", first + i)).collect();
    format!("INSERT INTO governance_events ({}) VALUES ({})", columns.join(", "), values.join(", "))
}

/// A parameter copied into a box of its own: what the group committer holds
/// of a caller's write, so that nothing it sends borrows from the caller.
pub(super) type OwnedParam = Box<dyn ToSql + Send + Sync>;

/// A parameter of the evidence INSERT: bound by reference, or copied into
/// a box of its own for the group committer.
pub(super) trait Param: ToSql + Sync {
    fn to_owned_param(&self) -> OwnedParam;
}

impl Param for &str {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new((*self).to_owned())
    }
}

impl Param for String {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.clone())
    }
}

impl Param for Option<&str> {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.map(str::to_owned))
    }
}

impl Param for Option<String> {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(self.clone())
    }
}

impl Param for Option<i64> {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(*self)
    }
}

/// A SHA-256 digest, bound as `bytea`.
#[derive(Debug, Clone, Copy)]
struct Sha256Digest([u8; 32]);

impl ToSql for Sha256Digest {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.as_slice().to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <&[u8] as ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl Param for Sha256Digest {
    fn to_owned_param(&self) -> OwnedParam {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_insert_names_each_column_once_and_numbers_its_parameters_from_the_first_given() {
        let sql = insert_sql(3);
        for (column, _) in COLUMNS {
            assert_eq!(
                sql.matches(&format!(" {column},")).count()
                    + sql.matches(&format!("({column},")).count()
                    + sql.matches(&format!(" {column})")).count(),
                1,
                "{column} in {sql}"
            );
        }
        let (last, cast) = (3 + INSERT_PARAMS - 1, COLUMNS[INSERT_PARAMS - 1].1);
        assert!(sql.contains("VALUES ($3, $4,") && sql.ends_with(&format!("${last}{cast})")), "{sql}");
    }
}
