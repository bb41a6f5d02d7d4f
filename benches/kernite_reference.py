"""Kernite 0.1.6 in-process, on the same requests as the Rust benchmarks.

For each request file prints one JSON line with two measurements of
`kernite.evaluator.execute_request` (validation + evaluation, what
`kernite serve` runs per call):

- `parsed`: handed the dict `json.load` made outside the timing, as
  Kernite's in-process figure is usually taken;
- `text`: `json.loads` of the request text inside the timing, as a call
  that arrives as JSON pays.

Each has decisions/s (one over the mean timed latency), p50 and p99 in
microseconds. Needs `pip install kernite==0.1.6`.
"""

import json
import sys
import time

from kernite.evaluator import execute_request

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0


def measure(decide):
    latencies = []
    deadline = time.perf_counter() + SECONDS
    while time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        status, _ = decide()
        latencies.append(time.perf_counter_ns() - t0)
        assert status == 200
    latencies.sort()
    return {
        "decisions_per_s": len(latencies) / (sum(latencies) / 1e9),
        "p50_us": latencies[len(latencies) // 2] / 1000,
        "p99_us": latencies[int(len(latencies) * 0.99)] / 1000,
    }


for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    body = json.loads(text)
    print(json.dumps({
        "file": path,
        "parsed": measure(lambda: execute_request(body, idempotency_key="bench-key")),
        "text": measure(lambda: execute_request(json.loads(text), idempotency_key="bench-key")),
    }))
