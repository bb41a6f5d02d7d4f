//! An approved write as one statement: the evidence row, the mutation and
//! its stored result in a single `INSERT … ` with data-modifying CTEs.
//!
//! One statement is atomic without `BEGIN` and `COMMIT`, so the write costs
//! one round trip and one statement where the general path
//! ([`super::write`]) takes two round trips and five statements. PostgreSQL
//! spends about a fifth less CPU on it (`docs/performance.md`).
//!
//! ```sql
//! WITH governance_evidence AS (INSERT INTO governance_events (…) VALUES (…) RETURNING id),
//!      governance_mutation AS (<the operator's statement> [RETURNING 1]),
//!      governance_result AS (INSERT INTO governance_mutation_results …
//!                            SELECT <id>, count(*), jsonb_agg(<redacted row>) FROM governance_mutation)
//! SELECT <evidence id>, <marker>, <the statement's RETURNING columns> …
//! ```
//!
//! The evidence INSERT has no `ON CONFLICT`: a key already held fails the
//! whole statement with a unique violation on the idempotency index, so
//! nothing of it is written, and the caller replays
//! ([`super::idempotency::is_key_taken`]). A concurrent holder not yet
//! committed is waited for, as the claiming INSERT waits.
//!
//! A mutation can be written this way when it is one statement, does not
//! take the evidence id (the evidence row would have to exist first), and
//! returns only scalar columns, whose redaction is decided by the column's
//! name alone and so can be written into the SQL. Whether PostgreSQL accepts
//! the composed statement is checked once, at start-up; any mutation it
//! refuses (a `MERGE`, a trailing comment) takes the general path.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::EvidenceError;
use super::redact::{MASK, Redactor};
use super::returning::{MutationResult, row_to_map_from};
use super::row::{self, Ending, EvidenceRow, OwnedParam};
use crate::mutations::{Builtin, Mutation, SqlValue};
use crate::vocabulary::Outcome;

/// What the composed statement's first columns are, before the mutation's own.
const EVIDENCE_ID: &str = "governance_evidence_id";
/// `true` on a row the mutation returned; NULL on the one row that says it returned none.
const RETURNED: &str = "governance_returned";
/// Rows a mutation without `RETURNING` affected.
const ROWS_AFFECTED: &str = "governance_rows_affected";

/// A mutation's approved write, composed as one statement.
#[derive(Debug, Clone)]
pub(super) struct OneStatementWrite {
    sql: String,
    /// The mutation's parameter types, `$1…$n`; the evidence row's follow, inferred.
    param_types: Vec<Type>,
    /// Which of the mutation's bound values each `$n` takes.
    positions: Vec<usize>,
    /// Whether the operator's statement has a `RETURNING` clause.
    returns_rows: bool,
}

impl OneStatementWrite {
    /// The composed statement for `mutation`, given the columns its one
    /// statement returns (as PostgreSQL described them when prepared), or
    /// `None` when it must take the general path.
    pub(super) fn compose(mutation: &Mutation, returning: &[(String, Type)], redactor: &Redactor) -> Option<Self> {
        let [statement] = mutation.statements.as_slice() else { return None };
        if mutation.uses_builtin(Builtin::EvidenceId) {
            return None;
        }
        if returning.iter().any(|(_, ty)| *ty == Type::JSON || *ty == Type::JSONB) {
            // Redaction looks inside JSON values; only the sidecar does that.
            return None;
        }
        let param_types = mutation.param_types(statement);
        let operator_sql = statement.sql.trim_end().trim_end_matches(';').trim_end();
        let returns_rows = !returning.is_empty();
        let stored_rows = if returns_rows {
            let fields: Vec<String> = returning
                .iter()
                .map(|(name, ty)| format!("{}, {}", quote_literal(name), stored_value(name, ty, redactor)))
                .collect();
            format!("coalesce(jsonb_agg(jsonb_build_object({})), '[]')", fields.join(", "))
        } else {
            "'[]'::jsonb".to_owned()
        };
        let answer = if returns_rows {
            format!(
                "SELECT governance_evidence.id AS {EVIDENCE_ID}, governance_returned.* FROM governance_evidence \
                 LEFT JOIN (SELECT true AS {RETURNED}, * FROM governance_mutation) AS governance_returned ON true"
            )
        } else {
            format!(
                "SELECT id AS {EVIDENCE_ID}, (SELECT count(*) FROM governance_mutation) AS {ROWS_AFFECTED} \
                 FROM governance_evidence"
            )
        };
        let sql = format!(
            "WITH governance_evidence AS ({} RETURNING id, workspace_id), \
             governance_mutation AS ({operator_sql}{}), \
             governance_result AS (\
             INSERT INTO governance_mutation_results (evidence_id, workspace_id, rows_affected, returning_rows) \
             SELECT (SELECT id FROM governance_evidence), (SELECT workspace_id FROM governance_evidence), \
             count(*), {stored_rows} FROM governance_mutation) \
             {answer}",
            row::insert_sql(param_types.len() + 1),
            if returns_rows { "" } else { " RETURNING 1" },
        );
        Some(OneStatementWrite { sql, param_types, positions: statement.params.clone(), returns_rows })
    }

    /// The statement PostgreSQL is asked to accept at start-up.
    pub(super) fn sql(&self) -> &str {
        &self.sql
    }

    pub(super) fn param_types(&self) -> &[Type] {
        &self.param_types
    }

