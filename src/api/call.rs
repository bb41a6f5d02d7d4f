//! The path every call takes, whatever its transport: its span (method, W3C
//! trace context, ctx_id, decision, status, latency),
//! its deadline, and its metrics. Request values are never logged; only field
//! names appear in error messages.
//!
//! Joining up: a caller's `traceparent` (gRPC metadata or HTTP header) puts
//! its trace id on the span and in the evidence row; the answer carries the
//! `x-ctx-id` the evidence row and Kernite's response also hold.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use tracing::field::Empty;

use super::deadline::Deadline;
use super::error::ApiError;
use crate::access::{Caller, Operation};
use crate::decision::{DecisionRecord, NormalizedRequest};
use crate::metrics::metrics;
use crate::vocabulary::Mode;

/// The response header / metadata key that carries the call's ctx_id.
pub(crate) const CTX_ID_HEADER: &str = "x-ctx-id";

/// One call in progress.
pub(crate) struct Call {
    method: &'static str,
    /// What the call does, for the caller's grants.
    operation: Operation,
    /// Who is calling: set once, by the common path, before the operation runs (`gate.rs`).
    caller: OnceLock<Caller>,
    span: tracing::Span,
    started: Instant,
    trace: Option<TraceParent>,
    deadline: Deadline,
    ctx_id: OnceLock<String>,
}

/// A W3C Trace Context `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
}

impl TraceParent {
    /// The header as the spec reads it; `None` for anything malformed, so a
    /// bad header only means "no trace context", never a failed call.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let [version, trace_id, parent_id, flags, ..] = parts[..] else { return None };
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.len() == 4)
            && hex(trace_id, 32)
            && trace_id.bytes().any(|b| b != b'0')
            && hex(parent_id, 16)
            && parent_id.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        valid.then(|| TraceParent { trace_id: trace_id.to_owned(), parent_id: parent_id.to_owned() })
    }
}

impl Call {
    /// Opens the call's span; `traceparent` is the caller's header, if it sent
    /// one, and `deadline` the caller's (none over HTTP).
    pub fn start(method: &'static str, operation: Operation, traceparent: Option<&str>, deadline: Deadline) -> Call {
        let trace = traceparent.and_then(TraceParent::parse);
        let span = tracing::info_span!(
            "rpc",
            otel.name = method,
            otel.kind = "server",
            method,
            caller = Empty,
            trace_id = trace.as_ref().map(|t| t.trace_id.as_str()),
            parent_id = trace.as_ref().map(|t| t.parent_id.as_str()),
            ctx_id = Empty,
            decision = Empty,
            trace_hash = Empty,
            status = Empty,
            latency_us = Empty
        );
        if trace.is_some() {
            // The same header, valid by our reading, continues the exported trace.
            crate::telemetry::continue_trace(&span, traceparent);
        }
        Call {
            method,
            operation,
            caller: OnceLock::new(),
            span,
            started: Instant::now(),
            trace,
            deadline,
            ctx_id: OnceLock::new(),
        }
    }

    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The caller, once identified (`gate.rs`).
    pub(super) fn identified(&self) -> Option<&Caller> {
        self.caller.get()
    }

    pub(super) fn set_caller(&self, caller: Caller) {
        let _ = self.caller.set(caller);
    }

    /// The call's span: the handler runs inside it, so that what it does
    /// (the PostgreSQL transaction) is traced as its children.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The caller's deadline.
    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// The caller's trace id, if it sent a valid `traceparent`.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace.as_ref().map(|t| t.trace_id.as_str())
    }

    /// Notes the ctx_id the call answers with (also for refusals that carry one).
    pub fn record_ctx_id(&self, ctx_id: &str) {
        if self.ctx_id.set(ctx_id.to_owned()).is_ok() {
            self.span.record("ctx_id", ctx_id);
        }
    }

    /// Notes the decision, made on `request` in `mode` (`Evaluate` decides as `enforce`).
    pub fn record_decision(&self, record: &DecisionRecord, request: &NormalizedRequest, mode: Mode) {
        self.record_ctx_id(&record.ctx_id);
        self.span.record("decision", record.decision.as_str());
        self.span.record("trace_hash", record.trace_hash.as_str());
        metrics().decision(record.decision, &request.object_type, &request.operation, mode);
    }

    /// The ctx_id to answer with: the decision's, or the one a refusal carries.
    pub fn answered_ctx_id<T>(&self, result: &Result<T, ApiError>) -> Option<String> {
        if let Err(ApiError::Invalid { ctx_id, .. }) = result {
            self.record_ctx_id(ctx_id);
        }
        self.ctx_id.get().cloned()
    }

    /// The end of every call, whatever its transport: its status and latency
    /// on the span and in the histogram, and one log line (a warning for a
    /// server-side failure, with its message).
    pub fn finish(self, status: Cow<'static, str>, failure: Option<&str>) {
        let elapsed = self.started.elapsed();
        self.span.record("status", &*status);
        self.span.record("latency_us", elapsed.as_micros() as u64);
        metrics().rpc(self.method, status, elapsed.as_secs_f64());
        match failure {
            Some(error) => tracing::warn!(parent: &self.span, error, "rpc failed"),
            None => tracing::info!(parent: &self.span, "rpc completed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_the_w3c_spec_says() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(good).unwrap();
        assert_eq!(parsed.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id, "00f067aa0ba902b7");
        // A later version may append fields; version 00 may not.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
