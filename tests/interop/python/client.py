"""Calls the sidecar from Python with grpcio, as a service would.

Run by tests/interop.rs against a real `governance-sidecar dev` (real PostgreSQL,
the invoice example); the shorter example users copy is examples/python/invoice.py
(docs/clients.md). Stubs are generated from proto/ at start-up with grpcio-tools,
so the client always speaks the contract in this repository.

    python client.py --address 127.0.0.1:50051 --proto-dir ../../../proto \
        --corpus ../../../../shared/conformance/kernite-0.1.6-execute.jsonl [--token TOKEN]

With --token, every call carries `authorization: Bearer TOKEN`, as a caller of a
sidecar with a callers file must (docs/security.md): gRPC calls through an
interceptor, HTTP requests in their header.

Exits non-zero with a message on the first mismatch; prints one line per check.
"""

import argparse
import importlib
import json
import sys
import tempfile
import urllib.request
import uuid

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client.openmetrics.parser import text_string_to_metric_families


def generate_stubs(proto_dir):
    """Compiles governance.proto into a temporary package and imports it."""
    from grpc_tools import protoc
    import importlib.resources

    out = tempfile.mkdtemp(prefix="governance-stubs-")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main([
        "protoc", f"-I{proto_dir}", f"-I{well_known}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        "governance/v1/governance.proto",
    ])
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)
    messages = importlib.import_module("governance.v1.governance_pb2")
    services = importlib.import_module("governance.v1.governance_pb2_grpc")
    return messages, services


def invoice_body(amount):
    """Kernite's request body, as a plain dict."""
    return {
        "workspace_id": "ws_python",
        "principal": {"type": "user", "id": "usr_42"},
        "object_type": "invoice",
        "operation": "create",
        "payload": {"amount": amount, "currency": "USD"},
        "policy_context": {"selected_policies": [{
            "policy_key": "invoice_limit",
            "rules": [{"rule_key": "max_amount",
                       "rule_definition": {"type": "max_value", "field": "amount", "max": 1000}}],
        }]},
    }


def invoice_request(pb, amount):
    """The same body typed. Struct numbers are doubles; whole ones arrive as integers."""
    return json_format.ParseDict(invoice_body(amount), pb.ExecuteRequest())


def execute_invoice(pb, governance, amount, key):
    """Decides and, if approved, inserts the invoice: one transaction with its evidence."""
    return governance.ExecuteWithEvidence(pb.ExecuteWithEvidenceRequest(
        request=invoice_request(pb, amount),
        idempotency_key=key,
        mutation=pb.MutationCall(name="create_invoice"),
    ), timeout=5)