    /// The statement's parameters, owned: the mutation's bound `values` (in
    /// its declared parameters' order) as its `$n` take them, then the
    /// evidence row's.
    pub(super) fn params(&self, row: &EvidenceRow<'_>, values: &[SqlValue]) -> WriteParams {
        let ending = Ending::claiming(row, Outcome::Applied);
        let evidence = row.params(&ending);
        let mut params: Vec<OwnedParam> = Vec::with_capacity(self.positions.len() + evidence.len());
        params.extend(self.positions.iter().map(|&i| Box::new(values[i].clone()) as OwnedParam));
        params.extend(evidence.iter().map(|param| param.to_owned_param()));
        WriteParams(params)
    }

    /// Runs the write on its own. `Ok(None)`: the key is held by another
    /// row, nothing was written, replay.
    pub(super) async fn execute(
        &self,
        client: &impl GenericClient,
        params: &WriteParams,
    ) -> Result<Option<(i64, MutationResult)>, EvidenceError> {
        let statement = client.prepare_typed_cached(&self.sql, &self.param_types).await?;
        self.answer(client.query(&statement, &params.refs()).await)
    }

    /// What the statement's answer means for its caller.
    pub(super) fn answer(
        &self,
        answer: Result<Vec<Row>, tokio_postgres::Error>,
    ) -> Result<Option<(i64, MutationResult)>, EvidenceError> {
        let rows = match answer {
            Ok(rows) => rows,
            Err(error) if super::idempotency::is_key_taken(&error) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let first = rows.first().ok_or(EvidenceError::Unexpected("the one-statement write returned no row"))?;
        let evidence_id: i64 = first.try_get(EVIDENCE_ID)?;
        let result = if self.returns_rows {
            let mut returning = Vec::with_capacity(rows.len());
            for row in &rows {
                if row.try_get::<_, Option<bool>>(RETURNED)?.is_some() {
                    // The evidence id and the marker come first.
                    returning.push(row_to_map_from(row, 2));
                }
            }
            MutationResult { rows_affected: returning.len() as u64, returning }
        } else {
            MutationResult { rows_affected: first.try_get::<_, i64>(ROWS_AFFECTED)? as u64, returning: Vec::new() }
        };
        Ok(Some((evidence_id, result)))
    }
}

/// One write's parameters, owned (see [`OwnedParam`]).
pub(super) struct WriteParams(Vec<OwnedParam>);

impl WriteParams {
    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|param| param.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// A returned column as `governance_mutation_results` stores it: masked
/// when its name is a secret's (NULL stays NULL, as the sidecar masks), and
/// a `real` widened to `double precision`, as the sidecar reads it.
fn stored_value(name: &str, ty: &Type, redactor: &Redactor) -> String {
    let column = quote_identifier(name);
    if redactor.key_is_sensitive(name) {
        format!("CASE WHEN {column} IS NULL THEN NULL ELSE {} END", quote_literal(MASK))
    } else if *ty == Type::FLOAT4 {
        format!("{column}::float8")
    } else {
        column
    }
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutations::Registry;

    fn mutation(statements: &str, params: &str) -> Mutation {
        let toml = format!(
            "[[mutations]]\nname = \"m\"\nobject_type = \"invoice\"\noperation = \"create\"\n\
             statements = {statements}\n[mutations.params]\n{params}"
        );
        Registry::parse(&toml).unwrap().get("m").unwrap().clone()
    }

    #[test]
    fn a_statement_returning_scalars_is_composed_with_secrets_masked_in_sql() {
        let m = mutation(
            r#"["INSERT INTO t (a) VALUES (:a) RETURNING id, api_key;"]"#,
            r#"a = { type = "bigint", request = "payload.a" }"#,
        );
        let returning = [("id".to_owned(), Type::INT8), ("api_key".to_owned(), Type::TEXT)];
        let composed = OneStatementWrite::compose(&m, &returning, &Redactor::new(&[], &["api_key".into()]).unwrap())
            .expect("composed");
        assert_eq!(composed.param_types(), &[Type::INT8]);
        assert!(composed.sql().contains("INSERT INTO t (a) VALUES ($1) RETURNING id, api_key)"), "{}", composed.sql());
        assert!(composed.sql().contains("VALUES ($2, $3,"), "the evidence's parameters follow the mutation's");
        assert!(composed.sql().contains(r#"'api_key', CASE WHEN "api_key" IS NULL THEN NULL ELSE '[REDACTED]' END"#));
        assert!(composed.sql().contains(r#"'id', "id""#));
        assert!(!composed.sql().contains("ON CONFLICT"), "a held key fails the statement");
    }

    #[test]
    fn a_statement_without_returning_is_counted() {
        let m = mutation(r#"["UPDATE t SET a = 1"]"#, "");
        let composed = OneStatementWrite::compose(&m, &[], &Redactor::default()).expect("composed");
        assert!(composed.sql().contains("UPDATE t SET a = 1 RETURNING 1)"));
        assert!(composed.sql().contains(ROWS_AFFECTED));
    }

    #[test]
    fn several_statements_the_evidence_id_or_json_columns_take_the_general_path() {
        let two = mutation(r#"["UPDATE t SET a = 1", "UPDATE t SET a = 2"]"#, "");
        assert!(OneStatementWrite::compose(&two, &[], &Redactor::default()).is_none());
        let with_id =
            mutation(r#"["INSERT INTO t (e) VALUES (:e)"]"#, r#"e = { type = "bigint", builtin = "evidence_id" }"#);
        assert!(OneStatementWrite::compose(&with_id, &[], &Redactor::default()).is_none());
        let json = mutation(r#"["INSERT INTO t DEFAULT VALUES RETURNING doc"]"#, "");
        assert!(OneStatementWrite::compose(&json, &[("doc".into(), Type::JSONB)], &Redactor::default()).is_none());
    }
}
