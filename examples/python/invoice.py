"""Governs invoices through the sidecar, from Python with grpcio.

    python invoice.py [ADDRESS]    (default 127.0.0.1:50051, e.g. `governance-sidecar dev`)

Needs the stubs generated from proto/ (docs/clients.md shows how).
"""

import sys
import uuid

import grpc
from google.protobuf import json_format

from governance.v1 import governance_pb2 as pb
from governance.v1 import governance_pb2_grpc


def invoice(amount):
    """Kernite's request body for an invoice, typed: Struct numbers are doubles, and whole ones arrive as integers."""
    body = {
        "workspace_id": "ws_python",
        "principal": {"type": "user", "id": "usr_42"},
        "object_type": "invoice",
        "operation": "create",
        "payload": {"amount": amount, "currency": "USD"},
    }
    return json_format.ParseDict(body, pb.ExecuteRequest())


def main(address):
    governance = governance_pb2_grpc.GovernanceStub(grpc.insecure_channel(address))

    # May this happen? The sidecar's policy bundle decides: invoices up to 1000.
    answer = governance.Evaluate(pb.EvaluateRequest(request=invoice(5000)), timeout=5)
    print("Evaluate 5000:", pb.Decision.Name(answer.decision), list(answer.reason_codes))

    # Decides and, if approved, inserts the invoice: one transaction with its evidence row.
    def execute(amount, key):
        call = pb.ExecuteWithEvidenceRequest(
            request=invoice(amount), idempotency_key=key, mutation=pb.MutationCall(name="create_invoice"))
        return governance.ExecuteWithEvidence(call, timeout=5)

    key = f"python-{uuid.uuid4()}"
    written = execute(250, key)
    invoice_id = int(written.mutation_result.returning[0]["id"])
    print("ExecuteWithEvidence 250:", pb.Decision.Name(written.decision.decision), "invoice", invoice_id,
          "evidence", written.evidence_id)
    again = execute(250, key)
    print("the same key again: replayed", again.replayed, "evidence", again.evidence_id)
    try:
        execute(5000, key)
    except grpc.RpcError as error:
        print("the same key, another amount:", error.code().name)
    denied = execute(5000, f"python-{uuid.uuid4()}")
    print("ExecuteWithEvidence 5000:", pb.Decision.Name(denied.decision.decision), "applied", denied.mutation_applied,
          "evidence", denied.evidence_id)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
