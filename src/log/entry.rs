//! The bytes a log leaf commits to: a canonical, versioned encoding of one
//! evidence row as stored, which anyone can recompute from a plain SELECT.
//!
//! Three versions (docs/verifiable-log.md, "The entry", says the same, and a
//! test below holds its SELECT to [`ENTRY_COLUMNS`]): a row that records the
//! request it decided (migration 11) has a v3 entry, which commits to it and
//! to where it was masked; a row without one that records its caller
//! (migration 10) has a v2 entry; an older row keeps its v1 entry. Each is
//! its version line ([`ENTRY_V1`], [`ENTRY_V2`], [`ENTRY_V3`]), then for each
//! of its fields (v1: the first 25 of [`FIELDS`]; v2: 26; v3: all 28), in
//! order, either the
//! byte `0x00` (SQL NULL) or the byte `0x01`, the length of the value's UTF-8
//! bytes as a 4-byte big-endian integer, and those bytes. Each value is the
//! text [`ENTRY_COLUMNS`] selects: PostgreSQL's own text output of the stored
//! value (jsonb in its normalised form), `created_at` as microseconds since
//! the Unix epoch, and, for the response JSON, the lower-case hex SHA-256 of
//! its text (the response is the bulk of a row; its digest is computed once,
//! when the row is written, see [`SEQUENCED_COLUMNS`]). The leaf hash is RFC
//! 6962's `SHA-256(0x00 || entry)`.

use tokio_postgres::Row;

/// The first bytes of every v1 entry: a row without a caller.
pub const ENTRY_V1: &[u8] = b"governance-sidecar evidence entry v1\n";
/// The first bytes of every v2 entry: a row with a caller.
pub const ENTRY_V2: &[u8] = b"governance-sidecar evidence entry v2\n";

/// The first bytes of every v3 entry: a row with the request it decided.
pub const ENTRY_V3: &[u8] = b"governance-sidecar evidence entry v3\n";

/// How many of [`FIELDS`] a v1 entry encodes.
const V1_FIELDS: usize = 25;
/// How many of [`FIELDS`] a v2 entry encodes: v1's and the caller.
const V2_FIELDS: usize = 26;

/// The fields an entry encodes, in order: every column of the evidence row
/// that carries meaning, then the mutation's result (NULL when there is
/// none), then (v2 and v3) the caller, then (v3 only) the request as stored
/// and where it was masked.
pub const FIELDS: [&str; 28] = [
    "id",
    "created_at_us",
    "xact_id",
    "workspace_id",
    "principal_id",
    "object_type",
    "operation",
    "decision",
    "reason_codes",
    "ctx_id",
    "trace_hash",
    "idempotency_key",
    "response_json_sha256",
    "outcome",
    "mutation_name",
    "request_fingerprint",
    "error_sqlstate",
    "mode",
    "redacted_paths",
    "policy_bundle_sha256",
    "policy_key",
    "policy_version",
    "trace_id",
    "rows_affected",
    "returning_rows",
    "caller",
    "request_json",
    "request_redacted_paths",
];

/// The select list around the response digest's expression.
macro_rules! concat_fields {
    ($response_digest:literal) => {
        concat!(
            "e.id::text AS id,
    (extract(epoch FROM e.created_at) * 1000000)::bigint::text AS created_at_us,
    e.xact_id::text AS xact_id,
    e.workspace_id, e.principal_id, e.object_type, e.operation, e.decision,
    e.reason_codes::text AS reason_codes,
    e.ctx_id, e.trace_hash, e.idempotency_key, ",
            $response_digest,
            ",
    e.outcome, e.mutation_name, e.request_fingerprint, e.error_sqlstate, e.mode,
    e.redacted_paths::text AS redacted_paths,
    e.policy_bundle_sha256, e.policy_key,
    e.policy_version::text AS policy_version,
    e.trace_id,
    r.rows_affected::text AS rows_affected,
    r.returning_rows::text AS returning_rows,
    e.caller, e.request_json,
    e.request_redacted_paths::text AS request_redacted_paths"
        )
    };
}

/// The select list giving each field of [`FIELDS`] as text, from
/// `governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id`,
/// everything recomputed from the stored values: what `verify` (and any
/// auditor) reads.
pub const ENTRY_COLUMNS: &str =
    concat_fields!("encode(sha256(convert_to(e.response_json::text, 'UTF8')), 'hex') AS response_json_sha256");

