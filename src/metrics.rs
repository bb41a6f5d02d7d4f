//! Prometheus metrics, served at `GET /metrics` on the service port.
//!
//! One process-wide registry (metrics describe the process, and every layer
//! records into it without plumbing). Labels are typed: each label set is a
//! struct whose values come from closed enums or the operator's vocabulary,
//! so no caller can mint series. The one caller-supplied value, `object_type`,
//! gets its own label for the first [`MAX_OBJECT_TYPES`] seen and `other`
//! after that. No workspace, principal, key or ctx_id is ever a label.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::decision::validate::OPERATIONS;
use crate::vocabulary::{Decision, Mode, Outcome};

/// Distinct `object_type` label values before the rest are counted as `other`.
pub const MAX_OBJECT_TYPES: usize = 100;

/// The vocabulary's words are label values as they are spelled everywhere.
macro_rules! word_labels {
    ($($word:ty),+) => {$(
        impl EncodeLabelValue for $word {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    )+};
}

word_labels!(Decision, Mode, Outcome);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: Decision,
    pub object_type: String,
    /// One of Kernite's six operations (validation refuses any other).
    pub operation: Cow<'static, str>,
    /// `enforce` or `observe` (skip mode decides nothing).
    pub mode: Mode,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// `Evaluate`, `ExecuteWithEvidence`, … or `POST /v1/execute`, ….
    pub method: &'static str,
    /// The gRPC code name (`OK`, `INVALID_ARGUMENT`, …) or the HTTP status.
    pub status: Cow<'static, str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SqlstateLabels {
    /// The SQLSTATE's two-character class, e.g. `23` (integrity constraint violation).
    pub sqlstate_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    success,
    failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

/// A refused call: its caller as the gate named it (empty when none was
/// established), the operation, and why (`unauthenticated`, `not_listed`
/// for a certificate the callers file does not list, `not_granted`, or
/// `hidden` for evidence answered as missing). Caller names come from the
/// operator's callers file (or a certificate it lists, or `local`), never from
/// requests; an unlisted certificate is `(unlisted)`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub caller: String,
    pub operation: &'static str,
    pub reason: &'static str,
}

/// A proxy's check (`api/check.rs`): which front end asked (`envoy`,
/// `forward_auth`) and what it was answered (`allowed`, `denied`,
/// `unmapped_allowed`, `unmapped_denied`, `refused`, `fail_open`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabels {
    pub front: &'static str,
    pub answer: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    rpc_duration: HistogramFamily<RpcLabels>,
    evidence_rows: Family<OutcomeLabels, Counter>,
    idempotent_replays: Counter,
    idempotency_conflicts: Counter,
    mutation_failures: Family<SqlstateLabels, Counter>,
    pool_connections: Gauge,
    pool_idle: Gauge,
    pool_waiters: Gauge,
    bundle_reloads: Family<ReloadLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    gateway_checks: Family<GatewayLabels, Counter>,
    gateway_fail_open: Counter,
    log_leader: Gauge,
    log_sequenced_rows: Counter,
    log_checkpoint_size: Gauge,
    log_lag_rows: Gauge,
    log_lag_seconds: Gauge<f64, AtomicU64>,
    object_types: Mutex<HashSet<String>>,
}

