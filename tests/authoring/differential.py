"""Differential fuzzing of the authoring routes against Kernite 0.1.6 itself.

Makes random OpenAPI documents aimed at the generator's and checker's branches
(x-kernite spellings, $ref chains, schema keywords, Python's str() of odd values),
asks Kernite in-process (`generate_policy_response`, `check_policy_response`, the
body as its HTTP handler reads it) and a running sidecar over HTTP, and compares
status and body bytes with the ctx_id masked. Cases where Kernite itself raises
are skipped.

    governance-sidecar serve --listen 127.0.0.1:18600 &
    python3 tests/authoring/differential.py SEED PORT COUNT
"""

import http.client
import json
import random
import re
import sys
from collections import Counter
from kernite.policy_generate import generate_policy_response
from kernite.policy_check import check_policy_response

rnd = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 18600
N = int(sys.argv[3]) if len(sys.argv) > 3 else 2000

WORDS = ["invoices", "Invoice", "companies", "status", "ies", "s", "{id}", "{invoiceId}", "v1", "ÜNICODE", "\u212aelvin",
         "a.b", "with space", "x-y_z", "", "ß", "İstanbul", "ΣΑΣ", "items", "addresses", "boxes", "\u00a0nbsp", "__"]
STRS = ["", " ", "enforce", "ENFORCE ", " observe", "skip", "bogus", "create", "UPDATE", "archive", "activate ",
        "delete", "associate", "invoice", " Invoice ", "k", " k ", "x\ty", "\u3000", "\x1f", "é", "None", "0"]

def scalar():
    c = rnd.randrange(10)
    if c == 0: return None
    if c == 1: return rnd.choice([True, False])
    if c == 2: return rnd.choice([0, 1, -1, 5, 10**20, -(10**19)])
    if c == 3: return rnd.choice([0.0, -0.0, 1.5, 1e16, 1e-7, 0.1, 1e300, 2.5e-5, 100.0])
    return rnd.choice(STRS)

def value(depth=0):
    c = rnd.randrange(8)
    if depth > 2 or c < 5: return scalar()
    if c == 5: return [value(depth + 1) for _ in range(rnd.randrange(3))]
    return {rnd.choice(["a", "b", "B", "é", "$ref", "1"]): value(depth + 1) for _ in range(rnd.randrange(3))}

def schema(depth=0):
    s = {}
    if rnd.random() < 0.5: s["type"] = rnd.choice(["object", "array", " ARRAY ", "string", 5, None])
    if rnd.random() < 0.6:
        s["required"] = [rnd.choice(["a", "b", " c ", "", None, 5, True, {"x": 1}, 1e16, "a.b"]) for _ in range(rnd.randrange(4))]
    for k in ["oneOf", "anyOf", "allOf", "pattern", "minLength", "maxLength", "minItems", "maxItems", "uniqueItems", "items"]:
        if rnd.random() < 0.08: s[k] = value()
    if rnd.random() < 0.15: s["$ref"] = rnd.choice(["#/components/schemas/S", "#/components/schemas/T", "#/components/schemas/L/1", "", None, 5, "other.json#/x"])
    if depth < 3 and rnd.random() < 0.7:
        props = {}
        for _ in range(rnd.randrange(4)):
            name = rnd.choice(["a", "b", "c", "a.b", "é", "", " x", "amount", "currency", "$ref", "Z"])
            if rnd.random() < 0.1:
                props[name] = value()
            else:
                child = schema(depth + 1)
                if rnd.random() < 0.4: child["enum"] = [value() for _ in range(rnd.randrange(4))]
                if rnd.random() < 0.3: child["maximum"] = rnd.choice([1000, 1.5, "10", None, True, 10**30, 1e308, -0.0])
                props[name] = child
        s["properties"] = props if rnd.random() < 0.95 else value()
    return s

