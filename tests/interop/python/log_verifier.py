"""Checks the sidecar's verifiable log from Python, sharing no code with it.

Run by tests/interop.rs against a real `governance-sidecar dev`. It writes a
few governed invoices, then checks, with the log's verifier key alone and the
widely used `cryptography` package for Ed25519:

  * the latest checkpoint's C2SP signed note (key id and signature) and its
    C2SP tlog-checkpoint body;
  * each row's RFC 9162 inclusion proof, from a leaf hash recomputed from the
    row's entry, decoded as docs/verifiable-log.md ("The entry") documents it and
    matched against what GetEvidence returns;
  * an RFC 9162 consistency proof from an earlier checkpoint to the latest.

    python log_verifier.py --address 127.0.0.1:50051 --proto-dir ../../../proto \
        --public-key "governance-sidecar.dev/evidence+1234abcd+AbC..."

Exits non-zero with a message on the first failure; prints one line per check.
"""

import argparse
import base64
import hashlib
import json
import struct
import sys
import time
import uuid

import grpc
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from client import generate_stubs, with_token

# Version 1: rows written before callers were recorded (25 fields);
# version 2: rows that name their caller, which is the 26th field;
# version 3: rows that hold the request they decided (fields 27 and 28).
ENTRY_VERSIONS = {b"governance-sidecar evidence entry v1\n": 25, b"governance-sidecar evidence entry v2\n": 26,
                  b"governance-sidecar evidence entry v3\n": 28}
FIELDS = [
    "id", "created_at_us", "xact_id", "workspace_id", "principal_id", "object_type", "operation",
    "decision", "reason_codes", "ctx_id", "trace_hash", "idempotency_key", "response_json_sha256", "outcome",
    "mutation_name", "request_fingerprint", "error_sqlstate", "mode", "redacted_paths",
    "policy_bundle_sha256", "policy_key", "policy_version", "trace_id", "rows_affected", "returning_rows",
    "caller", "request_json", "request_redacted_paths",
]


def fail(message):
    sys.exit(f"log verifier: {message}")


# --- C2SP signed-note and tlog-checkpoint -------------------------------------
def parse_verifier_key(vkey):
    """`<name>+<hex key id>+<base64(0x01 || 32-byte Ed25519 public key)>`."""
    name, key_id, key = vkey.strip().split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 0x01 or len(raw) != 33:
        fail("the verifier key is not an Ed25519 note key")
    expected_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if expected_id.hex() != key_id:
        fail("the verifier key's id does not match its name and key")
    return name, expected_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note, vkey):
    """The (origin, size, root) of a signed checkpoint, after checking its signature."""
    name, key_id, public_key = vkey
    text, _, signatures = note.partition("\n\n")
    text += "\n"
    verified = False
    for line in signatures.splitlines():
        if not line.startswith("\u2014 "):
            fail(f"not a signature line: {line!r}")
        signer, signature = line[2:].split(" ")
        blob = base64.b64decode(signature)
        if signer == name and blob[:4] == key_id:
            try:
                public_key.verify(blob[4:], text.encode())
            except InvalidSignature:
                fail("the checkpoint's signature does not verify")
            verified = True
    if not verified:
        fail("the checkpoint carries no signature by the log's key")
    lines = text.splitlines()
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    if origin != name:
        fail(f"origin {origin!r} is not the key's name {name!r}")
    return origin, size, root


