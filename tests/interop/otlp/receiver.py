#!/usr/bin/env python3
"""An OTLP/gRPC trace receiver for the OpenTelemetry test (tests/interop.rs).

Usage: otlp_receiver.py [PORT] [--exit-on-stdin-eof]
       (PORT 0 or absent = pick a free port)

Listens on 127.0.0.1:PORT (plaintext gRPC), implements
opentelemetry.proto.collector.trace.v1.TraceService/Export.
First stdout line: the bound port (an integer).
Then one JSON line per received span:
  {"trace_id": hex, "span_id": hex, "parent_span_id": hex or "",
   "name": str, "kind": int, "service_name": str,
   "attributes": {key: str}, "resource": {key: str}}
stdout is flushed after every line. Stops on SIGTERM/SIGINT, and with
--exit-on-stdin-eof also when its stdin reaches EOF (give it a pipe the test
holds open: then the receiver dies with the test even if the test is killed).

Requires (PyPI): grpcio, opentelemetry-proto (which brings protobuf).
"""

import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

_print_lock = threading.Lock()


def _any_value_to_str(v) -> str:
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind == "int_value":
        return str(v.int_value)
    if kind == "double_value":
        return repr(v.double_value)
    if kind == "bytes_value":
        return v.bytes_value.hex()
    if kind == "array_value":
        return json.dumps([_any_value_to_str(x) for x in v.array_value.values])
    if kind == "kvlist_value":
        return json.dumps({kv.key: _any_value_to_str(kv.value) for kv in v.kvlist_value.values})
    return str(getattr(v, kind))


def _attrs(kvs) -> dict:
    return {kv.key: _any_value_to_str(kv.value) for kv in kvs}


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        lines = []
        for rs in request.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    lines.append(
                        json.dumps(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_span_id": span.parent_span_id.hex(),
                                "name": span.name,
                                "kind": span.kind,
                                "service_name": resource.get("service.name", ""),
                                "attributes": _attrs(span.attributes),
                                "resource": resource,
                            },
                            sort_keys=True,
                        )
                    )
        if lines:
            with _print_lock:
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    exit_on_stdin_eof = "--exit-on-stdin-eof" in sys.argv[1:]
    port = int(args[0]) if args else 0
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        print(f"failed to bind 127.0.0.1:{port}", file=sys.stderr)
        return 1
    server.start()
    sys.stdout.write(f"{bound}\n")
    sys.stdout.flush()

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())

    if exit_on_stdin_eof:
        def _watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            done.set()

        threading.Thread(target=_watch_stdin, daemon=True).start()

    done.wait()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