def expect(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


def check_health(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "governance.v1.Governance"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        expect(status == health_pb2.HealthCheckResponse.SERVING, f"health of {service or 'the server'} is SERVING")


def check_evaluate(pb, governance):
    typed = governance.Evaluate(pb.EvaluateRequest(request=invoice_request(pb, 5000), idempotency_key="py-eval"), timeout=5)
    expect(typed.decision == pb.DECISION_DENIED, "typed Evaluate of amount 5000 is denied")
    expect(list(typed.reason_codes) == ["max_amount_denied"], "the reason code names the rule: max_amount_denied")

    # The same request as Kernite's JSON body hashes the same: the contract is the body.
    body = json.dumps(invoice_body(5000))
    as_json = governance.Evaluate(pb.EvaluateRequest(request_json=body, idempotency_key="py-eval"), timeout=5)
    expect(as_json.trace_hash == typed.trace_hash, "JSON and typed bodies give the same trace_hash")
    expect(json.loads(as_json.response_json)["data"]["decision"] == "denied", "response_json is Kernite's body")


def check_execute_with_evidence(pb, governance):
    key = f"py-{uuid.uuid4()}"
    first = execute_invoice(pb, governance, 250, key)
    expect(first.decision.decision == pb.DECISION_APPROVED and first.mutation_applied, "amount 250 is approved and written")
    expect(first.mutation_result.rows_affected == 1 and "id" in first.mutation_result.returning[0], "RETURNING gives the invoice id")
    expect(first.mode == pb.MODE_ENFORCE and not first.replayed, "enforce mode, not a replay")

    again = execute_invoice(pb, governance, 250, key)
    expect(again.replayed and again.evidence_id == first.evidence_id, "the same key replays the same evidence")
    expect(again.decision.trace_hash == first.decision.trace_hash, "the replay carries the original decision")

    try:
        execute_invoice(pb, governance, 5000, key)
        expect(False, "reusing a key for another request is refused")
    except grpc.RpcError as error:
        expect(error.code() == grpc.StatusCode.ALREADY_EXISTS, "reusing a key for another request is ALREADY_EXISTS")

    denied = execute_invoice(pb, governance, 5000, f"py-{uuid.uuid4()}")
    expect(denied.decision.decision == pb.DECISION_DENIED and not denied.mutation_applied, "amount 5000 is denied, nothing written")
    expect(denied.evidence_id > first.evidence_id, "the denial has its own evidence row")


def check_corpus(pb, governance, corpus, every):
    """Sends a sample of Kernite's own cases as JSON bodies and compares the answers."""
    with open(corpus, encoding="utf-8") as lines:
        cases = [json.loads(line) for line in lines]
    sample = cases[:7] + cases[7::every]
    decisions = refusals = 0
    for case in sample:
        request = pb.EvaluateRequest(request_json=case["request_json"])
        if case["idempotency_key"] is not None:
            request.idempotency_key = case["idempotency_key"]
        want = case["response"]
        try:
            got = governance.Evaluate(request, timeout=5)
        except grpc.RpcError as error:
            if case["status"] != 400 or error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                sys.exit(f"FAILED: {case['name']}: {error.code()} {error.details()}")
            info = error_details_pb2.ErrorInfo()
            status = rpc_status.from_call(error)
            next(d for d in status.details if d.Unpack(info))
            body = json.loads(info.metadata["kernite_response"]) if "kernite_response" in info.metadata else None
            if body is not None:
                body.pop("ctx_id"), want.pop("ctx_id")
                if body != want:
                    sys.exit(f"FAILED: {case['name']}: 400 body differs:\n{body}\n{want}")
            refusals += 1
            continue
        if case["status"] != 200:
            sys.exit(f"FAILED: {case['name']}: answered a decision, Kernite said 400")
        data = want["data"]
        decision = {"approved": pb.DECISION_APPROVED, "denied": pb.DECISION_DENIED}[data["decision"]]
        if (got.decision, got.trace_hash, got.ctx_id, list(got.reason_codes)) != (
            decision, data["trace_hash"], want["ctx_id"], data["reason_codes"]
        ) or json.loads(got.response_json) != want:
            sys.exit(f"FAILED: {case['name']}: {got} differs from {want}")
        decisions += 1
    expect(decisions + refusals == len(sample) and decisions > 0 and refusals > 0,
           f"{decisions} decisions and {refusals} refusals of the corpus answered like Kernite 0.1.6")
    return decisions, refusals


def scrape(address):
    """GET /metrics (same port, HTTP/1.1) parsed by Prometheus' own parser: {(name, labels): value}."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode("utf-8")
    expect(content_type.startswith("application/openmetrics-text"), "/metrics is OpenMetrics text")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def moved(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def check_metrics(before, after, decisions, refusals):
    evaluate_ok = moved(before, after, "governance_rpc_duration_seconds_count", method="Evaluate", status="OK")
    expect(evaluate_ok == 2 + decisions, f"Evaluate OK latency observations moved by {evaluate_ok}")
    refused = moved(before, after, "governance_rpc_duration_seconds_count", method="Evaluate", status="INVALID_ARGUMENT")
    expect(refused == refusals, f"INVALID_ARGUMENT observations moved by {refused}")
    expect(moved(before, after, "governance_idempotent_replays_total") == 1, "one idempotent replay counted")
    expect(moved(before, after, "governance_idempotency_conflicts_total") == 1, "one key conflict counted")
    expect(moved(before, after, "governance_evidence_rows_total", outcome="applied") == 1, "one applied evidence row")
    expect(moved(before, after, "governance_evidence_rows_total", outcome="not_applied") == 1, "one denied evidence row")
    denied = moved(before, after, "governance_decisions_total",
                   decision="denied", object_type="invoice", operation="create", mode="enforce")
    expect(denied >= 3, f"denied invoice/create decisions moved by {denied}")
    expect(any(name == "governance_build_info" for name, _ in after), "build_info is exported")


class BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds the caller's token to every call, as grpcio's call credentials would over TLS."""

    def __init__(self, token):
        self.metadata = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or []) + [self.metadata]
        return continuation(details._replace(metadata=metadata), request)


def with_token(channel, token):
    return grpc.intercept_channel(channel, BearerToken(token)) if token else channel


def check_unauthenticated(pb, governance):
    """A call without the token is refused before anything is decided."""
    try:
        governance.Evaluate(pb.EvaluateRequest(request=invoice_request(pb, 10)), timeout=5)
    except grpc.RpcError as error:
        expect(error.code() == grpc.StatusCode.UNAUTHENTICATED, f"without a token: {error.code()}")
        print("ok: a call without the token is UNAUTHENTICATED")
        return
    expect(False, "a call without the token was answered")


def check_http(address, corpus, token):
    """Kernite's HTTP route on the same port, with a traceparent joining the logs."""
    with open(corpus, encoding="utf-8") as lines:
        case = json.loads(next(lines))
    headers = {"Content-Type": "application/json", "Idempotency-Key": case["idempotency_key"],
               "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://{address}/v1/execute", data=case["request_json"].encode("utf-8"), method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
        ctx_id = response.headers["X-Ctx-Id"]
    expect(body == case["response"], "POST /v1/execute answers Kernite's body")
    expect(ctx_id == body["ctx_id"], "the X-Ctx-Id header is the response's ctx_id")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--every", type=int, default=10, help="send every n-th corpus case")
    parser.add_argument("--token", help="the caller's bearer token")
    args = parser.parse_args()

    pb, services = generate_stubs(args.proto_dir)
    before = scrape(args.address)
    with grpc.insecure_channel(args.address) as plain:
        if args.token:
            check_unauthenticated(pb, services.GovernanceStub(plain))
        channel = with_token(plain, args.token)
        governance = services.GovernanceStub(channel)
        check_health(channel)
        check_evaluate(pb, governance)
        check_execute_with_evidence(pb, governance)
        decisions, refusals = check_corpus(pb, governance, args.corpus, args.every)
    check_metrics(before, scrape(args.address), decisions, refusals)
    check_http(args.address, args.corpus, args.token)


if __name__ == "__main__":
    main()
