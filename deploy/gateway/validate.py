"""Checks of deploy/gateway's Istio and Envoy examples that need Python (run
by deploy/validate.sh in its pinned venv; Envoy's own `--mode validate` runs
there too, before this).

  istio RENDERED.yaml   the Istio objects of the rendered overlay against
                        Istio's CRD schemas (istio/api/crds.yaml) as the API
                        server applies them: types, enums, required fields,
                        unknown fields rejected (kubectl's default strict
                        field validation), and the CRDs' CEL rules;
  mesh                  mesh-config.yaml's meshConfig parsed as Istio's
                        MeshConfig proto (istio/api/**.proto): unknown
                        fields, wrong types and bad durations rejected;
  consistency RENDERED.yaml
                        what the files must agree on: the provider name, the
                        ServiceEntry, the sidecar's listen address in
                        deploy/kubernetes/sidecar.toml, Envoy's ext_authz
                        cluster, fail-closed and body settings.
"""

import copy
import ipaddress
import os
import subprocess
import sys
import tempfile
import tomllib

import celpy
import jsonschema
import yaml
from celpy import celtypes

HERE = os.path.dirname(os.path.abspath(__file__))
API = os.path.join(HERE, "istio", "api")
SIDECAR_TOML = os.path.join(HERE, "..", "kubernetes", "sidecar.toml")
ISTIO_GROUPS = ("networking.istio.io", "security.istio.io")


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def load_one(path):
    (doc,) = load_all(path)
    return doc


def strict(schema):
    """The CRD's structural schema as the API server applies it with strict
    field validation: an object schema that lists its properties rejects
    others (unless it preserves unknown fields); `nullable` admits null."""
    schema = copy.deepcopy(schema)
    # What every object has besides the CRD's own schema.
    schema["properties"].update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
    )

    def visit(node):
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key, value in node.items():
            if key in ("properties",):
                for child in value.values():
                    visit(child)
            elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
                visit(value)

    visit(schema)
    return schema


CEL = celpy.Environment()
# Kubernetes' CEL strings library, as far as Istio's rules use it.
CEL_FUNCTIONS = {"substring": lambda s, start, end=None: celtypes.StringType(str(s)[int(start) : None if end is None else int(end)])}


