#!/usr/bin/env bash
# Lint, format check and breaking-change check of the governance.v1 API
# (proto/, configured by buf.yaml at the repository root), with the buf CLI
# pinned in tools/buf/package.json and package-lock.json.
#
#   bash tools/buf/check.sh
#
# BUF_BREAKING_AGAINST overrides what `buf breaking` compares with (default
# '.git#ref=HEAD~1', the previous commit), e.g. BUF_BREAKING_AGAINST='.git#branch=main'
# to check a branch of several commits against main as a whole.
set -euo pipefail

tools="$(cd "$(dirname "$0")" && pwd)"
cd "$tools/../.."

# Install buf: `npm ci` only when node_modules is missing or was installed
# from another lockfile. --ignore-scripts is enough: the buf binary comes in an
# optional per-platform package (@bufbuild/buf-linux-x64, ...) that
# bin/buf finds and runs; the install script would only link it in place.
stamp="$tools/node_modules/.check-sh-package-lock.json"
if ! cmp -s "$tools/package-lock.json" "$stamp" 2>/dev/null; then
  (cd "$tools" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  cp "$tools/package-lock.json" "$stamp"
fi
buf="$tools/node_modules/.bin/buf"
echo "buf $("$buf" --version)"

echo "-- buf lint"
"$buf" lint

echo "-- buf format --diff --exit-code"
"$buf" format --diff --exit-code

against="${BUF_BREAKING_AGAINST:-.git#ref=HEAD~1}"
if [[ -z "${BUF_BREAKING_AGAINST:-}" ]] && ! git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null; then
  if [[ "$(git rev-parse --is-shallow-repository)" == true ]]; then
    echo "-- buf breaking: SKIPPED: this is a shallow clone without HEAD's parent," \
      "so there is no previous commit to compare with (clone with --depth=2 or more," \
      "or run 'git fetch --deepen=1', to check)"
    exit 0
  fi
  echo "tools/buf/check.sh: HEAD~1 does not exist in this (non-shallow) repository" >&2
  exit 1
fi
echo "-- buf breaking --against '$against'"
# --against-config: read the old tree with today's buf.yaml, so that a commit
# from before buf.yaml existed is still read as the module proto/ (without it,
# buf would take the old repository root as the module, and every file would
# look deleted and re-added).
"$buf" breaking --against "$against" --against-config buf.yaml
echo "buf: lint, format and breaking (FILE) checks passed"
