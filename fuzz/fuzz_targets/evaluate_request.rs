//! Any bytes as a gRPC EvaluateRequest message, through the real handler:
//! protobuf decoding, Struct conversion, validation, decision, encoding.
//! Nothing may panic; every answer is a response or a status, and a response's
//! `response_json` is what Python's json module writes.
#![no_main]

use std::sync::LazyLock;

use governance_sidecar::api::GovernanceApi;
use governance_sidecar::proto::EvaluateRequest;
use governance_sidecar::proto::governance_server::Governance as _;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

static RUNTIME: LazyLock<tokio::runtime::Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap());

fuzz_target!(|data: &[u8]| {
    let Ok(request) = EvaluateRequest::decode(data) else { return };
    let api = GovernanceApi::new();
    let answer = RUNTIME.block_on(api.evaluate(tonic::Request::new(request)));
    if let Ok(response) = answer {
        let response = response.into_inner();
        assert!(response.trace_hash.starts_with("sha256:") && response.ctx_id.starts_with("ctx_"));
        // JSON, or Python's JSON: Kernite writes NaN and Infinity tokens as json.dumps does.
        if let Err(error) = governance_sidecar::decision::json::parse(&response.response_json) {
            assert!(error.to_string().contains("NaN and Infinity"), "response_json is not JSON: {error}");
        }
    }
});
