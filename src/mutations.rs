//! The operator's registry of writes a caller may ask for by name.
//!
//! The caller never sends SQL. The operator declares, in a TOML file, each
//! mutation's `(object_type, operation)`, its statements with `:named`
//! parameters, and for each parameter its type and where its value comes from:
//! a path in the governed request (the default, so that what is written is what
//! was evaluated), a built-in, or, only where declared, the caller.
//!
//! A mutation names its scope, or the `operation_id` of an operation in
//! Kernite's operation map (`--operation-map`), which gives the scope.
//!
//! ```toml
//! [[mutations]]
//! name = "create_invoice"
//! object_type = "invoice"
//! operation = "create"
//! statements = ["INSERT INTO invoices (workspace_id, amount, currency) VALUES (:workspace_id, :amount, :currency) RETURNING id"]
//! [mutations.params]
//! workspace_id = { type = "text", builtin = "workspace_id" }
//! amount = { type = "bigint", request = "payload.amount" }
//! currency = { type = "text", request = "payload.currency" }
//! ```

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use crate::decision::{Map, NormalizedRequest, Value};
use crate::error::{ServiceError, ServiceErrorCode};
use crate::policies::OperationMap;
use crate::vocabulary::Mode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    mutations: Vec<MutationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MutationSpec {
    name: String,
    object_type: Option<String>,
    operation: Option<String>,
    /// An operation of the operation map, standing for its scope.
    operation_id: Option<String>,
    /// Overrides the server's default mode for this mutation.
    mode: Option<Mode>,
    /// Runs even though the policy bundle does not govern its scope.
    #[serde(default)]
    ungoverned: bool,
    statements: Vec<String>,
    #[serde(default)]
    params: HashMap<String, ParamSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamSpec {
    r#type: ParamType,
    request: Option<String>,
    builtin: Option<Builtin>,
    #[serde(default)]
    caller: bool,
    /// A missing value is bound as NULL instead of refusing the call.
    #[serde(default)]
    nullable: bool,
}

/// The SQL types a parameter may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Text,
    Bigint,
    Integer,
    #[serde(rename = "double precision")]
    Double,
    Boolean,
    Jsonb,
}

impl ParamType {
    fn sql_type(self) -> Type {
        match self {
            ParamType::Text => Type::TEXT,
            ParamType::Bigint => Type::INT8,
            ParamType::Integer => Type::INT4,
            ParamType::Double => Type::FLOAT8,
            ParamType::Boolean => Type::BOOL,
            ParamType::Jsonb => Type::JSONB,
        }
    }
}

/// Values the sidecar itself supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builtin {
    WorkspaceId,
    PrincipalId,
    CtxId,
    TraceHash,
    EvidenceId,
    IdempotencyKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A dotted path from the request root: `payload.amount`, `principal.attributes.x`.
    Request(Vec<String>),
    Builtin(Builtin),
    Caller,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub source: Source,
    pub nullable: bool,
}

/// One statement with its positional parameters (`$1` is `params[0]`).
#[derive(Debug, Clone)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct Mutation {
    pub name: String,
    pub object_type: String,
    pub operation: String,
    pub mode: Option<Mode>,
    /// The operator's explicit word that the policy bundle need not govern
    /// this mutation's scope (`ungoverned = true`); otherwise `serve` refuses
    /// to start, and a call is refused, when it does not.
    pub ungoverned: bool,
    pub params: Vec<Param>,
    pub statements: Vec<Statement>,
}

impl Mutation {
    /// A write of nothing but its evidence, in the scope `object_type`/`operation`:
    /// what a gateway's check records (`crate::gateway`). The registry never
    /// holds one (a registered mutation has statements).
    pub fn evidence_only(name: &str, object_type: &str, operation: &str) -> Mutation {
        Mutation {
            name: name.to_owned(),
            object_type: object_type.to_owned(),
            operation: operation.to_owned(),
            mode: None,
            ungoverned: false,
            params: Vec::new(),
            statements: Vec::new(),
        }
    }

