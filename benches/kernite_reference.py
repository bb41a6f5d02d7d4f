"""Kernite 0.1.6 in-process, on the same requests as the Rust benchmarks.

Prints one JSON line per request file: decisions/s, p50 and p99 in microseconds,
for `kernite.evaluator.execute_request` (validation + evaluation, what
`kernite serve` runs per call). Needs `pip install kernite==0.1.6`.
"""

import json
import sys
import time

from kernite.evaluator import execute_request

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0

for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        body = json.load(f)
    latencies = []
    deadline = time.perf_counter() + SECONDS
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        status, _ = execute_request(body, idempotency_key="bench-key")
        latencies.append(time.perf_counter_ns() - t0)
        assert status == 200
    elapsed = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({
        "file": path,
        "decisions_per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] / 1000,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1000,
    }))
