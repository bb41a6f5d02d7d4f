#!/usr/bin/env bash
# Where one ExecuteWithEvidence load's CPU goes: runs the compare bench narrowed
# to one load (bundle path, 8 callers, unpinned by default) and, while it runs,
#   - counts the system calls of the sidecar, the load generator and PostgreSQL
#     (perf's syscall tracepoints), and
#   - samples the sidecar with DWARF call graphs,
# then prints the syscall counts and the sidecar's CPU by part of the call
# (benches/profile_parts.py). Needs perf (Debian: linux-perf) and what the
# compare bench needs. docs/performance.md ("Issue 32, second step") shows
# what it printed.
#   benches/profile.sh [seconds]     # default 3 s of samples, 6 s of counts
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-3}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cargo bench --bench compare --no-run --quiet 2>/dev/null

BENCH_SECONDS=14 BENCH_ONLY=execute BENCH_CALLERS="${BENCH_CALLERS:-8}" BENCH_PATHS="${BENCH_PATHS:-bundle}" \
    BENCH_PLACEMENTS="${BENCH_PLACEMENTS:-unpinned}" cargo bench --bench compare 2>/dev/null | grep '^| Exec' &

# The load starts a moment after its sidecar does.
for _ in $(seq 300); do
    sidecar=$(pgrep -f 'governance-sidecar serve' | head -1 || true)
    [ -n "$sidecar" ] && break
    sleep 0.1
done
[ -n "$sidecar" ] || { echo "no sidecar started" >&2; exit 1; }
sleep 3
bench=$(pgrep -f 'deps/compare-' | head -1)
# The bench's private PostgreSQL lives in a directory named after the bench's pid.
postmaster=$(pgrep -f "postgres -D .*governance-sidecar-bench-$bench" | head -1)
backends=$(pgrep -P "$postmaster" | paste -sd,)
events=raw_syscalls:sys_enter
for call in sendto recvfrom write writev epoll_wait futex fdatasync; do events+=",syscalls:sys_enter_$call"; done
for who in sidecar:$sidecar load-generator:$bench postgres:$backends; do
    perf stat -e "$events" -p "${who#*:}" -o "$work/${who%%:*}.stat" -- sleep 6 &
done
perf record -q -p "$sidecar" --call-graph dwarf,16384 -e cpu-clock -F 2000 -o "$work/sidecar.data" -- sleep "$seconds"
wait

for who in sidecar load-generator postgres; do
    echo "== system calls in 6 s: $who"
    grep -E 'sys_enter' "$work/$who.stat" | awk '{ sub(/.*:/, "", $2); print "   ", $1, $2 }'
done
echo "== the sidecar's CPU by part of the call"
perf script -i "$work/sidecar.data" -F ip,sym 2>/dev/null | python3 benches/profile_parts.py
