//! What a mutation returns: its `RETURNING` rows as JSON objects, in the
//! answer and, redacted, in `governance_mutation_results`.

use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::jsonb;
use crate::decision::json::{self, Layout};
use crate::decision::{Map, Value};

/// What a mutation did.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationResult {
    pub rows_affected: u64,
    pub returning: Vec<Map>,
}

/// Whether a `RETURNING` column of this type can be answered as JSON
/// (checked when the registry's statements are prepared at start-up).
pub(super) fn returnable(ty: &Type) -> bool {
    [
        Type::INT2,
        Type::INT4,
        Type::INT8,
        Type::TEXT,
        Type::VARCHAR,
        Type::BOOL,
        Type::FLOAT4,
        Type::FLOAT8,
        Type::JSONB,
        Type::JSON,
    ]
    .contains(ty)
}

/// One returned row as an object keyed by column name.
pub(super) fn row_to_map(row: &Row) -> Map {
    row_to_map_from(row, 0)
}

/// The columns of `row` from the `first`, as an object keyed by column name.
pub(super) fn row_to_map_from(row: &Row, first: usize) -> Map {
    let mut map = Map::default();
    for (i, column) in row.columns().iter().enumerate().skip(first) {
        let ty = column.type_();
        let value = if *ty == Type::INT2 {
            row.get::<_, Option<i16>>(i).map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT4 {
            row.get::<_, Option<i32>>(i).map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT8 {
            row.get::<_, Option<i64>>(i).map(Value::Int)
        } else if *ty == Type::BOOL {
            row.get::<_, Option<bool>>(i).map(Value::Bool)
        } else if *ty == Type::FLOAT4 {
            row.get::<_, Option<f32>>(i).map(|f| Value::Float(f.into()))
        } else if *ty == Type::FLOAT8 {
            row.get::<_, Option<f64>>(i).map(Value::Float)
        } else if *ty == Type::JSONB || *ty == Type::JSON {
            row.get::<_, Option<serde_json::Value>>(i).and_then(|v| json::parse(&v.to_string()).ok())
        } else {
            row.get::<_, Option<String>>(i).map(Value::str)
        };
        map.insert(column.name().into(), value.unwrap_or(Value::Null));
    }
    map
}

/// Rows as the `returning_rows` jsonb column stores them.
pub(super) fn rows_json(rows: &[Map]) -> String {
    let mut rows = Value::Array(rows.iter().cloned().map(Value::Object).collect());
    jsonb::make_safe(&mut rows);
    json::to_string(&rows, Layout::Canonical)
}

/// The stored result as read back (replay and audit), from its two columns.
pub(super) fn stored_result(rows_affected: Option<i64>, returning: Option<String>) -> Option<MutationResult> {
    let (rows_affected, returning) = (rows_affected?, returning?);
    let returning = match json::parse(&returning) {
        Ok(Value::Array(rows)) => rows.into_iter().filter_map(|r| r.as_object().cloned()).collect(),
        _ => Vec::new(),
    };
    Some(MutationResult { rows_affected: rows_affected as u64, returning })
}