/// From 50 µs to about 13 s: the engine's microseconds to a slow database.
fn rpc_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("governance");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let rpc_duration: HistogramFamily<RpcLabels> = Family::new_with_constructor(rpc_histogram);
        let evidence_rows = Family::<OutcomeLabels, Counter>::default();
        let (idempotent_replays, idempotency_conflicts) = (Counter::default(), Counter::default());
        let mutation_failures = Family::<SqlstateLabels, Counter>::default();
        let (pool_connections, pool_idle, pool_waiters) = (Gauge::default(), Gauge::default(), Gauge::default());
        let bundle_reloads = Family::<ReloadLabels, Counter>::default();
        let refusals = Family::<RefusalLabels, Counter>::default();
        let (gateway_checks, gateway_fail_open) = (Family::<GatewayLabels, Counter>::default(), Counter::default());
        let (log_leader, log_checkpoint_size, log_lag_rows) = (Gauge::default(), Gauge::default(), Gauge::default());
        let (log_sequenced_rows, log_lag_seconds) = (Counter::default(), Gauge::<f64, AtomicU64>::default());
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION") }).set(1);

        registry.register("decisions", "Decisions made, by decision, scope and mode", decisions.clone());
        registry.register("rpc_duration_seconds", "Time to answer a call, by method and status", rpc_duration.clone());
        registry.register("evidence_rows", "Evidence rows written, by outcome", evidence_rows.clone());
        registry.register(
            "idempotent_replays",
            "Calls answered from an earlier call with the same key",
            idempotent_replays.clone(),
        );
        registry.register(
            "idempotency_conflicts",
            "Calls refused because their key belongs to a different request",
            idempotency_conflicts.clone(),
        );
        registry.register(
            "mutation_failures",
            "Mutations that failed and were rolled back, by SQLSTATE class",
            mutation_failures.clone(),
        );
        registry.register("db_pool_connections", "Open database connections", pool_connections.clone());
        registry.register("db_pool_idle_connections", "Idle database connections", pool_idle.clone());
        registry.register("db_pool_waiters", "Calls waiting for a database connection", pool_waiters.clone());
        registry.register(
            "policy_bundle_reloads",
            "Policy bundle reloads, by result (a failure keeps the bundle in force)",
            bundle_reloads.clone(),
        );
        registry.register(
            "refused_calls",
            "Calls refused by the gate, by caller, operation and reason (unauthenticated, not_listed, not_granted, hidden)",
            refusals.clone(),
        );
        registry.register(
            "gateway_checks",
            "Proxies' checks (Envoy ext_authz, forward-auth), by front end and answer",
            gateway_checks.clone(),
        );
        registry.register(
            "gateway_fail_open",
            "Approved requests passed without their evidence row because PostgreSQL was unreachable (--gateway-failure open)",
            gateway_fail_open.clone(),
        );
        registry.register(
            "log_sequencer_leader",
            "1 while this sidecar sequences the verifiable log (one per database does)",
            log_leader.clone(),
        );
        registry.register(
            "log_sequenced_rows",
            "Evidence rows this sidecar added to the verifiable log",
            log_sequenced_rows.clone(),
        );
        registry.register("log_checkpoint_size", "Leaves in the latest signed checkpoint", log_checkpoint_size.clone());
        registry.register(
            "log_lag_rows",
            "Evidence rows not yet in a signed checkpoint (counted up to 10000, by the sequencing sidecar)",
            log_lag_rows.clone(),
        );
        registry.register(
            "log_lag_seconds",
            "Age of the oldest evidence row not yet in a signed checkpoint",
            log_lag_seconds.clone(),
        );
        registry.register("build_info", "The running build", build_info);
        Metrics {
            registry,
            decisions,
            rpc_duration,
            evidence_rows,
            idempotent_replays,
            idempotency_conflicts,
            mutation_failures,
            pool_connections,
            pool_idle,
            pool_waiters,
            bundle_reloads,
            refusals,
            gateway_checks,
            gateway_fail_open,
            log_leader,
            log_sequenced_rows,
            log_checkpoint_size,
            log_lag_rows,
            log_lag_seconds,
            object_types: Mutex::new(HashSet::new()),
        }
    }

    pub fn decision(&self, decision: Decision, object_type: &str, operation: &str, mode: Mode) {
        let labels = DecisionLabels {
            decision,
            object_type: self.object_type_label(object_type),
            operation: operation_label(operation),
            mode,
        };
        self.decisions.get_or_create(&labels).inc();
    }

    fn object_type_label(&self, object_type: &str) -> String {
        let mut seen = self.object_types.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.contains(object_type) {
            return object_type.to_owned();
        }
        if seen.len() < MAX_OBJECT_TYPES && object_type.len() <= 64 {
            seen.insert(object_type.to_owned());
            return object_type.to_owned();
        }
        "other".to_owned()
    }

    pub fn rpc(&self, method: &'static str, status: Cow<'static, str>, seconds: f64) {
        self.rpc_duration.get_or_create(&RpcLabels { method, status }).observe(seconds);
    }

    pub fn evidence_row(&self, outcome: Outcome) {
        self.evidence_rows.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn replay(&self) {
        self.idempotent_replays.inc();
    }

    pub fn key_conflict(&self) {
        self.idempotency_conflicts.inc();
    }

    pub fn mutation_failure(&self, sqlstate: &str) {
        let sqlstate_class = sqlstate.get(..2).filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric()));
        let labels = SqlstateLabels { sqlstate_class: sqlstate_class.unwrap_or("??").to_owned() };
        self.mutation_failures.get_or_create(&labels).inc();
    }

    pub fn bundle_reload(&self, result: ReloadResult) {
        self.bundle_reloads.get_or_create(&ReloadLabels { result }).inc();
    }

    pub fn refusal(&self, caller: &str, operation: crate::access::Operation, reason: &'static str) {
        let labels = RefusalLabels { caller: caller.to_owned(), operation: operation.as_str(), reason };
        self.refusals.get_or_create(&labels).inc();
    }

    /// Sets the pool gauges (read when scraped).
    pub fn gateway_check(&self, front: &'static str, answer: &'static str) {
        self.gateway_checks.get_or_create(&GatewayLabels { front, answer }).inc();
    }

    pub fn gateway_fail_open(&self) {
        self.gateway_fail_open.inc();
    }

    pub fn pool(&self, connections: usize, idle: usize, waiters: usize) {
        self.pool_connections.set(connections as i64);
        self.pool_idle.set(idle as i64);
        self.pool_waiters.set(waiters as i64);
    }

    pub fn log_leader(&self, leader: bool) {
        self.log_leader.set(i64::from(leader));
    }

    pub fn log_sequenced(&self, rows: u64, checkpoint_size: u64) {
        self.log_sequenced_rows.inc_by(rows);
        self.log_checkpoint_size.set(checkpoint_size as i64);
    }

    /// The log's lag; `rows` only from the sequencing sidecar, which counts them.
    pub fn log_lag(&self, rows: Option<u64>, seconds: f64, checkpoint_size: u64) {
        if let Some(rows) = rows {
            self.log_lag_rows.set(rows as i64);
        }
        self.log_lag_seconds.set(seconds);
        self.log_checkpoint_size.set(checkpoint_size as i64);
    }

    /// The exposition, in the OpenMetrics text format (which Prometheus reads).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The operation as a label without allocating: validated requests carry