def operation():
    op = {}
    if rnd.random() < 0.7: op["operationId"] = rnd.choice(["createInvoice", " padded ", "", None, 0, 5, {"a": 1}, "x" * 3, "Create Invoice!"])
    if rnd.random() < 0.7:
        if rnd.random() < 0.1:
            op["x-kernite"] = value()
        else:
            xk = {}
            for k in ["governed", "mode", "operation", "object_type", "policy_key"]:
                if rnd.random() < 0.5:
                    xk[k] = rnd.choice([True, False]) if (k == "governed" and rnd.random() < 0.7) else scalar() if rnd.random() < 0.3 else rnd.choice(STRS)
            op["x-kernite"] = xk
    if rnd.random() < 0.8:
        c = rnd.randrange(10)
        if c == 0: op["requestBody"] = {"$ref": rnd.choice(["#/components/requestBodies/R", "#/components/requestBodies/Q"])}
        elif c == 1: op["requestBody"] = value()
        elif c == 2: op["requestBody"] = {"content": {"application/x-www-form-urlencoded": {"schema": schema()}}}
        else: op["requestBody"] = {"content": {"application/json": {"schema": schema()}}}
    return op

def document():
    paths = {}
    for _ in range(rnd.randrange(1, 5)):
        path = "/" + "/".join(rnd.choice(WORDS) for _ in range(rnd.randrange(0, 4)))
        item = {}
        for m in ["post", "put", "patch", "delete", "get", "POST"]:
            if rnd.random() < 0.4: item[m] = operation() if rnd.random() < 0.95 else value()
        paths[path] = item if rnd.random() < 0.95 else value()
    doc = {"openapi": rnd.choice(["3.0.3", "3.1.0", " 3.0 ", 3.1, "2.0"] if rnd.random() < 0.1 else ["3.0.3"]), "paths": paths,
           "components": {"schemas": {"S": schema(1), "T": {"$ref": "#/components/schemas/S"}, "L": [1, schema(2)]},
                          "requestBodies": {"R": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/S"}}}},
                                            "Q": {"$ref": "#/components/requestBodies/Q"} if rnd.random() < 0.3 else {"content": {}}}}}
    return doc

def post(path, body):
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    conn.request("POST", path, body=body.encode(), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read().decode()
    conn.close()
    return r.status, data

MASK = re.compile(r'^\{"ctx_id": "ctx_[0-9a-f]{12}"')
bad = 0
seen = Counter()
for i in range(N):
    doc = document()
    payload = {"openapi": doc}
    route = rnd.choice(["/policy/generate", "/policy/check"])
    if rnd.random() < 0.5:
        payload["options"] = {"default_mode": rnd.choice(["enforce", "observe", "skip", " OBSERVE", None]), "fail_on_unsupported": rnd.choice([True, False, 0, "x"]), "strict": rnd.choice([True, False, None])}
    if route == "/policy/check" and rnd.random() < 0.6:
        status, res = generate_policy_response(json.loads(json.dumps(payload)))
        if status == 200:
            m = res["data"]["mapping"]; b = res["data"]["bundle"]
            if m["operations"] and rnd.random() < 0.5: m["operations"].pop(rnd.randrange(len(m["operations"])))
            if b["policies"] and rnd.random() < 0.5: b["policies"].pop(rnd.randrange(len(b["policies"])))
            payload["mapping"] = m; payload["bundle"] = b
    body = json.dumps(payload, ensure_ascii=rnd.random() < 0.5)
    try:
        parsed = json.loads(body)
        status, res = (generate_policy_response if route == "/policy/generate" else check_policy_response)(parsed)
        expected = json.dumps(res, ensure_ascii=False)
        expected.encode("utf-8")
    except Exception:  # Kernite crashed: no answer to compare
        continue
    got_status, got = post(route, body)
    seen[(route, status, res.get("message"))] += 1
    e2 = MASK.sub('{"ctx_id": "X"', expected); g2 = MASK.sub('{"ctx_id": "X"', got)
    if got_status != status or e2 != g2:
        bad += 1
        if bad <= 3:
            n = next((j for j in range(min(len(e2), len(g2))) if e2[j] != g2[j]), min(len(e2), len(g2)))
            print("DIFF", route, status, got_status, "at", n, "\n K:", e2[max(0, n-200):n+100], "\n O:", g2[max(0, n-200):n+100])
            open(f"differential-{bad}.json", "w").write(body)
print("cases", N, "differ", bad)
for (route, status, message), count in seen.most_common():
    print(f"  {count:5} {route} {status} {message}")
sys.exit(1 if bad else 0)
