//! One span per RPC: method, ctx_id, decision, status and latency. Request
//! values are never logged; only field names appear in error messages.

use std::time::Instant;

use tonic::Status;
use tracing::field::Empty;

use crate::decision::DecisionRecord;
use crate::mutations::Mode;

pub struct RpcSpan {
    span: tracing::Span,
    started: Instant,
}

impl RpcSpan {
    pub fn start(method: &'static str) -> RpcSpan {
        let span =
            tracing::info_span!("rpc", method, ctx_id = Empty, decision = Empty, status = Empty, latency_us = Empty);
        RpcSpan { span, started: Instant::now() }
    }

    /// Notes the decision (and the mode it was made in: `Evaluate` decides as `enforce`).
    pub fn record_decision(&self, record: &DecisionRecord, _mode: Mode) {
        self.span.record("ctx_id", record.ctx_id.as_str());
        self.span.record("decision", record.decision.as_str());
    }

    /// Closes the span of an HTTP call with its status and latency.
    pub fn finish_http(self, status: http::StatusCode) {
        self.span.record("status", status.as_u16());
        self.span.record("latency_us", self.started.elapsed().as_micros() as u64);
        if status.is_server_error() {
            tracing::warn!(parent: &self.span, "http call failed")
        } else {
            tracing::info!(parent: &self.span, "http call completed")
        }
    }

    /// Closes the span with the call's status and latency, and passes the result on.
    pub fn finish<T, E: Into<Status>>(self, result: Result<T, E>) -> Result<T, Status> {
        let result = result.map_err(Into::into);
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.span.record("status", tracing::field::debug(code));
        self.span.record("latency_us", self.started.elapsed().as_micros() as u64);
        match &result {
            Err(status) if matches!(code, tonic::Code::Internal | tonic::Code::Unavailable | tonic::Code::Unknown) => {
                tracing::warn!(parent: &self.span, error = status.message(), "rpc failed")
            }
            _ => tracing::info!(parent: &self.span, "rpc completed"),
        }
        result
    }
}
