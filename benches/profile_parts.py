"""The sidecar's CPU samples by part of an ExecuteWithEvidence call.

Reads `perf script -F ip,sym` (call graphs, leaf first) on stdin; a sample
belongs to the first part, in the order below, whose function is on its
stack. Used by benches/profile.sh.
"""

import collections
import sys

# (part, a function on the stack that marks it), most specific first.
PARTS = [
    ("building the evidence row", "EvidenceRow::new"),
    ("the decision", "api::decide::decide"),
    ("protobuf encoding and decoding", "prost::"),
    ("the group committer", "group_commit::"),
    ("the PostgreSQL connection task", "tokio_postgres::connection::Connection"),
    ("the handler, the rest (fingerprint, validation, bookkeeping)", "api::execute::govern"),
    ("HTTP/2 stream tasks (hyper's H2Stream)", "H2Stream"),
    ("HTTP/2 connection tasks (h2, the client's socket)", "serve_connection"),
    ("tokio parking (epoll_wait, sleeping, waking)", "park_internal"),
    ("tokio's scheduler", "multi_thread::worker"),
]


def samples(lines):
    stack = []
    for line in lines:
        line = line.strip()
        if not line:
            if stack:
                yield stack
            stack = []
            continue
        ip_and_symbol = line.split(None, 1)
        stack.append(ip_and_symbol[-1])
    if stack:
        yield stack


def main():
    counts = collections.Counter()
    total = 0
    for stack in samples(sys.stdin):
        total += 1
        joined = " | ".join(stack)
        part = next((name for name, marker in PARTS if marker in joined), "elsewhere")
        counts[part] += 1
    for part, count in counts.most_common():
        print(f"    {100 * count / max(total, 1):5.1f}%  {part}")
    print(f"    ({total} samples)")


if __name__ == "__main__":
    main()
