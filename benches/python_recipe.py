"""What a Python team would write instead of the sidecar: Kernite in-process,
then the evidence row and the invoice in one psycopg transaction, on threads.

The second reference row of `benches/compare.rs` (issue: "a governed write that
costs PostgreSQL no more than a hand-written transaction"). Same request, same
two inserts, the response JSON bound as a parameter. Needs
`pip install kernite==0.1.6 "psycopg[binary]==3.3.9"`.

    python python_recipe.py URL SECONDS THREADS REQUEST_FILE

Prints one JSON line: calls, seconds, p50_ms, p99_ms.
"""

import json
import sys
import threading
import time
import uuid

import psycopg
from kernite.evaluator import execute_request

URL, SECONDS, THREADS, REQUEST = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open(REQUEST, encoding="utf-8") as f:
    TEXT = f.read()

EVIDENCE = (
    "INSERT INTO governance_events (workspace_id, principal_id, object_type, operation, decision, "
    "reason_codes, ctx_id, trace_hash, idempotency_key, response_json) "
    "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s::jsonb)"
)
INVOICE = "INSERT INTO invoices (workspace_id, amount, currency) VALUES (%s, %s, %s)"


def caller(latencies, stop):
    prefix = uuid.uuid4().hex[:8]
    with psycopg.connect(URL, prepare_threshold=0) as conn:
        n = 0
        while not stop.is_set():
            t0 = time.perf_counter_ns()
            body = json.loads(TEXT)
            key = f"py-{prefix}-{n}"
            status, response = execute_request(body, idempotency_key=key)
            assert status == 200 and response["data"]["decision"] == "approved"
            data = response["data"]
            with conn.transaction():
                conn.execute(EVIDENCE, (
                    body["workspace_id"], body["principal"]["id"], body["object_type"], body["operation"],
                    data["decision"], json.dumps(data["reason_codes"]), response["ctx_id"], data["trace_hash"],
                    key, json.dumps(response),
                ))
                conn.execute(INVOICE, (body["workspace_id"], body["payload"]["amount"], body["payload"]["currency"]))
            latencies.append(time.perf_counter_ns() - t0)
            n += 1


def main():
    stop = threading.Event()
    per_thread = [[] for _ in range(THREADS)]
    threads = [threading.Thread(target=caller, args=(per_thread[i], stop)) for i in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(l for thread in per_thread for l in thread)
    print(json.dumps({
        "calls": len(latencies),
        "seconds": elapsed,
        "p50_ms": latencies[len(latencies) // 2] / 1e6,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6,
    }))


if __name__ == "__main__":
    main()