/// The same fields as the sequencer reads them: the response's digest as the
/// sidecar's INSERT stored it (computed then only for a row written without it).
pub const SEQUENCED_COLUMNS: &str = concat_fields!(
    "encode(coalesce(e.response_json_sha256, sha256(convert_to(e.response_json::text, 'UTF8'))), 'hex') \
     AS response_json_sha256"
);

/// The tables [`ENTRY_COLUMNS`] reads.
pub const ENTRY_FROM: &str = "governance_events e LEFT JOIN governance_mutation_results r ON r.evidence_id = e.id";

/// Encodes field values (in [`FIELDS`] order) as an entry of `version`.
pub fn encode<'a>(version: &[u8], values: impl IntoIterator<Item = Option<&'a str>>) -> Vec<u8> {
    let mut entry = Vec::with_capacity(1024);
    entry.extend_from_slice(version);
    for value in values {
        match value {
            None => entry.push(0x00),
            Some(text) => {
                entry.push(0x01);
                let length = u32::try_from(text.len()).expect("a PostgreSQL text value is under 1 GB");
                entry.extend_from_slice(&length.to_be_bytes());
                entry.extend_from_slice(text.as_bytes());
            }
        }
    }
    entry
}

/// The entry of a row selected with [`ENTRY_COLUMNS`], read by column
/// name: v3 when the row holds its request, else v2 when it names its
/// caller, else v1.
pub fn from_row(row: &Row) -> Result<Vec<u8>, tokio_postgres::Error> {
    let values = FIELDS.iter().map(|field| row.try_get::<_, Option<&str>>(*field)).collect::<Result<Vec<_>, _>>()?;
    let (version, fields) = match (values[V2_FIELDS], values[V1_FIELDS]) {
        (Some(_), _) => (ENTRY_V3, FIELDS.len()),
        (None, Some(_)) => (ENTRY_V2, V2_FIELDS),
        (None, None) => (ENTRY_V1, V1_FIELDS),
    };
    Ok(encode(version, values.into_iter().take(fields)))
}

/// The leaf hash of an entry: RFC 6962's `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> tlog_tiles::Hash {
    tlog_tiles::record_hash(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_and_empty_text_encode_differently() {
        assert_ne!(encode(ENTRY_V1, [None]), encode(ENTRY_V1, [Some("")]));
        assert_eq!(encode(ENTRY_V1, [Some("")]), [ENTRY_V1, &[1, 0, 0, 0, 0]].concat());
    }

    #[test]
    fn values_are_length_prefixed_so_no_split_is_ambiguous() {
        assert_ne!(encode(ENTRY_V2, [Some("ab"), Some("c")]), encode(ENTRY_V2, [Some("a"), Some("bc")]));
        assert_eq!(encode(ENTRY_V2, [Some("ab")]), [ENTRY_V2, &[1, 0, 0, 0, 2, b'a', b'b']].concat());
    }

    #[test]
    fn the_versions_differ_in_their_first_line_and_each_extends_the_one_before() {
        assert!(ENTRY_V1.len() == ENTRY_V2.len() && ENTRY_V2.len() == ENTRY_V3.len());
        assert!(ENTRY_V1 != ENTRY_V2 && ENTRY_V2 != ENTRY_V3 && ENTRY_V1 != ENTRY_V3);
        assert_eq!(FIELDS[V1_FIELDS..V2_FIELDS], ["caller"]);
        assert_eq!(FIELDS[V2_FIELDS..], ["request_json", "request_redacted_paths"]);
    }

    #[test]
    fn the_entry_commits_to_every_column_the_evidence_row_writes() {
        for (column, _) in crate::evidence::EVIDENCE_COLUMNS {
            // The response by its digest, which the row stores beside it.
            let field = if column == "response_json" { "response_json_sha256" } else { column };
            assert!(FIELDS.contains(&field), "the log's entry leaves out {column}");
        }
    }

    #[test]
    fn the_specification_gives_the_select_the_entry_is_read_with() {
        let page = include_str!("../../docs/verifiable-log.md");
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let select = format!("SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM}");
        assert!(words(page).contains(&words(&select)), "docs/verifiable-log.md does not show the entry's SELECT");
    }

    #[test]
    fn the_leaf_hash_is_rfc_6962s() {
        // SHA-256 of the single byte 0x00: RFC 6962's hash of an empty leaf.
        let empty = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d";
        assert_eq!(hex::encode(leaf_hash(b"").0), empty);
    }
}
