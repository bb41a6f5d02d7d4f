#!/usr/bin/env python3
"""Build the Kernite 0.1.6 authoring-tools conformance corpus.

This script runs the *real* Kernite 0.1.6 (never a re-implementation):

* CLI cases run ``<python> -m kernite.cli ARGS`` as a subprocess, in a fresh
  temporary directory (the cwd) that holds exactly the case's ``files_in``.
  Recorded: exit code, stdout, stderr (informational), every file that is new
  or modified afterwards (``files_out``) and every new directory (``dirs_out``).
* HTTP cases POST a body to ``kernite.cli._GovernanceHandler`` served by
  ``http.server.ThreadingHTTPServer(("127.0.0.1", 0), ...)`` in a thread of
  this process (the server subclass only overrides ``handle_error`` to keep the
  traceback of handler crashes for the summary instead of printing it).

Usage (the exact command used for the committed corpus is in README.md):

    python3 tests/authoring/make_corpus.py [--out DIR] [--drop-skip-above BYTES] \
        [PREFIX=]DOCDIR ...

Each DOCDIR contributes ``DOCDIR/*.json`` (sorted by file name) as documents
named ``PREFIX/<file stem>``; PREFIX defaults to the directory's base name.
A ``MANIFEST.tsv`` (columns ``name``, ``source``, ...) in DOCDIR supplies each
document's ``source``; otherwise the source is the file's path.

Outputs (gzip'd JSON Lines, one ``json.dumps(obj, ensure_ascii=False)`` per
line, gzip mtime 0, so the output is byte-for-byte reproducible):

* ``documents.jsonl.gz``: ``{"name", "source", "text"}`` per document.
* ``cases.jsonl.gz``: one object per case; see README.md for the format.

Per document the variants are: generate, generate-observe-fail,
generate-skip, check, check-generated, check-entry-removed, check-not-strict
(the last three only when the CLI generate variant wrote its files) and, for
a fixed handful of documents, check-default-report.  Then hand-made HTTP
payload-shape cases (``payload/...``, sent to all four routes) and CLI-only
cases (``cli/...``).  Size control for large real-world documents:
``--drop-skip-above BYTES`` omits generate-skip for documents larger than
BYTES; ``--lean-above BYTES`` gives non-edge documents larger than BYTES only
the generate and check-generated variants.

A case whose HTTP request got no response (the handler raised and the server
closed the connection) is recorded with ``"status": null``,
``"content_type": null``, ``"response": null``; a CLI run whose stderr holds
a Python traceback gets ``"crash": true``.  Consumers should skip both.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import traceback
from http.server import ThreadingHTTPServer
from pathlib import Path

import kernite.cli

EXPECTED_KERNITE = "0.1.6"
ROUTE_GEN = "/policy/generate"
ROUTE_GEN_V1 = "/v1/policy/generate"
ROUTE_CHECK = "/policy/check"
ROUTE_CHECK_V1 = "/v1/policy/check"
ROUTES = [("generate", ROUTE_GEN), ("v1-generate", ROUTE_GEN_V1), ("check", ROUTE_CHECK), ("v1-check", ROUTE_CHECK_V1)]

OPT_OBSERVE_FAIL = '{"default_mode": "observe", "fail_on_unsupported": true}'
OPT_SKIP = '{"default_mode": "skip"}'
OPT_NOT_STRICT = '{"strict": false}'

GEN_ARGS = ["policy", "generate", "--schema", "openapi.json", "--out-dir", "out"]
CHECK_ARGS = ["check", "--schema", "openapi.json", "--report-out", "report.json"]
CHECK_MB_ARGS = ["check", "--schema", "openapi.json", "--mapping", "mapping.json", "--bundle", "bundle.json", "--report-out", "report.json"]
OUT_BUNDLE = "out/policy-bundle.generated.json"
OUT_MAP = "out/policy-map.generated.json"

# Documents that also get the CLI-only `check-default-report` variant.
DEFAULT_REPORT_DOCS = {
    "edge/basic-governed",
    "edge/basic-inferred-no-x-kernite",
    "edge/notdoc-list-empty",
    "edge/xk-mode-variants",
    "edge/lone-surrogate-in-path",
}
DEFAULT_REPORT_FIRST_N_OTHER = 2  # plus the first N documents of each non-edge directory

CTX_RE = re.compile(r'^\{"ctx_id": "ctx_[0-9a-f]{12}"')
CTX_MASK = '{"ctx_id": "ctx_************"'

CLI_ENV_KEEP = ("PATH", "SYSTEMROOT")


def body_of(openapi: str | None = None, options: str | None = None, mapping: str | None = None, bundle: str | None = None) -> str:
    parts = []
    for key, text in (("openapi", openapi), ("options", options), ("mapping", mapping), ("bundle", bundle)):
        if text is not None:
            parts.append('"' + key + '": ' + text)
    return "{" + ", ".join(parts) + "}"


def canon(value) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


# --------------------------------------------------------------------- HTTP


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.errors: list[str] = []

    def handle_error(self, request, client_address):  # keep, don't print
        self.errors.append(traceback.format_exc())


class Http:
    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), kernite.cli._GovernanceHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.host, self.port = self.server.server_address[:2]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def post(self, route: str, body: str) -> dict:
        before = len(self.server.errors)
        conn = http.client.HTTPConnection(self.host, self.port, timeout=900)
        status = ctype = text = None
        try:
            conn.request("POST", route, body=body.encode("utf-8"), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            status, ctype, text = resp.status, resp.getheader("Content-Type"), raw.decode("utf-8")
        except (http.client.HTTPException, ConnectionError):
            pass
        finally:
            conn.close()
        result = {"route": route, "body": body, "status": status, "content_type": ctype,
                  "response": None if text is None else CTX_RE.sub(CTX_MASK, text, count=1)}
        if status is None:
            # give the handler thread a moment to record its traceback
            for _ in range(100):
                if len(self.server.errors) > before:
                    break
                threading.Event().wait(0.02)
            err = self.server.errors[-1] if len(self.server.errors) > before else "(no traceback captured)"
            result["_error"] = err.strip().splitlines()[-1]
        return result


# --------------------------------------------------------------------- CLI


class Cli:
    def __init__(self, python: str) -> None:
        self.python = python
        self.env = {k: os.environ[k] for k in CLI_ENV_KEEP if k in os.environ}
        self.env.update({"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONUTF8": "1", "PYTHONIOENCODING": "utf-8",
                         "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "80", "LINES": "24"})

    def run(self, files_in: dict[str, str], args: list[str]) -> dict:
        with tempfile.TemporaryDirectory(prefix="kernite-corpus-") as td:
            root = Path(td)
            for rel, text in files_in.items():
                p = root / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(text.encode("utf-8"))
            dirs_before = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}
            env = dict(self.env, HOME=td)
            proc = subprocess.run([self.python, "-m", "kernite.cli", *args], cwd=td, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=1800)
            files_out: dict[str, str] = {}
            dirs_out: list[str] = []
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root).as_posix()
                if p.is_dir():
                    if rel not in dirs_before:
                        dirs_out.append(rel)
                    continue
                text = p.read_bytes().decode("utf-8", errors="replace")
                if files_in.get(rel) != text:
                    files_out[rel] = text
            stdout = proc.stdout.decode("utf-8", errors="replace")
            stderr = proc.stderr.decode("utf-8", errors="replace")
        result = {"files_in": files_in, "args": args, "exit": proc.returncode, "stdout": stdout,
                  "files_out": files_out, "dirs_out": dirs_out, "stderr": stderr}
        if "Traceback (most recent call last)" in stderr:
            result["crash"] = True
        return result


# --------------------------------------------------------------------- documents


def load_documents(specs: list[str]) -> tuple[list[dict], list[str]]:
    docs: list[dict] = []
    problems: list[str] = []
    for spec in specs:
        prefix, sep, directory = spec.partition("=")
        if not sep:
            directory, prefix = spec, Path(spec.rstrip("/")).name
        d = Path(directory)
        manifest: dict[str, str] = {}
        mpath = d / "MANIFEST.tsv"
        if mpath.exists():
            lines = mpath.read_text(encoding="utf-8").splitlines()
            header = lines[0].split("\t") if lines else []
            for line in lines[1:]:
                if not line.strip():
                    continue
                row = dict(zip(header, line.split("\t")))
                if row.get("name"):
                    manifest[row["name"]] = row.get("source", "")
        files = sorted(p for p in d.glob("*.json") if p.is_file())
        for i, p in enumerate(files):
            raw = p.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"{p}: not UTF-8 ({exc}); skipped")
                continue
            if prefix == "edge":
                source = f"hand-made edge document tests/authoring/edge/{p.name}"
            else:
                source = manifest.get(p.stem) or str(p)
                if p.stem not in manifest:
                    problems.append(f"{p}: no MANIFEST.tsv row")
            docs.append({"name": f"{prefix}/{p.stem}", "source": source, "text": text,
                         "_prefix": prefix, "_index": i, "_size": len(raw)})
    return docs, problems


def remove_entries(map_text: str, bundle_text: str) -> tuple[str, str] | None:
    """Drop the middle governed mapping entry and a (different, if possible) middle policy."""
    mapping = json.loads(map_text)
    bundle = json.loads(bundle_text)
    ops = mapping.get("operations") or []
    policies = bundle.get("policies") or []
    governed = [i for i, op in enumerate(ops) if isinstance(op, dict) and op.get("governed")]
    if not governed and not policies:
        return None
    removed_key = None
    if governed:
        idx = governed[len(governed) // 2]
        removed_key = ops[idx].get("policy_key")
        del ops[idx]
    if policies:
        pidx = len(policies) // 2
        if len(policies) > 1 and policies[pidx].get("policy_key") == removed_key:
            pidx = (pidx + 1) % len(policies)
        del policies[pidx]
    return canon(mapping), canon(bundle)


def document_cases(doc: dict, http_: Http, cli: Cli, drop_skip_above: int | None,
                   lean_above: int | None = None) -> list[dict]:
    name, text = doc["name"], doc["text"]
    cases: list[dict] = []

    def case(variant, http_part, cli_part):
        c = {"name": f"{name}#{variant}", "document": name}
        if http_part is not None:
            c["http"] = http_part
        if cli_part is not None:
            c["cli"] = cli_part
        cases.append(c)
        return c

    lean = lean_above is not None and doc["_prefix"] != "edge" and doc["_size"] > lean_above
    gen_cli = cli.run({"openapi.json": text}, GEN_ARGS)
    case("generate", http_.post(ROUTE_GEN, body_of(text)), gen_cli)
    out = gen_cli["files_out"]
    if lean:  # size control: only generate and check-generated
        if OUT_MAP in out and OUT_BUNDLE in out and not gen_cli.get("crash"):
            map_text, bundle_text = out[OUT_MAP], out[OUT_BUNDLE]
            case("check-generated", http_.post(ROUTE_CHECK_V1, body_of(text, None, map_text, bundle_text)),
                 cli.run({"openapi.json": text, "mapping.json": map_text, "bundle.json": bundle_text}, CHECK_MB_ARGS))
        return cases
    case("generate-observe-fail", http_.post(ROUTE_GEN_V1, body_of(text, OPT_OBSERVE_FAIL)),
         cli.run({"openapi.json": text}, GEN_ARGS + ["--default-mode", "observe", "--fail-on-unsupported"]))
    if drop_skip_above is None or doc["_size"] <= drop_skip_above:
        case("generate-skip", http_.post(ROUTE_GEN, body_of(text, OPT_SKIP)),
             cli.run({"openapi.json": text}, GEN_ARGS + ["--default-mode", "skip"]))
    case("check", http_.post(ROUTE_CHECK, body_of(text)), cli.run({"openapi.json": text}, CHECK_ARGS))

    if OUT_MAP in out and OUT_BUNDLE in out and not gen_cli.get("crash"):
        map_text, bundle_text = out[OUT_MAP], out[OUT_BUNDLE]
        case("check-generated", http_.post(ROUTE_CHECK_V1, body_of(text, None, map_text, bundle_text)),
             cli.run({"openapi.json": text, "mapping.json": map_text, "bundle.json": bundle_text}, CHECK_MB_ARGS))
        removed = remove_entries(map_text, bundle_text)
        if removed is not None:
            m2, b2 = removed
            files = {"openapi.json": text, "mapping.json": m2, "bundle.json": b2}
            case("check-entry-removed", http_.post(ROUTE_CHECK, body_of(text, None, m2, b2)),
                 cli.run(files, CHECK_MB_ARGS))
            case("check-not-strict", http_.post(ROUTE_CHECK_V1, body_of(text, OPT_NOT_STRICT, m2, b2)),
                 cli.run(files, CHECK_MB_ARGS + ["--no-strict"]))

    if name in DEFAULT_REPORT_DOCS or (doc["_prefix"] != "edge" and doc["_index"] < DEFAULT_REPORT_FIRST_N_OTHER):
        case("check-default-report", None, cli.run({"openapi.json": text}, ["check", "--schema", "openapi.json"]))
    return cases


# --------------------------------------------------------------------- hand-made HTTP payloads

PAYLOAD_DOC = "edge/realistic-mixed"


def payload_bodies(d: str) -> list[tuple[str, str, bool]]:
    """(slug, body, embeds PAYLOAD_DOC)."""
    out: list[tuple[str, str, bool]] = []

    def add(slug, body, uses_doc=True):
        out.append((slug, body, uses_doc))

    # body shapes
    for slug, body in [("body-array", "[]"), ("body-array-of-object", '[{"openapi": "3.0.0", "paths": {}}]'),
                       ("body-string", '"x"'), ("body-number", "1"), ("body-null", "null"), ("body-true", "true"),
                       ("body-nan", "NaN"), ("body-empty", ""), ("body-whitespace", " \n"), ("body-invalid-json", "{"),
                       ("body-trailing-garbage", '{"openapi": {}} x'), ("body-bom", "\ufeff{}"),
                       ("body-single-quotes", "{'openapi': 1}"), ("body-empty-object", "{}"),
                       ("body-openapi-null", '{"openapi": null}'), ("body-openapi-string", '{"openapi": "3.0.0"}'),
                       ("body-openapi-not-3", '{"openapi": {"openapi": "2.0", "paths": {}}}'),
                       ("body-openapi-paths-list", '{"openapi": {"openapi": "3.0.0", "paths": []}}'),
                       ("body-missing-openapi-with-options", '{"options": {"strict": false, "default_mode": "skip"}}')]:
        add(slug, body, False)
    add("body-duplicate-openapi-key", '{"openapi": "x", "openapi": ' + d + "}")
    add("body-unknown-keys", '{"extra": [1, 2], "openapi": ' + d + ', "zzz": null}')
    add("body-openapi-only", body_of(d))
    # options
    for slug, opt in [("options-list", "[]"), ("options-string", '"strict"'), ("options-number", "5"), ("options-zero", "0"),
                      ("options-false", "false"), ("options-true", "true"), ("options-null", "null"), ("options-empty", "{}"),
                      ("options-empty-string", '""')]:
        add(slug, body_of(d, opt))
    add("options-list-openapi-missing", '{"options": []}', False)
    # default_mode spellings
    for slug, v in [("padded-upper-enforce", '" ENFORCE "'), ("empty", '""'), ("null", "null"), ("number", "5"),
                    ("bogus", '"bogus"'), ("true", "true"), ("false", "false"), ("zero", "0"), ("upper-observe", '"OBSERVE"'),
                    ("padded-skip", '" skip "'), ("list", '["observe"]'), ("object", "{}"), ("unit-separator", '"\\u001fobserve"'),
                    ("nbsp", '"\\u00a0skip"')]:
        add("default-mode-" + slug, body_of(d, '{"default_mode": ' + v + "}"))
    add("default-mode-bogus-openapi-missing", '{"options": {"default_mode": "bogus"}}', False)
    add("default-mode-bogus-openapi-2", '{"openapi": {"openapi": "2.0", "paths": {}}, "options": {"default_mode": "bogus"}}', False)
    # fail_on_unsupported truthiness
    for slug, v in [("empty-string", '""'), ("string-false", '"false"'), ("zero", "0"), ("zero-float", "0.0"),
                    ("negative-zero", "-0.0"), ("empty-list", "[]"), ("empty-object", "{}"), ("list-zero", "[0]"),
                    ("null", "null"), ("one", "1"), ("true", "true"), ("false", "false"), ("string-zero", '"0"'), ("nan", "NaN")]:
        add("fail-on-unsupported-" + slug, body_of(d, '{"fail_on_unsupported": ' + v + "}"))
    # strict truthiness
    for slug, v in [("null", "null"), ("false", "false"), ("string-no", '"no"'), ("zero", "0"), ("one", "1"),
                    ("empty-list", "[]"), ("true", "true"), ("empty-string", '""'), ("object", "{}"), ("string-false", '"false"'),
                    ("list-zero", "[0]")]:
        add("strict-" + slug, body_of(d, '{"strict": ' + v + "}"))
    add("strict-null-openapi-missing", '{"options": {"strict": null}}', False)
    add("strict-string-no-openapi-2", '{"openapi": {"openapi": "2.0", "paths": {}}, "options": {"strict": "no"}}', False)
    # mapping shapes
    for slug, m in [("array", "[]"), ("string", '"x"'), ("number", "5"), ("false", "false"), ("true", "true"),
                    ("null", "null"), ("empty-object", "{}"), ("operations-object", '{"operations": {}}'),
                    ("operations-string", '{"operations": "x"}'), ("operations-null", '{"operations": null}'),
                    ("operations-empty", '{"operations": []}')]:
        add("mapping-" + slug, body_of(d, None, m))
    add("mapping-entries-malformed", body_of(d, None, '{"operations": [1, null, "x", [], {}, {"path": "/customers"}, {"method": "post"}, '
        '{"path": "", "method": "post"}, {"path": "  ", "method": "post"}, {"path": "/customers", "method": " "}, '
        '{"path": 5, "method": "post"}, {"path": "/customers", "method": 5}, {"path": "/customers", "method": null}]}'))
    add("mapping-uppercase-padded", body_of(d, None, '{"operations": [{"path": " /customers ", "method": " POST ", '
        '"object_type": " CUSTOMER ", "operation": "CREATE", "mode": "ENFORCE", "policy_key": " customer_create_guard "}]}'))
    add("mapping-mismatches", body_of(d, None, '{"operations": ['
        '{"path": "/customers", "method": "post", "object_type": "client", "operation": "update", "mode": "observe", "policy_key": "other_guard"}, '
        '{"path": "/customers/{customerId}", "method": "put", "object_type": "customer", "operation": "update", "mode": "", "policy_key": ""}, '
        '{"path": "/customers/{customerId}", "method": "delete", "object_type": "customer", "operation": "delete", "mode": "skip"}, '
        '{"path": "/customers/{customerId}", "method": "patch", "object_type": null, "operation": null, "mode": null, "policy_key": null}, '
        '{"path": "/customers/{customerId}/archive", "method": "post", "object_type": 5, "operation": ["archive"], "mode": 1, "policy_key": 7}, '
        '{"path": "/orders", "method": "post", "object_type": "order", "operation": "create", "mode": "enforce", "policy_key": "anything"}, '
        '{"path": "/orders/{orderId}/items", "method": "delete", "object_type": "item", "operation": "delete", "mode": "enforce"}, '
        '{"path": "/not/in/doc", "method": "post"}]}'))
    add("mapping-duplicate-entries", body_of(d, None, '{"operations": ['
        '{"path": "/customers", "method": "post", "object_type": "customer", "operation": "create", "mode": "enforce", "policy_key": "customer_create_guard"}, '
        '{"path": "/customers", "method": "post", "object_type": "nope", "operation": "create", "mode": "enforce", "policy_key": "customer_create_guard"}, '
        '{"path": "/customers/{customerId}", "method": "delete", "object_type": "nope"}, '
        '{"path": "/customers/{customerId}", "method": "DELETE", "object_type": "customer", "operation": "delete", "mode": "observe", "policy_key": "customer_delete_guard"}]}'))
    add("mapping-duplicate-keys", body_of(d, None, '{"operations": [{"path": "/customers", "path": "/orders", "method": "post", '
        '"object_type": "order", "operation": "create"}], "operations": []}'))
    # bundle shapes
    for slug, b in [("array", "[]"), ("string", '"x"'), ("number", "5"), ("false", "false"), ("null", "null"),
                    ("empty-object", "{}"), ("policies-object", '{"policies": {}}'), ("policies-null", '{"policies": null}'),
                    ("policies-string", '{"policies": "x"}'), ("policies-empty", '{"policies": []}')]:
        add("bundle-" + slug, body_of(d, None, None, b))
    add("bundle-entries-malformed", body_of(d, None, None, '{"policies": [1, null, [], {}, {"policy_key": ""}, {"policy_key": "  "}, '
        '{"policy_key": 5}, {"policy_key": "customer_create_guard", "rules": "x"}, {"policy_key": "customer_update_guard", "rules": null}, '
        '{"policy_key": "customer_delete_guard", "rules": {}}, {"policy_key": " customer_archive_guard ", "rules": []}, '
        '{"policy_key": {"k": 1}, "rules": 5}]}'))
    add("bundle-default-key-names", body_of(d, None, None, '{"policies": [{"policy_key": "order_create_guard"}, '
        '{"policy_key": "customer_update_guard"}, {"policy_key": "customer_create_guard"}, {"policy_key": "customer_delete_guard"}, '
        '{"policy_key": "customer_archive_guard"}, {"policy_key": "customer_update_guard"}]}'))
    add("mapping-and-bundle-malformed-not-strict", body_of(d, '{"strict": false}', '{"operations": [1]}', '{"policies": [1]}'))
    add("mapping-and-bundle-empty-not-strict", body_of(d, '{"strict": false}', '{"operations": []}', '{"policies": []}'))
    add("mapping-and-bundle-openapi-missing", '{"mapping": [], "bundle": []}', False)
    return out


# --------------------------------------------------------------------- CLI-only cases


def cli_only_cases(cli: Cli, docs_by_name: dict[str, dict]) -> list[dict]:
    base_name = "edge/basic-governed"
    base = docs_by_name[base_name]["text"]
    uncovered_name = "edge/basic-inferred-no-x-kernite"
    uncovered = docs_by_name[uncovered_name]["text"]
    yaml_text = "openapi: 3.0.3\ninfo:\n  title: y\n  version: '1'\npaths: {}\n"
    cases: list[dict] = []

    def add(slug, document, files_in, args):
        cases.append({"name": f"cli/{slug}", "document": document, "cli": cli.run(files_in, args)})

    gen_files = cli.run({"openapi.json": base}, GEN_ARGS)["files_out"]
    full = {"openapi.json": base, "mapping.json": gen_files[OUT_MAP], "bundle.json": gen_files[OUT_BUNDLE]}

    add("schema-yaml-suffix", base_name, {"openapi.yaml": base}, ["policy", "generate", "--schema", "openapi.yaml", "--out-dir", "out"])
    add("schema-yaml-suffix-check", None, {"openapi.yaml": yaml_text}, ["check", "--schema", "openapi.yaml"])
    add("schema-yml-suffix", None, {"openapi.yml": yaml_text}, ["policy", "generate", "--schema", "openapi.yml", "--out-dir", "out"])
    add("schema-uppercase-yaml-suffix", base_name, {"openapi.YAML": base}, ["check", "--schema", "openapi.YAML", "--report-out", "report.json"])
    add("schema-yaml-suffix-missing-file", None, {}, ["check", "--schema", "missing.yml"])
    add("schema-invalid-json", None, {"openapi.json": '{"openapi": "3.0.0", "paths": {'}, GEN_ARGS)
    add("schema-invalid-json-check", None, {"openapi.json": "{"}, CHECK_ARGS)
    add("schema-yaml-content-json-suffix", None, {"openapi.json": yaml_text}, GEN_ARGS)
    add("schema-yaml-doc-marker", None, {"openapi.json": "---\n" + yaml_text}, CHECK_ARGS)
    add("schema-yaml-leading-whitespace", None, {"openapi.json": "\n  " + yaml_text}, GEN_ARGS)
    add("schema-empty-file", None, {"openapi.json": ""}, GEN_ARGS)
    add("schema-bom", base_name, {"openapi.json": "\ufeff" + base}, GEN_ARGS)
    add("schema-missing-file", None, {}, GEN_ARGS)
    add("schema-missing-file-check", None, {}, CHECK_ARGS)
    add("schema-is-directory", None, {"schema.json/keep.txt": "x\n"}, ["policy", "generate", "--schema", "schema.json", "--out-dir", "out"])
    add("schema-not-object", None, {"openapi.json": "[]"}, GEN_ARGS)
    add("schema-not-object-check", None, {"openapi.json": "NaN"}, CHECK_ARGS)
    add("schema-dot-slash-path", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "./openapi.json", "--out-dir", "out"])
    add("schema-in-subdir", base_name, {"specs/api.json": base}, ["check", "--schema", "specs/api.json", "--report-out", "r.json"])
    add("mapping-invalid-json", base_name, {"openapi.json": base, "mapping.json": "{", "bundle.json": full["bundle.json"]}, CHECK_MB_ARGS)
    add("bundle-invalid-json", base_name, {"openapi.json": base, "mapping.json": full["mapping.json"], "bundle.json": "[1,"}, CHECK_MB_ARGS)
    add("mapping-empty-file", base_name, {"openapi.json": base, "mapping.json": "", "bundle.json": full["bundle.json"]}, CHECK_MB_ARGS)
    add("mapping-missing-file", base_name, {"openapi.json": base, "bundle.json": full["bundle.json"]}, CHECK_MB_ARGS)
    add("mapping-not-object", base_name, {"openapi.json": base, "mapping.json": "[]\n", "bundle.json": "5\n"}, CHECK_MB_ARGS)
    add("mapping-only", base_name, {"openapi.json": base, "mapping.json": full["mapping.json"]},
        ["check", "--schema", "openapi.json", "--mapping", "mapping.json", "--report-out", "report.json"])
    add("bundle-only", base_name, {"openapi.json": base, "bundle.json": full["bundle.json"]},
        ["check", "--schema", "openapi.json", "--bundle", "bundle.json", "--report-out", "report.json"])
    add("mapping-empty-string-arg", base_name, {"openapi.json": base},
        ["check", "--schema", "openapi.json", "--mapping", "", "--bundle", "", "--report-out", "report.json"])
    add("default-mode-bogus", base_name, {"openapi.json": base}, GEN_ARGS + ["--default-mode", "bogus"])
    add("default-mode-uppercase", base_name, {"openapi.json": base}, GEN_ARGS + ["--default-mode", "OBSERVE"])
    add("generate-missing-schema", None, {}, ["policy", "generate", "--out-dir", "out"])
    add("generate-missing-out-dir", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "openapi.json"])
    add("check-missing-schema", None, {}, ["check", "--report-out", "report.json"])
    add("strict-after-no-strict", uncovered_name, {"openapi.json": uncovered}, CHECK_ARGS + ["--no-strict", "--strict"])
    add("no-strict-after-strict", uncovered_name, {"openapi.json": uncovered}, CHECK_ARGS + ["--strict", "--no-strict"])
    add("no-strict-complete-mapping", base_name, dict(full), CHECK_MB_ARGS + ["--no-strict"])
    add("strict-complete-mapping", base_name, dict(full), CHECK_MB_ARGS + ["--strict"])
    add("equals-syntax", base_name, {"openapi.json": base}, ["policy", "generate", "--schema=openapi.json", "--out-dir=out", "--default-mode=observe"])
    add("abbreviated-options", base_name, {"openapi.json": base}, ["policy", "generate", "--sch", "openapi.json", "--out", "out", "--fail"])
    add("abbreviated-options-check", uncovered_name, {"openapi.json": uncovered}, ["check", "--sch", "openapi.json", "--no", "--report", "r.json"])
    add("duplicate-schema-flag", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "missing.json", "--schema", "openapi.json", "--out-dir", "out"])
    add("out-dir-trailing-slash", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "openapi.json", "--out-dir", "out/"])
    add("out-dir-dot-slash", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "openapi.json", "--out-dir", "./out"])
    add("out-dir-dotdot", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "openapi.json", "--out-dir", "a/b/../c"])
    add("out-dir-dot", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "openapi.json", "--out-dir", "."])
    add("out-dir-nested-new", base_name, {"openapi.json": base}, ["policy", "generate", "--schema", "openapi.json", "--out-dir", "x/y/z"])
    add("out-dir-existing-files-overwritten", base_name, {"openapi.json": base, "out/policy-bundle.generated.json": "old\n", "out/keep.txt": "keep\n"}, GEN_ARGS)
    add("out-dir-is-file", base_name, {"openapi.json": base, "out": "not a dir\n"}, GEN_ARGS)
    add("generate-invalid-doc-no-output", None, {"openapi.json": '{"openapi": "2.0", "paths": {}}'}, GEN_ARGS)
    add("report-out-nested", uncovered_name, {"openapi.json": uncovered}, ["check", "--schema", "openapi.json", "--report-out", "sub/dir/report.json"])
    add("report-out-existing-overwritten", base_name, {"openapi.json": base, "report.json": "old\n"}, CHECK_ARGS)
    add("report-out-dot-slash", base_name, {"openapi.json": base}, ["check", "--schema", "openapi.json", "--report-out", "./r.json"])
    add("report-out-dotdot", base_name, {"openapi.json": base}, ["check", "--schema", "openapi.json", "--report-out", "a/../r.json"])
    add("start-dir-starter", None, {}, ["start", "--dir", "starter"])
    add("start-non-empty", None, {"starter/existing.txt": "keep\n"}, ["start", "--dir", "starter"])
    add("start-non-empty-force", None, {"starter/existing.txt": "keep\n", "starter/policy.json": "old\n"}, ["start", "--dir", "starter", "--force"])
    add("start-target-is-file", None, {"starter": "file\n"}, ["start", "--dir", "starter"])
    add("start-target-is-file-force", None, {"starter": "file\n"}, ["start", "--dir", "starter", "--force"])
    add("start-nested-dir", None, {}, ["start", "--dir", "a/b/c"])
    add("start-dir-trailing-slash", None, {}, ["start", "--dir", "./s/"])
    add("start-default-dir", None, {}, ["start"])
    add("start-default-dir-non-empty", None, {"kernite/x.txt": "x\n"}, ["start"])
    add("start-dir-dot-non-empty", None, {"x.txt": "x\n"}, ["start", "--dir", "."])
    add("scaffold-dir-x", None, {}, ["scaffold", "--dir", "x"])
    add("scaffold-force-empty", None, {}, ["scaffold", "--force"])
    add("no-arguments", None, {}, [])
    add("policy-without-subcommand", None, {}, ["policy"])
    add("unknown-command", None, {}, ["bogus"])
    add("unknown-policy-subcommand", None, {}, ["policy", "bogus"])
    add("generate-unknown-flag", base_name, {"openapi.json": base}, GEN_ARGS + ["--bogus"])
    add("help", None, {}, ["--help"])
    add("policy-generate-help", None, {}, ["policy", "generate", "--help"])
    add("check-help", None, {}, ["check", "--help"])
    add("start-help", None, {}, ["start", "-h"])
    return cases


# --------------------------------------------------------------------- main


def write_jsonl_gz(path: Path, rows) -> int:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            for row in rows:
                gz.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)
    return path.stat().st_size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("docdirs", nargs="+", help="[PREFIX=]DIR holding *.json documents (and optionally MANIFEST.tsv)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent), help="output directory (default: this script's directory)")
    ap.add_argument("--python", default=sys.executable, help="Python interpreter with kernite installed, used for CLI cases")
    ap.add_argument("--drop-skip-above", type=int, default=None, metavar="BYTES",
                    help="omit the generate-skip variant for documents larger than BYTES")
    ap.add_argument("--lean-above", type=int, default=None, metavar="BYTES",
                    help="non-edge documents larger than BYTES get only the generate and check-generated variants")
    opts = ap.parse_args()

    version = importlib.metadata.version("kernite")
    if version != EXPECTED_KERNITE:
        print(f"kernite {version} installed; expected {EXPECTED_KERNITE}", file=sys.stderr)
        return 2
    sys.setrecursionlimit(1000)  # Python's default; some edge documents rely on it

    docs, problems = load_documents(opts.docdirs)
    docs_by_name = {d["name"]: d for d in docs}
    if len(docs_by_name) != len(docs):
        raise SystemExit("duplicate document names")
    for required in ("edge/basic-governed", "edge/basic-inferred-no-x-kernite", PAYLOAD_DOC):
        if required not in docs_by_name:
            raise SystemExit(f"missing required edge document {required}")

    http_ = Http()
    cli = Cli(opts.python)
    cases: list[dict] = []
    try:
        for n, doc in enumerate(docs, 1):
            print(f"[{n}/{len(docs)}] {doc['name']} ({doc['_size']} bytes)", file=sys.stderr, flush=True)
            cases.extend(document_cases(doc, http_, cli, opts.drop_skip_above, opts.lean_above))
        d = docs_by_name[PAYLOAD_DOC]["text"]
        for slug, body, uses_doc in payload_bodies(d):
            for tag, route in ROUTES:
                cases.append({"name": f"payload/{slug}#{tag}", "document": PAYLOAD_DOC if uses_doc else None,
                              "http": http_.post(route, body)})
        print("CLI-only cases", file=sys.stderr, flush=True)
        cases.extend(cli_only_cases(cli, docs_by_name))
    finally:
        http_.close()

    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    http_failures = []
    for c in cases:
        h = c.get("http")
        if h is not None and "_error" in h:
            http_failures.append((c["name"], h.pop("_error")))
    doc_size = write_jsonl_gz(out / "documents.jsonl.gz",
                              ({"name": d["name"], "source": d["source"], "text": d["text"]} for d in docs))
    case_size = write_jsonl_gz(out / "cases.jsonl.gz", cases)

    # ----- summary
    per_variant: dict[str, int] = {}
    for c in cases:
        if c["name"].startswith(("payload/", "cli/")):
            key = c["name"].split("/", 1)[0]
        else:
            key = c["name"].split("/", 1)[0] + "#" + c["name"].split("#", 1)[1]
        per_variant[key] = per_variant.get(key, 0) + 1
    prefixes: dict[str, int] = {}
    for d in docs:
        prefixes[d["_prefix"]] = prefixes.get(d["_prefix"], 0) + 1
    print(f"documents: {len(docs)} {prefixes}  -> documents.jsonl.gz {doc_size} bytes")
    print(f"cases: {len(cases)} -> cases.jsonl.gz {case_size} bytes")
    for k in sorted(per_variant):
        print(f"  {k}: {per_variant[k]}")
    print(f"HTTP requests without a response (status null): {len(http_failures)}")
    for name, err in http_failures:
        print(f"  {name}: {err}")
    crashes = [c["name"] for c in cases if c.get("cli", {}).get("crash")]
    print(f"CLI runs with a Python traceback (crash true): {len(crashes)}")
    for name in crashes:
        print(f"  {name}: {cases[names.index(name)]['cli']['stderr'].strip().splitlines()[-1]}")
    for p in problems:
        print(f"note: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