# --- RFC 9162 Merkle tree -----------------------------------------------------
def leaf_hash(entry):
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf_index, tree_size, leaf, path, root):
    """RFC 9162, section 2.1.3.2."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162, section 2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:  # a power of two: the first root starts the path
        proof = [first_root] + list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# --- the entry encoding (docs/verifiable-log.md, "The entry") -----------------
def decode_entry(entry):
    version = next((v for v in ENTRY_VERSIONS if entry.startswith(v)), None)
    if version is None:
        fail("the entry does not start with a known version line")
    at, values = len(version), {"caller": None, "request_json": None, "request_redacted_paths": None}
    for field in FIELDS[:ENTRY_VERSIONS[version]]:
        tag = entry[at]
        at += 1
        if tag == 0:
            values[field] = None
            continue
        (length,) = struct.unpack(">I", entry[at:at + 4])
        at += 4
        values[field] = entry[at:at + length].decode()
        at += length
    if at != len(entry):
        fail("the entry has bytes after its last field")
    return values


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--proto-dir", required=True)
    parser.add_argument("--public-key", required=True)
    parser.add_argument("--token", help="the caller's bearer token (a sidecar with a callers file)")
    args = parser.parse_args()
    vkey = parse_verifier_key(args.public_key)
    messages, services = generate_stubs(args.proto_dir)
    stub = services.GovernanceStub(with_token(grpc.insecure_channel(args.address), args.token))

    run = uuid.uuid4().hex[:8]
    ids = []
    for i, amount in enumerate([250, 5000, 300]):
        body = {"workspace_id": "ws_log", "principal": {"type": "user", "id": "usr_1"}, "object_type": "invoice",
                "operation": "create", "payload": {"amount": amount, "currency": "USD"}}
        response = stub.ExecuteWithEvidence(messages.ExecuteWithEvidenceRequest(
            request_json=json.dumps(body), idempotency_key=f"log-{run}-{i}",
            mutation=messages.MutationCall(name="create_invoice")))
        ids.append(response.evidence_id)
        if i == 0:
            earlier = wait_for_checkpoint(stub, messages, 1)

    for evidence_id in ids:  # evidence ids need not be consecutive: wait until each is proven
        wait_for_proof(stub, messages, evidence_id)
    latest = stub.GetCheckpoint(messages.GetCheckpointRequest())
    origin, size, root = open_checkpoint(latest.signed_note, vkey)
    if (size, root) != (latest.tree_size, latest.root_hash):
        fail("the checkpoint's fields differ from its signed note")
    print(f"ok: checkpoint of {size} leaves signed by {origin}")

    decisions = set()
    for evidence_id in ids:
        proof = stub.GetInclusionProof(messages.GetInclusionProofRequest(evidence_id=evidence_id))
        fields = decode_entry(proof.entry)
        record = stub.GetEvidence(messages.GetEvidenceRequest(evidence_id=evidence_id))
        # GetEvidence returns the response as PostgreSQL prints it: the entry holds its SHA-256.
        response_digest = hashlib.sha256(record.response_json.encode()).hexdigest()
        caller = record.caller if record.HasField("caller") else None
        request = record.request_json if record.HasField("request_json") else None
        if int(fields["id"]) != evidence_id or fields["decision"] != record.decision \
                or fields["response_json_sha256"] != response_digest or fields["caller"] != caller \
                or fields["request_json"] != request:
            fail(f"evidence {evidence_id}: the entry is not the stored row")
        if not proof.entry.startswith(b"governance-sidecar evidence entry v3\n") \
                or json.loads(request)["payload"]["amount"] not in (250, 5000, 300):
            fail(f"evidence {evidence_id}: a row written now must commit to the request it decided")
        leaf = leaf_hash(proof.entry)
        if leaf != proof.leaf_hash:
            fail(f"evidence {evidence_id}: the leaf hash is not SHA-256(0x00 || entry)")
        _, proof_size, proof_root = open_checkpoint(proof.checkpoint.signed_note, vkey)
        if not verify_inclusion(proof.leaf_index, proof_size, leaf, list(proof.audit_path), proof_root):
            fail(f"evidence {evidence_id}: the inclusion proof does not lead to the signed root")
        decisions.add(fields["decision"])
    print(f"ok: {len(ids)} rows ({' and '.join(sorted(decisions))}) proven in the signed tree")

    _, first, first_root = open_checkpoint(earlier.signed_note, vkey)
    consistency = stub.GetConsistencyProof(messages.GetConsistencyProofRequest(first_size=first, second_size=size))
    if not verify_consistency(first, size, first_root, root, list(consistency.proof)):
        fail(f"the consistency proof from {first} to {size} leaves does not verify")
    print(f"ok: the tree of {first} leaves is a prefix of the tree of {size}")


def wait_for_proof(stub, messages, evidence_id):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            return stub.GetInclusionProof(messages.GetInclusionProofRequest(evidence_id=evidence_id))
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
        time.sleep(0.05)
    fail(f"evidence {evidence_id} not in a checkpoint within 20 s")


def wait_for_checkpoint(stub, messages, size):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            checkpoint = stub.GetCheckpoint(messages.GetCheckpointRequest())
            if checkpoint.tree_size >= size:
                return checkpoint
        except grpc.RpcError:
            pass
        time.sleep(0.05)
    fail(f"no checkpoint of {size} leaves within 20 s")


if __name__ == "__main__":
    main()