    /// Whether a parameter takes this built-in (the evidence id forces the
    /// mutation to wait for the evidence row).
    pub(crate) fn uses_builtin(&self, builtin: Builtin) -> bool {
        self.params.iter().any(|p| p.source == Source::Builtin(builtin))
    }

    pub(crate) fn param_types(&self, statement: &Statement) -> Vec<Type> {
        statement.params.iter().map(|&i| self.params[i].kind.sql_type()).collect()
    }
}

/// All registered mutations, by name, and the mode of those that set none.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    mutations: HashMap<String, Mutation>,
    default_mode: Mode,
}

/// Why a caller may not run the mutation it named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MutationRefused {
    #[error("no mutation named `{0}` is registered")]
    Unknown(String),
    #[error("mutation `{name}` is bound to {object_type}/{operation}, not to this request's scope")]
    OutOfScope { name: String, object_type: String, operation: String },
}

impl ServiceError for MutationRefused {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            MutationRefused::Unknown(_) => ServiceErrorCode::NotFound,
            MutationRefused::OutOfScope { .. } => ServiceErrorCode::PermissionDenied,
        }
    }
}

impl Registry {
    /// The registry in `path`; its mutations that name an `operation_id`
    /// take their scope from `operations`.
    pub fn load(path: &Path, operations: Option<&OperationMap>) -> anyhow::Result<Registry> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading mutations file {}", path.display()))?;
        Registry::parse_with(&text, operations).with_context(|| format!("in mutations file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Registry> {
        Registry::parse_with(text, None)
    }

    pub fn parse_with(text: &str, operations: Option<&OperationMap>) -> anyhow::Result<Registry> {
        let file: RegistryFile = toml::from_str(text)?;
        let mut mutations = HashMap::default();
        for spec in file.mutations {
            let name = spec.name.clone();
            let mutation = compile(spec, operations).with_context(|| format!("mutation `{name}`"))?;
            if mutations.insert(name.clone(), mutation).is_some() {
                bail!("mutation `{name}` is declared twice");
            }
        }
        Ok(Registry { mutations, default_mode: Mode::default() })
    }

    /// The mode of mutations that set none and whose bundle scope sets none.
    pub fn with_default_mode(self, default_mode: Mode) -> Registry {
        Registry { default_mode, ..self }
    }

    pub fn get(&self, name: &str) -> Option<&Mutation> {
        self.mutations.get(name)
    }

    /// The mutation a caller named, if it may govern this request's scope.
    pub fn mutation_for(&self, name: &str, request: &NormalizedRequest) -> Result<&Mutation, MutationRefused> {
        let mutation = self.get(name).ok_or_else(|| MutationRefused::Unknown(name.to_owned()))?;
        if mutation.object_type != request.object_type || mutation.operation != request.operation {
            return Err(MutationRefused::OutOfScope {
                name: name.to_owned(),
                object_type: mutation.object_type.clone(),
                operation: mutation.operation.clone(),
            });
        }
        Ok(mutation)
    }

    /// The operator's mode for a mutation: its own, else its scope's in the
    /// policy bundle, else the registry's default.
    pub fn mode_for(&self, mutation: &Mutation, bundle_mode: Option<Mode>) -> Mode {
        mutation.mode.or(bundle_mode).unwrap_or(self.default_mode)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mutation> {
        self.mutations.values()
    }

    /// The registered mutations that nothing governs: those whose scope the
    /// bundle does not mention (all of them without a bundle), unless marked
    /// `ungoverned`. Sorted by name.
    pub fn ungoverned_by(&self, bundle: Option<&crate::policies::PolicyBundle>) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .iter()
            .filter(|m| !m.ungoverned)
            .filter(|m| bundle.is_none_or(|b| b.resolve(&m.object_type, &m.operation).mode.is_none()))
            .map(|m| m.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }
}

/// The scope a mutation names, itself or through the operation map.
fn scope_of(spec: &MutationSpec, operations: Option<&OperationMap>) -> anyhow::Result<(String, String)> {
    match (&spec.object_type, &spec.operation, &spec.operation_id) {
        (Some(object_type), Some(operation), None) => Ok((object_type.clone(), operation.clone())),
        (None, None, Some(id)) => {
            let operations = operations.context("names an operation_id, but no --operation-map was given")?;
            let mapped =
                operations.get(id).with_context(|| format!("operation_id `{id}` is not in the operation map"))?;
            Ok((mapped.object_type.clone(), mapped.operation.clone()))
        }
        _ => bail!("needs either `object_type` and `operation`, or `operation_id` alone"),
    }
}

fn compile(spec: MutationSpec, operations: Option<&OperationMap>) -> anyhow::Result<Mutation> {
    if spec.statements.is_empty() {
        bail!("has no statements");
    }
    let (object_type, operation) = scope_of(&spec, operations)?;
    let mut names: Vec<&String> = spec.params.keys().collect();
    names.sort();
    let mut params = Vec::with_capacity(names.len());
    for name in names {
        let p = &spec.params[name];
        let source = match (&p.request, p.builtin, p.caller) {
            (Some(path), None, false) => {
                let path: Vec<String> = path.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    bail!("parameter `{name}`: request path has an empty segment");
                }
                Source::Request(path)
            }
            (None, Some(builtin), false) => Source::Builtin(builtin),
            (None, None, true) => Source::Caller,
            _ => bail!("parameter `{name}` needs exactly one of `request`, `builtin` or `caller = true`"),
        };
        params.push(Param { name: name.clone(), kind: p.r#type, source, nullable: p.nullable });
    }
    let statements = spec
        .statements
        .iter()
        .enumerate()
        .map(|(i, sql)| bind_named(sql, &params).with_context(|| format!("statement {}", i + 1)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Mutation {
        name: spec.name,
        object_type,
        operation,
        mode: spec.mode,
        ungoverned: spec.ungoverned,
        params,
        statements,
    })
}

/// Rewrites `:name` to `$n`, leaving `::casts`, quoted text and identifiers alone.
fn bind_named(sql: &str, params: &[Param]) -> anyhow::Result<Statement> {
    let mut out = String::with_capacity(sql.len());
    let mut positions: Vec<usize> = Vec::new();
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                // Copy a quoted run verbatim (a doubled quote stays inside it).
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    if chars[i] == c {
                        if chars.get(i + 1) == Some(&c) {
                            out.push(c);
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&':') => {
                out.push_str("::");
                i += 2;
            }
            ':' if chars.get(i + 1).is_some_and(|n| n.is_ascii_alphabetic() || *n == '_') => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                let index = params
                    .iter()
                    .position(|p| p.name == name)
                    .with_context(|| format!("`:{name}` is not a declared parameter"))?;
                let position = match positions.iter().position(|&p| p == index) {
                    Some(existing) => existing + 1,
                    None => {
                        positions.push(index);
                        positions.len()
                    }
                };
                out.push('$');
                out.push_str(&position.to_string());
                i = end;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(Statement { sql: out, params: positions })
}

/// A bound parameter value, typed as its declaration says.
#[derive(Debug, Clone)]
pub(crate) enum SqlValue {
    Null,
    Text(String),
    Bigint(i64),
    Integer(i32),
    Double(f64),
    Boolean(bool),
    Jsonb(serde_json::Value),
}

impl ToSql for SqlValue {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            SqlValue::Null => Ok(IsNull::Yes),
            SqlValue::Text(v) => v.to_sql(ty, out),
            SqlValue::Bigint(v) => v.to_sql(ty, out),
            SqlValue::Integer(v) => v.to_sql(ty, out),
            SqlValue::Double(v) => v.to_sql(ty, out),
            SqlValue::Boolean(v) => v.to_sql(ty, out),
            SqlValue::Jsonb(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        // Each value is built for its declared type, which the statement was prepared with.
        true
    }

    to_sql_checked!();
}

/// Why a parameter cannot be bound; the message names the parameter, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("mutation parameter `{0}` has no value")]
    Missing(String),
    #[error("mutation parameter `{name}` must be {expected}")]
    WrongType { name: String, expected: &'static str },
    #[error("mutation parameter `{0}` is not declared as caller-supplied")]
    NotCallerSupplied(String),
    #[error("mutation parameter `{0}` holds a NUL character (U+0000), which PostgreSQL cannot store")]
    Nul(String),
}

/// What built-ins resolve to for one call.
pub(crate) struct Builtins<'a> {
    pub request: &'a NormalizedRequest,
    pub ctx_id: &'a str,
    pub trace_hash: &'a str,
    pub evidence_id: i64,
}

impl Mutation {
    /// Refuses caller parameters the operator did not declare as caller-supplied.
    pub(crate) fn check_caller_params(&self, caller: &Map) -> Result<(), BindError> {
        for name in caller.keys() {
            if !self.params.iter().any(|p| p.name == *name && p.source == Source::Caller) {
                return Err(BindError::NotCallerSupplied(name.to_string()));
            }
        }
        Ok(())
    }

    /// The values of every parameter, in declaration order.
    pub(crate) fn bind(&self, builtins: &Builtins<'_>, caller: &Map) -> Result<Vec<SqlValue>, BindError> {
        self.params
            .iter()
            .map(|param| {
                let value = match &param.source {
                    Source::Request(path) => read_request_path(builtins.request, path),
                    Source::Caller => caller.get(param.name.as_str()).cloned().unwrap_or(Value::Null),
                    Source::Builtin(builtin) => builtin_value(*builtin, builtins),
                };
                convert(param, value)
            })
            .collect()
    }
}

/// The value at a dotted path of the request as [`NormalizedRequest::to_value`]
/// lays it out, read from the request's fields without building that tree.
fn read_request_path(request: &NormalizedRequest, path: &[String]) -> Value {
    let Some((root, rest)) = path.split_first() else { return Value::Null };
    let text = |s: &str| if rest.is_empty() { Value::str(s) } else { Value::Null };
    match root.as_str() {
        "workspace_id" => text(&request.workspace_id),
        "object_type" => text(&request.object_type),
        "operation" => text(&request.operation),
        "idempotency_key" => request.idempotency_key.as_deref().map_or(Value::Null, text),
        "payload" => read_in(&request.payload, rest),
        "resource" => read_in(&request.resource, rest),
        "context" => read_in(&request.context, rest),
        "principal" => match rest.split_first() {
            None => request.principal_value(),
            Some((field, rest)) => match field.as_str() {
                "attributes" => read_in(&request.principal.attributes, rest),
                "id" if rest.is_empty() => Value::Str(request.principal.id.clone()),
                "type" if rest.is_empty() => Value::Str(request.principal.kind.clone()),
                _ => Value::Null,
            },
        },
        _ => Value::Null,
    }
}

/// The value at `path` inside `map`; the map itself for an empty path.
fn read_in(map: &Map, path: &[String]) -> Value {
    let Some((first, rest)) = path.split_first() else { return Value::Object(map.clone()) };
    let mut current = Value::or_null(map.get(first.as_str()));
    for token in rest {
        match current {
            Value::Object(inner) => current = Value::or_null(inner.get(token.as_str())),
            _ => return Value::Null,
        }
    }
    current.clone()
}

fn builtin_value(builtin: Builtin, b: &Builtins<'_>) -> Value {
    match builtin {
        Builtin::WorkspaceId => Value::Str(b.request.workspace_id.clone()),
        Builtin::PrincipalId => Value::Str(b.request.principal.id.clone()),
        Builtin::CtxId => Value::str(b.ctx_id),
        Builtin::TraceHash => Value::str(b.trace_hash),
        Builtin::EvidenceId => Value::Int(b.evidence_id),
        Builtin::IdempotencyKey => b.request.idempotency_key.as_deref().map_or(Value::Null, Value::str),
    }
}

fn convert(param: &Param, value: Value) -> Result<SqlValue, BindError> {
    let wrong = |expected| BindError::WrongType { name: param.name.clone(), expected };
    Ok(match (param.kind, value) {
        (_, Value::Null) if param.nullable => SqlValue::Null,
        (_, Value::Null) => return Err(BindError::Missing(param.name.clone())),
        (_, value) if value.contains_nul() => return Err(BindError::Nul(param.name.clone())),
        (ParamType::Text, Value::Str(s)) => SqlValue::Text(s.into_string()),
        (ParamType::Text, _) => return Err(wrong("a string")),
        (ParamType::Bigint, Value::Int(n)) => SqlValue::Bigint(n),
        (ParamType::Bigint, _) => return Err(wrong("an integer within 64 bits")),
        (ParamType::Integer, Value::Int(n)) => {
            SqlValue::Integer(i32::try_from(n).map_err(|_| wrong("a 32-bit integer"))?)
        }
        (ParamType::Integer, _) => return Err(wrong("a 32-bit integer")),
        (ParamType::Double, Value::Int(n)) => SqlValue::Double(n as f64),
        (ParamType::Double, Value::Float(f)) => SqlValue::Double(f),
        (ParamType::Double, _) => return Err(wrong("a number")),
        (ParamType::Boolean, Value::Bool(b)) => SqlValue::Boolean(b),
        (ParamType::Boolean, _) => return Err(wrong("a boolean")),
        (ParamType::Jsonb, value) => SqlValue::Jsonb(to_serde(&value)),
    })
}

/// Our value as serde_json's, for `jsonb` parameters and columns.
pub(crate) fn to_serde(value: &Value) -> serde_json::Value {
    use crate::decision::json::{Layout, to_string};
    // Our writer emits valid JSON for every finite value; serde_json reads it back.
    serde_json::from_str(&to_string(value, Layout::Canonical)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_holding_nul_is_refused_naming_the_parameter() {
        let param = Param { name: "note".into(), kind: ParamType::Text, source: Source::Caller, nullable: false };
        assert_eq!(convert(&param, Value::str("a\0b")).err(), Some(BindError::Nul("note".into())));
        let json = Param { kind: ParamType::Jsonb, ..param.clone() };
        let nested = crate::decision::json::parse(r#"{"k": ["ok", "a\u0000b"]}"#).unwrap();
        assert_eq!(convert(&json, nested).err(), Some(BindError::Nul("note".into())));
        assert!(convert(&param, Value::str("fine")).is_ok());
    }

    const INVOICE: &str = r#"
        [[mutations]]
        name = "create_invoice"
        object_type = "invoice"
        operation = "create"
        statements = ["INSERT INTO invoices (workspace_id, amount, note, kind) VALUES (:workspace_id, :amount, :note::text, 'a:b') RETURNING id, :amount AS echoed"]
        [mutations.params]
        workspace_id = { type = "text", builtin = "workspace_id" }
        amount = { type = "bigint", request = "payload.amount" }
        note = { type = "text", caller = true, nullable = true }
    "#;

    #[test]
    fn named_parameters_become_positional_and_repeat_their_position() {
        let registry = Registry::parse(INVOICE).unwrap();
        let mutation = registry.get("create_invoice").unwrap();
        let statement = &mutation.statements[0];
        assert_eq!(
            statement.sql,
            "INSERT INTO invoices (workspace_id, amount, note, kind) VALUES ($1, $2, $3::text, 'a:b') RETURNING id, $2 AS echoed"
        );
        let names: Vec<_> = statement.params.iter().map(|&i| mutation.params[i].name.as_str()).collect();
        assert_eq!(names, ["workspace_id", "amount", "note"]);
    }

    #[test]
    fn request_paths_read_what_the_request_tree_holds() {
        let body = crate::decision::json::parse(
            r#"{"workspace_id": "w", "principal": {"type": "user", "id": "u1", "attributes": {"role": {"name": "admin"}}},
                "object_type": "invoice", "operation": "create", "payload": {"amount": 5, "nested": {"x": [1]}},
                "resource": {"id": 9}, "context": {}}"#,
        )
        .unwrap();
        let request = crate::decision::validate::validate(body, Some("key")).unwrap().request;
        let tree = request.to_value();
        let by_tree = |path: &[String]| {
            let mut current = &tree;
            for token in path {
                match current {
                    Value::Object(map) => current = Value::or_null(map.get(token.as_str())),
                    _ => return Value::Null,
                }
            }
            current.clone()
        };
        for path in [
            "workspace_id",
            "workspace_id.x",
            "object_type",
            "operation",
            "idempotency_key",
            "payload",
            "payload.amount",
            "payload.nested.x",
            "payload.amount.x",
            "payload.missing",
            "resource.id",
            "context",
            "context.x",
            "principal",
            "principal.id",
            "principal.type",
            "principal.id.x",
            "principal.attributes",
            "principal.attributes.role.name",
            "principal.other",
            "nothing",
            "nothing.at.all",
        ] {
            let path: Vec<String> = path.split('.').map(str::to_owned).collect();
            let direct = read_request_path(&request, &path);
            let expected = by_tree(&path);
            assert!(direct == expected && format!("{direct:?}") == format!("{expected:?}"), "{path:?}");
        }
    }

    #[test]
    fn a_mutation_may_take_its_scope_from_the_operation_map() {
        let by_id = INVOICE
            .replace("object_type = \"invoice\"\n        operation = \"create\"", "operation_id = \"createInvoice\"");
        assert!(by_id.contains("operation_id"));
        let map = OperationMap::parse(
            r#"{"operations": [{"path": "/invoices", "method": "post", "operation_id": "createInvoice",
                "object_type": "invoice", "operation": "create", "governed": true, "mode": "enforce"}]}"#,
        )
        .unwrap();
        let registry = Registry::parse_with(&by_id, Some(&map)).unwrap();
        let mutation = registry.get("create_invoice").unwrap();
        assert_eq!((mutation.object_type.as_str(), mutation.operation.as_str()), ("invoice", "create"));
        // Without the map, with an id it does not list, or with both ways of naming the scope: refused.
        assert!(format!("{:#}", Registry::parse(&by_id).unwrap_err()).contains("no --operation-map"));
        let unknown = by_id.replace("createInvoice", "deleteInvoice");
        assert!(
            format!("{:#}", Registry::parse_with(&unknown, Some(&map)).unwrap_err())
                .contains("not in the operation map")
        );
        let both = INVOICE
            .replace("operation = \"create\"", "operation = \"create\"\n        operation_id = \"createInvoice\"");
        assert!(Registry::parse_with(&both, Some(&map)).is_err());
    }

    #[test]
    fn undeclared_parameters_and_ambiguous_sources_are_refused() {
        let undeclared = INVOICE.replace(":note::text", ":nope");
        assert!(
            format!("{:#}", Registry::parse(&undeclared).unwrap_err()).contains("`:nope` is not a declared parameter")
        );
        let ambiguous = INVOICE.replace("caller = true,", "caller = true, request = \"payload.note\",");
        assert!(Registry::parse(&ambiguous).is_err());
        let unknown_type = INVOICE.replace("\"bigint\"", "\"money\"");
        assert!(Registry::parse(&unknown_type).is_err());
    }
}