/// one of Kernite's six.
fn operation_label(operation: &str) -> Cow<'static, str> {
    match OPERATIONS.iter().find(|known| **known == operation) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(operation.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_types_beyond_the_cap_are_other() {
        let metrics = Metrics::new();
        for i in 0..MAX_OBJECT_TYPES {
            assert_eq!(metrics.object_type_label(&format!("type_{i}")), format!("type_{i}"));
        }
        assert_eq!(metrics.object_type_label("one_too_many"), "other");
        assert_eq!(metrics.object_type_label("type_7"), "type_7", "admitted types keep their label");
        assert_eq!(Metrics::new().object_type_label(&"x".repeat(65)), "other");
    }

    #[test]
    fn the_exposition_names_every_family_with_the_governance_prefix() {
        let metrics = Metrics::new();
        metrics.decision(Decision::Denied, "invoice", "create", Mode::Enforce);
        metrics.rpc("Evaluate", Cow::Borrowed("OK"), 0.0002);
        metrics.mutation_failure("23505");
        let text = metrics.render();
        assert!(text.contains(
            r#"governance_decisions_total{decision="denied",object_type="invoice",operation="create",mode="enforce"} 1"#
        ));
        assert!(text.contains(r#"governance_mutation_failures_total{sqlstate_class="23"} 1"#));
        assert!(text.contains(r#"governance_rpc_duration_seconds_count{method="Evaluate",status="OK"} 1"#));
        assert!(text.contains(r#"governance_build_info{version=""#));
        assert!(text.ends_with("# EOF\n"));
    }
}
