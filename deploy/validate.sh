#!/usr/bin/env bash
# Checks what CI cannot run (no Kubernetes cluster, no Docker engine here):
#  - the kustomization renders (kubectl's built-in kustomize);
#  - every rendered resource validates, strictly, against the Kubernetes
#    schemas of 1.29 (the first release with native sidecars on by default)
#    and 1.33;
#  - checkov finds nothing in the rendered manifests or the Dockerfile (a
#    skipped check must say why in the resource's annotations);
#  - docker-compose.yml parses and every file it mounts exists;
#  - deploy/gateway: Envoy's bootstrap by Envoy itself (`--mode validate`:
#    strict parsing, typed configs, references); the Istio overlay's
#    Kubernetes objects as above, its Istio objects against Istio's CRD
#    schemas (strict, CEL rules), the mesh config against Istio's MeshConfig
#    proto, and the examples agreeing with each other and the sidecar's
#    listen address (gateway/validate.py).
# Usage: deploy/validate.sh [WORK_DIR]   (default target/deploy-validate)
# Run by tests/deploy.rs, so by `cargo test`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/deploy-validate}
mkdir -p "$out"

command -v kubectl >/dev/null || { echo "deploy/validate.sh needs kubectl (for its built-in kustomize)" >&2; exit 1; }

want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [[ ! -f $out/venv.stamp || $(cat "$out/venv.stamp") != "$want" ]]; then
  echo "deploy/validate.sh: installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')" >&2
  rm -rf "$out/venv"
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" > "$out/venv.stamp"
fi
bin=$out/venv/bin

kubectl kustomize "$here/kubernetes" > "$out/rendered.yaml"
echo "rendered $(grep -c '^kind:' "$out/rendered.yaml") resources from deploy/kubernetes"

for version in 1.29 1.33; do
  "$bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$out/rendered.yaml"
  echo "valid against the Kubernetes $version schemas (strict)"
done

checkov() {
  "$bin/checkov" --quiet --compact --skip-download --output cli "$@"
}
checkov --framework kubernetes -f "$out/rendered.yaml"
checkov --framework dockerfile -f "$here/Dockerfile"
echo "checkov: no findings in the manifests or the Dockerfile"

"$bin/python" - "$here/docker-compose.yml" <<'PY'
import os, sys, yaml
path = sys.argv[1]
compose = yaml.safe_load(open(path))
base = os.path.dirname(path)
for name, service in compose["services"].items():
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            assert os.path.exists(os.path.join(base, source)), f"{name} mounts missing {source}"
    build = service.get("build")
    if build:
        assert os.path.exists(os.path.join(base, build["context"], build["dockerfile"])), f"{name}: no Dockerfile"
print(f"docker-compose.yml: {len(compose['services'])} services, mounts and build context exist")
PY

gateway=$here/gateway
"$bin/envoy" --mode validate --log-level warn -c "$gateway/envoy/envoy.yaml" > "$out/envoy-validate.log" 2>&1 \
  || { cat "$out/envoy-validate.log" >&2; echo "deploy/gateway/envoy/envoy.yaml: Envoy refuses it" >&2; exit 1; }
echo "envoy.yaml: $("$bin/envoy" --version | grep -o '[0-9]*\.[0-9]*\.[0-9]*/Clean' | cut -d/ -f1 | sed 's/^/Envoy /') --mode validate: OK"

kubectl kustomize "$gateway/istio" > "$out/istio-rendered.yaml"
echo "rendered $(grep -c '^kind:' "$out/istio-rendered.yaml") resources from deploy/gateway/istio"
for version in 1.29 1.33; do
  # Istio's kinds are only warned about here (no Kubernetes schema): validate.py checks them.
  "$bin/kubernetes-validate" --strict --quiet --no-warn --kubernetes-version "$version" "$out/istio-rendered.yaml"
done
echo "deploy/gateway/istio: Kubernetes objects valid against the Kubernetes 1.29 and 1.33 schemas (strict)"
checkov --framework kubernetes -f "$out/istio-rendered.yaml"
echo "checkov: no findings in deploy/gateway/istio"
"$bin/python" "$gateway/validate.py" istio "$out/istio-rendered.yaml"
"$bin/python" "$gateway/validate.py" mesh
"$bin/python" "$gateway/validate.py" consistency "$out/istio-rendered.yaml"
