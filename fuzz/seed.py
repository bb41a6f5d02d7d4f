"""Seeds the fuzz corpora from the Kernite conformance cases.

    python3 fuzz/seed.py ../shared/conformance/kernite-0.1.6-execute.jsonl

Writes fuzz/corpus/<target>/ (ignored by git): each case's body (with its
idempotency key, as execute_json frames it), the same body as an encoded
EvaluateRequest{request_json, idempotency_key}, and bundles built from the
cases' policies.
"""

import hashlib
import json
import os
import sys


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def write(directory, data):
    os.makedirs(directory, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(here, "corpus")
    with open(sys.argv[1], encoding="utf-8") as lines:
        cases = [json.loads(line) for line in lines]
    for case in cases:
        body = case["request_json"].encode("utf-8")
        key = case["idempotency_key"]
        framed = b"\x01" + key.encode("utf-8") + b"\n" + body if key is not None and "\n" not in key else b"\x00" + body
        write(os.path.join(corpus, "execute_json"), framed)
        message = field(2, body) + (field(3, key.encode("utf-8")) if key is not None else b"")
        write(os.path.join(corpus, "evaluate_request"), message)
        policies = (json.loads(case["request_json"]).get("policy_context") or {}) if body.startswith(b"{") else {}
        selected = policies.get("selected_policies") if isinstance(policies, dict) else None
        if isinstance(selected, list):
            bundle = {
                "schema_version": "kernite.policy.bundle.v1",
                "policies": selected,
                "governed_scopes": [{"object_type": "invoice", "operation": "create"}],
                "operation_map": [{"object_type": "invoice", "operation": "create",
                                   "policy_key": p.get("policy_key") if isinstance(p, dict) else None}
                                  for p in selected],
            }
            write(os.path.join(corpus, "policy_bundle"), json.dumps(bundle).encode("utf-8"))
    print(f"seeded {len(cases)} cases into {corpus}")


if __name__ == "__main__":
    main()