def cel_errors(schema, value, path):
    """Every x-kubernetes-validations rule of the schema tree, evaluated on the
    value (with `self` bound as the API server binds it)."""
    errors = []
    if not isinstance(schema, dict) or value is None:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]), functions=CEL_FUNCTIONS)
        try:
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except Exception as error:  # an evaluation error rejects, as in the API server
            result = error
        if result is not True and not (isinstance(result, celtypes.BoolType) and bool(result)):
            errors.append(f"{path}: {rule.get('message', rule['rule'])!s} (rule {rule['rule']!r}: {result})")
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                errors += cel_errors(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += cel_errors(schema["additionalProperties"], child, f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            errors += cel_errors(schema["items"], child, f"{path}[{index}]")
    return errors


def check_istio(rendered):
    crds = {}
    for crd in load_all(os.path.join(API, "crds.yaml")):
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            crds[key] = version
    failures, checked = [], []
    for doc in load_all(rendered):
        if doc["apiVersion"].split("/")[0] not in ISTIO_GROUPS:
            continue
        name = f"{doc['kind']} {doc['metadata'].get('name')}"
        version = crds.get((doc["apiVersion"], doc["kind"]))
        if version is None or not version.get("served"):
            failures.append(f"{name}: no served CRD version for {doc['apiVersion']} {doc['kind']}")
            continue
        schema = version["schema"]["openAPIV3Schema"]
        validator = jsonschema.Draft7Validator(strict(schema))
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in error.absolute_path)
            failures.append(f"{name}: {where}: {error.message}")
        failures += [f"{name}: {e}" for e in cel_errors(schema, doc, "")]
        checked.append(name)
    kinds = {c.split()[0] for c in checked}
    if not {"AuthorizationPolicy", "ServiceEntry"} <= kinds:
        failures.append(f"the rendered overlay lacks the AuthorizationPolicy or the ServiceEntry (found {checked})")
    if failures:
        sys.exit("deploy/gateway/istio: invalid against Istio's CRD schemas:\n  " + "\n  ".join(failures))
    print(f"istio: {', '.join(checked)} valid against Istio's CRD schemas (strict, CEL rules)")


def mesh_config_message():
    """MeshConfig from Istio's own protos, compiled here with protoc."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from grpc_tools import protoc
    import grpc_tools

    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "mesh.pb")
        code = protoc.main(
            ["protoc", f"-I{API}", f"-I{well_known}", "--include_imports", f"--descriptor_set_out={out}", "mesh/v1alpha1/config.proto"]
        )
        if code != 0:
            sys.exit("deploy/gateway/istio/api: protoc could not compile mesh/v1alpha1/config.proto")
        files = descriptor_pb2.FileDescriptorSet.FromString(open(out, "rb").read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("istio.mesh.v1alpha1.MeshConfig"))


def check_mesh():
    from google.protobuf import json_format

    operator = load_one(os.path.join(HERE, "istio", "mesh-config.yaml"))
    problems = []
    if operator.get("apiVersion") != "install.istio.io/v1alpha1" or operator.get("kind") != "IstioOperator":
        problems.append("not an install.istio.io/v1alpha1 IstioOperator")
    if set(operator.get("spec", {})) != {"meshConfig"}:
        problems.append(f"spec should hold meshConfig only, has {sorted(operator.get('spec', {}))}")
    if problems:
        sys.exit("deploy/gateway/istio/mesh-config.yaml: " + "; ".join(problems))
    try:
        # Unknown fields, wrong types and malformed durations are errors.
        mesh = json_format.ParseDict(operator["spec"]["meshConfig"], mesh_config_message()())
    except json_format.ParseError as error:
        sys.exit(f"deploy/gateway/istio/mesh-config.yaml: not a valid Istio MeshConfig: {error}")
    print(f"mesh-config.yaml: a valid Istio MeshConfig ({len(mesh.extension_providers)} extension provider)")


def sidecar_listen():
    with open(SIDECAR_TOML, "rb") as f:
        host, port = tomllib.load(f)["listen"].rsplit(":", 1)
    return host, int(port)


def check_consistency(rendered):
    problems = []
    host, port = sidecar_listen()
    if not ipaddress.ip_address(host).is_loopback:
        problems.append(f"deploy/kubernetes/sidecar.toml listens on {host}, not loopback")

    # Istio: policy -> provider -> ServiceEntry -> the sidecar's address.
    docs = load_all(rendered)
    policies = [d for d in docs if d["kind"] == "AuthorizationPolicy"]
    entries = {h: d for d in docs if d["kind"] == "ServiceEntry" for h in d["spec"]["hosts"]}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    operator = load_one(os.path.join(HERE, "istio", "mesh-config.yaml"))
    providers = {p["name"]: p for p in operator["spec"]["meshConfig"]["extensionProviders"]}
    for policy in policies:
        spec = policy["spec"]
        name = spec.get("provider", {}).get("name")
        if spec.get("action") != "CUSTOM" or name not in providers:
            problems.append(f"AuthorizationPolicy {policy['metadata']['name']}: not CUSTOM with a provider of mesh-config.yaml")
            continue
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in spec["selector"]["matchLabels"].items()):
            problems.append(f"AuthorizationPolicy {policy['metadata']['name']}: selects no pod of the Deployment")
        if policy["metadata"].get("namespace") != deployment["metadata"].get("namespace"):
            problems.append(f"AuthorizationPolicy {policy['metadata']['name']}: not in the Deployment's namespace")
        grpc = providers[name]["envoyExtAuthzGrpc"]
        entry = entries.get(grpc["service"].split("/")[-1])
        if entry is None:
            problems.append(f"provider {name}: service {grpc['service']} is no ServiceEntry host of the overlay")
            continue
        if grpc["port"] not in [p["number"] for p in entry["spec"]["ports"]]:
            problems.append(f"provider {name}: port {grpc['port']} is not a port of ServiceEntry {entry['metadata']['name']}")
        addresses = [e.get("address") for e in entry["spec"].get("endpoints", [])]
        if addresses != [host] or grpc["port"] != port:
            problems.append(f"provider {name}: reaches {addresses}:{grpc['port']}, the sidecar listens on {host}:{port}")
        # Envoy calls the sidecar with the service's host as :authority; a
        # loopback listener answers loopback names and --allowed-hosts only.
        container = next(
            c for c in deployment["spec"]["template"]["spec"].get("initContainers", []) + deployment["spec"]["template"]["spec"]["containers"]
            if c["name"] == "governance-sidecar"
        )
        args = container.get("args", [])
        allowed = args[args.index("--allowed-hosts") + 1].split(",") if "--allowed-hosts" in args else []
        if grpc["service"].split("/")[-1] not in allowed:
            problems.append(f"provider {name}: the sidecar's --allowed-hosts does not name {grpc['service']}, its :authority")
        if grpc.get("failOpen", False):
            problems.append(f"provider {name}: failOpen must be false (fail closed)")
        body = grpc.get("includeRequestBodyInCheck", {})
        if body.get("allowPartialMessage", False) or body.get("packAsBytes", False) or not body.get("maxRequestBytes"):
            problems.append(f"provider {name}: the whole body must reach the Check (allowPartialMessage/packAsBytes false)")
    if not policies:
        problems.append("the overlay has no AuthorizationPolicy")

    # Envoy: the ext_authz filter's cluster is the sidecar, over HTTP/2, closed on failure.
    envoy = load_one(os.path.join(HERE, "envoy", "envoy.yaml"))
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    filters = [
        f["typed_config"]
        for listener in envoy["static_resources"]["listeners"]
        for chain in listener["filter_chains"]
        for network in chain["filters"]
        for f in network["typed_config"].get("http_filters", [])
        if f["name"] == "envoy.filters.http.ext_authz"
    ]
    if not filters:
        problems.append("envoy.yaml: no ext_authz filter")
    for authz in filters:
        cluster = clusters.get(authz["grpc_service"]["envoy_grpc"]["cluster_name"])
        if cluster is None:
            problems.append(f"envoy.yaml: ext_authz names cluster {authz['grpc_service']['envoy_grpc']['cluster_name']!r}, which is not defined")
            continue
        authority = authz["grpc_service"]["envoy_grpc"].get("authority", cluster["name"]).rsplit(":", 1)[0]
        if authority not in ("localhost", "127.0.0.1", "[::1]"):
            problems.append(f"envoy.yaml: the Check's :authority is {authority!r}; the sidecar's loopback listener answers loopback names only")
        addresses = [
            (e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"])
            for group in cluster["load_assignment"]["endpoints"]
            for e in group["lb_endpoints"]
        ]
        if addresses != [(host, port)]:
            problems.append(f"envoy.yaml: cluster {cluster['name']} reaches {addresses}, the sidecar listens on {host}:{port}")
        options = cluster.get("typed_extension_protocol_options", {}).get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {})
        if "http2_protocol_options" not in options.get("explicit_http_config", {}):
            problems.append(f"envoy.yaml: cluster {cluster['name']} does not speak HTTP/2 (gRPC needs it)")
        if authz.get("failure_mode_allow", False):
            problems.append("envoy.yaml: failure_mode_allow must be false (fail closed)")
        body = authz.get("with_request_body", {})
        if body.get("allow_partial_message", False) or body.get("pack_as_bytes", False):
            problems.append("envoy.yaml: the whole body must reach the Check (allow_partial_message/pack_as_bytes false)")
        istio_limits = {p["envoyExtAuthzGrpc"]["includeRequestBodyInCheck"]["maxRequestBytes"] for p in providers.values()}
        if istio_limits != {body.get("max_request_bytes")}:
            problems.append(f"envoy.yaml: max_request_bytes {body.get('max_request_bytes')} differs from Istio's {istio_limits}")
    if problems:
        sys.exit("deploy/gateway: the examples disagree:\n  " + "\n  ".join(problems))
    print(f"gateway examples agree: Istio and Envoy reach the sidecar on {host}:{port}, fail closed, whole bodies")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"istio": check_istio, "mesh": check_mesh, "consistency": check_consistency}[command](*args)
